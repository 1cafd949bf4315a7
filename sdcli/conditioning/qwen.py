"""What the Qwen-based prompt encoders (Z-Image, Flux.2 [klein], Qwen-Image) share: ComfyUI reads their prompts
literally (weights disabled: brackets are text to the Qwen model), so a prompt whose WebUI emphasis is all 1 is
passed as its plain text (escapes resolved), one with other weights or BREAK is refused by name, --emphasis
none passes the prompt as written, and --emphasis comfy (a replayed ComfyUI graph) passes it as ComfyUI does:
brackets and BREAK as text, only the escapes \\( \\) resolved; and QwenPromptEncoder, the encoder shape around
that rule (`comfy`: the family's ComfyUI text path is asked for). Imported lazily (torch).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import torch

from sdcli.conditioning.cond import COMFY_PLACEMENT, Conditioning, EncoderCapabilities
from sdcli.conditioning.prompts import BREAK_MARK, comfy_literal, parse_attention
from sdcli.errors import UsageError


def literal_prompt(text: str, emphasis: str, model: str, encoder: str) -> str:
    """The text the `encoder` (Qwen3, ...) of a `model` (Z-Image, ...) reads: the prompt with its (all-1) WebUI
    emphasis syntax removed, or as written with --emphasis none, or as ComfyUI reads it with --emphasis comfy
    (conditioning.prompts.comfy_literal); UsageError for weights other than 1 or BREAK."""
    if emphasis == "none":
        return text
    if emphasis == "comfy":
        return comfy_literal(text)
    parsed = parse_attention(text)
    if BREAK_MARK in parsed:
        raise UsageError(f"prompt: a {model} prompt is one text ({encoder} has no 75-token chunks): remove BREAK")
    if weighted := next((t for t, w in parsed if w != 1.0), None):
        raise UsageError(f"prompt: {model} takes no emphasis weights (ComfyUI reads its prompts literally), got "
                         f"{weighted.strip()!r} weighted; remove the brackets, escape them (\\( \\)) or use "
                         "--emphasis none to give them to the text encoder as text")
    return "".join(t for t, _ in parsed)


class QwenPromptEncoder:
    """Prompts -> Conditioning with a Qwen text model (families.base.PromptEncoder): the prompt read literally
    (literal_prompt, naming `model` and `encoder`), states() its crossattn; cached per text, the negative prompt
    encoded as any prompt (used only above CFG scale 1)."""

    model: ClassVar[str] = ""  # the family, in refusals
    encoder: ClassVar[str] = ""  # the text model, in refusals
    # Whether the family's network places tokens otherwise on ComfyUI's path: its conditionings then carry
    # COMFY_PLACEMENT with --emphasis comfy (Qwen-Image's rotary positions).
    comfy_placement: ClassVar[bool] = False

    def __init__(self, tokenizer: Any, text_encoder: Any, emphasis: str = "original"):
        self.tokenizer, self.text_encoder, self.emphasis = tokenizer, text_encoder, emphasis
        self.comfy = emphasis == "comfy"  # ComfyUI's text path (a replayed ComfyUI graph)
        self.capabilities = EncoderCapabilities(clip_skip_layers=1, emphasis=False, chunks=False)
        self.cache: dict[str, Conditioning] = {}

    def literal(self, text: str) -> str:
        """The prompt as the text model reads it (literal_prompt)."""
        return literal_prompt(text, self.emphasis, self.model, self.encoder)

    def states(self, text: str) -> torch.Tensor:
        """The conditioning's crossattn [1, tokens, dim] of one prompt."""
        raise NotImplementedError(type(self).__name__)

    @torch.no_grad()
    def encode(self, text: str) -> Conditioning:
        if text not in self.cache:
            states = self.states(text)
            marks = {COMFY_PLACEMENT: torch.ones(states.shape[0], device=states.device)} if (
                self.comfy and self.comfy_placement) else {}
            self.cache[text] = Conditioning(states, marks)
        return self.cache[text]

    def negative_encoder(self, all_empty: bool) -> Callable[[str], Conditioning]:
        """The negative prompt is encoded as any prompt (used only above CFG scale 1)."""
        return self.encode

    def pipeline_embeds(self, prompt: str, negative: str) -> dict[str, Any]:
        """The family's diffusers pipelines' embedding arguments (sdcli's loop runs it; kept for the Protocol)."""
        return {"prompt_embeds": self.encode(prompt).crossattn,
                "negative_prompt_embeds": self.encode(negative).crossattn}
