"""Qwen-Image (Alibaba's 20B MMDiT): a flow-matching transformer on 16-channel latents of a Wan-2.1-style video
VAE (one frame), packed 2x2 into tokens as Flux packs them, Qwen2.5-VL's last hidden states of a chat-templated
prompt as its only text input, no guidance input: true CFG with a negative prompt.

Sampled as ComfyUI samples it (comfy/supported_models.py QwenImage: sampling_settings multiplier 1, shift 1.15 on
a FLUX model type, i.e. ModelSamplingFlux with mu 1.15 at every resolution; timestep = sigma; latent format Wan21,
per-channel (z - mean) / std). The network is called as diffusers' QwenImagePipeline calls
QwenImageTransformer2DModel (packed tokens, img_shapes for its RoPE, timestep = sigma). Flux's packing, sampling
rules and refusals are reused from families.flux. Imported without torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from sdcli.families.base import Detected, FileParts, Json, LatentFormat, Shapes
from sdcli.families.flow import FlowAdapter, find_key, flow_capabilities
from sdcli.families.flux import PACKING, FluxDerivedFamily, pack, unpack

if TYPE_CHECKING:
    from sdcli.conditioning.cond import Conditioning
    from sdcli.families.base import PromptEncoder

QWEN_PIPELINES = {"txt2img": "QwenImagePipeline", "img2img": "QwenImageImg2ImgPipeline",
                  "inpaint": "QwenImageInpaintPipeline", "outpaint": "QwenImageInpaintPipeline"}
# Keys only Qwen-Image's transformer has (diffusers' names, which its original files use too; ComfyUI prefixes
# them with model.diffusion_model.): the text input's RMS norm and the image stream's modulation.
QWEN_MARKS = ("txt_norm.weight", "transformer_blocks.0.img_mod.1.weight")


@dataclass(frozen=True)
class VideoLatentFormat(LatentFormat):
    """A Wan-style video VAE's latents, one frame: latent = (z - mean_c) / std_c per channel with the VAE config's
    latents_mean / latents_std (ComfyUI's latent_formats.Wan21, diffusers' Qwen-Image pipelines); the VAE takes
    and gives [B, C, 1, H, W]."""

    def _stats(self, vae_config: Any, like: Any) -> tuple[Any, Any]:
        import torch

        shape = (1, len(vae_config.latents_mean), 1, 1)
        mean = torch.tensor(vae_config.latents_mean).view(shape).to(like.device, like.dtype)
        std = torch.tensor(vae_config.latents_std).view(shape).to(like.device, like.dtype)
        return mean, std

    def to_vae(self, vae: Any, latent: Any) -> Any:
        mean, std = self._stats(vae.config, latent)
        return (latent * std + mean).unsqueeze(2)

    def from_vae(self, vae: Any, mean: Any) -> Any:
        z = mean[:, :, 0]
        channel_mean, std = self._stats(vae.config, z)
        return (z - channel_mean) / std

    def vae_pixels(self, pixels: Any) -> Any:
        return pixels.unsqueeze(2)

    def vae_image(self, sample: Any) -> Any:
        return sample[:, :, 0]


LATENT = VideoLatentFormat(channels=16, vae_scale=8, packing=PACKING)


class QwenImageAdapter(FlowAdapter):
    """A diffusers QwenImageTransformer2DModel as the loop's network: latents packed into 2x2 tokens (odd sides
    wrapped round and cropped after, as ComfyUI's pad_to_patch_size), img_shapes (1, rows/2, cols/2) per row for
    its RoPE, the Qwen2.5-VL states as the text (no mask: the loop batches only rows of one length, unpadded),
    timestep = sigma (the network scales it by 1000)."""

    packing = PACKING
    patch = PACKING
    label = "Qwen-Image"

    def run(self, x: Any, t: Any, cond: Conditioning) -> Any:
        batch, _, h, w = x.shape
        out = self.module(hidden_states=pack(x).to(self.dtype), encoder_hidden_states=cond.crossattn.to(self.dtype),
                          encoder_hidden_states_mask=None, timestep=t.to(self.dtype),
                          img_shapes=[[(1, h // PACKING, w // PACKING)]] * batch, return_dict=False)[0]
        return unpack(out.float(), h, w)


@dataclass(frozen=True)
class QwenImageFamily(FluxDerivedFamily):
    """Qwen-Image: Flux's sampling rules and refusals (FluxFamily), its own network, text, VAE and detection."""

    adapter: ClassVar[type[FlowAdapter]] = QwenImageAdapter
    clip_skip_why: ClassVar[str | None] = "has no CLIP skip (its text is Qwen2.5-VL's last hidden states)"
    file_parts: ClassVar[FileParts | None] = FileParts(("qwen25vl",), "qwen-vae", "qwenimage")  # models.qwenimage_files

    def detect(self, shapes: Shapes) -> bool:
        return all(find_key(shapes, mark) for mark in QWEN_MARKS)

    def detect_folder(self, index: Json, unet: Json) -> bool:
        return str(index.get("_class_name", "")).startswith("QwenImage")

    def detected_from(self, shapes: Shapes, source: str) -> Detected:
        img_in = find_key(shapes, "img_in.weight")
        return Detected(self, self.in_channels_of(int(shapes[img_in][1])) if img_in else LATENT.channels, "flow", False)

    def prompt_encoder(self, pipe: Any, clip_skip: int, emphasis: str, size: tuple[int, int],
                       distilled_cfg: float | None = None) -> PromptEncoder:
        from sdcli.conditioning.qwenimage import QwenImagePromptEncoder

        return QwenImagePromptEncoder(pipe.tokenizer, pipe.text_encoder, emphasis)


# ComfyUI's Qwen-Image template: true CFG 2.5 with a negative prompt, Euler, Simple (its 20 steps are the
# WebUI's default too). Its ModelSamplingAuraFlow 3.1 node is a workflow choice, not the model's default (mu 1.15).
QWEN_DEFAULTS = {"cfg_scale": 2.5, "sampler": "Euler", "schedule": "simple"}
QWEN_IMAGE = QwenImageFamily("qwen-image", "Qwen-Image", QWEN_PIPELINES, 1328,
                             capabilities=flow_capabilities("Qwen-Image"), latent=LATENT, defaults=QWEN_DEFAULTS,
                             guidance=False, shift=1.15)
