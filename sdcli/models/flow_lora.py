"""LoRA files of the flow families beyond Flux.1 in their diffusers transformers' names, at any width.

A layout maps each Linear layer of a family's original module tree (the names its own code, ComfyUI, kohya's
sd-scripts and most trainers use) to the diffusers module(s) it became: one, several for a fused layer (its up
matrix's rows split by the modules' output sizes, the down matrix shared), with the two halves of the rows swapped
where diffusers swaps (shift, scale) to (scale, shift). original_to_peft renames a LoRA file written in that tree,
in any spelling (kohya `lora_unet_a_b_c.lora_down/lora_up/alpha`, ComfyUI/ai-toolkit `diffusion_model.a.b.c.
lora_A/lora_B`, unprefixed), alpha / rank folded in as diffusers folds it. Only renames and row splits: tiny files
convert as released ones do.

Who converts what (each family's lora_state picks):
- SD3: sdcli (sd3_layout) for kohya/ComfyUI files in SAI's MMDiT names and sd-scripts' `lora_te1_`/`lora_te2_`/
  `lora_te3_` CLIP-L/G and T5-XXL layers (text_to_peft; the T5 part loaded by models.flux_lora.load_t5, as
  diffusers' SD3 loader takes none); diffusers' SD3LoraLoaderMixin, which converts nothing, for PEFT files.
- Z-Image: sdcli (zimage_layout) for files in the original names (fused `attention.qkv`, `attention.out`,
  `x_embedder`, `final_layer`), which diffusers' converter does not split; diffusers'
  (_convert_non_diffusers_z_image_lora_to_diffusers: renames only) for diffusers names in any spelling.
- Chroma: sdcli (bfl_layout) for kohya and ComfyUI files in BFL names (diffusers' kohya Flux converter splits a
  single block's linear1 at Flux's released width only); diffusers' FluxLoraLoaderMixin for PEFT files.
- Qwen-Image: diffusers (_convert_non_diffusers_qwen_lora_to_diffusers: kohya/musubi, ComfyUI, lightx2v; renames).
- Flux.2: diffusers (_convert_kohya_flux2_lora_to_diffusers: even splits, no width asserted) for sd-scripts' kohya
  files, sdcli (flux2_layout) for the layers it drops (the modulations, final_layer.adaLN_modulation.1) and for
  ComfyUI/ai-toolkit files in BFL names (diffusers' converter for those takes no alpha and does not swap
  final_layer's rows as its weight converter does); PEFT and LoKr files go to diffusers as they are.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from sdcli.models.flux_keys import BLOCKS, DOUBLE, DOUBLE_FUSED, SINGLE, SINGLE_FUSED, SWAPPED, TOP, KeyLayoutError

Tensors = dict[str, Any]
Shapes = Mapping[str, tuple[int, int]]  # a transformer's Linear modules (diffusers names) -> (in, out) features
Target = tuple[tuple[str, ...], bool]  # (diffusers modules, rows' halves swapped)
Layout = dict[str, Target]  # original layer name -> its target
KOHYA = "lora_unet_"
# Prefixes of the original names in ComfyUI / ai-toolkit / PEFT-wrapped files ("" last: unprefixed).
PREFIXES = ("diffusion_model.", "model.diffusion_model.", "transformer.", "base_model.model.", "")
_KEY = re.compile(r"^(.+?)\.(lora_down|lora_up|lora_A|lora_B|alpha)(?:\.weight)?$")
_PART = {"lora_down": "down", "lora_A": "down", "lora_up": "up", "lora_B": "up", "alpha": "alpha"}
QKV = "qkv"
APPROXIMATOR = "distilled_guidance_layer."  # Chroma's modulation network


def linear_shapes(module: Any) -> dict[str, tuple[int, int]]:
    """A loaded torch module's Linear layers (a layer an adapter wrapped: by its own name) -> (in, out)."""
    import torch

    return {name.removesuffix(".base_layer"): (int(m.in_features), int(m.out_features))
            for name, m in module.named_modules() if isinstance(m, torch.nn.Linear) and ".lora_" not in name}


def _fused(layout: Layout, shapes: Shapes, name: str, modules: tuple[str, ...], swap: bool = False) -> None:
    """Add `name` -> `modules` when the model has them all."""
    if all(m in shapes for m in modules):
        layout[name] = (modules, swap)


def sd3_layout(shapes: Shapes) -> Layout:
    """SAI's MMDiT names (joint_blocks.N.x_block/context_block...) of an SD3Transformer2DModel's Linear layers;
    the last block's context modulation and the final one swapped, as diffusers' single-file converter swaps."""
    from sdcli.models.sd3_write import BLOCK_KEYS, FUSED, TOP_KEYS

    blocks = {int(m.split(".")[1]) for m in shapes if m.startswith("transformer_blocks.")}
    last = max(blocks, default=-1)
    layout: Layout = {}
    for top, original in TOP_KEYS.items():
        _fused(layout, shapes, original, (top,), top == "norm_out.linear")
    for i in sorted(blocks):
        block = f"transformer_blocks.{i}."
        for rest, original in BLOCK_KEYS.items():
            swap = i == last and rest == "norm1_context.linear"
            _fused(layout, shapes, f"joint_blocks.{i}.{original}", (block + rest,), swap)
        for start, original in FUSED.items():
            suffix = "_proj" if start == "attn.add_" else ""
            _fused(layout, shapes, f"joint_blocks.{i}.{original}", tuple(f"{block}{start}{x}{suffix}" for x in QKV))
    return layout


def zimage_layout(shapes: Shapes) -> Layout:
    """Z-Image's original names: each attention's fused qkv and its `out`, x_embedder and final_layer without
    diffusers' "all_...2-1" wrapping; every other layer keeps its name."""
    layout: Layout = {}
    for module in shapes:
        if m := re.fullmatch(r"(.+\.attention)\.to_q", module):
            _fused(layout, shapes, f"{m[1]}.qkv", tuple(f"{m[1]}.to_{x}" for x in QKV))
        elif re.fullmatch(r".+\.attention\.to_[kv]", module):
            continue
        elif module.endswith(".attention.to_out.0"):
            layout[module.removesuffix(".to_out.0") + ".out"] = ((module,), False)
        else:
            original = re.sub(r"^all_(x_embedder|final_layer)\.2-1", r"\1", module)
            layout[original] = ((module,), False)
    return layout


def _blocks(shapes: Shapes, diffusers: str) -> list[int]:
    return sorted({int(m.split(".")[1]) for m in shapes if m.startswith(diffusers + ".")})


def bfl_layout(shapes: Shapes) -> Layout:
    """BFL's names (double_blocks / single_blocks, img_in, final_layer, ...) of a Flux.1-style transformer's Linear
    layers (Chroma's; flux_keys' tables): fused qkv and a single block's linear1 (q, k, v, the MLP) split; Chroma's
    approximator (distilled_guidance_layer: its layers' in_layer/out_layer are diffusers' linear_1/linear_2)."""
    layout: Layout = {}
    for original, module in TOP.items():
        _fused(layout, shapes, original, (module,), original == SWAPPED)
    for module in shapes:
        if module.startswith(APPROXIMATOR):
            original = module.replace(".linear_1", ".in_layer").replace(".linear_2", ".out_layer")
            layout[original] = ((module,), False)
    for kind, plain, fused in (("double_blocks", DOUBLE, DOUBLE_FUSED), ("single_blocks", SINGLE, SINGLE_FUSED)):
        for i in _blocks(shapes, BLOCKS[kind]):
            block = f"{BLOCKS[kind]}.{i}."
            for original, module in plain.items():
                _fused(layout, shapes, f"{kind}.{i}.{original}", (block + module,))
            for original, modules in fused.items():
                _fused(layout, shapes, f"{kind}.{i}.{original}", tuple(block + m for m in modules))
    return layout


# Flux.2's BFL names (diffusers' convert_flux2_transformer_checkpoint_to_diffusers) -> diffusers module.
FLUX2_TOP = {"img_in": "x_embedder", "txt_in": "context_embedder",
             "time_in.in_layer": "time_guidance_embed.timestep_embedder.linear_1",
             "time_in.out_layer": "time_guidance_embed.timestep_embedder.linear_2",
             "guidance_in.in_layer": "time_guidance_embed.guidance_embedder.linear_1",  # dev's guidance embedding
             "guidance_in.out_layer": "time_guidance_embed.guidance_embedder.linear_2",
             "double_stream_modulation_img.lin": "double_stream_modulation_img.linear",
             "double_stream_modulation_txt.lin": "double_stream_modulation_txt.linear",
             "single_stream_modulation.lin": "single_stream_modulation.linear",
             "final_layer.linear": "proj_out", SWAPPED: "norm_out.linear"}
FLUX2_DOUBLE = {"img_attn.proj": "attn.to_out.0", "txt_attn.proj": "attn.to_add_out",
                "img_mlp.0": "ff.linear_in", "img_mlp.2": "ff.linear_out",
                "txt_mlp.0": "ff_context.linear_in", "txt_mlp.2": "ff_context.linear_out"}
FLUX2_SINGLE = {"linear1": "attn.to_qkv_mlp_proj", "linear2": "attn.to_out"}
# The kohya layers diffusers' kohya Flux.2 converter (0.42) leaves out: sdcli renames them (flux2_kohya_to_peft).
FLUX2_KOHYA_EXTRA = ("double_stream_modulation_img.lin", "double_stream_modulation_txt.lin",
                     "single_stream_modulation.lin", SWAPPED, "guidance_in.in_layer", "guidance_in.out_layer")


def flux2_layout(shapes: Shapes) -> Layout:
    """Flux.2's BFL names of a Flux2Transformer2DModel's Linear layers (the single blocks stay fused in diffusers)."""
    layout: Layout = {}
    for original, module in FLUX2_TOP.items():
        _fused(layout, shapes, original, (module,), original == SWAPPED)
    for i in _blocks(shapes, "transformer_blocks"):
        block = f"transformer_blocks.{i}."
        for original, module in FLUX2_DOUBLE.items():
            _fused(layout, shapes, f"double_blocks.{i}.{original}", (block + module,))
        for original, modules in DOUBLE_FUSED.items():
            _fused(layout, shapes, f"double_blocks.{i}.{original}", tuple(block + m for m in modules))
    for i in _blocks(shapes, "single_transformer_blocks"):
        for original, module in FLUX2_SINGLE.items():
            _fused(layout, shapes, f"single_blocks.{i}.{original}", (f"single_transformer_blocks.{i}.{module}",))
    return layout


def identity_layout(shapes: Shapes) -> Layout:
    """A family whose original names are diffusers' (Qwen-Image)."""
    return {module: ((module,), False) for module in shapes}


LAYOUTS: dict[str, Callable[[Shapes], Layout]] = {
    "sd3": sd3_layout, "zimage": zimage_layout, "bfl": bfl_layout, "flux2": flux2_layout, "identity": identity_layout}


def _folded(down: Any, up: Any, alpha: Any) -> tuple[Any, Any]:
    """alpha / rank folded into the pair, split between them as diffusers' converters split it."""
    rank = int(down.shape[0])
    scale = (float(alpha) if alpha is not None else rank) / rank
    scale_down, scale_up = scale, 1.0
    while scale_down * 2 < scale_up:
        scale_down, scale_up = scale_down * 2, scale_up / 2
    return down * scale_down, up * scale_up


def swap_halves(tensor: Any) -> Any:
    """The two halves of dim 0 swapped ((shift, scale) <-> (scale, shift))."""
    import torch

    first, second = torch.chunk(tensor, 2, dim=0)
    return torch.cat([second, first], dim=0)


def _layer_name(stem: str, layout: Layout, by_kohya: Mapping[str, str]) -> str | None:
    """The original layer a key's stem names (kohya's spelling or a prefixed dotted one), or None."""
    if stem.startswith(KOHYA):
        return by_kohya.get(stem[len(KOHYA):])
    return next((stem[len(p):] for p in PREFIXES if stem.startswith(p) and stem[len(p):] in layout), None)


def is_original(state: Mapping[str, Any], layout: Layout) -> bool:
    """Whether every key of `state` names a layer of `layout` (in any spelling original_to_peft reads)."""
    by_kohya = {name.replace(".", "_"): name for name in layout}
    for key in state:
        m = _KEY.match(key)
        if m is None or _layer_name(m[1], layout, by_kohya) is None:
            return False
    return bool(state)


def original_to_peft(state: Mapping[str, Any], layout: Layout, shapes: Shapes) -> Tensors:
    """A LoRA in a family's original names (any spelling, see the module doc) as `transformer.<module>.lora_A/B.
    weight` pairs, alpha folded in, fused layers split by `shapes`' output sizes. A key naming no layer of the
    layout, or a layer without its down or up matrix, or of other sizes, raises KeyLayoutError naming it."""
    import torch

    by_kohya = {name.replace(".", "_"): name for name in layout}
    pairs: dict[str, dict[str, Any]] = {}
    for key, value in state.items():
        m = _KEY.match(key)
        name = None if m is None else _layer_name(m[1], layout, by_kohya)
        if m is None or name is None:
            raise KeyLayoutError(f"not a layer of this model: {key}")
        pairs.setdefault(name, {})[_PART[m[2]]] = value
    out: Tensors = {}
    for name, pair in sorted(pairs.items()):
        if "down" not in pair or "up" not in pair:
            raise KeyLayoutError(f"a LoRA layer lacks its down or up matrix: {name}")
        down, up = _folded(pair["down"], pair["up"], pair.get("alpha"))
        modules, swap = layout[name]
        sizes = [shapes[m][1] for m in modules]
        if int(up.shape[0]) != sum(sizes) or int(down.shape[1]) != shapes[modules[0]][0]:
            raise KeyLayoutError(f"{name}: its tensor shapes differ from the model's layer")
        for module, part in zip(modules, torch.split(swap_halves(up) if swap else up, sizes), strict=True):
            out[f"transformer.{module}.lora_A.weight"] = down
            out[f"transformer.{module}.lora_B.weight"] = part.contiguous()
    return out


def text_to_peft(state: Mapping[str, Any], encoders: Mapping[str, Shapes]) -> Tensors:
    """sd-scripts' text-encoder layers (`lora_te1_...` = `lora_te_...`, `lora_te2_...`, `lora_te3_...`: SD3's CLIP-L,
    CLIP-G, T5-XXL) as `text_encoder[_2|_3].<module>.lora_A/B.weight` for the named encoders (pipeline component ->
    its Linear shapes). Layers for an encoder not named raise KeyLayoutError."""
    prefixes = {"lora_te1_": "text_encoder", "lora_te_": "text_encoder", "lora_te2_": "text_encoder_2",
                "lora_te3_": "text_encoder_3"}
    out: Tensors = {}
    for prefix, component in prefixes.items():
        part = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
        if not part:
            continue
        if component not in encoders:
            raise KeyLayoutError(f"{prefix}* layers: this model has no {component} that takes a LoRA")
        converted = original_to_peft({KOHYA + k: v for k, v in part.items()},
                                     identity_layout(encoders[component]), encoders[component])
        out.update({component + k[len("transformer"):]: v for k, v in converted.items()})
    return out
