"""Tiny random-weight Flux.1 models (dev, schnell, Fill, Control, Kontext): the real architecture at tiny widths.

A FluxTransformer2DModel (1 double + 1 single block, 1 head of 16), a 16-channel 8x VAE, a tiny
CLIP-L (its pooled vector) and a tiny T5 encoder with a character-level T5 tokenizer, so every
code path of a real Flux model runs in milliseconds. Configs are rows of FLUX_ARCHES.
"""

from __future__ import annotations

import string
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# The real published values where they are not widths (VAE scaling/shift, scheduler, guidance).
FLUX_VAE = {
    "in_channels": 3, "out_channels": 3, "latent_channels": 16,
    "block_out_channels": (4, 4, 8, 8),  # 4 blocks: 8x down-scaling, as the real VAE (narrow at full size)
    "down_block_types": ("DownEncoderBlock2D",) * 4, "up_block_types": ("UpDecoderBlock2D",) * 4,
    "layers_per_block": 1, "norm_num_groups": 2, "sample_size": 64,
    "scaling_factor": 0.3611, "shift_factor": 0.1159, "use_quant_conv": False, "use_post_quant_conv": False,
}
# One block of each kind, one head: at 1024 px every attention spans 4,096 image tokens and the text.
FLUX_TRANSFORMER = {
    "patch_size": 1, "in_channels": 64, "out_channels": 64, "num_layers": 1, "num_single_layers": 1,
    "attention_head_dim": 16, "num_attention_heads": 1, "joint_attention_dim": 32, "pooled_projection_dim": 32,
    "guidance_embeds": True, "axes_dims_rope": (4, 4, 8),
}
FLUX_CLIP = {"hidden_size": 32, "intermediate_size": 64, "num_attention_heads": 4, "num_hidden_layers": 2,
             "max_position_embeddings": 77, "projection_dim": 32, "hidden_act": "quick_gelu"}
FLUX_T5 = {"d_model": 32, "d_ff": 64, "d_kv": 16, "num_layers": 2, "num_heads": 2,
           "feed_forward_proj": "gated-gelu", "relative_attention_num_buckets": 8,
           "relative_attention_max_distance": 16, "is_encoder_decoder": False, "use_cache": False,
           "pad_token_id": 0, "eos_token_id": 1, "decoder_start_token_id": 0}
DEV_SCHEDULER = {"shift": 3.0, "use_dynamic_shifting": True, "base_shift": 0.5, "max_shift": 1.15,
                 "base_image_seq_len": 256, "max_image_seq_len": 4096}
SCHNELL_SCHEDULER = {"shift": 1.0, "use_dynamic_shifting": False}


@dataclass(frozen=True)
class FluxTinyArch:
    """One tiny Flux architecture: the family it belongs to, its pipeline class and configs."""

    family: str
    pipeline: str = "FluxPipeline"
    transformer: dict[str, Any] = field(default_factory=lambda: dict(FLUX_TRANSFORMER))
    scheduler: dict[str, Any] = field(default_factory=lambda: dict(DEV_SCHEDULER))


FLUX_ARCHES: dict[str, FluxTinyArch] = {
    "flux-dev": FluxTinyArch("flux-dev"),
    "flux-schnell": FluxTinyArch("flux-schnell", transformer={**FLUX_TRANSFORMER, "guidance_embeds": False},
                                 scheduler=dict(SCHNELL_SCHEDULER)),
    # Fill: 64 latent + 64 masked-image latent + 256 mask values a token.
    "flux-dev-inpaint": FluxTinyArch("flux-fill", pipeline="FluxFillPipeline",
                                     transformer={**FLUX_TRANSFORMER, "in_channels": 384}),
    # Kontext: dev's transformer; the pipeline class says it edits by instruction.
    "flux-kontext": FluxTinyArch("flux-kontext", pipeline="FluxKontextPipeline"),
    # Control (Canny/Depth dev): 64 latent + 64 control-image latent values a token.
    "flux-control": FluxTinyArch("flux-control", pipeline="FluxControlPipeline",
                                 transformer={**FLUX_TRANSFORMER, "in_channels": 128, "out_channels": 64}),
}


def tiny_t5_tokenizer() -> Any:
    """A character-level T5 tokenizer (<pad> 0, </s> 1, <unk> 2; a word starts with '▁'), built offline."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import T5TokenizerFast

    chars = [c for c in string.printable if not c.isspace()]
    vocab = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("▁", -2.0)]
    vocab += [(c, -3.0) for c in chars] + [("▁" + c, -2.5) for c in chars]
    tok = Tokenizer(models.Unigram(vocab, unk_id=2, byte_fallback=False))
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    tok.post_processor = processors.TemplateProcessing(single="$A </s>", pair="$A </s> $B </s>",
                                                       special_tokens=[("</s>", 1)])
    return T5TokenizerFast(tokenizer_object=tok, eos_token="</s>", unk_token="<unk>", pad_token="<pad>",
                           extra_ids=0, model_max_length=512)


def tiny_flux_pipeline(arch: str, seed: int, config_dir: Path) -> Any:
    """The tiny Flux pipeline of `arch` in memory (its CLIP vocabulary is written to `config_dir`)."""
    import diffusers
    import torch
    from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, FluxTransformer2DModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer, T5Config, T5EncoderModel

    from sdcli.models.bundled import TINY_VOCAB, write_tiny_tokenizer

    spec = FLUX_ARCHES[arch]
    write_tiny_tokenizer(config_dir / "tokenizer")
    clip_tokenizer = CLIPTokenizer.from_pretrained(config_dir / "tokenizer", local_files_only=True)
    t5_tokenizer = tiny_t5_tokenizer()
    ids = {"vocab_size": TINY_VOCAB, "pad_token_id": TINY_VOCAB - 1, "bos_token_id": TINY_VOCAB - 2,
           "eos_token_id": TINY_VOCAB - 1}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        parts = {
            "text_encoder": CLIPTextModel(CLIPTextConfig(**FLUX_CLIP, **ids)),
            "text_encoder_2": T5EncoderModel(T5Config(**FLUX_T5, vocab_size=len(t5_tokenizer))),
            "transformer": FluxTransformer2DModel.from_config(spec.transformer),
            "vae": AutoencoderKL.from_config(FLUX_VAE),
        }
        for model in parts.values():
            randomise_norms(model)
    scheduler = FlowMatchEulerDiscreteScheduler.from_config(spec.scheduler)
    return getattr(diffusers, spec.pipeline)(scheduler=scheduler, tokenizer=clip_tokenizer,
                                             tokenizer_2=t5_tokenizer, **parts)


def randomise_norms(model: Any) -> None:
    """Random scales and shifts for every LayerNorm/GroupNorm (not the identity they start as)."""
    import torch

    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, (torch.nn.LayerNorm, torch.nn.GroupNorm)) and module.weight is not None:
                module.weight.normal_(1.0, 0.2)
                module.bias.normal_(0.5, 0.5)  # a clearly non-zero mean, as real CLIP outputs have


def write_tiny_flux_files(out: Path, arch: str, seed: int, layout: str, qtype: str = "F16",
                          fp8: bool = False) -> dict[str, Path]:
    """The tiny `arch` (the same weights as its diffusers folder) as Flux single files (models.flux_write).

    `out` is the transformer (all-in-one: the checkpoint) file; a transformer-only layout writes
    ae.safetensors, clip_l.safetensors and t5xxl.safetensors beside it. `fp8` stores the transformer
    (all-in-one: every tensor) as float8_e4m3fn. Nothing is overwritten; a failure leaves nothing.
    """
    import os
    import shutil
    import tempfile

    import torch

    from sdcli.errors import UsageError
    from sdcli.models.flux_write import LAYOUTS, write_flux_files, write_transformer

    if layout not in LAYOUTS:
        raise UsageError(f"--layout: {layout!r}; use one of {', '.join(LAYOUTS)}")
    want = ".gguf" if layout == "gguf" else ".safetensors"
    if out.suffix != want:
        raise UsageError(f"OUT: {out} must end in {want} with --layout {layout}")
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{out.name}.", dir=out.parent) as tmp:
        pipe = tiny_flux_pipeline(arch, seed, Path(tmp) / "_configs")
        components = {k: getattr(pipe, k) for k in ("transformer", "vae", "text_encoder", "text_encoder_2")}
        files = write_flux_files(components, Path(tmp) / "files", layout, qtype,
                                 torch.float8_e4m3fn if fp8 and layout == "all-in-one" else None)
        if fp8 and layout not in ("all-in-one", "gguf"):
            write_transformer(components["transformer"], files["transformer"], layout, dtype=torch.float8_e4m3fn)
        names = {"all-in-one": out.name, "transformer": out.name}
        targets = {part: out.parent / names.get(part, file.name) for part, file in files.items()}
        if taken := [str(p) for p in targets.values() if p.exists()]:
            raise UsageError(f"OUT: {', '.join(taken)} already exists")
        for part, file in files.items():
            os.chmod(file, 0o644)
            shutil.move(str(file), targets[part])
    return targets
