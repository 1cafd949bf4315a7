"""X/Y/Z plots: the WebUI script's axis table and value syntax, planned into batch lines (pure).

An axis is written as the WebUI names it, `"NAME: VALUES"` (`--x "CFG Scale: 4-10 (+2)"`).
VALUES is one CSV row (quote a value holding a comma), each item possibly a range:
`1-5` (step 1), `1-10 (+2)` (step), `1-10 [4]` (count, evenly spaced), for whole-number
and number axes. Every cell becomes one batch line (cell c = ix + iy*nx + iz*nx*ny is item c),
so the batch runner loads each checkpoint once, writes the manifest, resumes and isolates
failures. The WebUI fixes the seed once for the plot unless "Keep -1 for seeds" is on.
"""

from __future__ import annotations

import csv
import difflib
import itertools
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from sdcli.batch.parse import BatchLine
from sdcli.batch.xyz_values import RANGES, expand, split_values
from sdcli.errors import UsageError
from sdcli.request.fields import FIELDS, Field, parse_flag
from sdcli.request.generation import GenerationRequest, random_seed, validate

MAX_CELLS = 10000  # cells of one plot (README "Limits")


def _field(name: str) -> Callable[[GenerationRequest, Any, list[Any]], GenerationRequest]:
    return lambda request, value, values: replace(request, **{name: value})


def _prompt_sr(request: GenerationRequest, value: str, values: list[Any]) -> GenerationRequest:
    """The WebUI's Prompt S/R: the first value is searched for and replaced in both prompts."""
    return replace(request, prompt=request.prompt.replace(values[0], value),
                   negative_prompt=request.negative_prompt.replace(values[0], value))


def _prompt_order(request: GenerationRequest, value: tuple[str, ...], values: list[Any]) -> GenerationRequest:
    """The WebUI's Prompt order: the tokens put back into the prompt in this permutation's order."""
    prompt = request.prompt
    found = sorted((prompt.find(token), token) for token in value)
    parts = []
    for _, token in found:
        at = prompt.find(token)
        parts.append(prompt[:at])
        prompt = prompt[at + len(token):]
    return replace(request, prompt="".join(part + value[i] for i, part in enumerate(parts)) + prompt)


def _hires_field(name: str) -> Callable[[GenerationRequest, Any, list[Any]], GenerationRequest]:
    return lambda request, value, values: (replace(request, hires=replace(request.hires, **{name: value}))
                                           if request.hires else request)


def _check_hires(values: list[Any], request: GenerationRequest) -> None:
    if request.hires is None:
        raise ValueError("needs --hires: it is a setting of the hires fix pass")


def _strength(request: GenerationRequest, value: float, values: list[Any]) -> GenerationRequest:
    """The WebUI's Denoising axis: the img2img denoising strength; on txt2img, the hires pass's."""
    if request.init:
        return replace(request, init=replace(request.init, strength=value))
    return _hires_field("denoise")(request, value, values)


def _check_strength(values: list[Any], request: GenerationRequest) -> None:
    if request.mode == "edit":
        raise ValueError("an edit draws a new image from noise; it has no denoising strength")
    if request.init is None and request.hires is None:
        raise ValueError("needs an input image (--image) or --hires: the denoising strength of img2img or of the "
                         "hires pass")


def _reference(request: GenerationRequest, value: str, values: list[Any]) -> GenerationRequest:
    """sdcli's Reference image axis: the edit's first reference image replaced by this file."""
    if not request.references:
        return request
    return replace(request, references=(str(Path(value).expanduser().absolute()), *request.references[1:]))


def _check_reference(values: list[Any], request: GenerationRequest) -> None:
    if request.mode != "edit":
        raise ValueError("needs --edit: it replaces the first reference image of an edit")
    missing = [v for v in values if not Path(v).expanduser().is_file()]
    if missing:
        raise ValueError(f"{missing[0]}: no such file")


def _check_prompt_sr(values: list[Any], request: GenerationRequest) -> None:
    if values[0] not in request.prompt and values[0] not in request.negative_prompt:
        raise ValueError(f"the first value {values[0]!r} (the text to replace) is not in the prompt or the "
                         "negative prompt")


def _check_prompt_order(values: list[Any], request: GenerationRequest) -> None:
    missing = [token for token in values[0] if token not in request.prompt]
    if missing:
        raise ValueError(f"{missing[0]!r} is not in the prompt")


@dataclass(frozen=True)
class Axis:
    """One row of the WebUI's axis table that sdcli can plot: label, value type, how a value applies."""

    label: str
    kind: str  # "int", "float", "str", "bool" or "permutations"
    apply: Callable[[GenerationRequest, Any, list[Any]], GenerationRequest]
    check: Callable[[list[Any], GenerationRequest], None] | None = None
    labelled: bool = True  # grid label "Label: value" (else the bare value)
    checkpoint: bool = False  # a model per value: the runner loads each once
    file: bool = False  # a file per value: labelled by its name
    vae: bool = False  # a VAE per value (an add-on, set on the loaded model)


def _set(row: Field) -> Callable[[GenerationRequest, Any, list[Any]], GenerationRequest]:
    """Set a field table row's value (inside its part; a part the request lacks stays absent)."""
    if not row.part:
        return _field(row.name)
    part = row.part
    return lambda request, value, values: (replace(request, **{part: replace(getattr(request, part),
                                                                              **{row.leaf: value})})
                                           if getattr(request, part) is not None else request)


def _check_part(part: str) -> Callable[[list[Any], GenerationRequest], None] | None:
    return _check_hires if part == "hires" else None


# The axes that are not one field's value: how they apply, by label (the others come from the field
# table's `axis` column, request.fields). "Denoising" sets the img2img strength or the hires pass's.
SPECIAL: dict[str, tuple[Callable[..., GenerationRequest], Callable[[list[Any], GenerationRequest], None]]] = {
    "Denoising": (_strength, _check_strength),
}
# Every axis sdcli can plot: the WebUI's names; Width, Height and Reference image are sdcli's own. Adding a
# field's axis is naming it in its row.
AXES: tuple[Axis, ...] = (
    Axis("Nothing", "str", lambda request, value, values: request, labelled=False),
    Axis("Prompt S/R", "str", _prompt_sr, _check_prompt_sr, labelled=False),
    Axis("Prompt order", "permutations", _prompt_order, _check_prompt_order, labelled=False),
    Axis("Checkpoint name", "str", lambda request, value, values: request, labelled=False, checkpoint=True),
    Axis("VAE", "str", lambda request, value, values: request, vae=True),
    Axis("Reference image", "str", _reference, _check_reference, labelled=False, file=True),
    *(Axis(row.axis, row.kind, *SPECIAL.get(row.axis, (_set(row), _check_part(row.part))),
           labelled=not row.bare_label) for row in FIELDS if row.axis),
)
# The WebUI's axes with no sdcli meaning (yet): refused by name rather than as unknown.
WEBUI_ONLY = ("Image CFG Scale", "Negative Guidance minimum sigma", "Schedule rho",
              "Initial noise multiplier", "Extra noise", "Cond. Image Mask Weight",
              "Styles", "UniPC Order", "Face restore", "Token merging ratio", "Token merging ratio high-res",
              "Always discard next-to-last sigma", "SGM noise multiplier")
SEED_AXES = ("Seed", "Var. seed")
VAE_DEFAULT, VAE_NONE = "automatic", "none"  # VAE axis values: the --vae flag's VAE / the model's own


def _key(name: str) -> str:
    return " ".join(name.lower().split())


def find_axis(flag: str, name: str) -> Axis:
    """The axis called `name` (case and spacing do not matter); unknown names list close matches."""
    table = {_key(axis.label): axis for axis in AXES}
    found = table.get(_key(name))
    if found is not None:
        return found
    if _key(name) in {_key(label) for label in WEBUI_ONLY}:
        raise UsageError(f"{flag}: the WebUI axis {name!r} is not supported by sdcli "
                         f"(axes: {', '.join(a.label for a in AXES)})")
    labels = [axis.label for axis in AXES]
    close = difflib.get_close_matches(_key(name), list(table), n=3, cutoff=0.5)
    hint = f"; did you mean {', '.join(table[c].label for c in close)}?" if close else ""
    raise UsageError(f"{flag}: unknown axis {name!r}{hint} (axes: {', '.join(labels)})")


def parse_values(axis: Axis, text: str) -> list[Any]:
    """An axis's VALUES text -> its values, ranges expanded (ValueError naming the bad value)."""
    if axis.label == "Nothing":
        return [None]
    raw = split_values(text)
    if not raw or any(v == "" for v in raw):
        raise ValueError("an empty value; give values separated by commas")
    if axis.kind in RANGES:
        return [number for value in raw for number in expand(axis.kind, value)]
    if axis.kind == "bool":
        return [parse_flag(value) for value in raw]
    if axis.kind == "permutations":
        if len(raw) > 6:
            raise ValueError(f"{len(raw)} tokens make {math.factorial(len(raw))} orders; use at most 6")
        return list(itertools.permutations(raw))
    return raw


def format_label(axis: Axis, value: Any) -> str:
    """The grid label of one value, as the WebUI writes it ("CFG Scale: 7.0", "Euler", "a, b")."""
    if axis.label == "Nothing":
        return ""
    if axis.kind == "permutations":
        return ", ".join(value)
    if axis.checkpoint or axis.file:
        return Path(str(value)).name
    shown = round(value, 8) if isinstance(value, float) else value
    return f"{axis.label}: {shown}" if axis.labelled else str(shown)


@dataclass(frozen=True)
class AxisSpec:
    """One parsed `--x/--y/--z` option: the flag, the axis, the VALUES text as typed, the values."""

    flag: str
    axis: Axis
    text: str
    values: tuple[Any, ...]

    @property
    def labels(self) -> list[str]:
        return [format_label(self.axis, v) for v in self.values]


def parse_axis(flag: str, option: str | None) -> AxisSpec:
    """`"NAME: VALUES"` (or None: the Nothing axis) -> AxisSpec; UsageError names the flag and axis."""
    if option is None or not option.strip():
        return AxisSpec(flag, AXES[0], "", (None,))
    name, colon, text = option.partition(":")
    axis = find_axis(flag, name.strip())
    if not colon and axis.label != "Nothing":
        raise UsageError(f"{flag}: {option!r} has no values; write \"{axis.label}: VALUE, VALUE, ...\"")
    try:
        values = parse_values(axis, text)
    except (ValueError, csv.Error) as exc:
        raise UsageError(f"{flag}: {axis.label}: {exc}") from None
    return AxisSpec(flag, axis, text.strip(), tuple(values))


def fix_seeds(spec: AxisSpec, fixed: list[Any] | None) -> AxisSpec:
    """Seed axes: -1 values replaced by random seeds (or by `fixed`, those recorded for --resume)."""
    if spec.axis.label not in SEED_AXES:
        return spec
    values = fixed if fixed is not None else [random_seed(1) if v == -1 else v for v in spec.values]
    return replace(spec, values=tuple(values))


def fix_files(spec: AxisSpec, fixed: list[Any] | None) -> AxisSpec:
    """File axes (Reference image): each value as an absolute path from here (or `fixed`, those recorded for
    --resume, which may run from another folder)."""
    if not spec.axis.file:
        return spec
    values = fixed if fixed is not None else [str(Path(v).expanduser().absolute()) for v in spec.values]
    return replace(spec, values=tuple(values))


@dataclass(frozen=True)
class Plot:
    """A planned plot: its axes (x, y, z), one batch line per cell, the values fixed for --resume,
    and each line's VAE axis value (only with a VAE axis)."""

    axes: tuple[AxisSpec, AxisSpec, AxisSpec]
    lines: tuple[BatchLine, ...]
    resolved: dict[str, Any]
    vaes: dict[int, str] = field(default_factory=dict)

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(len(a.values) for a in self.axes)  # type: ignore[return-value]

    def cell(self, ix: int, iy: int, iz: int) -> int:
        nx, ny, _ = self.shape
        return ix + iy * nx + iz * nx * ny


def cell_request(base: GenerationRequest, axes: tuple[AxisSpec, ...], index: tuple[int, ...]) -> GenerationRequest:
    """The request of one cell: x, then y, then z applied to the base request (the WebUI's order)."""
    request = base
    for spec, i in zip(axes, index, strict=True):
        request = spec.axis.apply(request, spec.values[i], list(spec.values))
    return request


def plan_plot(base: GenerationRequest, options: tuple[str | None, str | None, str | None], model: str | None, *,
              keep_random_seeds: bool = False, resolved: dict[str, Any] | None = None,
              check_model: Callable[[str], None] | None = None,
              check_assets: Callable[[GenerationRequest, str | None], None] | None = None,
              resolve_upscaler: Callable[[str], str] | None = None) -> Plot:
    """Parse the three axes and plan every cell, checking all of it before any model loads.

    `resolved` holds the seeds fixed by an earlier run (--resume); `check_model(spec)`
    resolves a checkpoint (raising UsageError) and `check_assets(request, vae)` finds a cell's
    LoRAs/embeddings and VAE (the VAE axis value; None without one), so a bad value is named by its axis;
    `resolve_upscaler(spec)` turns a hires upscaler (--hires-upscaler or a Hires upscaler value) into
    what the cells run with (a file: its absolute path), raising UsageError.
    """
    # 1. The axes, their values parsed and the random seeds fixed (once for the whole plot).
    resolved = dict(resolved or {})
    fixed_axes = resolved.get("axes") or {}
    axes = tuple(fix_files(fix_seeds(parse_axis(f"--{n}", o), None if keep_random_seeds else fixed_axes.get(n)),
                           fixed_axes.get(n)) for n, o in zip("xyz", options, strict=True))
    cells = math.prod(len(a.values) for a in axes)
    if cells > MAX_CELLS:
        raise UsageError(f"--x/--y/--z: {cells} cells; the limit is {MAX_CELLS}")
    files = {n: list(a.values) for n, a in zip("xyz", axes, strict=True) if a.axis.file}
    if files:  # recorded whatever --keep-random-seeds says
        resolved["axes"] = files
    if not keep_random_seeds:
        resolved["axes"] = {**files, **{n: list(a.values) for n, a in zip("xyz", axes, strict=True)
                                        if a.axis.label in SEED_AXES}}
        if base.seed in (None, -1):
            base = replace(base, seed=resolved.get("seed", random_seed(1)))
        resolved["seed"] = base.seed
        varied = base.subseed_strength or any(a.axis.label == "Var. strength" for a in axes)
        if varied and base.subseed in (None, -1):
            base = replace(base, subseed=resolved.get("subseed", random_seed(1)))
            resolved["subseed"] = base.subseed

    # 2. Each value on its own (so a problem names its axis and value), then every cell.
    upscaler = resolve_upscaler or (lambda spec: spec)
    if base.hires is not None:
        upscaler(base.hires.upscaler)  # the flag's own message
    for spec in axes:
        _check_axis(spec, base, model, check_model, upscaler)
    lines = []
    vaes = {}
    checked: set[tuple[str, str, str | None]] = set()
    for iz, iy, ix in itertools.product(*(range(len(a.values)) for a in reversed(axes))):
        request = cell_request(base, axes, (ix, iy, iz))
        if request.hires is not None:
            request = replace(request, hires=replace(request.hires, upscaler=upscaler(request.hires.upscaler)))
        cell_model = next((str(a.values[i]) for a, i in zip(axes, (ix, iy, iz), strict=True)
                           if a.axis.checkpoint), model)
        vae = next((str(a.values[i]) for a, i in zip(axes, (ix, iy, iz), strict=True) if a.axis.vae), None)
        if vae is not None:
            vaes[len(lines) + 1] = vae
        try:
            validate(request)
            if check_assets is not None and (request.prompt, request.negative_prompt, vae) not in checked:
                checked.add((request.prompt, request.negative_prompt, vae))
                check_assets(request, vae)
        except UsageError as exc:
            where = ", ".join(f"{a.flag} {a.labels[i] or a.values[i]}" for a, i in
                              zip(axes, (ix, iy, iz), strict=True) if a.axis.label != "Nothing")
            raise UsageError(f"cell ({where}): {exc}") from None
        lines.append(BatchLine(len(lines) + 1, request, cell_model))
    return Plot(axes, tuple(lines), resolved, vaes)  # type: ignore[arg-type]


def _check_axis(spec: AxisSpec, base: GenerationRequest, model: str | None,
                check_model: Callable[[str], None] | None, upscaler: Callable[[str], str]) -> None:
    """Every value of one axis checked on the base request; UsageError '--x: Steps 0: ...'."""
    values = list(spec.values)
    if spec.axis.check is not None:
        try:
            spec.axis.check(values, base)
        except ValueError as exc:
            raise UsageError(f"{spec.flag}: {spec.axis.label}: {exc}") from None
    for value, label in zip(values, spec.labels, strict=True):
        try:
            if spec.axis.checkpoint:
                if check_model is not None:
                    check_model(str(value))
                continue
            request = spec.axis.apply(base, value, values)
            validate(request)
            if request.hires is not None:
                upscaler(request.hires.upscaler)
        except UsageError as exc:
            reason = re.sub(r"^--[\w-]+: ", "", str(exc))
            shown = label if spec.axis.kind == "permutations" else str(value)
            raise UsageError(f"{spec.flag}: {spec.axis.label} {shown}: {reason}") from None


def plot_params(plot: Plot, combined: bool) -> dict[str, str]:
    """The WebUI's infotext keys that describe a plot (Script, X Type, X Values, ...), for its grids."""
    params = {"Script": "X/Y/Z plot"}
    for name, spec in zip("XYZ", plot.axes, strict=True):
        if spec.axis.label == "Nothing" or (name == "Z" and not combined):
            continue
        params[f"{name} Type"] = spec.axis.label
        params[f"{name} Values"] = spec.text
        if spec.axis.label in SEED_AXES and plot.resolved.get("axes", {}).get(name.lower()) is not None:
            params[f"Fixed {name} Values"] = ", ".join(str(v) for v in spec.values)
    return params
