"""Flux.2 [dev] caption upsampling (--upsample-prompt TEMPERATURE): the prompt rewritten by the text encoder itself
before it is encoded, as diffusers' Flux2Pipeline does with caption_upsample_temperature (its upsample_prompt).

What diffusers does, done the same way: BFL's text-to-image upsampling system message (diffusers' own constant, read
from diffusers) and the user's prompt ("[IMG]" taken out) in the tokenizer's chat template, padded to 2048 tokens;
Mistral Small 3 (Mistral3ForConditionalGeneration: its language model head) samples at most 512 new tokens at the
temperature; the new tokens decoded without special tokens are the prompt that gets encoded. diffusers' sampling
draws from torch's global generator: sdcli seeds it with the image's seed (torch.manual_seed, inside a forked RNG
state so nothing else moves), so image i's text is a function of its seed and replay writes it again. The user's
prompt is read as the family reads prompts (WebUI syntax, emphasis all 1); the rewritten text is encoded as written.
Imported lazily (torch).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from sdcli.conditioning.cond import Conditioning
from sdcli.conditioning.flux2 import Flux2DevPromptEncoder

TEMPLATE_TOKENS = 2048  # diffusers' upsample_prompt: the chat padded (left) / cut to this many tokens
NEW_TOKENS = 512  # diffusers' upsample_prompt: max_new_tokens


class PromptUpsampler:
    """Rewrites prompts with a pipeline's text encoder at one temperature; each (prompt, seed) written once."""

    def __init__(self, tokenizer: Any, text_encoder: Any, temperature: float):
        self.tokenizer, self.text_encoder, self.temperature = tokenizer, text_encoder, temperature
        self.texts: dict[tuple[str, int], str] = {}

    def encoder(self, encoder: Flux2DevPromptEncoder, seed: int) -> UpsampledPromptEncoder:
        """`encoder` with its prompts rewritten (families.base.PromptUpsampler), sampled with `seed`."""
        return UpsampledPromptEncoder(encoder, self, seed)

    def text(self, seed: int) -> str:
        """The first prompt rewritten with `seed` (the first pass's)."""
        return next(text for (_, at), text in self.texts.items() if at == seed)

    def __call__(self, prompt: str, seed: int) -> str:
        """`prompt` (plain text) as the text encoder rewrites it, its sampling seeded with `seed`."""
        if (prompt, seed) not in self.texts:
            self.texts[prompt, seed] = self._rewrite(prompt, seed)
        return self.texts[prompt, seed]

    @torch.no_grad()
    def _rewrite(self, prompt: str, seed: int) -> str:
        from diffusers.pipelines.flux2.system_messages import SYSTEM_MESSAGE_UPSAMPLING_T2I

        # 1. BFL's system message and the prompt as a conversation in the tokenizer's chat template.
        chat = [[{"role": "system", "content": [{"type": "text", "text": SYSTEM_MESSAGE_UPSAMPLING_T2I}]},
                 {"role": "user", "content": [{"type": "text", "text": prompt.replace("[IMG]", "")}]}]]
        inputs = self.tokenizer.apply_chat_template(
            chat, add_generation_prompt=True, tokenize=True, return_dict=True, return_tensors="pt",
            padding="max_length", truncation=True, max_length=TEMPLATE_TOKENS)
        device = self.text_encoder.device
        # 2. Sampling from torch's generator seeded with the image's seed (the global state is put back after).
        devices = [device] if device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(seed)
            generated = self.text_encoder.generate(
                input_ids=inputs["input_ids"].to(device), attention_mask=inputs["attention_mask"].to(device),
                max_new_tokens=NEW_TOKENS, do_sample=True, temperature=self.temperature, use_cache=True)
        # 3. The new tokens as text.
        text_tokenizer = getattr(self.tokenizer, "tokenizer", self.tokenizer)  # a processor's text tokenizer
        new = generated[:, inputs["input_ids"].shape[1]:]
        return str(text_tokenizer.batch_decode(new, skip_special_tokens=True)[0])


class UpsampledPromptEncoder:
    """A Flux.2 [dev] PromptEncoder (families.base.PromptEncoder) whose prompts are rewritten before they are
    encoded: the prompt read as `encoder` reads it, rewritten by `upsampler` with `seed`, then encoded as written
    (no WebUI syntax in the rewrite); the negative prompt is encoded by `encoder` as it is (diffusers has none)."""

    def __init__(self, encoder: Flux2DevPromptEncoder, upsampler: PromptUpsampler, seed: int):
        self.encoder, self.upsampler, self.seed = encoder, upsampler, seed
        self.capabilities = encoder.capabilities
        self.written = Flux2DevPromptEncoder(encoder.tokenizer, encoder.text_encoder, "none", encoder.guidance)
        self.rewritten: list[str] = []  # the texts encoded, in order (the infotext's `Upsampled prompt`)

    def encode(self, text: str) -> Conditioning:
        rewritten = self.upsampler(self.encoder.literal(text), self.seed)
        if rewritten not in self.rewritten:
            self.rewritten.append(rewritten)
        return self.written.encode(rewritten)

    def negative_encoder(self, all_empty: bool) -> Callable[[str], Conditioning]:
        return self.encoder.negative_encoder(all_empty)

    def pipeline_embeds(self, prompt: str, negative: str) -> dict[str, Any]:
        return {"prompt_embeds": self.encode(prompt).crossattn,
                "negative_prompt_embeds": self.encoder.encode(negative).crossattn}
