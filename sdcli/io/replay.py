"""Rebuild a generation request from an image's metadata (for `sdcli replay` and `sdcli info`).

Image metadata is untrusted input: every field of sdcli's record is type-checked,
nothing named by an image is loaded or downloaded unless it is an existing local
folder (or the user passes --model / --trust-metadata), relative paths are never
resolved against the current directory, and keys sdcli cannot honour are listed.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any

from sdcli.errors import UsageError
from sdcli.io.metadata import build_infotext, parse_infotext, read_infotext, read_replay_record
from sdcli.io.replay_input import with_input, with_references
from sdcli.models.safety import WEIGHT_SUFFIXES
from sdcli.request.fields import FIELDS
from sdcli.request.generation import DEFAULTED, MODE_PARTS, PARTS, GenerationRequest
from sdcli.request.hires import hires_from_infotext
from sdcli.request.modules import module_keys, modules_from_infotext
from sdcli.request.vocabulary import LOW_BITS

# WebUI infotext key -> (request field, converter): the field table's rows that are read back.
INFOTEXT_FIELDS: dict[str, tuple[str, Any]] = {
    key: (row.name, row.read) for row in FIELDS if row.read is not None and not row.part
    for key in (row.infotext, *row.read_aliases)
}
# The hires pass's keys, read back together by request.hires.hires_from_infotext.
HIRES_KEYS = tuple(dict.fromkeys(row.infotext for row in FIELDS if row.part == "hires" and row.infotext))
# Infotext keys that describe the image but change nothing sdcli would do differently.
# Keys that describe the image and are not settings (`Upsampled prompt`: Flux.2 dev's rewrite of the prompt, which
# the seed writes again).
INFORMATIONAL = ("Size", "Model hash", "Model", "Version", "Upsampled prompt")
# An infotext without an RNG key was made with the WebUI's default source, GPU: on NVIDIA
# cards (nearly every WebUI install) that is the noise sdcli's "nv" source reproduces.
WEBUI_DEFAULT_RNG = "nv"
WEBUI_DEFAULT_SCHEDULE = "automatic"
SDCLI_RECORD, INFOTEXT = "sdcli record", "WebUI infotext"
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


@dataclasses.dataclass(frozen=True)
class ImageMetadata:
    """What an image says about how it was made."""

    path: Path
    prompt: str
    negative_prompt: str
    parameters: dict[str, str]
    infotext: str  # the WebUI's infotext (another tool's metadata: its settings written as one)
    replay: dict[str, Any] | None  # sdcli's own record, when sdcli wrote the image
    generator: str = "WebUI"  # who wrote it: sdcli, WebUI, Forge, ComfyUI, InvokeAI ... (io.sources)
    source: dict[str, Any] | None = None  # another tool's own fields, as it wrote them
    notes: tuple[str, ...] = ()  # what a replay does differently from that tool
    unmapped: tuple[str, ...] = ()  # what in it sdcli cannot replay
    input_image: str | None = None  # the file name another tool's img2img loaded (not held in the metadata)
    references: tuple[str, ...] = ()  # the file names of another tool's edit's reference images (not held)

    def as_json(self) -> dict[str, Any]:
        extra: dict[str, Any] = {"input_image": self.input_image} if self.input_image else {}
        if self.references:
            extra["references"] = list(self.references)
        return {"path": str(self.path), "generator": self.generator, "prompt": self.prompt,
                "negative_prompt": self.negative_prompt, "parameters": self.parameters, "sdcli": self.replay,
                "infotext": self.infotext, "source": self.source, "notes": list(self.notes),
                "unmapped": list(self.unmapped), **extra}


class NoMetadata(UsageError):
    """The image carries no generation parameters."""


def read_metadata(path: Path) -> ImageMetadata:
    """Read an image's parameters; UsageError naming the file when it cannot."""
    from PIL import UnidentifiedImageError

    if not path.is_file():
        raise UsageError(f"{path}: no such file")
    from PIL import Image

    from sdcli.io.sources import BrokenMetadata, read_other, webui_generator

    try:
        infotext = read_infotext(path)
        replay = read_replay_record(path)
        with Image.open(path) as image:
            infotext, found, stealth = read_other(image, infotext or None)
    except BrokenMetadata as exc:
        raise BrokenMetadata(f"{path}: {exc}") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:  # ValueError: text chunk bombs
        raise UsageError(f"{path}: not a readable image ({exc})") from None
    if found is not None:
        text = build_infotext(found.prompt, found.negative_prompt, found.parameters)
        return ImageMetadata(path, found.prompt, found.negative_prompt, found.parameters, text, None,
                             found.generator, found.source, found.notes, found.unmapped, found.input_image,
                             found.references)
    if not infotext:
        raise NoMetadata(f"{path}: no generation parameters found")
    prompt, negative, params = parse_infotext(infotext)
    generator = webui_generator(params, replay is not None, stealth)
    return ImageMetadata(path, prompt, negative, params, infotext, replay, generator)


def request_from_infotext(meta: ImageMetadata) -> tuple[GenerationRequest, list[str], set[str]]:
    """A request from WebUI parameters (any tool that writes them); the keys it could not honour,
    and the request fields the infotext set."""
    prompt, negative, parameters = parse_infotext(meta.infotext, forge_fixes=True)  # Civitai's Flux keys, as Forge
    meta = dataclasses.replace(meta, prompt=prompt, negative_prompt=negative, parameters=parameters)
    fields: dict[str, Any] = {"prompt": meta.prompt, "negative_prompt": meta.negative_prompt,
                              "rng": WEBUI_DEFAULT_RNG}
    for key, (field, convert) in INFOTEXT_FIELDS.items():
        if key in meta.parameters:
            try:
                fields[field] = convert(meta.parameters[key])
            except ValueError:
                raise UsageError(f"{meta.path}: bad {key!r} value {meta.parameters[key]!r}") from None
    if fields.get("low_bits") is not None and fields["low_bits"] not in LOW_BITS:
        raise UsageError(f"{meta.path}: bad 'Diffusion in Low Bits' value {meta.parameters['Diffusion in Low Bits']!r}")
    _, encoders = modules_from_infotext(meta.parameters)  # the VAE: cli.replay, by name in the VAE folder
    if encoders:
        fields["text_encoders"] = encoders
    if size := meta.parameters.get("Size"):
        try:
            fields["width"], fields["height"] = (int(v) for v in size.lower().split("x"))
        except ValueError:
            raise UsageError(f"{meta.path}: bad 'Size' value {size!r}") from None
    units, unreadable = control_units_from_infotext(meta.parameters)
    if units:
        fields["controlnets"] = units
    if (hires := hires_from_infotext(meta.parameters, str(meta.path))) is not None:
        fields["hires"] = hires  # the hires pass runs again (its keys: request.hires)
    honoured = (*(HIRES_KEYS if hires is not None else ()), *module_keys(meta.parameters))
    ignored = [k for k in meta.parameters if k not in INFOTEXT_FIELDS and k not in INFORMATIONAL
               and k not in honoured and (not CONTROL_KEY.match(k) or k in unreadable)]
    given = set(fields)  # a missing Schedule type: the WebUI's Automatic (not the family's default), as Forge
    fields.setdefault("schedule", WEBUI_DEFAULT_SCHEDULE)
    return GenerationRequest(**fields), ignored, given


CONTROL_KEY = re.compile(r"^ControlNet (\d+)$")


def control_units_from_infotext(parameters: dict[str, str]) -> tuple[tuple[Any, ...], list[str]]:
    """The `ControlNet N` units of an infotext, in N order (their control images are not recorded), and the
    keys that could not be read (skipped, as the extension skips them when pasting)."""
    from sdcli.controlnet.units import parse_unit

    keys = sorted((int(m.group(1)), k) for k in parameters if (m := CONTROL_KEY.match(k)))
    units, unreadable = [], []
    for _, key in keys:
        try:
            units.append(parse_unit(parameters[key]))
        except (ValueError, UsageError):  # UsageError: a preprocessor sdcli does not have
            unreadable.append(key)
    return tuple(units), unreadable


def with_control_images(path: Path, request: GenerationRequest, images: list[str] | None) -> GenerationRequest:
    """--control-image given to replay: one per unit, in order; without it every unit must have its image."""
    units = request.controlnets
    if images:
        if len(images) != len(units):
            raise UsageError(f"--control-image: {len(images)} given; the image has {len(units)} ControlNet unit(s)")
        units = tuple(dataclasses.replace(u, image=str(Path(i).absolute())) for u, i in zip(units, images,
                                                                                              strict=True))
    for i, unit in enumerate(units):
        if not unit.image:
            raise UsageError(f"{path}: ControlNet {i} needs its control image, which the infotext does not store; "
                             "pass --control-image IMG (one per unit, in order)")
    return dataclasses.replace(request, controlnets=units)


# Annotation (as a string: `from __future__ import annotations`) -> the JSON types it accepts.
_JSON_TYPES: dict[str, tuple[type, ...]] = {"str": (str,), "int": (int,), "float": (int, float), "bool": (bool,)}


def _check_value(path: Path, where: str, value: Any, annotation: str) -> Any:
    """One record value against its dataclass annotation; UsageError naming the field."""
    options = [a.strip() for a in annotation.split("|")]
    if value is None and "None" in options:
        return None
    for option in options:
        accepted = _JSON_TYPES.get(option)
        if accepted and isinstance(value, accepted) and not (isinstance(value, bool) and bool not in accepted):
            return float(value) if option == "float" else value
    wanted = " or ".join("null" if o == "None" else "an object" if o not in _JSON_TYPES else
                         {"str": "text", "int": "a whole number", "float": "a number", "bool": "true/false"}[o]
                         for o in options)
    raise UsageError(f"{path}: sdcli record field {where} is {value!r}; it must be {wanted}")


def _typed_fields(path: Path, data: Any, cls: type, where: str, ignored: list[str]) -> dict[str, Any]:
    """The fields of `cls` in `data`, each type-checked; unknown keys go to `ignored`."""
    if not isinstance(data, dict):
        raise UsageError(f"{path}: sdcli record field {where or 'request'} is {data!r}; it must be an object")
    types = {f.name: str(f.type) for f in dataclasses.fields(cls)}
    values: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{where}.{key}" if where else key
        if key not in types:
            ignored.append(f"sdcli record: {name}")
        elif key in PARTS and value is not None:
            values[key] = PARTS[key](**_typed_fields(path, value, PARTS[key], name, ignored))
        elif key == "controlnets":
            values[key] = _record_units(path, value, name, ignored)
        elif types[key].startswith("tuple[str"):  # a list of names (text_encoders)
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise UsageError(f"{path}: sdcli record field {name} is {value!r}; it must be a list of text")
            values[key] = tuple(value)
        else:
            values[key] = _check_value(path, name, value, types[key])
    return values


def request_from_record(path: Path, record: dict[str, Any]) -> tuple[GenerationRequest, list[str]]:
    """sdcli's own record, every field type-checked (exit 2 naming it); the keys it could not honour."""
    ignored: list[str] = []
    values = _typed_fields(path, record.get("request"), GenerationRequest, "", ignored)
    if "prompt" not in values:
        raise UsageError(f"{path}: sdcli record has no prompt")
    mode = values.get("mode", "txt2img")
    if mode not in MODE_PARTS:
        raise UsageError(f"{path}: sdcli record field mode is {mode!r}; it must be one of {', '.join(MODE_PARTS)}")
    missing = [part for part in MODE_PARTS[mode] if values.get(part) is None]
    if missing:
        raise UsageError(f"{path}: sdcli record of a {mode} image lacks {', '.join(missing)}")
    ignored += [f"sdcli record: {k}" for k in record if k not in ("sdcli", "model", "request")]
    return GenerationRequest(**values), ignored


def _record_units(path: Path, value: Any, where: str, ignored: list[str]) -> tuple[Any, ...]:
    """The record's ControlNet units, each field type-checked."""
    from sdcli.controlnet.units import ControlUnit

    if not isinstance(value, list):
        raise UsageError(f"{path}: sdcli record field {where} is {value!r}; it must be a list")
    return tuple(ControlUnit(**_typed_fields(path, unit, ControlUnit, f"{where}[{i}]", ignored))
                 for i, unit in enumerate(value))


_DEMO = "(the built-in demo model)"


@dataclasses.dataclass(frozen=True)
class ReplayPlan:
    """What replay will use, and where each value came from (shown before anything loads)."""

    request: GenerationRequest
    model: str | None  # the --model to run with (None: the demo model)
    origin: str  # SDCLI_RECORD or INFOTEXT
    sources: dict[str, str]  # request field (or "model") -> where its value came from
    ignored: list[str]  # keys in the image that sdcli cannot honour
    notes: tuple[str, ...] = ()  # what the replay does differently from the tool that made the image

    def rows(self) -> list[tuple[str, str, str]]:
        """(setting, value, source) for display, input files and the model included."""
        request = self.request
        values: dict[str, Any] = {"model": self.model or _DEMO}
        for field in dataclasses.fields(request):
            value = getattr(request, field.name)
            if field.name in PARTS and value is not None:
                values.update({f"{field.name}.{k}": v for k, v in dataclasses.asdict(value).items()})
            elif field.name not in PARTS:
                values[field.name] = value
        shown = {name: "(the model family's)" for name in DEFAULTED if values.get(name) is None}
        values.update(shown)
        return [(name, repr(value) if isinstance(value, str) and name not in ("model", *shown) else str(value),
                 self.sources.get(name, self.sources.get(name.split(".")[0], "default")))
                for name, value in values.items()]


def plan_replay(path: Path, overrides: dict[str, Any] | None = None, model_override: str | None = None,
                trust_metadata: bool = False, check_model: bool = True,
                control_images: list[str] | None = None, input_images: list[Path] | None = None,
                input_dirs: tuple[Path, ...] = ()) -> ReplayPlan:
    """Everything replay will use, checked before any model loads.

    `overrides` maps request fields to flag values (None = not given; their keys
    are flag names as `--steps`). count/batch_size are 1 unless overridden: an
    image never makes the user generate many images. `input_images` (-i) are the
    input of an img2img image or the reference images of an edit; without them,
    another tool's input files are looked for by name beside the image and in
    each of `input_dirs`.
    """
    meta = read_metadata(path)
    if meta.unmapped:  # another tool's image with settings or nodes sdcli has no equivalent of
        raise UsageError(f"{path}: sdcli cannot replay this {meta.generator} image; it does not map: "
                         + "; ".join(meta.unmapped))
    if meta.replay is not None:
        request, ignored = request_from_record(path, meta.replay)
        given: set[str] = set(meta.replay.get("request") or {})
        origin, model = SDCLI_RECORD, _check_value(path, "model", meta.replay.get("model"), "str | None")
    else:
        request, ignored, given = request_from_infotext(meta)
        origin, model = INFOTEXT if meta.source is None else f"{meta.generator} metadata", None
    sources = {name: origin for name in given}
    sources.update(count="one image unless --count", batch_size="one image unless --batch-size")
    fixed = {"count": 1, "batch_size": 1}
    for name, value in (overrides or {}).items():
        if value is not None:
            fixed[name] = value
            sources[name] = "--" + name.replace("_", "-")
    request = dataclasses.replace(request, **fixed)
    notes = meta.notes
    if meta.references:  # an edit (ComfyUI's ReferenceLatent): its reference files, -i in the graph's order
        request, sources["references"] = with_references(path, meta.generator, meta.references, request,
                                                         list(input_images or ()), input_dirs)
        sources["mode"] = origin
    elif len(input_images or ()) > 1:
        raise UsageError(f"-i: {path} was made from one input image at most; {len(input_images or ())} given")
    elif (input_image := (input_images or [None])[0]) is not None or meta.input_image is not None:
        try:
            strength = float(meta.parameters.get("Denoising strength", 1.0))
        except ValueError:
            bad = meta.parameters["Denoising strength"]
            raise UsageError(f"{path}: bad 'Denoising strength' value {bad!r}") from None
        request, sources["init"], note = with_input(path, meta.generator, meta.input_image, strength, request,
                                                    overrides or {}, input_image, input_dirs)
        notes += note
    if request.controlnets:
        request = with_control_images(path, request, control_images)
        if control_images:
            sources["controlnets"] = f"{origin} + --control-image"
    if model_override:
        model, sources["model"] = model_override, "--model"
    else:
        sources["model"] = origin if model or meta.replay is not None else "default"
        if check_model:
            model = _trusted_model(path, model, meta.replay is not None, trust_metadata)
        elif meta.replay is None:
            sources["model"] = "the image names none: pass --model"
    _check_input_paths(path, request)
    return ReplayPlan(request, model, origin, sources, ignored, notes)


SINGLE_FILE_SUFFIXES = (".safetensors", ".gguf")  # model files a record may name (never a pickle)


def _trusted_model(path: Path, source: str | None, made_by_sdcli: bool, trust: bool) -> str | None:
    """The image's model, only if it is an existing local folder or single file (or a hub id with
    --trust-metadata)."""
    if not made_by_sdcli:
        raise UsageError(f"{path}: not made by sdcli, so its metadata has no model path; pass --model")
    if source is None:
        return None  # the built-in demo model
    local = Path(source)
    if local.is_absolute():
        if not (local.is_dir() or (local.is_file() and local.suffix.lower() in SINGLE_FILE_SUFFIXES)):
            raise UsageError(f"{path}: its model {source} was not found; pass --model")
        return source
    if _HUB_ID.match(source) and not local.exists():
        if trust:
            return source
        raise UsageError(f"{path}: its model is the hub id {source!r}; sdcli does not download a model named "
                         f"by an image: pass --model {source} (or --trust-metadata)")
    raise UsageError(f"{path}: its model {source!r} is a relative path, which sdcli does not resolve against "
                     "the current folder; pass --model")


def _check_input_paths(path: Path, request: GenerationRequest) -> None:
    """Input images named by a record must be absolute (never resolved against the current folder)."""
    for unit in request.controlnets:
        if not unit.model_by_name and not Path(unit.model).is_absolute():
            raise UsageError(f"{path}: its ControlNet {unit.model!r} is a relative path, which sdcli does not "
                             "resolve against the current folder")
    controls = [("--control-image", u.image) for u in request.controlnets]
    for flag, value in (("--image", request.init and request.init.image),
                        ("--mask", request.inpaint and request.inpaint.mask), *controls):
        if value and not Path(value).is_absolute():
            raise UsageError(f"{path}: its {flag[2:]} {value!r} is a relative path, which sdcli does not "
                             f"resolve against the current folder; replay the image from its folder with "
                             f"img2img/inpaint instead")
    for reference in request.references:  # an edit's: needed where they were when the image was made
        if not Path(reference).is_absolute():
            raise UsageError(f"{path}: its reference image {reference!r} is a relative path, which sdcli does not "
                             "resolve against the current folder; run sdcli edit with -i instead")
        if not Path(reference).is_file():
            raise UsageError(f"{path}: its reference image {reference} was not found; put it back there or run "
                             "sdcli edit -i IMAGE with the image's settings")
    upscaler = request.hires and request.hires.upscaler
    file_like = upscaler and ("/" in upscaler or "\\" in upscaler or Path(upscaler).suffix.lower() in WEIGHT_SUFFIXES)
    if file_like and not Path(upscaler).is_absolute():
        raise UsageError(f"{path}: its hires upscaler {upscaler!r} is a relative path, which sdcli does not "
                         "resolve against the current folder; pass --hires-upscaler")
