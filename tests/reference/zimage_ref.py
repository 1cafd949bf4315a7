"""An independent transcription of ComfyUI's Z-Image path (ComfyUI master, late 2026), run on diffusers' modules.

Facts transcribed (paths in comfyanonymous/ComfyUI):
- comfy/supported_models.py ZImage(Lumina2): sampling_settings multiplier 1.0, shift 3.0; latent format Flux
  (process_in: (z - 0.1159) * 0.3611, here read from the VAE config); model type FLOW.
- comfy/model_sampling.py ModelSamplingDiscreteFlow: sigmas = shift t / (1 + (shift - 1) t) at t = (1..1000)/1000
  * multiplier / multiplier; timestep(sigma) = sigma * multiplier; CONST: calculate_input identity, denoised =
  x - output * sigma, noise_scaling sigma * noise + (1 - sigma) * latent, inverse identity at sigma 0.
- comfy/ldm/lumina/model.py (NextDiT, the Z-Image network): the latent padded to the patch size (circular, by
  comfy.ldm.common_dit.pad_to_patch_size), t = 1 - timestep, the output negated and cropped.
- comfy/samplers.py: simple_scheduler (every len/steps-th sigma from the top, then 0), karras from the model's
  sigma_min/sigma_max; cfg_function: at cond_scale 1 the uncond is not run (calc_cond_batch with None),
  else uncond + (cond - uncond) * scale; cond and uncond run as one batch when their shapes concatenate.
  KSampler with denoise < 1: sigmas of int(steps / denoise) steps, the last steps + 1 of them.
- comfy/sample.py prepare_noise: torch.manual_seed(seed), randn of the whole batch latent on CPU.
- comfy/k_diffusion/sampling.py: euler, heun, dpmpp_2m as k-diffusion; euler_ancestral on a CONST model is
  sample_euler_ancestral_RF; its noise sampler is a CPU generator seeded with the seed again (`comfy` noise
  below). sdcli draws ancestral noise as the WebUI does, continuing the image's generator after the
  initial noise (`webui` noise): the parity tests compare the sampler maths with the WebUI stream.
- comfy/text_encoders/z_image.py: the prompt in "<|im_start|>user\\n{}<|im_end|>\\n<|im_start|>assistant\\n",
  weights disabled, no padding; Qwen3's hidden states at layer index -2 (no final norm), attention mask on.
- VAE decode: (x + 1) / 2 clamped to [0, 1], x255 truncated to uint8 (comfy/sd.py, nodes.SaveImage).
Imports nothing from sdcli.
"""

from __future__ import annotations

import torch

from tests.reference import forge_flux_samplers_ref as RF
from tests.reference import kdiffusion_ref as K
from tests.reference.comfy_ref import CONST, DiscreteFlow, sample_res_multistep

TEMPLATE = "<|im_start|>user\n{}<|im_end|>\n<|im_start|>assistant\n"
SAMPLERS = {"Euler": K.sample_euler, "Heun": K.sample_heun, "DPM++ 2M": K.sample_dpmpp_2m,
            "Euler a": RF.sample_euler_ancestral_RF, "Res Multistep": sample_res_multistep}


def encode(tokenizer, text_encoder, prompt):
    """ZImageTokenizer + Qwen3_4BModel: [1, tokens, dim]."""
    ids = tokenizer(TEMPLATE.format(prompt), add_special_tokens=False, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        out = text_encoder(input_ids=ids, attention_mask=torch.ones_like(ids), output_hidden_states=True)
    return out.hidden_states[-2].float()


def simple_scheduler(ms, steps):
    ss = len(ms.sigmas) / steps
    return torch.FloatTensor([float(ms.sigmas[-(1 + int(x * ss))]) for x in range(steps)] + [0.0])


def karras_scheduler(ms, steps):
    return K.get_sigmas_karras(steps, float(ms.sigmas[0]), float(ms.sigmas[-1]))


def calculate_sigmas(ms, schedule, steps):
    return {"Simple": simple_scheduler, "Karras": karras_scheduler}[schedule](ms, steps)


class NextDiT:
    """The Z-Image network as ComfyUI calls it, on diffusers' ZImageTransformer2DModel."""

    def __init__(self, transformer, ms):
        self.transformer, self.ms, self.const = transformer, ms, CONST()

    def network(self, x, timestep, context):
        rows, cols = x.shape[-2:]
        x = torch.nn.functional.pad(x, (0, (2 - cols % 2) % 2, 0, (2 - rows % 2) % 2), mode="circular")
        t = 1.0 - timestep
        with torch.no_grad():
            out = self.transformer(list(x.unsqueeze(2).unbind(0)), t, list(context.unbind(0)), return_dict=False)[0]
        return -torch.stack(out).squeeze(2)[:, :, :rows, :cols]

    def apply_model(self, x, sigma, context):
        xc = x  # CONST calculate_input
        t = self.ms.timestep(sigma).float()
        out = self.network(xc, t, context).float()
        return self.const.calculate_denoised(sigma, out, x)


def _can_concat(a, b):
    return a.shape == b.shape


class CFGGuider:
    """samplers.sampling_function / cfg_function / calc_cond_batch for one cond and one uncond."""

    def __init__(self, model, cond, uncond, cfg):
        self.model, self.cond, self.uncond, self.cfg = model, cond, uncond, cfg

    def __call__(self, x, sigma, **kwargs):
        b = x.shape[0]
        if self.cfg == 1.0:  # disable_cfg1_optimization False: the uncond is skipped
            return self.model.apply_model(x, sigma, self.cond.repeat(b, 1, 1))
        if _can_concat(self.cond, self.uncond):
            out = self.model.apply_model(torch.cat([x, x]), torch.cat([sigma, sigma]),
                                         torch.cat([self.cond.repeat(b, 1, 1), self.uncond.repeat(b, 1, 1)]))
            cond_pred, uncond_pred = out[:b], out[b:]
        else:
            cond_pred = self.model.apply_model(x, sigma, self.cond.repeat(b, 1, 1))
            uncond_pred = self.model.apply_model(x, sigma, self.uncond.repeat(b, 1, 1))
        return uncond_pred + (cond_pred - uncond_pred) * self.cfg


def sample(transformer, tokenizer, text_encoder, prompt, negative="", seed=1, width=32, height=32, steps=4,
           sampler="Euler", schedule="Simple", cfg=1.0, shift=3.0, init_latent=None, denoise=1.0, noise="webui",
           encoder=encode, zero_negative=False, ms=None):
    """ComfyUI's latents (process_in space, [1, 16, H/8, W/8]) for one image of `seed`; `init_latent` (process_in
    space) with `denoise` < 1 is KSampler's img2img; `encoder(tokenizer, text_encoder, text)`: the text path;
    `zero_negative`: the negative is ConditioningZeroOut of the positive (zeros of its shape). ModelSamplingAuraFlow
    (discrete flow, multiplier 1, its shift) is this model sampling with its `shift`; `ms`: another node's
    (ModelSamplingSD3: DiscreteFlow with multiplier 1000, so NextDiT sees 1 - 1000 sigma)."""
    ms = ms or DiscreteFlow(shift=shift, multiplier=1.0)
    # 1. Sigmas (KSampler: denoise < 1 takes the tail of a longer schedule).
    if denoise < 1.0:
        sigmas = calculate_sigmas(ms, schedule, int(steps / denoise))[-(steps + 1):]
    else:
        sigmas = calculate_sigmas(ms, schedule, steps)
    # 2. Noise: one CPU generator seeded with the seed for the whole batch.
    generator = torch.manual_seed(seed)
    latent = torch.zeros(1, 16, height // 8, width // 8) if init_latent is None else init_latent
    initial = torch.randn(latent.size(), dtype=torch.float32, layout=latent.layout, generator=generator, device="cpu")
    if noise == "comfy":
        generator = torch.Generator("cpu").manual_seed(seed)
    noise_sampler = lambda s, s_next: torch.randn(latent.size(), generator=generator)  # noqa: E731
    # 3. Conditioning and sampling.
    cond = encoder(tokenizer, text_encoder, prompt)
    uncond = encoder(tokenizer, text_encoder, negative) if cfg != 1.0 else None
    if zero_negative and uncond is not None:
        uncond = torch.zeros_like(cond)
    guider = CFGGuider(NextDiT(transformer, ms), cond, uncond, cfg)
    x = CONST().noise_scaling(sigmas[0], initial, latent)
    func = SAMPLERS[sampler]
    kwargs = {"noise_sampler": noise_sampler} if sampler == "Euler a" else {}
    with torch.no_grad():
        return func(guider, x, sigmas, extra_args={}, **kwargs)


def process_in(vae, z):
    return (z - vae.config.shift_factor) * vae.config.scaling_factor


def decode(vae, latent):
    """VAE decode as ComfyUI saves it: uint8 arrays [H, W, 3]."""
    with torch.no_grad():
        z = latent / vae.config.scaling_factor + vae.config.shift_factor
        image = torch.clamp((vae.decode(z).sample.float() + 1.0) / 2.0, 0.0, 1.0)
    return [(255.0 * u).permute(1, 2, 0).numpy().astype("uint8") for u in image]
