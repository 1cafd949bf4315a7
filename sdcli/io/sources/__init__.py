"""Other tools' image metadata, read into one shape: the WebUI's keys where they map, the tool's own beside.

One module per tool; READERS is the table dispatch walks, first match wins. Each reader gets the
image's text chunks (PNG tEXt/iTXt/zTXt, EXIF UserComment as "UserComment", XMP as "XMP") and
returns a Found, None when the image is not its tool's, or raises BrokenMetadata (one line naming
the file's chunk and what is wrong). The WebUI's own infotext is read by io.metadata; `sd-parsers`
reads InvokeAI, NovelAI and Fooocus (imported inside functions: `sdcli --help` stays light).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from sdcli.io.sources import comfyui, drawthings, fooocus, invokeai, novelai, swarmui
from sdcli.io.sources.common import BrokenMetadata, Found, load_json

__all__ = ["READERS", "BrokenMetadata", "Found", "image_chunks", "read_chunks", "read_other", "webui_generator"]


# Tool -> its reader, in the order they are tried (the first that recognises an image reads it).
READERS: tuple[tuple[str, Callable[[dict[str, Any]], Found | None]], ...] = (
    ("ComfyUI", comfyui.read), ("InvokeAI", invokeai.read), ("NovelAI", novelai.read), ("SwarmUI", swarmui.read),
    ("Fooocus", fooocus.read), ("Draw Things", drawthings.read))


COMFY_EXIF_TAGS = (0x0110, 0x010F, 0x010E)  # comfy_extras/nodes_images.py SaveAnimatedWEBP: Model, Make, down


def read_chunks(chunks: dict[str, Any]) -> Found | None:
    """The first tool whose metadata the chunks hold (READERS order), or None."""
    for tool, reader in READERS:
        try:
            found = reader(chunks)
        except (ValueError, TypeError, AttributeError, KeyError, IndexError, RecursionError) as exc:
            # a field of an unexpected kind (a list where a number belongs ...): one line, never a traceback
            raise BrokenMetadata(f"its {tool} metadata has a value sdcli cannot read ({type(exc).__name__}: "
                                 f"{exc})") from None
        if found is not None:
            return found
    return None


def image_chunks(image: Any) -> dict[str, Any]:
    """An open image's text chunks, EXIF UserComment ("UserComment") and XMP ("XMP"), as text."""
    from sdcli.io.metadata import decode_user_comment

    chunks: dict[str, Any] = {k: v for k, v in image.info.items() if isinstance(k, str) and isinstance(v, str)}
    xmp = image.info.get("xmp") or image.info.get("XML:com.adobe.xmp")
    if isinstance(xmp, bytes):
        xmp = xmp.decode("utf-8", errors="replace")
    if isinstance(xmp, str):
        chunks["XMP"] = xmp
    exif = image.getexif()
    for tag in COMFY_EXIF_TAGS:  # ComfyUI's WebP: "prompt:{...}" in Model, "workflow:{...}" in Make
        key, _, value = str(exif.get(tag, "")).partition(":")
        if key in ("prompt", "workflow") and value and key not in chunks:
            chunks[key] = value
    comment = exif.get_ifd(0x8769).get(0x9286)
    if isinstance(comment, bytes):
        comment = decode_user_comment(comment)
    if isinstance(comment, str) and comment:
        chunks["UserComment"] = comment
    return chunks


def webui_generator(parameters: dict[str, str], has_record: bool, stealth: bool = False) -> str:
    """Who wrote a WebUI-style infotext: sdcli (its record beside it), Forge (its `f` versions), the WebUI."""
    if has_record:
        return "sdcli"
    name = "Forge" if parameters.get("Version", "").startswith("f") else "WebUI"
    return f"{name} (stealth PNG info)" if stealth else name


def read_other(image: Any, infotext: str | None) -> tuple[str | None, Found | None, bool]:
    """What an open image holds besides a WebUI infotext: (infotext, Found, whether it came from stealth bits).

    A `parameters` chunk that is JSON (Fooocus, SwarmUI) is no infotext; with neither, the stealth bits of
    a PNG/WebP are tried (a WebUI infotext, or NovelAI's JSON).
    """
    from sdcli.io.sources.json_params import params_json
    from sdcli.io.sources.stealth import read_stealth

    chunks = image_chunks(image)
    if infotext is not None and params_json(chunks) is None:
        return infotext, None, False
    found = read_chunks(chunks)
    if found is not None or image.format not in ("PNG", "WEBP"):
        return None, found, False
    hidden = read_stealth(image)
    if hidden is None:
        return None, None, False
    data = None
    if hidden.lstrip().startswith("{"):
        data = load_json(hidden, "stealth info")
    if isinstance(data, dict):  # NovelAI's chunks, hidden
        return None, read_chunks({k: v if isinstance(v, str) else json.dumps(v) for k, v in data.items()}), True
    return hidden, None, True
