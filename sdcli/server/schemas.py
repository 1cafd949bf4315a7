"""The WebUI API's request/response shapes (pydantic) and their mapping onto sdcli requests.

Field names, defaults and meanings follow the AUTOMATIC1111 WebUI's modules/api/models.py
(which derives them from its processing classes); unknown fields are ignored, as there.
Features sdcli cannot honour (face restore, styles, scripts other than outpainting)
are refused with a 422 naming the field, never silently dropped.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from sdcli.errors import UsageError
from sdcli.request.fields import FIELDS
from sdcli.request.generation import GenerationRequest, ImageInput, InpaintSettings, OutpaintSettings
from sdcli.request.vocabulary import DIRECTIONS, MASKED_CONTENT_CODES, RESIZE_CODES
from sdcli.server.options import checked, request_fields, vae_name
from sdcli.server.served import AddOns


class Txt2ImgRequest(BaseModel):
    """POST /sdapi/v1/txt2img."""

    model_config = ConfigDict(extra="ignore")

    prompt: str = ""
    negative_prompt: str = ""
    styles: list[str] | None = None
    seed: int = -1
    subseed: int = -1
    subseed_strength: float = 0.0
    seed_resize_from_h: int = -1
    seed_resize_from_w: int = -1
    sampler_name: str | None = None
    sampler_index: str | None = None  # the WebUI's default, Euler: engine.API_DEFAULTS
    scheduler: str | None = None
    batch_size: int = 1
    n_iter: int = 1
    steps: int | None = None  # None: the model family's, else the WebUI API's 50 (engine.API_DEFAULTS)
    cfg_scale: float | None = None  # None: the model family's (7; Flux 1)
    distilled_cfg_scale: float | None = None  # Forge's (3.5 for Flux dev; ignored for models without it, as Forge)
    shift: float | None = None  # sdcli's own (Forge Neo reportedly carries a shift in distilled_cfg_scale)
    upsample_prompt: float | None = None  # sdcli's own: Flux.2 dev's caption upsampling temperature
    width: int = 512
    height: int = 512
    restore_faces: bool | None = None
    tiling: bool | None = None
    enable_hr: bool = False
    denoising_strength: float | None = None  # txt2img: the hires pass's strength (WebUI: 0.7 when unset)
    hr_scale: float = 2.0
    hr_upscaler: str | None = None
    hr_second_pass_steps: int = 0
    hr_resize_x: int = 0
    hr_resize_y: int = 0
    hr_sampler_name: str | None = None
    hr_scheduler: str | None = None
    hr_prompt: str = ""
    hr_negative_prompt: str = ""
    hr_cfg: float | None = None  # Forge's hires CFG (unset: the first pass's)
    hr_distilled_cfg: float | None = None  # Forge's hires distilled CFG (unset: the first pass's)
    refiner_checkpoint: str | None = None  # a served model or a checkpoint name in the models folder
    refiner_switch_at: float | None = None  # sdcli's (and the WebUI UI's) 0.8 when unset
    eta: float | None = None  # None: the server's eta_ancestral / eta_ddim option
    # s_churn, s_tmin, s_tmax, s_noise: ignored, as the WebUI's samplers read them from its options only
    override_settings: dict[str, Any] | None = None
    override_settings_restore_afterwards: bool = True
    infotext: str | None = None  # fills the fields the request does not set (server.infotext)
    force_task_id: str | None = None  # the WebUI's id for its progress API; accepted, not used
    script_name: str | None = None
    script_args: list[Any] = Field(default_factory=list)
    send_images: bool = True
    save_images: bool = False
    alwayson_scripts: dict[str, Any] = Field(default_factory=dict)


class Img2ImgRequest(Txt2ImgRequest):
    """POST /sdapi/v1/img2img: init_images[0] (+ mask: inpaint; + outpainting script: outpaint)."""

    init_images: list[str] | None = None
    resize_mode: int = 0
    denoising_strength: float = 0.75
    mask: str | None = None
    mask_blur: int | None = None
    inpainting_fill: int = 0
    inpaint_full_res: bool | int = True
    inpaint_full_res_padding: int = 0
    inpainting_mask_invert: int = 0
    include_init_images: bool = False


class EditRequest(Txt2ImgRequest):
    """POST /sdcli/v1/edit (sdcli's route; the WebUI API has no edit): txt2img's fields and the reference images of
    an edit by instruction (`sdcli edit -i`), base64. No width/height: the first image's fitted size."""

    images: list[str] | None = None
    mask: str | None = None  # img2img's, refused by name (an edit draws the whole image)
    init_images: list[str] | None = None  # likewise
    width: int | None = None  # type: ignore[assignment]
    height: int | None = None  # type: ignore[assignment]


class ImagesResponse(BaseModel):
    """txt2img/img2img answer: base64 PNGs (infotext in their "parameters" chunk), the request, info JSON."""

    images: list[str] | None = None
    parameters: dict[str, Any]
    info: str


class ProgressResponse(BaseModel):
    progress: float
    eta_relative: float
    state: dict[str, Any]
    current_image: str | None = None
    textinfo: str | None = None


OUTPAINT_SCRIPTS = ("poor man's outpainting", "outpainting mk2")
PROMPTS_SCRIPT, SD_UPSCALE_SCRIPT, XYZ_SCRIPT = "prompts from file or textbox", "sd upscale", "x/y/z plot"
TXT2IMG_SCRIPTS = (PROMPTS_SCRIPT, XYZ_SCRIPT)  # server.scripts runs them (outpainting: img2img_request)
IMG2IMG_SCRIPTS = (*OUTPAINT_SCRIPTS, PROMPTS_SCRIPT, SD_UPSCALE_SCRIPT, XYZ_SCRIPT)


def _refuse_unsupported(req: Txt2ImgRequest) -> None:
    """Fields whose feature sdcli does not have: a 422 naming the field."""
    checks = (
        ("alwayson_scripts", [k for k in req.alwayson_scripts if k.lower() != "controlnet"],
         "sdcli runs the controlnet always-on script only"),
        ("seed_resize_from_w", req.seed_resize_from_w > 0 or req.seed_resize_from_h > 0,
         "seed resize is not supported by sdcli"),
    )
    for name, value, why in checks:
        if value:
            raise UsageError(f"{name}: {why}")
    if req.script_name and req.script_name.lower() not in IMG2IMG_SCRIPTS:
        raise UsageError(f"script_name: script {req.script_name!r} is not supported by sdcli "
                         f"(txt2img knows {', '.join(repr(s) for s in TXT2IMG_SCRIPTS)}; img2img knows "
                         f"{', '.join(repr(s) for s in IMG2IMG_SCRIPTS)})")


def option_fields(req: Txt2ImgRequest, options: dict[str, Any], sampler: str | None) -> dict[str, Any]:
    """The request fields the server's options set, with this request's override_settings over them
    (server.options: CLIP skip, ENSD, eta, RNG, emphasis, sigma settings)."""
    overrides = checked(req.override_settings or {}, "override_settings.")
    return request_fields({**options, **overrides}, sampler)


def settings(req: Txt2ImgRequest) -> dict[str, Any]:
    """The request's own fields the payload gives as they are: the field table's `api` column (request.fields).
    A value the row counts as unset (None; -1 for seeds) leaves the field at its default."""
    values = {}
    for row in FIELDS:
        if row.api and not row.part and row.name not in CONVERTED:
            value = getattr(req, row.api)
            if value not in row.unset:
                values[row.name] = value
    return values


# Fields whose API value is converted (by txt2img_request): the sampler and schedule names.
CONVERTED = ("sampler", "schedule")


def txt2img_request(req: Txt2ImgRequest, options: dict[str, Any], styles: tuple[Any, ...] = ()) -> GenerationRequest:
    """The sdcli request for a WebUI txt2img payload (raises UsageError for what sdcli cannot do); `styles`:
    the server's prompt styles, applied as the WebUI's (request.styles)."""
    from sdcli.request.styles import styled

    _refuse_unsupported(req)
    if req.script_name and req.script_name.lower() not in TXT2IMG_SCRIPTS:
        raise UsageError(f"script_name: {req.script_name!r} works with img2img only")
    sampler = req.sampler_name or req.sampler_index or None
    request = GenerationRequest(
        **{**option_fields(req, options, sampler), **settings(req)}, sampler=sampler,
        schedule=req.scheduler.lower() if req.scheduler else None, hires=_hires(req),
        refiner=None if req.refiner_checkpoint in NO_MODEL else req.refiner_checkpoint,
        refiner_switch=0.8 if req.refiner_switch_at is None else req.refiner_switch_at, low_bits=storage(req, options),
        restore_faces=face_restorer(req, options),
    )
    return styled(request, req.styles or [], styles, "styles", lenient=True)  # the WebUI skips unknown names


def storage(req: Txt2ImgRequest, options: dict[str, Any]) -> str | None:
    """How the diffusion model is stored: Forge's forge_unet_storage_dtype ("bnb-nf4", ...), the request's
    override_settings over the server's option (POST /sdapi/v1/options); "Automatic": the file's own."""
    from sdcli.server.options import BY_KEY

    key = "forge_unet_storage_dtype"
    value = (req.override_settings or {}).get(key)
    if value is not None and not isinstance(value, str):
        raise UsageError(f"override_settings.{key}: {value!r} is not a storage name")
    return BY_KEY[key].to_field(value if value is not None else options.get(key, BY_KEY[key].default))


def face_restorer(req: Txt2ImgRequest, options: dict[str, Any]) -> str | None:
    """restore_faces: true (unset: the face_restoration option, as the WebUI) -> the restorer face_restoration_model
    names (override_settings over the server's options; GFPGAN when neither names one: CodeFormer needs
    spandrel_extra_arches), as the WebUI."""
    from sdcli.request.vocabulary import FACE_RESTORER_LABELS

    overrides = req.override_settings or {}
    wanted = req.restore_faces
    if wanted is None:
        wanted = bool(checked(overrides, "override_settings.").get("face_restoration",
                                                                     options.get("face_restoration", False)))
    if not wanted:
        return None
    where = "override_settings." if "face_restoration_model" in overrides else ""
    name = overrides.get("face_restoration_model", options.get("face_restoration_model"))
    if name in (None, ""):
        return "gfpgan"
    key = str(name).strip().lower()
    if key not in FACE_RESTORER_LABELS or key == "none":
        raise UsageError(f"{where}face_restoration_model: {name!r} is not a face restorer; use GFPGAN or CodeFormer")
    return key


NO_MODEL = (None, "", "None", "none")  # the WebUI's values for "no refiner"

def add_ons(req: Txt2ImgRequest, options: dict[str, Any]) -> AddOns:
    """The request's add-ons by name: sd_vae from override_settings, else the server's options."""
    overrides = req.override_settings or {}
    if "sd_vae" in overrides:
        return AddOns(vae=vae_name(overrides["sd_vae"], "override_settings.sd_vae"))
    return AddOns(vae=vae_name(options.get("sd_vae"), "sd_vae"))


# sdcli's flags in error messages -> the WebUI API fields they come from: the field table's `api` column,
# plus the names and settings that reach a request another way.
FLAG_FIELDS = {
    **{row.flag: row.api for row in FIELDS if row.api and row.flag},
    "--hires-size": "hr_resize_x/hr_resize_y", "--hires-scale/--hires-size": "hr_scale/hr_resize_x/hr_resize_y",
    "--model": "sd_model_checkpoint", "--refiner": "refiner_checkpoint", "--refiner-switch": "refiner_switch_at",
    "--vae": "override_settings.sd_vae", "--clip-skip": "CLIP_stop_at_last_layers",
    "--restore-faces": "restore_faces", "--code-former-weight": "code_former_weight",
    **dict.fromkeys(("--low-bits", "--quantize"), "override_settings.forge_unet_storage_dtype"),
}


def field_message(text: str) -> str:
    """An error message with its leading sdcli flag (`--hires-upscaler: ...`) renamed to the WebUI field."""
    flag, sep, rest = text.partition(": ")
    return f"{FLAG_FIELDS[flag]}: {rest}" if sep and flag in FLAG_FIELDS else text


def _hires(req: Txt2ImgRequest) -> Any:
    """enable_hr and the hr_* fields -> request.hires.HiresSettings (None without enable_hr), as the WebUI
    reads them: empty hr_prompt and "Use same ..." mean the first pass's."""
    from sdcli.request.hires import HiresSettings

    if not req.enable_hr:
        return None
    same = lambda value: None if value in (None, "", "Use same sampler", "Use same scheduler") else value  # noqa: E731
    return HiresSettings(
        scale=req.hr_scale, width=req.hr_resize_x, height=req.hr_resize_y, steps=req.hr_second_pass_steps,
        denoise=0.7 if req.denoising_strength is None else req.denoising_strength,
        upscaler=req.hr_upscaler or "Latent", prompt=same(req.hr_prompt), negative_prompt=same(req.hr_negative_prompt),
        sampler=same(req.hr_sampler_name), schedule=same(req.hr_scheduler) and str(req.hr_scheduler).lower(),
        cfg_scale=req.hr_cfg, distilled_cfg_scale=req.hr_distilled_cfg)


def img2img_request(req: Img2ImgRequest, options: dict[str, Any], image_path: str,
                    mask_path: str | None, styles: tuple[Any, ...] = ()) -> GenerationRequest:
    """The sdcli request for a WebUI img2img payload; the decoded files are already at the given paths."""
    base = txt2img_request(req.model_copy(update={"script_name": None}), options, styles)
    _refuse_unsupported(req)
    if req.resize_mode not in RESIZE_CODES:
        raise UsageError(f"resize_mode: {req.resize_mode} is not supported; use 0 (just resize), 1 (crop) "
                         "or 2 (fill)")
    if req.inpainting_fill not in MASKED_CONTENT_CODES:
        raise UsageError(f"inpainting_fill: {req.inpainting_fill} is not one of 0, 1, 2, 3")
    init = ImageInput(image_path, strength=req.denoising_strength, resize=RESIZE_CODES[req.resize_mode])
    blur = 4 if req.mask_blur is None else req.mask_blur
    if (req.script_name or "").lower() in OUTPAINT_SCRIPTS:  # [pixels, mask_blur, ..., directions]
        pixels, directions = _outpaint_args(req.script_args)
        outpaint = OutpaintSettings(**{side: pixels if side in directions else 0 for side in DIRECTIONS})
        inpaint = InpaintSettings(mask=None, mask_blur=blur, masked_content=MASKED_CONTENT_CODES[req.inpainting_fill])
        return replace(base, mode="outpaint", init=init, inpaint=inpaint, outpaint=outpaint)
    if mask_path is None:
        return replace(base, mode="img2img", init=init)
    inpaint = InpaintSettings(
        mask=mask_path, invert_mask=bool(req.inpainting_mask_invert), mask_blur=blur,
        area="masked" if req.inpaint_full_res else "whole", padding=req.inpaint_full_res_padding,
        masked_content=MASKED_CONTENT_CODES[req.inpainting_fill],
    )
    return replace(base, mode="inpaint", init=init, inpaint=inpaint)


def edit_request(req: EditRequest, options: dict[str, Any], references: tuple[str, ...],
                 styles: tuple[Any, ...] = ()) -> GenerationRequest:
    """The sdcli edit request of an /sdcli/v1/edit payload; its images already written to `references`."""
    if req.script_name:
        raise UsageError(f"script_name: {req.script_name!r}: /sdcli/v1/edit runs no scripts")
    if req.mask is not None:
        raise UsageError("mask: an edit takes no mask; the reference images go in images")
    if req.init_images:
        raise UsageError("init_images: an edit takes no input image to denoise; the reference images go in images")
    if req.alwayson_scripts:
        raise UsageError(f"alwayson_scripts: {', '.join(req.alwayson_scripts)}: not with an edit (one pass of the "
                         "editing model)")
    base = txt2img_request(req, options, styles)
    return replace(base, mode="edit", references=references)


def _outpaint_args(args: list[Any]) -> tuple[int, tuple[str, ...]]:
    """Pixels and sides from the WebUI outpainting scripts' script_args."""
    pixels = next((a for a in args if isinstance(a, int) and not isinstance(a, bool)), 128)
    sides = next((a for a in args if isinstance(a, list)), list(DIRECTIONS))
    sides = tuple(str(s).lower() for s in sides)
    bad = [s for s in sides if s not in DIRECTIONS]
    if bad or not sides:
        raise UsageError(f"script_args: outpainting directions must be among {', '.join(DIRECTIONS)}; got {sides}")
    return int(pixels), sides


def info_json(request: GenerationRequest, items: list[Any], *, model_name: str, model_hash: str,
              job_timestamp: str, version: str) -> dict[str, Any]:
    """The WebUI's `info` object (Processed.js()) for generated `items` (job.generate.GeneratedImage)."""
    first = items[0] if items else None
    return {
        "prompt": request.prompt, "all_prompts": [request.prompt] * len(items),
        "negative_prompt": request.negative_prompt, "all_negative_prompts": [request.negative_prompt] * len(items),
        "seed": first.seed if first else request.seed, "all_seeds": [i.seed for i in items],
        "subseed": first.subseed if first else request.subseed, "all_subseeds": [i.subseed for i in items],
        "subseed_strength": request.subseed_strength,
        "width": first.width if first else request.width, "height": first.height if first else request.height,
        "sampler_name": first.params["Sampler"] if first else request.sampler,
        "cfg_scale": request.cfg_scale, "steps": request.steps, "batch_size": request.batch_size,
        "restore_faces": False, "face_restoration_model": None,
        "sd_model_name": model_name, "sd_model_hash": model_hash,
        "sd_vae_name": first.params.get("VAE") if first else None,
        "sd_vae_hash": first.params.get("VAE hash") if first else None,
        "seed_resize_from_w": -1, "seed_resize_from_h": -1,
        "denoising_strength": request.init.strength if request.init else None,
        "extra_generation_params": {}, "index_of_first_image": 0,
        "infotexts": [i.infotext for i in items], "styles": [], "job_timestamp": job_timestamp,
        "clip_skip": request.clip_skip, "is_using_inpainting_conditioning": False, "version": version,
    }
