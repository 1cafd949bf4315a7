"""ComfyUI's Flux.1 graph (UNETLoader + DualCLIPLoader + VAELoader, FluxGuidance, ModelSamplingFlux, BasicScheduler,
RandomNoise, BasicGuider, KSamplerSelect euler, SamplerCustomAdvanced, EmptySD3LatentImage), transcribed for the
parity tests; imports no sdcli code. The network call is the reference side's FluxModel (forge_flux_ref: packing,
ids, CONST), the text comfy_text_ref.flux_text_encode.

- ModelSamplingFlux (comfy_extras/nodes_model_advanced.py): shift = width * height / (8*8*2*2) * mm + b on the
  line through (256, base_shift) and (4096, max_shift): the NODE's width and height, not the latent's; the
  10,000-point table of comfy_ref.Flux(shift).
- BasicScheduler simple: every len/steps-th sigma of the table from the top, then 0.
- RandomNoise: torch.manual_seed(seed), one draw of the whole [B, 16, H/8, W/8] latent on the CPU.
- CONST: x = sigma0 * noise (EmptySD3LatentImage is zeros); sample_euler, or sample_euler_ancestral, which on a
  CONST model runs its _RF form (forge_flux_samplers_ref's transcription) with default_noise_sampler: a CPU
  generator seeded seed + 1 (k_diffusion/sampling.py shifts the seed on the CPU).
"""

from __future__ import annotations

import torch

from tests.reference import comfy_ref, comfy_text_ref
from tests.reference.forge_flux_ref import FluxModel, PredictionFlux
from tests.reference.forge_flux_samplers_ref import sample_euler_ancestral_RF


def model_sampling_flux_shift(max_shift, base_shift, width, height):
    mm = (max_shift - base_shift) / (4096 - 256)
    b = base_shift - mm * 256
    return (width * height / (8 * 8 * 2 * 2)) * mm + b


def simple_scheduler(ms, steps):
    step = len(ms.sigmas) / steps
    return torch.FloatTensor([float(ms.sigmas[-(1 + int(x * step))]) for x in range(steps)] + [0.0])


@torch.no_grad()
def flux_graph(pipe, prompt, *, seed, steps, guidance, width, height, shift, sampler="euler"):
    """The graph's final latent (process_in space): decode with forge_flux_text_ref.decode_first_stage."""
    ms = comfy_ref.Flux(shift=shift)
    sigmas = simple_scheduler(ms, steps)
    cond, pooled = comfy_text_ref.flux_text_encode(pipe, prompt)
    noise = torch.randn([1, 16, height // 8, width // 8], generator=torch.manual_seed(seed), device="cpu")
    x = sigmas[0] * noise
    model = FluxModel(pipe.transformer, PredictionFlux(mu=shift))
    g = torch.tensor([guidance], dtype=torch.float32) if pipe.transformer.config.guidance_embeds else None
    def denoise(x, sigma):
        return model.apply_model(x, sigma, cond, pooled, g)

    if sampler == "euler_ancestral":
        generator = torch.Generator(device="cpu").manual_seed(seed + 1)
        return sample_euler_ancestral_RF(denoise, x, sigmas, extra_args={}, noise_sampler=lambda s, t: torch.randn(
            x.size(), dtype=x.dtype, layout=x.layout, generator=generator))
    for i in range(len(sigmas) - 1):
        denoised = denoise(x, sigmas[i] * x.new_ones([1]))
        x = x + (x - denoised) / sigmas[i] * (sigmas[i + 1] - sigmas[i])
    return x
