"""Flux LoRA files before diffusers' FluxLoraLoaderMixin loads them: kohya files, and T5-XXL layers.

kohya_to_peft renames a kohya file's transformer part (`lora_unet_...`) to diffusers/PEFT names with the
BFL <-> diffusers tables of flux_keys, splitting fused layers by the model's width the way diffusers does
(the up matrix's rows split, the down matrix shared, alpha / rank folded in with diffusers' split of the
scale); the CLIP-L part goes through diffusers' converter. sdcli converts such files itself at every width:
diffusers' kohya Flux converter (_convert_kohya_flux_lora_to_diffusers, 0.42) splits a single block's
linear1 at the released width only, and at that width names the top-level layers (img_in, txt_in, time_in,
vector_in, guidance_in, final_layer) without "transformer." (its loader then drops them) and leaves
final_layer's alpha unapplied. For the block layers both agree bit for bit (a slow test). Files in other
kohya-like spellings (ComfyUI's `diffusion_model.`, `lora_transformer_` mixtures, `.diff_b` extras) go to
diffusers as they are.

split_t5 takes the T5-XXL part out (sd-scripts' `lora_te3_`, `lora_te2_` in its first Flux release,
ComfyUI's `text_encoders.t5xxl.transformer.`, PEFT's `text_encoder_2.`), which diffusers' Flux loader
drops or crashes on; load_t5 puts it into pipe.text_encoder_2 as a peft adapter.
"""

from __future__ import annotations

import re
from typing import Any

from sdcli.models.flux_keys import DOUBLE, DOUBLE_FUSED, SINGLE, SINGLE_FUSED, SWAPPED, TOP, KeyLayoutError

Tensors = dict[str, Any]
KOHYA_UNET = "lora_unet_"
T5_KOHYA = ("lora_te3_", "lora_te2_")  # sd-scripts' T5-XXL prefix (lora_te2_ in its first Flux release)
T5_COMFY = "text_encoders.t5xxl.transformer."
T5_PEFT = "text_encoder_2."  # also the prefix split_t5 gives the T5 part
_KOHYA_KEY = re.compile(r"^(?:lora_unet|lora_te1?)_\w+\.(?:lora_down\.weight|lora_up\.weight|alpha)$")


def is_kohya(state: Tensors) -> bool:
    """A kohya/sd-scripts file (what diffusers' Flux loader sends to its kohya converter)."""
    return any(".lora_down.weight" in k for k in state)


def is_plain_kohya(state: Tensors) -> bool:
    """Only sd-scripts' own keys (`lora_unet_`, `lora_te1_`/`lora_te_`): a file kohya_to_peft converts whole."""
    return is_kohya(state) and all(_KOHYA_KEY.match(k) for k in state)


def split_t5(state: Tensors, t5_linears: set[str]) -> tuple[Tensors, Tensors]:
    """(the rest of `state`, its T5-XXL layers as `text_encoder_2.<module>.lora_A/B.weight`, alpha folded in).

    `t5_linears` are the T5 encoder's Linear module names (kohya's names are them with '.' -> '_').
    A T5 layer naming no such module raises KeyLayoutError naming it.
    """
    by_kohya = {name.replace(".", "_"): name for name in t5_linears}
    rest: Tensors = {}
    pairs: dict[str, dict[str, Any]] = {}  # module -> {"down", "up", "alpha"}
    t5: Tensors = {}
    for key, value in state.items():
        if key.startswith(T5_PEFT):
            t5[key] = value
            continue
        kohya = next((p for p in T5_KOHYA if key.startswith(p)), None)
        if kohya is None and not key.startswith(T5_COMFY):
            rest[key] = value
            continue
        stem, _, part = key.rpartition(".") if key.endswith(".alpha") else key[:-len(".weight")].rpartition(".")
        if part not in ("lora_down", "lora_up", "alpha"):
            raise KeyLayoutError(f"not a T5 LoRA key: {key}")
        module = by_kohya.get(stem[len(kohya):]) if kohya else stem[len(T5_COMFY):]
        if module not in t5_linears:
            raise KeyLayoutError(f"not a T5-XXL layer: {key}")
        pairs.setdefault(module, {})[part] = value
    for module, pair in pairs.items():
        if "lora_down" not in pair or "lora_up" not in pair:
            raise KeyLayoutError(f"a T5 LoRA layer lacks its down or up matrix: {module}")
        down, up = _folded(pair["lora_down"], pair["lora_up"], pair.get("alpha"))
        t5[f"{T5_PEFT}{module}.lora_A.weight"] = down
        t5[f"{T5_PEFT}{module}.lora_B.weight"] = up
    return rest, t5


def load_t5(pipe: Any, t5: Tensors, adapter: str, component: str = T5_PEFT[:-1]) -> None:
    """The T5 part (split_t5's: `<component>.<module>.lora_A/B.weight`) into pipe.<component> (Flux:
    text_encoder_2; SD3: text_encoder_3) as peft adapter `adapter`, scale 1 per layer (alpha is folded in).
    Through transformers' load_adapter, the call diffusers' text-encoder loader ends in: that loader's key
    conversion knows only CLIP's layer names."""
    from collections import Counter

    from peft import LoraConfig

    weights = {k[len(component) + 1:]: v for k, v in t5.items()}
    ranks = {k[:-len(".lora_B.weight")]: int(v.shape[1]) for k, v in weights.items() if k.endswith(".lora_B.weight")}
    rank = Counter(ranks.values()).most_common(1)[0][0]
    others = {module: r for module, r in ranks.items() if r != rank}
    config = LoraConfig(r=rank, lora_alpha=rank, rank_pattern=others, alpha_pattern=dict(others),
                        target_modules=sorted(ranks))
    encoder = getattr(pipe, component)
    encoder.load_adapter(adapter_name=adapter, adapter_state_dict=weights, peft_config=config)
    # The new layers to the encoder's device and dtype; the encoder itself is left as loaded: a quantized one
    # (--quantize-text-encoder) cannot be cast (bitsandbytes refuses), and the rest is in place already.
    for module in encoder.modules():
        for layers in (getattr(module, "lora_A", None), getattr(module, "lora_B", None)):
            if layers is not None and adapter in layers:
                layers[adapter].to(device=encoder.device, dtype=encoder.dtype)


def _modules(table: dict[str, str]) -> dict[str, str]:
    """A flux_keys table's Linear modules (not the norm scales) in kohya spelling -> diffusers module."""
    return {bfl.replace(".", "_"): new for bfl, new in table.items() if not bfl.endswith(".scale")}


_TOP = _modules(TOP)
_DOUBLE = _modules(DOUBLE)
_SINGLE = _modules(SINGLE)
_DOUBLE_FUSED = {bfl.replace(".", "_"): parts for bfl, parts in DOUBLE_FUSED.items()}
_SINGLE_FUSED = {bfl.replace(".", "_"): parts for bfl, parts in SINGLE_FUSED.items()}


def _folded(down: Any, up: Any, alpha: Any) -> tuple[Any, Any]:
    """alpha / rank folded into the pair, split between them as diffusers' converter splits it."""
    scale = (float(alpha) if alpha is not None else down.shape[0]) / down.shape[0]
    scale_down, scale_up = scale, 1.0
    while scale_down * 2 < scale_up:
        scale_down, scale_up = scale_down * 2, scale_up / 2
    return down * scale_down, up * scale_up


def _targets(name: str, rows: int, width: int) -> list[tuple[str, int]] | None:
    """(diffusers module, rows of the up matrix) for a kohya transformer layer name, or None if unknown."""
    rest = name[len(KOHYA_UNET):]
    if rest in _TOP:
        return [(_TOP[rest], rows)]
    m = re.fullmatch(r"(double|single)_blocks_(\d+)_(.+)", rest)
    if not m:
        return None
    kind, index, module = m[1], m[2], m[3]
    prefix = f"{'transformer_blocks' if kind == 'double' else 'single_transformer_blocks'}.{index}."
    plain, fused = (_DOUBLE, _DOUBLE_FUSED) if kind == "double" else (_SINGLE, _SINGLE_FUSED)
    if module in plain:
        return [(prefix + plain[module], rows)]
    if module in fused:
        parts = fused[module]
        sizes = [rows // 3] * 3 if len(parts) == 3 else [width] * 3 + [rows - 3 * width]
        return [(prefix + part, size) for part, size in zip(parts, sizes, strict=True)]
    return None


def kohya_to_peft(state: Tensors, width: int) -> Tensors:
    """A kohya Flux LoRA for a transformer `width` wide in diffusers/PEFT names (see the module doc).

    The transformer part is renamed here; the text-encoder part goes through diffusers' own converter.
    A key of neither raises KeyLayoutError naming it.
    """
    import torch
    from diffusers.loaders.lora_conversion_utils import _convert_kohya_flux_lora_to_diffusers

    layers = {k.rsplit(".", 2)[0] if not k.endswith(".alpha") else k[:-len(".alpha")]
              for k in state if k.startswith(KOHYA_UNET)}
    out: Tensors = {}
    for name in sorted(layers):
        down, up = state.get(f"{name}.lora_down.weight"), state.get(f"{name}.lora_up.weight")
        targets = None if down is None or up is None else _targets(name, int(up.shape[0]), width)
        if targets is None:
            raise KeyLayoutError(f"not a Flux transformer LoRA layer: {name}")
        down, up = _folded(down, up, state.get(f"{name}.alpha"))
        if name == KOHYA_UNET + SWAPPED.replace(".", "_"):
            first, second = torch.chunk(up, 2, dim=0)  # BFL's (shift, scale) -> diffusers' (scale, shift)
            up = torch.cat([second, first], dim=0)
        ups = torch.split(up, [size for _, size in targets], dim=0)
        for (module, _), part in zip(targets, ups, strict=True):
            out[f"transformer.{module}.lora_A.weight"] = down
            out[f"transformer.{module}.lora_B.weight"] = part.contiguous()
    rest = {k: v for k, v in state.items() if not k.startswith(KOHYA_UNET)}
    if unknown := sorted(k for k in rest if not k.startswith(("lora_te_", "lora_te1_"))):
        raise KeyLayoutError(f"not a Flux LoRA layer: {', '.join(unknown[:3])}")
    if rest:
        out.update(_convert_kohya_flux_lora_to_diffusers(rest))
    return out

