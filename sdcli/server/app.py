"""`sdcli serve`'s FastAPI app: the AUTOMATIC1111 WebUI API (/sdapi/v1/...) and sdcli's own job endpoint.

Errors keep the WebUI's shapes: FastAPI's 422 `{"detail": [...]}` for malformed
bodies, and the WebUI's `{"error", "detail", "body", "errors"}` for everything else
(422 for requests sdcli refuses, 401 auth, 413 too large, 503 queue full, 500 bugs).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from sdcli import __version__
from sdcli.errors import SdcliError, UsageError
from sdcli.server import controlnet_api, live, schemas, scripts
from sdcli.server import options as opts
from sdcli.server.catalog import add_catalog_routes
from sdcli.server.engine import Cancelled, Engine, QueueFull
from sdcli.server.extras import add_extras_routes
from sdcli.server.infotext import with_infotext
from sdcli.server.options import apply as apply_options
from sdcli.server.options import checked
from sdcli.server.outcome import Generated, Run
from sdcli.server.payload import Inputs, encode_png
from sdcli.server.saving import save_generated
from sdcli.server.security import add_cors, basic_auth
from sdcli.server.served import AddOns


@dataclass(frozen=True)
class Limits:
    """What one request may ask for."""

    max_body_bytes: int = 64 << 20
    max_pixels: int = 2048 * 2048
    max_images: int = 16


class NamedImage(BaseModel):
    """An image file sent by sdcli's client: its file name (no folders) and its bytes, base64."""

    name: str
    image: str


class NativeJob(BaseModel):
    """POST /sdcli/v1/generate: an sdcli GenerationRequest (asdict) and its input images, base64; an edit's
    reference images under their file names (its infotext names them)."""

    request: dict[str, Any]
    model: str | None = None
    init_image: str | None = None
    mask: str | None = None
    references: list[NamedImage] = []
    loras: list[str] = []  # --lora NAME[:WEIGHT], --embedding NAME, --vae NAME: names in the models folder
    embeddings: list[str] = []
    vae: str | None = None


def error_body(exc: Exception, detail: Any) -> dict[str, Any]:
    """The WebUI's error shape (modules/api/api.py handle_exception)."""
    return {"error": type(exc).__name__, "detail": detail, "body": "", "errors": str(detail)}


def create_app(engine: Engine, *, limits: Limits = Limits(), auth: dict[str, str] | None = None,
               flags: dict[str, Any] | None = None, cors_origins: tuple[str, ...] = (),
               cors_origin_regex: str | None = None) -> FastAPI:
    """The app for `engine`; `auth` maps user -> password (HTTP Basic on every route) when given; `flags`:
    `sdcli serve`'s own settings that /sdapi/v1/cmd-flags reports (listen, port); CORS headers only for
    `cors_origins` / `cors_origin_regex`."""
    dependencies = [Depends(basic_auth(auth))] if auth else []
    app = FastAPI(title="sdcli", version=__version__, dependencies=dependencies)
    app.state.engine = engine
    _add_error_handlers(app, limits)
    add_catalog_routes(app, engine, flags)
    add_extras_routes(app, engine, limits.max_pixels)
    controlnet_api.add_routes(app, engine, limits.max_pixels)
    live.add_routes(app, engine)
    add_cors(app, cors_origins, cors_origin_regex)

    def check_limits(request: Any) -> None:
        width, height = request.width or 0, request.height or 0
        if request.hires is not None and width and height:  # the hires pass's size is the one that costs
            from sdcli.request.hires import final_size

            width, height = final_size(width, height, request.hires)
        if width * height > limits.max_pixels:
            raise UsageError(f"width/height: {width}x{height} is over this server's limit of "
                             f"{limits.max_pixels} pixels")
        if request.total_images > limits.max_images:
            raise UsageError(f"batch_size x n_iter: {request.total_images} images is over this server's limit "
                             f"of {limits.max_images} per request")

    def answer(done: Generated, payload: schemas.Txt2ImgRequest, hide: tuple[str, ...] = ()) -> schemas.ImagesResponse:
        model, items = done.model, done.items
        info = schemas.info_json(done.request, items, model_name=model.ref.name, model_hash=model.hash,
                                 job_timestamp=done.job_timestamp, version=f"sdcli {__version__}")
        info.update(scripts.info_of(items, getattr(payload, "styles", None)))  # each image's own prompts, styles
        info.update(done.info)  # every image asked for, made or not (a script's own lists)
        parameters = {**payload.model_dump(), **dict.fromkeys(hide)}  # the WebUI sets them to None
        images = [encode_png(i.image, i.infotext) for i in items] if payload.send_images else []
        return schemas.ImagesResponse(images=images, parameters=parameters, info=json.dumps(info))

    def webui_generate(request: Any, payload: schemas.Txt2ImgRequest, run: Run, model: str | None = None) -> Generated:
        """A WebUI request's job through the engine, in the request's `run`; errors name the WebUI's fields, not
        sdcli's flags."""
        try:
            check_limits(request)
            overridden = (payload.override_settings or {}).get("sd_model_checkpoint")
            # A model in override_settings is this request's only (unless not restored afterwards), as the WebUI's.
            switch = not overridden or model is not None or not payload.override_settings_restore_afterwards
            done = engine.generate(request, model or overridden, schemas.add_ons(payload, engine.options), webui=True,
                                   switch=switch, run=run)
            if payload.save_images:
                save_generated(engine, done, {**opts.current(engine), **checked(payload.override_settings or {})})
            if payload.override_settings and not payload.override_settings_restore_afterwards:
                apply_options(engine, payload.override_settings, "override_settings.")  # kept, as the WebUI's
            return done
        except SdcliError as exc:
            raise type(exc)(schemas.field_message(str(exc))) from None

    def run_webui(request: Any, payload: schemas.Txt2ImgRequest) -> Generated:
        """The request, or the selectable script it names (server.scripts), through webui_generate: its jobs share
        one run, so an /interrupt stops the rest of them (the WebUI's state.begin is once per request)."""
        with engine.request() as run:
            return _run_webui(request, payload, run)

    def _run_webui(request: Any, payload: schemas.Txt2ImgRequest, run: Run) -> Generated:
        def job(one: Any, model: str | None = None) -> Generated:
            return webui_generate(one, payload, run, model)

        script = (payload.script_name or "").lower()
        if script == schemas.PROMPTS_SCRIPT:
            return scripts.run_prompts(request, payload.script_args, job, limits.max_images)
        if script == schemas.XYZ_SCRIPT:
            tab = "img2img" if isinstance(payload, schemas.Img2ImgRequest) else "txt2img"
            return scripts.run_xyz(engine, request, payload.script_args, job, tab, limits.max_images)
        if script == schemas.SD_UPSCALE_SCRIPT:
            return scripts.run_sd_upscale(engine, request, payload.script_args, job, limits.max_pixels)
        return job(request)

    @app.post("/sdapi/v1/txt2img", response_model=schemas.ImagesResponse)
    def txt2img(payload: schemas.Txt2ImgRequest) -> Any:
        try:
            payload = with_infotext(payload)
            request = schemas.txt2img_request(payload, engine.options, engine.styles)
            units = controlnet_api.read_units(payload.alwayson_scripts)
        except SdcliError as exc:
            raise type(exc)(schemas.field_message(str(exc))) from None
        with Inputs(**controlnet_api.uploads(units)) as files:
            try:
                request = replace(request, controlnets=controlnet_api.control_units(units, files.paths))
                done = run_webui(request, payload)
            except SdcliError as exc:
                raise type(exc)(controlnet_api.field_message(files.explain(exc))) from None
        return answer(done, payload)

    @app.post("/sdapi/v1/img2img", response_model=schemas.ImagesResponse)
    def img2img(payload: schemas.Img2ImgRequest) -> Any:
        if not payload.init_images:
            raise UsageError("init_images: give one base64 image")
        if len(payload.init_images) > 1:
            raise UsageError(f"init_images: sdcli takes one input image per request, not {len(payload.init_images)} "
                             "(an edit's reference images go to POST /sdcli/v1/edit)")
        units = controlnet_api.read_units(payload.alwayson_scripts)
        with Inputs(init=(payload.init_images[0], "init_images[0]"), mask=(payload.mask, "mask"),
                    **controlnet_api.uploads(units)) as files:
            try:
                payload = with_infotext(payload)
                init = files.paths["init"]
                assert init is not None  # init_images[0] was checked above
                request = schemas.img2img_request(payload, engine.options, init, files.paths["mask"], engine.styles)
                request = replace(request, controlnets=controlnet_api.control_units(units, files.paths,
                                                                                    files.paths["init"]))
                done = run_webui(request, payload)
            except SdcliError as exc:
                raise type(exc)(controlnet_api.field_message(schemas.field_message(files.explain(exc)))) from None
        hide = () if payload.include_init_images else ("init_images", "mask")
        return answer(done, payload, hide)

    @app.post("/sdcli/v1/edit", response_model=schemas.ImagesResponse)
    def edit(payload: schemas.EditRequest) -> Any:
        """sdcli's edit route in the WebUI API's dialect: txt2img's fields plus `images`, the reference images
        (named image-0.png, image-1.png, ... in the infotext); a model that cannot edit is a 422 naming it."""
        if not payload.images:
            raise UsageError("images: give the reference image(s) of the edit, base64")
        with Inputs() as files:
            try:
                payload = with_infotext(payload)
                references = files.add_references([(f"image-{i}.png", data) for i, data in enumerate(payload.images)],
                                                  "images")
                request = schemas.edit_request(payload, engine.options, references, engine.styles)
                _check_editor(engine.find((payload.override_settings or {}).get("sd_model_checkpoint")))
                with engine.request() as run:
                    done = webui_generate(request, payload, run)
            except SdcliError as exc:
                message = schemas.field_message(files.explain(exc))
                raise type(exc)("images: " + message.removeprefix("--image: ") if message.startswith("--image: ")
                                else message) from None
        return answer(done, payload, ("images",))

    @app.post("/sdcli/v1/generate")
    def native(job: NativeJob) -> Any:
        """sdcli's own client (`--server`): the exact request in, raw images and their records out."""
        from sdcli.request.generation import DEFAULTED
        from sdcli.request.records import request_from_dict

        with Inputs(init=(job.init_image, "--image"), mask=(job.mask, "--mask")) as files:
            try:
                request = request_from_dict(job.request)
            except (TypeError, ValueError) as exc:
                raise UsageError(f"request: not an sdcli request ({exc})") from None
            if request.controlnets:  # they name files on the client's machine
                raise UsageError("request: ControlNet units are not run by the server")
            if request.init is not None:
                request = _with_paths(request, files.paths)
            if request.references or job.references:  # an edit: its references as sent
                if len(job.references) != len(request.references):
                    raise UsageError(f"--image: the request names {len(request.references)} reference images and "
                                     f"{len(job.references)} were sent")
                request = replace(request, references=files.add_references(
                    [(r.name, r.image) for r in job.references], "--image"))
            try:
                check_limits(request)
                done = engine.generate(request, job.model, AddOns(tuple(job.loras), tuple(job.embeddings), job.vae))
            except SdcliError as exc:
                raise type(exc)(files.explain(exc)) from None
        plan, model, request, items = engine.plan, done.model, done.request, done.items
        return {"model": {"name": model.ref.name, "source": model.ref.source, "hash": model.hash,
                          "is_demo": model.ref.is_demo},
                # What a local run records: the refiner and hires upscaler as resolved, the add-ons' files.
                "refiner": request.refiner, "hires_upscaler": request.hires.upscaler if request.hires else None,
                # The settings the request left to the model family, as they were run (job.plan).
                "defaults": {name: getattr(request, name) for name in DEFAULTED},
                "assets": done.plan.extras.record(),
                "device": plan.device, "dtype": plan.dtype, "seed": request.seed, "subseed": request.subseed,
                "items": [{"png": encode_png(i.image, None), "index": i.index, "seed": i.seed, "subseed": i.subseed,
                           "width": i.width, "height": i.height, "params": i.params, "infotext": i.infotext}
                          for i in items]}

    @app.get("/sdapi/v1/samplers")
    def samplers() -> list[dict[str, Any]]:
        from sdcli.sampling.samplers import SAMPLERS

        return [{"name": s.name, "aliases": list(s.aliases), "options": {}} for s in SAMPLERS]

    @app.get("/sdapi/v1/schedulers")
    def schedulers() -> list[dict[str, Any]]:
        from sdcli.sampling.samplers import ALL_SCHEDULE_LABELS

        rows = {"automatic": "Automatic", **ALL_SCHEDULE_LABELS}  # the WebUI's, then the models' own (Flux2)
        return [{"name": key.replace(" ", "_"), "label": label, "aliases": None, "default_rho": -1,
                 "need_inner_model": False} for key, label in rows.items()]

    @app.get("/sdapi/v1/sd-models")
    def sd_models() -> list[dict[str, Any]]:
        """The served models, then the models folder's other checkpoints (WebUI titles; a hash once known)."""
        from sdcli.models.hashes import known_model_hash

        rows = [{"title": m.title, "model_name": m.ref.name, "hash": m.hash, "sha256": None,
                 "filename": str(m.ref.path), "config": None} for m in engine.models]
        served = {Path(m.ref.path).resolve() for m in engine.models}
        for checkpoint in engine.checkpoints.all():
            path = checkpoint.entry.path
            if path.resolve() in served:
                continue
            short = known_model_hash(path)
            rows.append({"title": f"{checkpoint.label} [{short}]" if short else checkpoint.label,
                         "model_name": checkpoint.label.rsplit(".", 1)[0].replace("/", "_") if path.is_file()
                         else checkpoint.label.replace("/", "_"), "hash": short, "sha256": None,
                         "filename": str(path), "config": None})
        return rows

    @app.get("/sdapi/v1/scripts")
    def script_list() -> dict[str, list[str]]:
        return {"txt2img": [*schemas.TXT2IMG_SCRIPTS, controlnet_api.SCRIPT],
                "img2img": [*schemas.IMG2IMG_SCRIPTS, controlnet_api.SCRIPT]}

    return app


def _check_editor(served: Any) -> None:
    """/sdcli/v1/edit on a model whose family cannot edit by instruction: one line naming the model and field."""
    from sdcli.job.family_rules import editing_families, family_of

    family = family_of(served.ref)
    if family is not None and not family.capabilities.references:
        raise UsageError(f"images: the model {served.title!r} is a {family.label} model, which cannot edit by "
                         f"instruction; edit with a model of: {editing_families()}")


def _with_paths(request: Any, paths: dict[str, str | None]) -> Any:
    """The request with its input image (and mask) pointing at the uploaded files."""
    from dataclasses import replace

    if paths["init"] is None:
        raise UsageError("--image: the request needs an input image and none was sent")
    request = replace(request, init=replace(request.init, image=paths["init"]))
    if request.inpaint is not None and request.inpaint.mask is not None:
        if paths["mask"] is None:
            raise UsageError("--mask: the request needs a mask and none was sent")
        request = replace(request, inpaint=replace(request.inpaint, mask=paths["mask"]))
    return request


def _add_error_handlers(app: FastAPI, limits: Limits) -> None:
    @app.middleware("http")
    async def limit_body(request: Request, call_next: Any) -> Any:
        if request.method in ("POST", "PUT"):
            length = request.headers.get("content-length")
            exc = HTTPException(413, "request body too large")
            if length is None and request.headers.get("transfer-encoding"):
                return JSONResponse(error_body(exc, "send a Content-Length header"), status_code=411)
            if length is not None and (not length.isdigit() or int(length) > limits.max_body_bytes):
                return JSONResponse(error_body(exc, f"request body is over this server's limit of "
                                                    f"{limits.max_body_bytes} bytes"), status_code=413)
        return await call_next(request)

    @app.exception_handler(SdcliError)
    async def refused(request: Request, exc: SdcliError) -> JSONResponse:
        if isinstance(exc, QueueFull):
            return JSONResponse(error_body(exc, str(exc)), status_code=503,
                                headers={"Retry-After": str(request.app.state.engine.retry_after())})
        status = 499 if isinstance(exc, Cancelled) else 422  # 499: nobody reads it (nginx's "client closed")
        return JSONResponse(error_body(exc, str(exc)), status_code=status)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        return JSONResponse(error_body(exc, exc.detail), status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(Exception)
    async def bug(request: Request, exc: Exception) -> JSONResponse:
        detail = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        return JSONResponse(error_body(exc, detail), status_code=500)

