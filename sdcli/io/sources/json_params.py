"""The JSON some tools put where the WebUI puts its infotext (the `parameters` chunk, EXIF UserComment):
Fooocus (`fooocus_scheme` fooocus) and SwarmUI (`sui_image_params`). Neither is an infotext, so
io.metadata's reader hands them here; sd-parsers reads Fooocus, SwarmUI is written here (sd-parsers lacks it).
"""

from __future__ import annotations

import json
from typing import Any


def params_json(chunks: dict[str, Any]) -> dict[str, Any] | None:
    """The `parameters` chunk (or EXIF UserComment) as a JSON object, or None when it is not one."""
    raw = chunks.get("parameters", chunks.get("UserComment"))
    if not isinstance(raw, str) or not raw.lstrip().startswith("{"):
        return None
    try:
        data = json.loads(raw)
    except (json.JSONDecodeError, RecursionError):
        return None
    return data if isinstance(data, dict) else None
