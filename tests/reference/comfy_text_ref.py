"""ComfyUI's CLIP text path (comfy/sd1_clip.py, as of 2025), transcribed for the parity tests.

SDTokenizer.tokenize_with_weights (token_weights / parse_parentheses / escape_important, each weighted segment
tokenized whole, a segment of fewer than 8 tokens moved whole to the next 77-token batch, start/end/pad tokens)
and ClipTokenWeightEncoder.encode_token_weights (every section plus gen_empty_tokens encoded in ONE batch; a token
of weight w != 1 becomes (z - z_empty) * w + z_empty). Written from ComfyUI's code, not from sdcli: imports no sdcli.
The encoder is a transformers CLIPTextModel; `layer_idx` as CLIPSetLastLayer sets it (-2: hidden state -2 through
the final LayerNorm, SD1's layer_norm_hidden_state).
"""

from __future__ import annotations

import torch

MAX_LENGTH, MAX_WORD_LENGTH = 77, 8


def parse_parentheses(string):
    result, current, level = [], "", 0
    for char in string:
        if char == "(":
            if level == 0:
                if current:
                    result.append(current)
                current = "("
            else:
                current += char
            level += 1
        elif char == ")":
            level -= 1
            if level == 0:
                result.append(current + ")")
                current = ""
            else:
                current += char
        else:
            current += char
    if current:
        result.append(current)
    return result


def token_weights(string, current_weight):
    out = []
    for x in parse_parentheses(string):
        weight = current_weight
        if len(x) >= 2 and x[-1] == ")" and x[0] == "(":
            x = x[1:-1]
            colon = x.rfind(":")
            weight *= 1.1
            if colon > 0:
                try:
                    weight = float(x[colon + 1:])
                    x = x[:colon]
                except ValueError:
                    pass
            out += token_weights(x, weight)
        else:
            out += [(x, current_weight)]
    return out


def tokenize_with_weights(tokenizer, text, pad_token=None):
    """[[(token, weight)] x 77] batches; `pad_token`: None pads with the end token (SD1's pad_with_end)."""
    empty = tokenizer("")["input_ids"]
    start, end = empty[0], empty[1]
    pad = end if pad_token is None else pad_token
    text = text.replace("\\)", "\0\1").replace("\\(", "\0\2")
    tokens = []
    for segment, weight in token_weights(text, 1.0):
        segment = segment.replace("\0\1", ")").replace("\0\2", "(")
        if segment == "":
            continue
        tokens.append([(t, weight) for t in tokenizer(segment)["input_ids"][1:-1]])
    batch = [(start, 1.0)]
    batched = [batch]
    for group in tokens:
        is_large = len(group) >= MAX_WORD_LENGTH
        while len(group) > 0:
            if len(group) + len(batch) > MAX_LENGTH - 1:
                remaining = MAX_LENGTH - len(batch) - 1
                if is_large:
                    batch.extend(group[:remaining])
                    batch.append((end, 1.0))
                    group = group[remaining:]
                else:
                    batch.append((end, 1.0))
                    batch.extend([(pad, 1.0)] * remaining)
                batch = [(start, 1.0)]
                batched.append(batch)
            else:
                batch.extend(group)
                group = []
    batch.append((end, 1.0))
    batch.extend([(pad, 1.0)] * (MAX_LENGTH - len(batch)))
    return batched


@torch.no_grad()
def encode_token_weights(text_encoder, batches, start, end, pad, layer_idx=None, norm=True):
    """[1, 77 x sections, dim], ComfyUI's way (see the module doc); `norm`: layer_norm_hidden_state (SD1 yes,
    SDXL's CLIP-L and bigG no). SDXL's pooled vector is read by sdxl_text_encode."""
    to_encode = [[t for t, _ in section] for section in batches]
    has_weights = any(w != 1.0 for section in batches for _, w in section)
    if has_weights:
        length = max(len(t) for t in to_encode)
        to_encode.append([start, end] + [pad] * (length - 2))
    out = text_encoder(torch.tensor(to_encode), output_hidden_states=True, return_dict=True)
    if layer_idx is None:
        z = out.last_hidden_state.float()
    else:
        z = out.hidden_states[layer_idx]
        z = (text_encoder.text_model.final_layer_norm(z) if norm else z).float()
    output = []
    for k, section in enumerate(batches):
        zk = z[k:k + 1].clone()
        if has_weights:
            z_empty = z[-1]
            for j, (_, weight) in enumerate(section):
                if weight != 1.0:
                    zk[0][j] = (zk[0][j] - z_empty[j]) * weight + z_empty[j]
        output.append(zk)
    return torch.cat(output, dim=-2)


def clip_text_encode(tokenizer, text_encoder, text, layer_idx=None):
    """CLIPTextEncode on an SD1 checkpoint's CLIP: the conditioning tensor."""
    empty = tokenizer("")["input_ids"]
    return encode_token_weights(text_encoder, tokenize_with_weights(tokenizer, text), empty[0], empty[1], empty[1],
                                layer_idx)


def sdxl_text_encode(pipe, text):
    """CLIPTextEncode on an SDXL checkpoint (comfy/sdxl_clip.py): CLIP-L and bigG at layer -2 without the final
    LayerNorm, bigG padded with 0, "!" (pad_with_end False), joined on the last axis; bigG's first-section pooled."""
    l_empty, g_empty = pipe.tokenizer("")["input_ids"], pipe.tokenizer_2("")["input_ids"]
    l_out = encode_token_weights(pipe.text_encoder, tokenize_with_weights(pipe.tokenizer, text), l_empty[0],
                                 l_empty[1], l_empty[1], -2, norm=False)
    pad = pipe.tokenizer_2.convert_tokens_to_ids("!")  # ComfyUI's pad id 0 is "!" in CLIP's real vocabulary
    g_batches = tokenize_with_weights(pipe.tokenizer_2, text, pad_token=pad)
    g_out = encode_token_weights(pipe.text_encoder_2, g_batches, g_empty[0], g_empty[1], pad, -2, norm=False)
    with torch.no_grad():
        pooled = pipe.text_encoder_2(torch.tensor([[t for t, _ in g_batches[0]]])).text_embeds
    cut = min(l_out.shape[1], g_out.shape[1])
    return torch.cat([l_out[:, :cut], g_out[:, :cut]], dim=-1), pooled


def t5_tokenize_with_weights(tokenizer, text, min_length=256):
    """comfy/text_encoders/flux.py T5XXLTokenizer (SDTokenizer without a start token, one batch as long as the
    prompt, the end token, then padding with 0 to min_length: 256 for Flux, 77 for SD3)."""
    text = text.replace("\\)", "\0\1").replace("\\(", "\0\2")
    batch = []
    for segment, weight in token_weights(text, 1.0):
        segment = segment.replace("\0\1", ")").replace("\0\2", "(")
        if segment:
            batch.extend((t, weight) for t in tokenizer(segment)["input_ids"][:-1])
    batch.append((1, 1.0))
    batch.extend([(0, 1.0)] * (min_length - len(batch)))
    return [batch]


@torch.no_grad()
def t5_encode(tokenizer, t5, text, min_length=256):
    """T5XXLModel.encode_token_weights (special tokens end 1, pad 0; the empty tokens 1, 0, 0, ...)."""
    batches = t5_tokenize_with_weights(tokenizer, text, min_length)
    to_encode = [[t for t, _ in batches[0]]]
    weighted = any(w != 1.0 for _, w in batches[0])
    if weighted:
        to_encode.append([1] + [0] * (len(to_encode[0]) - 1))
    z = t5(torch.tensor(to_encode)).last_hidden_state.float()
    out = z[0:1].clone()
    if weighted:
        for j, (_, weight) in enumerate(batches[0]):
            if weight != 1.0:
                out[0][j] = (out[0][j] - z[-1][j]) * weight + z[-1][j]
    return out


@torch.no_grad()
def flux_text_encode(pipe, text):
    """FluxClipModel.encode_token_weights: T5's states and CLIP-L's unprojected pooled output of its first batch
    (return_projected_pooled False)."""
    first = [t for t, _ in tokenize_with_weights(pipe.tokenizer, text)[0]]
    pooled = pipe.text_encoder(torch.tensor([first])).pooler_output.float()
    return t5_encode(pipe.tokenizer_2, pipe.text_encoder_2, text), pooled


@torch.no_grad()
def sd3_text_encode(pipe, text):
    """SD3ClipModel.encode_token_weights (comfy/text_encoders/sd3_clip.py): CLIP-L and bigG at layer -2 without the
    final LayerNorm (bigG padded with 0, "!"), joined and zero-padded to T5's width, then T5's states (padded to 77
    tokens) along the token axis; pooled = [CLIP-L's unprojected pooled output, bigG's projected one]."""
    l_empty, g_empty = pipe.tokenizer("")["input_ids"], pipe.tokenizer_2("")["input_ids"]
    l_batches = tokenize_with_weights(pipe.tokenizer, text)
    l_out = encode_token_weights(pipe.text_encoder, l_batches, l_empty[0], l_empty[1], l_empty[1], -2, norm=False)
    pad = pipe.tokenizer_2.convert_tokens_to_ids("!")
    g_batches = tokenize_with_weights(pipe.tokenizer_2, text, pad_token=pad)
    g_out = encode_token_weights(pipe.text_encoder_2, g_batches, g_empty[0], g_empty[1], pad, -2, norm=False)
    l_first = torch.tensor([[t for t, _ in l_batches[0]]])
    l_last = pipe.text_encoder(l_first).last_hidden_state
    l_pooled = l_last[0:1, int((l_first[0] == l_empty[1]).int().argmax())]
    g_pooled = pipe.text_encoder_2(torch.tensor([[t for t, _ in g_batches[0]]])).text_embeds
    t5 = t5_encode(pipe.tokenizer_3, pipe.text_encoder_3, text, min_length=77)
    cut = min(l_out.shape[1], g_out.shape[1])
    lg = torch.cat([l_out[:, :cut], g_out[:, :cut]], dim=-1)
    lg = torch.nn.functional.pad(lg, (0, t5.shape[-1] - lg.shape[-1]))
    return torch.cat([lg, t5], dim=-2), torch.cat([l_pooled, g_pooled], dim=-1)
