"""An independent transcription of ComfyUI's Qwen-Image path, run on diffusers' modules. Imports nothing from sdcli.

Facts transcribed (paths in comfyanonymous/ComfyUI):
- comfy/supported_models.py QwenImage: sampling_settings multiplier 1.0, shift 1.15 on a FLUX model type
  (comfy/model_base.py QwenImage), so ModelSamplingFlux with mu 1.15 at every resolution (comfy_ref.Flux:
  timestep = sigma); latent format Wan21 (comfy/latent_formats.py: process_in (z - mean_c) * 1.0 / std_c with
  the 16 published channel means/stds, process_out its inverse), the VAE a Wan 2.1 video VAE (one frame).
- comfy/ldm/qwen_image/model.py: the latent padded to the 2x2 patch (pad_to_patch_size, circular), patchified
  "b c (h ph) (w pw) -> b (h w) (c ph pw)", timestep = sigma, the output unpatchified and cropped; process_img's
  rotary ids of the h_len x w_len token grid (h_len = (h + 1) // 2 of the latent's side) are (0, row - h_len // 2,
  column - w_len // 2), the text's start at max(w_len // 2, h_len // 2) on all three axes. Here the transformer is
  diffusers' QwenImageTransformer2DModel, called as diffusers' QwenImagePipeline calls it (img_shapes, timestep =
  sigma, no text mask for unpadded text), with those positions (RotaryPositions) in place of its own rope's, which
  centres an odd side half a token the other way (rows -(h_len - h_len // 2) .. h_len // 2 - 1).
- comfy/text_encoders/qwen_image.py: the prompt in the template "<|im_start|>system\\nDescribe the image by
  detailing the color, shape, size, texture, quantity, text, spatial relationships of the objects and
  background:<|im_end|>\\n<|im_start|>user\\n{}<|im_end|>\\n<|im_start|>assistant\\n"; Qwen2.5-VL's last hidden
  states (after the final norm); the tokens up to the second <|im_start|> dropped, and "user\\n" after it
  (ComfyUI checks the ids 872, 198 of the real tokenizer; here: the ids of "user\\n" in the model's tokenizer).
- comfy/samplers.py: simple_scheduler, karras from the model's sigma_min/max; cfg_function: at scale 1 the
  uncond is skipped, else uncond + (cond - uncond) * scale (plain CFG: diffusers' pipeline also rescales the
  result to the cond's norm, ComfyUI does not); cond and uncond of different lengths run as separate batches.
  KSampler with denoise < 1: the last steps + 1 sigmas of an int(steps / denoise)-step schedule.
- comfy/sample.py prepare_noise: one CPU generator seeded with the seed for the whole batch latent.
- comfy/k_diffusion/sampling.py: euler, heun, dpmpp_2m as k-diffusion; Euler a on CONST is the _RF form.
- nodes.SaveImage: clip(255 x) truncated to uint8; VAE decode (x + 1) / 2 clamped.
"""

from __future__ import annotations

import numpy as np
import torch

from tests.reference import comfy_ref as C
from tests.reference import kdiffusion_ref as K
from tests.reference.forge_flux_samplers_ref import sample_euler_ancestral_RF

SYSTEM = ("Describe the image by detailing the color, shape, size, texture, quantity, text, spatial relationships "
          "of the objects and background:")
TEMPLATE = "<|im_start|>system\n" + SYSTEM + "<|im_end|>\n<|im_start|>user\n{}<|im_end|>\n<|im_start|>assistant\n"
SAMPLERS = {"Euler": K.sample_euler, "Heun": K.sample_heun, "DPM++ 2M": K.sample_dpmpp_2m,
            "Euler a": sample_euler_ancestral_RF}


def simple_scheduler(ms, steps):
    ss = len(ms.sigmas) / steps
    return torch.FloatTensor([float(ms.sigmas[-(1 + int(x * ss))]) for x in range(steps)] + [0.0])


def karras_scheduler(ms, steps):
    return K.get_sigmas_karras(steps, float(ms.sigmas[0]), float(ms.sigmas[-1]))


SCHEDULERS = {"Simple": simple_scheduler, "Karras": karras_scheduler}


def template_start(tokenizer, ids):
    """Where ComfyUI cuts the template's start: after the second <|im_start|> (and its "user\\n")."""
    im_start = tokenizer.convert_tokens_to_ids("<|im_start|>")
    end = [i for i, v in enumerate(ids) if v == im_start][1]
    user = tokenizer("user\n", add_special_tokens=False)["input_ids"]
    if ids[end + 1:end + 1 + len(user)] == user:
        end += 1 + len(user)
    return end


def encode(tokenizer, text_encoder, prompt):
    """QwenImageTokenizer + QwenImageTEModel: [1, tokens, dim] after the template's start is cut."""
    ids = tokenizer(TEMPLATE.format(prompt), add_special_tokens=False)["input_ids"]
    end = template_start(tokenizer, ids)
    with torch.no_grad():
        t = torch.tensor([ids])
        out = text_encoder(input_ids=t, attention_mask=torch.ones_like(t), output_hidden_states=True)
    return out.hidden_states[-1][:, end:].float()


def _channel(vae, name):
    return torch.tensor(getattr(vae.config, name)).view(1, -1, 1, 1)


def process_in(vae, z):
    return (z - _channel(vae, "latents_mean")) / _channel(vae, "latents_std")


def process_out(vae, latent):
    return latent * _channel(vae, "latents_std") + _channel(vae, "latents_mean")


def rope_positions(h_len, w_len, index):
    """process_img's ids of a token grid: (index, row - h_len // 2, column - w_len // 2), row-major."""
    rows = torch.arange(h_len, dtype=torch.float32)[:, None].expand(h_len, w_len) - h_len // 2
    cols = torch.arange(w_len, dtype=torch.float32)[None, :].expand(h_len, w_len) - w_len // 2
    return torch.stack([torch.full_like(rows, index), rows, cols], dim=-1).reshape(-1, 3)


def rotary(positions, axes_dim, theta=10000):
    """Complex rotations of ids [N, 3] over the axes' dims (the network's rope: angle = pos * theta^(-2i/d))."""
    parts = []
    for axis, dim in enumerate(axes_dim):
        scale = 1.0 / torch.pow(theta, torch.arange(0, dim, 2).to(torch.float32).div(dim))
        parts.append(torch.polar(torch.ones(len(positions), dim // 2), torch.outer(positions[:, axis], scale)))
    return torch.cat(parts, dim=1)


class RotaryPositions(torch.nn.Module):
    """The transformer's pos_embed as ComfyUI places tokens: the image (index 0), then each reference (index
    1, 2, ...), centred; the text from max(h_len, w_len) // 2 of the image's grid on every axis."""

    def __init__(self, axes_dim, grids):
        super().__init__()
        self.axes_dim, self.grids = axes_dim, grids  # [(h_len, w_len), ...]: the image's, then each reference's

    def forward(self, img_shapes, max_txt_seq_len, device=None):
        image = torch.cat([rope_positions(h, w, i) for i, (h, w) in enumerate(self.grids)])
        start = max(self.grids[0][0] // 2, self.grids[0][1] // 2)
        text = torch.arange(start, start + int(max_txt_seq_len), dtype=torch.float32)[:, None].expand(-1, 3)
        return rotary(image, self.axes_dim).to(device), rotary(text, self.axes_dim).to(device)


class QwenImageModel:
    """BaseModel.apply_model (CONST) around the Qwen-Image network call; `comfy_positions` False: diffusers' own
    rotary positions (not ComfyUI: to show that they matter at an odd token grid)."""

    def __init__(self, transformer, ms, comfy_positions=True):
        self.transformer, self.ms, self.const = transformer, ms, C.CONST()
        self.comfy_positions = comfy_positions

    def network(self, x, timestep, context):
        rows, cols = x.shape[-2:]
        x = torch.nn.functional.pad(x, (0, (2 - cols % 2) % 2, 0, (2 - rows % 2) % 2), mode="circular")
        b, c, h, w = x.shape
        tokens = x.reshape(b, c, h // 2, 2, w // 2, 2).permute(0, 2, 4, 1, 3, 5).reshape(b, h * w // 4, c * 4)
        original = self.transformer.pos_embed
        if self.comfy_positions:
            self.transformer.pos_embed = RotaryPositions(list(original.axes_dim), [(h // 2, w // 2)])
        try:
            with torch.no_grad():
                out = self.transformer(hidden_states=tokens, encoder_hidden_states=context, timestep=timestep,
                                       img_shapes=[[(1, h // 2, w // 2)]] * b, return_dict=False)[0]
        finally:
            self.transformer.pos_embed = original
        out = out.reshape(b, h // 2, w // 2, c, 2, 2).permute(0, 3, 1, 4, 2, 5).reshape(b, c, h, w)
        return out[:, :, :rows, :cols]

    def apply_model(self, x, sigma, context):
        out = self.network(x, self.ms.timestep(sigma).float(), context).float()
        return self.const.calculate_denoised(sigma, out, x)


def cfg_norm(strength):
    """comfy_extras/nodes_cfg.py CFGNorm's post-CFG function: the result times its per-pixel ratio of norms over
    the channels (dim 1), cond's over the result's + 1e-8, clamped to [0, 1], times the strength."""
    def post_cfg(cond_denoised, denoised):
        norm_full_cond = torch.norm(cond_denoised, dim=1, keepdim=True)
        norm_pred_text = torch.norm(denoised, dim=1, keepdim=True)
        scale = (norm_full_cond / (norm_pred_text + 1e-8)).clamp(min=0.0, max=1.0)
        return denoised * scale * strength
    return post_cfg


class CFGGuider:
    """samplers.sampling_function for one cond and one uncond; `post_cfg`: a model's sampler_post_cfg_function
    (CFGNorm's), run on every result, the CFG-1 one (cond alone) too."""

    def __init__(self, model, cond, uncond, cfg, post_cfg=None):
        self.model, self.cond, self.uncond, self.cfg = model, cond, uncond, cfg
        self.post_cfg = post_cfg or (lambda cond_denoised, denoised: denoised)

    def __call__(self, x, sigma, **_):
        if self.cfg == 1.0:
            cond = self.model.apply_model(x, sigma, self.cond)
            return self.post_cfg(cond, cond)
        if self.cond.shape == self.uncond.shape:
            both = self.model.apply_model(torch.cat([x, x]), torch.cat([sigma, sigma]),
                                          torch.cat([self.cond, self.uncond]))
            cond, uncond = both.chunk(2)
        else:
            cond = self.model.apply_model(x, sigma, self.cond)
            uncond = self.model.apply_model(x, sigma, self.uncond)
        return self.post_cfg(cond, uncond + (cond - uncond) * self.cfg)


@torch.no_grad()
def sample(pipe, prompt, negative="", seed=1, width=32, height=32, steps=4, sampler="Euler", schedule="Simple",
           cfg=2.5, shift=1.15, init_image=None, denoise=1.0, encoder=encode, ms=None, zero_negative=False,
           post_cfg=None, comfy_positions=True):
    """ComfyUI's KSampler + VAE Decode + SaveImage on Qwen-Image: one uint8 image [H, W, 3]. `init_image` ([0, 1]
    pixels [1, 3, H, W]) with `denoise` < 1 makes it img2img. Euler a draws from the initial noise's generator
    continued (sdcli's WebUI stream), not ComfyUI's re-seeded one. `encoder(tokenizer, text_encoder, text)`: the
    text path. `ms`: a ModelSampling node's model sampling (comfy_ref.DiscreteFlow: ModelSamplingAuraFlow) in place
    of the model's own; `zero_negative`: the negative is ConditioningZeroOut of the positive (zeros of its shape);
    `post_cfg`: a post-CFG function (cfg_norm: the CFGNorm node); `comfy_positions` False: diffusers' rotary
    positions (QwenImageModel)."""
    ms = ms or C.Flux(shift=shift)
    total = steps if denoise >= 0.9999 else int(steps / denoise)
    sigmas = SCHEDULERS[schedule](ms, total)[-(steps + 1):]
    shape = (1, 16, height // 8, width // 8)
    latent = torch.zeros(shape)
    if init_image is not None:
        mean = pipe.vae.encode((2.0 * init_image - 1.0).unsqueeze(2)).latent_dist.mean[:, :, 0]
        latent = process_in(pipe.vae, mean)
    generator = torch.manual_seed(seed)
    noise = torch.randn(shape, generator=generator, dtype=torch.float32, device="cpu")
    cond = encoder(pipe.tokenizer, pipe.text_encoder, prompt)
    uncond = encoder(pipe.tokenizer, pipe.text_encoder, negative) if cfg != 1.0 else None
    if zero_negative and uncond is not None:
        uncond = torch.zeros_like(cond)
    x = C.CONST().noise_scaling(sigmas[0], noise, latent)
    kwargs = {}
    if sampler == "Euler a":
        kwargs["noise_sampler"] = lambda s, s_next: torch.randn(shape, generator=generator)
    model = QwenImageModel(pipe.transformer, ms, comfy_positions)
    out = SAMPLERS[sampler](CFGGuider(model, cond, uncond, cfg, post_cfg), x, sigmas, extra_args={}, **kwargs)
    image = pipe.vae.decode(process_out(pipe.vae, out).unsqueeze(2)).sample[:, :, 0]
    unit = torch.clamp((image.float() + 1.0) / 2.0, 0.0, 1.0)[0]
    return np.clip(255.0 * unit.permute(1, 2, 0).numpy(), 0, 255).astype(np.uint8)
