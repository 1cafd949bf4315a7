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

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from sdcli.conditioning.cond import COMFY_PLACEMENT
from sdcli.families.base import Detected, FileParts, Json, Shapes
from sdcli.families.edit_inputs import EditInputs
from sdcli.families.flow import FlowAdapter, find_key, flow_capabilities
from sdcli.families.flux import PACKING, FluxDerivedFamily, pack, references_of, unpack
from sdcli.families.latent import LatentFormat

if TYPE_CHECKING:
    from sdcli.conditioning.cond import Conditioning
    from sdcli.families.base import PromptEncoder

QWEN_PIPELINES = {"txt2img": "QwenImagePipeline", "img2img": "QwenImageImg2ImgPipeline",
                  "inpaint": "QwenImageInpaintPipeline", "outpaint": "QwenImageInpaintPipeline"}
# Keys only Qwen-Image's transformer has (diffusers' names, which its original files use too; ComfyUI prefixes
# them with model.diffusion_model.): the text input's RMS norm and the image stream's modulation.
QWEN_MARKS = ("txt_norm.weight", "transformer_blocks.0.img_mod.1.weight")
RELEASED_AREA = 1024 * 1024  # the pixels diffusers' edit pipelines size a reference image to (VAE_IMAGE_SIZE)
CONDITION_AREA = 384 * 384  # and Edit Plus each image Qwen2.5-VL sees (CONDITION_IMAGE_SIZE)


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


# The live preview's linear map: ComfyUI's measured factors for the Wan 2.1 VAE's normalised latents
# (latent_formats.Wan21), which Qwen-Image's VAE shares.
LATENT = VideoLatentFormat(channels=16, vae_scale=8, packing=PACKING, preview_rgb=(
    (-0.1299, -0.1692, 0.2932), (0.0671, 0.0406, 0.0442), (0.3568, 0.2548, 0.1747), (0.0372, 0.2344, 0.1420),
    (0.0313, 0.0189, -0.0328), (0.0296, -0.0956, -0.0665), (-0.3477, -0.4059, -0.2925), (0.0166, 0.1902, 0.1975),
    (-0.0412, 0.0267, -0.1364), (-0.1293, 0.0740, 0.1636), (0.0680, 0.3019, 0.1128), (0.0032, 0.0581, 0.0639),
    (-0.1251, 0.0927, 0.1699), (0.0060, -0.0633, 0.0005), (0.3477, 0.2275, 0.2950), (0.1984, 0.0913, 0.1861),
), preview_bias=(-0.1835, -0.0868, -0.3360))


class QwenImageAdapter(FlowAdapter):
    """A diffusers QwenImageTransformer2DModel as the loop's network: latents packed into 2x2 tokens (odd sides
    wrapped round and cropped after, as ComfyUI's pad_to_patch_size), img_shapes (1, rows/2, cols/2) per row for
    its RoPE, the Qwen2.5-VL states as the text (no mask: the loop batches only rows of one length, unpadded),
    timestep = sigma (the network scales it by 1000). An edit's reference latents (odd sides wrapped round too) are
    packed after the image's tokens, each with its own img_shapes entry, the output cut to the image's tokens
    (diffusers' QwenImageEditPipeline). On ComfyUI's path (COMFY_PLACEMENT: --comfy-edit, or the Qwen encoders'
    --emphasis comfy, as a replayed ComfyUI graph) at ComfyUI's rotary positions (families.qwen_rotary: the same as
    diffusers' only where every grid has even sides and the image's longer side is the longest), so a txt2img at an
    odd token grid (the native 1328 px: 83 tokens a side) too; sdcli's own path keeps diffusers'."""

    packing = PACKING
    patch = PACKING
    label = "Qwen-Image"

    def run(self, x: Any, t: Any, cond: Conditioning) -> Any:
        import torch

        from sdcli.families.flow import pad_to_patches
        from sdcli.families.qwen_rotary import QWEN_ROTARY_KEY, comfy_rotary, use_rotary_processor

        batch, _, h, w = x.shape
        tokens, grids = [pack(x)], [(h // PACKING, w // PACKING)]
        for ref in references_of(cond):  # an edit's (Qwen-Image-Edit): after the image's tokens, as diffusers
            ref = pad_to_patches(ref, PACKING)
            tokens.append(pack(ref).to(x.dtype))
            grids.append((ref.shape[-2] // PACKING, ref.shape[-1] // PACKING))
        placed = {}
        # ComfyUI's path (--comfy-edit, --emphasis comfy): its positions where they are not diffusers' (an odd side
        # of the image's grid, an edit's references)
        if COMFY_PLACEMENT in cond.extra and (len(grids) > 1 or any(side % 2 for side in grids[0])):
            use_rotary_processor(self.module)
            placed = {"attention_kwargs": {QWEN_ROTARY_KEY: comfy_rotary(self.module, grids, cond.crossattn.shape[1],
                                                                         x.device)}}
        out = self.module(hidden_states=torch.cat(tokens, dim=1).to(self.dtype),
                          encoder_hidden_states=cond.crossattn.to(self.dtype), encoder_hidden_states_mask=None,
                          timestep=t.to(self.dtype), img_shapes=[[(1, *grid) for grid in grids]] * batch,
                          return_dict=False, **placed)[0]
        return unpack(out[:, :tokens[0].shape[1]].float(), h, w)


@dataclass(frozen=True)
class QwenImageFamily(FluxDerivedFamily):
    """Qwen-Image: Flux's sampling rules and refusals (FluxFamily), its own network, text, VAE and detection."""

    adapter: ClassVar[type[FlowAdapter]] = QwenImageAdapter
    clip_skip_why: ClassVar[str | None] = "has no CLIP skip (its text is Qwen2.5-VL's last hidden states)"
    # its transformer files and all-in-one checkpoints load by models.qwenimage_files
    file_parts: ClassVar[FileParts | None] = FileParts(("qwen25vl",), "qwen-vae", "qwenimage", own_parts=True)

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


@dataclass(frozen=True)
class QwenImageEditFamily(QwenImageFamily):
    """Qwen-Image-Edit (2508) and Edit Plus (2509): Qwen-Image's transformer trained to edit by instruction with one
    reference image (Plus: several), from a folder whose model_index.json names QwenImageEditPipeline
    (QwenImageEditPlusPipeline)."""

    comfy_edit_nodes: ClassVar[str | None] = "TextEncodeQwenImageEdit(Plus)"
    plus: bool = False  # Edit Plus (2509): several images, each also at CONDITION_AREA for Qwen2.5-VL

    def detect(self, shapes: Shapes) -> bool:
        return False  # its transformer files have Qwen-Image's keys: read (and loaded) as Qwen-Image

    def detect_folder(self, index: Json, unet: Json) -> bool:
        return str(index.get("_class_name", "")) == ("QwenImageEditPlusPipeline" if self.plus
                                                     else "QwenImageEditPipeline")

    def edit_prompt_encoder(self, pipe: Any, encoder: PromptEncoder, images: Sequence[Any],
                            originals: Sequence[Any], seen: Sequence[Any] = ()) -> PromptEncoder:
        """Qwen2.5-VL sees the reference images with the instruction (conditioning.qwenimage_edit): Edit the fitted
        image (diffusers' prompt_image); Edit Plus each image as given resized to its CONDITION_AREA size (Lanczos,
        as the pipeline's image_processor.resize), as "Picture i"; the literal-prompt rule of `encoder` kept.
        --comfy-edit's `seen` pixels go through ComfyUI's own vision preprocessing (comfy_vision_inputs)."""
        from PIL import Image

        from sdcli.conditioning.qwenimage_edit import QwenImageEditPromptEncoder

        emphasis = getattr(encoder, "emphasis", "original")
        if seen:
            return QwenImageEditPromptEncoder(pipe.tokenizer, pipe.text_encoder, list(seen), emphasis,
                                              pictures=self.plus, comfy=True)
        seen = list(images)
        if self.plus:
            scale = self._scale(self.native_size_of(pipe))
            seen = [im.resize(_dimensions(CONDITION_AREA * scale, im.size), Image.Resampling.LANCZOS)
                    for im in originals]
        return QwenImageEditPromptEncoder(pipe.tokenizer, pipe.text_encoder, seen, emphasis, pictures=self.plus)

    def comfy_edit_inputs(self, images: Sequence[Any], native: int, scale: str | None = None) -> EditInputs:
        """ComfyUI's TextEncodeQwenImageEdit: each image (there: one) scaled to RELEASED_AREA pixels, sides rounded
        to whole pixels, by torch's "area" interpolation, is both Qwen2.5-VL's input and the reference the VAE
        encodes (which crops it to whole latent cells about the centre); Edit Plus (TextEncodeQwenImageEditPlus):
        Qwen2.5-VL sees each at CONDITION_AREA pixels, the VAE encodes each at RELEASED_AREA with sides rounded to
        multiples of 8. A tiny model's areas are scaled by its native side as the diffusers rules' are. The edit's
        size is the first image's own, cropped to whole latent cells (the template's VAEEncode of the image)."""
        if scale is not None:
            from sdcli.errors import UsageError

            raise UsageError("--reference-scale: Qwen-Image-Edit's ComfyUI nodes size their images themselves "
                             "(--comfy-edit alone)")
        from sdcli.families.comfy_images import comfy_image, comfy_size, common_upscale, vae_input

        shrink, cell = self._scale(native), self.latent.vae_scale
        size = (images[0].size[0] // cell * cell, images[0].size[1] // cell * cell)
        references, seen = [], []
        for image in images:
            pixels = comfy_image(image)
            if self.plus:
                seen.append(common_upscale(pixels, comfy_size(CONDITION_AREA * shrink, image.size), "area"))
                scaled = common_upscale(pixels, comfy_size(RELEASED_AREA * shrink, image.size, cell), "area")
            else:
                scaled = common_upscale(pixels, comfy_size(RELEASED_AREA * shrink, image.size), "area")
                seen.append(scaled)
            references.append(vae_input(scaled, cell))
        seen = [image.movedim(-1, 1) for image in seen]
        return EditInputs(tuple(references), tuple(seen), size)

    def reference_size(self, size: tuple[int, int], native: int) -> tuple[int, int]:
        """diffusers' edit pipelines: the image's aspect ratio at 1024 x 1024 pixels (a tiny model: scaled by its
        native side / 1024), each side rounded to a multiple of 32 (their calculate_dimensions)."""
        return _dimensions(RELEASED_AREA * self._scale(native), size)

    def edit_size(self, sizes: Sequence[tuple[int, int]]) -> tuple[int, int]:
        """Edit: the image's size; Edit Plus: the last image's (QwenImageEditPlusPipeline)."""
        return sizes[-1] if self.plus else sizes[0]

    @staticmethod
    def _scale(native: int) -> float:
        """Pixel areas of the released model's rules, for a model of native side `native` (tiny: smaller)."""
        return 1.0 if native >= 1024 else (native / 1024) ** 2


def _dimensions(area: float, size: tuple[int, int]) -> tuple[int, int]:
    """diffusers' calculate_dimensions: `size`'s aspect ratio at `area` pixels, sides rounded to multiples of 32."""
    width = math.sqrt(area * size[0] / size[1])
    height = width * size[1] / size[0]
    return max(32, round(width / 32) * 32), max(32, round(height / 32) * 32)


# `edit` runs on Qwen-Image's pipeline class: sdcli's loop samples and uses only its components, and the edit
# pipeline's own class cannot be built without its Qwen2VLProcessor (which needs torchvision in transformers 5).
QWEN_IMAGE_EDIT = QwenImageEditFamily("qwen-image-edit", "Qwen-Image-Edit",
                                      {**QWEN_PIPELINES, "edit": "QwenImagePipeline"}, 1328,
                                      capabilities=flow_capabilities("Qwen-Image", references=1), latent=LATENT,
                                      defaults=QWEN_DEFAULTS, guidance=False, shift=1.15)
# Edit Plus (2509): up to 3 images, as ComfyUI's TextEncodeQwenImageEditPlus node takes them.
QWEN_IMAGE_EDIT_PLUS = QwenImageEditFamily("qwen-image-edit-plus", "Qwen-Image-Edit Plus",
                                           {**QWEN_PIPELINES, "edit": "QwenImagePipeline"}, 1328,
                                           capabilities=flow_capabilities("Qwen-Image", references=3), latent=LATENT,
                                           defaults=QWEN_DEFAULTS, guidance=False, shift=1.15, plus=True)
