"""Qwen-Image's rotary positions as ComfyUI places an image's and an edit's tokens (comfy/ldm/qwen_image/model.py,
its default "index" method), handed to diffusers' attention by a processor that takes them.

ComfyUI gives the image's tokens (index 0, row - h // 2, column - w // 2) and reference k's (index k, its own rows
and columns centred likewise), and starts the text's positions at max(h, w) // 2 of the image's token grid.
diffusers' QwenEmbedRope centres a grid of odd side half a token the other way (rows -(h - h // 2) .. h // 2 - 1)
and starts the text after the largest grid, a reference's included: for the released model's 1 MP references and
most images the two differ, and so for a txt2img at an odd grid (its native 1328 px: 83 tokens a side). Its
transformer computes its own positions inside forward, so sdcli passes ComfyUI's to the attention processor
(QWEN_ROTARY_KEY in the blocks' joint_attention_kwargs), which uses them in place of diffusers'. Imported lazily
(torch).
"""

from __future__ import annotations

from typing import Any

QWEN_ROTARY_KEY = "comfy_rotary"  # the joint_attention_kwargs key of ComfyUI's (image, text) rotations


def comfy_rotary(transformer: Any, grids: list[tuple[int, int]], text: int, device: Any) -> tuple[Any, Any]:
    """The (image tokens', text tokens') complex rotations of a QwenImageTransformer2DModel for token `grids`
    (rows, columns; the image's first, then each reference's) and `text` text tokens, at ComfyUI's positions,
    computed as diffusers' rope_params computes its table (the same products, so equal where the positions are)."""
    import torch

    rope = transformer.pos_embed
    positions = []
    for index, (rows, cols) in enumerate(grids):
        r = torch.arange(rows)[:, None].expand(rows, cols) - rows // 2
        c = torch.arange(cols)[None, :].expand(rows, cols) - cols // 2
        positions.append(torch.stack([torch.full_like(r, index), r, c], dim=-1).reshape(-1, 3))
    start = max(grids[0]) // 2
    text_positions = torch.arange(start, start + text)[:, None].expand(text, 3)
    return _rotations(torch.cat(positions), rope).to(device), _rotations(text_positions, rope).to(device)


def _rotations(positions: Any, rope: Any) -> Any:
    """Each axis's positions times its frequencies theta^(-2i / dim), as complex unit rotations, axes side by side."""
    import torch

    parts = []
    for axis, dim in enumerate(rope.axes_dim):
        frequencies = 1.0 / torch.pow(rope.theta, torch.arange(0, dim, 2).to(torch.float32).div(dim))
        angles = torch.outer(positions[:, axis], frequencies)
        parts.append(torch.polar(torch.ones_like(angles), angles))
    return torch.cat(parts, dim=1)


_CLASS: list[type] = []  # the processor class, made on first use (diffusers is imported then)


def use_rotary_processor(transformer: Any) -> None:
    """Give a QwenImageTransformer2DModel's attention layers the processor below unless its first layer has it
    (a look at one layer, not a walk of the model, each step)."""
    if not _CLASS:
        _CLASS.append(_processor_class())
    blocks = transformer.transformer_blocks
    if len(blocks) and type(blocks[0].attn.processor) is not _CLASS[0]:
        transformer.set_attn_processor(_CLASS[0]())


def _processor_class() -> type:
    from diffusers.models.transformers.transformer_qwenimage import QwenDoubleStreamAttnProcessor2_0

    class ComfyRotaryProcessor(QwenDoubleStreamAttnProcessor2_0):  # type: ignore[misc]
        """diffusers' Qwen-Image attention with the rotations given as `comfy_rotary` in place of its own."""

        def __call__(self, attn: Any, hidden_states: Any, encoder_hidden_states: Any = None,
                     encoder_hidden_states_mask: Any = None, attention_mask: Any = None,
                     image_rotary_emb: Any = None, comfy_rotary: Any = None) -> Any:
            return super().__call__(attn, hidden_states, encoder_hidden_states, encoder_hidden_states_mask,
                                    attention_mask, comfy_rotary if comfy_rotary is not None else image_rotary_emb)

    return ComfyRotaryProcessor
