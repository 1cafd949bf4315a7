"""Tiny random-weight checkpoints (diffusers folders or WebUI single files), built offline.

Used by `sdcli tiny`, by the embedded demo model and by the tests. The
architecture is real (SD1.x: CLIP text encoder, UNet with cross-attention,
8x VAE); only the widths are tiny, so every code path of a real model runs.
An architecture is one row of ARCHES (sd1, sd2, sdxl, the SDXL refiner, inpainting
variants), in the family config layout of models.bundled (tiny or full size, one shape).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from sdcli.errors import UsageError

# Scheduler as shipped with SD 1.x checkpoints (PNDM, scaled-linear betas).
SD1_SCHEDULER: dict[str, Any] = {
    "_class_name": "PNDMScheduler",
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "num_train_timesteps": 1000,
    "skip_prk_steps": True,
    "steps_offset": 1,
    "set_alpha_to_one": False,
}


@dataclass(frozen=True)
class TinyArch:
    """Configs of one tiny architecture (a tiny member of a sdcli.families family)."""

    family: str
    unet: dict[str, Any]
    vae: dict[str, Any]
    text_encoder: dict[str, Any] | None
    scheduler: dict[str, Any] = field(default_factory=lambda: dict(SD1_SCHEDULER))
    pipeline: str = "StableDiffusionPipeline"  # the class model_index.json names
    text_encoder_2: dict[str, Any] | None = None  # SDXL's OpenCLIP-bigG (with projection)
    # Norm layers get random weights/biases: identity norms would catch no mis-mapped norm key, and
    # CLIP's final LayerNorm would give embeddings of mean ~0, making the WebUI's mean-restoring
    # emphasis divide 0 by 0. Random affines keep such maths as on a real model.
    random_norms: bool = True

    def inpainting(self) -> TinyArch:
        """The same architecture as a dedicated inpainting checkpoint: a 9-channel UNet
        (4 latent + 1 mask + 4 masked-image latent channels), as SD's inpainting models."""
        pipeline = "StableDiffusionXLInpaintPipeline" if self.text_encoder_2 else "StableDiffusionInpaintPipeline"
        return replace(self, unet={**self.unet, "in_channels": 9}, pipeline=pipeline)

    def spec(self) -> dict[str, Any]:
        """The configs in models.bundled's family layout (what a config folder is written from)."""
        from sdcli.models.bundled import TINY_VOCAB, family_config

        spec = family_config(self.family)  # the bundled full-size configs, then the tiny widths
        spec["model_index"]["_class_name"] = self.pipeline
        spec["model_index"]["scheduler"] = ["diffusers", self.scheduler["_class_name"]]
        spec.update(unet={"_class_name": "UNet2DConditionModel", **self.unet},
                    vae={"_class_name": "AutoencoderKL", **self.vae}, scheduler=dict(self.scheduler))
        ids = {"vocab_size": TINY_VOCAB, "pad_token_id": TINY_VOCAB - 1, "bos_token_id": TINY_VOCAB - 2,
               "eos_token_id": TINY_VOCAB - 1}
        for part in ("text_encoder", "text_encoder_2"):
            if config := getattr(self, part):
                spec[part] = {**spec[part], **config, **ids}
        return spec


TINY_TEXT = {
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_attention_heads": 4,
    "num_hidden_layers": 12,  # as SD1's CLIP ViT-L: WebUI CLIP skip 1-12 all valid
    "max_position_embeddings": 77,
    "projection_dim": 32,
    "hidden_act": "quick_gelu",
}
# 4 blocks: 8x down-scaling as in SD. The full-resolution blocks are the narrowest (4 channels, as the real
# VAE's 128 are its narrowest) and the mid-block attention, which sees every latent pixel, is one head of 8:
# a 1024 px decode stays a second or two on a CPU core.
TINY_VAE = {
    "in_channels": 3,
    "out_channels": 3,
    "latent_channels": 4,
    "block_out_channels": (4, 4, 8, 8),
    "down_block_types": ("DownEncoderBlock2D",) * 4,
    "up_block_types": ("UpDecoderBlock2D",) * 4,
    "layers_per_block": 1,
    "norm_num_groups": 2,
    "sample_size": 64,
}
# UNets: three levels (4x down-scaling of the latent) with attention only in the lowest one, as the real
# models have none in their highest-resolution level either: at 1024 px the tiny UNet attends over 32x32
# latent pixels, not 128x128, so a real-size image costs a tiny model's time.
ARCHES: dict[str, TinyArch] = {
    "sd1": TinyArch(
        family="sd1",
        unet={
            "sample_size": 8,  # latent side: native image size 64 px
            "in_channels": 4,
            "out_channels": 4,
            "block_out_channels": (8, 16, 16),
            "layers_per_block": 1,
            "down_block_types": ("DownBlock2D", "DownBlock2D", "CrossAttnDownBlock2D"),
            "up_block_types": ("CrossAttnUpBlock2D", "UpBlock2D", "UpBlock2D"),
            "cross_attention_dim": 32,
            "attention_head_dim": 2,  # heads (diffusers' name for it)
            "norm_num_groups": 4,
        },
        vae=TINY_VAE,
        text_encoder=TINY_TEXT,
    ),
}
# SD 2.x (768-v): v-prediction, linear attention projections, per-block head counts and a
# GELU text encoder shipped without its last layer, as in stabilityai/stable-diffusion-2.
ARCHES["sd2"] = replace(
    ARCHES["sd1"],
    family="sd2",
    unet={**ARCHES["sd1"].unet, "use_linear_projection": True, "attention_head_dim": (1, 1, 2)},
    text_encoder={**TINY_TEXT, "hidden_act": "gelu", "num_hidden_layers": 11},
    scheduler={**SD1_SCHEDULER, "prediction_type": "v_prediction"},
)
# SDXL base: CLIP-L + OpenCLIP-bigG (with projection; pooled output), their hidden states
# concatenated for cross-attention (32 + 48), size/crop time ids (6 x 8) + pooled (48) as
# the added embedding; no attention in the high-resolution blocks, several transformer layers per block.
# The two encoders differ in width, as in the real model (diffusers tells them apart by it).
XL_SCHEDULER = {"_class_name": "EulerDiscreteScheduler", "beta_start": 0.00085, "beta_end": 0.012,
                "beta_schedule": "scaled_linear", "num_train_timesteps": 1000, "steps_offset": 1,
                "timestep_spacing": "leading"}
XL_UNET = {
    "sample_size": 8,
    "in_channels": 4,
    "out_channels": 4,
    "block_out_channels": (8, 16, 16),
    "layers_per_block": 1,
    "down_block_types": ("DownBlock2D", "DownBlock2D", "CrossAttnDownBlock2D"),
    "up_block_types": ("CrossAttnUpBlock2D", "UpBlock2D", "UpBlock2D"),
    "attention_head_dim": (1, 1, 2),  # heads per block (diffusers' name)
    "transformer_layers_per_block": (1, 1, 2),
    "cross_attention_dim": 32 + 48,
    "use_linear_projection": True,
    "addition_embed_type": "text_time",
    "addition_time_embed_dim": 8,
    "projection_class_embeddings_input_dim": 6 * 8 + 48,
    "norm_num_groups": 4,
}
XL_TEXT_2 = {**TINY_TEXT, "hidden_size": 48, "intermediate_size": 96, "projection_dim": 48, "hidden_act": "gelu",
             "num_hidden_layers": 4}
ARCHES["sdxl"] = TinyArch(
    family="sdxl", unet=XL_UNET, vae={**TINY_VAE, "scaling_factor": 0.13025}, text_encoder=TINY_TEXT,
    text_encoder_2=XL_TEXT_2, scheduler=XL_SCHEDULER, pipeline="StableDiffusionXLPipeline",
)
# SDXL refiner: only the OpenCLIP-bigG encoder (48 wide); time ids carry an aesthetic score (5 x 8).
ARCHES["sdxl-refiner"] = replace(
    ARCHES["sdxl"], family="sdxl-refiner", text_encoder=None, pipeline="StableDiffusionXLImg2ImgPipeline",
    unet={**XL_UNET, "cross_attention_dim": 48, "projection_class_embeddings_input_dim": 5 * 8 + 48},
)
INPAINT_SUFFIX = "-inpaint"
for _name in ("sd1", "sd2", "sdxl"):
    ARCHES[_name + INPAINT_SUFFIX] = ARCHES[_name].inpainting()

MAX_BYTES = 20 * 1024 * 1024


def build_tiny(out_dir: str | os.PathLike[str], arch: str = "sd1", seed: int = 0) -> Path:
    """Build a tiny random-weight pipeline into `out_dir` (must be absent or empty).

    Same `arch` and `seed` give byte-identical weights. Written into a temporary
    sibling folder and renamed into place, so a crash leaves nothing half-built.
    """
    if arch not in known_arches():
        raise UsageError(f"--arch: unknown architecture {arch!r}; choose from {', '.join(known_arches())}")
    out = Path(out_dir)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UsageError(f"OUT_DIR: {out} already exists and is not an empty folder")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        pipe = tiny_pipeline(arch, seed, tmp / "_configs")
        pipe.save_pretrained(tmp, safe_serialization=True)  # safetensors only
        shutil.rmtree(tmp / "_configs")
        (tmp / "sdcli-tiny.json").write_text(json.dumps({"arch": arch, "seed": seed}) + "\n")
        if out.exists():
            out.rmdir()
        os.chmod(tmp, 0o755)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def build_tiny_single_file(out_file: str | os.PathLike[str], arch: str = "sd1", seed: int = 0) -> Path:
    """Write the tiny `arch` as one WebUI-style .safetensors file (original ldm/sgm key layout).

    The same weights as build_tiny(arch, seed); never overwrites an existing file.
    """
    from safetensors.torch import save_file

    from sdcli.models.original_keys import original_state_dict
    from sdcli.models.sd3_write import original_sd3_state_dict
    from sdcli.models.tiny_sd3 import SD3_ARCH

    if arch not in ARCHES and arch != SD3_ARCH:
        raise UsageError(f"--arch: unknown architecture {arch!r}; choose from {', '.join([*ARCHES, SD3_ARCH])}")
    out = Path(out_file)
    if out.suffix != ".safetensors":
        raise UsageError(f"OUT: {out} must end in .safetensors with --single-file")
    if out.exists():
        raise UsageError(f"OUT: {out} already exists")
    out.parent.mkdir(parents=True, exist_ok=True)
    spec = ARCHES.get(arch)
    with tempfile.TemporaryDirectory(prefix=f".{out.name}.", dir=out.parent) as tmp:
        pipe = tiny_pipeline(arch, seed, Path(tmp) / "_configs")
        metadata = {"sdcli.tiny": json.dumps({"arch": arch, "seed": seed})}
        if spec is not None:  # a UNet model (SD3 is a flow model: no prediction type)
            prediction = "v" if spec.scheduler.get("prediction_type") == "v_prediction" else "epsilon"
            metadata["modelspec.prediction_type"] = prediction
        state = original_state_dict(pipe, spec.family) if spec is not None else original_sd3_state_dict(pipe)
        staged = Path(tmp) / out.name
        save_file(state, str(staged), metadata=metadata)
        _sort_metadata(staged)
        os.chmod(staged, 0o644)
        try:
            os.link(staged, out)  # no clobber: fails if the name appeared meanwhile
        except FileExistsError:
            raise UsageError(f"OUT: {out} already exists") from None
    return out


def _sort_metadata(path: Path) -> None:
    """Put a .safetensors header's `__metadata__` keys in sorted order, in place (same length): safetensors
    writes that map in a random order in each process, and the same seed must give the same file."""
    import struct

    with open(path, "r+b") as fh:
        (size,) = struct.unpack("<Q", fh.read(8))
        raw = fh.read(size).decode("utf-8")
        header = json.loads(raw)
        header["__metadata__"] = dict(sorted((header.get("__metadata__") or {}).items()))
        text = json.dumps(header, separators=(",", ":"))
        if len(text.encode()) == len(raw.rstrip(" ").encode()):  # the layout safetensors writes
            fh.seek(8)
            fh.write(text.ljust(size).encode())


def known_arches() -> list[str]:
    """Every tiny architecture's name: the UNet ones (ARCHES) and the transformer families' (transformer_builders)."""
    return [*ARCHES, *transformer_builders()]


def transformer_builders() -> dict[str, Any]:
    """arch -> the function building its tiny pipeline (arch, seed, config_dir), for the families whose tiny
    models live in their own module (models.tiny_flux, tiny_sd3, tiny_zimage, ...)."""
    from sdcli.models import tiny_chroma, tiny_flux, tiny_flux2, tiny_qwenimage, tiny_sd3, tiny_zimage

    builders: dict[str, Any] = {arch: tiny_flux.tiny_flux_pipeline for arch in tiny_flux.FLUX_ARCHES}
    builders[tiny_sd3.SD3_ARCH] = tiny_sd3.tiny_sd3_pipeline
    builders.update({arch: tiny_zimage.tiny_zimage_pipeline for arch in tiny_zimage.ZIMAGE_ARCHES})
    builders.update({arch: tiny_chroma.tiny_chroma_pipeline for arch in tiny_chroma.CHROMA_ARCHES})
    builders.update({arch: tiny_qwenimage.tiny_qwenimage_pipeline for arch in tiny_qwenimage.QWEN_ARCHES})
    builders.update({arch: tiny_flux2.tiny_flux2_pipeline for arch in tiny_flux2.FLUX2_ARCHES})
    return builders


def tiny_pipeline(arch: str, seed: int, config_dir: Path) -> Any:
    """The tiny pipeline of `arch` in memory; its configs are written to `config_dir` first."""
    from sdcli.models.quiet import quiet_libraries

    quiet_libraries()
    if (build := transformer_builders().get(arch)) is not None:
        return build(arch, seed, config_dir)
    import diffusers
    import torch
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

    from sdcli.models.bundled import write_config_folder
    from sdcli.models.tiny_flux import randomise_norms

    spec = ARCHES[arch]
    configs = spec.spec()
    # 1. Tokenizers, built from local files only.
    write_config_folder(configs, config_dir, tokenizer="tiny")
    parts: dict[str, Any] = {}
    for name in ("tokenizer", "tokenizer_2"):
        if name in configs:
            parts[name] = CLIPTokenizer.from_pretrained(config_dir / name, local_files_only=True)
    # 2. Models, initialised from one seeded RNG without touching the global one.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for name, cls in (("text_encoder", CLIPTextModel), ("text_encoder_2", CLIPTextModelWithProjection)):
            if name in configs:
                config = {k: v for k, v in configs[name].items() if k not in ("architectures", "model_type")}
                parts[name] = cls(CLIPTextConfig(**config))
        parts["unet"] = UNet2DConditionModel.from_config(configs["unet"])
        parts["vae"] = AutoencoderKL.from_config(configs["vae"])
        if spec.random_norms:
            for model in parts.values():
                if isinstance(model, torch.nn.Module):
                    randomise_norms(model)
    # 3. Assemble.
    scheduler = getattr(diffusers, configs["scheduler"]["_class_name"]).from_config(configs["scheduler"])
    extra: dict[str, Any] = {}
    if spec.text_encoder_2 is None:
        extra = {"safety_checker": None, "feature_extractor": None, "requires_safety_checker": False}
    elif spec.text_encoder is None:  # the refiner: no CLIP-L
        extra = {"text_encoder": None, "tokenizer": None, "requires_aesthetics_score": True}
    return getattr(diffusers, spec.pipeline)(**parts, scheduler=scheduler, **extra)


def folder_bytes(folder: Path) -> int:
    """Total size of the files below `folder`."""
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
