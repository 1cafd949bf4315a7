"""A request written back as sdcli's flags (a command line that runs the same job) or as JSON: what
`sdcli replay --dry-run` prints. Pure: the field table's flags, nothing loaded."""

from __future__ import annotations

import dataclasses
import shlex
from typing import Any

from sdcli.request.fields import FIELDS
from sdcli.request.generation import GenerationRequest


def _value(request: GenerationRequest, name: str) -> Any:
    """A field's value ("part.leaf": inside its part; None when the part is absent)."""
    part, _, leaf = name.rpartition(".")
    holder = getattr(request, part) if part else request
    return getattr(holder, leaf, None) if holder is not None else None


def _default(request: GenerationRequest, name: str) -> Any:
    """A field's dataclass default (the value a command line need not give)."""
    part, _, leaf = name.rpartition(".")
    holder = getattr(request, part) if part else request
    field = {f.name: f for f in dataclasses.fields(holder)}.get(leaf) if holder is not None else None
    if field is None or field.default is dataclasses.MISSING:
        return dataclasses.MISSING
    return field.default


def as_command(request: GenerationRequest, model: str | None) -> str:
    """`sdcli MODE PROMPT --flag value ...`: every flag whose value is not the default, model first."""
    words = ["sdcli", request.mode, request.prompt]
    if model:
        words += ["--model", model]
    for row in FIELDS:
        if row.flag is None or row.name in ("prompt", "mode"):
            continue
        value = _value(request, row.name)
        if value is None or value == _default(request, row.name) or value == ():
            continue
        if isinstance(value, bool):
            words.append(row.flag)
        elif isinstance(value, tuple):
            for item in value:
                words += [row.flag, str(item)]
        else:
            words += [row.flag, f"{value:g}" if isinstance(value, float) else str(value)]
    return " ".join(shlex.quote(w) for w in words)


def as_json(request: GenerationRequest, model: str | None) -> dict[str, Any]:
    """The request as JSON-able data, with the model it would run."""
    return {"type": "replay-plan", "model": model, "request": dataclasses.asdict(request)}
