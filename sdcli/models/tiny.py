"""Tiny random-weight checkpoints in the diffusers folder layout, built offline.

Used by `sdcli tiny`, by the embedded demo model and by the tests. The
architecture is real (SD1.x: CLIP text encoder, UNet with cross-attention,
8x VAE); only the widths are tiny, so every code path of a real model runs.
An architecture is one row of ARCHES; later rows (sd2, sdxl, inpaint) reuse
the same builders with other configs.
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
    """Configs of one tiny architecture."""

    unet: dict[str, Any]
    vae: dict[str, Any]
    text_encoder: dict[str, Any]
    scheduler: dict[str, Any] = field(default_factory=lambda: dict(SD1_SCHEDULER))
    pipeline: str = "StableDiffusionPipeline"  # the class model_index.json names

    def inpainting(self) -> TinyArch:
        """The same architecture as a dedicated inpainting checkpoint: a 9-channel UNet
        (4 latent + 1 mask + 4 masked-image latent channels), as SD's inpainting models."""
        return replace(self, unet={**self.unet, "in_channels": 9}, pipeline="StableDiffusionInpaintPipeline")


ARCHES: dict[str, TinyArch] = {
    "sd1": TinyArch(
        unet={
            "sample_size": 8,  # latent side: native image size 64 px
            "in_channels": 4,
            "out_channels": 4,
            "block_out_channels": (32, 64),
            "layers_per_block": 1,
            "down_block_types": ("CrossAttnDownBlock2D", "DownBlock2D"),
            "up_block_types": ("UpBlock2D", "CrossAttnUpBlock2D"),
            "cross_attention_dim": 32,
            "attention_head_dim": 8,
            "norm_num_groups": 16,
        },
        vae={
            "in_channels": 3,
            "out_channels": 3,
            "latent_channels": 4,
            "block_out_channels": (16, 16, 32, 32),  # 4 blocks: 8x down-scaling as in SD
            "down_block_types": ("DownEncoderBlock2D",) * 4,
            "up_block_types": ("UpDecoderBlock2D",) * 4,
            "layers_per_block": 1,
            "norm_num_groups": 8,
            "sample_size": 64,
        },
        text_encoder={
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_attention_heads": 4,
            "num_hidden_layers": 12,  # as SD1's CLIP ViT-L: WebUI CLIP skip 1-12 all valid
            "max_position_embeddings": 77,
            "projection_dim": 32,
            "hidden_act": "quick_gelu",
        },
    ),
}
# SD 2.x (768-v): v-prediction, linear attention projections, per-block head counts and a
# GELU text encoder shipped without its last layer, as in stabilityai/stable-diffusion-2.
ARCHES["sd2"] = replace(
    ARCHES["sd1"],
    unet={**ARCHES["sd1"].unet, "use_linear_projection": True, "attention_head_dim": (2, 4)},
    text_encoder={**ARCHES["sd1"].text_encoder, "hidden_act": "gelu", "num_hidden_layers": 11},
    scheduler={**SD1_SCHEDULER, "prediction_type": "v_prediction"},
)
INPAINT_SUFFIX = "-inpaint"
for _name in ("sd1", "sd2"):
    ARCHES[_name + INPAINT_SUFFIX] = ARCHES[_name].inpainting()

MAX_BYTES = 20 * 1024 * 1024


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2/CLIP byte -> printable character table (the BPE alphabet)."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1),
                 *range(ord("®"), ord("ÿ") + 1)]
    table, extra = {}, 0
    for b in range(256):
        if b in printable:
            table[b] = chr(b)
        else:
            table[b] = chr(256 + extra)
            extra += 1
    return table


def write_tokenizer_files(folder: Path) -> int:
    """Write a character-level CLIP BPE vocabulary; return its size.

    Built locally because no tokenizer can be downloaded; every word splits into
    characters, so prompts behave like real ones (long ones pass 75 tokens fast).
    """
    chars = list(_bytes_to_unicode().values())
    vocab = {c: i for i, c in enumerate(chars)}
    vocab.update({c + "</w>": len(chars) + i for i, c in enumerate(chars)})
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    (folder / "merges.txt").write_text("#version: 0.2\n", encoding="utf-8")
    return len(vocab)


def randomise_norms(model: Any) -> None:
    """Give every normalisation layer random affine weights (from the seeded global RNG).

    Freshly initialised norms are the identity (weight 1, bias 0): CLIP's final LayerNorm
    would then give embeddings of mean ~0, which real models never have and which makes
    the WebUI's mean-restoring emphasis divide 0 by 0. Random affines keep such maths real.
    """
    import torch

    for module in model.modules():
        if isinstance(module, (torch.nn.LayerNorm, torch.nn.GroupNorm)) and module.weight is not None:
            with torch.no_grad():
                module.weight.normal_(1.0, 0.2)
                module.bias.normal_(0.5, 0.5)


def build_tiny(out_dir: str | os.PathLike[str], arch: str = "sd1", seed: int = 0) -> Path:
    """Build a tiny random-weight pipeline into `out_dir` (must be absent or empty).

    Same `arch` and `seed` give byte-identical weights. Written into a temporary
    sibling folder and renamed into place, so a crash leaves nothing half-built.
    """
    from sdcli.models.libraries import quiet_libraries

    quiet_libraries()
    import diffusers
    import torch
    from diffusers import AutoencoderKL, PNDMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    if arch not in ARCHES:
        raise UsageError(f"--arch: unknown architecture {arch!r}; choose from {', '.join(ARCHES)}")
    spec = ARCHES[arch]
    out = Path(out_dir)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UsageError(f"OUT_DIR: {out} already exists and is not an empty folder")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        # 1. Tokenizer, built from local files only.
        vocab_size = write_tokenizer_files(tmp / "_tok")
        tokenizer = CLIPTokenizer(
            str(tmp / "_tok" / "vocab.json"), str(tmp / "_tok" / "merges.txt"),
            pad_token="<|endoftext|>", model_max_length=77)
        # 2. Models, initialised from one seeded RNG without touching the global one.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            text_encoder = CLIPTextModel(CLIPTextConfig(
                **spec.text_encoder, vocab_size=vocab_size, pad_token_id=vocab_size - 1,
                bos_token_id=vocab_size - 2, eos_token_id=vocab_size - 1))
            unet = UNet2DConditionModel(**spec.unet)
            vae = AutoencoderKL(**spec.vae)
            for model in (text_encoder, unet, vae):
                randomise_norms(model)
        # 3. Assemble and save (safetensors only).
        pipe = getattr(diffusers, spec.pipeline)(
            vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet,
            scheduler=PNDMScheduler(**spec.scheduler), safety_checker=None,
            feature_extractor=None, requires_safety_checker=False,
        )
        pipe.save_pretrained(tmp, safe_serialization=True)
        shutil.rmtree(tmp / "_tok")
        (tmp / "sdcli-tiny.json").write_text(json.dumps({"arch": arch, "seed": seed}) + "\n")
        if out.exists():
            out.rmdir()
        os.chmod(tmp, 0o755)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def folder_bytes(folder: Path) -> int:
    """Total size of the files below `folder`."""
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
