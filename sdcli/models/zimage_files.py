"""Z-Image from single files: a transformer-only file with the Qwen3 text encoder and Flux VAE files beside it.

Transformer layouts: the original one (Tongyi's and ComfyUI's z_image_turbo_bf16.safetensors: fused
attention.qkv, x_embedder, final_layer), bare or under ComfyUI's "model.diffusion_model.", diffusers' names, and
city96-style GGUFs (the original names). The original names convert with diffusers' own converter
(single_file_utils.convert_z_image_transformer_checkpoint_to_diffusers, through models.flow_load), which renames
and splits keys without assuming the released widths, so it serves sdcli's tiny models too. The text encoder is
Qwen3 4B (ComfyUI's qwen_3_4b.safetensors: transformers' names under "model."), the VAE Flux's ae.safetensors.
Configs: configs/zimage.json for the released width (transformer: diffusers' ZImageTransformer2DModel defaults,
which are Z-Image Turbo's; text encoder: Qwen3-4B's published config; VAE: Flux's; scheduler: shift 3, no dynamic
shifting), else the tiny architecture (models.tiny_zimage). The Qwen3 tokenizer is bundled; a `tokenizer` folder
beside the text encoder or the model replaces it (models.flow_load.file_tokenizer).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sdcli.errors import ModelError
from sdcli.families.base import Detected
from sdcli.families.zimage import CAP_EMBEDDER, FULL_DIM
from sdcli.models.resolve import ModelRef

DIFFUSERS_MARK = "all_x_embedder.2-1.weight"
# Original -> diffusers names that are one-to-one (the fused qkv is split apart as well).
RENAMES = (("x_embedder.", "all_x_embedder.2-1."), ("final_layer.", "all_final_layer.2-1."),
           (".attention.out.", ".attention.to_out.0."), (".attention.q_norm.", ".attention.norm_q."),
           (".attention.k_norm.", ".attention.norm_k."))
GGUF_KEEP = ("x_embedder.", "final_layer.", "t_embedder.", "cap_embedder.")  # kept in F32, as city96's Flux inputs


def zimage_layout(path: Path) -> tuple[str, bool, int]:
    """(key prefix, whether the keys are diffusers', transformer width) of a Z-Image transformer file."""
    from sdcli.models.flow_load import transformer_prefix
    from sdcli.models.flux_files import read_tensor_table

    prefix = transformer_prefix(path, CAP_EMBEDDER)
    shapes = read_tensor_table(path)[0]
    return prefix, prefix + DIFFUSERS_MARK in shapes, int(shapes[prefix + CAP_EMBEDDER][0])


def component_configs(width: int, source: str) -> tuple[dict[str, Any], bool]:
    """{part: config} for a transformer of this width, and whether it is the tiny architecture."""
    from sdcli.models.bundled import family_config
    from sdcli.models.tiny_flux import FLUX_VAE
    from sdcli.models.tiny_zimage import ZIMAGE_QWEN3, ZIMAGE_SCHEDULER, ZIMAGE_TRANSFORMER

    if width == FULL_DIM:
        return family_config("zimage"), False
    if width == ZIMAGE_TRANSFORMER["dim"]:
        return {"transformer": dict(ZIMAGE_TRANSFORMER), "text_encoder": dict(ZIMAGE_QWEN3),
                "vae": dict(FLUX_VAE), "scheduler": dict(ZIMAGE_SCHEDULER)}, True
    raise ModelError(f"{source}: a Z-Image transformer {width} wide is not a variant sdcli knows (expected "
                     f"{FULL_DIM})")


def load_zimage_files(model: ModelRef, detected: Detected, pipeline: str, dtype: Any) -> Any:
    """The diffusers `pipeline` (ZImagePipeline, ...) of a Z-Image transformer file and its parts (the plan
    step found them: ModelRef.parts "qwen3" and "vae")."""
    import diffusers

    from sdcli.models.flow_load import file_tokenizer, load_qwen3, load_transformer, part_source
    from sdcli.models.flux_load import load_flux_vae

    prefix, diffusers_layout, width = zimage_layout(model.path)
    spec, tiny = component_configs(width, f"--model: {model.path}")
    encoder, vae_file = part_source(model, "qwen3"), part_source(model, "vae")
    tokenizer = file_tokenizer(spec["text_encoder"], tiny, (encoder[0], model.path), "Qwen3")
    transformer = load_transformer("ZImageTransformer2DModel", model.path, dtype, spec["transformer"], prefix,
                                   diffusers_layout)
    text_encoder = load_qwen3(encoder[0], dtype, spec["text_encoder"], source=encoder[1])
    vae = load_flux_vae(vae_file[0], dtype, spec["vae"], vae_file[1])
    scheduler = diffusers.FlowMatchEulerDiscreteScheduler.from_config(spec["scheduler"])
    return getattr(diffusers, pipeline)(scheduler=scheduler, vae=vae, text_encoder=text_encoder, tokenizer=tokenizer,
                                        transformer=transformer)


def zimage_to_original(state: dict[str, Any]) -> dict[str, Any]:
    """A diffusers ZImageTransformer2DModel state dict in the original names (the writer's inverse mapping)."""
    import torch

    out: dict[str, Any] = {}
    for key, value in state.items():
        if ".attention.to_k." in key or ".attention.to_v." in key:
            continue
        if ".attention.to_q." in key:
            parts = [state[key.replace(".to_q.", f".to_{p}.")] for p in "qkv"]
            out[key.replace(".attention.to_q.", ".attention.qkv.")] = torch.cat(parts)
            continue
        for original, ours in RENAMES:
            key = key.replace(ours, original)
        out[key] = value
    return out


TRANSFORMER_LAYOUTS = ("original", "comfy", "diffusers", "gguf")


def write_zimage_files(pipe: Any, dest: Path, layout: str, qtype: str = "F16") -> dict[str, Path]:
    """A Z-Image pipeline's parts as people download them, in the folder `dest`: the transformer in `layout`
    (original, comfy, diffusers; gguf of GGUF type `qtype`), qwen_3_4b.safetensors (ComfyUI's layout) and
    ae.safetensors (BFL's); returns part -> file."""
    from sdcli.errors import UsageError
    from sdcli.models.flow_load import COMFY_PREFIX
    from sdcli.models.flux_keys import add_prefix
    from sdcli.models.flux_write import _save, vae_state, write_gguf

    if layout not in TRANSFORMER_LAYOUTS:
        raise UsageError(f"Z-Image transformer layout {layout!r}: use one of {', '.join(TRANSFORMER_LAYOUTS)}")
    state = dict(pipe.transformer.state_dict())
    name = "z_image.gguf" if layout == "gguf" else f"z_image_{layout}.safetensors"
    if layout == "gguf":
        transformer = write_gguf(zimage_to_original(state), dest / name, qtype, arch="lumina2", keep=GGUF_KEEP)
    else:
        keys = state if layout == "diffusers" else zimage_to_original(state)
        transformer = _save(add_prefix(keys, COMFY_PREFIX) if layout == "comfy" else keys, dest / name)
    text = {k.removeprefix("model."): v for k, v in pipe.text_encoder.state_dict().items() if k != "lm_head.weight"}
    return {"transformer": transformer,
            "qwen3": _save(add_prefix(text, "model."), dest / "qwen_3_4b.safetensors"),
            "vae": _save(vae_state(pipe.vae), dest / "ae.safetensors")}
