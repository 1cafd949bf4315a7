"""The WebUI's stealth PNG info (the sd_webui_stealth_pnginfo extension): text hidden in the low bits of the
alpha channel (`stealth_pnginfo`, `stealth_pngcomp`: gzip) or of R, G, B (`stealth_rgbinfo`, `stealth_rgbcomp`),
read column by column. Written here: sd-parsers reads only the alpha gzip form, slowly (a Python list of every
pixel); NovelAI writes its JSON the same way.
"""

from __future__ import annotations

from typing import Any

from sdcli.io.sources.common import BrokenMetadata

SIGNATURES = {"alpha": ("stealth_pnginfo", "stealth_pngcomp"), "rgb": ("stealth_rgbinfo", "stealth_rgbcomp")}
MAX_TEXT = 1 << 20  # 1 MiB of text: a longer one (or a gzip bomb) is refused


def read_stealth(image: Any) -> str | None:
    """The hidden text of an open PNG/WebP image, or None when it holds none."""
    import numpy as np

    if image.mode not in ("RGB", "RGBA"):
        return None
    pixels = np.asarray(image)
    planes = {"alpha": pixels[:, :, 3:4]} if image.mode == "RGBA" else {}
    planes["rgb"] = pixels[:, :, :3]
    for mode, plane in planes.items():
        height, channels = plane.shape[0], plane.shape[2]
        first = plane[:, : -(-152 // (height * channels))]  # the columns that hold the signature and the length
        bits = (first.transpose(1, 0, 2).reshape(-1) & 1).astype(np.uint8)  # x outer, y inner, channels
        head = np.packbits(bits[:120]).tobytes().decode("latin-1") if bits.size >= 152 else ""
        if head not in SIGNATURES[mode]:
            continue
        bits = (plane.transpose(1, 0, 2).reshape(-1) & 1).astype(np.uint8)
        length = int.from_bytes(np.packbits(bits[120:152]).tobytes(), "big")
        if length % 8 or 152 + length > bits.size:
            raise BrokenMetadata(f"its stealth info ({head}) says {length} bits, which the image does not hold")
        data = np.packbits(bits[152:152 + length]).tobytes()
        return _decode(data, compressed=head.endswith("comp"), head=head)
    return None


def _decode(data: bytes, compressed: bool, head: str) -> str:
    """The hidden bytes as text (gunzipped, at most MAX_TEXT)."""
    import zlib

    if compressed:
        try:
            inflater = zlib.decompressobj(wbits=31)  # gzip
            data = inflater.decompress(data, MAX_TEXT + 1)
        except zlib.error as exc:
            raise BrokenMetadata(f"its stealth info ({head}) is not valid gzip ({exc})") from None
    if len(data) > MAX_TEXT:
        raise BrokenMetadata(f"its stealth info ({head}) is over {MAX_TEXT} bytes")
    return data.decode("utf-8", errors="replace")

