"""Z-Image (Tongyi's Z-Image Turbo and base): a single-stream flow transformer on 16-channel Flux-VAE latents
(2x2 patches made inside the network), Qwen3's second-to-last hidden states as its only text input.

Sampled as ComfyUI samples it (comfy/supported_models.py ZImage(Lumina2): ModelSamplingDiscreteFlow with
shift 3, multiplier 1; comfy/model_sampling.py CONST): rectified flow (sampling.parameterisation.Flow) whose
timestep is sigma; the network (ComfyUI's lumina NextDiT, diffusers' ZImageTransformer2DModel) takes 1 - sigma
and predicts minus the flow velocity, so the adapter hands it 1 - t and negates its output. Imported without
torch; torch-side code is imported when a method runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from sdcli.families.base import Detected, FileParts, Json, Shapes
from sdcli.families.flow import SIMPLE, FlowAdapter, FlowFamily, find_key, flow_capabilities
from sdcli.families.flux import LATENT as FLUX_LATENT
from sdcli.families.latent import LatentFormat

if TYPE_CHECKING:
    from sdcli.conditioning.cond import Conditioning
    from sdcli.families.base import PromptEncoder

ZIMAGE_PIPELINES = {"txt2img": "ZImagePipeline", "img2img": "ZImageImg2ImgPipeline",
                    "inpaint": "ZImageInpaintPipeline", "outpaint": "ZImageInpaintPipeline"}
FULL_DIM = 3840  # the published Z-Image transformer's width; narrower ones are sdcli's tiny models
PATCH = 2  # the network's patch side in latent cells
SHIFT = 3.0  # ComfyUI's ZImage sampling_settings
MULTIPLIER = 1.0
# The keys diffusers' infer_diffusers_model_type reads as "z-image-turbo" (original layout, ComfyUI's prefix
# or none), and the caption embedder's linear layer whose input width is the text encoder's hidden size.
ZIMAGE_MARK = "layers.0.adaLN_modulation.0.weight"
CAP_EMBEDDER = "cap_embedder.1.weight"
X_EMBEDDER = ("x_embedder.weight", "all_x_embedder.2-1.weight")  # original / diffusers names
# Z-Image decodes with Flux.1's VAE: Flux's live-preview map (ComfyUI's Lumina2/Z-Image use latent_formats.Flux).
LATENT = LatentFormat(channels=16, vae_scale=8, preview_rgb=FLUX_LATENT.preview_rgb,
                      preview_bias=FLUX_LATENT.preview_bias)


class ZImageAdapter(FlowAdapter):
    """A diffusers ZImageTransformer2DModel as the loop's network: each latent as a [C, 1, H, W] list item, the
    Qwen3 states of its row as its caption, timestep 1 - sigma (the network scales it by 1000), output negated
    (ComfyUI's lumina model does both). Odd latent sides are padded to even by wrapping round and cropped after,
    as ComfyUI's pad_to_patch_size does."""

    patch = PATCH
    label = "Z-Image"

    def run(self, x: Any, t: Any, cond: Conditioning) -> Any:
        import torch

        caps = list(cond.crossattn.to(self.dtype).unbind(0))  # rows of one length (the loop batches them so)
        out = self.module(list(x.to(self.dtype).unsqueeze(2).unbind(0)), (1.0 - t.float()), caps,
                          return_dict=False)[0]
        return -torch.stack([o.float() for o in out]).squeeze(2)


@dataclass(frozen=True)
class ZImageFamily(FlowFamily):
    """Z-Image Turbo and base (one architecture; their files do not tell them apart); Simple where the sampler's
    own schedule does not fit (ComfyUI's template)."""

    adapter: ClassVar[type[FlowAdapter]] = ZImageAdapter
    clip_skip_why: ClassVar[str | None] = "has no CLIP skip (its text is Qwen3's second-to-last layer)"
    full_widths: ClassVar[tuple[int, ...]] = (FULL_DIM,)
    # its transformer files and all-in-one checkpoints load by models.zimage_files
    file_parts: ClassVar[FileParts | None] = FileParts(("qwen3",), "flux-vae", "zimage", own_parts=True)

    def detect(self, shapes: Shapes) -> bool:
        return find_key(shapes, ZIMAGE_MARK) is not None and find_key(shapes, CAP_EMBEDDER) is not None

    def detect_folder(self, index: Json, unet: Json) -> bool:
        return str(index.get("_class_name", "")).startswith("ZImage")

    def detected_from(self, shapes: Shapes, source: str) -> Detected:
        embedder = next((shapes[k] for s in X_EMBEDDER if (k := find_key(shapes, s))), None)
        channels = LATENT.channels if embedder is None else int(embedder[1]) // (PATCH * PATCH)
        return Detected(self, channels, "flow", False)

    def lora_components(self) -> tuple[str, ...]:
        return ("transformer",)  # diffusers' ZImageLoraLoaderMixin loads into the transformer only

    def lora_state(self, pipe: Any, state: dict[str, Any]) -> dict[str, Any]:
        """Files in Z-Image's original names (ComfyUI's, kohya's: fused attention.qkv) renamed by sdcli
        (models.flow_lora); diffusers names in any spelling go to diffusers' converter as they are."""
        from sdcli.models.flow_lora import is_original, linear_shapes, original_to_peft, zimage_layout

        shapes = linear_shapes(pipe.transformer)
        layout = zimage_layout(shapes)
        return original_to_peft(state, layout, shapes) if is_original(state, layout) else state

    def released(self, config: Any) -> bool:
        return int(config.dim) in self.full_widths

    def prompt_encoder(self, pipe: Any, clip_skip: int, emphasis: str, size: tuple[int, int],
                       distilled_cfg: float | None = None) -> PromptEncoder:
        from sdcli.conditioning.zimage import ZImagePromptEncoder

        return ZImagePromptEncoder(pipe.tokenizer, pipe.text_encoder, emphasis)


# ComfyUI's Z-Image Turbo template: 8 steps (8 NFEs, as diffusers' ZImagePipeline example), CFG 1 (no unconditional
# pass), res_multistep (sdcli's Res Multistep; the default stays Euler, as diffusers samples it), Simple. Turbo and
# base share one architecture and their files do not tell them apart, so every Z-Image model gets Turbo's defaults:
# a base model needs --steps and --cfg-scale given.
ZIMAGE_DEFAULTS = {"steps": 8, "cfg_scale": 1.0, "sampler": "Euler", "schedule": SIMPLE}
ZIMAGE = ZImageFamily("zimage", "Z-Image", ZIMAGE_PIPELINES, 1024,
                      capabilities=flow_capabilities("Z-Image"), latent=LATENT, defaults=ZIMAGE_DEFAULTS,
                      table="discrete", shift=SHIFT, multiplier=MULTIPLIER)
