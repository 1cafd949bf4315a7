"""Frozen generation requests and the one place they are validated. No torch here."""

from __future__ import annotations

import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from sdcli.controlnet.units import ControlUnit, validate_units
from sdcli.errors import UsageError
from sdcli.request.fields import MAX_PROMPT_CHARS, MAX_SEED, check_fields, check_text  # noqa: F401 (re-exported)
from sdcli.request.hires import MAX_SIDE, HiresSettings, check_final_size
from sdcli.request.vocabulary import choice_key, parse_reference_scale  # choice_key re-exported for execution/
from sdcli.sampling.samplers import DEFAULT_SAMPLER, SamplerChoice, img2img_walk, resolve_sampler


@dataclass(frozen=True)
class ImageInput:
    """The input image of img2img, inpaint and outpaint (a path: files are read by io.images)."""

    image: str
    strength: float = 0.75
    resize: str = "just"


@dataclass(frozen=True)
class InpaintSettings:
    """Mask and how the masked area is repainted (outpaint uses it with mask=None)."""

    mask: str | None = None
    invert_mask: bool = False
    mask_blur: int = 4
    area: str = "whole"
    padding: int = 32
    masked_content: str = "original"
    resize_mask: bool = False


@dataclass(frozen=True)
class OutpaintSettings:
    """Pixels to add on each side and how the new area is pre-filled."""

    left: int = 0
    right: int = 0
    up: int = 0
    down: int = 0
    fill: str = "edge"

    @property
    def pixels(self) -> tuple[int, int, int, int]:
        return self.left, self.right, self.up, self.down


@dataclass(frozen=True)
class GenerationRequest:
    """What to generate. `width`/`height` None means the model's native size; `steps`, `cfg_scale`, `sampler`,
    `schedule` and `distilled_cfg_scale` None mean the model family's default (with_defaults, in the plan step)."""

    prompt: str
    negative_prompt: str = ""
    steps: int | None = None
    cfg_scale: float | None = None
    seed: int | None = None
    width: int | None = None
    height: int | None = None
    batch_size: int = 1
    count: int = 1
    sampler: str | None = None
    schedule: str | None = None
    clip_skip: int = 1
    subseed: int | None = None
    subseed_strength: float = 0.0
    mode: str = "txt2img"
    init: ImageInput | None = None
    inpaint: InpaintSettings | None = None
    outpaint: OutpaintSettings | None = None
    prediction_type: str | None = None  # "eps" or "v": overrides the model's (None: the model's own or guess)
    refiner: str | None = None  # --refiner MODEL: hands the last steps to this model (SDXL)
    refiner_switch: float = 0.8  # fraction of the steps run by the base model before the refiner takes over
    hires: HiresSettings | None = None  # --hires: the WebUI's hires fix second pass (execution.hires)
    # The WebUI settings that change pixels (sdcli's own loop; see sampling.loop.SamplingOptions).
    rng: str = "cpu"
    emphasis: str = "original"
    eta: float | None = None
    ensd: int = 0
    s_churn: float = 0.0
    s_tmin: float = 0.0
    s_tmax: float = 0.0
    s_noise: float = 1.0
    sigma_min: float = 0.0
    sigma_max: float = 0.0
    tiling: bool = False  # --tiling: the image tiles (execution.tiling: circular padding, as the WebUI)
    controlnets: tuple[ControlUnit, ...] = ()  # --controlnet units (controlnet.units)
    # Flow-model settings (Forge's names): the guidance a guidance-distilled model (Flux dev) is given as an
    # input, the sigma shift of a flow schedule (None: the model's), the text-encoder files that go with a
    # model file that has none (Forge's "VAE / Text Encoder" modules), and how the diffusion model's weights are
    # stored (Forge's "Diffusion in Low Bits", and --quantize: the storage table, request.storage).
    distilled_cfg_scale: float | None = None
    shift: float | None = None
    # ComfyUI's ModelSampling node a replayed graph applied (vocabulary.MODEL_SAMPLINGS; None: the model's own), and
    # its ConditioningZeroOut: the unconditional pass conditioned on zeros shaped as the negative prompt's states.
    model_sampling: str | None = None
    zero_negative: bool = False
    cfg_norm: float | None = None  # ComfyUI's CFGNorm: each latent pixel's guided prediction at most the cond's norm
    text_encoders: tuple[str, ...] = ()
    low_bits: str | None = None
    # `sdcli edit`: the reference images an instruction-editing model (Flux.1 Kontext, Flux.2 klein) sees, as paths.
    references: tuple[str, ...] = ()
    # ComfyUI's edit-node sizing of the references (TextEncodeQwenImageEdit(Plus)): Family.comfy_edit_inputs
    comfy_edit: bool = False
    reference_scale: str | None = None  # ComfyUI's ImageScaleToTotalPixels before each reference ("METHOD MP STEPS")
    quantize_text_encoder: bool = False  # the family's big text encoders quantized as the diffusion model is
    # --restore-faces: the WebUI's face restoration after decoding (models.faces); "none" or None: off.
    restore_faces: str | None = None
    code_former_weight: float = 0.5  # CodeFormer's fidelity weight (0: most restoration, 1: most faithful)
    # --upsample-prompt: the temperature at which the text encoder rewrites the prompt before encoding it (Flux.2
    # dev's caption upsampling, diffusers' caption_upsample_temperature); None: the prompt is encoded as given.
    upsample_prompt: float | None = None

    def __post_init__(self) -> None:
        # A list (JSON, a repeatable flag) or None (a flag not given) of names is kept as a tuple.
        for name in ("text_encoders", "references"):
            if not isinstance(getattr(self, name), tuple):
                object.__setattr__(self, name, tuple(getattr(self, name) or ()))

    @property
    def face_restorer(self) -> str | None:
        """The face restorer's key (gfpgan, codeformer), None when faces are not restored."""
        key = (self.restore_faces or "").strip().lower()
        return None if key in ("", "none") else key

    @property
    def input_image(self) -> str | None:
        """The image a run is made from, as output names and records call it: the init image, else the first
        reference image of an edit; None for txt2img."""
        if self.init is not None:
            return self.init.image
        return self.references[0] if self.references else None

    @property
    def total_images(self) -> int:
        return self.batch_size * self.count

    @property
    def step_count(self) -> int:
        """--steps of a request whose defaulted fields are filled in (with_defaults: the family's, else 20)."""
        if self.steps is None:
            raise ValueError("the request's steps are unset: fill them with with_defaults first")
        return self.steps

    @property
    def steps_run(self) -> int:
        """Denoising steps run, as the WebUI counts them: with an input image int(min(strength, 0.999) x steps) + 1
        (--rng comfy: --steps, as ComfyUI's KSampler; see img2img_walk)."""
        return self.step_count if self.init is None else self.img2img_walk[1] + 1

    @property
    def img2img_walk(self) -> tuple[int, int]:
        """(schedule steps, t_enc) of a run from an input image (samplers.img2img_walk; --rng comfy: ComfyUI's)."""
        if self.init is None:
            raise ValueError("a txt2img request walks its whole schedule")
        return img2img_walk(self.step_count, self.init.strength, choice_key(self.rng) == "comfy")

    def seeds(self) -> list[int]:
        """Seed of each image in run order: image i gets seed + i."""
        if self.seed is None:
            raise ValueError("seed must be resolved first (with_resolved_seed)")
        return [self.seed + i for i in range(self.total_images)]

    def subseeds(self) -> list[int | None]:
        """Variation seed of each image (subseed + i), or None when variation is off."""
        if not self.subseed_strength:
            return [None] * self.total_images
        if self.subseed is None:
            raise ValueError("subseed must be resolved first (with_resolved_seed)")
        return [self.subseed + i for i in range(self.total_images)]

    def with_resolved_seed(self) -> GenerationRequest:
        """Replace random seeds (None or -1) by concrete ones, reported to the user."""
        resolved = self
        if self.seed is None or self.seed == -1:
            resolved = replace(resolved, seed=random_seed(self.total_images))
        if self.subseed_strength and (self.subseed is None or self.subseed == -1):
            resolved = replace(resolved, subseed=random_seed(self.total_images))
        return resolved


# What a request's unset (None) defaulted fields become when the model family sets nothing else: the values
# sdcli has always used (the WebUI's for SD). A family's own (families.base.Family.defaults) win over these.
REQUEST_DEFAULTS: dict[str, Any] = {"steps": 20, "cfg_scale": 7.0, "sampler": DEFAULT_SAMPLER, "schedule": "automatic"}
DEFAULTED = ("steps", "cfg_scale", "sampler", "schedule", "distilled_cfg_scale")  # None = the family's default


def with_defaults(request: GenerationRequest, family: Mapping[str, Any] | None = None,
                  fallback: Mapping[str, Any] | None = None) -> GenerationRequest:
    """`request` with each unset defaulted field given the model family's default (`family`), else the entry
    point's (`fallback`: the WebUI API's Euler), else REQUEST_DEFAULTS; set fields are kept."""
    defaults = {**REQUEST_DEFAULTS, **(fallback or {}), **(family or {})}
    unset = {name: defaults[name] for name in DEFAULTED if getattr(request, name) is None and name in defaults}
    return replace(request, **unset) if unset else request


def random_seed(images: int) -> int:
    """A random first seed that leaves room for `images` seeds (seed + i stays <= MAX_SEED)."""
    return secrets.randbelow(MAX_SEED - images + 2)


def check_seed_room(flag: str, seed: int | None, images: int) -> None:
    """Image i of a run gets seed + i: refuse a first seed that would pass MAX_SEED (one rule everywhere)."""
    if seed is not None and seed != -1 and seed + images - 1 > MAX_SEED:
        raise UsageError(f"{flag}: {seed} + {images} images passes {MAX_SEED}; use a first seed of at most "
                         f"{MAX_SEED - images + 1}")


def validate(request: GenerationRequest) -> SamplerChoice:
    """Check every field, naming the flag and value; return the resolved sampler.

    Each setting's own range and choices are its row of the field table (request.fields); the
    rules here are the ones between settings.
    """
    # 1. Every setting on its own: the request's fields, then those of each part it has. Unset defaulted
    # fields are checked as REQUEST_DEFAULTS (the plan step checks the family's again: job.plan).
    request = with_defaults(request)
    if request.cfg_scale is not None and request.cfg_scale < 0:
        raise UsageError(f"--cfg-scale: {request.cfg_scale} is negative; use 0 or more (7 is usual)")
    check_fields(request)
    if any(not isinstance(name, str) or not name.strip() for name in request.text_encoders):
        raise UsageError("--text-encoder: empty; give a text-encoder file or a name in the models folder")
    missing = [part for part in MODE_PARTS[request.mode] if getattr(request, part) is None]
    if missing:
        raise ValueError(f"a {request.mode} request needs {', '.join(missing)}")
    for part in ("init", "inpaint", "outpaint"):
        check_fields(request, part)

    # 2. The rules between settings.
    check_seed_room("--seed", request.seed, request.total_images)
    if request.subseed_strength:
        check_seed_room("--subseed", request.subseed, request.total_images)
    if choice_key(request.rng) == "comfy" and (request.subseed_strength or request.ensd):
        flag = "--subseed-strength" if request.subseed_strength else "--ensd"
        raise UsageError(f"{flag}: ComfyUI's noise (--rng comfy) has no variation seed or ENSD; use --rng cpu, "
                         "gpu or nv")
    if request.sigma_min and request.sigma_max and request.sigma_min >= request.sigma_max:
        raise UsageError(f"--sigma-min: {request.sigma_min} is not below --sigma-max {request.sigma_max}")
    if request.outpaint is not None and not any(request.outpaint.pixels):
        raise UsageError("--left/--right/--up/--down: nothing to expand; give pixels for at least one side "
                         "(or --expand PX --direction ...)")
    validate_units(request.controlnets)
    check_references(request)
    if request.controlnets and request.refiner:
        raise UsageError("--controlnet: not with --refiner (the refiner's UNet takes no ControlNet residuals)")
    if request.controlnets and request.mode == "outpaint":
        raise UsageError("--controlnet: use it with txt2img, img2img or inpaint")
    if request.hires is not None:
        validate_hires(request)
    return resolve_sampler(*sampler_settings(request))


def sampler_settings(request: GenerationRequest) -> tuple[str, str]:
    """(sampler, schedule) of a request whose defaulted fields are filled in (with_defaults)."""
    if request.sampler is None or request.schedule is None:
        raise ValueError("the request's sampler and schedule are unset: fill them with with_defaults first")
    return request.sampler, request.schedule


# The nested parts of a request, by field name (see request_from_dict).
PARTS: dict[str, type] = {"init": ImageInput, "inpaint": InpaintSettings, "outpaint": OutpaintSettings,
                          "hires": HiresSettings}
# Which request parts each mode needs (the CLI fills them; a batch line may too).
MODE_PARTS: dict[str, tuple[str, ...]] = {
    "txt2img": (),
    "img2img": ("init",),
    "inpaint": ("init", "inpaint"),
    "outpaint": ("init", "inpaint", "outpaint"),
    "edit": (),  # its reference images are a field of their own (references)
}
def with_input_image(request: GenerationRequest, image: str) -> GenerationRequest:
    """`request` made from `image` instead (one input of a folder): its init image, or an edit's first reference."""
    if request.init is not None:
        return replace(request, init=replace(request.init, image=image))
    if request.references:
        return replace(request, references=(image, *request.references[1:]))
    raise ValueError("the request has no input image")


MAX_REFERENCES = 8  # reference images of one edit (each adds its tokens to every network call)


def check_references(request: GenerationRequest) -> None:
    """An edit names 1 to MAX_REFERENCES reference images; other modes none. (What an edit cannot take is
    refused by the plan step, which names the model's family: edit_refusal.)"""
    if request.mode != "edit":
        if request.references:
            raise UsageError("--image: reference images are for sdcli edit; img2img takes one --image")
        for flag, given in (("--comfy-edit", request.comfy_edit), ("--reference-scale", request.reference_scale)):
            if given:
                raise UsageError(f"{flag}: it sizes an edit's reference images; it is for sdcli edit")
        return
    if request.reference_scale is not None:
        try:
            parse_reference_scale(request.reference_scale)
        except ValueError as error:
            raise UsageError(f"--reference-scale: {error}") from None
    if not request.references or any(not isinstance(r, str) or not r.strip() for r in request.references):
        raise UsageError("--image: sdcli edit needs a reference image: give -i IMAGE (repeat it for more)")
    if len(request.references) > MAX_REFERENCES:
        raise UsageError(f"--image: {len(request.references)} reference images; sdcli edit takes at most "
                         f"{MAX_REFERENCES}")


def _hires_of(request: GenerationRequest) -> HiresSettings:
    """The hires part of a request that has one (the hires checks are called only then)."""
    if request.hires is None:
        raise ValueError("the request has no hires settings")
    return request.hires


def hires_choices(request: GenerationRequest) -> tuple[SamplerChoice, SamplerChoice]:
    """The first pass's and the hires pass's resolved samplers; errors name the --hires-* flag."""
    from sdcli.sampling.samplers import resolve_sampler

    settings = _hires_of(request)
    request = with_defaults(request)
    sampler, schedule = sampler_settings(request)
    first = resolve_sampler(sampler, schedule)
    try:
        try:
            second = resolve_sampler(settings.sampler or sampler, settings.schedule or schedule)
        except UsageError:
            if settings.schedule is not None or settings.sampler is None:
                raise
            # The first pass's schedule type does not fit the hires sampler (DDIM after Karras): its own.
            second = resolve_sampler(settings.sampler, "automatic")
    except UsageError as exc:
        raise UsageError(re.sub(r"^--(sampler|schedule):", r"--hires-\1:", str(exc))) from None
    return first, second



def validate_hires(request: GenerationRequest) -> None:
    """Check the hires part of a request (called by request.validate, which checks its prompts' text)."""
    from sdcli.request.fields import check_fields

    s = _hires_of(request)
    if request.mode == "edit":
        return  # refused by the plan step, which names the model's family (edit_refusal)
    if request.mode != "txt2img":
        raise UsageError(f"--hires: hires fix is a second pass of txt2img (as in the WebUI), not of {request.mode}")
    if request.refiner:
        raise UsageError("--hires: a hires pass after --refiner is not supported yet; drop one of them")
    check_fields(request, "hires")  # each setting's range (the field table)
    for side, value in (("width", s.width), ("height", s.height)):
        if not 0 <= value <= MAX_SIDE:  # any value: the latents are cropped to whole latent pixels, as in the WebUI
            raise UsageError(f"--hires-size: {side} {value} is out of range; use 0 to {MAX_SIDE}")
    if not s.upscaler.strip():
        raise UsageError("--hires-upscaler: empty; give an upscaler name (Latent, Lanczos ...) or a file")
    check_hires_networks(request)
    hires_choices(request)
    if request.width and request.height:  # else the model's native size: checked when it is known
        check_final_size(request.width, request.height, s)



_TAG = re.compile(r"<[^<>:]+:[^<>]+>")



def _network_tags(text: str | None) -> set[str]:
    return set(_TAG.findall(text or ""))



def check_hires_networks(request: GenerationRequest) -> None:
    """The WebUI activates a hires prompt's own <lora:...> tags for the second pass; sdcli applies the
    first prompt's add-ons to both passes, so a hires prompt naming other ones is refused."""
    s = _hires_of(request)
    for text, base, flag in ((s.prompt, request.prompt, "--hires-prompt"),
                             (s.negative_prompt, request.negative_prompt, "--hires-negative-prompt")):
        if text is not None and _network_tags(text) != _network_tags(base):
            raise UsageError(f"{flag}: its <lora:...> tags differ from the first pass's; sdcli applies the same "
                             "add-ons to both passes (give the same tags, or none in either)")

