"""Forge's Flux.1 conditioning and latent format, transcribed for the parity tests (see forge_flux_ref.py).

Written from lllyasviel/stable-diffusion-webui-forge (commit dfdcbab, June 2025):
backend/text_processing/{t5_engine,classic_engine,parsing,emphasis}.py, backend/diffusion_engine/flux.py,
modules/prompt_parser.py, huggingface_guess/latent.py (Flux latent format) and backend/nn/vae.py. The
"model" is transformers' T5EncoderModel / CLIPTextModel with their tokenizers and a diffusers AutoencoderKL.
Flux Fill is not in Forge; its extra input follows diffusers' FluxFillPipeline. Imports nothing from sdcli.
"""

from __future__ import annotations

import torch

from tests.reference.webui_ref import (
    emphasis_after_transformers,
    get_learned_conditioning_prompt_schedules,
    get_multicond_prompt_list,
)
from tests.reference.webui_ref import parse_prompt_attention as webui_parse_prompt_attention

# ---------------------------------------------------------------- backend/text_processing/parsing.py


def parse_prompt_attention(text, emphasis="Original"):
    """parsing.parse_prompt_attention: the WebUI's grammar; emphasis "None" takes the text literally."""
    if emphasis == "None":
        return [[text, 1.0]]
    return webui_parse_prompt_attention(text)


class PromptChunk:
    def __init__(self):
        self.tokens, self.multipliers = [], []


# ---------------------------------------------------------------- backend/text_processing/t5_engine.py


class T5Engine:
    """T5TextProcessingEngine: no 75-token chunks; one sequence per BREAK part, end token 1, padded (id 0)
    to at least 256; no attention mask; emphasis applied to the encoder output."""

    def __init__(self, encoder, tokenizer, emphasis="Original", min_length=256):
        self.encoder, self.tokenizer, self.emphasis, self.min_length = encoder, tokenizer, emphasis, min_length
        self.id_end, self.id_pad = 1, 0

    def tokenize(self, texts):
        return self.tokenizer(texts, truncation=False, add_special_tokens=False)["input_ids"]

    def tokenize_line(self, line):
        """T5TextProcessingEngine.tokenize_line: each parsed fragment tokenized on its own."""
        parsed = parse_prompt_attention(line, self.emphasis)
        tokenized = self.tokenize([text for text, _ in parsed])
        chunks, chunk, token_count = [], PromptChunk(), 0

        def next_chunk():
            nonlocal chunk, token_count
            chunk.tokens = chunk.tokens + [self.id_end]
            chunk.multipliers = chunk.multipliers + [1.0]
            token_count += len(chunk.tokens)
            remaining = self.min_length - len(chunk.tokens)
            if remaining > 0:
                chunk.tokens += [self.id_pad] * remaining
                chunk.multipliers += [1.0] * remaining
            chunks.append(chunk)
            chunk = PromptChunk()

        for tokens, (text, weight) in zip(tokenized, parsed, strict=True):
            if text == "BREAK" and weight == -1:
                next_chunk()
                continue
            for token in tokens:
                chunk.tokens.append(token)
                chunk.multipliers.append(weight)
        if chunk.tokens or not chunks:
            next_chunk()
        return chunks, token_count

    def __call__(self, texts):
        """T5TextProcessingEngine.__call__: every chunk of every line, stacked along the batch dimension."""
        zs, cache = [], {}
        for line in texts:
            if line not in cache:
                chunks, _ = self.tokenize_line(line)
                longest = max(len(c.tokens) for c in chunks)
                values = []
                for c in chunks:
                    tokens = c.tokens + [self.id_pad] * (longest - len(c.tokens))
                    multipliers = c.multipliers + [1.0] * (longest - len(c.multipliers))
                    values.append(self.process_tokens([tokens], [multipliers])[0])
                cache[line] = values
            zs.extend(cache[line])
        return torch.stack(zs)

    def process_tokens(self, batch_tokens, batch_multipliers):
        z = self.encoder(input_ids=torch.asarray(batch_tokens)).last_hidden_state
        return emphasis_after_transformers(self.emphasis, z, torch.asarray(batch_multipliers).to(z))


# ---------------------------------------------------------------- backend/text_processing/classic_engine.py


class ClipLPooled:
    """ClassicTextProcessingEngine with return_pooled=True as Flux builds it: Flux uses only the pooled
    output (pooler_output, the final layer's end token, before emphasis) of each line's FIRST 75-token chunk."""

    def __init__(self, encoder, tokenizer, emphasis="Original", chunk_length=75):
        self.encoder, self.tokenizer, self.emphasis, self.chunk_length = encoder, tokenizer, emphasis, chunk_length
        self.id_start, self.id_end = tokenizer.bos_token_id, tokenizer.eos_token_id
        self.id_pad = tokenizer.pad_token_id
        self.comma_token = tokenizer.get_vocab().get(",</w>", None)

    def tokenize_line(self, line):
        """ClassicTextProcessingEngine.tokenize_line (no textual-inversion embeddings)."""
        parsed = parse_prompt_attention(line, self.emphasis)
        texts = [text for text, _ in parsed]
        tokenized = self.tokenizer(texts, truncation=False, add_special_tokens=False)["input_ids"]
        chunks, chunk, last_comma = [], PromptChunk(), -1

        def next_chunk():
            nonlocal chunk, last_comma
            to_add = self.chunk_length - len(chunk.tokens)
            if to_add > 0:
                chunk.tokens += [self.id_end] * to_add
                chunk.multipliers += [1.0] * to_add
            chunk.tokens = [self.id_start] + chunk.tokens + [self.id_end]
            chunk.multipliers = [1.0] + chunk.multipliers + [1.0]
            last_comma = -1
            chunks.append(chunk)
            chunk = PromptChunk()

        for tokens, (text, weight) in zip(tokenized, parsed, strict=True):
            if text == "BREAK" and weight == -1:
                next_chunk()
                continue
            for token in tokens:
                if token == self.comma_token:
                    last_comma = len(chunk.tokens)
                elif (len(chunk.tokens) == self.chunk_length and last_comma != -1
                      and len(chunk.tokens) - last_comma <= 20):
                    reloc_tokens, reloc_mults = chunk.tokens[last_comma + 1:], chunk.multipliers[last_comma + 1:]
                    chunk.tokens, chunk.multipliers = chunk.tokens[:last_comma + 1], chunk.multipliers[:last_comma + 1]
                    next_chunk()
                    chunk.tokens, chunk.multipliers = reloc_tokens, reloc_mults
                if len(chunk.tokens) == self.chunk_length:
                    next_chunk()
                chunk.tokens.append(token)
                chunk.multipliers.append(weight)
        if chunk.tokens or not chunks:
            next_chunk()
        return chunks

    def __call__(self, texts):
        """The pooled vectors [len(texts), 768] (zs[0].pooled): the batch of every line's first chunk."""
        tokens = [self.tokenize_line(line)[0].tokens for line in texts]
        batch = torch.asarray(tokens)
        if self.id_end != self.id_pad:  # process_tokens: after the first end token, pad
            for row, line_tokens in enumerate(tokens):
                batch[row, line_tokens.index(self.id_end) + 1:] = self.id_pad
        return self.encoder(batch, output_hidden_states=True).pooler_output


# ---------------------------------------------------------------- backend/diffusion_engine/flux.py


class FluxConditioner:
    """Flux.get_learned_conditioning: crossattn = T5, vector = CLIP-L pooled, guidance = distilled CFG
    (only for models with a guidance embedder, i.e. dev; `or 3.5` turns 0 into 3.5)."""

    def __init__(self, t5, t5_tokenizer, clip, clip_tokenizer, guidance_embeds, distilled_cfg=3.5,
                 emphasis="Original"):
        self.t5 = T5Engine(t5, t5_tokenizer, emphasis)
        self.clip = ClipLPooled(clip, clip_tokenizer, emphasis)
        self.guidance_embeds, self.distilled_cfg = guidance_embeds, distilled_cfg

    def __call__(self, texts):
        cond = {"crossattn": self.t5(texts), "vector": self.clip(texts)}
        if self.guidance_embeds:
            cond["guidance"] = torch.FloatTensor([self.distilled_cfg or 3.5] * len(texts))
        return cond


# ---------------------------------------------------------------- modules/prompt_parser.py with dict conds


def get_learned_conditioning(model, prompts, steps):
    """[[(end_at_step, {crossattn, vector, guidance})]] per prompt; row i of each key for schedule entry i
    (with BREAK, T5 rows are chunks, so entry i gets row i of the stacked chunks, as in Forge)."""
    res, cache = [], {}
    for prompt, schedule in zip(prompts, get_learned_conditioning_prompt_schedules(prompts, steps), strict=True):
        if prompt not in cache:
            conds = model([text for _, text in schedule])
            cache[prompt] = [(end_at, {k: v[i] for k, v in conds.items()}) for i, (end_at, _) in enumerate(schedule)]
        res.append(cache[prompt])
    return res


def get_multicond_learned_conditioning(model, prompts, steps):
    """[[(schedules, weight)] per AND part] per prompt."""
    res_indexes, flat, _ = get_multicond_prompt_list(prompts)
    learned = get_learned_conditioning(model, flat, steps)
    return [[(learned[i], weight) for i, weight in indexes] for indexes in res_indexes]


def _at_step(schedule, step):
    for end_at, cond in schedule:
        if step <= end_at:
            return cond
    return schedule[0][1]


def stack_conds(tensors):
    """prompt_parser.stack_conds: shorter sequences padded with their last vector."""
    if all(t.shape == tensors[0].shape for t in tensors):
        return torch.stack(tensors)
    longest = max(t.shape[0] for t in tensors)
    return torch.stack([torch.vstack([t, t[-1:].repeat([longest - t.shape[0]] + [1] * (t.ndim - 1))])
                        if t.shape[0] != longest else t for t in tensors])


def reconstruct_cond_batch(c, step):
    """prompt_parser.reconstruct_cond_batch (all rows of one key must share a shape)."""
    conds = [_at_step(schedule, step) for schedule in c]
    return {k: torch.stack([cond[k] for cond in conds]) for k in conds[0]}


def reconstruct_multicond_batch(c, step):
    """prompt_parser.reconstruct_multicond_batch: (conds_list [[(row, weight)]], stacked dict)."""
    tensors, conds_list = [], []
    for parts in c:
        conds_list.append([])
        for schedules, weight in parts:
            conds_list[-1].append((len(tensors), weight))
            tensors.append(_at_step(schedules, step))
    return conds_list, {k: stack_conds([t[k] for t in tensors]) for k in tensors[0]}


# ---------------------------------------------------------------- latent format and VAE (huggingface_guess/latent.py)

SCALE_FACTOR, SHIFT_FACTOR = 0.3611, 0.1159  # from the VAE config in Forge (backend/nn/vae.py), same numbers


def process_in(latent):
    return (latent - SHIFT_FACTOR) * SCALE_FACTOR


def process_out(latent):
    return latent / SCALE_FACTOR + SHIFT_FACTOR


def encode_first_stage(vae, image01, generator=None):
    """Flux.encode_first_stage -> VAE.encode: pixels 2x-1, posterior.sample() (Forge draws from the GLOBAL torch
    RNG, std = exp(0.5 * clamp(logvar, -30, 20))), then process_in; one image at a time (images_tensor_to_samples)."""
    out = []
    for img in image01:
        dist = vae.encode(2.0 * img[None] - 1.0).latent_dist
        std = torch.exp(0.5 * torch.clamp(dist.logvar, -30.0, 20.0))
        out.append(process_in(dist.mean + std * torch.randn(dist.mean.shape, generator=generator))[0])
    return torch.stack(out)


def decode_first_stage(vae, latent):
    """Flux.decode_first_stage -> VAE.decode: process_out, decode, clamp((x + 1) / 2, 0, 1); returns [0, 1]."""
    return torch.clamp((vae.decode(process_out(latent)).sample.float() + 1.0) / 2.0, min=0.0, max=1.0)


# ---------------------------------------------------------------- Flux Fill (not in Forge): diffusers' FluxFillPipeline


def fill_concat(masked_image_latent, mask):
    """The 80 extra channels of Flux Fill at latent resolution (16 latent + 80 = 96 channels, packed 2x2 -> 384):
    the processed (process_in) latent of image * (1 - mask) with the image in [-1, 1] (masked pixels = 0), then
    the binarized full-resolution mask folded 8x8 into 64 channels (channel = 8 * dy + dx).
    Packed Forge's way ((c ph pw) per token) this is diffusers' cat(latents, masked_image_latents, mask) on dim 2."""
    b, _, h, w = masked_image_latent.shape
    m = (mask[:, 0] > 0.5).to(masked_image_latent.dtype)  # VaeImageProcessor(do_binarize=True): 1 = repaint
    m = m.view(b, h, 8, w, 8).permute(0, 2, 4, 1, 3).reshape(b, 64, h, w)
    return torch.cat([masked_image_latent, m], dim=1)

