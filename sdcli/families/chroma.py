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
from typing import TYPE_CHECKING, Any

from sdcli.families.base import Capabilities, Control, Detected, Json, ModuleAdapter, NetworkAdapter, Shapes
from sdcli.families.flux import FLUX_PIPELINES, LATENT, PACKING, TINY_SIZE, FluxFamily, image_ids, pack, unpack

if TYPE_CHECKING:
    from sdcli.conditioning.cond import Conditioning
    from sdcli.families.base import PromptEncoder
    from sdcli.request.generation import GenerationRequest
    from sdcli.sampling.samplers import Sampler

CHROMA_PIPELINES = {mode: cls.replace("Flux", "Chroma") for mode, cls in FLUX_PIPELINES.items()}
FULL_WIDTH = 3072  # the published Chroma transformer's width (24 heads of 128)
# The approximator's first layer marks a Chroma transformer (diffusers' CHECKPOINT_KEY_NAMES["chroma"]).
APPROXIMATOR = "distilled_guidance_layer.in_proj.weight"


class ChromaAdapter(ModuleAdapter):
    """A diffusers ChromaTransformer2DModel as the loop's network: latents packed into tokens (odd sides wrapped
    round and cropped, as for Flux), T5 states as the text tokens (position ids 0) with the text attention mask
    from the conditioning extended by ones over the image tokens (ChromaPipeline._prepare_attention_mask: a
    float 0/1 mask, which the transformer's attention adds to the scores); the timestep is sigma."""

    packing = PACKING

    def __call__(self, x: Any, t: Any, cond: Conditioning, control: Control | None = None) -> Any:
        import torch

        if control is not None:
            raise ValueError("Chroma models take no ControlNet residuals")
        _, _, rows, cols = x.shape
        x = torch.nn.functional.pad(x, (0, cols % PACKING, 0, rows % PACKING), mode="circular")
        batch, _, h, w = x.shape
        tokens = pack(x)
        text = cond.crossattn.to(self.dtype)
        mask = cond.extra["mask"].to(x.device, self.dtype).expand(batch, -1)
        mask = torch.cat([mask, torch.ones(batch, tokens.shape[1], device=x.device, dtype=self.dtype)], dim=1)
        txt_ids = torch.zeros(text.shape[1], 3, device=x.device, dtype=x.dtype)
        out = self.module(hidden_states=tokens.to(self.dtype), encoder_hidden_states=text, timestep=t.to(self.dtype),
                          img_ids=image_ids(h, w, x.device, x.dtype), txt_ids=txt_ids, attention_mask=mask,
                          return_dict=False)[0]
        return unpack(out, h, w)[:, :, :rows, :cols]


@dataclass(frozen=True)
class ChromaFamily(FluxFamily):
    """Chroma: Flux's sampling rules and refusals (FluxFamily), its own network, text and detection."""

    def detect(self, shapes: Shapes) -> bool:
        return any(k.endswith(APPROXIMATOR) for k in shapes)

    def detect_folder(self, index: Json, unet: Json) -> bool:
        return str(index.get("_class_name", "")).startswith("Chroma")

    def detected_from(self, shapes: Shapes, source: str) -> Detected:
        """Chroma single files are recognised but not loaded yet (diffusers' converter is full-width only)."""
        from sdcli.errors import ModelError

        raise ModelError(f"{source}: a {self.label} single file; sdcli loads Chroma from a diffusers folder only "
                         "(ChromaPipeline layout: transformer, text_encoder, tokenizer, vae, scheduler)")

    def check(self, request: GenerationRequest, sampler: Sampler) -> None:
        """Flux's refusals (samplers, schedules, eps/v, refiner, ControlNet), CLIP skip named for T5."""
        from sdcli.errors import UsageError

        if request.clip_skip != 1:
            raise UsageError(f"--clip-skip: a {self.label} model has no CLIP text encoder (T5-XXL only)")
        super().check(request, sampler)

    def lora_components(self) -> tuple[str, ...]:
        return ("transformer",)

    def lora_state(self, pipe: Any, state: dict[str, Any]) -> dict[str, Any]:
        return state

    def network(self, pipe: Any) -> NetworkAdapter:
        return ChromaAdapter(pipe.transformer)

    def native_size_of(self, pipe: Any) -> int:
        config = pipe.transformer.config
        width = int(config.num_attention_heads) * int(config.attention_head_dim)
        return self.native_size if width == FULL_WIDTH else TINY_SIZE

    def inpainting_input(self, mask: Any, masked_latent: Any) -> Any:
        raise NotImplementedError("Chroma has no dedicated inpainting model")

    def prompt_encoder(self, pipe: Any, clip_skip: int, emphasis: str, size: tuple[int, int],
                       distilled_cfg: float | None = None) -> PromptEncoder:
        from sdcli.conditioning.chroma import ChromaPromptEncoder

        return ChromaPromptEncoder(pipe.tokenizer, pipe.text_encoder, emphasis)


# True CFG 4 with a negative prompt and Euler (ComfyUI's Chroma use); Simple, which equals ComfyUI's simple (sdcli's
# Beta is the WebUI's, not ComfyUI's beta_scheduler). Steps are not a family default (the WebUI's 20 stay).
CHROMA_DEFAULTS = {"cfg_scale": 4.0, "sampler": "Euler", "schedule": "simple"}
CHROMA = ChromaFamily("chroma", "Chroma", CHROMA_PIPELINES, 1024, configs="chroma",
                      capabilities=Capabilities(loop_channels=(16,), inpainting_channels=None, embeddings={},
                                                skip_uncond_at_cfg1=True, timestep_samplers=False, shift=True,
                                                low_bits=True, applies_to="Chroma"),
                      latent=LATENT, defaults=CHROMA_DEFAULTS, gpu_dtype="bf16", guidance=False, mu=1.15)
