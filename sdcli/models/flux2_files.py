"""Flux.2 [klein] from single files: a transformer-only file with the Qwen3 text encoder and VAE files beside it.

Transformer layouts: BFL's original one (flux-2-klein-4b.safetensors: fused qkv / linear1, the shared
modulation layers), bare or under ComfyUI's "model.diffusion_model.", diffusers' names, and city96-style GGUFs
(the original names). The original names convert with diffusers' own converter
(single_file_utils.convert_flux2_transformer_checkpoint_to_diffusers, through models.flow_load), which splits the
double blocks' qkv in thirds and keeps the single blocks' linear1 fused, so it assumes no width and serves the
tiny models too. The text encoder is Qwen3 (4B for Klein 4B, 8B for 9B: ComfyUI's qwen_3_4b.safetensors /
qwen_3_8b.safetensors) loaded as Qwen3ForCausalLM, as the Klein pipeline holds it; the VAE an AutoencoderKLFlux2
file in diffusers' names or in BFL's (Flux.1's ldm names with the quant convolutions inside the encoder and
decoder, as diffusers' scripts/convert_flux2_to_diffusers.py reads them; renamed by diffusers' ldm VAE converter,
no single-file loader existing for the class). A file does not tell step-
distilled Klein from Klein base: a transformer file loads as the distilled model (CFG 1 by default; give
--cfg-scale for base). Configs by the transformer's width: configs/flux2-klein-4b.json (5 double and 20 single
blocks of 24 heads x 128, text width 3 x 2560: 3.88B parameters; Qwen3-4B's published config) and
flux2-klein-9b.json (8 + 24 blocks of 32 heads, text width 3 x 4096: 9.08B; Qwen3-8B's published config, 8.19B);
both no guidance input, the VAE diffusers' AutoencoderKLFlux2 defaults (block counts as InvokeAI's Klein presets
and the published model cards give them); else the tiny architecture (models.tiny_flux2). The Qwen3 tokenizer is
bundled; a `tokenizer` folder beside the text encoder or the model replaces it (models.flow_load.file_tokenizer).

Flux.2 [dev] (a transformer file with a guidance embedding) in the same layouts, with Mistral Small 3's text model as
ComfyUI ships it (mistral_3_small_flux2_*.safetensors: transformers' Mistral names under "model.", no vision tower;
loaded as a transformers MistralModel, which is all of Mistral3ForConditionalGeneration the prompt encoder runs;
as many layers as the file holds, ComfyUI's pruned 30-layer file too) and the same VAE; configs/flux2-dev.json
(8 + 48 blocks of 48 heads x 128, text width 3 x 5120: diffusers' Flux2Transformer2DModel defaults; Mistral Small
3.2's published text config). Its tekken tokenizer is bundled too (models.llm_tokenizers).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from sdcli.errors import ModelError
from sdcli.families.base import Detected
from sdcli.families.flux2 import FLUX2_MARK
from sdcli.models.resolve import ModelRef

DIFFUSERS_MARK = "single_stream_modulation.linear.weight"
BUNDLED = {3072: "flux2-klein-4b", 4096: "flux2-klein-9b"}  # transformer width -> bundled configs
DEV_BUNDLED = {6144: "flux2-dev"}
MISTRAL_PREFIX = "model."  # ComfyUI's Mistral file: the text model's keys under "model."
GGUF_KEEP = ("img_in.", "txt_in.", "time_in.", "final_layer.")
# BFL's Flux.2 VAE keeps the quant convolutions inside the encoder and decoder (BFL name, ldm/diffusers name).
BFL_VAE_MOVES = (("encoder.quant_conv.", "quant_conv."), ("decoder.post_quant_conv.", "post_quant_conv."))
# diffusers -> original names outside the blocks (".weight"/".bias" follow).
TOP = {"x_embedder": "img_in", "context_embedder": "txt_in",
       "time_guidance_embed.timestep_embedder.linear_1": "time_in.in_layer",
       "time_guidance_embed.timestep_embedder.linear_2": "time_in.out_layer",
       "time_guidance_embed.guidance_embedder.linear_1": "guidance_in.in_layer",
       "time_guidance_embed.guidance_embedder.linear_2": "guidance_in.out_layer",
       "double_stream_modulation_img.linear": "double_stream_modulation_img.lin",
       "double_stream_modulation_txt.linear": "double_stream_modulation_txt.lin",
       "single_stream_modulation.linear": "single_stream_modulation.lin",
       "proj_out": "final_layer.linear", "norm_out.linear": "final_layer.adaLN_modulation.1"}
DOUBLE = {"attn.norm_q": "img_attn.norm.query_norm", "attn.norm_k": "img_attn.norm.key_norm",
          "attn.to_out.0": "img_attn.proj", "ff.linear_in": "img_mlp.0", "ff.linear_out": "img_mlp.2",
          "attn.norm_added_q": "txt_attn.norm.query_norm", "attn.norm_added_k": "txt_attn.norm.key_norm",
          "attn.to_add_out": "txt_attn.proj", "ff_context.linear_in": "txt_mlp.0", "ff_context.linear_out": "txt_mlp.2"}
FUSED = {"attn.to_q": ("img_attn.qkv", ("attn.to_q", "attn.to_k", "attn.to_v")),
         "attn.add_q_proj": ("txt_attn.qkv", ("attn.add_q_proj", "attn.add_k_proj", "attn.add_v_proj"))}
SINGLE = {"attn.to_qkv_mlp_proj": "linear1", "attn.to_out": "linear2", "attn.norm_q": "norm.query_norm",
          "attn.norm_k": "norm.key_norm"}


def _leaf(module: str, leaf: str) -> str:
    """An original parameter name: its RMS norms' weights are `scale`."""
    return f"{module}.{'scale' if module.endswith('_norm') and leaf == 'weight' else leaf}"


def flux2_to_original(state: dict[str, Any]) -> dict[str, Any]:
    """A diffusers Flux2Transformer2DModel state dict in BFL's original names (diffusers' converter's inverse)."""
    import torch

    out: dict[str, Any] = {}
    for key, value in state.items():
        module, _, leaf = key.rpartition(".")
        if m := re.fullmatch(r"transformer_blocks\.(\d+)\.(.+)", module):
            if m[2] in FUSED:
                fused, names = FUSED[m[2]]
                parts = [state[f"transformer_blocks.{m[1]}.{n}.{leaf}"] for n in names]
                out[f"double_blocks.{m[1]}.{fused}.{leaf}"] = torch.cat(parts)
            elif m[2] in DOUBLE:
                out[f"double_blocks.{m[1]}.{_leaf(DOUBLE[m[2]], leaf)}"] = value
            continue
        if m := re.fullmatch(r"single_transformer_blocks\.(\d+)\.(.+)", module):
            out[f"single_blocks.{m[1]}.{_leaf(SINGLE[m[2]], leaf)}"] = value
            continue
        if module == "norm_out.linear":  # (scale, shift) in diffusers, (shift, scale) in BFL's code
            scale, shift = value.chunk(2)
            value = torch.cat([shift, scale])
        out[f"{TOP[module]}.{leaf}"] = value
    return out


def flux2_layout(path: Path) -> tuple[str, bool, int]:
    """(key prefix, whether the keys are diffusers', transformer width) of a Flux.2 transformer file."""
    from sdcli.models.flux_files import read_tensor_table

    shapes = read_tensor_table(path)[0]
    for prefix in ("", "model.diffusion_model."):
        for diffusers_layout, mark, embed in ((False, FLUX2_MARK, "img_in.weight"),
                                              (True, DIFFUSERS_MARK, "x_embedder.weight")):
            if prefix + mark in shapes and prefix + embed in shapes:
                return prefix, diffusers_layout, int(shapes[prefix + embed][0])
    raise ModelError(f"--model: {path}: not a Flux.2 transformer file sdcli knows (no {FLUX2_MARK})")


def component_configs(width: int, source: str, dev: bool = False) -> tuple[dict[str, Any], bool]:
    """{part: config} for a transformer of this width (`dev`: Flux.2 dev's), and whether it is the tiny
    architecture."""
    from sdcli.models.bundled import family_config
    from sdcli.models.tiny_flux2 import (
        FLUX2_DEV_TRANSFORMER,
        FLUX2_QWEN3,
        FLUX2_SCHEDULER,
        FLUX2_TRANSFORMER,
        FLUX2_VAE,
    )
    from sdcli.models.tiny_mistral import MISTRAL_TEXT

    bundled = DEV_BUNDLED if dev else BUNDLED
    if width in bundled:
        return family_config(bundled[width]), False
    tiny: dict[str, Any] = dict(FLUX2_DEV_TRANSFORMER if dev else FLUX2_TRANSFORMER)
    if width == int(tiny["num_attention_heads"]) * int(tiny["attention_head_dim"]):
        return {"transformer": tiny, "text_encoder": dict(MISTRAL_TEXT if dev else FLUX2_QWEN3),
                "vae": dict(FLUX2_VAE), "scheduler": dict(FLUX2_SCHEDULER)}, True
    known = "dev: 6144" if dev else "Klein 4B: 3072, 9B: 4096"
    raise ModelError(f"{source}: a Flux.2 transformer {width} wide is not a variant sdcli knows ({known})")


def flux2_vae_to_diffusers(state: dict[str, Any], config: dict[str, Any]) -> dict[str, Any]:
    """A Flux.2 VAE in BFL's names (ae.safetensors: Flux.1's ldm names, the quant convolutions inside the encoder
    and decoder, the batch-norm statistics bn.*) in diffusers' AutoencoderKLFlux2 names, by diffusers' own ldm VAE
    converter (which reads the block counts from `config`)."""
    from sdcli.models.flux_keys import vae_to_diffusers

    moved = {}
    for key, value in state.items():
        for bfl, ours in BFL_VAE_MOVES:
            key = ours + key.removeprefix(bfl) if key.startswith(bfl) else key
        moved[key] = value
    stats = {k: v for k, v in moved.items() if k.startswith("bn.")}
    return {**vae_to_diffusers({k: v for k, v in moved.items() if k not in stats}, config), **stats}


def flux2_vae_to_bfl(state: dict[str, Any], levels: int) -> dict[str, Any]:
    """A diffusers AutoencoderKLFlux2 state dict in BFL's names (flux2_vae_to_diffusers' inverse)."""
    from sdcli.models.flux_keys import vae_to_ldm

    stats = {k: v for k, v in state.items() if k.startswith("bn.") and k != "bn.num_batches_tracked"}
    out = {}
    for key, value in vae_to_ldm({k: v for k, v in state.items() if not k.startswith("bn.")}, levels).items():
        for bfl, ours in BFL_VAE_MOVES:
            key = bfl + key.removeprefix(ours) if key.startswith(ours) else key
        out[key] = value
    return {**out, **stats}


def load_flux2_vae(path: Path, dtype: Any, config: dict[str, Any], source: str = "--vae") -> Any:
    """A diffusers AutoencoderKLFlux2 from its file in diffusers' or BFL's names (maybe under "vae."), strictly
    checked (diffusers has no single-file loader for this class)."""
    from accelerate import init_empty_weights
    from diffusers import AutoencoderKLFlux2

    from sdcli.models.flux_files import inspect_part
    from sdcli.models.flux_load import check_keys, read_tensors, upcast

    where = f"{source}: {path}"
    info = inspect_part(path, "flux2-vae")
    if info.kind != "flux2-vae":
        raise ModelError(f"{where} is not a Flux.2 VAE (32 latent channels and the batch-norm statistics bn.*, in "
                         "diffusers' or BFL's names)")
    with init_empty_weights():
        model = AutoencoderKLFlux2.from_config(config)
        expected = {k: v for k, v in model.state_dict().items() if k != "bn.num_batches_tracked"}
    state = {k: v for k, v in read_tensors(path, info.prefix, source, dtype).items() if k != "bn.num_batches_tracked"}
    if info.layout == "ldm":  # BFL's names
        state = flux2_vae_to_diffusers(state, dict(model.config))
    state = upcast(state, dtype)
    check_keys(state, expected, where)
    vae = AutoencoderKLFlux2.from_config(config)
    vae.load_state_dict(state, strict=False)  # bn.num_batches_tracked: a counter, not a weight
    return vae.to(dtype).eval()


def load_mistral(path: Path, dtype: Any, config: dict[str, Any], source: str = "--text-encoder") -> Any:
    """A transformers MistralModel (the text model of Mistral Small 3) from a Mistral file (ComfyUI's safetensors, or
    a llama.cpp GGUF: models.gguf_text), strictly checked; its layer count is the file's (ComfyUI's pruned file keeps
    30)."""
    import transformers

    from sdcli.models.flux_files import inspect_flux_file
    from sdcli.models.flux_load import _load_transformers, read_tensors, upcast

    where = f"{source}: {path}"
    info = inspect_flux_file(path)
    if info.kind != "mistral3":
        raise ModelError(f"{where} is not a Mistral Small 3 text encoder")
    if info.container == "gguf":  # llama.cpp's names and row order, its metadata's shape (models.gguf_text)
        from sdcli.models.gguf_text import gguf_text_config, read_gguf_encoder

        config = gguf_text_config(path, config, "mistral", "Mistral Small 3", source)
        state = read_gguf_encoder(path, transformers.MistralModel, transformers.MistralConfig(**config), dtype, source)
    else:
        state = {k: v for k, v in read_tensors(path, info.prefix, source, dtype).items() if k != "lm_head.weight"}
    layers = {int(m[1]) for k in state if (m := re.match(r"layers\.(\d+)\.", k))}
    config = {**config, "num_hidden_layers": max(layers) + 1 if layers else config["num_hidden_layers"]}
    return _load_transformers(transformers.MistralModel, transformers.MistralConfig, upcast(state, dtype), config,
                              dtype, where)


def load_flux2_files(model: ModelRef, detected: Detected, pipeline: str, dtype: Any) -> Any:
    """The diffusers `pipeline` (Flux2KleinPipeline; dev: Flux2Pipeline) of a Flux.2 transformer file and its parts
    (the plan step found them: ModelRef.parts "qwen3" or "mistral3", and "vae")."""
    import diffusers

    from sdcli.models.flow_load import file_tokenizer, load_qwen3, load_transformer, part_source

    dev = detected.family.capabilities.distilled_guidance
    prefix, diffusers_layout, width = flux2_layout(model.path)
    spec, tiny = component_configs(width, f"--model: {model.path}", dev)
    vae_file = part_source(model, "vae")
    transformer = load_transformer("Flux2Transformer2DModel", model.path, dtype, spec["transformer"], prefix,
                                   diffusers_layout)
    vae = load_flux2_vae(vae_file[0], dtype, spec["vae"], vae_file[1])
    scheduler = diffusers.FlowMatchEulerDiscreteScheduler.from_config(spec["scheduler"])
    if dev:
        encoder = part_source(model, "mistral3")
        tokenizer = mistral_tokenizer(spec["text_encoder"], tiny, (encoder[0], model.path))
        text_encoder = load_mistral(encoder[0], dtype, spec["text_encoder"], encoder[1])
        return getattr(diffusers, pipeline)(scheduler=scheduler, vae=vae, text_encoder=text_encoder,
                                            tokenizer=tokenizer, transformer=transformer)
    encoder = part_source(model, "qwen3")
    tokenizer = file_tokenizer(spec["text_encoder"], tiny, (encoder[0], model.path), "Qwen3")
    text_encoder = load_qwen3(encoder[0], dtype, spec["text_encoder"], "Qwen3ForCausalLM", encoder[1])
    return getattr(diffusers, pipeline)(scheduler=scheduler, vae=vae, text_encoder=text_encoder, tokenizer=tokenizer,
                                        transformer=transformer, is_distilled=True)


def mistral_tokenizer(config: dict[str, Any], tiny: bool, files: tuple[Path, ...]) -> Any:
    """Mistral Small 3's tokenizer: sdcli's tiny one for its tiny models (`config` sized to it), else the user's
    `tokenizer` folder beside the text encoder or model file or the bundled real one (models.llm_tokenizers)."""
    if not tiny:
        from sdcli.models.llm_tokenizers import text_tokenizer

        return text_tokenizer(files, "Mistral Small 3")
    from sdcli.models.tiny_mistral import tiny_mistral_tokenizer

    tokenizer = tiny_mistral_tokenizer()
    config.update(vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
                  eos_token_id=tokenizer.eos_token_id)
    return tokenizer


TRANSFORMER_LAYOUTS = ("original", "comfy", "diffusers", "gguf")


def write_flux2_files(pipe: Any, dest: Path, layout: str, qtype: str = "F16", bfl_vae: bool = False) -> dict[str, Path]:
    """A Flux.2 pipeline's parts as people download them, in the folder `dest`: the transformer in `layout`
    (original, comfy, diffusers; gguf of GGUF type `qtype`), the text encoder in ComfyUI's names (Klein:
    qwen_3_4b.safetensors; dev: mistral_3_small_flux2_bf16.safetensors) and the VAE in diffusers' names (`bfl_vae`:
    BFL's, as its ae.safetensors); returns part -> file."""
    from sdcli.errors import UsageError
    from sdcli.models.flow_load import COMFY_PREFIX
    from sdcli.models.flux_keys import add_prefix
    from sdcli.models.flux_write import _save, write_gguf

    if layout not in TRANSFORMER_LAYOUTS:
        raise UsageError(f"Flux.2 transformer layout {layout!r}: use one of {', '.join(TRANSFORMER_LAYOUTS)}")
    state = dict(pipe.transformer.state_dict())
    dev = bool(pipe.transformer.config.guidance_embeds)
    stem = "flux2_dev" if dev else "flux-2-klein"
    name = f"{stem}.gguf" if layout == "gguf" else f"{stem}_{layout}.safetensors"
    if layout == "gguf":
        transformer = write_gguf(flux2_to_original(state), dest / name, qtype, arch="flux2", keep=GGUF_KEEP)
    else:
        keys = state if layout == "diffusers" else flux2_to_original(state)
        transformer = _save(add_prefix(keys, COMFY_PREFIX) if layout == "comfy" else keys, dest / name)
    vae_state = dict(pipe.vae.state_dict())
    vae = _save(flux2_vae_to_bfl(vae_state, len(pipe.vae.config.block_out_channels)) if bfl_vae else vae_state,
                dest / ("ae.safetensors" if bfl_vae else "flux2-vae.safetensors"))
    if dev:  # ComfyUI's Mistral file: the language model alone, under "model."
        language = getattr(pipe.text_encoder, "model", pipe.text_encoder)
        language = getattr(language, "language_model", language)
        text = add_prefix(dict(language.state_dict()), MISTRAL_PREFIX)
        return {"transformer": transformer, "mistral3": _save(text, dest / "mistral_3_small_flux2_bf16.safetensors"),
                "vae": vae}
    text = {k: v for k, v in pipe.text_encoder.state_dict().items() if k != "lm_head.weight"}
    return {"transformer": transformer, "qwen3": _save(text, dest / "qwen_3_4b.safetensors"), "vae": vae}
