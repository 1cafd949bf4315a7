"""Conditioning.zeroed: ComfyUI's ConditioningZeroOut (nodes.py), what --zero-negative conditions the uncond on."""

from __future__ import annotations

import torch

from sdcli.conditioning.cond import Conditioning


def test_states_and_pooled_vectors_are_zeroed_the_rest_kept():
    states, pooled, mask, guidance = torch.ones(1, 5, 8), torch.ones(1, 4), torch.tensor([[1.0, 1, 0, 0, 0]]), 3.5
    zeroed = Conditioning(states, {"pooled": pooled, "mask": mask, "guidance": guidance}).zeroed()
    assert zeroed.crossattn.shape == states.shape and not zeroed.crossattn.any()
    assert zeroed.extra["pooled"].shape == pooled.shape and not zeroed.extra["pooled"].any()
    assert torch.equal(zeroed.extra["mask"], mask) and zeroed.extra["guidance"] == guidance
    sdxl = Conditioning(states, {"added_cond_kwargs": {"text_embeds": pooled, "time_ids": torch.ones(1, 6)}}).zeroed()
    assert not sdxl.extra["added_cond_kwargs"]["text_embeds"].any()
    assert torch.equal(sdxl.extra["added_cond_kwargs"]["time_ids"], torch.ones(1, 6))
    assert states.all() and pooled.all()  # the encoder's cached tensors are not touched
