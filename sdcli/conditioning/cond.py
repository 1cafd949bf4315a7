"""What the network is conditioned on: one row per image (pure data; torch values), and what a prompt
encoder declares it does (EncoderCapabilities; the encoders' Protocol is families.base.PromptEncoder).

`crossattn` is the text embedding [B, tokens, dim]; `extra` holds any other UNet
keyword arguments, e.g. SDXL's `added_cond_kwargs` {text_embeds, time_ids}. Both are
batched along dim 0 so rows of several conditionings can be stacked.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# The conditioning's mark that the network places its tokens as ComfyUI's model places them, where a family's
# diffusers placement differs (Qwen-Image's rotary positions at odd token grids and with an edit's references): set
# by --comfy-edit's references and by ComfyUI's text path (--emphasis comfy) of the families whose placement differs;
# a [rows] tensor of ones, batched as the rest.
COMFY_PLACEMENT = "comfy_placement"


@dataclass(frozen=True)
class Conditioning:
    """UNet conditioning: cross-attention states plus extra UNet kwargs (nested dicts of tensors)."""

    crossattn: Any
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def tokens(self) -> int:
        return int(self.crossattn.shape[1])

    def zeroed(self) -> Conditioning:
        """ComfyUI's ConditioningZeroOut: the states and the pooled vector (SD3's `pooled`, SDXL's text_embeds)
        as zeros of their shapes; the rest (masks, guidance, reference latents, SDXL's size ids) kept."""
        import torch

        extra = dict(self.extra)
        if "pooled" in extra:
            extra["pooled"] = torch.zeros_like(extra["pooled"])
        if "text_embeds" in extra.get("added_cond_kwargs", {}):
            added = extra["added_cond_kwargs"]
            extra["added_cond_kwargs"] = {**added, "text_embeds": torch.zeros_like(added["text_embeds"])}
        return Conditioning(torch.zeros_like(self.crossattn), extra)

    def repeat(self, n: int) -> Conditioning:
        """The same conditioning for n rows."""
        rows = _map(self.extra, lambda v: v.repeat(n, *[1] * (v.dim() - 1)))
        return Conditioning(self.crossattn.repeat(n, 1, 1), rows)


@dataclass(frozen=True)
class EncoderCapabilities:
    """What a prompt encoder does with the WebUI's prompt settings and what it gives."""

    clip_skip_layers: int  # the deepest --clip-skip it takes (its text encoder's layers)
    emphasis: bool = True  # (word:1.2) weights and the emphasis modes
    chunks: bool = True  # 75-token chunks and BREAK
    pooled: bool = False  # a pooled text vector goes with the token states
    zero_empty_negative: bool = False  # an all-empty negative prompt is all zeros (SDXL, as the WebUI)


def _map(tree: dict[str, Any], fn: Any) -> dict[str, Any]:
    return {k: _map(v, fn) if isinstance(v, dict) else fn(v) for k, v in tree.items()}


def _cat_trees(trees: list[dict[str, Any]]) -> dict[str, Any]:
    import torch

    return {k: _cat_trees([t[k] for t in trees]) if isinstance(v, dict) else torch.cat([t[k] for t in trees])
            for k, v in trees[0].items()}


def cat(conds: list[Conditioning]) -> Conditioning:
    """Stack conditionings row-wise (same token count)."""
    import torch

    return Conditioning(torch.cat([c.crossattn for c in conds]), _cat_trees([c.extra for c in conds]))
