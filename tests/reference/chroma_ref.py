"""An independent reference of ComfyUI's Chroma sampling path, for the parity tests. Imports nothing from sdcli.

Transcribed from comfyanonymous/ComfyUI: comfy/supported_models.py (Chroma: a Flux model whose sampling_settings
hold only multiplier 1, so ModelSamplingFlux keeps its default shift 1.15), comfy/model_sampling.py (CONST +
ModelSamplingFlux: comfy_ref.Flux), comfy/model_base.py (Chroma: guidance 0), comfy/ldm/chroma/model.py forward
(pad to 2x2, "b c (h ph) (w pw) -> b (h w) (c ph pw)", img ids (0, row, col), txt ids 0, unpack, crop),
comfy/samplers.py (simple_scheduler, beta_scheduler with alpha = beta = 0.6; calc_cond_batch runs uncond and
cond as one batch, uncond first; cfg_function: uncond + (cond - uncond) * scale; at CFG 1 the uncond is skipped;
KSampler's denoise: sigmas of int(steps / denoise) steps, the last steps + 1), comfy/sample.py prepare_noise (one
CPU generator seeded with the seed for the whole batch latent), comfy/k_diffusion/sampling.py (euler, heun,
dpmpp_2m as k-diffusion's; euler_ancestral on CONST = its _RF form; default_noise_sampler: a NEW generator
seeded with the seed, so its first draw repeats the initial noise), latent_formats.Flux (process_in/out) and
nodes.SaveImage (clip(255 x), truncated). The VAE encodes to the posterior mean.

The network is diffusers' ChromaTransformer2DModel called as diffusers' ChromaPipeline calls it (timestep =
sigma; the text attention mask extended by ones over the image tokens, a float 0/1 mask), and the text
conditioning is ChromaPipeline._get_t5_prompt_embeds (T5 tokens + </s> padded to 512, T5 run with the mask of
the real tokens, the transformer's mask keeping the first pad token too). ComfyUI's own T5 path for Chroma is
not transcribed here (see the parity test's docstring).
"""

from __future__ import annotations

import numpy as np
import scipy.stats
import torch
from einops import rearrange

from tests.reference import comfy_ref as C
from tests.reference import kdiffusion_ref as K
from tests.reference.forge_flux_samplers_ref import sample_euler_ancestral_RF
from tests.reference.forge_flux_text_ref import decode_first_stage, process_in

SAMPLERS = {"Euler": K.sample_euler, "Heun": K.sample_heun, "DPM++ 2M": K.sample_dpmpp_2m,
            "Euler a": sample_euler_ancestral_RF}


def simple_scheduler(model_sampling, steps):
    s = len(model_sampling.sigmas) / steps
    return torch.FloatTensor([float(model_sampling.sigmas[-(1 + int(x * s))]) for x in range(steps)] + [0.0])


def beta_scheduler(model_sampling, steps, alpha=0.6, beta=0.6):
    total_timesteps = len(model_sampling.sigmas) - 1
    ts = 1 - np.linspace(0, 1, steps, endpoint=False)
    ts = np.rint(scipy.stats.beta.ppf(ts, alpha, beta) * total_timesteps)
    sigs, last_t = [], -1
    for t in ts:
        if t != last_t:
            sigs += [float(model_sampling.sigmas[int(t)])]
        last_t = t
    return torch.FloatTensor(sigs + [0.0])


def karras_scheduler(model_sampling, steps):
    return K.get_sigmas_karras(n=steps, sigma_min=float(model_sampling.sigmas[0]),
                               sigma_max=float(model_sampling.sigmas[-1]))


SCHEDULERS = {"Simple": simple_scheduler, "Beta": beta_scheduler, "Karras": karras_scheduler}


@torch.no_grad()
def t5_conditioning(t5, tokenizer, text):
    """ChromaPipeline._get_t5_prompt_embeds for one prompt: (embeds [1, 512, dim], transformer text mask [1, 512])."""
    inputs = tokenizer([text], padding="max_length", max_length=512, truncation=True, return_tensors="pt")
    embeds = t5(inputs.input_ids, output_hidden_states=False, attention_mask=inputs.attention_mask)[0]
    lengths = inputs.attention_mask.sum(dim=1)
    mask = (torch.arange(512)[None] <= lengths[:, None]).float()
    return embeds.float(), mask


class ChromaModel:
    """BaseModel.apply_model (CONST on ModelSamplingFlux) around comfy/ldm/chroma/model.py's forward."""

    def __init__(self, transformer, sampling):
        self.transformer, self.sampling, self.const = transformer, sampling, C.CONST()

    def apply_model(self, x, sigma, context, mask):
        xc = self.const.calculate_input(sigma, x)
        t = self.sampling.timestep(sigma).float()
        out = self.forward(xc, t, context, mask).float()
        return self.const.calculate_denoised(sigma, out, x)

    def forward(self, x, timestep, context, mask):
        bs, _, h, w = x.shape
        x = torch.nn.functional.pad(x, (0, (2 - w % 2) % 2, 0, (2 - h % 2) % 2), mode="circular")
        img = rearrange(x, "b c (h ph) (w pw) -> b (h w) (c ph pw)", ph=2, pw=2)
        h_len, w_len = (h + 1) // 2, (w + 1) // 2
        img_ids = torch.zeros((h_len, w_len, 3))
        img_ids[..., 1] = img_ids[..., 1] + torch.linspace(0, h_len - 1, steps=h_len)[:, None]
        img_ids[..., 2] = img_ids[..., 2] + torch.linspace(0, w_len - 1, steps=w_len)[None, :]
        txt_ids = torch.zeros((context.shape[1], 3))
        attention = None if mask is None else torch.cat([mask, torch.ones(bs, img.shape[1])], dim=1)
        out = self.transformer(hidden_states=img, encoder_hidden_states=context, timestep=timestep,
                               img_ids=img_ids.reshape(-1, 3), txt_ids=txt_ids, attention_mask=attention,
                               return_dict=False)[0]
        return rearrange(out, "b (h w) (c ph pw) -> b c (h ph) (w pw)", h=h_len, w=w_len, ph=2, pw=2)[:, :, :h, :w]


class CFGGuider:
    """samplers.sampling_function: calc_cond_batch (uncond, cond in one batch) then cfg_function."""

    def __init__(self, model, cond, uncond, cfg):
        self.model, self.cond, self.uncond, self.cfg = model, cond, uncond, cfg

    def __call__(self, x, sigma, **_):
        if self.cfg == 1.0:
            return self.model.apply_model(x, sigma, *self.cond)
        if self.uncond[0].shape != self.cond[0].shape:  # can_concat: unpadded texts of two lengths run apart
            uncond, cond = (self.model.apply_model(x, sigma, *c) for c in (self.uncond, self.cond))
            return uncond + (cond - uncond) * self.cfg
        context = torch.cat([self.uncond[0], self.cond[0]])
        mask = None if self.cond[1] is None else torch.cat([self.uncond[1], self.cond[1]])
        uncond, cond = self.model.apply_model(torch.cat([x, x]), torch.cat([sigma, sigma]), context, mask).chunk(2)
        return uncond + (cond - uncond) * self.cfg


def comfy_noise_sampler(x, seed):
    """k_diffusion.sampling.default_noise_sampler(x, seed): a new CPU generator seeded with `seed`."""
    generator = torch.Generator(device=x.device)
    generator.manual_seed(seed)
    return lambda sigma, sigma_next: torch.randn(x.size(), dtype=x.dtype, layout=x.layout, device=x.device,
                                                 generator=generator)


@torch.no_grad()
def sample_chroma(pipe, prompt, negative="", seed=1, width=32, height=32, steps=4, sampler="Euler",
                  schedule="Simple", cfg=4.0, init_image=None, denoise=1.0, noise_sampler=None, encoder=None,
                  ms=None, zero_negative=False):
    """ComfyUI's KSampler + VAE Decode + SaveImage on Chroma: one uint8 image [H, W, 3]. `init_image` ([0, 1]
    pixels [1, 3, H, W]) with `denoise` < 1 makes it img2img. `noise_sampler(x, seed)` replaces ComfyUI's
    ancestral noise source (for a comparison with another program's). `encoder(tokenizer, t5, text)`: the text
    path, (states, transformer text mask or None); default t5_conditioning's. `ms`: a ModelSampling node's model
    sampling (comfy_ref.DiscreteFlow: ModelSamplingAuraFlow) in place of the model's own; `zero_negative`: the
    negative is ConditioningZeroOut of the positive (zeros of its states' shape, the rest kept)."""
    sampling = ms or C.Flux(shift=1.15)
    model = ChromaModel(pipe.transformer, sampling)
    encode = encoder or (lambda tokenizer, t5, text: t5_conditioning(t5, tokenizer, text))
    cond = encode(pipe.tokenizer, pipe.text_encoder, prompt)
    uncond = encode(pipe.tokenizer, pipe.text_encoder, negative) if cfg != 1.0 else None
    if zero_negative and uncond is not None:
        uncond = (torch.zeros_like(cond[0]), cond[1])
    total = steps if denoise >= 0.9999 else int(steps / denoise)
    sigmas = SCHEDULERS[schedule](sampling, total)[-(steps + 1):]
    shape = (1, 16, height // 8, width // 8)
    latent = torch.zeros(shape)
    if init_image is not None:
        latent = process_in(pipe.vae.encode(2.0 * init_image - 1.0).latent_dist.mean)
    generator = torch.manual_seed(seed)
    noise = torch.randn(shape, generator=generator, dtype=torch.float32, device="cpu")
    x = C.CONST().noise_scaling(sigmas[0], noise, latent)
    kwargs = {}
    if sampler == "Euler a":
        kwargs["noise_sampler"] = (noise_sampler or comfy_noise_sampler)(x, seed)
    out = SAMPLERS[sampler](CFGGuider(model, cond, uncond, cfg), x, sigmas, extra_args={}, **kwargs)
    unit = decode_first_stage(pipe.vae, out)[0]
    return np.clip(255.0 * unit.permute(1, 2, 0).numpy(), 0, 255).astype(np.uint8)
