"""Tiny random-weight Z-Image models: the real architecture at tiny widths.

A ZImageTransformer2DModel (1 refiner block each for noise and caption, 2 main blocks, 2 heads of 16), the
16-channel 8x VAE of tiny Flux, and a tiny Qwen3 text encoder with a character-level BPE tokenizer that
knows the chat template's special tokens, so every code path of a real Z-Image model runs in milliseconds.
"""

from __future__ import annotations

import string
from pathlib import Path
from typing import Any

ZIMAGE_ARCHES = {"zimage": "ZImagePipeline"}
ZIMAGE_TRANSFORMER = {
    "all_patch_size": (2,), "all_f_patch_size": (1,), "in_channels": 16, "dim": 32, "n_layers": 2,
    "n_refiner_layers": 1, "n_heads": 2, "n_kv_heads": 2, "norm_eps": 1e-5, "qk_norm": True, "cap_feat_dim": 32,
    "rope_theta": 256.0, "t_scale": 1000.0, "axes_dims": [4, 6, 6], "axes_lens": [1024, 512, 512],
}
ZIMAGE_QWEN3 = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 3, "num_attention_heads": 2,
                "num_key_value_heads": 1, "head_dim": 16, "max_position_embeddings": 1024, "rope_theta": 1e6,
                "tie_word_embeddings": True}
# The published scheduler config (shift 3, no dynamic shifting); sdcli's loop uses ComfyUI's table instead.
ZIMAGE_SCHEDULER = {"num_train_timesteps": 1000, "shift": 3.0, "use_dynamic_shifting": False}
SPECIALS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<think>", "</think>")
# Qwen3's chat template cut down to what a user turn and the opened assistant turn give with thinking on.
CHAT_TEMPLATE = ("{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}"
                 "<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n"
                 "{% if enable_thinking is defined and enable_thinking is false %}<think>\n\n</think>\n\n"
                 "{% endif %}{% endif %}")


def tiny_qwen_tokenizer() -> Any:
    """A character-level BPE tokenizer (every printable ASCII character, <unk>) with Qwen's special tokens
    (<|endoftext|> pads) and a chat template, built offline."""
    from tokenizers import Tokenizer, models
    from transformers import PreTrainedTokenizerFast

    vocab = {c: i for i, c in enumerate(["<unk>", *string.printable])}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token="<unk>"))
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", pad_token="<|endoftext|>",
                                   eos_token="<|im_end|>", model_max_length=4096)
    fast.add_special_tokens({"additional_special_tokens": list(SPECIALS[1:])})
    fast.chat_template = CHAT_TEMPLATE
    return fast


def tiny_zimage_pipeline(arch: str, seed: int, config_dir: Path) -> Any:
    """The tiny Z-Image pipeline of `arch` in memory (its tokenizer is built in memory; `config_dir` is made,
    empty, as the tiny builders' callers expect)."""
    import diffusers
    import torch
    from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, ZImageTransformer2DModel
    from transformers import Qwen3Config, Qwen3Model

    from sdcli.models.tiny_flux import FLUX_VAE, randomise_norms

    config_dir.mkdir(parents=True, exist_ok=True)
    tokenizer = tiny_qwen_tokenizer()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        parts = {
            "text_encoder": Qwen3Model(Qwen3Config(**ZIMAGE_QWEN3, vocab_size=len(tokenizer),
                                                   pad_token_id=tokenizer.pad_token_id)),
            "transformer": ZImageTransformer2DModel.from_config(ZIMAGE_TRANSFORMER),
            "vae": AutoencoderKL.from_config(FLUX_VAE),
        }
        for model in parts.values():
            randomise_norms(model)
        _randomise_rms_norms(parts["text_encoder"])
        _randomise_rms_norms(parts["transformer"])
        _randomise_zero_layers(parts["transformer"])
    scheduler = FlowMatchEulerDiscreteScheduler.from_config(ZIMAGE_SCHEDULER)
    return getattr(diffusers, ZIMAGE_ARCHES[arch])(scheduler=scheduler, tokenizer=tokenizer, **parts)


def _randomise_rms_norms(model: Any) -> None:
    """Random scales for every RMS norm (any module with a 1-D `weight` and no bias named *norm*)."""
    import torch

    with torch.no_grad():
        for module in model.modules():
            weight = getattr(module, "weight", None)
            if "norm" in type(module).__name__.lower() and isinstance(weight, torch.nn.Parameter) \
                    and weight.dim() == 1 and getattr(module, "bias", None) is None:
                weight.normal_(1.0, 0.2)


def _randomise_zero_layers(model: Any) -> None:
    """Random weights for layers diffusers starts at zero (the final layer's projection and modulation), so the
    tiny network's output depends on every input."""
    import torch

    with torch.no_grad():
        for param in model.parameters():
            if param.dim() >= 1 and not param.any():
                param.normal_(0.0, 0.05)
