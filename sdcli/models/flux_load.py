"""Load Flux.1 components from any file layout people have, offline, with strict key checks.

Each loader takes a file (transformer-only in BFL / ComfyUI / diffusers layout, a ComfyUI
all-in-one checkpoint, a standalone CLIP-L / T5-XXL / VAE file, or a city96-style GGUF), the
compute dtype, and the component's diffusers/transformers config (a dict, or a folder holding
config.json): no hub is asked. The weights are converted to diffusers' names (flux_keys), checked
against the model the config builds (a missing, extra or misshapen key is an error naming the
file), and handed to diffusers' own loading (from_single_file with the converted state dict, which
is also where GGUF quantization is applied) or transformers' from_pretrained(state_dict=...).
fp8-stored weights (float8_e4m3fn / float8_e5m2) are upcast to the compute dtype.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sdcli.errors import ModelError
from sdcli.models.flux_files import FluxFile, inspect_flux_file, inspect_part
from sdcli.models.flux_keys import (
    KeyLayoutError,
    clip_drop,
    strip_prefix,
    text_encoder_state,
    transformer_to_diffusers,
    vae_to_diffusers,
)
from sdcli.models.scaled_fp8 import is_scaled, read_scaled

Config = dict[str, Any] | str | Path
FP8 = ("float8_e4m3fn", "float8_e5m2")


def _describe(info: FluxFile) -> str:
    """What a file turned out to be, for an error message."""
    return f"it holds {info.kind}" if info.kind else "it holds no Flux component sdcli knows"


def read_tensors(path: Path, prefix: str = "", source: str = "--model", dtype: Any = None) -> dict[str, Any]:
    """The tensors of a .safetensors or .gguf file whose names start with `prefix` (prefix removed).

    A safetensors file is read key by key, so loading one component of an all-in-one file reads
    only that component; in ComfyUI's scaled fp8 files each scaled weight comes back multiplied out
    in `dtype` (float32 when None) and their markers and scales are dropped (models.scaled_fp8). A
    GGUF file's quantized tensors come back as diffusers' GGUFParameter.
    """
    if path.suffix.lower() == ".gguf":
        from diffusers.models.model_loading_utils import load_gguf_checkpoint

        return strip_prefix(load_gguf_checkpoint(str(path)), prefix)
    from safetensors import safe_open

    from sdcli.models.safety import check_safetensors

    check_safetensors(path, source)
    with safe_open(str(path), framework="pt", device="cpu") as fh:
        every = list(fh.keys())
        keys = [k for k in every if k.startswith(prefix)]
        if is_scaled(every, fh.metadata() or {}):
            import torch

            state = read_scaled(fh, keys, dtype or torch.float32, f"{source}: {path}")
            return {k[len(prefix):]: v for k, v in state.items()}
        return {k[len(prefix):]: fh.get_tensor(k) for k in keys}


def upcast(state: dict[str, Any], dtype: Any) -> dict[str, Any]:
    """fp8-stored tensors in the compute dtype (diffusers/transformers would matmul nothing in fp8 on a CPU)."""
    return {k: v.to(dtype) if str(v.dtype).removeprefix("torch.") in FP8 else v for k, v in state.items()}


def config_dict(config: Config) -> dict[str, Any]:
    """A component config as a dict (from a dict, or a folder / file holding config.json)."""
    if isinstance(config, dict):
        return dict(config)
    path = Path(config)
    return dict(json.loads((path / "config.json" if path.is_dir() else path).read_text()))


@contextmanager
def config_folder(config: Config) -> Iterator[str]:
    """A folder holding the component's config.json, as diffusers' from_single_file(config=) wants."""
    if not isinstance(config, dict) and Path(config).is_dir():
        yield str(config)
        return
    with tempfile.TemporaryDirectory(prefix="sdcli-config-") as tmp:
        (Path(tmp) / "config.json").write_text(json.dumps(config_dict(config)))
        yield tmp


def check_keys(state: dict[str, Any], expected: dict[str, Any], where: str) -> None:
    """Refuse a state dict whose keys or shapes differ from the model's: the message names the file and keys."""
    missing = sorted(set(expected) - set(state))
    extra = sorted(set(state) - set(expected))
    if missing or extra:
        parts = [f"missing {', '.join(missing[:4])}" + (" ..." if len(missing) > 4 else "")] if missing else []
        parts += [f"unexpected {', '.join(extra[:4])}" + (" ..." if len(extra) > 4 else "")] if extra else []
        raise ModelError(f"{where}: the weights do not fit the model: {'; '.join(parts)}")
    for key, value in state.items():
        shape = tuple(getattr(value, "quant_shape", value.shape))
        if shape != tuple(expected[key].shape):
            raise ModelError(f"{where}: {key} has shape {list(shape)}, the model expects {list(expected[key].shape)}")


def _load_diffusers(cls: Any, state: dict[str, Any], config: Config, dtype: Any, where: str,
                    quantization_config: Any = None) -> Any:
    """A diffusers model from a state dict already in its names: checked strictly, loaded by from_single_file."""
    from accelerate import init_empty_weights

    from sdcli.models.quiet import quiet_libraries

    quiet_libraries()
    with init_empty_weights():
        expected = cls.from_config(config_dict(config)).state_dict()
    check_keys(state, expected, where)
    with config_folder(config) as folder:
        return cls.from_single_file(state, config=folder, local_files_only=True, torch_dtype=dtype,
                                    quantization_config=quantization_config)


def load_flux_transformer(path: Path, dtype: Any, config: Config, source: str = "--model") -> Any:
    """A FluxTransformer2DModel from any transformer-only or all-in-one file (.safetensors or .gguf).

    BFL/ComfyUI weights of the released width (3072) convert with diffusers' own converter, any
    other width with flux_keys.bfl_to_diffusers; a GGUF file loads through diffusers' GGUF
    quantizer with `dtype` as its compute dtype (quantized weights stay quantized).
    """
    from diffusers import FluxTransformer2DModel

    where = f"{source}: {path}"
    info = inspect_flux_file(path)
    if info.kind not in ("flux-transformer", "flux-all-in-one"):
        raise ModelError(f"{where} is not a Flux transformer: {_describe(info)}")
    state = read_tensors(path, info.prefix, source, dtype)
    if info.layout != "diffusers":
        try:
            state = transformer_to_diffusers(state)
        except (KeyLayoutError, KeyError, RuntimeError) as exc:
            raise ModelError(f"{where}: cannot convert the Flux transformer: {exc}") from None
    quantization = None
    if info.container == "gguf":
        from diffusers import GGUFQuantizationConfig

        quantization = GGUFQuantizationConfig(compute_dtype=dtype)
    return _load_diffusers(FluxTransformer2DModel, upcast(state, dtype), config, dtype, where, quantization)


def load_flux_vae(path: Path, dtype: Any, config: Config, source: str = "--vae") -> Any:
    """The Flux AutoencoderKL (16 latent channels) from ae.safetensors (ldm layout), a diffusers VAE or all-in-one."""
    from diffusers import AutoencoderKL

    where = f"{source}: {path}"
    info = inspect_part(path, "flux-vae")  # a standalone file, or the VAE of an all-in-one checkpoint
    if info.kind != "flux-vae":
        raise ModelError(f"{where} is not a Flux VAE: {_describe(info)}")
    state = read_tensors(path, info.prefix, source, dtype)
    if info.layout == "ldm":
        state = vae_to_diffusers(state, config_dict(config))
    return _load_diffusers(AutoencoderKL, upcast(state, dtype), config, dtype, where)


def _text_state(path: Path, kind: str, source: str, dtype: Any) -> dict[str, Any]:
    """The tensors of a standalone text encoder file, or of one text encoder in an all-in-one file."""
    info = inspect_part(path, kind)
    if info.kind == kind:
        return read_tensors(path, info.prefix, source, dtype)
    raise ModelError(f"{source}: {path} is not a {kind} text encoder: {_describe(info)}")


def _load_transformers(cls: Any, config_cls: Any, state: dict[str, Any], config: Config, dtype: Any,
                       where: str) -> Any:
    """A transformers model from a state dict in its names: checked strictly, loaded by from_pretrained(state_dict=)."""
    import torch

    from sdcli.models.quiet import quiet_libraries

    quiet_libraries()
    cfg = config_cls(**config_dict(config))
    with torch.device("meta"):
        expected = cls(cfg).state_dict()
    check_keys(state, expected, where)
    model = cls.from_pretrained(None, config=cfg, state_dict=state, dtype=dtype)
    return model.eval()


def load_clip_l(path: Path, dtype: Any, config: Config, source: str = "--text-encoder") -> Any:
    """CLIPTextModel (CLIP-L) from a standalone file (transformers keys, maybe prefixed) or an all-in-one file."""
    import torch
    from transformers import CLIPTextConfig, CLIPTextModel

    state = _text_state(path, "clip-l", source, dtype)
    with torch.device("meta"):
        expected = set(CLIPTextModel(CLIPTextConfig(**config_dict(config))).state_dict())
    state = text_encoder_state(upcast(state, dtype), expected, clip_drop)
    return _load_transformers(CLIPTextModel, CLIPTextConfig, state, config, dtype, f"{source}: {path}")


def load_t5(path: Path, dtype: Any, config: Config, source: str = "--text-encoder") -> Any:
    """T5EncoderModel (T5-XXL) from a standalone file (shared.weight + encoder.*) or an all-in-one file."""
    from transformers import T5Config, T5EncoderModel

    if inspect_part(path, "t5xxl").container == "gguf":  # city96's encoder GGUFs: llama.cpp's names, dequantized
        from sdcli.models.gguf_text import read_gguf_encoder

        state = read_gguf_encoder(path, T5EncoderModel, T5Config(**config_dict(config)), dtype, source)
    else:
        state = upcast(_text_state(path, "t5xxl", source, dtype), dtype)
    state = {k: v for k, v in state.items() if not k.startswith("decoder.")}  # some files carry the unused decoder
    if "shared.weight" in state:  # the token embedding is tied: files store it once
        state.setdefault("encoder.embed_tokens.weight", state["shared.weight"])
    elif "encoder.embed_tokens.weight" in state:
        state["shared.weight"] = state["encoder.embed_tokens.weight"]
    return _load_transformers(T5EncoderModel, T5Config, state, config, dtype, f"{source}: {path}")
