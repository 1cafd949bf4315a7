"""Flux.2 [klein] prompt encoding as ComfyUI does it (comfy/text_encoders/flux.py KleinTokenizer, Qwen3_4BModel,
Flux2TEModel), which is what diffusers' Flux2KleinPipeline.encode_prompt computes too:

the prompt goes into Qwen3's chat template as one user turn with the assistant's turn opened and an empty think
block ("<|im_start|>user\\n{prompt}<|im_end|>\\n<|im_start|>assistant\\n<think>\\n\\n</think>\\n\\n": thinking
off), is tokenized and padded with <|endoftext|> to 512 tokens (longer prompts: diffusers truncates at 512), the
text encoder runs with the attention mask, and its hidden states 9, 18 and 27 are laid side by side per token
([1, 512, 3 * hidden]). ComfyUI tokenizes with weights disabled: brackets are text to Qwen3, so a prompt whose
WebUI emphasis is all 1 is passed as its plain text and one with other weights or BREAK is refused by name;
--emphasis none passes the prompt as written; --emphasis comfy (a replayed ComfyUI graph) reads it as ComfyUI does
(conditioning.qwen) and does not truncate a prompt longer than 512 tokens (ComfyUI pads to at least 512, cuts
nothing). Flux.2 [dev]: Flux2DevPromptEncoder (Mistral Small 3, as diffusers' Flux2Pipeline encodes; --emphasis
comfy: as ComfyUI does, which differs). Imported lazily (torch).
"""

from __future__ import annotations

from typing import Any

import torch

from sdcli.conditioning.cond import Conditioning
from sdcli.conditioning.qwen import QwenPromptEncoder

TEMPLATE = "<|im_start|>user\n{}<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n"
LAYERS = (9, 18, 27)  # hidden-state indices (0 = the embeddings), as diffusers' text_encoder_out_layers
LENGTH = 512  # tokens, padded (ComfyUI's min_length; diffusers' max_sequence_length)


class Flux2PromptEncoder(QwenPromptEncoder):
    """Prompts -> Conditioning for Flux.2 [klein] (families.base.PromptEncoder): crossattn = Qwen3's hidden
    states 9, 18, 27 of the templated, padded prompt, concatenated per token [1, 512, 3 * dim]; cached per text."""

    model, encoder = "Flux.2", "Qwen3"
    layers: tuple[int, ...] = LAYERS

    def tokens(self, text: str) -> dict[str, Any]:
        """The templated prompt's input ids and attention mask, padded to 512 tokens (cut there but by ComfyUI)."""
        templated = TEMPLATE.format(self.literal(text))
        return self.tokenizer(templated, padding="max_length", truncation=not self.comfy, max_length=LENGTH,
                              return_tensors="pt")

    def states(self, text: str) -> torch.Tensor:
        inputs = self.tokens(text)
        device = self.text_encoder.device
        out = self.text_encoder(input_ids=inputs["input_ids"].to(device),
                                attention_mask=inputs["attention_mask"].to(device),
                                output_hidden_states=True, use_cache=False)
        states = torch.stack([out.hidden_states[k] for k in self.layers], dim=2)  # [1, L, 3, D]
        return states.reshape(states.shape[0], states.shape[1], -1)


# Flux.2 [dev] (diffusers' Flux2Pipeline._get_mistral_3_small_prompt_embeds, BFL's flux2 text_encoder.py): BFL's
# system message, then the prompt as a user turn, in Mistral Small 3's chat template (which opens with the bos
# token); "[IMG]" taken out of the prompt as the pipeline does; padded to 512 tokens (the tokenizer's own side:
# the left, pad tokens masked, their states kept).
# ComfyUI (comfy/text_encoders/flux.py Flux2Tokenizer, Mistral3Tokenizer; comfy/model_base.py Flux2.extra_conds)
# encodes the same template and layers differently: bos, then the template's tokens, unpadded and uncut (min_length
# 1), the prompt as it reads it (brackets as text, "[IMG]" kept); the states of those tokens alone, then zeros put
# IN FRONT up to 512 tokens by the model (a longer prompt keeps its length). --emphasis comfy encodes so.
DEV_SYSTEM = ("You are an AI that reasons about image descriptions. You give structured responses focusing on object "
              "relationships, object\nattribution and actions without speculation.")
DEV_TEMPLATE = "{bos}[SYSTEM_PROMPT]{system}[/SYSTEM_PROMPT][INST]{prompt}[/INST]"
DEV_LAYERS = (10, 20, 30)


class Flux2DevPromptEncoder(Flux2PromptEncoder):
    """Prompts -> Conditioning for Flux.2 [dev]: crossattn = Mistral Small 3's hidden states 10, 20, 30 of the
    templated, padded prompt side by side per token [1, 512, 3 * dim]; extra = {"guidance": [1]} (the distilled
    guidance the network takes); cached per text."""

    model, encoder = "Flux.2", "Mistral Small 3"
    layers = DEV_LAYERS

    def __init__(self, tokenizer: Any, text_encoder: Any, emphasis: str, guidance: float):
        # diffusers' pipeline holds a PixtralProcessor: its text tokenizer is what reads the prompt
        super().__init__(getattr(tokenizer, "tokenizer", tokenizer), text_encoder, emphasis)
        self.guidance = guidance

    def tokens(self, text: str) -> dict[str, Any]:
        """The templated prompt's input ids and attention mask, padded to 512 tokens (ComfyUI: bos and the
        template's tokens, unpadded)."""
        if self.comfy:
            templated = DEV_TEMPLATE.format(bos="", system=DEV_SYSTEM, prompt=self.literal(text))
            ids = [self.tokenizer.bos_token_id, *self.tokenizer(templated, add_special_tokens=False)["input_ids"]]
            return {"input_ids": torch.tensor([ids]), "attention_mask": torch.ones(1, len(ids), dtype=torch.long)}
        prompt = self.literal(text).replace("[IMG]", "")
        templated = DEV_TEMPLATE.format(bos=self.tokenizer.bos_token, system=DEV_SYSTEM, prompt=prompt)
        return self.tokenizer(templated, add_special_tokens=False, padding="max_length", truncation=True,
                              max_length=LENGTH, return_tensors="pt")

    def states(self, text: str) -> torch.Tensor:
        """[1, 512, 3 * dim] (ComfyUI: the unpadded states with zeros in front up to 512 tokens)."""
        states = super().states(text)
        if self.comfy and states.shape[1] < LENGTH:
            states = torch.nn.functional.pad(states, (0, 0, LENGTH - states.shape[1], 0))
        return states

    @torch.no_grad()
    def encode(self, text: str) -> Conditioning:
        if text not in self.cache:
            guidance = torch.tensor([self.guidance], dtype=torch.float32)
            self.cache[text] = Conditioning(self.states(text), {"guidance": guidance})
        return self.cache[text]
