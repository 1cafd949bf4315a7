"""What the tiny Qwen-text models (Z-Image, Flux.2 [klein], Qwen-Image) share: a character-level BPE tokenizer
that knows Qwen's chat-template special tokens, a tiny Qwen text model sized to it, and tiny_qwen_pipeline, which
builds the seeded parts (text encoder, transformer, VAE), randomises what diffusers starts at constants and puts
them into the family's pipeline.
"""

from __future__ import annotations

import string
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

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


def tiny_qwen3(cls: Any, config: Mapping[str, Any], tokenizer: Any) -> Any:
    """A Qwen3 text model of class `cls` (Qwen3Model, Qwen3ForCausalLM) with `config`, sized to the tokenizer."""
    from transformers import Qwen3Config

    return cls(Qwen3Config(**config, vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id))


def tiny_qwen_pipeline(pipeline: str, seed: int, config_dir: Path, scheduler: Mapping[str, Any],
                       text_encoder: Callable[[Any], Any], transformer: Callable[[], Any], vae: Callable[[], Any], *,
                       rms_everywhere: bool = False, settle: Callable[[dict[str, Any]], None] | None = None,
                       tokenizer: Any = None, **kwargs: Any) -> Any:
    """The tiny diffusers `pipeline` in memory: its parts made in this order under torch seed `seed` (the global
    RNG left as it was), then random norms in every part, random RMS-norm scales (in every part as it goes with
    `rms_everywhere`, else the text encoder's and transformer's after), random weights for the transformer's
    zero-started layers, and settle(parts); the tiny weights depend on that order. `config_dir` is made, empty,
    as the tiny builders' callers expect; `tokenizer`: another than tiny_qwen_tokenizer(); `kwargs` go to the
    pipeline."""
    import diffusers
    import torch
    from diffusers import FlowMatchEulerDiscreteScheduler

    from sdcli.models.tiny_flux import randomise_norms

    config_dir.mkdir(parents=True, exist_ok=True)
    tokenizer = tiny_qwen_tokenizer() if tokenizer is None else tokenizer
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        parts = {"text_encoder": text_encoder(tokenizer), "transformer": transformer(), "vae": vae()}
        for model in parts.values():
            randomise_norms(model)
            if rms_everywhere:
                randomise_rms_norms(model)
        if not rms_everywhere:
            randomise_rms_norms(parts["text_encoder"])
            randomise_rms_norms(parts["transformer"])
        randomise_zero_layers(parts["transformer"])
        if settle is not None:
            settle(parts)
    return getattr(diffusers, pipeline)(scheduler=FlowMatchEulerDiscreteScheduler.from_config(scheduler),
                                        tokenizer=tokenizer, **kwargs, **parts)


def randomise_rms_norms(model: Any) -> None:
    """Random scales for every RMS norm (any module with a 1-D `weight` and no bias named *norm*)."""
    import torch

    with torch.no_grad():
        for module in model.modules():
            weight = getattr(module, "weight", None)
            if "norm" in type(module).__name__.lower() and isinstance(weight, torch.nn.Parameter) \
                    and weight.dim() == 1 and getattr(module, "bias", None) is None:
                weight.normal_(1.0, 0.2)


def randomise_zero_layers(model: Any) -> None:
    """Random weights for layers diffusers starts at zero (the final layer's projection and modulation), so the
    tiny network's output depends on every input."""
    import torch

    with torch.no_grad():
        for param in model.parameters():
            if param.dim() >= 1 and not param.any():
                param.normal_(0.0, 0.05)
