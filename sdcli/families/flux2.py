"""Flux.2 [klein] (4B / 9B, step-distilled and base): a Flux-style double/single-stream transformer on 128-channel
latents (the 32-channel VAE latent patchified 2x2 and normalised per channel by the VAE's batch-norm statistics,
1/16 of the image side), Qwen3's hidden states 9, 18 and 27 side by side as its text, no guidance input.

Sampled as ComfyUI samples it (comfy/supported_models.py Flux2(Flux): ModelSamplingFlux with shift 2.02;
comfy/model_sampling.py CONST): rectified flow (sampling.parameterisation.Flow) on Flux's sigma table with mu 2.02,
the timestep being sigma. The network is called as diffusers' Flux2KleinPipeline calls Flux2Transformer2DModel
(tokens = latent cells, 4-axis position ids (0, row, column, 0) for the image and (0, 0, 0, i) for the text).
The default schedule is ComfyUI's Flux2Scheduler node (the "flux2" schedule type: mu from the image size and step
count, as diffusers' Flux2 pipelines compute it too), which ComfyUI's Flux.2 templates sample with; "simple" is
ComfyUI's KSampler on the model's own table (mu 2.02).
Flux.2 [dev] (Flux2DevFamily): Mistral Small 3's hidden states 10, 20 and 30 as its text, distilled guidance as a
network input (--distilled-cfg, as Flux.1 dev). Imported without torch.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from sdcli.families.base import Detected, FileParts, Json, Shapes
from sdcli.families.edit_inputs import EditInputs
from sdcli.families.flow import FlowAdapter, FlowFamily, find_key, flow_capabilities
from sdcli.families.flux import FLUX_UNSOUND_SCHEDULES
from sdcli.families.latent import LatentFormat

if TYPE_CHECKING:
    import torch

    from sdcli.conditioning.cond import Conditioning
    from sdcli.families.base import PromptEncoder
    from sdcli.sampling.parameterisation import Parameterisation

KLEIN = "Flux2KleinPipeline"
KLEIN_PIPELINES = {mode: KLEIN for mode in ("txt2img", "img2img", "inpaint", "outpaint", "edit")}
FULL_WIDTHS = (3072, 4096)  # Klein 4B's and 9B's transformer widths; narrower ones are sdcli's tiny models
SHIFT = 2.02  # ComfyUI's Flux2 sampling_settings: the mu of ModelSamplingFlux's table
FLUX2_SCHEDULE = "flux2"  # ComfyUI's Flux2Scheduler (sampling.schedules.flux2)
DEV_PIPELINES = {mode: "Flux2Pipeline" for mode in ("txt2img", "img2img", "inpaint", "outpaint", "edit")}
DEV_WIDTHS = (6144,)  # Flux.2 [dev]'s transformer width (48 heads x 128)
# The guidance embedding's weight in BFL's names and in diffusers': dev has it, Klein not.
GUIDANCE_MARKS = ("guidance_in.in_layer.weight", "time_guidance_embed.guidance_embedder.linear_1.weight")
REFERENCE_TIME = 10  # reference image i's time position id: 10 + 10 i (diffusers' _prepare_image_ids scale)
PATCH = 2  # the VAE latent's 2x2 patchify into the network's channels
# The key diffusers' infer_diffusers_model_type reads as "flux2" (original layout, ComfyUI's prefix or none).
FLUX2_MARK = "single_stream_modulation.lin.weight"
FLUX2_DIFFUSERS_MARK = "single_stream_modulation.linear.weight"  # the same layer in diffusers' names


def patchify(z: torch.Tensor) -> torch.Tensor:
    """[B, C, H, W] VAE latents -> [B, C*4, H/2, W/2] (each 2x2 patch channel-major, as diffusers' pipeline)."""
    b, c, h, w = z.shape
    z = z.reshape(b, c, h // PATCH, PATCH, w // PATCH, PATCH).permute(0, 1, 3, 5, 2, 4)
    return z.reshape(b, c * PATCH * PATCH, h // PATCH, w // PATCH)


def unpatchify(x: torch.Tensor) -> torch.Tensor:
    """patchify()'s inverse."""
    b, c, h, w = x.shape
    x = x.reshape(b, c // (PATCH * PATCH), PATCH, PATCH, h, w).permute(0, 1, 4, 2, 5, 3)
    return x.reshape(b, c // (PATCH * PATCH), h * PATCH, w * PATCH)


@dataclass(frozen=True)
class Flux2Latent(LatentFormat):
    """Flux.2's latents: the VAE posterior's mean patchified 2x2, then (z - running_mean) / sqrt(running_var +
    eps) with the VAE's batch-norm statistics (diffusers' Flux2KleinPipeline._encode_vae_image and its decode)."""

    @property
    def vae_channels(self) -> int:
        return self.channels // (PATCH * PATCH)

    def _stats(self, vae: Any, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        import torch

        mean = vae.bn.running_mean.view(1, -1, 1, 1).to(like.device, torch.float32)
        std = torch.sqrt(vae.bn.running_var.view(1, -1, 1, 1).float() + vae.config.batch_norm_eps).to(like.device)
        return mean, std

    def from_vae(self, vae: Any, mean: torch.Tensor) -> torch.Tensor:
        z = patchify(mean.float())
        bn_mean, bn_std = self._stats(vae, z)
        return (z - bn_mean) / bn_std

    def to_vae(self, vae: Any, latent: torch.Tensor) -> torch.Tensor:
        bn_mean, bn_std = self._stats(vae, latent)
        return unpatchify(latent.float() * bn_std + bn_mean)

    def preview_cells(self, latent: torch.Tensor) -> torch.Tensor:
        return unpatchify(latent) if latent.shape[1] == self.channels else latent  # else: no map fits, no preview


# The live preview's linear map: ComfyUI's measured factors for the Flux.2 VAE's 32 channels (latent_formats.Flux2),
# read on the normalised latent unpatchified (one pixel per VAE latent cell).
LATENT = Flux2Latent(channels=128, vae_scale=16, preview_rgb=(
    (0.0058, 0.0113, 0.0073), (0.0495, 0.0443, 0.0836), (-0.0099, 0.0096, 0.0644), (0.2144, 0.3009, 0.3652),
    (0.0166, -0.0039, -0.0054), (0.0157, 0.0103, -0.0160), (-0.0398, 0.0902, -0.0235), (-0.0052, 0.0095, 0.0109),
    (-0.3527, -0.2712, -0.1666), (-0.0301, -0.0356, -0.0180), (-0.0107, 0.0078, 0.0013), (0.0746, 0.0090, -0.0941),
    (0.0156, 0.0169, 0.0070), (-0.0034, -0.0040, -0.0114), (0.0032, 0.0181, 0.0080), (-0.0939, -0.0008, 0.0186),
    (0.0018, 0.0043, 0.0104), (0.0284, 0.0056, -0.0127), (-0.0024, -0.0022, -0.0030), (0.1207, -0.0026, 0.0065),
    (0.0128, 0.0101, 0.0142), (0.0137, -0.0072, -0.0007), (0.0095, 0.0092, -0.0059), (0.0000, -0.0077, -0.0049),
    (-0.0465, -0.0204, -0.0312), (0.0095, 0.0012, -0.0066), (0.0290, -0.0034, 0.0025), (0.0220, 0.0169, -0.0048),
    (-0.0332, -0.0457, -0.0468), (-0.0085, 0.0389, 0.0609), (-0.0076, 0.0003, -0.0043), (-0.0111, -0.0460, -0.0614),
), preview_bias=(-0.0329, -0.0718, -0.0851))


def position_ids(rows: int, cols: int, text: int, device: Any, dtype: Any,
                 time: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """The transformer's 4-axis position ids (time, row, column, index): image cells (time, r, c, 0) row-major
    (time 0: the image; a reference image's: REFERENCE_TIME steps), text tokens (0, 0, 0, i)."""
    import torch

    r = torch.arange(rows, device=device)[:, None].expand(rows, cols).reshape(-1)
    c = torch.arange(cols, device=device)[None, :].expand(rows, cols).reshape(-1)
    zeros = torch.zeros_like(r)
    img = torch.stack([torch.full_like(r, time), r, c, zeros], dim=-1).to(dtype)
    i = torch.arange(text, device=device)
    z = torch.zeros_like(i)
    return img, torch.stack([z, z, z, i], dim=-1).to(dtype)


class Flux2Adapter(FlowAdapter):
    """A diffusers Flux2Transformer2DModel as the loop's network: each latent cell one token ([B, H*W, 128]),
    the text encoder's stacked states as the text tokens, the timestep sigma and (dev) the distilled guidance from
    the conditioning (the transformer scales both by 1000 itself); Klein has no guidance embedding."""

    label = "Flux.2"

    def run(self, x: Any, t: Any, cond: Conditioning) -> Any:
        import torch

        from sdcli.families.flux import references_of

        b, c, rows, cols = x.shape
        img_ids, txt_ids = position_ids(rows, cols, cond.crossattn.shape[1], x.device, x.dtype)
        tokens, ids = [x.reshape(b, c, rows * cols).permute(0, 2, 1)], [img_ids]
        # An edit's reference latents: further tokens after the image's, reference i at time 10 + 10 i
        # (diffusers' Flux2KleinPipeline; ComfyUI's "index" placement).
        for i, ref in enumerate(references_of(cond)):
            tokens.append(ref.reshape(b, c, -1).permute(0, 2, 1).to(x.dtype))
            ref_rows, ref_cols = ref.shape[-2:]
            ids.append(position_ids(ref_rows, ref_cols, 0, x.device, x.dtype, REFERENCE_TIME * (i + 1))[0])
        guidance = cond.extra.get("guidance") if self.module.config.guidance_embeds else None
        out = self.module(hidden_states=torch.cat(tokens, dim=1).to(self.dtype),
                          encoder_hidden_states=cond.crossattn.to(self.dtype), timestep=t.to(self.dtype),
                          img_ids=torch.cat(ids), txt_ids=txt_ids,
                          guidance=None if guidance is None else guidance.to(x.device, self.dtype).expand(b),
                          return_dict=False)[0]
        return out[:, :rows * cols].float().permute(0, 2, 1).reshape(b, c, rows, cols)


@dataclass(frozen=True)
class Flux2Family(FlowFamily):
    """Flux.2 [klein]: step-distilled (CFG 1, a few steps) or base (true CFG) by model_index.json's is_distilled.
    Rectified flow on Flux's sigma table with ComfyUI's mu 2.02 (FlowFamily.shift), sampled by default on ComfyUI's
    Flux2Scheduler (mu from the image size and steps; --shift sets it)."""

    adapter: ClassVar[type[FlowAdapter]] = Flux2Adapter
    automatic: ClassVar[str] = FLUX2_SCHEDULE
    own_schedules: ClassVar[tuple[str, ...]] = (FLUX2_SCHEDULE,)
    unsound_schedules: ClassVar[Mapping[str, str]] = FLUX_UNSOUND_SCHEDULES
    clip_skip_why: ClassVar[str | None] = "has no CLIP skip (its text is Qwen3's layers 9, 18 and 27)"
    full_widths: ClassVar[tuple[int, ...]] = FULL_WIDTHS
    # its transformer files and all-in-one checkpoints load by models.flux2_files
    file_parts: ClassVar[FileParts | None] = FileParts(("qwen3",), "flux2-vae", "flux2", own_parts=True)

    comfy_edit_nodes: ClassVar[str | None] = "ImageScaleToTotalPixels -> VAEEncode -> ReferenceLatent"
    distilled: bool = True

    def detect(self, shapes: Shapes) -> bool:
        """A Flux.2 transformer file: klein's without a guidance embedding (distilled: a file cannot tell)."""
        marked = any(find_key(shapes, mark) is not None for mark in (FLUX2_MARK, FLUX2_DIFFUSERS_MARK))
        return marked and self.distilled and not any(find_key(shapes, g) is not None for g in GUIDANCE_MARKS)

    def detect_folder(self, index: Json, unet: Json) -> bool:
        name = str(index.get("_class_name", ""))
        return name.startswith("Flux2Klein") and bool(index.get("is_distilled", False)) == self.distilled

    def parameterisation(self, scheduler: Json, prediction: str | None = None,
                         shift: float | None = None, sampling: str | None = None) -> Parameterisation:
        """FlowFamily's, the --shift asked for also the Flux2 schedule's mu (its own from the size otherwise); a
        ModelSampling node's shift is its table's only (ComfyUI's Flux2Scheduler does not read the model's)."""
        param = super().parameterisation(scheduler, prediction, shift, sampling)
        param.schedule_mu = shift if sampling is None else None
        return param

    def detected_from(self, shapes: Shapes, source: str) -> Detected:
        return Detected(self, self.latent.channels, "flow", False)

    def lora_components(self) -> tuple[str, ...]:
        return ("transformer",)  # diffusers' Flux2LoraLoaderMixin loads into the transformer only

    def reference_size(self, size: tuple[int, int], native: int) -> tuple[int, int]:
        """As diffusers' Flux2KleinPipeline sizes a reference image: scaled down to at most native x native pixels
        (1024 x 1024 for the released models) keeping its aspect, then cut to whole tokens (16 px)."""
        width, height = size
        if width * height > native * native:
            scale = (native * native / (width * height)) ** 0.5
            width, height = int(width * scale), int(height * scale)
        return super().reference_size((width, height), native)

    def comfy_edit_inputs(self, images: Sequence[Any], native: int, scale: str | None = None) -> EditInputs:
        """ComfyUI's Flux.2 edit templates: each image scaled by ImageScaleToTotalPixels (`scale`: its method,
        megapixels, resolution steps; a tiny model's area scaled by its native side as diffusers' rules are) before
        its VAEEncode, which cuts it to whole 16 px latent cells about the centre; the edit at the first one's scaled
        size (GetImageSize -> EmptyFlux2LatentImage: whole cells, the sides floored) with the schedule sized by its
        exact pixels (GetImageSize -> Flux2Scheduler: round(width x height / 16^2) tokens, also where a side is not
        whole cells)."""
        from sdcli.errors import UsageError
        from sdcli.families.comfy_images import comfy_image, comfy_size, common_upscale, vae_input
        from sdcli.request.vocabulary import parse_reference_scale

        if scale is None:
            raise UsageError("--comfy-edit: a Flux.2 edit as ComfyUI's templates size it needs --reference-scale "
                             "'METHOD MEGAPIXELS STEPS' (their ImageScaleToTotalPixels)")
        method, megapixels, steps = parse_reference_scale(scale)
        area = megapixels * 1024 * 1024 * (1.0 if native >= 1024 else (native / 1024) ** 2)
        references, cell = [], self.latent.vae_scale
        sizes = [comfy_size(area, image.size, steps) for image in images]
        for image, size in zip(images, sizes, strict=True):
            references.append(vae_input(common_upscale(comfy_image(image), size, method), cell))
        width, height = sizes[0]
        return EditInputs(tuple(references), (), (references[0].shape[-1], references[0].shape[-2]),
                          round(width * height / (cell * cell)))

    def lora_state(self, pipe: Any, state: dict[str, Any]) -> dict[str, Any]:
        """sd-scripts' kohya files through diffusers' kohya Flux.2 converter, the layers it drops (the modulations,
        final_layer.adaLN_modulation.1) renamed by sdcli; ComfyUI/ai-toolkit files in BFL names renamed by sdcli
        (models.flow_lora), since diffusers' converter for them takes no alpha and leaves final_layer's (shift,
        scale) rows unswapped, unlike its weight converter; anything else (PEFT, LoKr, ...) as it is."""
        from diffusers.loaders.lora_conversion_utils import _convert_kohya_flux2_lora_to_diffusers

        from sdcli.models.flow_lora import (
            FLUX2_KOHYA_EXTRA,
            KOHYA,
            flux2_layout,
            is_original,
            linear_shapes,
            original_to_peft,
        )

        shapes = linear_shapes(pipe.transformer)
        layout = flux2_layout(shapes)
        if any(k.startswith(KOHYA) for k in state):
            extra = tuple(KOHYA + name.replace(".", "_") + "." for name in FLUX2_KOHYA_EXTRA)
            ours = {k: v for k, v in state.items() if k.startswith(extra)}
            out = original_to_peft(ours, layout, shapes) if ours else {}
            return out | _convert_kohya_flux2_lora_to_diffusers({k: v for k, v in state.items() if k not in ours})
        return original_to_peft(state, layout, shapes) if is_original(state, layout) else state

    def prompt_encoder(self, pipe: Any, clip_skip: int, emphasis: str, size: tuple[int, int],
                       distilled_cfg: float | None = None) -> PromptEncoder:
        from sdcli.conditioning.flux2 import Flux2PromptEncoder

        return Flux2PromptEncoder(pipe.tokenizer, pipe.text_encoder, emphasis)


_FLOW = flow_capabilities("Flux.2", loop_channels=(128,), references=4)
# ComfyUI's Klein templates: the distilled model at CFG 1 (no unconditional pass), Euler, 4 steps (BFL's klein
# release: step-distilled to 4), Flux2Scheduler; the base model with true CFG 4 and 50 steps (diffusers'
# Flux2KleinPipeline example for FLUX.2-klein-base-9B).
FLUX2_KLEIN = Flux2Family("flux2-klein", "Flux.2 klein", KLEIN_PIPELINES, 1024, capabilities=_FLOW,
                          latent=LATENT,
                          defaults={"steps": 4, "cfg_scale": 1.0, "sampler": "Euler", "schedule": FLUX2_SCHEDULE},
                          distilled=True, shift=SHIFT)
FLUX2_KLEIN_BASE = Flux2Family("flux2-klein-base", "Flux.2 klein base", KLEIN_PIPELINES, 1024,
                               capabilities=_FLOW, latent=LATENT,
                               defaults={"steps": 50, "cfg_scale": 4.0, "sampler": "Euler",
                                         "schedule": FLUX2_SCHEDULE},
                               distilled=False, shift=SHIFT)
