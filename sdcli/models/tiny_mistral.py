"""A tiny Mistral Small 3 text encoder for Flux.2 [dev] (Mistral3ForConditionalGeneration, as diffusers' Flux2Pipeline
holds it): a 30-layer text model 32 wide (hidden states 10, 20 and 30 are the text, as for the real 40-layer one)
and a one-layer Pixtral vision tower (images of at most 128 px, 16 px patches merged 2x2, its projector at unit
gain: what caption upsampling with reference images sees); with a character-level tokenizer that knows Mistral's
control tokens (the image ones, [IMG], [IMG_BREAK] and [IMG_END], included) and renders Mistral Small 3's chat
template (bos, [SYSTEM_PROMPT]...[/SYSTEM_PROMPT], [INST]...[/INST]; text and image blocks), padding on the left
with <pad> as the released tokenizer does. Built offline.
"""

from __future__ import annotations

import string
from typing import Any

from sdcli.models.llm_tokenizers import MISTRAL_CHAT_TEMPLATE

SPECIALS = ("<pad>", "<s>", "</s>", "[INST]", "[/INST]", "[SYSTEM_PROMPT]", "[/SYSTEM_PROMPT]", "[IMG]", "[IMG_BREAK]",
            "[IMG_END]")
MISTRAL_TEXT = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 30, "num_attention_heads": 2,
                "num_key_value_heads": 1, "head_dim": 16, "max_position_embeddings": 1024, "rope_theta": 1e6}
STOP = ".,;:!?\n"  # characters that end the tiny model's generation besides </s> (a clause or a line)
PIXTRAL_VISION = {"hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1, "num_attention_heads": 1,
                  "head_dim": 16, "image_size": 128, "patch_size": 16}


def tiny_mistral_tokenizer() -> Any:
    """A character-level BPE tokenizer (printable ASCII, <unk>) with Mistral's control tokens and chat template."""
    from tokenizers import Tokenizer, models
    from transformers import PreTrainedTokenizerFast

    vocab = {c: i for i, c in enumerate(["<unk>", *string.printable])}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token="<unk>"))
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", pad_token="<pad>", bos_token="<s>",
                                   eos_token="</s>", model_max_length=131072, padding_side="left")
    fast.add_special_tokens({"additional_special_tokens": list(SPECIALS[3:])})
    fast.chat_template = MISTRAL_CHAT_TEMPLATE
    return fast


def tiny_mistral3(tokenizer: Any, text: dict[str, Any] | None = None) -> Any:
    """A Mistral3ForConditionalGeneration of MISTRAL_TEXT (or `text`) and PIXTRAL_VISION sized to `tokenizer`."""
    import torch
    from transformers import Mistral3Config, Mistral3ForConditionalGeneration

    text_config = {"model_type": "mistral", **(MISTRAL_TEXT if text is None else text),
                   "vocab_size": len(tokenizer), "pad_token_id": tokenizer.pad_token_id,
                   "bos_token_id": tokenizer.bos_token_id, "eos_token_id": tokenizer.eos_token_id}
    config = Mistral3Config(text_config=text_config, vision_config={"model_type": "pixtral", **PIXTRAL_VISION},
                            image_token_index=tokenizer.convert_tokens_to_ids("[IMG]"), spatial_merge_size=2)
    model = Mistral3ForConditionalGeneration(config)
    # The projector's layers at unit gain (transformers' 0.02 leaves an image's tokens next to nothing), so that the
    # image a rewrite sees moves what the tiny model writes.
    with torch.no_grad():
        for layer in model.model.multi_modal_projector.modules():
            if isinstance(layer, torch.nn.Linear):
                layer.weight.normal_(0.0, layer.in_features ** -0.5)
    # Random weights write near-uniform characters and seldom </s>: the tiny model's generation also stops at the end
    # of a sentence or line (STOP), so that a rewrite (diffusers' upsample_prompt reads this config too) is short.
    model.generation_config.eos_token_id = [tokenizer.eos_token_id, *tokenizer.convert_tokens_to_ids(list(STOP))]
    return model
