"""Tiny random-weight Qwen-Image: the real architecture at tiny widths.

A QwenImageTransformer2DModel (1 block, 1 head of 32, text width 32), a Wan-style AutoencoderKLQwenImage of
base width 2 (the real channel multipliers 1, 2, 4, 4, 8x spatial compression and per-channel latent
mean/std: its full-resolution 3-D convolutions are 2 channels wide), and a tiny
Qwen2_5_VLForConditionalGeneration (2 text layers of width 32; its vision tower, which text-only prompts never
run, 1 block of width 16) with models.tiny_qwen's character-level tokenizer, which knows the chat template's
special tokens. `sdcli tiny --arch qwen-image`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sdcli.models.tiny_qwen import tiny_qwen_pipeline

QWEN_ARCHES = {"qwen-image": "QwenImagePipeline", "qwen-image-edit": "QwenImageEditPipeline",
               "qwen-image-edit-plus": "QwenImageEditPlusPipeline"}
# Qwen2.5-VL's vision-prompt tokens, which the edit pipeline's template uses (the tiny edit tokenizer adds them).
VISION_TOKENS = ("<|vision_start|>", "<|image_pad|>", "<|vision_end|>", "<|video_pad|>")
QWEN_TRANSFORMER = {
    "patch_size": 2, "in_channels": 64, "out_channels": 16, "num_layers": 1, "attention_head_dim": 32,
    "num_attention_heads": 1, "joint_attention_dim": 32, "axes_dims_rope": (8, 12, 12),
}
QWEN_VAE = {"base_dim": 2, "z_dim": 16, "dim_mult": [1, 2, 4, 4], "num_res_blocks": 1,
            "temperal_downsample": [False, True, True]}  # latents_mean/std: diffusers' (the published) defaults
QWEN_TEXT = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2,
             "num_key_value_heads": 1, "max_position_embeddings": 2048, "rope_theta": 1e6,
             "rope_scaling": {"type": "mrope", "mrope_section": [2, 3, 3]}}
QWEN_VISION = {"depth": 1, "hidden_size": 16, "intermediate_size": 32, "num_heads": 2, "out_hidden_size": 32,
               "fullatt_block_indexes": [0]}
# The published scheduler config (dynamic exponential shift, terminal 0.02); sdcli's loop uses ComfyUI's mu 1.15.
QWEN_SCHEDULER = {"num_train_timesteps": 1000, "shift": 1.0, "use_dynamic_shifting": True, "base_shift": 0.5,
                  "max_shift": 0.9, "base_image_seq_len": 256, "max_image_seq_len": 8192, "shift_terminal": 0.02,
                  "time_shift_type": "exponential"}


def tiny_qwenimage_pipeline(arch: str, seed: int, config_dir: Path) -> Any:
    """The tiny Qwen-Image pipeline in memory (models.tiny_qwen.tiny_qwen_pipeline); Qwen-Image-Edit: the same
    parts, its tokenizer knowing the vision tokens (their ids in the text encoder's config) and no `processor`
    (Qwen2VLProcessor needs torchvision to be built; sdcli prepares the images itself)."""
    from diffusers import AutoencoderKLQwenImage, QwenImageTransformer2DModel

    edit = arch.startswith("qwen-image-edit")
    extra: dict[str, Any] = {"processor": None, "tokenizer": _edit_tokenizer()} if edit else {}
    return tiny_qwen_pipeline(QWEN_ARCHES[arch], seed, config_dir, QWEN_SCHEDULER, text_encoder=_text_encoder,
                              transformer=lambda: QwenImageTransformer2DModel.from_config(QWEN_TRANSFORMER),
                              vae=lambda: AutoencoderKLQwenImage.from_config(QWEN_VAE), rms_everywhere=True, **extra)


def _edit_tokenizer() -> Any:
    from sdcli.models.tiny_qwen import tiny_qwen_tokenizer

    tokenizer = tiny_qwen_tokenizer()
    tokenizer.add_tokens(list(VISION_TOKENS), special_tokens=True)
    return tokenizer


def _token_ids(tokenizer: Any) -> tuple[dict[str, int], dict[str, int]]:
    """The text encoder config's token ids for the tokenizer (its pad token also the BOS), and its vision tokens'
    ids where it has them."""
    ids = {"vocab_size": len(tokenizer), "pad_token_id": tokenizer.pad_token_id,
           "bos_token_id": tokenizer.pad_token_id, "eos_token_id": tokenizer.eos_token_id}
    vision = {}
    if VISION_TOKENS[1] in tokenizer.get_vocab():
        image, video, start, end = (tokenizer.convert_tokens_to_ids(t) for t in (VISION_TOKENS[1], VISION_TOKENS[3],
                                                                                 VISION_TOKENS[0], VISION_TOKENS[2]))
        vision = {"image_token_id": image, "video_token_id": video, "vision_start_token_id": start,
                  "vision_end_token_id": end}
    return ids, vision


def _text_encoder(tokenizer: Any) -> Any:
    """A tiny Qwen2.5-VL sized to the tokenizer (_token_ids)."""
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    ids, vision = _token_ids(tokenizer)
    return Qwen2_5_VLForConditionalGeneration(Qwen2_5_VLConfig(text_config={**QWEN_TEXT, **ids},
                                                               vision_config=QWEN_VISION, **ids, **vision))


def tiny_edit_tokenizer(config: dict[str, Any]) -> Any:
    """The tiny Qwen-Image-Edit models' tokenizer (knowing the vision tokens), the text encoder's `config` (a
    Qwen2.5-VL config dict) given its ids as _text_encoder builds them: for their single files."""
    tokenizer = _edit_tokenizer()
    ids, vision = _token_ids(tokenizer)
    config.setdefault("text_config", {}).update(ids)
    config.update(ids | vision)
    return tokenizer
