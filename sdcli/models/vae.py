"""A separate VAE (--vae), and the fp16 guard: decodes that yield NaNs are redone in fp32.

--vae takes a diffusers VAE folder or one file in the WebUI (LDM) key layout or
the diffusers one. The replacement is built from the model's own VAE config,
so nothing is fetched, and a VAE of another shape is refused by name.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from sdcli.errors import ModelError
from sdcli.models.loaded import DecodeGuard, LoadedModel
from sdcli.models.module_state import module_dtype

_LDM_MARKERS = ("decoder.mid.block_1.conv1.weight", "encoder.down.0.block.0.conv1.weight")
_PREFIXES = ("first_stage_model.", "vae.")


def load_vae(path: Path, pipe: Any, *, allow_pickle: bool = False) -> Any:
    """An AutoencoderKL from `path` shaped like `pipe.vae`, on its device and in its dtype."""
    import diffusers

    base = pipe.vae
    if path.is_dir():
        try:
            vae = diffusers.AutoencoderKL.from_pretrained(path, use_safetensors=True, local_files_only=True)
        except (OSError, ValueError, RuntimeError) as exc:
            raise ModelError(f"--vae: cannot load {path}: {_first_line(exc)}") from None
        if vae.config.latent_channels != base.config.latent_channels:
            raise ModelError(f"--vae: {path} has {vae.config.latent_channels} latent channels; this model's VAE "
                             f"has {base.config.latent_channels} (a VAE for another model family?)")
    elif path.suffix.lower() == ".safetensors" and _is_flux_vae(path):
        from sdcli.models.flux_load import load_flux_vae

        vae = load_flux_vae(path, base.dtype, dict(base.config), "--vae")
    else:
        vae = diffusers.AutoencoderKL.from_config(base.config)
        state = vae_state_dict(path, dict(base.config), allow_pickle=allow_pickle)
        try:
            vae.load_state_dict(state, strict=True)
        except RuntimeError as exc:
            problem = "its tensor shapes" if "size mismatch" in str(exc) else "its tensor names"
            raise ModelError(f"--vae: {path} does not fit this model's VAE ({problem} differ: a VAE for "
                             "another model family, or not a VAE?)") from None
    return vae.to(device=base.device, dtype=base.dtype)


def _is_flux_vae(path: Path) -> bool:
    """Whether a .safetensors file is a Flux VAE (ae.safetensors: 16 latent channels, any layout)."""
    from sdcli.models.flux_files import inspect_flux_file

    return inspect_flux_file(path).kind == "flux-vae"


def vae_state_dict(path: Path, config: dict[str, Any], *, allow_pickle: bool = False) -> dict[str, Any]:
    """A single VAE file's tensors in diffusers names (WebUI/LDM layouts are converted)."""
    from diffusers.loaders.single_file_utils import convert_ldm_vae_checkpoint

    from sdcli.models.safety import load_state_dict

    state = load_state_dict(path, flag="--vae", allow_pickle=allow_pickle)
    for prefix in _PREFIXES:
        if any(k.startswith(prefix + "decoder.") for k in state):
            state = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    state = {k: v for k, v in state.items() if not k.startswith(("loss.", "model_ema."))}
    if any(marker in state for marker in _LDM_MARKERS):
        try:
            state = convert_ldm_vae_checkpoint(state, config)
        except (KeyError, IndexError, RuntimeError) as exc:
            raise ModelError(f"--vae: {path} is not a complete VAE ({_first_line(exc)})") from None
    return state


def set_vae(model: LoadedModel, path: Path | None, *, allow_pickle: bool = False) -> None:
    """Use the VAE at `path` (None: the model's own) on `model`; a no-op when already in place."""
    addons, pipe = model.addons, model.pipe
    if addons.vae_path == path:
        return
    base = addons.base_vae or pipe.vae
    addons.base_vae = base
    vae = base if path is None else load_vae(path, _with_vae(pipe, base), allow_pickle=allow_pickle)
    if getattr(base, "use_slicing", False):
        vae.enable_slicing()
    pipe.vae = vae
    addons.vae_path = path


def _with_vae(pipe: Any, vae: Any) -> Any:
    """An object whose .vae is `vae` (load_vae reads only that)."""
    return type("_Pipe", (), {"vae": vae})()


def guard_decode(vae: Any, note: Callable[[str], None], *, force_fp32: bool = False,
                 guard: DecodeGuard | None = None) -> DecodeGuard:
    """Make `vae.decode` NaN-safe: a decode with NaNs is redone in fp32 with a warning.

    With `force_fp32` (--no-half-vae) the VAE runs in fp32 from the start. The
    pipelines pass latents in the UNet's dtype; they are cast to the VAE's. `guard`
    (a model's, models.loaded.AddOns) records the VAE; returned.
    """
    import torch

    guard = guard if guard is not None else DecodeGuard()
    if force_fp32 and vae.dtype != torch.float32:
        vae.to(torch.float32)
    guard.note = note
    if guard.covers(vae):
        return guard
    original = vae.decode

    def decode(z: Any, *args: Any, **kwargs: Any) -> Any:
        half = module_dtype(vae)  # diffusers' ModelMixin.dtype walks every submodule
        out = original(z.to(half), *args, **kwargs)
        sample = out[0] if isinstance(out, tuple) else out.sample
        if half == torch.float32 or not torch.isnan(sample).any():
            return out
        guard.note(f"the VAE decode in {str(half).removeprefix('torch.')} gave NaNs (a black image); "
                   "decoding again in fp32 (use --no-half-vae to always do so)")
        vae.to(torch.float32)
        try:
            return original(z.to(torch.float32), *args, **kwargs)
        finally:
            vae.to(half)

    vae.decode = decode
    vae.encode = _cast_encode(vae, vae.encode)
    guard.vaes.append(vae)
    return guard


def _cast_encode(vae: Any, original: Callable[..., Any]) -> Callable[..., Any]:
    """encode() that runs in the VAE's dtype and hands back latents in the caller's (img2img)."""
    from diffusers.models.autoencoders.vae import DiagonalGaussianDistribution

    def encode(x: Any, *args: Any, **kwargs: Any) -> Any:
        dtype = module_dtype(vae)  # diffusers' walks every submodule
        out = original(x.to(dtype), *args, **kwargs)
        if x.dtype == dtype:
            return out
        dist = out[0] if isinstance(out, tuple) else out.latent_dist
        cast = DiagonalGaussianDistribution(dist.parameters.to(x.dtype))
        if isinstance(out, tuple):
            return (cast,)
        out.latent_dist = cast
        return out

    return encode


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
