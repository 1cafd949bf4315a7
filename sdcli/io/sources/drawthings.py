"""Draw Things: a JSON object in the XMP packet's exif:UserComment (`c` prompt, `uc` negative, `scale`, `size`
"WxH", `lora` list ...); written here, as sd-parsers reads no XMP."""

from __future__ import annotations

from typing import Any

from sdcli.io.sources.common import BrokenMetadata, Found, clean, load_json, with_loras
from sdcli.io.sources.names import DRAWTHINGS_SAMPLERS

NOTES = ("Draw Things runs its own implementation with its own noise: the same settings give a different image",)


def read(chunks: dict[str, Any]) -> Found | None:
    xmp = chunks.get("XMP")
    if not isinstance(xmp, str) or "Draw Things" not in xmp and "UserComment" not in xmp:
        return None
    comment = _user_comment(xmp)
    if comment is None:
        return None
    data = load_json(comment, "Draw Things XMP UserComment")
    if not isinstance(data, dict):
        raise BrokenMetadata("its Draw Things XMP UserComment is not a JSON object")
    name = str(data.get("sampler", ""))
    sampler, schedule = DRAWTHINGS_SAMPLERS.get(name, (name, None))
    loras = [(str(e.get("file") or e.get("model")), float(e.get("weight", 1.0))) for e in data.get("lora") or []
             if isinstance(e, dict) and (e.get("file") or e.get("model"))]
    parameters = clean({"Steps": data.get("steps"), "Sampler": sampler or None, "Schedule type": schedule,
                        "CFG scale": data.get("scale"), "Seed": data.get("seed"),
                        "Size": str(data["size"]).replace(" ", "") if data.get("size") else None,
                        "Model": str(data["model"]).rsplit(".", 1)[0] if data.get("model") else None,
                        "Denoising strength": data.get("strength") if data.get("strength") not in (None, 1, 1.0)
                        else None, "Shift": data.get("shift") if data.get("shift") not in (None, 1, 1.0) else None})
    unmapped = () if name in DRAWTHINGS_SAMPLERS else (f"sampler {name!r}",)
    return Found("Draw Things", with_loras(str(data.get("c", "")), loras), str(data.get("uc", "")), parameters,
                 {"XMP UserComment": data}, NOTES, unmapped)


def _user_comment(xmp: str) -> str | None:
    """The text of the XMP packet's exif:UserComment (its rdf:Alt's first item), or None."""
    import xml.etree.ElementTree as ET

    try:
        root = ET.fromstring(xmp.strip().strip("\x00"))
    except ET.ParseError as exc:
        raise BrokenMetadata(f"its XMP packet is not valid XML ({exc})") from None
    for element in root.iter():
        if isinstance(element.tag, str) and element.tag.endswith("}UserComment"):
            return "".join(element.itertext()).strip() or None
    return None
