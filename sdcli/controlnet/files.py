"""ControlNet models: found (path or name in the ControlNet folder), checked, hashed and loaded offline.

A ControlNet is a WebUI-style single file (the original `control_model.*` key
layout of lllyasviel's control_*.safetensors, or diffusers' layout in one file, as
SDXL ControlNets ship) or a diffusers folder (config.json + weights). Weights are
read by models.safety only (pickles refused unless --allow-pickle); a single file's
config is built from the loaded model's UNet config and the file's own shapes (a
ControlNet copies its UNet's encoder), and diffusers' own converter maps the
original keys. Nothing is downloaded. The infotext names a unit's model as the
extension does: `stem [hash]`, hash = the WebUI's legacy 8-hex model hash.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sdcli.errors import ModelError
from sdcli.families.base import Family
from sdcli.models.hashes import legacy_hash
from sdcli.models.loaded import LoadedModel

FLAG = "--controlnet"
ORIGINAL_PREFIX = "control_model."


@dataclass(frozen=True)
class ControlFile:
    """A ControlNet found and checked (no weights read yet)."""

    spec: str  # as given
    path: Path  # file or diffusers folder
    weights: Path  # the weights file
    name: str  # the extension's model name: the file (or folder) stem
    hash: str  # the WebUI's legacy model hash (8 hex)
    wanted_hash: str | None = None  # the hash a replayed infotext's `name [hash]` title asked for

    def warnings(self) -> list[str]:
        if self.wanted_hash and self.wanted_hash != self.hash:
            return [f"ControlNet {self.name}: {self.weights} has hash {self.hash}, the image was made with hash "
                    f"{self.wanted_hash}; the result will differ"]
        return []

    @property
    def title(self) -> str:
        return f"{self.name} [{self.hash}]"


def find_controlnet(spec: str, library: Any, allow_pickle: bool, by_name: bool = False) -> ControlFile:
    """A path, or a name in the ControlNet folder; its weights checked by the pickle/safetensors policy.
    A WebUI title `name [hash]` and anything `by_name` (from an infotext) is a name only, never a path."""
    import re

    from sdcli.models.safety import PICKLE_SUFFIXES, check_safetensors, refuse_pickle

    title = re.match(r"^(.+?)\s*\[([0-9a-fA-F]{8,64})\]$", spec)
    path = Path(spec).expanduser()
    if title or by_name or not path.exists():
        if library.folders.get("controlnet") is None:
            if title or by_name:  # from an image's infotext: a name only
                raise ModelError(f"{FLAG}: {spec!r} is a model name; no models folder is set (--models-dir, "
                                 "SDCLI_MODELS_DIR or --webui-dir) to find it in its ControlNet folder")
            raise ModelError(f"{FLAG}: no such file: {spec} (or set --models-dir/--webui-dir to find names in "
                             "its ControlNet folder)")
        path = library.find("controlnet", spec).path
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ModelError(f"{FLAG}: {path} is a folder without config.json; not a diffusers ControlNet")
        candidates = sorted(path.glob("*.safetensors")) or sorted(p for p in path.iterdir()
                                                                 if p.suffix.lower() in PICKLE_SUFFIXES)
        if not candidates:
            raise ModelError(f"{FLAG}: {path}: no weights file inside")
        weights = candidates[0]
    else:
        weights = path
    suffix = weights.suffix.lower()
    if suffix in PICKLE_SUFFIXES:
        if not allow_pickle:
            raise refuse_pickle(weights, FLAG)
    elif suffix == ".safetensors":
        check_safetensors(weights, FLAG)
    else:
        raise ModelError(f"{FLAG}: {weights}: unknown weight file type {suffix or '(none)'}; use .safetensors")
    name = path.name if path.is_dir() else path.stem
    return ControlFile(spec, path.resolve(), weights.resolve(), name, legacy_hash(weights),
                       title.group(2).lower() if title else None)


# -- Shapes: which model a ControlNet was made for -------------------------------------------


@dataclass(frozen=True)
class ControlShape:
    """What a ControlNet's weights say: width, cross-attention width, SDXL added embedding."""

    width: int
    context: int
    xl: bool

    @property
    def kind(self) -> str:
        """The ControlNet kind (a family's capabilities.controlnet): SDXL's or SD 1.x/2.x's."""
        return "sdxl" if self.xl else "sd"


def family_label(xl: bool, context: int) -> str:
    return "SDXL" if xl else {768: "SD 1.x", 1024: "SD 2.x"}.get(context, f"{context}-wide cross-attention")


def _layout(state: dict[str, Any]) -> str | None:
    """The original layout's key prefix ("control_model." or "" as some SD 2.x ControlNets ship), or None
    for diffusers' layout."""
    if any(k.startswith(ORIGINAL_PREFIX) for k in state):
        return ORIGINAL_PREFIX
    return "" if "input_hint_block.0.weight" in state else None


def shape_of(state: dict[str, Any], path: Path) -> ControlShape:
    """Width / context / SDXL from tensor shapes (key -> shape) in either key layout; ModelError if it is
    no ControlNet."""
    prefix = _layout(state)
    original = prefix is not None
    prefix = prefix or ""
    conv_in = state.get(prefix + ("input_blocks.0.0.weight" if original else "conv_in.weight"))
    hint = any(k.startswith(prefix + ("input_hint_block." if original else "controlnet_cond_embedding."))
               for k in state)
    if conv_in is None or not hint:
        raise ModelError(f"{FLAG}: {path} is not a ControlNet (no {'control_model.' if original else 'controlnet_'}"
                         " hint-block weights); pass a ControlNet model, not a checkpoint or LoRA")
    context = next((int(v[1]) for k, v in state.items() if k.endswith("attn2.to_k.weight")), 0)
    xl = any(k.startswith(prefix + ("label_emb." if original else "add_embedding.")) for k in state)
    return ControlShape(int(conv_in[0]), context, xl)


def header_shape(file: ControlFile) -> ControlShape | None:
    """The shape from a safetensors header alone (None for pickles, read only when loading)."""
    from sdcli.models.single_file import read_header

    if file.weights.suffix.lower() != ".safetensors":
        return None
    return shape_of(read_header(file.weights)[0], file.path)


def check_family(file: ControlFile, shape: ControlShape | None, family: Family) -> None:
    """Before the model loads: an SDXL ControlNet needs an SDXL model and the other way round."""
    if shape is not None and shape.kind != family.capabilities.controlnet:
        raise ModelError(f"{FLAG}: {file.path} is a ControlNet for {family_label(shape.xl, shape.context)} "
                         f"(UNet {shape.width} wide), but the model is {family.label}; use a ControlNet made "
                         "for this model")


def check_fits(shape: ControlShape, unet: Any, kind: str | None, file: ControlFile) -> None:
    """Refuse a ControlNet made for another model family (`kind`: the family's capabilities.controlnet), naming
    the file and both families."""
    config = unet.config
    model_xl = kind == "sdxl"
    if (shape.kind, shape.context, shape.width) != (kind, config.cross_attention_dim, config.block_out_channels[0]):
        raise ModelError(f"{FLAG}: {file.path} is a ControlNet for {family_label(shape.xl, shape.context)} "
                         f"(UNet {shape.width} wide), but the model is "
                         f"{family_label(model_xl, config.cross_attention_dim)} (UNet "
                         f"{config.block_out_channels[0]} wide); use a ControlNet made for this model")


def config_for(unet: Any, state: dict[str, Any]) -> dict[str, Any]:
    """A ControlNetModel config for a single file: the UNet's encoder settings, the file's hint block."""
    import inspect

    from diffusers import ControlNetModel

    accepted = set(inspect.signature(ControlNetModel.__init__).parameters) - {"self"}
    config = {k: v for k, v in unet.config.items() if k in accepted}
    config["in_channels"] = 4  # the latent only (an inpainting UNet's extra channels are not a ControlNet's)
    prefix = _layout(state)
    if prefix is not None:
        hint = {int(k.removeprefix(prefix).split(".")[1]): v for k, v in state.items()
                if k.startswith(prefix + "input_hint_block.") and k.endswith(".weight")}
        convs = [hint[i] for i in sorted(hint)][:-1]  # conv_in, the blocks; the last is conv_out
    else:
        blocks = {int(k.split(".")[2]): v for k, v in state.items()
                  if k.startswith("controlnet_cond_embedding.blocks.") and k.endswith(".weight")}
        convs = [state["controlnet_cond_embedding.conv_in.weight"], *[blocks[i] for i in sorted(blocks)]]
    channels = [int(convs[0].shape[0])] + [int(c.shape[0]) for c in convs[2::2]]
    config["conditioning_embedding_out_channels"] = tuple(channels)
    config["conditioning_channels"] = int(convs[0].shape[1])
    return config


def load_controlnet(file: ControlFile, model: LoadedModel, *, allow_pickle: bool = False) -> Any:
    """The ControlNetModel of `file` for `model`'s UNet (a copy of its encoder), on the UNet's device and
    dtype; ModelError for wrong-family files."""
    import torch
    from diffusers import ControlNetModel
    from diffusers.loaders.single_file_utils import convert_controlnet_checkpoint

    from sdcli.models.safety import load_state_dict

    unet = model.family.network_module(model.pipe)
    state = load_state_dict(file.weights, flag=FLAG, allow_pickle=allow_pickle)
    check_fits(shape_of({k: tuple(v.shape) for k, v in state.items()}, file.path), unet,
               model.family.capabilities.controlnet, file)
    if file.path.is_dir():
        config = json.loads((file.path / "config.json").read_text(encoding="utf-8"))
        config = {k: v for k, v in config.items() if not k.startswith("_")}
    else:
        config = config_for(unet, state)
        state = convert_controlnet_checkpoint(state, config)
    net = ControlNetModel.from_config(config)
    missing, unexpected = net.load_state_dict(state, strict=False)
    if missing or unexpected:
        names = ", ".join((missing or unexpected)[:3])
        raise ModelError(f"{FLAG}: {file.path}: weights do not fit a ControlNet for this model "
                         f"({len(missing)} missing, {len(unexpected)} unexpected: {names})")
    net = net.to(unet.device) if unet.dtype == torch.float32 else net.to(device=unet.device, dtype=unet.dtype)
    return net.eval().requires_grad_(False)


# -- Tiny random-weight ControlNets for tests (`sdcli tiny --controlnet`) ---------------------


def build_tiny_controlnet(out: Path, arch: str = "sd1", seed: int = 0, single_file: bool = False) -> Path:
    """A random-weight ControlNet fitting the tiny `arch` model: a diffusers folder, or one .safetensors
    file (SD1/SD2: the original control_model.* layout; SDXL: diffusers' layout, as SDXL ControlNets ship)."""
    import torch
    from diffusers import ControlNetModel, UNet2DConditionModel
    from safetensors.torch import save_file

    from sdcli.errors import UsageError
    from sdcli.models.tiny import ARCHES

    if arch not in ("sd1", "sd2", "sdxl"):
        raise UsageError(f"--arch: tiny ControlNets exist for sd1, sd2 and sdxl, not {arch!r}")
    if out.exists() and (out.is_file() or any(out.iterdir())):
        raise UsageError(f"{out}: already exists; choose a new path")
    torch.manual_seed(seed)
    unet = UNet2DConditionModel(**ARCHES[arch].unet)
    net = ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=(16, 32, 96, 256))
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():  # random, not zero, output convolutions: a tiny ControlNet must change pixels
        for name, param in net.named_parameters():
            if name.startswith(("controlnet_down_blocks", "controlnet_mid_block", "controlnet_cond_embedding")):
                param.copy_(torch.randn(param.shape, generator=generator) * 0.2)
    if not single_file:
        net.save_pretrained(out, safe_serialization=True)
        return out
    state = {k: v.contiguous() for k, v in net.state_dict().items()}
    if arch != "sdxl":
        state = {ORIGINAL_PREFIX + original_key(k, net.config): v for k, v in state.items()}
    out.parent.mkdir(parents=True, exist_ok=True)
    save_file(state, str(out))
    return out


def original_key(key: str, config: Any) -> str:
    """One diffusers ControlNet key in the original (lllyasviel) layout."""
    import re

    from sdcli.models.original_keys import unet_key

    if m := re.match(r"controlnet_down_blocks\.(\d+)\.(.*)", key):
        return f"zero_convs.{m[1]}.0.{m[2]}"
    if key.startswith("controlnet_mid_block."):
        return "middle_block_out.0." + key.removeprefix("controlnet_mid_block.")
    if key.startswith("controlnet_cond_embedding.conv_in."):
        return "input_hint_block.0." + key.removeprefix("controlnet_cond_embedding.conv_in.")
    if key.startswith("controlnet_cond_embedding.conv_out."):
        return "input_hint_block.14." + key.removeprefix("controlnet_cond_embedding.conv_out.")
    if m := re.match(r"controlnet_cond_embedding\.blocks\.(\d+)\.(.*)", key):
        return f"input_hint_block.{2 * (int(m[1]) + 1)}.{m[2]}"
    return unet_key(key, config)
