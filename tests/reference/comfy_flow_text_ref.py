"""ComfyUI's text paths for the newer flow families, transcribed for the parity tests (ComfyUI master, late 2026);
imports nothing from sdcli. Token ids are named by their text (the tiny tokenizers number them differently):

- comfy/sd1_clip.py SDTokenizer.tokenize_with_weights: escape_important / unescape_important (`\\(` `\\)` -> `(`
  `)`), weights disabled for the LLM tokenizers (the whole text one segment, brackets as text); the tokenizer's
  own ids (no end token), after the start token when there is one; padded with the pad token to min_length, on
  the left when pad_left.
- SDClipModel.process_tokens: the attention mask (1 up to the first token equal to the end token, or, without an
  end token, to the pad token, which is masked too; leading pad tokens masked when padded on the left);
  forward with that mask when enable_attention_masks.
- comfy/text_encoders/llama.py: a list of layers collects the input of layer i (transformers' hidden_states[i]);
  a negative layer index -k the output of layer n - k (hidden_states[n - k + 1]); "last" the normed output.
- comfy/text_encoders/z_image.py ZImageTokenizer / Qwen3_4BModel: "<|im_start|>user\\n{}<|im_end|>\\n
  <|im_start|>assistant\\n", no start token, min_length 1, pad <|endoftext|>, layer -2, mask on.
- comfy/text_encoders/flux.py KleinTokenizer / Qwen3_4BModel: "...assistant\\n<think>\\n\\n</think>\\n\\n",
  min_length 512, pad <|endoftext|> on the right, layers [9, 18, 27], mask on; Flux2TEModel lays the three side
  by side per token. Flux2Tokenizer / Mistral3Tokenizer / Mistral3_24BModel: "[SYSTEM_PROMPT]{BFL's system
  message}[/SYSTEM_PROMPT][INST]{}[/INST]" after the start token (bos), min_length 1 (unpadded), pad on the left,
  the model's pad id 0 for the mask, layers [10, 20, 30], mask on.
- comfy/model_base.py Flux2.extra_conds: cross_attn shorter than 512 tokens gets zeros IN FRONT up to 512.
- comfy/text_encoders/qwen_image.py QwenImageTokenizer / QwenImageTEModel: the system turn template (a prompt
  starting with "<|im_start|>" or "<|start_header_id|>" is used as the whole template), min_length 1, layer
  "last"; the output cut at template_end: the place of the second <|im_start|> (the first when only one), moved
  past the "user" and "\\n" tokens when those follow it; the mask (all ones) dropped.
- comfy/supported_models.py Chroma -> comfy/text_encoders/pixart_t5.py: the T5 tokenizer with weights
  (comfy_text_ref's grammar), the end token, min_length 1 (no padding); T5 without a mask; a weighted token moved
  from the states of as many PAD tokens (gen_empty_tokens without the end token); comfy/ldm/chroma/model.py
  attends every text token (no text mask).
"""

from __future__ import annotations

import torch

from tests.reference import comfy_text_ref

ZIMAGE_TEMPLATE = "<|im_start|>user\n{}<|im_end|>\n<|im_start|>assistant\n"
KLEIN_TEMPLATE = "<|im_start|>user\n{}<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n"
MISTRAL_TEMPLATE = ("[SYSTEM_PROMPT]You are an AI that reasons about image descriptions. You give structured "
                    "responses focusing on object relationships, object\nattribution and actions without "
                    "speculation.[/SYSTEM_PROMPT][INST]{}[/INST]")
QWEN_IMAGE_TEMPLATE = ("<|im_start|>system\nDescribe the image by detailing the color, shape, size, texture, "
                       "quantity, text, spatial relationships of the objects and background:<|im_end|>\n"
                       "<|im_start|>user\n{}<|im_end|>\n<|im_start|>assistant\n")
FLUX2_TEXT_LENGTH = 512


def unweighted(text):
    """escape_important then unescape_important: the escapes resolved, nothing else."""
    text = text.replace("\\)", "\0\1").replace("\\(", "\0\2")
    return text.replace("\0\1", ")").replace("\0\2", "(")


def tokenize(tokenizer, text, start=None, pad=None, min_length=1, pad_left=False):
    """SDTokenizer with weights disabled, no end token: one batch of ids."""
    batch = [] if start is None else [start]
    batch += list(tokenizer(unweighted(text), add_special_tokens=False)["input_ids"])
    fill = [pad] * max(min_length - len(batch), 0)
    return fill + batch if pad_left else batch + fill


def attention_mask(ids, pad):
    """process_tokens without an end token: 0 from the first pad token on, and on leading pad tokens."""
    mask, eos, left = [], False, False
    for index, token in enumerate(ids):
        if index == 0 and token == pad:
            left = True
        if eos or (left and token == pad):
            mask.append(0)
        else:
            mask.append(1)
            left = False
        if not eos and token == pad and not left:
            mask[-1] = 0
            eos = True
    return mask


@torch.no_grad()
def hidden(text_encoder, ids, mask):
    t = torch.tensor([ids])
    return text_encoder(input_ids=t, attention_mask=torch.tensor([mask]), output_hidden_states=True).hidden_states


def side_by_side(states, layers):
    """Flux2TEModel: [1, L, len(layers) * D], per token layer after layer."""
    stacked = torch.stack([states[i] for i in layers], dim=1).movedim(1, 2)
    return stacked.reshape(stacked.shape[0], stacked.shape[1], -1).float()


def zimage_encode(tokenizer, text_encoder, prompt):
    """CLIPTextEncode on a Z-Image graph: [1, tokens, dim]."""
    pad = tokenizer.convert_tokens_to_ids("<|endoftext|>")
    ids = tokenize(tokenizer, ZIMAGE_TEMPLATE.format(prompt), pad=pad)
    states = hidden(text_encoder, ids, attention_mask(ids, pad))
    layers = len(states) - 1
    return states[layers - 2 + 1].float()  # layer -2's output


def klein_encode(tokenizer, text_encoder, prompt):
    """CLIPTextEncode on a Flux.2 klein graph, as the model takes it: [1, max(512, tokens), 3 * dim]."""
    pad = tokenizer.convert_tokens_to_ids("<|endoftext|>")
    ids = tokenize(tokenizer, KLEIN_TEMPLATE.format(prompt), pad=pad, min_length=512)
    return flux2_pad(side_by_side(hidden(text_encoder, ids, attention_mask(ids, pad)), (9, 18, 27)))


def flux2_dev_encode(tokenizer, text_encoder, prompt):
    """CLIPTextEncode on a Flux.2 dev graph (Mistral Small 3), as the model takes it: [1, 512, 3 * dim]."""
    tokenizer = getattr(tokenizer, "tokenizer", tokenizer)  # diffusers' PixtralProcessor holds the text tokenizer
    ids = tokenize(tokenizer, MISTRAL_TEMPLATE.format(prompt), start=tokenizer.bos_token_id,
                   pad=tokenizer.convert_tokens_to_ids("<pad>"), pad_left=True)
    return flux2_pad(side_by_side(hidden(text_encoder, ids, attention_mask(ids, 0)), (10, 20, 30)))


def flux2_pad(cross_attn):
    """model_base.Flux2.extra_conds: zeros in front up to 512 tokens."""
    if cross_attn.shape[1] < FLUX2_TEXT_LENGTH:
        cross_attn = torch.nn.functional.pad(cross_attn, (0, 0, FLUX2_TEXT_LENGTH - cross_attn.shape[1], 0))
    return cross_attn


def qwen_image_encode(tokenizer, text_encoder, prompt):
    """CLIPTextEncode on a Qwen-Image graph: [1, tokens after the template's start, dim]."""
    own = prompt.startswith("<|im_start|>") or prompt.startswith("<|start_header_id|>")
    pad = tokenizer.convert_tokens_to_ids("<|endoftext|>")
    ids = tokenize(tokenizer, prompt if own else QWEN_IMAGE_TEMPLATE.format(prompt), pad=pad)
    out = hidden(text_encoder, ids, attention_mask(ids, pad))[-1]
    im_start = tokenizer.convert_tokens_to_ids("<|im_start|>")
    template_end, count = -1, 0
    for i, token in enumerate(ids):
        if token == im_start and count < 2:
            template_end, count = i, count + 1
    user = list(tokenizer("user", add_special_tokens=False)["input_ids"])
    newline = list(tokenizer("\n", add_special_tokens=False)["input_ids"])
    after = user + newline  # the real vocabulary's 872, 198
    if out.shape[1] > template_end + len(after) + 1 and ids[template_end + 1:template_end + 1 + len(after)] == after:
        template_end += len(after) + 1
    return out[:, template_end:].float()


@torch.no_grad()
def chroma_encode(tokenizer, t5, prompt):
    """CLIPTextEncode on a Chroma graph: T5 states [1, tokens + 1, dim] (no mask for the transformer)."""
    batch = comfy_text_ref.t5_tokenize_with_weights(tokenizer, prompt, min_length=1)[0]
    to_encode = [[t for t, _ in batch]]
    weighted = any(w != 1.0 for _, w in batch)
    if weighted:
        to_encode.append([0] * len(to_encode[0]))
    z = t5(torch.tensor(to_encode)).last_hidden_state.float()
    out = z[0:1].clone()
    if weighted:
        for j, (_, weight) in enumerate(batch):
            if weight != 1.0:
                out[0][j] = (out[0][j] - z[-1][j]) * weight + z[-1][j]
    return out
