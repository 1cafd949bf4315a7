"""An independent transcription of ComfyUI's Flux.2 [klein] path (ComfyUI master, 2026), run on diffusers' modules.

Facts transcribed (paths in comfyanonymous/ComfyUI):
- comfy/supported_models.py Flux2(Flux): sampling_settings {"shift": 2.02}, latent format Flux2 (128 channels,
  16x down-scaling: the VAE's latent patchified 2x2 and batch-normalised with the VAE's running statistics, done
  by the VAE; here as diffusers' Flux2KleinPipeline does it); model type FLUX -> ModelSamplingFlux + CONST.
- comfy/model_sampling.py ModelSamplingFlux: sigmas = e^mu / (e^mu + (1/t - 1)) at t = (1..10000)/10000, mu =
  shift; timestep(sigma) = sigma. CONST: denoised = x - output * sigma, noise_scaling sigma * noise +
  (1 - sigma) * latent.
- comfy/model_base.py Flux2: cross_attn padded (at the front, with zeros) to 512 tokens when shorter; Klein's
  tokenizer already pads to 512 (min_length 512, pad token <|endoftext|>), so it is a no-op here.
- comfy/text_encoders/flux.py KleinTokenizer: "<|im_start|>user\\n{}<|im_end|>\\n<|im_start|>assistant\\n"
  "<think>\\n\\n</think>\\n\\n", weights disabled; Qwen3_4BModel layers [9, 18, 27] with the attention mask;
  Flux2TEModel stacks the three and interleaves them per token ([B, L, 3 * D]).
- comfy/ldm/flux: the image tokens are the latent cells with ids (0, row, col, 0), text ids (0, 0, 0, i);
  timestep = sigma (scaled by 1000 inside the network); Klein has no guidance input.
- comfy/samplers.py simple_scheduler / karras / beta; cfg_function: at cond_scale 1 the uncond is skipped.
- comfy/sample.py prepare_noise: torch.manual_seed(seed), randn of the whole batch latent on CPU.
- comfy_extras/nodes_flux.py Flux2Scheduler(steps, width, height): seq_len = width * height / (16 * 16), rounded;
  mu = compute_empirical_mu(seq_len, steps) (BFL's fit: two lines in seq_len at 10 and 200 steps, interpolated
  linearly in the step count; the 200-step line alone above 4300 tokens); t = linspace(1, 0, steps + 1) and sigma
  = generalized_time_snr_shift(t, mu, 1) = e^mu / (e^mu + (1/t - 1)^1). ComfyUI's Flux.2 templates sample with it
  (SamplerCustomAdvanced), as the "Flux2" schedule here.
Flux.2 [dev]: the network as above with its guidance embedding fed the guidance (ComfyUI's FluxGuidance; diffusers'
Flux2Pipeline guidance_scale), the text as diffusers' Flux2Pipeline._get_mistral_3_small_prompt_embeds computes it
(encode_dev: the messages of format_input through the tokenizer's chat template, padded to 512, hidden states
10, 20, 30 stacked); ComfyUI's own Mistral path (comfy/text_encoders/flux.py Flux2Tokenizer) pads differently
(unpadded, then zeros in front) and is not the one sdcli follows for dev.
Imports nothing from sdcli.
"""

from __future__ import annotations

import math

import numpy
import scipy.stats
import torch

from tests.reference import zimage_ref as Z
from tests.reference.comfy_ref import CONST
from tests.reference.comfy_ref import Flux as ModelSamplingFlux

TEMPLATE = "<|im_start|>user\n{}<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n"
SAMPLERS = Z.SAMPLERS


def encode(tokenizer, text_encoder, prompt):
    """KleinTokenizer + Qwen3_4BModel + Flux2TEModel: [1, 512, 3 * dim]."""
    t = tokenizer(TEMPLATE.format(prompt), padding="max_length", max_length=512, truncation=True,
                  return_tensors="pt")
    with torch.no_grad():
        out = text_encoder(input_ids=t["input_ids"], attention_mask=t["attention_mask"], output_hidden_states=True)
    layers = [out.hidden_states[i] for i in (9, 18, 27)]
    stacked = torch.stack(layers, dim=1).movedim(1, 2)
    return stacked.reshape(stacked.shape[0], stacked.shape[1], -1).float()


DEV_SYSTEM = ("You are an AI that reasons about image descriptions. You give structured responses focusing on object "
              "relationships, object\nattribution and actions without speculation.")


def encode_dev(tokenizer, text_encoder, prompt):
    """Flux2Pipeline's Mistral Small 3 embeds: [1, 512, 3 * dim]."""
    messages = [[{"role": "system", "content": [{"type": "text", "text": DEV_SYSTEM}]},
                 {"role": "user", "content": [{"type": "text", "text": prompt.replace("[IMG]", "")}]}]]
    t = tokenizer.apply_chat_template(messages, add_generation_prompt=False, tokenize=True, return_dict=True,
                                      return_tensors="pt", padding="max_length", truncation=True, max_length=512)
    with torch.no_grad():
        out = text_encoder(input_ids=t["input_ids"], attention_mask=t["attention_mask"], output_hidden_states=True,
                           use_cache=False)
    stacked = torch.stack([out.hidden_states[i] for i in (10, 20, 30)], dim=1)
    b, n, length, dim = stacked.shape
    return stacked.permute(0, 2, 1, 3).reshape(b, length, n * dim).float()


def compute_empirical_mu(image_seq_len, num_steps):
    a1, b1 = 8.73809524e-05, 1.89833333
    a2, b2 = 0.00016927, 0.45666666
    if image_seq_len > 4300:
        return float(a2 * image_seq_len + b2)
    m_200 = a2 * image_seq_len + b2
    m_10 = a1 * image_seq_len + b1
    a = (m_200 - m_10) / 190.0
    b = m_200 - 200.0 * a
    return float(a * num_steps + b)


def flux2_scheduler(steps, width, height):
    """The Flux2Scheduler node's sigmas."""
    mu = compute_empirical_mu(round(width * height / (16 * 16)), steps)
    t = torch.linspace(1, 0, steps + 1)
    return math.exp(mu) / (math.exp(mu) + (1 / t - 1) ** 1.0)


def beta_scheduler(ms, steps, alpha=0.6, beta=0.6):
    total = len(ms.sigmas) - 1
    ts = 1 - numpy.linspace(0, 1, steps, endpoint=False)
    ts = numpy.rint(scipy.stats.beta.ppf(ts, alpha, beta) * total)
    sigs, last = [], -1
    for t in ts:
        if t != last:
            sigs.append(float(ms.sigmas[int(t)]))
        last = t
    return torch.FloatTensor(sigs + [0.0])


def calculate_sigmas(ms, schedule, steps, width=1024, height=1024):
    if schedule == "Flux2":
        return flux2_scheduler(steps, width, height)
    return {"Simple": Z.simple_scheduler, "Karras": Z.karras_scheduler, "Beta": beta_scheduler}[schedule](ms, steps)


class Flux2Model:
    """The Flux.2 network as ComfyUI calls it, on diffusers' Flux2Transformer2DModel. `refs`: reference latents
    ([1, 128, h, w], process_in space), appended after the image tokens by ComfyUI's "index" method with Flux.2's
    ref_index_scale 10 (comfy/model_detection.py): reference i's ids (10 (i + 1), row, col, 0); the output cut to
    the image tokens. Given to every conditioning, as diffusers' Flux2KleinPipeline does."""

    def __init__(self, transformer, ms, refs=(), guidance=None):
        self.transformer, self.ms, self.const, self.refs = transformer, ms, CONST(), list(refs)
        self.guidance = guidance  # dev's distilled guidance (None: Klein, no guidance embedding)

    def network(self, x, timestep, context):
        b, c, h, w = x.shape
        img = torch.cartesian_prod(torch.arange(1), torch.arange(h), torch.arange(w), torch.arange(1)).float()
        txt = torch.cartesian_prod(torch.arange(1), torch.arange(1), torch.arange(1),
                                   torch.arange(context.shape[1])).float()
        tokens = [x.reshape(b, c, h * w).permute(0, 2, 1)]
        ids = [img]
        index = 0
        for ref in self.refs:
            index += 10
            rh, rw = ref.shape[-2:]
            tokens.append(ref.repeat(b, 1, 1, 1).reshape(b, c, rh * rw).permute(0, 2, 1))
            ids.append(torch.cartesian_prod(torch.tensor([index]), torch.arange(rh), torch.arange(rw),
                                            torch.arange(1)).float())
        with torch.no_grad():
            out = self.transformer(hidden_states=torch.cat(tokens, dim=1), encoder_hidden_states=context,
                                   timestep=timestep, img_ids=torch.cat(ids), txt_ids=txt,
                                   guidance=None if self.guidance is None else torch.full([b], self.guidance),
                                   return_dict=False)[0][:, :h * w]
        return out.permute(0, 2, 1).reshape(b, c, h, w)

    def apply_model(self, x, sigma, context):
        t = self.ms.timestep(sigma).float()
        out = self.network(x, t, context).float()
        return self.const.calculate_denoised(sigma, out, x)


def sample(transformer, tokenizer, text_encoder, prompt, negative="", seed=1, width=32, height=32, steps=4,
           sampler="Euler", schedule="Simple", cfg=1.0, shift=2.02, init_latent=None, denoise=1.0, refs=(),
           guidance=None, encoder=encode, zero_negative=False):
    """ComfyUI's latents ([1, 128, H/16, W/16]) for one image of `seed`; `init_latent` with `denoise` < 1 is
    KSampler's img2img; `refs`: an edit's reference latents (Flux2Model); `guidance`, `encoder`: dev's (encode_dev).
    Ancestral noise continues the initial noise's generator (the WebUI stream, as zimage_ref)."""
    ms = ModelSamplingFlux(shift=shift)
    if denoise < 1.0:
        sigmas = calculate_sigmas(ms, schedule, int(steps / denoise), width, height)[-(steps + 1):]
    else:
        sigmas = calculate_sigmas(ms, schedule, steps, width, height)
    generator = torch.manual_seed(seed)
    latent = torch.zeros(1, 128, height // 16, width // 16) if init_latent is None else init_latent
    initial = torch.randn(latent.size(), dtype=torch.float32, layout=latent.layout, generator=generator, device="cpu")
    noise_sampler = lambda s, s_next: torch.randn(latent.size(), generator=generator)  # noqa: E731
    cond = encoder(tokenizer, text_encoder, prompt)
    uncond = encoder(tokenizer, text_encoder, negative) if cfg != 1.0 else None
    if zero_negative and uncond is not None:  # ConditioningZeroOut of the positive: zeros of its shape
        uncond = torch.zeros_like(cond)
    guider = Z.CFGGuider(Flux2Model(transformer, ms, refs, guidance), cond, uncond, cfg)
    x = CONST().noise_scaling(sigmas[0], initial, latent)
    kwargs = {"noise_sampler": noise_sampler} if sampler == "Euler a" else {}
    with torch.no_grad():
        return SAMPLERS[sampler](guider, x, sigmas, extra_args={}, **kwargs)


def _stats(vae):
    mean = vae.bn.running_mean.view(1, -1, 1, 1)
    return mean, torch.sqrt(vae.bn.running_var.view(1, -1, 1, 1) + vae.config.batch_norm_eps)


def process_in(vae, z):
    """The VAE posterior's mean -> Flux.2's latent: 2x2 patchify, then batch-norm normalisation."""
    b, c, h, w = z.shape
    z = z.view(b, c, h // 2, 2, w // 2, 2).permute(0, 1, 3, 5, 2, 4).reshape(b, c * 4, h // 2, w // 2)
    mean, std = _stats(vae)
    return (z - mean) / std


def decode(vae, latent):
    """VAE decode as ComfyUI saves it: uint8 arrays [H, W, 3]."""
    mean, std = _stats(vae)
    z = latent * std + mean
    b, c, h, w = z.shape
    z = z.reshape(b, c // 4, 2, 2, h, w).permute(0, 1, 4, 2, 5, 3).reshape(b, c // 4, h * 2, w * 2)
    with torch.no_grad():
        image = torch.clamp((vae.decode(z).sample.float() + 1.0) / 2.0, 0.0, 1.0)
    return [(255.0 * u).permute(1, 2, 0).numpy().astype("uint8") for u in image]
