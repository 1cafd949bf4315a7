"""Chroma's masked attention with the same sums as diffusers', without the [B, 1, S, S] mask.

diffusers' Chroma blocks turn the [B, S] 0/1 token mask (T5's attended tokens, then ones over the image tokens)
into the product m_i * m_j, a [B, 1, S, S] float mask that the attention adds to its scores (a float mask is
additive: a padded key is weighed e^-1 against an attended one, not removed). At 1024 px that is 4,608 tokens:
21 million values per image, multiplied out in every block of every step and read back by the attention.

The same scores come from two cheaper calls: a row whose own m_i is 1 (an attended text token or an image token)
adds m_j, which is the [B, 1, 1, S] key mask broadcast; a row whose m_i is 0 (T5 padding, only ever among the
text tokens, which come first) adds nothing, so the text rows are attended once more without a mask and those
rows are taken from that call. Every row sees exactly the values diffusers' mask adds (0.0 or 1.0), so the
result is equal, not close (tests/families/test_chroma_attention.py); no value is read back to the host.
"""

from __future__ import annotations

from typing import Any

# joint_attention_kwargs that carry the token mask past diffusers' blocks (which would multiply it out) to
# the attention processor: the [B, S] 0/1 mask and the number of text tokens in front of the image tokens.
MASK_KEY, TEXT_KEY = "token_mask", "text_tokens"


def masked_rows_attention(query: Any, key: Any, value: Any, mask: Any, text: int) -> Any:
    """Attention of [B, H, S, D] tensors with diffusers' Chroma mask (scores + m_i * m_j) for the [B, S] 0/1
    `mask`, whose zeros lie in the first `text` tokens."""
    import torch
    import torch.nn.functional as F

    mask = mask.to(query.dtype)
    out = F.scaled_dot_product_attention(query, key, value, attn_mask=mask[:, None, None, :])
    plain = F.scaled_dot_product_attention(query[:, :, :text], key, value)
    attended = (mask[:, None, :text, None] != 0)
    return torch.cat([torch.where(attended, out[:, :, :text], plain), out[:, :, text:]], dim=2)


_CLASS: list[type] = []  # the processor class, made on first use (diffusers is imported then)


def chroma_processor() -> Any:
    """An attention processor for diffusers' FluxAttention that takes the token mask (MASK_KEY, TEXT_KEY) and
    otherwise does what diffusers' FluxAttnProcessor does (projections, QK norms, rotary embedding, outputs)."""
    if not _CLASS:
        _CLASS.append(_processor_class())
    return _CLASS[0]()


def _processor_class() -> type:
    import torch
    from diffusers.models.transformers.transformer_flux import (
        FluxAttnProcessor,
        _get_qkv_projections,
        apply_rotary_emb,
    )

    class ChromaMaskProcessor(FluxAttnProcessor):  # type: ignore[misc]
        def __call__(self, attn: Any, hidden_states: Any, encoder_hidden_states: Any = None,
                     attention_mask: Any = None, image_rotary_emb: Any = None, token_mask: Any = None,
                     text_tokens: int = 0) -> Any:
            if token_mask is None:
                return super().__call__(attn, hidden_states, encoder_hidden_states, attention_mask,
                                        image_rotary_emb)
            query, key, value, encoder_query, encoder_key, encoder_value = _get_qkv_projections(
                attn, hidden_states, encoder_hidden_states)
            query, key, value = (t.unflatten(-1, (-1, attn.head_dim)) for t in (query, key, value))
            query, key = attn.norm_q(query), attn.norm_k(key)
            if attn.added_kv_proj_dim is not None:
                encoder_query, encoder_key, encoder_value = (
                    t.unflatten(-1, (-1, attn.head_dim)) for t in (encoder_query, encoder_key, encoder_value))
                query = torch.cat([attn.norm_added_q(encoder_query), query], dim=1)
                key = torch.cat([attn.norm_added_k(encoder_key), key], dim=1)
                value = torch.cat([encoder_value, value], dim=1)
            if image_rotary_emb is not None:
                query = apply_rotary_emb(query, image_rotary_emb, sequence_dim=1)
                key = apply_rotary_emb(key, image_rotary_emb, sequence_dim=1)
            out = masked_rows_attention(*(t.permute(0, 2, 1, 3) for t in (query, key, value)), token_mask,
                                        text_tokens)
            out = out.permute(0, 2, 1, 3).flatten(2, 3).to(query.dtype)
            if encoder_hidden_states is None:
                return out
            text_out, image_out = out.split_with_sizes([encoder_hidden_states.shape[1],
                                                        out.shape[1] - encoder_hidden_states.shape[1]], dim=1)
            image_out = attn.to_out[1](attn.to_out[0](image_out.contiguous()))
            return image_out, attn.to_add_out(text_out.contiguous())

    return ChromaMaskProcessor


def use_mask_processor(transformer: Any) -> None:
    """Give a ChromaTransformer2DModel's attention layers the processor above unless the first layer of each
    kind of block has it already (a look at two layers, not a walk of the model, each step)."""
    processor = chroma_processor()
    firsts = [blocks[0].attn.processor for blocks in (transformer.transformer_blocks,
                                                      transformer.single_transformer_blocks) if len(blocks)]
    if not all(type(p) is type(processor) for p in firsts):
        transformer.set_attn_processor(processor)
