"""ComfyUI's SD3 sampling path, transcribed for the parity tests (imports no sdcli code).

- Model sampling (comfy/supported_models.py SD3, comfy/model_sampling.py): CONST on ModelSamplingDiscreteFlow
  (shift 3, multiplier 1000): the network gets timestep sigma * 1000; denoised = x - sigma * v.
- Schedules (comfy/samplers.py): simple_scheduler (every len/steps-th sigma of the 1000-point table from the
  top, then 0) and sgm_uniform (normal_scheduler with sgm: timesteps linspace(t(sigma_max), t(sigma_min),
  steps + 1) without the last, then 0).
- CFG (cfg_function): uncond + (cond - uncond) * scale; at scale 1 the uncond pass is skipped.
- Samplers (comfy/k_diffusion/sampling.py): sample_euler, sample_heun, sample_dpmpp_2m (with CONST's
  -log(sigma / (1 - sigma)) as time: ComfyUI's k-diffusion takes t = -log(sigma) with sigma the flow sigma,
  see dpmpp_2m: t_fn = -sigma.log(), applied to the sigmas as given).
- Noise: one CPU generator seeded with the seed for the whole batch latent (batch 1 here).
- Text conditioning: Forge's sd35 get_learned_conditioning for a prompt without weights (sdcli follows Forge's
  conditioning): CLIP-L and bigG hidden_states[-1] (no final norm) of [BOS] + tokens + EOS padding (bigG: pad
  token after the first EOS), pooled = projected EOS state, both concatenated and zero-padded to T5's width;
  T5 tokens + </s> padded with <pad> to 256; an empty negative is all zeros.
"""

from __future__ import annotations

import torch

SHIFT, MULTIPLIER = 3.0, 1000.0


def flow_sigma(t, shift=SHIFT):
    t = t / MULTIPLIER
    return shift * t / (1 + (shift - 1) * t)


def model_sigmas(shift=SHIFT):
    return flow_sigma(torch.arange(1, 1001, dtype=torch.float32), shift)


def simple_scheduler(steps, shift=SHIFT):
    s = model_sigmas(shift)
    ss = len(s) / steps
    return torch.tensor([float(s[-(1 + int(x * ss))]) for x in range(steps)] + [0.0])


def sgm_uniform(steps, shift=SHIFT):
    s = model_sigmas(shift)
    start, end = float(s[-1]) * MULTIPLIER, float(s[0]) * MULTIPLIER
    ts = torch.linspace(start, end, steps + 1)[:-1]
    return torch.tensor([float(flow_sigma(t, shift)) for t in ts] + [0.0])


SCHEDULES = {"Simple": simple_scheduler, "SGM Uniform": sgm_uniform}


def _clip(tokenizer, encoder, text):
    ids = tokenizer(text, add_special_tokens=False)["input_ids"][:75]
    bos, eos = tokenizer.bos_token_id, tokenizer.eos_token_id
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos
    tokens = [bos, *ids, eos] + [pad] * (75 - len(ids))
    out = encoder(torch.tensor([tokens]), output_hidden_states=True)
    return out.hidden_states[-1], out.text_embeds


def _t5(tokenizer, encoder, text):
    ids = tokenizer(text, add_special_tokens=False)["input_ids"] + [1]
    ids += [0] * max(256 - len(ids), 0)
    return encoder(torch.tensor([ids])).last_hidden_state


@torch.no_grad()
def conditioning(pipe, text, negative=False):
    """(crossattn, pooled) for one prompt without weights."""
    l_states, l_pooled = _clip(pipe.tokenizer, pipe.text_encoder, text)
    g_states, g_pooled = _clip(pipe.tokenizer_2, pipe.text_encoder_2, text)
    t5 = _t5(pipe.tokenizer_3, pipe.text_encoder_3, text)
    lg = torch.cat([l_states, g_states], dim=-1)
    lg = torch.nn.functional.pad(lg, (0, t5.shape[-1] - lg.shape[-1]))
    cross, pooled = torch.cat([lg, t5], dim=-2), torch.cat([l_pooled, g_pooled], dim=-1)
    if negative and text == "":
        return torch.zeros_like(cross), torch.zeros_like(pooled)
    return cross, pooled


def make_model(transformer, cond, uncond, scale):
    """ComfyUI's CFGGuider over the CONST model: x, sigma -> denoised."""
    @torch.no_grad()
    def denoise(x, sigma):
        def one(c):
            v = transformer(hidden_states=x, encoder_hidden_states=c[0], pooled_projections=c[1],
                            timestep=(sigma * MULTIPLIER).reshape(1), return_dict=False)[0]
            return x - v * sigma
        positive = one(cond)
        if scale == 1.0:
            return positive
        negative = one(uncond)
        return negative + (positive - negative) * scale
    return denoise


def sample_euler(model, x, sigmas):
    for i in range(len(sigmas) - 1):
        d = (x - model(x, sigmas[i])) / sigmas[i]
        x = x + d * (sigmas[i + 1] - sigmas[i])
    return x


def sample_heun(model, x, sigmas):
    for i in range(len(sigmas) - 1):
        d = (x - model(x, sigmas[i])) / sigmas[i]
        dt = sigmas[i + 1] - sigmas[i]
        if sigmas[i + 1] == 0:
            x = x + d * dt
        else:
            x2 = x + d * dt
            d2 = (x2 - model(x2, sigmas[i + 1])) / sigmas[i + 1]
            x = x + (d + d2) / 2 * dt
    return x


def sample_dpmpp_2m(model, x, sigmas):
    t_fn = lambda s: s.log().neg()  # noqa: E731
    old = None
    for i in range(len(sigmas) - 1):
        denoised = model(x, sigmas[i])
        t, t_next = t_fn(sigmas[i]), t_fn(sigmas[i + 1])
        h = t_next - t
        if old is None or sigmas[i + 1] == 0:
            x = (sigmas[i + 1] / sigmas[i]) * x - (-h).expm1() * denoised
        else:
            r = (t - t_fn(sigmas[i - 1])) / h
            d = (1 + 1 / (2 * r)) * denoised - (1 / (2 * r)) * old
            x = (sigmas[i + 1] / sigmas[i]) * x - (-h).expm1() * d
        old = denoised
    return x


SAMPLERS = {"Euler": sample_euler, "Heun": sample_heun, "DPM++ 2M": sample_dpmpp_2m}


def sample_sd3(pipe, prompt, negative="", seed=1, width=32, height=32, steps=3, sampler="Euler",
               schedule="Simple", cfg=1.0, init_latent=None, sigmas=None):
    """Latents (VAE space: before ComfyUI's process_out) for these settings; init_latent (process_in space) with
    `sigmas` (the tail of a schedule) makes it img2img."""
    cond = conditioning(pipe, prompt)
    uncond = None if cfg == 1.0 else conditioning(pipe, negative, negative=True)
    sigmas = SCHEDULES[schedule](steps) if sigmas is None else sigmas
    noise = torch.randn((1, 16, height // 8, width // 8), generator=torch.manual_seed(seed))
    latent = torch.zeros_like(noise) if init_latent is None else init_latent
    x = sigmas[0] * noise + (1.0 - sigmas[0]) * latent  # CONST.noise_scaling
    model = make_model(pipe.transformer, cond, uncond, cfg)
    return SAMPLERS[sampler](model, x, sigmas)
