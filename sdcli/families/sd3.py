"""Stable Diffusion 3 / 3.5 (medium, large, large turbo): an MMDiT flow-matching transformer on 16-channel
latents (patch size 2, its own position embedding), conditioned on CLIP-L + OpenCLIP-bigG states padded to
the T5-XXL width and followed by T5-XXL's states, and on the two CLIP pooled vectors side by side.

Sampled as ComfyUI (comfy/supported_models.py SD3: ModelSamplingDiscreteFlow shift 3, multiplier 1000) and
Forge (backend/diffusion_engine/sd35.py: PredictionDiscreteFlow(shift=3.0)) sample it: rectified flow
(sampling.parameterisation.Flow) on 1000 shifted timesteps, the network's timestep being sigma * 1000; true
CFG with the negative prompt. Imported without torch; torch-side code is imported when a method runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from sdcli.families.base import (
    UNET_PREFIX,
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

SD3_PIPELINES = {"txt2img": "StableDiffusion3Pipeline", "img2img": "StableDiffusion3Img2ImgPipeline",
                 "inpaint": "StableDiffusion3InpaintPipeline", "outpaint": "StableDiffusion3InpaintPipeline"}
PATCH = 2
SHIFT = 3.0  # ComfyUI's and Forge's SD3 sigma shift
MULTIPLIER = 1000.0  # the network's timestep is sigma * 1000
HEAD_DIM = 64  # the released models' attention head width
TINY_SIZE = 64  # a tiny model's native image side
# Original (SAI/ComfyUI) MMDiT keys; an all-in-one checkpoint prefixes them with model.diffusion_model.
MMDIT_MARK = "joint_blocks.0.context_block.adaLN_modulation.1.bias"
X_EMBEDDER = "x_embedder.proj.weight"
TEXT_ENCODERS = "text_encoders."  # the all-in-one layout's text encoders (clip_l, clip_g, t5xxl)
CLIP_L_MARK = "text_encoders.clip_l.transformer.text_model.embeddings.position_embedding.weight"
SGM_UNIFORM = "sgm uniform"
# Schedule types that do not fit a flow model's sigmas (as on Flux), and why.
FLOW_UNSOUND_SCHEDULES = {
    "uniform": "reads the 1000 discrete timesteps as sigmas",
    "align your steps": "is a list of SD sigmas (up to 14.6)",
}
LATENT = LatentFormat(channels=16, vae_scale=8)


class SD3Adapter(ModuleAdapter):
    """A diffusers SD3Transformer2DModel as the loop's network: the latent goes in as it is (the transformer
    patches it 2x2 and crops its position embedding), the text states and pooled vector from the conditioning,
    the timestep t = sigma * 1000 as ComfyUI's ModelSamplingDiscreteFlow gives it. Odd latent sides are padded
    to even by wrapping round and cropped after, as ComfyUI's MMDiT pads to its patch size."""

    def __call__(self, x: Any, t: Any, cond: Conditioning, control: Control | None = None) -> Any:
        import torch

        if control is not None:
            raise ValueError("SD3 models take no ControlNet residuals")
        _, _, rows, cols = x.shape
        x = torch.nn.functional.pad(x, (0, cols % PATCH, 0, rows % PATCH), mode="circular")
        out = self.module(hidden_states=x, encoder_hidden_states=cond.crossattn.to(self.dtype),
                          pooled_projections=cond.extra["pooled"].to(self.dtype),
                          timestep=t.to(self.dtype).expand(x.shape[0]), return_dict=False)[0]
        return out[:, :, :rows, :cols]


def _mmdit_prefix(shapes: Shapes) -> str | None:
    """The prefix of the MMDiT keys of an original-layout file ("" or model.diffusion_model.), None if none."""
    return next((p for p in (UNET_PREFIX, "") if p + MMDIT_MARK in shapes), None)


def transformer_config(shapes: Shapes, prefix: str, head_dim: int = HEAD_DIM) -> dict[str, Any]:
    """An SD3Transformer2DModel config from an original-layout MMDiT's tensor shapes (3, 3.5 medium, 3.5 large,
    and narrower ones: `head_dim` the attention head width; the QK norm's width tells it where there is one)."""
    import math

    width = int(shapes[prefix + X_EMBEDDER][0])
    blocks = {int(k[len(prefix):].split(".")[1]) for k in shapes if k.startswith(prefix + "joint_blocks.")}
    dual = sorted({int(k[len(prefix):].split(".")[1]) for k in shapes
                   if k.startswith(prefix + "joint_blocks.") and ".attn2." in k})
    ln_q = shapes.get(prefix + "joint_blocks.0.x_block.attn.ln_q.weight")
    head_dim = int(ln_q[0]) if ln_q is not None else head_dim
    return {"_class_name": "SD3Transformer2DModel", "sample_size": 128, "patch_size": PATCH,
            "in_channels": int(shapes[prefix + X_EMBEDDER][1]), "num_layers": len(blocks),
            "attention_head_dim": head_dim, "num_attention_heads": width // head_dim,
            "joint_attention_dim": int(shapes[prefix + "context_embedder.weight"][1]),
            "caption_projection_dim": width,
            "pooled_projection_dim": int(shapes[prefix + "y_embedder.mlp.0.weight"][1]),
            "out_channels": int(shapes[prefix + "final_layer.linear.weight"][0]) // (PATCH * PATCH),
            "pos_embed_max_size": math.isqrt(int(shapes[prefix + "pos_embed"][1])),
            "dual_attention_layers": dual, "qk_norm": "rms_norm" if ln_q is not None else None}


@dataclass(frozen=True)
class SD3Family(Family):
    """SD3 medium, SD3.5 medium / large / large turbo: one row (the variants differ in width and depth only)."""

    network_component: ClassVar[str] = "transformer"
    checkpoint_file: ClassVar[bool] = True

    def detect(self, shapes: Shapes) -> bool:
        return _mmdit_prefix(shapes) is not None

    def detect_folder(self, index: Json, unet: Json) -> bool:
        return str(index.get("_class_name", "")).startswith("StableDiffusion3")

    def detected_from(self, shapes: Shapes, source: str) -> Detected:
        from sdcli.errors import ModelError

        prefix = _mmdit_prefix(shapes) or ""
        if prefix != UNET_PREFIX or CLIP_L_MARK not in shapes:
            raise ModelError(f"{source}: an {self.label} transformer without its text encoders; sdcli reads SD3 "
                             f"all-in-one checkpoints ({UNET_PREFIX}*, {TEXT_ENCODERS}clip_l/clip_g/t5xxl.*, "
                             "first_stage_model.*)")
        return Detected(self, int(shapes[prefix + X_EMBEDDER][1]), "flow", False)

    def single_file_config(self, shapes: Shapes, source: str) -> tuple[dict[str, Any], str]:
        """The bundled configs with the transformer's taken from the file's shapes; the tiny configs (and tiny
        tokenizers) for a file whose CLIP-L is narrower than the released one."""
        from sdcli.models.bundled import family_config

        spec, tokenizer = family_config(self.configs), "bundled"
        if int(shapes[CLIP_L_MARK][1]) != spec["text_encoder"]["hidden_size"]:
            from sdcli.models.tiny_sd3 import tiny_sd3_spec

            spec, tokenizer = tiny_sd3_spec(), "tiny"
        head_dim = spec["transformer"]["attention_head_dim"]
        spec["transformer"] = transformer_config(shapes, UNET_PREFIX, head_dim)
        return spec, tokenizer

    def automatic_schedule(self, choice: SamplerChoice) -> str:
        """The sampler's own schedule where it fits a flow model (Karras, Exponential), else SGM Uniform
        (ComfyUI's SD3 example workflows)."""
        return SGM_UNIFORM if choice.sampler.automatic in FLOW_UNSOUND_SCHEDULES else choice.sampler.automatic

    def check_choice(self, choice: SamplerChoice) -> None:
        """Schedules of discrete timesteps or SD sigmas are refused."""
        from sdcli.errors import UsageError
        from sdcli.sampling.samplers import SCHEDULE_LABELS

        if choice.schedule in FLOW_UNSOUND_SCHEDULES:
            raise UsageError(f"--schedule: {SCHEDULE_LABELS[choice.schedule]} {FLOW_UNSOUND_SCHEDULES[choice.schedule]}"
                             f" on an {self.label} model; use SGM Uniform, Simple, Beta, Normal, Karras or "
                             "Exponential")

    def check(self, request: GenerationRequest, sampler: Sampler) -> None:
        """What SD3 refuses: samplers off sdcli's loop, on discrete timesteps or VE re-noising, eps/v, a refiner,
        SD ControlNets."""
        from sdcli.errors import UsageError

        if sampler.function is None or sampler.timesteps or not sampler.flow_sound:
            why = ("walks a discrete DDPM schedule" if sampler.timesteps else
                   "runs only in diffusers" if sampler.function is None else "re-noises as on an SD model")
            raise UsageError(f"--sampler: {sampler.name} {why}; {self.label} models take the flow samplers "
                             f"(Euler, Euler a, Heun, DPM++ 2M, DPM++ SDE, DPM++ 2M SDE, ...)")
        refusals = {
            "--prediction-type": (request.prediction_type is not None, "is a flow model, neither eps nor v"),
            "--refiner": (request.refiner is not None, "takes no refiner"),
            "--controlnet": (bool(request.controlnets), "takes no Stable Diffusion ControlNet"),
        }
        for flag, (refused, why) in refusals.items():
            if refused:
                raise UsageError(f"{flag}: an {self.label} model {why}")

    def in_channels_of(self, network_channels: int) -> int:
        return network_channels

    def lora_components(self) -> tuple[str, ...]:
        return ("transformer", "text_encoder", "text_encoder_2")  # as diffusers' SD3LoraLoaderMixin loads them

    def network(self, pipe: Any) -> NetworkAdapter:
        return SD3Adapter(pipe.transformer)

    def native_size_of(self, pipe: Any) -> int:
        config = pipe.transformer.config
        return self.native_size if int(config.attention_head_dim) == HEAD_DIM else TINY_SIZE

    def runs_loop(self, pipe: Any, scheduler: Json, in_channels: int) -> bool:
        return True

    def parameterisation(self, scheduler: Json, prediction: str | None = None,
                         shift: float | None = None) -> Parameterisation:
        """Rectified flow on ComfyUI's ModelSamplingDiscreteFlow table: shift = --shift, else 3; multiplier 1000."""
        from sdcli.sampling.parameterisation import Flow, FlowSigmas

        return Flow(FlowSigmas(SHIFT if shift is None else shift, MULTIPLIER))

    def prompt_encoder(self, pipe: Any, clip_skip: int, emphasis: str, size: tuple[int, int],
                       distilled_cfg: float | None = None) -> PromptEncoder:
        from sdcli.conditioning.sd3 import SD3PromptEncoder

        return SD3PromptEncoder(pipe, clip_skip, emphasis)


# ComfyUI's SD3.5 example workflows and diffusers' SD3.5 docs: CFG 4.5, Euler, SGM Uniform (steps: sdcli's 20).
SD3_DEFAULTS = {"cfg_scale": 4.5, "sampler": "Euler", "schedule": SGM_UNIFORM}
SD3 = SD3Family("sd3", "SD3", SD3_PIPELINES, 1024, configs="sd3",
                capabilities=Capabilities(loop_channels=(16,), inpainting_channels=None, embeddings={},
                                          skip_uncond_at_cfg1=True, timestep_samplers=False, shift=True,
                                          applies_to="SD3"),
                latent=LATENT, defaults=SD3_DEFAULTS, gpu_dtype="bf16")
