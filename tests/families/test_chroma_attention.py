"""Chroma's attention without the [B, 1, S, S] mask (families.chroma_attention) gives diffusers' numbers
exactly: the attention alone, and the whole tiny transformer called as sdcli calls it."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from sdcli.families.chroma_attention import MASK_KEY, TEXT_KEY, masked_rows_attention


def token_mask(lengths, text, image):
    """diffusers' ChromaPipeline mask: ones over each row's first `length` text tokens and every image token."""
    rows = [torch.cat([(torch.arange(text) < n).float(), torch.ones(image)]) for n in lengths]
    return torch.stack(rows)


def diffusers_attention(q, k, v, mask):
    """What diffusers' Chroma blocks and native attention do: the product mask, added to the scores."""
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask[:, None, None, :] * mask[:, None, :, None])


@pytest.mark.parametrize("heads,text,image,dim,lengths", [(1, 16, 48, 16, (3, 9)), (2, 24, 64, 8, (24, 1)),
                                                         (3, 40, 100, 32, (7,))])
def test_equal_to_the_product_mask(heads, text, image, dim, lengths):
    g = torch.Generator().manual_seed(text)
    q, k, v = (torch.randn(len(lengths), heads, text + image, dim, generator=g) for _ in range(3))
    mask = token_mask(lengths, text, image)
    expected = diffusers_attention(q, k, v, mask)
    assert torch.equal(masked_rows_attention(q, k, v, mask, text), expected)
    # the padded rows are what the second call is for: the key mask alone gets them wrong
    if min(lengths) < text:
        assert not torch.equal(F.scaled_dot_product_attention(q, k, v, attn_mask=mask[:, None, None, :]), expected)


def test_the_transformer_gives_diffusers_output(tiny_family_pipe):
    """The tiny ChromaTransformer2DModel with sdcli's processor and the token mask equals the same model with
    diffusers' processor and diffusers' attention_mask, for a cond/uncond batch of unequal lengths."""
    from diffusers.models.transformers.transformer_flux import FluxAttnProcessor

    from sdcli.families.chroma_attention import chroma_processor

    transformer = tiny_family_pipe("chroma").pipe.transformer
    g = torch.Generator().manual_seed(0)
    text, image = 32, 64
    cfg = transformer.config
    x = torch.randn(2, image, cfg.in_channels, generator=g)
    ctx = torch.randn(2, text, cfg.joint_attention_dim, generator=g)
    mask = token_mask((5, 11), text, image)  # rows of unequal length, padded
    ids = torch.zeros(image, 3)
    ids[:, 1], ids[:, 2] = torch.arange(image) // 8, torch.arange(image) % 8
    args = {"hidden_states": x, "encoder_hidden_states": ctx, "timestep": torch.tensor([0.7, 0.7]),
            "img_ids": ids, "txt_ids": torch.zeros(text, 3), "return_dict": False}
    before = dict(transformer.attn_processors)
    try:
        with torch.no_grad():
            transformer.set_attn_processor(FluxAttnProcessor())
            theirs = transformer(**args, attention_mask=mask)[0]
            transformer.set_attn_processor(chroma_processor())
            ours = transformer(**args, joint_attention_kwargs={MASK_KEY: mask, TEXT_KEY: text})[0]
            unmasked = transformer(**args)[0]
    finally:
        transformer.set_attn_processor(before)
    assert torch.equal(ours, theirs)
    assert not torch.equal(unmasked, theirs)  # the mask matters on this model
