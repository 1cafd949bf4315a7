"""Qwen-Image prompt encoding as diffusers' QwenImagePipeline._get_qwen_prompt_embeds and ComfyUI
(comfy/text_encoders/qwen_image.py) compute it:

the prompt goes into Qwen2.5-VL's chat template after a fixed system turn ("Describe the image by detailing the
color, shape, ..."), with the assistant's turn opened; the text encoder's last hidden states are taken and the
template's leading tokens (the system turn and "<|im_start|>user\\n": 34 with the real tokenizer, diffusers'
prompt_template_encode_start_idx; ComfyUI finds the same place by token ids) are dropped. The rest (the prompt,
"<|im_end|>\\n<|im_start|>assistant\\n") is the caption; one prompt is not padded. The drop is counted here as the
template prefix's own token count, which is 34 with the real tokenizer and right for sdcli's tiny one too.
Prompts are read literally as for Z-Image (conditioning.qwen.literal_prompt: weights other than 1 and BREAK
refused by name). --emphasis comfy (a replayed ComfyUI graph) encodes as comfy/text_encoders/qwen_image.py does
where that differs: the prompt read as ComfyUI reads it, no cut at 1024 tokens, a prompt that starts with
"<|im_start|>" (or "<|start_header_id|>") taken as the whole template, and the drop found by tokens (up to the
second "<|im_start|>", and past "user\\n" after it). Imported lazily (torch).
"""

from __future__ import annotations

from typing import Any

import torch

from sdcli.conditioning.qwen import QwenPromptEncoder

SYSTEM = ("Describe the image by detailing the color, shape, size, texture, quantity, text, spatial relationships "
          "of the objects and background:")
PREFIX = f"<|im_start|>system\n{SYSTEM}<|im_end|>\n<|im_start|>user\n"
TEMPLATE = PREFIX + "{}<|im_end|>\n<|im_start|>assistant\n"
MAX_TOKENS = 1024  # diffusers' tokenizer_max_length: the caption's tokens after the drop
OWN_TEMPLATE = ("<|im_start|>", "<|start_header_id|>")  # ComfyUI: a prompt starting so is the template itself


class QwenImagePromptEncoder(QwenPromptEncoder):
    """Prompts -> Conditioning for Qwen-Image (families.base.PromptEncoder): crossattn = Qwen2.5-VL's last hidden
    states of the templated prompt after the template prefix [1, tokens, 3584]; cached per text."""

    model, encoder = "Qwen-Image", "Qwen2.5-VL"
    comfy_placement = True  # ComfyUI's rotary positions on its text path (families.qwen_rotary)

    def __init__(self, tokenizer: Any, text_encoder: Any, emphasis: str = "original"):
        super().__init__(tokenizer, text_encoder, emphasis)
        self.drop = len(self.tokenizer(PREFIX, add_special_tokens=False)["input_ids"])

    def token_ids(self, text: str) -> list[int]:
        """The templated prompt's token ids (the prefix included), cut at the pipeline's limit (ComfyUI: uncut;
        its own template kept)."""
        prompt = self.literal(text)
        own = self.comfy and prompt.startswith(OWN_TEMPLATE)
        ids = list(self.tokenizer(prompt if own else TEMPLATE.format(prompt), add_special_tokens=False)["input_ids"])
        return ids if self.comfy else ids[:MAX_TOKENS + self.drop]

    def comfy_drop(self, ids: list[int]) -> int:
        """ComfyUI's template end (QwenImageTEModel.encode_token_weights): the place of the second <|im_start|>
        (of the first when there is one; the last token when none), moved past "user\\n" when those follow it."""
        start = self.tokenizer.convert_tokens_to_ids("<|im_start|>")
        places = [i for i, t in enumerate(ids) if t == start][:2]
        end = places[-1] if places else -1
        user = list(self.tokenizer("user\n", add_special_tokens=False)["input_ids"])
        if len(ids) > end + len(user) + 1 and ids[end + 1:end + 1 + len(user)] == user:
            end += 1 + len(user)
        return end

    def states(self, text: str) -> torch.Tensor:
        token_ids = self.token_ids(text)
        drop = self.comfy_drop(token_ids) if self.comfy else self.drop
        ids = torch.tensor([token_ids], device=self.text_encoder.device)
        out = self.text_encoder(input_ids=ids, attention_mask=torch.ones_like(ids), output_hidden_states=True)
        return out.hidden_states[-1][:, drop:]
