"""The prompt-file keys: one table (KEYS) of WebUI spellings -> request fields, and their readers.

A key's reader turns the raw value (text from a `--key value` line, or a JSON value)
into the request field's value, raising ValueError with the reason; parse.py adds
FILE:LINE and the key's name. Pure: no torch, no file reads but the existence of paths.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sdcli.batch.inputs import is_input_set
from sdcli.request.vocabulary import DIRECTIONS, INPAINT_AREA_CODES, MASKED_CONTENT_CODES, RESIZE_CODES


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{value!r} is not text")
    return value


def _whole(value: Any) -> int:
    if isinstance(value, bool) or isinstance(value, float) and not value.is_integer():
        raise ValueError(f"{value!r} is not a whole number")
    try:
        return int(value)
    except (TypeError, ValueError):
        raise ValueError(f"{value!r} is not a whole number") from None


def _number(value: Any) -> float:
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a number")
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{value!r} is not a number") from None


def _choice(table: dict[Any, str]) -> Callable[[Any], str]:
    """A reader for an enumeration given by sdcli name or by the WebUI's number/boolean."""
    def read(value: Any) -> str:
        key = value if isinstance(value, bool | int) else _text(value).strip().lower().replace("_", "-")
        if isinstance(key, str) and key.lstrip("-").isdigit():
            key = int(key)
        if key in table.values():
            return key
        if key in table:
            return table[key]
        raise ValueError(f"{value!r} is not one of {', '.join(sorted(set(table.values())))}")
    return read


def _flag(value: Any) -> bool:
    if isinstance(value, bool):  # JSON lines
        return value
    text = _text(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"{value!r} is not true/false")


def _file(value: Any, base: Path) -> str:
    """A path relative to the prompt file's folder, which must exist."""
    path = base / Path(_text(value)).expanduser()
    if not path.is_file():
        raise ValueError(f"no such file: {path}")
    return str(path)


def _images(value: Any, base: Path) -> str:
    """An image file, or a folder or glob of images (one item each), relative to the prompt file's folder."""
    path = base / Path(_text(value)).expanduser()
    return str(path) if is_input_set(path) else _file(value, base)


@dataclass(frozen=True)
class Key:
    """One prompt-file key: WebUI spelling, the request field it sets, how to read it.

    `flag` is the sdcli option that validate() names, so its messages can be
    reworded with the key the user wrote; `mode` is the mode the key implies.
    """

    name: str
    field: str
    read: Callable[..., Any]
    aliases: tuple[str, ...] = ()
    flag: str | None = None
    mode: str | None = None
    is_path: bool = False


# One row per key. Adding a key (or the request field of a new mode) is one row.
KEYS: tuple[Key, ...] = (
    Key("prompt", "prompt", _text, flag="--prompt"),
    Key("negative_prompt", "negative_prompt", _text, ("negative",), "--negative-prompt"),
    Key("steps", "steps", _whole, flag="--steps"),
    Key("cfg_scale", "cfg_scale", _number, ("cfg",), "--cfg-scale"),
    Key("seed", "seed", _whole, flag="--seed"),
    Key("subseed", "subseed", _whole, ("variation_seed",), "--subseed"),
    Key("subseed_strength", "subseed_strength", _number, ("variation_strength",), "--subseed-strength"),
    Key("width", "width", _whole, flag="--width"),
    Key("height", "height", _whole, flag="--height"),
    Key("batch_size", "batch_size", _whole, flag="--batch-size"),
    Key("n_iter", "count", _whole, ("count",), "--count"),
    Key("sampler_name", "sampler", _text, ("sampler",), "--sampler"),
    Key("scheduler", "schedule", _text, ("schedule", "schedule_type"), "--schedule"),
    Key("clip_skip", "clip_skip", _whole, flag="--clip-skip"),
    Key("sd_model", "model", _text, ("model",), "--model"),
    # WebUI settings that change pixels: processing fields (eta, s_*) or settings names (override_settings).
    Key("eta", "eta", _number, flag="--eta"),
    Key("eta_noise_seed_delta", "ensd", _whole, ("ensd",), "--ensd"),
    Key("s_churn", "s_churn", _number, flag="--s-churn"),
    Key("s_tmin", "s_tmin", _number, flag="--s-tmin"),
    Key("s_tmax", "s_tmax", _number, flag="--s-tmax"),
    Key("s_noise", "s_noise", _number, flag="--s-noise"),
    Key("sigma_min", "sigma_min", _number, flag="--sigma-min"),
    Key("sigma_max", "sigma_max", _number, flag="--sigma-max"),
    Key("randn_source", "rng", _text, ("rng",), "--rng"),
    Key("emphasis", "emphasis", _text, flag="--emphasis"),
    Key("prediction_type", "prediction_type", _text, flag="--prediction-type"),
    Key("refiner_checkpoint", "refiner", _text, ("refiner",), "--refiner"),
    Key("refiner_switch_at", "refiner_switch", _number, ("refiner_switch",), "--refiner-switch"),
    Key("mode", "mode", _text),
    # Image modes: "part.field" sets a field of the request's nested part (request.PARTS).
    Key("init_image", "init.image", _images, ("init_images", "image"), "--image", mode="img2img", is_path=True),
    Key("denoising_strength", "init.strength", _number, ("strength",), "--strength"),
    Key("resize_mode", "init.resize", _choice(RESIZE_CODES), ("resize",), "--resize"),
    Key("mask", "inpaint.mask", _images, ("mask_image",), "--mask", mode="inpaint", is_path=True),
    Key("mask_blur", "inpaint.mask_blur", _whole, flag="--mask-blur"),
    Key("inpainting_mask_invert", "inpaint.invert_mask", _flag, ("invert_mask",)),
    Key("inpaint_full_res", "inpaint.area", _choice(INPAINT_AREA_CODES), ("inpaint_area",), "--inpaint-area"),
    Key("inpaint_full_res_padding", "inpaint.padding", _whole, ("padding",), "--padding"),
    Key("inpainting_fill", "inpaint.masked_content", _choice(MASKED_CONTENT_CODES), ("masked_content",),
        "--masked-content"),
    *(Key(side, f"outpaint.{side}", _whole, flag=f"--{side}", mode="outpaint") for side in DIRECTIONS),
    Key("fill", "outpaint.fill", _text, ("outpaint_fill",), "--fill"),
    # Hires fix on txt2img lines (the WebUI API's names; there `denoising_strength` is the hires pass's).
    Key("enable_hr", "hires.enable", _flag, ("hires",), "--hires"),
    Key("hr_scale", "hires.scale", _number, ("hires_scale",), "--hires-scale"),
    Key("hr_resize_x", "hires.width", _whole, ("hires_width",), "--hires-size"),
    Key("hr_resize_y", "hires.height", _whole, ("hires_height",), "--hires-size"),
    Key("hr_second_pass_steps", "hires.steps", _whole, ("hires_steps",), "--hires-steps"),
    Key("hires_denoise", "hires.denoise", _number, flag="--hires-denoise"),
    Key("hr_upscaler", "hires.upscaler", _text, ("hires_upscaler",), "--hires-upscaler"),
    Key("hr_prompt", "hires.prompt", _text, ("hires_prompt",), "--hires-prompt"),
    Key("hr_negative_prompt", "hires.negative_prompt", _text, ("hires_negative_prompt",), "--hires-negative-prompt"),
    Key("hr_sampler_name", "hires.sampler", _text, ("hires_sampler",), "--hires-sampler"),
    Key("hr_scheduler", "hires.schedule", _text, ("hires_schedule",), "--hires-schedule"),
    Key("hr_cfg", "hires.cfg_scale", _number, ("hires_cfg",), "--hires-cfg"),
)
# WebUI keys with no sdcli meaning: refused by name rather than as unknown.
WEBUI_ONLY = ("styles", "seed_resize_from_h", "seed_resize_from_w",
              "sampler_index", "restore_faces", "tiling", "do_not_save_samples", "do_not_save_grid",
              "outpath_samples", "outpath_grids", "prompt_for_display")
