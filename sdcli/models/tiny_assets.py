"""Tiny random add-on files for a tiny model: LoRAs (kohya and diffusers formats),
textual-inversion embeddings (WebUI, diffusers, SDXL) and VAEs (folder or WebUI
single file). Built from the model folder's own tensor names and shapes, so
they fit it exactly; `scale_width` makes ones that do not (another family).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

# Linear layers a LoRA adapts, as tensor names in the model folder.
_UNET_TARGETS = re.compile(r"^(.*attn[12]\.(?:to_q|to_k|to_v|to_out\.0))\.weight$")
_TE_TARGETS = re.compile(r"^(?:text_model\.)?(encoder\.layers\.\d+\.self_attn\.(?:q|k|v|out)_proj)\.weight$")


def _shapes(file: Path) -> dict[str, tuple[int, ...]]:
    from safetensors import safe_open

    with safe_open(str(file), "pt") as fh:
        return {key: tuple(fh.get_slice(key).get_shape()) for key in fh.keys()}  # noqa: SIM118


def _targets(model: Path, unet: bool, text_encoder: bool) -> list[tuple[str, str, int, int]]:
    """(part, module name, in features, out features) of every layer a LoRA adapts."""
    found = []
    parts = [("unet", "unet/diffusion_pytorch_model.safetensors", _UNET_TARGETS)] if unet else []
    parts += [("te", "text_encoder/model.safetensors", _TE_TARGETS)] if text_encoder else []
    for part, file, pattern in parts:
        for key, shape in sorted(_shapes(model / file).items()):
            if match := pattern.match(key):
                found.append((part, match.group(1), shape[1], shape[0]))
    return found


def write_tiny_lora(model: Path, path: Path, *, fmt: str = "kohya", seed: int = 0, rank: int = 4,
                    unet: bool = True, text_encoder: bool = True, scale_width: int = 1,
                    strength: float = 0.5) -> Path:
    """A random LoRA for the tiny model folder `model`, in kohya ("kohya") or diffusers/peft ("diffusers") keys."""
    import torch
    from safetensors.torch import save_file

    gen = torch.Generator().manual_seed(seed)
    state: dict[str, Any] = {}
    for part, name, fan_in, fan_out in _targets(model, unet, text_encoder):
        down = torch.randn(rank, fan_in * scale_width, generator=gen) * strength
        up = torch.randn(fan_out * scale_width, rank, generator=gen) * strength
        if fmt == "kohya":
            prefix = "lora_unet_" if part == "unet" else "lora_te_text_model_"
            key = prefix + name.replace(".", "_")
            state |= {f"{key}.lora_down.weight": down, f"{key}.lora_up.weight": up,
                      f"{key}.alpha": torch.tensor(float(rank))}
        else:
            key = f"unet.{name}" if part == "unet" else f"text_encoder.text_model.{name}"
            state |= {f"{key}.lora_A.weight": down, f"{key}.lora_B.weight": up}
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    return path


def write_tiny_embedding(path: Path, *, fmt: str = "webui", vectors: int = 1, width: int = 32,
                         seed: int = 0) -> Path:
    """A random embedding: "webui" (.safetensors or .pt by suffix), "diffusers" or "sdxl" (clip_l + clip_g)."""
    import torch
    from safetensors.torch import save_file

    gen = torch.Generator().manual_seed(seed)
    vec = torch.randn(vectors, width, generator=gen)
    path.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "webui" and path.suffix == ".pt":
        torch.save({"string_to_token": {"*": 265}, "string_to_param": {"*": vec}, "name": path.stem,
                    "step": 0}, path)
        return path
    data = {"webui": {"emb_params": vec}, "diffusers": {f"<{path.stem}>": vec[0]},
            "sdxl": {"clip_l": vec, "clip_g": torch.randn(vectors, width, generator=gen)}}[fmt]
    save_file(data, str(path))
    return path


def write_tiny_vae(model: Path, path: Path, *, seed: int = 1, layout: str = "webui",
                   scale_width: int = 1) -> Path:
    """A random VAE with the tiny model's config: a diffusers folder ("diffusers") or one
    .safetensors file in the WebUI/LDM key layout ("webui")."""
    import json

    import torch
    from diffusers import AutoencoderKL
    from safetensors.torch import save_file

    config = json.loads((model / "vae" / "config.json").read_text())
    config["block_out_channels"] = [c * scale_width for c in config["block_out_channels"]]
    torch.manual_seed(seed)
    vae = AutoencoderKL.from_config(config)
    if layout == "diffusers":
        vae.save_pretrained(path, safe_serialization=True)
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(to_ldm_vae(vae.state_dict(), len(config["block_out_channels"])), str(path))
    return path


def to_ldm_vae(state: dict[str, Any], blocks: int) -> dict[str, Any]:
    """diffusers VAE tensor names -> the WebUI's (LDM) names: the inverse of diffusers' converter."""
    out = {}
    for key, value in state.items():
        new = key.replace("conv_norm_out", "norm_out").replace("conv_shortcut", "nin_shortcut")
        new = re.sub(r"encoder\.down_blocks\.(\d+)\.resnets\.", r"encoder.down.\1.block.", new)
        new = re.sub(r"encoder\.down_blocks\.(\d+)\.downsamplers\.0\.", r"encoder.down.\1.downsample.", new)
        new = re.sub(r"decoder\.up_blocks\.(\d+)\.(resnets|upsamplers\.0)\.",
                     lambda m: f"decoder.up.{blocks - 1 - int(m.group(1))}."
                               f"{'block' if m.group(2) == 'resnets' else 'upsample'}.", new)
        new = re.sub(r"mid_block\.resnets\.(\d)\.", lambda m: f"mid.block_{int(m.group(1)) + 1}.", new)
        if "mid_block.attentions.0." in new:
            new = new.replace("mid_block.attentions.0.", "mid.attn_1.")
            for old, ldm in (("group_norm", "norm"), ("to_q", "q"), ("to_k", "k"), ("to_v", "v"),
                             ("to_out.0", "proj_out")):
                new = new.replace(f".{old}.", f".{ldm}.")
            if value.dim() == 2:
                value = value[:, :, None, None]
        out[new] = value.contiguous()
    return out


def write_tiny_upscaler(path: Path, *, scale: int = 4, seed: int = 0, filters: int = 8, growth: int = 32,
                        blocks: int = 1) -> Path:
    """A random ESRGAN (RRDBNet) upscaler in the BasicSR/Real-ESRGAN key layout spandrel detects: 4x, or
    2x as Real-ESRGAN's x2 models are (pixel-unshuffled input, the same 4x body). spandrel reads every
    size from the tensors except the growth channels, which it takes to be 32 as in every real RRDBNet."""
    import torch
    from safetensors.torch import save_file

    if scale not in (2, 4):
        raise ValueError("a tiny upscaler is 2x or 4x")
    gen = torch.Generator().manual_seed(seed)

    def conv(name: str, out_ch: int, in_ch: int) -> dict[str, Any]:
        weight = torch.randn(out_ch, in_ch, 3, 3, generator=gen) / (3 * in_ch ** 0.5)
        return {f"{name}.weight": weight, f"{name}.bias": torch.randn(out_ch, generator=gen) * 0.01}

    state = conv("conv_first", filters, 3 * (16 // scale ** 2))  # 2x: 12 channels after unshuffle by 2
    for block in range(blocks):
        for rdb in (1, 2, 3):
            for i in range(1, 6):
                state |= conv(f"body.{block}.rdb{rdb}.conv{i}", filters if i == 5 else growth,
                              filters + (i - 1) * growth)
    for name in ("conv_body", "conv_up1", "conv_up2", "conv_hr"):
        state |= conv(name, filters, filters)
    state |= conv("conv_last", 3, filters)
    state["conv_last.bias"] = state["conv_last.bias"] + 0.5  # mid-grey, not black, before the clamp to [0, 1]
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    return path


def write_random_gfpgan(path: Path, *, seed: int = 0) -> Path:
    """A random-weight GFPGAN (v1 clean) file that spandrel detects and loads (models.faces). spandrel builds
    GFPGAN at its one real size (512 px, 86M parameters), so this is the real architecture, stored in fp16
    (172 MB); a forward pass takes seconds on a CPU core."""
    import torch
    from safetensors.torch import save_file

    from sdcli.models.upscalers import import_spandrel

    import_spandrel()  # its GFPGAN module needs no torchvision; the package's import may
    from spandrel.architectures.GFPGAN import GFPGAN

    torch.manual_seed(seed)
    net = GFPGAN(out_size=512, num_style_feat=512, channel_multiplier=2, decoder_load_path=None, fix_decoder=False,
                 num_mlp=8, input_is_latent=True, different_w=True, narrow=1, sft_half=True)
    save_file({k: v.detach().half().contiguous() for k, v in net.state_dict().items()}, str(path))
    return path
