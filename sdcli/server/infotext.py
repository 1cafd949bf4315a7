"""The WebUI API's `infotext` field: a request filled from an infotext, as the WebUI's apply_infotext does.

Fields the request sets itself win; every other API field the infotext records is taken from it
(through the field table's `api` and `infotext` columns; Size and Hires resize split into width and
height); the settings it records (Clip skip, ENSD, RNG, ...) go into override_settings unless the
request overrides them already. `enable_hr` follows the WebUI: a denoising strength with a hires key.
The model and VAE it names are not switched to (the request's or the server's are used).
"""

from __future__ import annotations

from typing import Any

from sdcli.errors import UsageError
from sdcli.request.fields import FIELDS
from sdcli.server.options import from_infotext

HIRES_KEYS = ("Hires upscale", "Hires upscaler", "Hires resize")


def _size(value: str) -> tuple[int, int] | None:
    width, sep, height = value.lower().partition("x")
    return (int(width), int(height)) if sep and width.isdigit() and height.isdigit() else None


def infotext_values(text: str, img2img: bool) -> tuple[dict[str, Any], dict[str, Any]]:
    """(API field values, settings by option key) an infotext records."""
    from sdcli.io.metadata import parse_infotext

    prompt, negative, params = parse_infotext(text)
    values: dict[str, Any] = {"prompt": prompt, "negative_prompt": negative}
    hires = "Denoising strength" in params and any(key in params for key in HIRES_KEYS)
    for row in FIELDS:
        if not (row.api and row.infotext and row.read and row.infotext in params) or row.api in values:
            continue
        if row.part == "hires" and (img2img or not hires):
            continue
        try:
            values[row.api] = row.read(params[row.infotext])
        except ValueError:
            raise UsageError(f"infotext: bad {row.infotext!r} value {params[row.infotext]!r}") from None
    if img2img and "Denoising strength" in params:
        try:
            values["denoising_strength"] = float(params["Denoising strength"])
        except ValueError:
            raise UsageError(f"infotext: bad 'Denoising strength' value {params['Denoising strength']!r}") from None
    for key, fields in (("Size", ("width", "height")), ("Hires resize", ("hr_resize_x", "hr_resize_y"))):
        if key in params and (key == "Size" or hires and not img2img):
            size = _size(params[key])
            if size is None:
                raise UsageError(f"infotext: bad {key!r} value {params[key]!r}")
            values.update(zip(fields, size, strict=True))
    if hires and not img2img:
        values["enable_hr"] = True
    return values, from_infotext(params)


def with_infotext(req: Any) -> Any:
    """The payload with the fields it does not set filled from its `infotext` (the payload itself when it has none)."""
    if not req.infotext:
        return req
    values, settings = infotext_values(req.infotext, img2img=hasattr(req, "init_images"))
    given = req.model_fields_set
    update = {k: v for k, v in values.items() if k not in given and k in type(req).model_fields}
    overrides = dict(req.override_settings or {})
    for key, value in settings.items():
        overrides.setdefault(key, value)
    return req.model_copy(update={**update, "override_settings": overrides})
