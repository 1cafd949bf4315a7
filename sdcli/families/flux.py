"""Flux.1 (dev, schnell, Fill): a flow-matching transformer on 16-channel latents packed 2x2 into tokens,
T5-XXL token states + the CLIP-L pooled vector as its text, distilled guidance as an input (dev, Fill).

Sampled as Forge samples it (backend/modules/k_prediction.py PredictionFlux; ComfyUI's ModelSamplingFlux):
rectified flow (sampling.parameterisation.Flow) on a 10,000-point sigma table with mu 1.15 (schnell: 1.0)
at every resolution, the timestep being sigma itself. Imported without torch; torch-side code is
imported when a method runs.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from sdcli.families.base import Detected, FileParts, Json, Shapes
from sdcli.families.flow import FLOW_UNSOUND_SCHEDULES, FlowAdapter, FlowFamily, flow_capabilities
from sdcli.families.latent import LatentFormat

if TYPE_CHECKING:
    from sdcli.conditioning.cond import Conditioning
    from sdcli.families.base import PromptEncoder

FLUX_PIPELINES = {"txt2img": "FluxPipeline", "img2img": "FluxImg2ImgPipeline",
                  "inpaint": "FluxInpaintPipeline", "outpaint": "FluxInpaintPipeline"}
FILL_PIPELINES = {"inpaint": "FluxFillPipeline", "outpaint": "FluxFillPipeline"}
# Flux Control (BFL's Canny/Depth dev): the packed latent, then the control image's packed latent (64 + 64).
CONTROL_PIPELINES = {"txt2img": "FluxControlPipeline", "img2img": "FluxControlImg2ImgPipeline",
                     "inpaint": "FluxControlInpaintPipeline"}
FULL_WIDTH = 3072  # the published Flux.1 transformer's width; narrower ones are sdcli's tiny models
# BFL key names (transformer-only files; ComfyUI prefixes them with model.diffusion_model.)
BFL_IMG_IN = "img_in.weight"
BFL_GUIDANCE = "guidance_in.in_layer.weight"
DIFFUSERS_IMG_IN = "x_embedder.weight"
DIFFUSERS_GUIDANCE = "time_text_embed.guidance_embedder.linear_1.weight"
PACKING = 2
# Schedule types that do not fit Flux's sigma table (Forge runs them, to no good image), and why.
FLUX_UNSOUND_SCHEDULES = {**FLOW_UNSOUND_SCHEDULES, "uniform": "reads timesteps 9999..0 as sigmas"}
# The live preview's linear map (ComfyUI's measured factors for the Flux VAE's 16 channels).
LATENT = LatentFormat(channels=16, vae_scale=8, packing=PACKING, preview_rgb=(
    (-0.0346, 0.0244, 0.0681), (0.0034, 0.0210, 0.0687), (0.0275, -0.0668, -0.0433), (-0.0174, 0.0160, 0.0617),
    (0.0859, 0.0721, 0.0329), (0.0004, 0.0383, 0.0115), (0.0405, 0.0861, 0.0915), (-0.0236, -0.0185, -0.0259),
    (-0.0245, 0.0250, 0.1180), (0.1008, 0.0755, -0.0421), (-0.0515, 0.0201, 0.0011), (0.0428, -0.0012, -0.0036),
    (0.0817, 0.0765, 0.0749), (-0.1264, -0.0522, -0.1103), (-0.0280, -0.0881, -0.0499), (-0.1262, -0.0982, -0.0778),
), preview_bias=(-0.0329, -0.0718, -0.0851))


def pack(x: Any) -> Any:
    """[B, C, H, W] latents -> [B, H/2 * W/2, C * 4] tokens (each 2x2 patch, channel-major)."""
    b, c, h, w = x.shape
    x = x.reshape(b, c, h // PACKING, PACKING, w // PACKING, PACKING).permute(0, 2, 4, 1, 3, 5)
    return x.reshape(b, (h // PACKING) * (w // PACKING), c * PACKING * PACKING)


def unpack(tokens: Any, h: int, w: int) -> Any:
    """pack()'s inverse for latents of h x w cells."""
    b, _, d = tokens.shape
    c = d // (PACKING * PACKING)
    x = tokens.reshape(b, h // PACKING, w // PACKING, c, PACKING, PACKING).permute(0, 3, 1, 4, 2, 5)
    return x.reshape(b, c, h, w)


def image_ids(h: int, w: int, device: Any, dtype: Any, index: int = 0, rows_from: int = 0, cols_from: int = 0) -> Any:
    """The transformer's position ids of the tokens of an h x w latent: (index, row, column) per 2x2 patch, rows
    and columns counted from `rows_from`/`cols_from` (a reference image's offset, in patches)."""
    import torch

    rows = torch.arange(h // PACKING, device=device, dtype=dtype)[:, None].expand(h // PACKING, w // PACKING)
    cols = torch.arange(w // PACKING, device=device, dtype=dtype)[None, :].expand(h // PACKING, w // PACKING)
    return torch.stack([torch.full_like(rows, index), rows + rows_from, cols + cols_from], dim=-1).reshape(-1, 3)


def references_of(cond: Conditioning) -> list[Any]:
    """An edit's reference latents [B, C, h, w] in the conditioning (execution.references), in order."""
    refs = cond.extra.get("references") or {}
    return [refs[key] for key in sorted(refs, key=int)]


def kontext_tokens(refs: list[Any], device: Any, dtype: Any) -> tuple[list[Any], list[Any]]:
    """Reference latents as Flux.1 Kontext sees them, as ComfyUI places them (comfy/ldm/flux/model.py, its default
    "offset" method): packed tokens with ids (1, row, column), each further reference beside (or below) the ones
    before it, on the side that keeps the whole arrangement squarer; offsets in latent cells rounded to patches."""
    tokens, ids = [], []
    height = width = 0
    for ref in refs:
        rows, cols = ref.shape[-2:]
        down = right = 0
        if rows + height > cols + width:
            right = width
        else:
            down = height
        height, width = max(height, rows + down), max(width, cols + right)
        tokens.append(pack(ref))
        ids.append(image_ids(rows, cols, device, dtype, 1, (down + 1) // PACKING, (right + 1) // PACKING))
    return tokens, ids


class FluxAdapter(FlowAdapter):
    """A diffusers FluxTransformer2DModel as the loop's network: latents packed into tokens, T5 states as the
    text tokens (position ids 0), the pooled CLIP vector and the distilled guidance from the conditioning, an
    edit's reference latents (Kontext) as further image tokens; the timestep is sigma (the transformer scales it,
    and the guidance, by 1000 itself). Odd latent sides are padded to even by wrapping round and cropped after, as
    Forge's IntegratedFluxTransformer2DModel does."""

    packing = PACKING
    patch = PACKING
    label = "Flux"

    def run(self, x: Any, t: Any, cond: Conditioning) -> Any:
        import torch

        _, _, h, w = x.shape
        guidance = cond.extra.get("guidance") if self.module.config.guidance_embeds else None
        txt_ids = torch.zeros(cond.crossattn.shape[1], 3, device=x.device, dtype=x.dtype)
        tokens, ids = [pack(x)], [image_ids(h, w, x.device, x.dtype)]
        refs = kontext_tokens(references_of(cond), x.device, x.dtype)  # an edit's: after the image's own tokens
        tokens, ids = tokens + [r.to(x.dtype) for r in refs[0]], ids + refs[1]
        out = self.module(hidden_states=torch.cat(tokens, dim=1), encoder_hidden_states=cond.crossattn.to(self.dtype),
                          pooled_projections=cond.extra["pooled"].to(self.dtype), timestep=t.to(self.dtype),
                          img_ids=torch.cat(ids), txt_ids=txt_ids,
                          guidance=None if guidance is None else guidance.to(x.device, self.dtype),
                          return_dict=False)[0]
        return unpack(out[:, :tokens[0].shape[1]], h, w)  # the image's own tokens: the references' are dropped


@dataclass(frozen=True)
class FluxFamily(FlowFamily):
    """Flux.1 dev / schnell (by the guidance embedding) and Fill (an inpainting-only transformer); rectified flow
    on Flux's sigma table with Forge's/ComfyUI's fixed mu (FlowFamily.shift: 1.15, schnell 1.0)."""

    adapter: ClassVar[type[FlowAdapter]] = FluxAdapter
    big_text_encoders: ClassVar[tuple[str, ...]] = ("text_encoder_2",)  # T5-XXL (CLIP-L stays)
    unsound_schedules: ClassVar[Mapping[str, str]] = FLUX_UNSOUND_SCHEDULES
    clip_skip_why: ClassVar[str | None] = "has no CLIP skip (its CLIP-L gives only the pooled vector)"
    controlnet_why: ClassVar[str] = ("takes no Stable Diffusion ControlNet (a Flux Control model or a BFL control "
                                     "LoRA takes --control-image alone)")
    full_widths: ClassVar[tuple[int, ...]] = (FULL_WIDTH,)
    file_parts: ClassVar[FileParts | None] = FileParts(("clip_l", "t5xxl"), "flux-vae", "flux", own_parts=True)

    guidance: bool = True  # a distilled-guidance input (dev, Fill); schnell has none
    in_features: int = 4 * LATENT.channels  # img_in's inputs a token: 64; Fill 384; Control 128

    def detect(self, shapes: Shapes) -> bool:
        img_in = next((shapes[k] for k in shapes if k.endswith(BFL_IMG_IN) or k.endswith(DIFFUSERS_IMG_IN)), None)
        if img_in is None:
            return False
        guided = any(k.endswith(BFL_GUIDANCE) or k.endswith(DIFFUSERS_GUIDANCE) for k in shapes)
        return guided == self.guidance and int(img_in[1]) == self.in_features

    def detect_folder(self, index: Json, unet: Json) -> bool:
        if not index.get("_class_name", "").startswith("Flux"):
            return False
        features = int(unet.get("in_channels", 4 * LATENT.channels))
        return bool(unet.get("guidance_embeds", True)) == self.guidance and features == self.in_features

    def detected_from(self, shapes: Shapes, source: str) -> Detected:
        img_in = next(shapes[k] for k in shapes if k.endswith(BFL_IMG_IN) or k.endswith(DIFFUSERS_IMG_IN))
        return Detected(self, self.in_channels_of(int(img_in[1])), "flow", False)

    def inpainting_input(self, mask: Any, masked_latent: Any) -> Any:
        """Fill's extra input, as diffusers' FluxFillPipeline builds it: the masked image's latent, then
        the 8x8 pixel mask of each latent cell as 64 channels."""
        import torch

        b, (h, w), scale = mask.shape[0], masked_latent.shape[-2:], self.latent.vae_scale
        cells = mask[:, 0].reshape(b, h, scale, w, scale).permute(0, 2, 4, 1, 3).reshape(b, scale * scale, h, w)
        return torch.cat([masked_latent.float(), cells.to(masked_latent.device)], dim=1)

    def in_channels_of(self, network_channels: int) -> int:
        return network_channels // (PACKING * PACKING)

    def unload_loras(self, pipe: Any) -> None:
        """diffusers' unload, which also puts back the x_embedder a BFL control LoRA widened (and the norm
        scales it replaced)."""
        pipe.unload_lora_weights(reset_to_overwritten_params=True)

    def lora_components(self) -> tuple[str, ...]:
        # CLIP-L as diffusers' FluxLoraLoaderMixin loads it; T5-XXL loaded by sdcli (load_lora)
        return ("transformer", "text_encoder", "text_encoder_2")

    def lora_state(self, pipe: Any, state: dict[str, Any]) -> dict[str, Any]:
        """kohya files in sd-scripts' own keys, and any kohya or BFL control file for a transformer narrower than
        the released one: renamed by sdcli (models.flux_lora, models.flux_control_lora say why); everything else
        as it is."""
        from sdcli.models.flux_control_lora import bfl_control_to_peft, is_bfl_control
        from sdcli.models.flux_lora import is_kohya, is_plain_kohya, kohya_to_peft

        config = pipe.transformer.config
        width = int(config.num_attention_heads) * int(config.attention_head_dim)
        if is_bfl_control(state) and width != FULL_WIDTH:  # diffusers' converter knows the released model only
            return bfl_control_to_peft(state, width)
        ours = is_kohya(state) and (width != FULL_WIDTH or is_plain_kohya(state))
        return kohya_to_peft(state, width) if ours else state

    def load_lora(self, pipe: Any, state: dict[str, Any], adapter: str) -> None:
        """The transformer and CLIP-L parts through pipe.load_lora_weights; the T5-XXL part, which diffusers'
        Flux loader leaves out, into text_encoder_2 (models.flux_lora.load_t5)."""
        import torch

        from sdcli.models.flux_lora import load_t5, split_t5

        # Its Linear layers by name (a layer an earlier adapter wrapped: its base_layer's parent)
        t5_linears = {name.removesuffix(".base_layer") for name, module in pipe.text_encoder_2.named_modules()
                      if isinstance(module, torch.nn.Linear) and ".lora_" not in name}
        rest, t5 = split_t5(state, t5_linears)
        if rest:
            pipe.load_lora_weights(self.lora_state(pipe, rest), adapter_name=adapter)
        if t5:
            load_t5(pipe, t5, adapter)

    def prompt_encoder(self, pipe: Any, clip_skip: int, emphasis: str, size: tuple[int, int],
                       distilled_cfg: float | None = None) -> PromptEncoder:
        from sdcli.conditioning.flux import FluxPromptEncoder

        return FluxPromptEncoder((pipe.tokenizer, pipe.text_encoder), (pipe.tokenizer_2, pipe.text_encoder_2), emphasis,
                                 distilled_cfg if self.guidance else None)


# Forge's Flux UI preset (modules_forge/main_entry.py): CFG 1 (no unconditional pass), Euler, Simple, 3.5.
FLUX_DEFAULTS = {"cfg_scale": 1.0, "sampler": "Euler", "schedule": "simple", "distilled_cfg_scale": 3.5}
_FLOW = {"control_channels": 2 * LATENT.channels}
FLUX_DEV = FluxFamily("flux-dev", "Flux.1 dev", FLUX_PIPELINES, 1024, configs="flux-dev",
                      capabilities=flow_capabilities("Flux dev", **_FLOW, distilled_guidance=True),
                      latent=LATENT, defaults=FLUX_DEFAULTS, guidance=True, shift=1.15)
# schnell is step-distilled: 4 steps (diffusers' FluxPipeline example for FLUX.1-schnell, BFL's model card); dev keeps
# Forge's 20.
FLUX_SCHNELL = FluxFamily("flux-schnell", "Flux.1 schnell", FLUX_PIPELINES, 1024, configs="flux-schnell",
                          capabilities=flow_capabilities("Flux", **_FLOW), latent=LATENT,
                          defaults={**FLUX_DEFAULTS, "steps": 4},
                          guidance=False, shift=1.0)
# Fill: latents + masked-image latents + the 8x8 pixel mask of each latent cell (16 + 16 + 64 channels).
FLUX_FILL = FluxFamily("flux-fill", "Flux.1 Fill", FILL_PIPELINES, 1024, configs="flux-fill",
                       capabilities=flow_capabilities("Flux dev", loop_channels=(96,), inpainting_channels=96,
                                                      distilled_guidance=True),
                       latent=LATENT, defaults=FLUX_DEFAULTS, guidance=True, shift=1.15,
                       in_features=24 * LATENT.channels)
# Control (Canny/Depth dev): latents + the control image's latent (16 + 16 channels); dev with a BFL control LoRA
# (its x_embedder widened to 128 inputs) runs as one.
FLUX_CONTROL = FluxFamily("flux-control", "Flux.1 Control", CONTROL_PIPELINES, 1024, configs="flux-control",
                          capabilities=flow_capabilities("Flux dev", **_FLOW, loop_channels=(32,),
                                                         distilled_guidance=True),
                          latent=LATENT, defaults=FLUX_DEFAULTS, guidance=True, shift=1.15,
                          in_features=8 * LATENT.channels)


@dataclass(frozen=True)
class FluxDerivedFamily(FluxFamily):
    """A family on Flux's packing and sampling rules with its own transformer (Chroma, Qwen-Image): LoRAs go into
    that transformer only, as diffusers' loader takes them; no dedicated inpainting model; --clip-skip refused
    (naming its own text encoder) before the sampler."""

    clip_skip_first: ClassVar[bool] = True
    file_parts: ClassVar[FileParts | None] = None  # its own files, if any, are its own (not Flux.1's parts)
    big_text_encoders: ClassVar[tuple[str, ...]] = ("text_encoder",)  # Chroma's T5-XXL, Qwen-Image's Qwen2.5-VL

    def lora_components(self) -> tuple[str, ...]:
        return ("transformer",)

    def lora_state(self, pipe: Any, state: dict[str, Any]) -> dict[str, Any]:
        return state

    def load_lora(self, pipe: Any, state: dict[str, Any], adapter: str) -> None:
        """The pipeline's own diffusers LoRA loader (after lora_state), into the transformer only (no T5 part to
        split off)."""
        pipe.load_lora_weights(self.lora_state(pipe, state), adapter_name=adapter)

    def unload_loras(self, pipe: Any) -> None:
        """diffusers' plain unload (no control LoRA widens these transformers; Qwen-Image's loader takes no reset)."""
        pipe.unload_lora_weights()

    def inpainting_input(self, mask: Any, masked_latent: Any) -> Any:
        raise NotImplementedError(f"{self.label} has no dedicated inpainting model")
