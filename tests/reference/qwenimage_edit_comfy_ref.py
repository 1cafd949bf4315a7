"""An independent reference of ComfyUI's Qwen-Image-Edit templates (image_qwen_image_edit, _2509), for the replay
parity tests: what ComfyUI's edit text encoder nodes do to the image, its text encoder's cut, its reference latents
in the network, sampled by qwenimage_ref's ComfyUI transcription.

Facts transcribed from comfyanonymous/ComfyUI (master, 2026):
- comfy_extras/nodes_qwen.py TextEncodeQwenImageEdit: the IMAGE ([B, H, W, C] in 0..1) scaled by
  sqrt(1024 * 1024 / (W * H)), each side round()ed, by comfy.utils.common_upscale(..., "area", "disabled") (torch's
  F.interpolate mode "area"); that image is the text encoder's one image and, with the node's VAE, VAE-encoded as
  the conditioning's reference_latents ([that latent], appended).
- TextEncodeQwenImageEditPlus: up to three images; each scaled likewise to 384 * 384 pixels for the text encoder
  (sides round()ed) and, with the VAE, to 1024 * 1024 pixels with sides round(side * scale / 8) * 8 for its
  reference latent; the text is "Picture i: <|vision_start|><|image_pad|><|vision_end|>" per image, then the
  prompt, in the edit system prompt's chat template.
- comfy/sd.py VAE.encode: the pixels cropped to whole multiples of the VAE's downscale (8), (side % 8) // 2 off the
  start; then the latent format's process_in (Wan 2.1: (z - mean) / std per channel).
- comfy/text_encoders/qwen_vl.py process_qwen2vl_images: h, w = round(side / 28) * 28 (scaled into 3136 ..
  12845056 pixels when outside), F.interpolate "bilinear" (align_corners False) of the float image, (x - mean) / std
  with CLIP's mean and std per channel, the frame repeated twice (temporal patch), patches in the order
  [t, h/28, w/28, 2, 2, C, 2, 14, 14]; image_grid_thw (1, h / 14, w / 14).
- comfy/text_encoders/qwen_image.py: the template's single <|image_pad|> becomes the image's embeddings (one per
  merged 2x2 patch); the last hidden states are cut after the second <|im_start|> and "user\\n".
- comfy/ldm/qwen_image/model.py _forward, ref_latents_method "index" (the default): each reference packed 2x2
  after the image's tokens with index k = 1, 2, ... (the rope's first axis), rows and columns centred as the
  image's (position - len // 2); the text's positions start at max(w_len // 2, h_len // 2) of the IMAGE's token
  grid; the output cut to the image's tokens.
The text encoder itself is transformers' Qwen2.5-VL (as the other Qwen references: ComfyUI's llama.py is the same
network); the transformer's blocks are diffusers' modules, run with the rotary positions above
(qwenimage_ref.RotaryPositions), not diffusers' own (which centre an odd side half a token off and start the text
after the largest grid).
Imports nothing from sdcli.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from tests.reference import qwenimage_ref as Q
from tests.reference.comfy_ref import CONST

SYSTEM = ("Describe the key features of the input image (color, shape, size, texture, objects, background), then "
          "explain how the user's text instruction should alter or modify the image. Generate a new image that meets "
          "the user's requirements while maintaining consistency with the original input where appropriate.")
TEMPLATE = "<|im_start|>system\n" + SYSTEM + "<|im_end|>\n<|im_start|>user\n{}<|im_end|>\n<|im_start|>assistant\n"
VISION = "<|vision_start|><|image_pad|><|vision_end|>"
MEAN, STD = (0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)


def load_image(path):
    """LoadImage: [1, H, W, 3] float32 in 0..1 (uint8 / 255)."""
    from PIL import Image

    with Image.open(path) as im:
        return torch.from_numpy(np.asarray(im.convert("RGB")).astype(np.float32) / 255.0)[None]


def scale_area(image, total, multiple=1):
    """The nodes' resize: [B, H, W, C] scaled to about `total` pixels, sides rounded to `multiple`, "area"."""
    samples = image.movedim(-1, 1)
    scale_by = math.sqrt(total / (samples.shape[3] * samples.shape[2]))
    width = round(samples.shape[3] * scale_by / multiple) * multiple
    height = round(samples.shape[2] * scale_by / multiple) * multiple
    return torch.nn.functional.interpolate(samples, size=(height, width), mode="area").movedim(1, -1)


def edit_node_images(images, plus=False, area=1024 * 1024, vision_area=384 * 384):
    """(what the text encoder sees, what the VAE encodes) of TextEncodeQwenImageEdit (`plus`: ...Plus) for a list
    of [1, H, W, 3] images. `area`, `vision_area`: the nodes' 1024 * 1024 and 384 * 384 (a tiny model: smaller)."""
    if not plus:
        scaled = scale_area(images[0], area)
        return [scaled], [scaled]
    return ([scale_area(im, vision_area) for im in images], [scale_area(im, area, 8) for im in images])


def vae_encode(vae, image):
    """VAE.encode of [1, H, W, 3]: cropped to multiples of 8 about (side % 8) // 2, the posterior's mean,
    process_in."""
    h, w = image.shape[1] // 8 * 8, image.shape[2] // 8 * 8
    top, left = (image.shape[1] % 8) // 2, (image.shape[2] % 8) // 2
    pixels = image[:, top:top + h, left:left + w].movedim(-1, 1)
    with torch.no_grad():
        mean = vae.encode((2.0 * pixels - 1.0).unsqueeze(2)).latent_dist.mean[:, :, 0]
    return Q.process_in(vae, mean)


def process_vision(image):
    """process_qwen2vl_images of one [1, H, W, 3] image: (pixel_values [N, 1176], image_grid_thw [1, 3])."""
    _, height, width, _ = image.shape
    factor = 28
    h_bar, w_bar = round(height / factor) * factor, round(width / factor) * factor
    if h_bar * w_bar > 12845056:
        beta = math.sqrt(height * width / 12845056)
        h_bar = max(factor, math.floor(height / beta / factor) * factor)
        w_bar = max(factor, math.floor(width / beta / factor) * factor)
    elif h_bar * w_bar < 3136:
        beta = math.sqrt(3136 / (height * width))
        h_bar, w_bar = math.ceil(height * beta / factor) * factor, math.ceil(width * beta / factor) * factor
    img = torch.nn.functional.interpolate(image.movedim(-1, 1), size=(h_bar, w_bar), mode="bilinear",
                                          align_corners=False)[0]
    normal = torch.stack([(img[c] - MEAN[c]) / STD[c] for c in range(3)])
    grid_h, grid_w = h_bar // 14, w_bar // 14
    patches = normal[None].repeat(2, 1, 1, 1).reshape(1, 2, 3, grid_h // 2, 2, 14, grid_w // 2, 2, 14)
    patches = patches.permute(0, 3, 6, 4, 7, 2, 1, 5, 8).reshape(grid_h * grid_w, 3 * 2 * 14 * 14)
    return patches, torch.tensor([[1, grid_h, grid_w]])


def encode(tokenizer, text_encoder, prompt, vision_images, plus=False):
    """The node's conditioning [1, tokens, dim]: the template with each image's pad token repeated per merged
    patch, Qwen2.5-VL's last hidden states, cut after the second <|im_start|> and "user\\n"."""
    processed = [process_vision(im) for im in vision_images]
    if plus:
        text = TEMPLATE.format("".join(f"Picture {i}: {VISION}" for i in range(1, len(processed) + 1)) + prompt)
    else:
        text = TEMPLATE.format(VISION + prompt)
    for _, grid in processed:
        text = text.replace("<|image_pad|>", "<|placeholder|>" * (int(grid.prod()) // 4), 1)
    ids = tokenizer(text.replace("<|placeholder|>", "<|image_pad|>"), add_special_tokens=False)["input_ids"]
    end = Q.template_start(tokenizer, ids)
    with torch.no_grad():
        t = torch.tensor([ids])
        out = text_encoder(input_ids=t, attention_mask=torch.ones_like(t), output_hidden_states=True,
                           pixel_values=torch.cat([p for p, _ in processed]),
                           image_grid_thw=torch.cat([g for _, g in processed]))
    return out.hidden_states[-1][:, end:].float()


class EditModel(Q.QwenImageModel):
    """qwenimage_ref's network call with the reference latents' tokens after the image's at ComfyUI's positions
    (Q.RotaryPositions in the transformer's place of diffusers' rope for the call), the output cut to the image's."""

    def __init__(self, transformer, ms, references, comfy_positions=True):
        super().__init__(transformer, ms)
        self.references = references  # [1, 16, h, w] each
        self.comfy_positions = comfy_positions  # False: diffusers' own rope (to show the placement matters)

    def network(self, x, timestep, context):
        rows, cols = x.shape[-2:]

        def tokens(z):
            z = torch.nn.functional.pad(z, (0, z.shape[-1] % 2, 0, z.shape[-2] % 2), mode="circular")
            n, ch, zh, zw = z.shape
            return z.reshape(n, ch, zh // 2, 2, zw // 2, 2).permute(0, 2, 4, 1, 3, 5).reshape(n, zh * zw // 4, ch * 4)

        b, c = x.shape[:2]
        grids = [((z.shape[-2] + 1) // 2, (z.shape[-1] + 1) // 2) for z in (x, *self.references)]
        hidden = torch.cat([tokens(x), *(tokens(r).expand(b, -1, -1) for r in self.references)], dim=1)
        original = self.transformer.pos_embed
        if self.comfy_positions:
            self.transformer.pos_embed = Q.RotaryPositions(list(original.axes_dim), grids)
        try:
            with torch.no_grad():
                out = self.transformer(hidden_states=hidden, encoder_hidden_states=context, timestep=timestep,
                                       img_shapes=[[(1, h, w) for h, w in grids]] * b,
                                       return_dict=False)[0][:, :grids[0][0] * grids[0][1]]
        finally:
            self.transformer.pos_embed = original
        h, w = grids[0][0] * 2, grids[0][1] * 2
        out = out.reshape(b, h // 2, w // 2, c, 2, 2).permute(0, 3, 1, 4, 2, 5).reshape(b, c, h, w)
        return out[:, :, :rows, :cols]


@torch.no_grad()
def sample(pipe, image_paths, prompt, negative="", seed=1, steps=3, cfg=1.0, ms=None, post_cfg=None, plus=False,
           area=1024 * 1024, vision_area=384 * 384, size=None, comfy_positions=True):
    """The template: the edit nodes' conditioning and references for both prompts, KSampler on the first image's
    VAEEncode at denoise 1 (its size: the first image's own, cut to whole latent cells; `size` (w, h) instead:
    an empty latent of that size), VAEDecode: one uint8 image [H, W, 3]. `comfy_positions` False: diffusers'
    rotary positions instead of ComfyUI's (not ComfyUI: to show that they matter)."""
    images = [load_image(p) for p in image_paths]
    seen, encoded = edit_node_images(images, plus, area, vision_area)
    references = [vae_encode(pipe.vae, im) for im in encoded]
    cond = encode(pipe.tokenizer, pipe.text_encoder, prompt, seen, plus)
    uncond = encode(pipe.tokenizer, pipe.text_encoder, negative, seen, plus) if cfg != 1.0 else None
    ms = ms or Q.C.Flux(shift=1.15)
    sigmas = Q.SCHEDULERS["Simple"](ms, steps)
    width, height = size or (images[0].shape[2], images[0].shape[1])
    shape = (1, 16, height // 8, width // 8)
    noise = torch.randn(shape, generator=torch.manual_seed(seed), dtype=torch.float32)
    x = CONST().noise_scaling(sigmas[0], noise, torch.zeros(shape))
    guider = Q.CFGGuider(EditModel(pipe.transformer, ms, references, comfy_positions), cond, uncond, cfg, post_cfg)
    out = Q.SAMPLERS["Euler"](guider, x, sigmas, extra_args={})
    pixels = pipe.vae.decode(Q.process_out(pipe.vae, out).unsqueeze(2)).sample[:, :, 0]
    unit = torch.clamp((pixels.float() + 1.0) / 2.0, 0.0, 1.0)[0]
    return np.clip(255.0 * unit.permute(1, 2, 0).numpy(), 0, 255).astype(np.uint8)
