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

from sdcli.batch.inputs import expand_request, is_input_set
from sdcli.batch.keys import KEYS, WEBUI_ONLY, Key
from sdcli.batch.source import LINE_BREAK, read_prompt_file
from sdcli.errors import UsageError
from sdcli.io.images import prepare
from sdcli.request.generation import (
    MAX_SEED,
    MODE_PARTS,
    PARTS,
    GenerationRequest,
    check_seed_room,
    random_seed,
    validate,
)
from sdcli.request.records import request_to_dict
from sdcli.request.vocabulary import low_bits_label

FORMATS = ("auto", "text", "webui", "jsonl")
JSONL_SUFFIXES = (".jsonl", ".ndjson")
REQUEST_FIELDS = frozenset(f.name for f in dataclasses.fields(GenerationRequest))


@dataclass(frozen=True)
class Mode:
    """A generation mode: the keys a line in it must give, and its part defaults where they differ."""

    name: str
    needs: tuple[str, ...] = ()
    part_defaults: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)
    optional: tuple[str, ...] = ()  # parts a line may turn on with its `part.enable` key (txt2img: hires)


# One row per mode; later rows win when a line's keys imply several (mask -> inpaint).
MODES: dict[str, Mode] = {m.name: m for m in (
    Mode("txt2img", optional=("hires",)),
    Mode("img2img", needs=("init_image",)),
    Mode("inpaint", needs=("init_image", "mask")),
    Mode("outpaint", needs=("init_image",), part_defaults={"inpaint": {"mask_blur": 8}}),  # as sdcli outpaint
    Mode("edit", needs=("reference_images",)),  # as sdcli edit
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
                  base: Path) -> tuple[list[BatchLine], list[str]]:
    """Build and check one line; returns (its lines: several for a folder or glob of images, problems)."""
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
            continue
        if key.field == "low_bits" and name.replace("-", "_") != "quantize" and isinstance(fields["low_bits"], str):
            fields["low_bits"] = low_bits_label(fields["low_bits"])  # --low-bits nf4: refused as --low-bits
    mode_name = fields.get("mode", implied)
    mode = MODES.get(mode_name)
    if mode is None:
        problems.append(f"mode: unknown mode {mode_name!r}; choose from {', '.join(MODES)}")
    else:
        if fields.get("hires.enable") and "init.strength" in fields and "hires" in mode.optional:
            fields.setdefault("hires.denoise", fields.pop("init.strength"))  # the WebUI's txt2img meaning
        given = {key.name: name for name, key in ((n, table.get(n)) for n in pairs) if key and key.field in fields}
        problems += [f"mode {mode.name} needs {need}" for need in mode.needs if need not in given]
        problems += [f"{spelled}: not used by {mode.name} lines" for name, spelled in given.items()
                     if "." in (field := table[name].field)
                     and field.split(".")[0] not in (*MODE_PARTS[mode.name], *mode.optional)]
        problems += [f"{spelled}: needs enable_hr true" for name, spelled in given.items()
                     if table[name].field.startswith("hires.") and table[name].field != "hires.enable"
                     and not fields.get("hires.enable") and "hires" in mode.optional]
    if problems:
        return [], problems
    model = fields.pop("model", default_model)
    request = replace(defaults, mode=mode.name, **_parts(defaults, mode, fields),
                      **{k: v for k, v in fields.items() if k in REQUEST_FIELDS and k != "mode"})
    try:
        validate(request)
        if request.init is not None and is_input_set(request.init.image):
            # One line per image (images decoded when run: a corrupt one fails its item only, as in img2img -i DIR).
            return [BatchLine(0, r, model) for r in expand_request(request).requests], []
        if request.inpaint is not None and request.inpaint.mask and is_input_set(request.inpaint.mask):
            raise UsageError("--mask: a folder or glob of masks needs a folder or glob of input images")
        if mode.name != "txt2img":
            prepare(request)  # input images are untrusted: decode and check them before anything runs
    except UsageError as exc:
        return [], [_reword(str(exc), pairs)]
    return [BatchLine(0, request, model)], []


def _parts(defaults: GenerationRequest, mode: Mode, fields: dict[str, Any]) -> dict[str, Any]:
    """The nested request parts (init, inpaint, outpaint) a line's mode needs, and the optional ones it turns
    on (hires), from its `part.field` keys."""
    parts = {}
    for part in MODE_PARTS[mode.name]:
        given = {k.split(".", 1)[1]: v for k, v in fields.items() if k.startswith(part + ".")}
        base = getattr(defaults, part)
        values = {**(dataclasses.asdict(base) if base else mode.part_defaults.get(part, {})), **given}
        parts[part] = PARTS[part](**values)
    for part in mode.optional:  # on with `part.enable` true (or in the defaults), off with false
        given = {k.split(".", 1)[1]: v for k, v in fields.items() if k.startswith(part + ".")}
        enable, base = given.pop("enable", None), getattr(defaults, part)
        if enable is False or (enable is None and base is None):
            parts[part] = None
        else:
            parts[part] = PARTS[part](**{**(dataclasses.asdict(base) if base else {}), **given})
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
        found, line_problems = _line_request(pairs, defaults, default_model, base)
        problems += [f"{path}:{number}: {p}" for p in line_problems]
        good += [replace(line, line=number) for line in found]
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
    rows = [[line.line, request_to_dict(line.request), line.model] for line in lines]
    return hashlib.sha256(json.dumps([rows, pattern], sort_keys=True).encode()).hexdigest()[:16]
