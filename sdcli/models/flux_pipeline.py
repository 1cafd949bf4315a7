"""A Flux.1 pipeline built from single files: the transformer file (all-in-one, BFL, ComfyUI, diffusers
layout, fp8 or GGUF) plus the text encoder and VAE files the plan step found (ModelRef.parts).

The component configs are sdcli's bundled ones (models.bundled: flux-dev, flux-schnell, flux-fill) for
the published width, or the tiny architecture of that width (models.tiny_flux); the tokenizers are the
bundled real ones (a `tokenizer_2` folder beside the model overrides the T5 one) or the tiny ones.
Every component loads through models.flux_load: strict keys, offline.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sdcli.errors import ModelError
from sdcli.families.base import Detected
from sdcli.models.flux_files import FluxFile, inspect_flux_file
from sdcli.models.resolve import ModelRef

FULL_WIDTH = 3072
PART_FLAGS = {"vae": "--vae", "clip_l": "--text-encoder", "t5xxl": "--text-encoder"}


def _with(source: tuple[Path, str], dtype: Any, config: dict[str, Any]) -> tuple[Path, Any, dict[str, Any], str]:
    """A part loader's arguments: (file, dtype, config, flag)."""
    return source[0], dtype, config, source[1]


def component_configs(info: FluxFile, detected: Detected, source: str) -> tuple[dict[str, Any], str | None]:
    """{part: config} for this transformer's width, and the tiny arch's name (None: the bundled full size)."""
    from sdcli.models.bundled import family_config
    from sdcli.models.tiny_flux import FLUX_ARCHES, FLUX_CLIP, FLUX_T5, FLUX_VAE

    if info.width == FULL_WIDTH:
        return family_config(detected.family.configs), None
    for name, arch in FLUX_ARCHES.items():
        cfg = arch.transformer
        if arch.family == detected.family.name and cfg["num_attention_heads"] * cfg["attention_head_dim"] == info.width:
            return {"transformer": dict(cfg), "vae": dict(FLUX_VAE), "text_encoder": dict(FLUX_CLIP),
                    "text_encoder_2": dict(FLUX_T5), "scheduler": dict(arch.scheduler)}, name
    raise ModelError(f"{source}: a {detected.family.label} transformer {info.width} wide is not a variant sdcli "
                     f"knows (expected {FULL_WIDTH})")


def _tokenizers(spec: dict[str, Any], tiny: str | None, model_dir: Path) -> tuple[Any, Any]:
    """(CLIP tokenizer, T5 tokenizer): the tiny ones, or the bundled real ones (the user's T5 beside the model)."""
    from transformers import CLIPTokenizer, T5TokenizerFast

    from sdcli.models.bundled import cached_config_folder
    from sdcli.models.hashes import cache_dir
    from sdcli.models.tokenizer_files import user_tokenizers, write_tiny_tokenizer

    if tiny is not None:
        from sdcli.models.tiny_flux import tiny_t5_tokenizer

        folder = cache_dir() / "configs" / "tiny-flux-clip"
        if not (folder / "vocab.json").is_file():
            write_tiny_tokenizer(folder)
        return CLIPTokenizer.from_pretrained(folder, local_files_only=True), tiny_t5_tokenizer()
    folder = cached_config_folder(spec, cache_dir() / "configs", "bundled", user_tokenizers(spec, model_dir))
    return (CLIPTokenizer.from_pretrained(folder / "tokenizer", local_files_only=True),
            T5TokenizerFast.from_pretrained(folder / "tokenizer_2", local_files_only=True))


def load_flux_files(model: ModelRef, detected: Detected, pipeline: str, dtype: Any) -> Any:
    """The diffusers `pipeline` (FluxPipeline, FluxFillPipeline) of a Flux single file and its parts."""
    import diffusers

    from sdcli.models.bundled import TINY_VOCAB
    from sdcli.models.flux_load import load_clip_l, load_flux_transformer, load_flux_vae, load_t5

    info = inspect_flux_file(model.path)
    spec, tiny = component_configs(info, detected, f"--model: {model.path}")
    clip_tok, t5_tok = _tokenizers(spec, tiny, model.path.parent)
    if tiny is not None:  # the tiny encoders' vocabularies are their tokenizers' (as models.tiny_flux builds them)
        spec["text_encoder"].update(vocab_size=TINY_VOCAB, pad_token_id=TINY_VOCAB - 1,
                                    bos_token_id=TINY_VOCAB - 2, eos_token_id=TINY_VOCAB - 1)
        spec["text_encoder_2"]["vocab_size"] = len(t5_tok)
    parts = dict(model.parts)

    def source(role: str) -> tuple[Path, str]:
        """The file giving `role`, and the flag its errors name."""
        return (parts[role], PART_FLAGS[role]) if role in parts else (model.path, "--model")

    transformer = load_flux_transformer(model.path, dtype, spec["transformer"], "--model")
    vae = load_flux_vae(*_with(source("vae"), dtype, spec["vae"]))
    clip = load_clip_l(*_with(source("clip_l"), dtype, spec["text_encoder"]))
    t5 = load_t5(*_with(source("t5xxl"), dtype, spec["text_encoder_2"]))
    scheduler = diffusers.FlowMatchEulerDiscreteScheduler.from_config(spec["scheduler"])
    return getattr(diffusers, pipeline)(scheduler=scheduler, vae=vae, text_encoder=clip, tokenizer=clip_tok,
                                        text_encoder_2=t5, tokenizer_2=t5_tok, transformer=transformer)
