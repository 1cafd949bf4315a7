"""Chroma (lodestones; a Flux.1-schnell derivative): Flux's 2x2-packed 16-channel latents and transformer blocks,
T5-XXL alone as its text (no CLIP), and every modulation computed by an "approximator" network from the timestep
(its distilled-guidance input fixed at 0), so no guidance input: true CFG with a negative prompt is its use.

Sampled as ComfyUI samples it (comfy/supported_models.py Chroma: a Flux model, ModelSamplingFlux with no shift of
its own, so mu 1.15 at every resolution; timestep = sigma). The network is called as diffusers' ChromaPipeline
calls ChromaTransformer2DModel (T5 states, their attention mask, position ids 0 for text). Flux's packing and
position ids are reused from families.flux. Imported without torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from sdcli.families.base import Detected, FileParts, Json, Shapes
from sdcli.families.flow import FlowAdapter, flow_capabilities
from sdcli.families.flux import FLUX_PIPELINES, LATENT, PACKING, FluxDerivedFamily, image_ids, pack, unpack

if TYPE_CHECKING:
    from sdcli.conditioning.cond import Conditioning
    from sdcli.families.base import PromptEncoder

CHROMA_PIPELINES = {mode: cls.replace("Flux", "Chroma") for mode, cls in FLUX_PIPELINES.items()}
# The approximator's first layer marks a Chroma transformer (diffusers' CHECKPOINT_KEY_NAMES["chroma"]).
APPROXIMATOR = "distilled_guidance_layer.in_proj.weight"


class ChromaAdapter(FlowAdapter):
    """A diffusers ChromaTransformer2DModel as the loop's network: latents packed into tokens (odd sides wrapped
    round and cropped, as for Flux), T5 states as the text tokens (position ids 0) with the text attention mask
    from the conditioning extended by ones over the image tokens (ChromaPipeline._prepare_attention_mask: a
    float 0/1 mask, which the transformer's attention adds to the scores), no mask where the conditioning has
    none (ComfyUI's text path); the timestep is sigma."""

    packing = PACKING
    patch = PACKING
    label = "Chroma"

    def run(self, x: Any, t: Any, cond: Conditioning) -> Any:
        import torch

        from sdcli.families.chroma_attention import MASK_KEY, TEXT_KEY, use_mask_processor

        batch, _, h, w = x.shape
        tokens = pack(x)
        text = cond.crossattn.to(self.dtype)
        mask, masked = cond.extra.get("mask"), {}
        if mask is not None:  # diffusers' mask, handed to sdcli's processor whole (families.chroma_attention)
            mask = mask.to(x.device, self.dtype).expand(batch, -1)
            mask = torch.cat([mask, torch.ones(batch, tokens.shape[1], device=x.device, dtype=self.dtype)], dim=1)
            use_mask_processor(self.module)
            masked = {"joint_attention_kwargs": {MASK_KEY: mask, TEXT_KEY: text.shape[1]}}
        txt_ids = torch.zeros(text.shape[1], 3, device=x.device, dtype=x.dtype)
        out = self.module(hidden_states=tokens.to(self.dtype), encoder_hidden_states=text, timestep=t.to(self.dtype),
                          img_ids=image_ids(h, w, x.device, x.dtype), txt_ids=txt_ids, return_dict=False,
                          **masked)[0]
        return unpack(out, h, w)


@dataclass(frozen=True)
class ChromaFamily(FluxDerivedFamily):
    """Chroma: Flux's sampling rules and refusals (FluxFamily), its own network, text and detection."""

    adapter: ClassVar[type[FlowAdapter]] = ChromaAdapter
    clip_skip_why: ClassVar[str | None] = "has no CLIP text encoder (T5-XXL only)"
    # its transformer files and all-in-one checkpoints load by models.chroma_files
    file_parts: ClassVar[FileParts | None] = FileParts(("t5xxl",), "flux-vae", "chroma", own_parts=True)

    def detect(self, shapes: Shapes) -> bool:
        return any(k.endswith(APPROXIMATOR) for k in shapes)

    def detect_folder(self, index: Json, unet: Json) -> bool:
        return str(index.get("_class_name", "")).startswith("Chroma")

    def detected_from(self, shapes: Shapes, source: str) -> Detected:
        img_in = next((shapes[k] for k in shapes if k.endswith(("img_in.weight", "x_embedder.weight"))), None)
        return Detected(self, self.in_channels_of(int(img_in[1])) if img_in else LATENT.channels, "flow", False)

    def lora_state(self, pipe: Any, state: dict[str, Any]) -> dict[str, Any]:
        """kohya and ComfyUI files in BFL names renamed by sdcli at the model's width (models.flow_lora: diffusers'
        kohya Flux converter splits linear1 at Flux's released width only); PEFT files as they are."""
        from sdcli.models.flow_lora import bfl_layout, is_original, linear_shapes, original_to_peft

        shapes = linear_shapes(pipe.transformer)
        layout = bfl_layout(shapes)
        return original_to_peft(state, layout, shapes) if is_original(state, layout) else state

    def prompt_encoder(self, pipe: Any, clip_skip: int, emphasis: str, size: tuple[int, int],
                       distilled_cfg: float | None = None) -> PromptEncoder:
        from sdcli.conditioning.chroma import ChromaPromptEncoder

        return ChromaPromptEncoder(pipe.tokenizer, pipe.text_encoder, emphasis)


# True CFG 4 with a negative prompt and Euler (ComfyUI's Chroma use); Simple, which equals ComfyUI's simple (sdcli's
# Beta is the WebUI's; ComfyUI's template's beta is sdcli's Comfy Beta); 35 steps (diffusers' ChromaPipeline
# default, which its Chroma1-HD example runs).
CHROMA_DEFAULTS = {"steps": 35, "cfg_scale": 4.0, "sampler": "Euler", "schedule": "simple"}
CHROMA = ChromaFamily("chroma", "Chroma", CHROMA_PIPELINES, 1024, configs="chroma",
                      capabilities=flow_capabilities("Chroma"), latent=LATENT, defaults=CHROMA_DEFAULTS,
                      guidance=False, shift=1.15)
