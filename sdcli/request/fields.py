"""The field table: each WebUI setting of a request declared once (FIELDS, one Field a row).

A row names the request field it sets and, where the setting has them: sdcli's flag, the
allowed range or choices (request.validate checks them), the WebUI infotext key (how it is
written and read back), the prompt-file key and its aliases, the X/Y/Z axis and the WebUI
API field. validate(), the infotext writer (job.generate) and reader (io.replay), the
prompt-file keys (batch.keys), the X/Y/Z axes (batch.xyz), the server (server.schemas) and
the CLI's request flags are derived from it, so a new WebUI setting is one row plus its
behaviour. Pure: no torch, no typer.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sdcli.errors import UsageError
from sdcli.request.modules import module_params
from sdcli.request.vocabulary import (
    DIRECTIONS,
    EMPHASES,
    EMPHASIS_LABELS,
    FACE_RESTORER_CODES,
    FACE_RESTORER_LABELS,
    INPAINT_AREA_CODES,
    INPAINT_AREAS,
    LOW_BITS,
    MASKED_CONTENT_CODES,
    MASKED_CONTENTS,
    MODEL_SAMPLINGS,
    OUTPAINT_FILLS,
    PREDICTION_TYPES,
    RESIZE_CODES,
    RESIZE_MODES,
    RNG_LABELS,
    RNG_SOURCES,
    choice_key,
    low_bits_key,
)
from sdcli.request.written import (
    Written,
    differs,
    distilled_written,
    ensd_written,
    eta_written,
    hires_distilled_written,
    hires_pass,
    low_bits_written,
    outpaint_sides,
    taken,
)

if TYPE_CHECKING:
    pass

MAX_SEED = 2**32 - 1
MAX_PROMPT_CHARS = 20000  # far past CLIP's useful length (75 tokens a chunk); README "Limits"
PARTS = ("init", "inpaint", "outpaint", "hires")  # the request's optional parts ("part.field" rows)


@dataclass(frozen=True)
class Field:
    """One WebUI setting: where it lives in a request and every name it has outside it.

    `name` is the request field ("steps") or "part.field" inside an optional part ("init.strength");
    a row of a part that is absent is neither checked nor written. `kind` (int, float, str, bool,
    text: a prompt, path: an input file) says how a value is read from text (prompt files, X/Y/Z).
    Values in `unset` (always None) mean "not given" and are not checked.
    """

    name: str
    kind: str = "str"
    flag: str | None = None  # sdcli's flag; validate()'s messages name it
    range: tuple[float, float] | None = None
    bounds: str = "[]"  # "(]": more than the low end; "()": more than low and less than high
    note: str = ""  # after the allowed range in an out-of-range message
    fmt: str = ""  # format spec of the value and range in messages ("g": 2.0 -> 2)
    multiple_of: int = 0
    choices: Collection[str] = ()
    normalise: Callable[[str], str] | None = None  # spelling -> choice (case, '-', '_')
    unset: tuple[Any, ...] = (None,)
    infotext: str | None = None  # the WebUI infotext key
    write: Callable[[Written], Any] | None = None  # its value for one image; None: left out
    key_for: Callable[[Written], str] | None = None  # the key when it depends on the image (Eta / Eta DDIM)
    read: Callable[[str], Any] | None = None  # infotext text -> value; None: not read back
    read_aliases: tuple[str, ...] = ()  # other infotext keys read into this field
    key: str | None = None  # prompt-file key (the WebUI's "Prompts from file" / API spelling)
    aliases: tuple[str, ...] = ()
    codes: dict[Any, str] | None = None  # the WebUI's numeric codes a prompt-file key also takes
    implies: str | None = None  # the mode a prompt-file line with this key is in
    axis: str | None = None  # X/Y/Z axis label, as the WebUI spells it
    bare_label: bool = False  # grid label is the bare value ("Euler"), not "Axis: value"
    api: str | None = None  # WebUI API field (txt2img/img2img payload)

    @property
    def part(self) -> str:
        return self.name.rpartition(".")[0]

    @property
    def leaf(self) -> str:
        return self.name.rpartition(".")[2]

    def check(self, value: Any) -> None:
        """Raise UsageError naming the flag when `value` is outside the row's range or choices."""
        if value is None or value in self.unset:
            return
        if self.kind == "text":
            check_text(self.flag or self.name, value)
        if self.choices:
            choice = self.normalise(value) if self.normalise else value
            if choice not in self.choices:
                raise UsageError(f"{self.flag}: unknown value {choice!r}; choose from {', '.join(self.choices)}")
        if self.range is not None:
            self._check_range(value)
        if self.multiple_of and value % self.multiple_of:
            step = self.multiple_of
            lower, upper = value - value % step, value - value % step + step
            raise UsageError(f"{self.flag}: {value} is not a multiple of {step}; try {lower or step} or {upper}")

    @property
    def allowed(self) -> str:
        """The range in words, as messages and the flag's help give it ("1 to 1000", "more than 0 and at most 1")."""
        low, high = (format(end, self.fmt) for end in self.range)  # type: ignore[union-attr]
        if self.bounds == "[]":
            return f"{low} to {high}"
        return (f"more than {low}" if self.bounds[0] == "(" else f"at least {low}") + " and " + (
            f"less than {high}" if self.bounds[1] == ")" else f"at most {high}")

    def _check_range(self, value: float) -> None:
        low, high = self.range  # type: ignore[misc]
        above = value > low if self.bounds[0] == "(" else value >= low
        below = value < high if self.bounds[1] == ")" else value <= high
        if not (above and below):
            note = f" {self.note}" if self.note else ""
            raise UsageError(f"{self.flag}: {format(value, self.fmt)} is out of range; use {self.allowed}{note}")


def check_text(flag: str, text: str) -> None:
    """Prompts: valid Unicode (no undecodable bytes from the shell) and at most MAX_PROMPT_CHARS."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise UsageError(f"{flag}: not valid UTF-8 (undecodable byte at character {exc.start + 1})") from None
    if len(text) > MAX_PROMPT_CHARS:
        raise UsageError(f"{flag}: {len(text)} characters; the limit is {MAX_PROMPT_CHARS}")


def _g(value: float) -> str:
    return f"{value:g}"


def parse_flag(text: str) -> bool:
    """A boolean as text: the WebUI's True/False (infotext, X/Y/Z values), or 1/0, yes/no, on/off."""
    if text.strip().lower() in ("true", "1", "yes", "on"):
        return True
    if text.strip().lower() in ("false", "0", "no", "off"):
        return False
    raise ValueError(f"{text!r} is not true/false")


# One row per setting. The order is the infotext's for keys the WebUI's KEY_ORDER does not place
# (io.metadata), and the order of validation, prompt-file keys and the X/Y/Z axes from the table.
FIELDS: tuple[Field, ...] = (
    Field("prompt", "text", "--prompt", key="prompt", api="prompt"),
    Field("negative_prompt", "text", "--negative-prompt", key="negative_prompt", aliases=("negative",),
          api="negative_prompt"),
    Field("steps", "int", "--steps", (1, 1000), infotext="Steps", write=lambda w: w.request.steps, read=int,
          key="steps", axis="Steps", api="steps"),
    Field("sampler", "str", "--sampler", infotext="Sampler", write=lambda w: w.choice.sampler.name, read=str,
          key="sampler_name", aliases=("sampler",), axis="Sampler", bare_label=True, api="sampler_name"),
    Field("schedule", "str", "--schedule", infotext="Schedule type", write=lambda w: w.choice.written_label,
          read=str.lower, key="scheduler", aliases=("schedule", "schedule_type"), axis="Schedule type",
          api="scheduler"),
    Field("cfg_scale", "float", "--cfg-scale", (0, 100), infotext="CFG scale",
          write=lambda w: f"{w.request.cfg_scale:g}", read=float, key="cfg_scale", aliases=("cfg",),
          axis="CFG Scale", api="cfg_scale"),
    # Forge's slider: 0 to 30 (modules/ui.py); its API field is the processing class's distilled_cfg_scale.
    Field("distilled_cfg_scale", "float", "--distilled-cfg", (0, 30), fmt="g", infotext="Distilled CFG Scale",
          write=distilled_written, read=float, key="distilled_cfg_scale", aliases=("distilled_cfg",),
          axis="Distilled CFG Scale", api="distilled_cfg_scale"),
    # Flux.2 dev's caption upsampling (diffusers' caption_upsample_temperature): the temperature; the rewritten
    # text is written as `Upsampled prompt` (job.generate), not read back: replay writes it again from the seed.
    Field("upsample_prompt", "float", "--upsample-prompt", (0, 2), "(]", "(0.15 is diffusers' advice)", fmt="g",
          infotext="Prompt upsampling", write=lambda w: None if w.request.upsample_prompt is None else
          f"{w.request.upsample_prompt:g}", read=float, key="upsample_prompt",
          aliases=("caption_upsample_temperature",), axis="Prompt upsampling", api="upsample_prompt"),
    Field("shift", "float", "--shift", (0, 100), "(]", fmt="g", infotext="Shift",
          write=lambda w: f"{w.request.shift:g}" if w.request.shift is not None else None, read=float, key="shift",
          axis="Shift", api="shift"),
    Field("model_sampling", "str", "--model-sampling", choices=tuple(MODEL_SAMPLINGS), normalise=choice_key,
          infotext="Model sampling", read=str.lower, key="model_sampling",
          write=lambda w: MODEL_SAMPLINGS[choice_key(w.request.model_sampling)][0] if w.request.model_sampling
          else None),
    Field("zero_negative", "bool", "--zero-negative", infotext="Zero negative", read=parse_flag, key="zero_negative",
          write=lambda w: "True" if w.request.zero_negative else None),
    Field("cfg_norm", "float", "--cfg-norm", (0, 100), fmt="g", infotext="CFG norm", read=float, key="cfg_norm",
          write=lambda w: f"{w.request.cfg_norm:g}" if w.request.cfg_norm is not None else None),
    Field("comfy_edit", "bool", "--comfy-edit", infotext="Comfy edit", read=parse_flag, key="comfy_edit",
          write=lambda w: "True" if w.request.comfy_edit else None),
    Field("reference_scale", "str", "--reference-scale", infotext="Reference scale", read=str,
          key="reference_scale", write=lambda w: w.request.reference_scale),
    Field("seed", "int", "--seed", (0, MAX_SEED), unset=(None, -1), infotext="Seed", write=lambda w: w.seed,
          read=int, key="seed", axis="Seed", api="seed"),
    Field("width", "int", "--width", (8, 8192), multiple_of=8, key="width", axis="Width", api="width"),
    Field("height", "int", "--height", (8, 8192), multiple_of=8, key="height", axis="Height", api="height"),
    Field("subseed", "int", "--subseed", (0, MAX_SEED), unset=(None, -1), infotext="Variation seed",
          write=lambda w: w.subseed, read=int, key="subseed", aliases=("variation_seed",), axis="Var. seed",
          api="subseed"),
    Field("subseed_strength", "float", "--subseed-strength", (0, 1), infotext="Variation seed strength",
          write=lambda w: f"{w.request.subseed_strength:g}" if w.subseed is not None else None, read=float,
          key="subseed_strength", aliases=("variation_strength",), axis="Var. strength", api="subseed_strength"),
    Field("clip_skip", "int", "--clip-skip", (1, 12), infotext="Clip skip",
          write=lambda w: w.request.clip_skip if w.request.clip_skip > 1 else None, read=int, key="clip_skip",
          axis="Clip skip"),  # the API's is a setting: override_settings CLIP_stop_at_last_layers
    Field("batch_size", "int", "--batch-size", (1, 64), key="batch_size", api="batch_size"),
    Field("count", "int", "--count", (1, 100000), key="n_iter", aliases=("count",), api="n_iter"),
    Field("refiner", "str", "--refiner", infotext="Refiner", write=lambda w: w.refiner, read=lambda v: _strip_hash(v),
          key="refiner_checkpoint", aliases=("refiner",), axis="Refiner checkpoint"),
    Field("refiner_switch", "float", "--refiner-switch", (0, 1), "()",
          "(0.8 = the refiner runs the last 20% of the steps)", infotext="Refiner switch at",
          write=lambda w: f"{w.request.refiner_switch:g}" if w.refiner else None, read=float,
          key="refiner_switch_at", aliases=("refiner_switch",), axis="Refiner switch at"),
    # The WebUI settings that change pixels (sampling.loop.SamplingOptions); RNG is always written:
    # sdcli's default (CPU) is not the WebUI's (GPU).
    Field("rng", "str", "--rng", choices=RNG_SOURCES, normalise=choice_key, infotext="RNG",
          write=lambda w: RNG_LABELS[choice_key(w.request.rng)], read=str.lower, key="randn_source",
          aliases=("rng",), axis="RNG source"),
    Field("tiling", "bool", "--tiling", infotext="Tiling", write=lambda w: "True" if w.request.tiling else None,
          read=parse_flag, key="tiling", axis="Tiling", api="tiling"),
    Field("emphasis", "str", "--emphasis", choices=EMPHASES, normalise=choice_key, infotext="Emphasis",
          write=lambda w: None if choice_key(w.request.emphasis) == "original" else
          EMPHASIS_LABELS[choice_key(w.request.emphasis)], read=str.lower, key="emphasis"),
    Field("eta", "float", "--eta", (0, 10), infotext="Eta", write=eta_written,
          key_for=lambda w: "Eta DDIM" if w.choice.sampler.timesteps else "Eta", read=float,
          read_aliases=("Eta DDIM",), key="eta", axis="Eta", api="eta"),
    Field("ensd", "int", "--ensd", (0, MAX_SEED), infotext="ENSD", write=ensd_written, read=int,
          key="eta_noise_seed_delta", aliases=("ensd",)),
    Field("s_churn", "float", "--s-churn", (0, 1000), infotext="Sigma churn", read=float, key="s_churn",
          axis="Sigma Churn", write=lambda w: taken("s_churn", w, w.request.s_churn != 0)),
    Field("s_tmin", "float", "--s-tmin", (0, 1000), infotext="Sigma tmin", read=float, key="s_tmin",
          axis="Sigma min", write=lambda w: taken("s_tmin", w, w.request.s_tmin != 0)),
    Field("s_tmax", "float", "--s-tmax", (0, 1000), infotext="Sigma tmax", read=float, key="s_tmax",
          axis="Sigma max", write=lambda w: taken("s_tmax", w, w.request.s_tmax != 0)),
    Field("s_noise", "float", "--s-noise", (0, 1000), infotext="Sigma noise", read=float, key="s_noise",
          axis="Sigma noise", write=lambda w: taken("s_noise", w, w.request.s_noise != 1.0)),
    Field("sigma_min", "float", "--sigma-min", (0, 1000), infotext="Schedule min sigma", read=float, key="sigma_min",
          axis="Schedule min sigma", write=lambda w: f"{w.request.sigma_min:g}" if w.request.sigma_min else None),
    Field("sigma_max", "float", "--sigma-max", (0, 1000), infotext="Schedule max sigma", read=float, key="sigma_max",
          axis="Schedule max sigma", write=lambda w: f"{w.request.sigma_max:g}" if w.request.sigma_max else None),
    Field("prediction_type", "str", "--prediction-type", choices=tuple(PREDICTION_TYPES), key="prediction_type"),
    # Forge's "VAE / Text Encoder" files: written as `Module N` (module_params), read by modules_from_infotext.
    Field("text_encoders", "names", "--text-encoder", key="text_encoder", aliases=("text_encoders",)),
    Field("low_bits", "str", "--low-bits", choices=LOW_BITS, normalise=low_bits_key, infotext="Diffusion in Low Bits",
          write=low_bits_written, read=low_bits_key, key="low_bits", aliases=("quantize", "forge_unet_storage_dtype"),
          axis="Diffusion in Low Bits"),
    Field("quantize_text_encoder", "bool", "--quantize-text-encoder", infotext="Quantize text encoder",
          write=lambda w: "True" if w.request.quantize_text_encoder else None, read=parse_flag,
          key="quantize_text_encoder"),
    # The WebUI's face restoration (models.faces): its infotext names the restorer; CodeFormer's weight is
    # sdcli's own key (the WebUI keeps it a setting), written when CodeFormer ran.
    Field("restore_faces", "str", "--restore-faces", choices=tuple(FACE_RESTORER_LABELS), normalise=str.lower,
          infotext="Face restoration", write=lambda w: FACE_RESTORER_LABELS[w.request.face_restorer]
          if w.request.face_restorer else None, read=str.lower, key="restore_faces", aliases=("face_restoration",),
          codes=FACE_RESTORER_CODES),
    Field("code_former_weight", "float", "--code-former-weight", (0, 1), fmt="g", infotext="CodeFormer weight",
          write=lambda w: f"{w.request.code_former_weight:g}" if w.request.face_restorer == "codeformer" else None,
          read=float, key="code_former_weight"),
    Field("mode", "str", key="mode"),
    # `sdcli edit`'s reference images (files; written to the infotext as `Reference hashes` by the edit run).
    Field("references", "paths", "--image", key="reference_images", aliases=("references",), implies="edit"),
    # img2img, inpaint, outpaint: written for the record; not read back (a WebUI infotext does not store the
    # input image, so an img2img image is replayed from sdcli's own record).
    Field("init.image", "path", "--image", key="init_image", aliases=("init_images", "image"), implies="img2img"),
    Field("init.strength", "float", "--strength", (0, 1), "(]", "(0.75 is usual)", infotext="Denoising strength",
          write=lambda w: f"{w.request.init.strength:g}", key="denoising_strength", aliases=("strength",),
          axis="Denoising", api="denoising_strength"),
    Field("init.resize", "str", "--resize", choices=RESIZE_MODES, key="resize_mode", aliases=("resize",),
          codes=RESIZE_CODES, api="resize_mode"),
    Field("inpaint.mask", "path", "--mask", key="mask", aliases=("mask_image",), implies="inpaint", api="mask"),
    Field("inpaint.mask_blur", "int", "--mask-blur", (0, 256), infotext="Mask blur",
          write=lambda w: w.request.inpaint.mask_blur, key="mask_blur", api="mask_blur"),
    Field("inpaint.area", "str", "--inpaint-area", choices=tuple(INPAINT_AREAS), infotext="Inpaint area",
          write=lambda w: INPAINT_AREAS[w.request.inpaint.area] if w.request.mode == "inpaint" else None,
          key="inpaint_full_res", aliases=("inpaint_area",), codes=INPAINT_AREA_CODES, api="inpaint_full_res"),
    Field("inpaint.padding", "int", "--padding", (0, 1024), infotext="Masked area padding",
          write=lambda w: w.request.inpaint.padding if w.request.mode == "inpaint" and w.request.inpaint.area ==
          "masked" else None, key="inpaint_full_res_padding", aliases=("padding",), api="inpaint_full_res_padding"),
    Field("inpaint.invert_mask", "bool", "--invert-mask", infotext="Mask mode",
          write=lambda w: "Inpaint not masked" if w.request.mode == "inpaint" and w.request.inpaint.invert_mask
          else None, key="inpainting_mask_invert", aliases=("invert_mask",), api="inpainting_mask_invert"),
    Field("inpaint.masked_content", "str", "--masked-content", choices=tuple(MASKED_CONTENTS),
          infotext="Masked content", write=lambda w: MASKED_CONTENTS[w.request.inpaint.masked_content],
          key="inpainting_fill", aliases=("masked_content",), codes=MASKED_CONTENT_CODES, api="inpainting_fill"),
    Field("outpaint", infotext="Outpaint", write=outpaint_sides),  # sdcli's own keys: the sides, then the fill
    *(Field(f"outpaint.{side}", "int", f"--{side}", (0, 4096), key=side, implies="outpaint") for side in DIRECTIONS),
    Field("outpaint.fill", "str", "--fill", choices=OUTPAINT_FILLS, infotext="Outpaint fill",
          write=lambda w: w.request.outpaint.fill, key="fill", aliases=("outpaint_fill",)),
    # Hires fix on txt2img (the WebUI API's names; there `denoising_strength` is the hires pass's). Its keys
    # are written as the WebUI writes them (processing.py's txt2img init; `Hires CFG Scale` as Forge writes it)
    # and read back by request.hires.hires_from_infotext.
    Field("hires.enable", "bool", "--hires", key="enable_hr", aliases=("hires",), api="enable_hr"),
    Field("hires.scale", "float", "--hires-scale", (1.0, 8.0), fmt="g", infotext="Hires upscale",
          write=lambda w: None if w.request.hires.resize else f"{w.request.hires.scale:g}", read=float,
          key="hr_scale", aliases=("hires_scale",), api="hr_scale"),
    Field("hires.width", "int", "--hires-size", infotext="Hires resize",  # WxH: both sides, one key
          write=lambda w: f"{w.request.hires.width}x{w.request.hires.height}" if w.request.hires.resize else None,
          key="hr_resize_x", aliases=("hires_width",), api="hr_resize_x"),
    Field("hires.height", "int", "--hires-size", key="hr_resize_y", aliases=("hires_height",), api="hr_resize_y"),
    Field("hires.steps", "int", "--hires-steps", (0, 1000), note="(0 = the first pass's steps)",
          infotext="Hires steps", write=lambda w: w.request.hires.steps or None, read=int,
          key="hr_second_pass_steps", aliases=("hires_steps",), axis="Hires steps", api="hr_second_pass_steps"),
    Field("hires.denoise", "float", "--hires-denoise", (0, 1), "[]", "(0 = upscale only, as the WebUI)", fmt="g",
          infotext="Denoising strength", write=lambda w: f"{w.request.hires.denoise:g}", read=float,
          key="hires_denoise", api="denoising_strength"),
    Field("hires.upscaler", "str", "--hires-upscaler", infotext="Hires upscaler", write=lambda w: hires_pass(w)[2],
          read=str, key="hr_upscaler", aliases=("hires_upscaler",), axis="Hires upscaler", api="hr_upscaler"),
    Field("hires.prompt", "text", "--hires-prompt", infotext="Hires prompt",
          write=lambda w: differs(w.request.hires.prompt, w.request.prompt), read=str, key="hr_prompt",
          aliases=("hires_prompt",), api="hr_prompt"),
    Field("hires.negative_prompt", "text", "--hires-negative-prompt", infotext="Hires negative prompt",
          write=lambda w: differs(w.request.hires.negative_prompt, w.request.negative_prompt), read=str,
          key="hr_negative_prompt", aliases=("hires_negative_prompt",), api="hr_negative_prompt"),
    Field("hires.sampler", "str", "--hires-sampler", infotext="Hires sampler",
          write=lambda w: differs(hires_pass(w)[1].sampler.name, hires_pass(w)[0].sampler.name), read=str,
          key="hr_sampler_name", aliases=("hires_sampler",), axis="Hires sampler", api="hr_sampler_name"),
    Field("hires.schedule", "str", "--hires-schedule", infotext="Hires schedule type",
          write=lambda w: differs(hires_pass(w)[1].written_label, hires_pass(w)[0].written_label), read=str.lower,
          key="hr_scheduler", aliases=("hires_schedule",), api="hr_scheduler"),
    Field("hires.cfg_scale", "float", "--hires-cfg", (0, 100), fmt="g", infotext="Hires CFG Scale",
          write=lambda w: f"{w.request.hires.cfg_scale:g}" if differs(w.request.hires.cfg_scale,
                                                                         w.request.cfg_scale) is not None else None,
          read=float, key="hr_cfg", aliases=("hires_cfg",), api="hr_cfg"),
    # Forge's hires guidance for guidance-distilled models (its processing class's hr_distilled_cfg).
    Field("hires.distilled_cfg_scale", "float", "--hires-distilled-cfg", (0, 30), fmt="g",
          infotext="Hires Distilled CFG Scale", write=hires_distilled_written, read=float, key="hr_distilled_cfg",
          aliases=("hires_distilled_cfg",), api="hr_distilled_cfg"),
)


def _strip_hash(text: str) -> str:
    """`Refiner: name [hash]` -> name."""
    import re

    return re.sub(r" \[[0-9a-f]{8,}\]$", "", text)


def field(name: str) -> Field:
    """The row of request field `name` ("steps", "init.strength")."""
    return _BY_NAME[name]


def allowed(name: str) -> str:
    """Request field `name`'s range in words, for a flag's help."""
    return _BY_NAME[name].allowed


_BY_NAME = {f.name: f for f in FIELDS}


def value_of(request: Any, name: str) -> Any:
    """A request's value of `name` ("init.strength"); None when its part is absent."""
    holder = request
    for attr in name.split("."):
        holder = getattr(holder, attr, None)
        if holder is None:
            return None
    return holder


def check_fields(request: Any, part: str = "") -> None:
    """Every row of `part` ("" for the request's own fields) checked against its range and choices."""
    for row in FIELDS:
        if row.part == part and (row.kind == "text" or row.choices or row.range or row.multiple_of):
            row.check(value_of(request, row.name))


def infotext_values(written: Written) -> dict[str, Any]:
    """The infotext keys of one image, in table order (None: left out); a part's rows when it is there,
    the hires rows when the hires pass ran."""
    params: dict[str, Any] = {}
    for row in FIELDS:
        holder = row.part or (row.name if row.name in PARTS else "")
        if row.write is None or (holder and value_of(written.request, holder) is None):
            continue
        if holder == "hires" and written.hires is None:
            continue
        params[row.key_for(written) if row.key_for else row.infotext] = row.write(written)  # type: ignore[index]
    return params | module_params(written.request.text_encoders, written.vae)

