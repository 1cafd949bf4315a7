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

from sdcli.families.base import (
    Capabilities,
    Control,
    Detected,
    Family,
    Json,
    LatentFormat,
    ModuleAdapter,
    NetworkAdapter,
    Shapes,
)

if TYPE_CHECKING:
    from sdcli.conditioning.cond import Conditioning
    from sdcli.families.base import PromptEncoder
    from sdcli.request.generation import GenerationRequest
    from sdcli.sampling.parameterisation import Parameterisation
    from sdcli.sampling.samplers import Sampler, SamplerChoice

ZIMAGE_PIPELINES = {"txt2img": "ZImagePipeline", "img2img": "ZImageImg2ImgPipeline",
                    "inpaint": "ZImageInpaintPipeline", "outpaint": "ZImageInpaintPipeline"}
FULL_DIM = 3840  # the published Z-Image transformer's width; narrower ones are sdcli's tiny models
TINY_SIZE = 64  # a tiny model's native image side
PATCH = 2  # the network's patch side in latent cells
SHIFT = 3.0  # ComfyUI's ZImage sampling_settings
MULTIPLIER = 1.0
# The keys diffusers' infer_diffusers_model_type reads as "z-image-turbo" (original layout, ComfyUI's prefix
# or none), and the caption embedder's linear layer whose input width is the text encoder's hidden size.
ZIMAGE_MARK = "layers.0.adaLN_modulation.0.weight"
CAP_EMBEDDER = "cap_embedder.1.weight"
X_EMBEDDER = ("x_embedder.weight", "all_x_embedder.2-1.weight")  # original / diffusers names
SIMPLE = "simple"
FLOW_UNSOUND_SCHEDULES = {
    "uniform": "reads discrete timesteps as sigmas",
    "align your steps": "is a list of SD sigmas (up to 14.6)",
}
LATENT = LatentFormat(channels=16, vae_scale=8)


class ZImageAdapter(ModuleAdapter):
    """A diffusers ZImageTransformer2DModel as the loop's network: each latent as a [C, 1, H, W] list item, the
    Qwen3 states of its row as its caption, timestep 1 - sigma (the network scales it by 1000), output negated
    (ComfyUI's lumina model does both). Odd latent sides are padded to even by wrapping round and cropped after,
    as ComfyUI's pad_to_patch_size does."""

    def __call__(self, x: Any, t: Any, cond: Conditioning, control: Control | None = None) -> Any:
        import torch

        if control is not None:
            raise ValueError("Z-Image models take no ControlNet residuals")
        _, _, rows, cols = x.shape
        x = torch.nn.functional.pad(x, (0, (-cols) % PATCH, 0, (-rows) % PATCH), mode="circular")
        caps = list(cond.crossattn.to(self.dtype).unbind(0))  # rows of one length (the loop batches them so)
        out = self.module(list(x.to(self.dtype).unsqueeze(2).unbind(0)), (1.0 - t.float()), caps,
                          return_dict=False)[0]
        return -torch.stack([o.float() for o in out]).squeeze(2)[:, :, :rows, :cols]


def _key(shapes: Shapes, suffix: str) -> str | None:
    """The first tensor name ending in `suffix` (with or without ComfyUI's model.diffusion_model. prefix)."""
    return next((k for k in shapes if k == suffix or k.endswith("." + suffix)), None)


@dataclass(frozen=True)
class ZImageFamily(Family):
    """Z-Image Turbo and base (one architecture; their files do not tell them apart)."""

    network_component: ClassVar[str] = "transformer"

    def detect(self, shapes: Shapes) -> bool:
        return _key(shapes, ZIMAGE_MARK) is not None and _key(shapes, CAP_EMBEDDER) is not None

    def detect_folder(self, index: Json, unet: Json) -> bool:
        return str(index.get("_class_name", "")).startswith("ZImage")

    def detected_from(self, shapes: Shapes, source: str) -> Detected:
        embedder = next((shapes[k] for s in X_EMBEDDER if (k := _key(shapes, s))), None)
        channels = LATENT.channels if embedder is None else int(embedder[1]) // (PATCH * PATCH)
        return Detected(self, channels, "flow", False)

    def automatic_schedule(self, choice: SamplerChoice) -> str:
        """The sampler's own schedule where it has one (Karras, Exponential), else Simple (ComfyUI's template)."""
        return SIMPLE if choice.sampler.automatic in FLOW_UNSOUND_SCHEDULES else choice.sampler.automatic

    def check_choice(self, choice: SamplerChoice) -> None:
        """Schedules of discrete timesteps or SD sigmas are refused."""
        from sdcli.errors import UsageError
        from sdcli.sampling.samplers import SCHEDULE_LABELS

        if choice.schedule in FLOW_UNSOUND_SCHEDULES:
            raise UsageError(f"--schedule: {SCHEDULE_LABELS[choice.schedule]} {FLOW_UNSOUND_SCHEDULES[choice.schedule]}"
                             f" on a {self.label} model; use Simple, Beta, Normal, SGM Uniform, Karras or Exponential")

    def check(self, request: GenerationRequest, sampler: Sampler) -> None:
        """What Z-Image refuses: samplers off sdcli's loop, on discrete timesteps or VE re-noising, CLIP skip,
        eps/v, a refiner, SD ControlNets."""
        from sdcli.errors import UsageError

        if sampler.function is None or sampler.timesteps or not sampler.flow_sound:
            why = ("walks a discrete DDPM schedule" if sampler.timesteps else
                   "runs only in diffusers" if sampler.function is None else "re-noises as on an SD model")
            raise UsageError(f"--sampler: {sampler.name} {why}; {self.label} models take the flow samplers "
                             f"(Euler, Euler a, Heun, DPM++ 2M, DPM++ SDE, DPM++ 2M SDE, ...)")
        refusals = {
            "--clip-skip": (request.clip_skip != 1, "has no CLIP skip (its text is Qwen3's second-to-last layer)"),
            "--prediction-type": (request.prediction_type is not None, "is a flow model, neither eps nor v"),
            "--refiner": (request.refiner is not None, "takes no refiner"),
            "--controlnet": (bool(request.controlnets), "takes no Stable Diffusion ControlNet"),
        }
        for flag, (refused, why) in refusals.items():
            if refused:
                raise UsageError(f"{flag}: a {self.label} model {why}")

    def in_channels_of(self, network_channels: int) -> int:
        return network_channels

    def lora_components(self) -> tuple[str, ...]:
        return ("transformer",)  # diffusers' ZImageLoraLoaderMixin loads into the transformer only

    def network(self, pipe: Any) -> NetworkAdapter:
        return ZImageAdapter(pipe.transformer)

    def native_size_of(self, pipe: Any) -> int:
        return self.native_size if int(pipe.transformer.config.dim) == FULL_DIM else TINY_SIZE

    def runs_loop(self, pipe: Any, scheduler: Json, in_channels: int) -> bool:
        return True

    def parameterisation(self, scheduler: Json, prediction: str | None = None,
                         shift: float | None = None) -> Parameterisation:
        """Rectified flow on ComfyUI's discrete flow table: shift = --shift, else 3; timestep = sigma."""
        from sdcli.sampling.parameterisation import Flow, FlowSigmas

        return Flow(FlowSigmas(SHIFT if shift is None else shift, MULTIPLIER))

    def prompt_encoder(self, pipe: Any, clip_skip: int, emphasis: str, size: tuple[int, int],
                       distilled_cfg: float | None = None) -> PromptEncoder:
        from sdcli.conditioning.zimage import ZImagePromptEncoder

        return ZImagePromptEncoder(pipe.tokenizer, pipe.text_encoder, emphasis)


# ComfyUI's Z-Image Turbo template: CFG 1 (no unconditional pass), res_multistep (not in sdcli: Euler), Simple.
ZIMAGE_DEFAULTS = {"cfg_scale": 1.0, "sampler": "Euler", "schedule": SIMPLE}
ZIMAGE = ZImageFamily("zimage", "Z-Image", ZIMAGE_PIPELINES, 1024,
                      capabilities=Capabilities(loop_channels=(16,), inpainting_channels=None, embeddings={},
                                                skip_uncond_at_cfg1=True, timestep_samplers=False, shift=True,
                                                low_bits=True, applies_to="Z-Image"),
                      latent=LATENT, defaults=ZIMAGE_DEFAULTS, gpu_dtype="bf16")
