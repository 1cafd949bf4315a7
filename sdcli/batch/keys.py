"""The prompt-file keys: KEYS, WebUI spellings -> request fields (from the field table), and their readers.

A key's reader turns the raw value (text from a `--key value` line, or a JSON value)
into the request field's value, raising ValueError with the reason; parse.py adds
FILE:LINE and the key's name. Pure: no torch, no file reads but the existence of paths.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sdcli.batch.inputs import is_input_set
from sdcli.request.fields import FIELDS, Field, parse_flag


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
    if isinstance(value, bool):  # JSON lines
        return value
    try:
        return parse_flag(_text(value))
    except ValueError:
        raise ValueError(f"{value!r} is not true/false") from None


def _names(value: Any) -> tuple[str, ...]:
    """One name or file (text, or several separated by commas) or a JSON list of them."""
    items = value if isinstance(value, list) else _text(value).split(",")
    names = tuple(_text(item).strip() for item in items)
    if not names or not all(names):
        raise ValueError(f"{value!r} has an empty name")
    return names


def _file(value: Any, base: Path) -> str:
    """A path relative to the prompt file's folder, which must exist."""
    path = base / Path(_text(value)).expanduser()
    if not path.is_file():
        raise ValueError(f"no such file: {path}")
    return str(path)


def _images(value: Any, base: Path) -> str:
    """An image file, or a folder or glob of images (one item each), relative to the prompt file's folder."""
    path = base / Path(_text(value)).expanduser()
    return str(path) if is_input_set(path) else _file(value, base)


def _files(value: Any, base: Path) -> tuple[str, ...]:
    """Image files (text separated by commas, or a JSON list), each relative to the prompt file's folder."""
    return tuple(_file(name, base) for name in _names(value))


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


# How a key's raw value is read, by the field's kind (a field with the WebUI's numeric codes: _choice).
READERS: dict[str, Callable[..., Any]] = {"int": _whole, "float": _number, "str": _text, "text": _text,
                                         "bool": _flag, "path": _images, "names": _names, "paths": _files}


def _key(row: Field) -> Key:
    read = _choice(row.codes) if row.codes else READERS[row.kind]
    return Key(row.key, row.name, read, row.aliases, row.flag, row.implies,  # type: ignore[arg-type]
               row.kind in ("path", "paths"))


# One key per row of the field table that has one (request.fields), and the checkpoint, which is
# not a request field (a line's model). Adding a key is adding it to its row there.
KEYS: tuple[Key, ...] = (
    *(_key(row) for row in FIELDS if row.key),
    Key("sd_model", "model", _text, ("model",), "--model"),
)
# WebUI keys with no sdcli meaning: refused by name rather than as unknown.
WEBUI_ONLY = ("styles", "seed_resize_from_h", "seed_resize_from_w",
              "sampler_index", "do_not_save_samples", "do_not_save_grid",
              "outpath_samples", "outpath_grids", "prompt_for_display")
