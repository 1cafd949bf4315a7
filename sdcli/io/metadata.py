"""A1111 "parameters" infotext: build, parse, and read/write it in image files."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

# The WebUI's key order. Keys not listed keep their insertion order, before Version.
KEY_ORDER = (
    "Steps", "Sampler", "Schedule type", "CFG scale", "Distilled CFG Scale", "Shift", "Seed", "Face restoration",
    "Size", "Model hash", "Model",
    "VAE hash", "VAE", "Variation seed", "Variation seed strength", "Seed resize from",
    "Denoising strength", "Clip skip", "RNG", "Tiling",
    "Hires sampler", "Hires prompt", "Hires negative prompt", "Hires schedule type", "Hires CFG Scale",
    "Hires upscale", "Hires resize", "Hires steps", "Hires upscaler", "Mask blur", "Inpaint area",
    "Masked area padding", "Masked content", "Lora hashes", "TI hashes",
)
LAST_KEYS = ("Version",)
# Forge adds these after Version (modules/processing.py create_infotext): its Diffusion in Low Bits setting and
# the VAE / text-encoder files as `Module 1`, `Module 2`, ...
AFTER_VERSION = re.compile(r"^(Diffusion in Low Bits|Module \d+)$")

_PAIR = re.compile(r'\s*([\w][\w \-/+]*):\s*("(?:\\.|[^\\"])*"|[^,]*)(?:,|$)')


def quote(value: Any) -> str:
    """Format one value; JSON-quote it when it holds ',', ':' or a newline (WebUI rule)."""
    text = str(value)
    if any(c in text for c in ",:\n") or (text.startswith('"') and text.endswith('"')):
        return json.dumps(text, ensure_ascii=False)
    return text


def unquote(text: str) -> str:
    """Reverse of quote()."""
    text = text.strip()
    if len(text) >= 2 and text[0] == '"' and text[-1] == '"':
        try:
            return str(json.loads(text))
        except json.JSONDecodeError:
            return text
    return text


def order_params(params: dict[str, Any]) -> list[tuple[str, Any]]:
    """Parameters in the WebUI's key order; None values are left out."""
    known = [k for k in KEY_ORDER if k in params]
    extra = [k for k in params if k not in KEY_ORDER and k not in LAST_KEYS and not AFTER_VERSION.match(k)]
    last = [k for k in LAST_KEYS if k in params] + [k for k in params if AFTER_VERSION.match(k)]
    return [(k, params[k]) for k in known + extra + last if params[k] is not None]


def build_infotext(prompt: str, negative_prompt: str, params: dict[str, Any]) -> str:
    """The WebUI's infotext: prompt, optional negative line, one line of key: value pairs."""
    lines = [prompt]
    if negative_prompt:
        lines.append(f"Negative prompt: {negative_prompt}")
    lines.append(", ".join(f"{k}: {quote(v)}" for k, v in order_params(params)))
    return "\n".join(lines)


def with_params(infotext: str, params: dict[str, Any]) -> str:
    """`infotext` with `params` added where the WebUI writes a script's extra_generation_params (before Version)."""
    prompt, negative, written = parse_infotext(infotext)
    return build_infotext(prompt, negative, {**written, **params})


def civitai_flux_fix(line: str) -> str:
    """Forge's fix of Civitai's Flux parameters (modules/infotext_utils.py), on a parameter line that names both
    `Civitai` and `FLUX`: its `Clip skip: 0..8` dropped (Flux has none), `Sampler: Undefined` read as Euler with
    the Simple schedule, and its `CFG scale: X` read as `CFG scale: 1, Distilled CFG Scale: X`."""
    if "Civitai" not in line or "FLUX" not in line:
        return line
    for skip in range(9):
        line = line.replace(f"Clip skip: {skip}, ", "")
    line = line.replace("Sampler: Undefined, ", "Sampler: Euler, Schedule type: Simple, ")
    return line.replace("CFG scale: ", "CFG scale: 1, Distilled CFG Scale: ")


def parse_infotext(text: str, forge_fixes: bool = False) -> tuple[str, str, dict[str, str]]:
    """Parse infotext into (prompt, negative prompt, params as strings).

    As the WebUI does: the last line counts as parameters only when it holds at
    least three `key: value` pairs; otherwise all of it is prompt. `forge_fixes`: Forge's
    reading of Civitai's Flux parameters (civitai_flux_fix) first.
    """
    lines = text.strip().split("\n")
    if forge_fixes and lines:
        lines[-1] = civitai_flux_fix(lines[-1])
    params: dict[str, str] = {}
    pairs = _PAIR.findall(lines[-1]) if lines else []
    if len(pairs) >= 3:
        params = {k.strip(): unquote(v) for k, v in pairs}
        lines = lines[:-1]
    texts = {"prompt": "", "negative": ""}
    part = "prompt"
    for line in (line.strip() for line in lines):  # the WebUI strips every line
        if line.startswith("Negative prompt:"):  # from here on the negative prompt (a later one: its prefix cut)
            part, line = "negative", line.removeprefix("Negative prompt:").strip()
        texts[part] += ("\n" if texts[part] else "") + line  # an empty first line adds nothing, as there
    return texts["prompt"], texts["negative"], params


_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def escape_control(text: str) -> str:
    """Terminal control characters (ESC, CSI, BEL, bidi overrides ...) as visible \\xNN / \\uNNNN escapes.

    Metadata is untrusted: printed raw, it could clear the screen or retitle the window.
    Newlines and tabs stay.
    """
    return _CONTROL.sub(lambda m: f"\\x{ord(m[0]):02x}" if ord(m[0]) < 0x100 else f"\\u{ord(m[0]):04x}", text)


SDCLI_KEY = "sdcli"


def png_info(infotext: str, replay: dict[str, Any] | None = None):
    """A PngInfo with the infotext as "parameters" and, optionally, sdcli's replay record as JSON."""
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    info.add_text("parameters", infotext)  # Pillow switches to iTXt for non-Latin-1 text
    if replay is not None:
        info.add_text(SDCLI_KEY, json.dumps(replay, ensure_ascii=False, sort_keys=True))
    return info


# Output formats: name -> (file suffix, Pillow format). One row a format.
IMAGE_FORMATS = {"png": (".png", "PNG"), "jpeg": (".jpg", "JPEG"), "webp": (".webp", "WEBP")}
EXIF_IFD, USER_COMMENT, IMAGE_DESCRIPTION = 0x8769, 0x9286, 0x010E
MAX_EXIF = 65000  # JPEG's APP1 segment holds at most 64 KiB


def save_image(image: Any, path: str | Path, fmt: str, quality: int, infotext: str,
               replay: dict[str, Any] | None = None) -> None:
    """Save with the infotext where the WebUI puts it: PNG "parameters" chunk, or for JPEG/WebP the
    EXIF UserComment (UNICODE, UTF-16 big-endian, as piexif writes it); sdcli's record goes in a PNG
    chunk or the EXIF ImageDescription (ASCII JSON)."""
    suffix_format = IMAGE_FORMATS[fmt][1]
    if fmt == "png":
        image.save(path, format=suffix_format, pnginfo=png_info(infotext, replay))
        return
    from PIL import Image

    exif = Image.Exif()
    exif.get_ifd(EXIF_IFD)[USER_COMMENT] = b"UNICODE\x00" + infotext.encode("utf-16-be")
    if replay is not None:
        exif[IMAGE_DESCRIPTION] = json.dumps({SDCLI_KEY: replay}, sort_keys=True)  # ensure_ascii: EXIF ASCII
    data = exif.tobytes()
    if len(data) > MAX_EXIF and replay is not None:  # a huge prompt: keep the WebUI infotext, drop the record
        del exif[IMAGE_DESCRIPTION]
        data = exif.tobytes()
    image.convert("RGB").save(path, format=suffix_format, quality=quality, exif=data)


def read_replay_record(path: str | Path) -> dict[str, Any] | None:
    """sdcli's own JSON record from an image it wrote (PNG chunk or EXIF ImageDescription), or None."""
    from PIL import Image

    with Image.open(path) as im:
        raw = im.info.get(SDCLI_KEY)
        if raw is None and im.format in ("JPEG", "WEBP"):
            raw = im.getexif().get(IMAGE_DESCRIPTION)
            try:
                raw = json.loads(raw).get(SDCLI_KEY) if isinstance(raw, str) else None
            except (json.JSONDecodeError, AttributeError):
                raw = None
            raw = json.dumps(raw) if raw is not None else None
    try:
        record = json.loads(raw) if isinstance(raw, str) else None
    except json.JSONDecodeError:
        return None
    return record if isinstance(record, dict) else None


def read_infotext(path: str | Path) -> str | None:
    """The "parameters" text of a PNG (tEXt/iTXt) or JPEG/WebP (EXIF UserComment)."""
    from PIL import Image

    with Image.open(path) as im:
        text = im.info.get("parameters")
        if isinstance(text, str):
            return text
        comment = im.getexif().get_ifd(0x8769).get(0x9286)  # Exif IFD -> UserComment
    if isinstance(comment, bytes):
        return decode_user_comment(comment)
    return comment or None


def decode_user_comment(raw: bytes) -> str | None:
    """EXIF UserComment: 8-byte charset header, then text (the WebUI writes UNICODE)."""
    header, body = raw[:8], raw[8:]
    if header.startswith(b"UNICODE"):
        for enc in ("utf-16-be", "utf-16-le"):
            try:
                text = body.decode(enc)
                if text.isprintable() or "\n" in text:
                    return text
            except UnicodeDecodeError:
                continue
    return body.decode("utf-8", errors="replace").strip("\x00") or None
