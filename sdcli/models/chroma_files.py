"""Chroma from single files: a transformer-only file with the T5-XXL text encoder and Flux VAE files beside it.

Transformer layouts: the original one (lodestones' Chroma / Chroma1-HD files and ComfyUI's: Flux's BFL block
names without modulation weights, plus the "approximator" distilled_guidance_layer), bare or under ComfyUI's
"model.diffusion_model.", diffusers' names, and city96-style GGUFs (the original names). diffusers'
convert_chroma_transformer_checkpoint_to_diffusers hard-codes the released width (3072) for the split of each
single block's fused linear1, so sdcli converts by its own key mapping at every width: the approximator's few
renames here, the blocks through models.flux_keys (split sizes from the tensors' shapes). The text encoder is
T5-XXL (t5xxl_fp16.safetensors, as for Flux) with the bundled T5 v1.1 tokenizer (a `tokenizer` folder beside the
model overrides it); the VAE Flux's ae.safetensors. Configs: configs/chroma.json for the released width
(transformer: diffusers' ChromaTransformer2DModel defaults, which are Chroma1-HD's; T5 v1.1 XXL and the Flux VAE:
flux-dev.json's; scheduler: Flux's), else the tiny architecture (models.tiny_chroma).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from sdcli.errors import ModelError
from sdcli.families.base import Detected
from sdcli.models.resolve import ModelRef

APPROXIMATOR = "distilled_guidance_layer."
IMG_IN = ("img_in.weight", "x_embedder.weight")  # original / diffusers: the hidden width is its rows
FULL_WIDTH = 3072
# Approximator sub-module names inside distilled_guidance_layer.layers.{i} (original -> diffusers).
LAYER_NAMES = {"in_layer": "linear_1", "out_layer": "linear_2"}
GGUF_KEEP = ("img_in.", "txt_in.", "final_layer.", APPROXIMATOR)  # kept in F32, as city96's Flux inputs


def _approximator_to_diffusers(key: str) -> str:
    """One approximator key in diffusers' names (norms' `scale` is their `weight`)."""
    if m := re.fullmatch(r"distilled_guidance_layer\.layers\.(\d+)\.(in_layer|out_layer)\.(\w+)", key):
        return f"distilled_guidance_layer.layers.{m[1]}.{LAYER_NAMES[m[2]]}.{m[3]}"
    if m := re.fullmatch(r"distilled_guidance_layer\.norms\.(\d+)\.scale", key):
        return f"distilled_guidance_layer.norms.{m[1]}.weight"
    return key


def chroma_to_diffusers(state: dict[str, Any], config: dict[str, Any] | None = None) -> dict[str, Any]:
    """An original-layout Chroma transformer state dict in diffusers' names, at any width."""
    from sdcli.models.flux_keys import bfl_to_diffusers

    approximator = {_approximator_to_diffusers(k): v for k, v in state.items() if k.startswith(APPROXIMATOR)}
    rest = {k: v for k, v in state.items() if not k.startswith(APPROXIMATOR)}
    return {**approximator, **bfl_to_diffusers(rest)}


def chroma_to_original(state: dict[str, Any]) -> dict[str, Any]:
    """A diffusers ChromaTransformer2DModel state dict in the original names (chroma_to_diffusers' inverse)."""
    from sdcli.models.flux_keys import diffusers_to_bfl

    back = {v: k for k, v in LAYER_NAMES.items()}
    out = {}
    for key, value in state.items():
        if not key.startswith(APPROXIMATOR):
            continue
        if m := re.fullmatch(r"distilled_guidance_layer\.layers\.(\d+)\.(linear_1|linear_2)\.(\w+)", key):
            key = f"distilled_guidance_layer.layers.{m[1]}.{back[m[2]]}.{m[3]}"
        elif m := re.fullmatch(r"distilled_guidance_layer\.norms\.(\d+)\.weight", key):
            key = f"distilled_guidance_layer.norms.{m[1]}.scale"
        out[key] = value
    return {**out, **diffusers_to_bfl({k: v for k, v in state.items() if not k.startswith(APPROXIMATOR)})}


def chroma_layout(path: Path) -> tuple[str, bool, int]:
    """(key prefix, whether the keys are diffusers', transformer width) of a Chroma transformer file."""
    from sdcli.models.flow_load import transformer_prefix
    from sdcli.models.flux_files import read_tensor_table

    prefix = transformer_prefix(path, APPROXIMATOR + "in_proj.weight")
    shapes = read_tensor_table(path)[0]
    diffusers_layout = prefix + IMG_IN[1] in shapes
    return prefix, diffusers_layout, int(shapes[prefix + IMG_IN[diffusers_layout]][0])


def component_configs(width: int, source: str) -> tuple[dict[str, Any], bool]:
    """{part: config} for a transformer of this width, and whether it is the tiny architecture."""
    from sdcli.models.bundled import family_config
    from sdcli.models.tiny_chroma import CHROMA_TRANSFORMER
    from sdcli.models.tiny_flux import DEV_SCHEDULER, FLUX_T5, FLUX_VAE

    if width == FULL_WIDTH:
        return family_config("chroma"), False
    tiny: dict[str, Any] = dict(CHROMA_TRANSFORMER)
    if width == int(tiny["num_attention_heads"]) * int(tiny["attention_head_dim"]):
        return {"transformer": tiny, "text_encoder": dict(FLUX_T5), "vae": dict(FLUX_VAE),
                "scheduler": dict(DEV_SCHEDULER)}, True
    raise ModelError(f"{source}: a Chroma transformer {width} wide is not a variant sdcli knows (expected "
                     f"{FULL_WIDTH})")


def _t5_tokenizer(spec: dict[str, Any], tiny: bool, model_dir: Path) -> Any:
    """The tiny T5 tokenizer, or the bundled T5 v1.1 one (the user's `tokenizer` folder beside the model first)."""
    from transformers import T5TokenizerFast  # type: ignore[attr-defined]

    from sdcli.models.bundled import cached_config_folder
    from sdcli.models.hashes import cache_dir
    from sdcli.models.tokenizer_files import user_tokenizers

    if tiny:
        from sdcli.models.tiny_flux import tiny_t5_tokenizer

        return tiny_t5_tokenizer()
    folder = cached_config_folder(spec, cache_dir() / "configs", "bundled", user_tokenizers(spec, model_dir))
    return T5TokenizerFast.from_pretrained(folder / "tokenizer", local_files_only=True)


def load_chroma_files(model: ModelRef, detected: Detected, pipeline: str, dtype: Any) -> Any:
    """The diffusers `pipeline` (ChromaPipeline, ...) of a Chroma transformer file and its parts (the plan step
    found them: ModelRef.parts "t5xxl" and "vae")."""
    import diffusers

    from sdcli.models.flow_load import load_transformer, part_source
    from sdcli.models.flux_load import load_flux_vae, load_t5

    prefix, diffusers_layout, width = chroma_layout(model.path)
    spec, tiny = component_configs(width, f"--model: {model.path}")
    tokenizer = _t5_tokenizer(spec, tiny, model.path.parent)
    if tiny:  # the tiny encoder's vocabulary is its tokenizer's (as models.tiny_chroma builds it)
        spec["text_encoder"]["vocab_size"] = len(tokenizer)
    transformer = load_transformer("ChromaTransformer2DModel", model.path, dtype, spec["transformer"], prefix,
                                   diffusers_layout, chroma_to_diffusers)
    (t5_file, t5_flag), (vae_file, vae_flag) = part_source(model, "t5xxl"), part_source(model, "vae")
    text_encoder = load_t5(t5_file, dtype, spec["text_encoder"], t5_flag)
    vae = load_flux_vae(vae_file, dtype, spec["vae"], vae_flag)
    scheduler = diffusers.FlowMatchEulerDiscreteScheduler.from_config(spec["scheduler"])
    return getattr(diffusers, pipeline)(scheduler=scheduler, vae=vae, text_encoder=text_encoder, tokenizer=tokenizer,
                                        transformer=transformer)


TRANSFORMER_LAYOUTS = ("original", "comfy", "diffusers", "gguf")


def write_chroma_files(pipe: Any, dest: Path, layout: str, qtype: str = "F16") -> dict[str, Path]:
    """A Chroma pipeline's parts as people download them, in the folder `dest`: the transformer in `layout`
    (original, comfy, diffusers; gguf of GGUF type `qtype`), t5xxl.safetensors and ae.safetensors; returns
    part -> file."""
    from sdcli.errors import UsageError
    from sdcli.models.flow_load import COMFY_PREFIX
    from sdcli.models.flux_keys import add_prefix, t5_state_for_saving
    from sdcli.models.flux_write import _save, vae_state, write_gguf

    if layout not in TRANSFORMER_LAYOUTS:
        raise UsageError(f"Chroma transformer layout {layout!r}: use one of {', '.join(TRANSFORMER_LAYOUTS)}")
    state = dict(pipe.transformer.state_dict())
    name = "chroma.gguf" if layout == "gguf" else f"chroma_{layout}.safetensors"
    if layout == "gguf":
        transformer = write_gguf(chroma_to_original(state), dest / name, qtype, arch="chroma", keep=GGUF_KEEP)
    else:
        keys = state if layout == "diffusers" else chroma_to_original(state)
        transformer = _save(add_prefix(keys, COMFY_PREFIX) if layout == "comfy" else keys, dest / name)
    return {"transformer": transformer,
            "t5xxl": _save(t5_state_for_saving(dict(pipe.text_encoder.state_dict())), dest / "t5xxl.safetensors"),
            "vae": _save(vae_state(pipe.vae), dest / "ae.safetensors")}
