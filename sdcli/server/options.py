"""The WebUI's settings as `/sdapi/v1/options` serves them: one table, a row per option key.

GET answers every row with the server's real state (the loaded model's title and hash, the
VAE, CLIP skip ...). POST takes a partial dict or the whole echo of GET: every known key is
checked first (a bad value: 422 naming the key, nothing applied), then applied; read-only keys,
unchanged values and unknown keys are ignored, as the WebUI's `opts.set` ignores them. A
request's `override_settings` go through the same rows for that request only.

How a row is applied (`how`):
- "request": sets a GenerationRequest field (`field`) of every txt2img/img2img request;
- "model": loads that served model (sd_model_checkpoint); "vae": a name in the VAE folder;
- "readonly": reported, never set (sd_checkpoint_hash follows the model);
- "held": stored and reported, changes nothing sdcli draws (the WebUI's UI and saving settings).
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass
from typing import Any

from sdcli.errors import UsageError
from sdcli.request.fields import FIELDS


def _int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ValueError
    number = float(value)
    if number != int(number):
        raise ValueError
    return int(number)


def _float(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ValueError
    return float(value)


def _str(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError
    return value


def _bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError
    return value


def _samples_format(value: Any) -> str:
    from sdcli.server.saving import FORMATS

    if not isinstance(value, str) or value.strip().lower() not in FORMATS:
        raise ValueError
    return value


def _quality(value: Any) -> int:
    quality = _int(value)
    if not 1 <= quality <= 100:
        raise ValueError
    return quality


def _any(value: Any) -> Any:
    return value


def _storage_field(value: str) -> str | None:
    """forge_unet_storage_dtype -> the low_bits field's value (Forge's "Automatic": the file's own, no field)."""
    from sdcli.request.storage import AUTOMATIC, LORA_SUFFIX

    return None if value.removesuffix(LORA_SUFFIX).lower() == AUTOMATIC.lower() else value


@dataclass(frozen=True)
class Option:
    """One WebUI setting: its key, the value it has until set, how sdcli applies it."""

    key: str
    default: Any
    how: str = "held"
    field: str | None = None  # "request" rows: the GenerationRequest field it sets
    convert: Callable[[Any], Any] = _any  # JSON value -> stored value; ValueError when it cannot
    to_field: Callable[[Any], Any] = _any  # stored value -> the request field's value


# sdcli's defaults where they are not the WebUI's: the random source (sdcli draws on the CPU: `--rng`).
OPTIONS: tuple[Option, ...] = (
    Option("sd_model_checkpoint", None, "model", convert=_str),
    Option("sd_checkpoint_hash", None, "readonly"),
    Option("sd_vae", "Automatic", "vae", convert=_str),
    Option("CLIP_stop_at_last_layers", 1, "request", "clip_skip", _int),
    Option("eta_noise_seed_delta", 0, "request", "ensd", _int),
    Option("randn_source", "CPU", "request", "rng", _str, str.lower),
    Option("emphasis", "Original", "request", "emphasis", _str, str.lower),
    Option("eta_ancestral", 1.0, "request", "eta", _float),  # the eta of samplers that are not timestep samplers
    Option("eta_ddim", 0.0, "request", "eta", _float),  # the eta of DDIM-style (timestep) samplers
    Option("s_churn", 0.0, "request", "s_churn", _float),
    Option("s_tmin", 0.0, "request", "s_tmin", _float),
    Option("s_tmax", 0.0, "request", "s_tmax", _float),
    Option("s_noise", 1.0, "request", "s_noise", _float),
    Option("sigma_min", 0.0, "request", "sigma_min", _float),
    Option("sigma_max", 0.0, "request", "sigma_max", _float),
    Option("samples_format", "png", convert=_samples_format),  # save_images' format (server.saving)
    Option("samples_save", True, convert=_bool),
    Option("send_seed", True, convert=_bool),
    Option("send_size", True, convert=_bool),
    Option("jpeg_quality", 80, convert=_quality),
    Option("outdir_samples", "", convert=_str),
    Option("show_progress_every_n_steps", 10, convert=_int),
    Option("live_previews_enable", True, convert=_bool),
    Option("face_restoration", False, convert=_bool),
    Option("face_restoration_model", None),  # restore_faces' restorer (server.schemas.face_restorer)
    Option("code_former_weight", 0.5, "request", "code_former_weight", _float),
    Option("sd_lora", "None"),
    Option("sd_hypernetwork", "None"),
    Option("upscaler_for_img2img", None),
    Option("img2img_fix_steps", False, convert=_bool),
    Option("token_merging_ratio", 0.0, convert=_float),
    Option("forge_additional_modules", []),
    # Forge's "Diffusion in Low Bits" setting: the storage of every later request's model (override_settings win)
    Option("forge_unet_storage_dtype", "Automatic", field="low_bits", convert=_str, to_field=_storage_field),
)
BY_KEY = {row.key: row for row in OPTIONS}
_ROWS = {row.name: row for row in FIELDS}


def defaults() -> dict[str, Any]:
    """Every stored option at its default (the model rows follow the engine and are not stored)."""
    return {row.key: row.default for row in OPTIONS if row.how not in ("model", "readonly")}


def current(engine: Any) -> dict[str, Any]:
    """GET /options: every row with the server's state (its stored values over the defaults)."""
    return {**defaults(), **{k: v for k, v in engine.options.items() if k in BY_KEY},
            "sd_model_checkpoint": engine.current.title, "sd_checkpoint_hash": engine.current.hash}


def checked(values: dict[str, Any], where: str = "") -> dict[str, Any]:
    """The known, settable keys of `values`, converted and checked (UsageError naming `where`+key)."""
    out: dict[str, Any] = {}
    for key, value in values.items():
        row = BY_KEY.get(key)
        if row is None or row.how == "readonly":
            continue  # unknown keys and read-only ones are ignored, as the WebUI's opts.set does
        name = f"{where}{key}"
        try:
            value = row.convert(value)
        except (ValueError, TypeError, OverflowError):
            raise UsageError(f"{name}: {value!r} is not a valid value (default {row.default!r})") from None
        if row.field is not None:
            try:
                _ROWS[row.field].check(row.to_field(value))
            except UsageError as exc:
                raise UsageError(f"{name}: {str(exc).partition(': ')[2]}") from None
        out[key] = value
    return out


def request_fields(values: dict[str, Any], sampler: str | None) -> dict[str, Any]:
    """The GenerationRequest fields the options set (eta from eta_ddim for timestep samplers, else eta_ancestral;
    an eta at its default is left to the sampler's own)."""
    from sdcli.sampling.samplers import sampler_row

    timesteps = False
    if sampler:
        with suppress(UsageError):  # an unknown sampler: the request's validation names it
            timesteps = sampler_row(sampler).timesteps
    fields: dict[str, Any] = {}
    for row in OPTIONS:
        if row.how != "request" or row.key not in values:
            continue
        if row.field == "eta" and ((row.key == "eta_ddim") != timesteps or values[row.key] == row.default):
            continue
        fields[str(row.field)] = row.to_field(values[row.key])
    return fields


def apply(engine: Any, values: dict[str, Any], where: str = "") -> None:
    """POST /options (and override_settings kept after a request): check every known key, then apply them;
    a model named is loaded (waiting for a running job) unless it is the current one."""
    from sdcli.models.assets import plan_assets
    from sdcli.server.served import AddOns

    good = checked(values, where)
    model = good.pop("sd_model_checkpoint", None)
    served = engine.find(model, f"{where}sd_model_checkpoint") if model else None
    if "sd_vae" in good:  # a name in the server's VAE folder, checked now rather than at each request
        try:
            plan_assets(engine.assets(AddOns(vae=vae_name(good["sd_vae"], f"{where}sd_vae"))), "")
        except UsageError as exc:
            raise type(exc)(str(exc).replace("--vae:", f"{where}sd_vae:", 1)) from None
    if served is not None and served is not engine.current:
        engine.switch(model)
    engine.options.update(good)


AUTOMATIC_VAE = (None, "", "None", "none", "Automatic", "automatic")  # sd_vae values meaning the model's own VAE


def vae_name(value: Any, field: str) -> str | None:
    """An sd_vae value: a name in the VAE folder, or None for the model's own ("Automatic", "None")."""
    if value is not None and not isinstance(value, str):
        raise UsageError(f"{field}: {value!r} is not a VAE name")
    return None if value in AUTOMATIC_VAE else value


def from_infotext(params: dict[str, str]) -> dict[str, Any]:
    """The settings an infotext records (Clip skip, ENSD, RNG, Emphasis, sigma settings), by option key, as the
    WebUI's infotext_to_setting_name_mapping: through each request row's infotext key (eta: a request field)."""
    found = {}
    for row in OPTIONS:
        if row.how == "request" and row.field != "eta":
            key = _ROWS[str(row.field)].infotext
            if key is not None and key in params:
                found[row.key] = params[key]
    return found
