"""Prompt files: parse and validate every line (pure), then plan the items to generate.

Three formats, one key table:

- text: one prompt per line.
- webui: the WebUI's "Prompts from file" lines, `--key value ...` split shell-style;
  a line that does not start with `--` is a plain prompt.
- jsonl: one JSON object per line with the same keys.

In every format blank lines and lines starting with `#` are skipped. Command-line
options are the defaults; a line overrides them. Every bad line is reported at
once as `FILE:LINE: reason` before anything loads.

Seeds (the resume and sharding guarantee rests on this): item *i* of the file
(counting images in file order) gets `base_seed + i`; a line with its own `--seed S`
gives its images `S, S+1, ...`. So an item's pixels depend only on the file, the
options and the base seed, never on which process or run made it.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
import shlex
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from sdcli.batch.source import LINE_BREAK, read_prompt_file
from sdcli.core.images import prepare
from sdcli.core.request import (
    DIRECTIONS,
    MAX_SEED,
    MODE_PARTS,
    PARTS,
    GenerationRequest,
    check_seed_room,
    random_seed,
    validate,
)
from sdcli.errors import UsageError

FORMATS = ("auto", "text", "webui", "jsonl")
JSONL_SUFFIXES = (".jsonl", ".ndjson")
REQUEST_FIELDS = frozenset(f.name for f in dataclasses.fields(GenerationRequest))


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{value!r} is not text")
    return value


def _whole(value: Any) -> int:
    if isinstance(value, bool) or isinstance(value, float) and not value.is_integer():
        raise ValueError(f"{value!r} is not a whole number")
    try:
        return int(value)
    except (TypeError, ValueError):
        raise ValueError(f"{value!r} is not a whole number") from None


def _number(value: Any) -> float:
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a number")
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{value!r} is not a number") from None


def _choice(table: dict[Any, str]) -> Callable[[Any], str]:
    """A reader for an enumeration given by sdcli name or by the WebUI's number/boolean."""
    def read(value: Any) -> str:
        key = value if isinstance(value, bool | int) else _text(value).strip().lower().replace("_", "-")
        if isinstance(key, str) and key.lstrip("-").isdigit():
            key = int(key)
        if key in table.values():
            return key
        if key in table:
            return table[key]
        raise ValueError(f"{value!r} is not one of {', '.join(sorted(set(table.values())))}")
    return read


def _flag(value: Any) -> bool:
    text = _text(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"{value!r} is not true/false")


# The WebUI's numeric encodings of the img2img/inpaint enumerations.
RESIZE_CODES = {0: "just", 1: "crop", 2: "fill"}
MASKED_CONTENT_CODES = {0: "fill", 1: "original", 2: "latent-noise", 3: "latent-nothing"}
INPAINT_AREA_CODES = {0: "whole", 1: "masked", "false": "whole", "true": "masked"}  # True == 1


def _file(value: Any, base: Path) -> str:
    """A path relative to the prompt file's folder, which must exist."""
    path = base / Path(_text(value)).expanduser()
    if not path.is_file():
        raise ValueError(f"no such file: {path}")
    return str(path)


@dataclass(frozen=True)
class Key:
    """One prompt-file key: WebUI spelling, the request field it sets, how to read it.

    `flag` is the sdcli option that validate() names, so its messages can be
    reworded with the key the user wrote; `mode` is the mode the key implies.
    """

    name: str
    field: str
    read: Callable[..., Any]
    aliases: tuple[str, ...] = ()
    flag: str | None = None
    mode: str | None = None
    is_path: bool = False


# One row per key. Adding a key (or the request field of a new mode) is one row.
KEYS: tuple[Key, ...] = (
    Key("prompt", "prompt", _text, flag="--prompt"),
    Key("negative_prompt", "negative_prompt", _text, ("negative",), "--negative-prompt"),
    Key("steps", "steps", _whole, flag="--steps"),
    Key("cfg_scale", "cfg_scale", _number, ("cfg",), "--cfg-scale"),
    Key("seed", "seed", _whole, flag="--seed"),
    Key("subseed", "subseed", _whole, ("variation_seed",), "--subseed"),
    Key("subseed_strength", "subseed_strength", _number, ("variation_strength",), "--subseed-strength"),
    Key("width", "width", _whole, flag="--width"),
    Key("height", "height", _whole, flag="--height"),
    Key("batch_size", "batch_size", _whole, flag="--batch-size"),
    Key("n_iter", "count", _whole, ("count",), "--count"),
    Key("sampler_name", "sampler", _text, ("sampler",), "--sampler"),
    Key("scheduler", "schedule", _text, ("schedule", "schedule_type"), "--schedule"),
    Key("clip_skip", "clip_skip", _whole, flag="--clip-skip"),
    Key("sd_model", "model", _text, ("model",), "--model"),
    Key("mode", "mode", _text),
    # Image modes: "part.field" sets a field of the request's nested part (request.PARTS).
    Key("init_image", "init.image", _file, ("init_images", "image"), "--image", mode="img2img", is_path=True),
    Key("denoising_strength", "init.strength", _number, ("strength",), "--strength"),
    Key("resize_mode", "init.resize", _choice(RESIZE_CODES), ("resize",), "--resize"),
    Key("mask", "inpaint.mask", _file, ("mask_image",), "--mask", mode="inpaint", is_path=True),
    Key("mask_blur", "inpaint.mask_blur", _whole, flag="--mask-blur"),
    Key("inpainting_mask_invert", "inpaint.invert_mask", _flag, ("invert_mask",)),
    Key("inpaint_full_res", "inpaint.area", _choice(INPAINT_AREA_CODES), ("inpaint_area",), "--inpaint-area"),
    Key("inpaint_full_res_padding", "inpaint.padding", _whole, ("padding",), "--padding"),
    Key("inpainting_fill", "inpaint.masked_content", _choice(MASKED_CONTENT_CODES), ("masked_content",),
        "--masked-content"),
    *(Key(side, f"outpaint.{side}", _whole, flag=f"--{side}", mode="outpaint") for side in DIRECTIONS),
    Key("fill", "outpaint.fill", _text, ("outpaint_fill",), "--fill"),
)
# WebUI keys with no sdcli meaning: refused by name rather than as unknown.
WEBUI_ONLY = ("styles", "seed_resize_from_h", "seed_resize_from_w",
              "sampler_index", "restore_faces", "tiling", "do_not_save_samples", "do_not_save_grid",
              "outpath_samples", "outpath_grids", "prompt_for_display")


@dataclass(frozen=True)
class Mode:
    """A generation mode: the keys a line in it must give, and its part defaults where they differ."""

    name: str
    needs: tuple[str, ...] = ()
    part_defaults: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)


# One row per mode; later rows win when a line's keys imply several (mask -> inpaint).
MODES: dict[str, Mode] = {m.name: m for m in (
    Mode("txt2img"),
    Mode("img2img", needs=("init_image",)),
    Mode("inpaint", needs=("init_image", "mask")),
    Mode("outpaint", needs=("init_image",), part_defaults={"inpaint": {"mask_blur": 8}}),  # as sdcli outpaint
)}


def _key_table() -> dict[str, Key]:
    return {spelling: k for k in KEYS for spelling in (k.name, *k.aliases)}


@dataclass(frozen=True)
class BatchLine:
    """One valid prompt-file line: the request (seed None = derived) and its model spec."""

    line: int
    request: GenerationRequest
    model: str | None


@dataclass(frozen=True)
class BatchUnit:
    """One pipeline call: `request.batch_size` images of one line, items first..first+size-1."""

    number: int
    line: int
    first: int
    request: GenerationRequest
    model: str | None

    @property
    def items(self) -> range:
        return range(self.first, self.first + self.request.batch_size)


class BatchFileError(UsageError):
    """Every bad line of a prompt file, one `FILE:LINE: reason` per line of the message."""

    def __init__(self, file: Path, problems: list[str]):
        self.problems = problems
        super().__init__(f"{file}: {len(problems)} bad line(s), nothing was run:\n" + "\n".join(problems))


# 1. Reading lines into raw key -> value dicts.

def detect_format(path: Path, lines: list[str]) -> str:
    """jsonl for .jsonl/.ndjson files or a first line starting with '{'; else webui (which reads plain lines too)."""
    if path.suffix.lower() in JSONL_SUFFIXES:
        return "jsonl"
    first = next((s for s in (x.strip() for x in lines) if s and not s.startswith("#")), "")
    return "jsonl" if first.startswith("{") else "webui"


def _webui_pairs(text: str) -> dict[str, Any]:
    """`--key value --key value` -> dict, shell quoting as in the WebUI's script."""
    try:
        tokens = shlex.split(text)
    except ValueError as exc:
        raise ValueError(f"cannot split the line: {exc}") from None
    pairs: dict[str, Any] = {}
    for at in range(0, len(tokens), 2):
        key = tokens[at]
        if not key.startswith("--") or len(key) < 3:
            raise ValueError(f"expected --key before {key!r}")
        if at + 1 >= len(tokens):
            raise ValueError(f"{key} has no value")
        _add(pairs, key[2:], tokens[at + 1])
    return pairs


def _jsonl_pairs(text: str) -> dict[str, Any]:
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not valid JSON: {exc.msg} (column {exc.colno})") from None
    if not isinstance(obj, dict):
        raise ValueError("expected a JSON object like {\"prompt\": \"...\"}")
    pairs: dict[str, Any] = {}
    for key, value in obj.items():
        if value is not None:  # null = use the default
            _add(pairs, key, value)
    return pairs


def _add(pairs: dict[str, Any], key: str, value: Any) -> None:
    name = key.strip().lower().replace("-", "_")
    if name in pairs:
        raise ValueError(f"{name} is given twice")
    pairs[name] = value


READERS: dict[str, Callable[[str], dict[str, Any]]] = {
    "text": lambda text: {"prompt": text},
    "webui": lambda text: _webui_pairs(text) if text.startswith("--") else {"prompt": text},
    "jsonl": _jsonl_pairs,
}


# 2. Raw dicts into validated lines.

def _line_request(pairs: dict[str, Any], defaults: GenerationRequest, default_model: str | None,
                  base: Path) -> tuple[BatchLine | None, list[str]]:
    """Build and check one line; returns (line or None, problems)."""
    table = _key_table()
    problems: list[str] = []
    fields: dict[str, Any] = {}
    implied = "txt2img"
    for name, raw in pairs.items():
        key = table.get(name)
        if key is None:
            if name in WEBUI_ONLY:
                problems.append(f"{name}: this WebUI key is not supported by sdcli")
            else:
                close = difflib.get_close_matches(name, list(table), n=1, cutoff=0.6)
                hint = f"; did you mean {close[0]}?" if close else ""
                problems.append(f"unknown key {name!r}{hint} (keys: {', '.join(k.name for k in KEYS)})")
            continue
        if key.mode and list(MODES).index(key.mode) > list(MODES).index(implied):
            implied = key.mode
        try:
            fields[key.field] = key.read(raw, base) if key.is_path else key.read(raw)
        except ValueError as exc:
            problems.append(f"{key.name}: {exc}")
    mode_name = fields.get("mode", implied)
    mode = MODES.get(mode_name)
    if mode is None:
        problems.append(f"mode: unknown mode {mode_name!r}; choose from {', '.join(MODES)}")
    else:
        given = {key.name: name for name, key in ((n, table.get(n)) for n in pairs) if key and key.field in fields}
        problems += [f"mode {mode.name} needs {need}" for need in mode.needs if need not in given]
        problems += [f"{spelled}: not used by {mode.name} lines" for name, spelled in given.items()
                     if "." in (field := table[name].field) and field.split(".")[0] not in MODE_PARTS[mode.name]]
    if problems:
        return None, problems
    model = fields.pop("model", default_model)
    request = replace(defaults, mode=mode.name, **_parts(defaults, mode, fields),
                      **{k: v for k, v in fields.items() if k in REQUEST_FIELDS and k != "mode"})
    try:
        validate(request)
        if mode.name != "txt2img":
            prepare(request)  # input images are untrusted: decode and check them before anything runs
    except UsageError as exc:
        return None, [_reword(str(exc), pairs)]
    return BatchLine(0, request, model), []


def _parts(defaults: GenerationRequest, mode: Mode, fields: dict[str, Any]) -> dict[str, Any]:
    """The nested request parts (init, inpaint, outpaint) a line's mode needs, from its `part.field` keys."""
    parts = {}
    for part in MODE_PARTS[mode.name]:
        given = {k.split(".", 1)[1]: v for k, v in fields.items() if k.startswith(part + ".")}
        base = getattr(defaults, part)
        values = {**(dataclasses.asdict(base) if base else mode.part_defaults.get(part, {})), **given}
        parts[part] = PARTS[part](**values)
    return parts


def _reword(message: str, pairs: dict[str, Any]) -> str:
    """'--cfg-scale: ...' -> 'cfg_scale: ...' when the line (not the command line) set it."""
    for key in KEYS:
        if key.flag and message.startswith(key.flag + ":"):
            given = next((n for n in (key.name, *key.aliases) if n in pairs), None)
            if given:
                return given + message[len(key.flag):]
    return message


def parse_file(path: Path, fmt: str = "auto", defaults: GenerationRequest | None = None,
               default_model: str | None = None) -> list[BatchLine]:
    """Read and validate a prompt file; raise BatchFileError listing every bad line.

    `defaults` carries the command-line options (its prompt is ignored);
    `default_model` is --model. Paths in lines are relative to the file's folder.
    """
    if fmt not in FORMATS:
        raise UsageError(f"--prompt-format: unknown format {fmt!r}; choose from {', '.join(FORMATS)}")
    text = read_prompt_file(path)
    lines = LINE_BREAK.split(text)  # not str.splitlines: U+2028, U+0085 and form feeds stay inside a line
    reader = READERS[detect_format(path, lines) if fmt == "auto" else fmt]
    defaults = defaults or GenerationRequest(prompt="")
    base = path.parent
    good: list[BatchLine] = []
    problems: list[str] = []
    for number, raw in enumerate(lines, start=1):
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            continue
        try:
            pairs = reader(stripped)
        except ValueError as exc:
            problems.append(f"{path}:{number}: {exc}")
            continue
        line, line_problems = _line_request(pairs, defaults, default_model, base)
        problems += [f"{path}:{number}: {p}" for p in line_problems]
        if line is not None:
            good.append(replace(line, line=number))
    if problems:
        raise BatchFileError(path, problems)
    if not good:
        raise UsageError(f"FILE: {path} has no prompts (only blank or # comment lines)")
    return good


# 3. Lines into numbered pipeline calls with their seeds.

def total_items(lines: list[BatchLine]) -> int:
    return sum(line.request.total_images for line in lines)


def resolve_base_seed(seed: int | None, lines: list[BatchLine]) -> int:
    """The base seed: the one given, or a random one that leaves room for every item."""
    total = total_items(lines)
    if seed is None or seed == -1:
        return random_seed(total)
    check_seed_room("--seed", seed, total)
    return seed


def plan_units(lines: list[BatchLine], base_seed: int) -> list[BatchUnit]:
    """Expand lines into pipeline calls in file order, each with its seeds.

    Item i gets seed base_seed + i unless its line gives a seed S (then S, S+1, ...
    over the line's images). With a variation strength but no variation seed,
    item i's variation seed is base_seed + N + i (N = items in the file, wrapped
    at 2**32), so it differs from every item's seed and is still reproducible.
    """
    units: list[BatchUnit] = []
    total = total_items(lines)
    item = 0
    for line in lines:
        req = line.request
        for batch in range(req.count):
            offset = batch * req.batch_size
            seed = req.seed + offset if req.seed not in (None, -1) else base_seed + item
            subseed = req.subseed
            if req.subseed_strength:
                subseed = (req.subseed + offset if req.subseed not in (None, -1)
                           else (base_seed + total + item) % (MAX_SEED + 1))
            unit = replace(req, seed=seed, subseed=subseed, count=1)
            units.append(BatchUnit(len(units), line.line, item, unit, line.model))
            item += req.batch_size
    return units


def plan_digest(lines: list[BatchLine], pattern: str) -> str:
    """A fingerprint of what the batch makes, so --resume refuses a changed file or options."""
    rows = [[line.line, dataclasses.asdict(line.request), line.model] for line in lines]
    return hashlib.sha256(json.dumps([rows, pattern], sort_keys=True).encode()).hexdigest()[:16]
