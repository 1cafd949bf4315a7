"""The WebUI API's Extras and PNG Info: /sdapi/v1/extra-single-image, extra-batch-images, png-info.

Extras run `sdcli upscale`'s code (job.upscale) with the WebUI's fields (modules/api/models.py
ExtrasBaseRequest; scripts/postprocessing_upscale.py for their meaning): resize_mode 0 scales by
upscaling_resize, 1 scales to upscaling_resize_w x _h by the larger ratio, cropping the centre when
upscaling_crop; upscaler_1 "None" leaves the image as it is; upscaler_2 is blended in at
extras_upscaler_2_visibility. Upscalers are names only (built-ins, the models folder's ESRGAN/), as
every name a request gives. Face restoration (gfpgan/codeformer visibility) is refused: sdcli has none.
The answer keeps the input's text chunks and infotext and adds the "postprocessing"/"extras" chunks.
"""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel, ConfigDict, Field

from sdcli.errors import SdcliError, UsageError
from sdcli.server.engine import Engine
from sdcli.server.payload import Inputs

NO_UPSCALER = ("", "None", "none")
# sdcli upscale's flags in its messages -> the WebUI's extras fields.
FLAG_FIELDS = {"--upscaler": "upscaler_1", "--scale": "upscaling_resize", "--size": "upscaling_resize_w/h"}


class ExtrasRequest(BaseModel):
    """The WebUI's ExtrasBaseRequest (unknown fields ignored)."""

    model_config = ConfigDict(extra="ignore")

    resize_mode: int = 0
    show_extras_results: bool = True
    gfpgan_visibility: float = 0
    codeformer_visibility: float = 0
    codeformer_weight: float = 0
    upscaling_resize: float = 2
    upscaling_resize_w: int = 512
    upscaling_resize_h: int = 512
    upscaling_crop: bool = True
    upscaler_1: str = "None"
    upscaler_2: str = "None"
    extras_upscaler_2_visibility: float = 0
    upscale_first: bool = False


class ExtrasSingleRequest(ExtrasRequest):
    image: str = ""


class FileData(BaseModel):
    data: str
    name: str = ""


class ExtrasBatchRequest(ExtrasRequest):
    imageList: list[FileData] = Field(default_factory=list)  # noqa: N815  (the WebUI's name)


class PngInfoRequest(BaseModel):
    image: str


def _renamed(exc: SdcliError, extra: dict[str, str] | None = None) -> SdcliError:
    """The error with sdcli upscale's flag renamed to the WebUI field."""
    flag, sep, rest = str(exc).partition(": ")
    names = {**FLAG_FIELDS, **(extra or {})}
    return type(exc)(f"{names[flag]}: {rest}" if sep and flag in names else str(exc))


def html_info(params: dict[str, Any]) -> str:
    """The WebUI's html_info: the postprocessing infotext as one HTML paragraph."""
    text = ", ".join(f"{k}: {v}" for k, v in params.items())
    return "<p>" + html.escape(text) + "</p>"


class Extras:
    """One extras request's upscalers, checked before any image is read and loaded once."""

    def __init__(self, engine: Engine, req: ExtrasRequest, max_pixels: int):
        from sdcli.job.upscale import UpscaleOptions, check_upscaler

        for name in ("gfpgan_visibility", "codeformer_visibility"):
            if getattr(req, name) > 0:
                raise UsageError(f"{name}: face restoration is not available in sdcli (no GFPGAN/CodeFormer)")
        if req.resize_mode not in (0, 1):
            raise UsageError(f"resize_mode: {req.resize_mode} is not 0 (scale by) or 1 (scale to)")
        if not 0 <= req.extras_upscaler_2_visibility <= 1:
            raise UsageError(f"extras_upscaler_2_visibility: {req.extras_upscaler_2_visibility:g} is not 0 to 1")
        self.engine, self.req, self.max_pixels = engine, req, max_pixels
        size = (req.upscaling_resize_w, req.upscaling_resize_h) if req.resize_mode == 1 else (0, 0)
        library = engine.folders.library()
        self.steps: list[tuple[Any, Any]] = []  # (UpscaleOptions, UpscalerRef): upscaler 1, then 2
        if req.upscaler_1 in NO_UPSCALER:  # the WebUI's extras do nothing without upscaler 1
            return
        second = req.upscaler_2 not in NO_UPSCALER and req.extras_upscaler_2_visibility > 0
        for field, name in (("upscaler_1", req.upscaler_1), ("upscaler_2", req.upscaler_2))[:2 if second else 1]:
            options = UpscaleOptions(name, req.upscaling_resize, *size, crop=req.upscaling_crop)
            try:
                self.steps.append((options, check_upscaler(options, library, names_only=True)))
            except SdcliError as exc:
                raise _renamed(exc, {"--upscaler": field}) from None

    def check(self, image: Any, field: str) -> None:
        """UsageError naming `field` when the result would be too large (sdcli upscale's limits, the server's)."""
        from sdcli.job.upscale import check_size

        if not self.steps:
            return
        options = self.steps[0][0]
        try:
            check_size(Path(field), image, options)
        except SdcliError as exc:
            raise type(exc)(str(exc).replace(f"IMAGE: {field}", field, 1)) from None
        scale, crop = options.target(*image.size)
        width, height = crop or (int(image.width * scale) // 8 * 8, int(image.height * scale) // 8 * 8)
        if width * height > self.max_pixels:
            raise UsageError(f"{field}: the result would be {width}x{height}, over this server's limit of "
                             f"{self.max_pixels} pixels")

    def run(self, image: Any) -> tuple[Any, dict[str, Any]]:
        """The image upscaled (and blended with upscaler 2) and its postprocessing keys; as it is without upscaler 1."""
        from PIL import Image

        from sdcli.job.upscale import upscale_image

        if not self.steps:
            return image, {}
        engine = self.engine
        results = []
        for options, ref in self.steps:
            upscaler = engine.cache.hires_upscaler(ref, engine.folders, engine.plan)
            results.append(upscale_image(image, upscaler, options))
        result, params = results[0]
        if len(results) > 1:
            second, second_params = results[1]
            result = Image.blend(result, second.convert(result.mode), self.req.extras_upscaler_2_visibility)
            params = {**params, "Postprocess upscaler 2": second_params["Postprocess upscaler"]}
        return result, params


def _open(files: Inputs, name: str, field: str) -> tuple[Any, dict[str, str]]:
    """An uploaded image (RGB, upright) and its text chunks, with the infotext from PNG or EXIF as "parameters"."""
    from sdcli.io.images import open_image
    from sdcli.io.metadata import read_infotext

    path = Path(str(files.paths[name]))
    try:
        image = open_image(path, field)
    except SdcliError as exc:
        raise type(exc)(files.explain(exc)) from None
    texts = {k: v for k, v in image.info.items() if isinstance(k, str) and isinstance(v, str)}
    infotext = read_infotext(path)
    if infotext:
        texts["parameters"] = infotext
    return image, texts


def _encode(image: Any, texts: dict[str, str], params: dict[str, Any]) -> str:
    """A base64 PNG with the input's text chunks and the WebUI's postprocessing/extras chunks."""
    from PIL.PngImagePlugin import PngInfo

    from sdcli.io.metadata import quote

    info = PngInfo()
    chunks = dict(texts)
    if params:
        chunks["postprocessing"] = chunks["extras"] = ", ".join(f"{k}: {quote(v)}" for k, v in params.items())
    for key, value in chunks.items():
        info.add_text(key, value)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", pnginfo=info)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def png_info_of(files: Inputs) -> dict[str, Any]:
    """The WebUI's PNGInfoResponse for an uploaded PNG, JPEG or WebP: its infotext (PNG chunk or EXIF
    UserComment), its other text chunks, and the infotext parsed (Size split into Size-1/Size-2, as the WebUI)."""
    from PIL import Image, UnidentifiedImageError

    from sdcli.io.metadata import parse_infotext, read_infotext

    path = Path(str(files.paths["image"]))
    try:
        with Image.open(path) as im:
            items = {k: v for k, v in im.info.items() if isinstance(k, str) and isinstance(v, str)}
        text = read_infotext(path)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise UsageError(f"image: not a readable image ({exc})") from None
    items.pop("parameters", None)
    if not text:
        return {"info": "", "items": items, "parameters": {}}
    prompt, negative, params = parse_infotext(text)
    parameters: dict[str, Any] = {"Prompt": prompt, "Negative prompt": negative}
    for key, value in params.items():
        width, sep, height = value.partition("x")
        if key in ("Size", "Hires resize") and sep and width.isdigit() and height.isdigit():
            parameters[f"{key}-1"], parameters[f"{key}-2"] = width, height
        else:
            parameters[key] = value
    return {"info": text, "items": items, "parameters": parameters}


def add_extras_routes(app: FastAPI, engine: Engine, max_pixels: int) -> None:
    """POST extra-single-image, extra-batch-images, png-info and (refused) interrogate on `app`."""

    @app.post("/sdapi/v1/extra-single-image")
    def extra_single_image(req: ExtrasSingleRequest) -> dict[str, Any]:
        if not req.image:
            raise UsageError("image: give one base64 image")
        extras = Extras(engine, req, max_pixels)
        with Inputs(image=(req.image, "image")) as files:
            image, texts = _open(files, "image", "image")
            extras.check(image, "image")
            with engine._slot():  # one job at a time, as generation
                result, params = extras.run(image)
        return {"html_info": html_info(params), "image": _encode(result, texts, params) if req.show_extras_results
                else None}

    @app.post("/sdapi/v1/extra-batch-images")
    def extra_batch_images(req: ExtrasBatchRequest) -> dict[str, Any]:
        if not req.imageList:
            raise UsageError("imageList: give at least one {data, name} image")
        extras = Extras(engine, req, max_pixels)
        fields = {f"i{n}": (item.data, f"imageList[{n}]") for n, item in enumerate(req.imageList)}
        with Inputs(**fields) as files:
            opened = [(_open(files, name, field), field) for name, (_, field) in fields.items()]
            for (image, _), field in opened:  # every input checked before any is upscaled
                extras.check(image, field)
            with engine._slot():
                done = [(*extras.run(image), texts) for (image, texts), _ in opened]
        infos = html_info(done[0][1]) if done else ""
        return {"html_info": infos, "images": [_encode(result, texts, params) for result, params, texts in done]
                if req.show_extras_results else []}

    @app.post("/sdapi/v1/interrogate")
    def interrogate(body: dict[str, Any]) -> None:
        """Refused in one line: captioning needs the WebUI's CLIP/BLIP or DeepDanbooru weights, which sdcli has not."""
        model = body.get("model", "clip")
        raise UsageError(f"model: {model!r}: sdcli has no interrogator (the WebUI's CLIP/BLIP and DeepDanbooru "
                         "captioners need model weights sdcli does not have); /sdapi/v1/interrogate is refused")

    @app.post("/sdapi/v1/png-info")
    def png_info(req: PngInfoRequest) -> dict[str, Any]:
        with Inputs(image=(req.image.strip(), "image")) as files:
            return png_info_of(files)
