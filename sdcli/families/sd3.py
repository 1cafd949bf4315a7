"""Stable Diffusion 3 / 3.5 (medium, large, large turbo): an MMDiT flow-matching transformer on 16-channel
latents (patch size 2, its own position embedding), conditioned on CLIP-L + OpenCLIP-bigG states padded to
the T5-XXL width and followed by T5-XXL's states, and on the two CLIP pooled vectors side by side.

Sampled as ComfyUI (comfy/supported_models.py SD3: ModelSamplingDiscreteFlow shift 3, multiplier 1000) and
Forge (backend/diffusion_engine/sd35.py: PredictionDiscreteFlow(shift=3.0)) sample it: rectified flow
(sampling.parameterisation.Flow) on 1000 shifted timesteps, the network's timestep being sigma * 1000; true
CFG with the negative prompt. Imported without torch; torch-side code is imported when a method runs.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from sdcli.families.base import UNET_PREFIX, Detected, Json, Shapes
from sdcli.families.flow import FLOW_UNSOUND_SCHEDULES, SGM_UNIFORM, FlowAdapter, FlowFamily, flow_capabilities
from sdcli.families.latent import LatentFormat

if TYPE_CHECKING:
    from sdcli.conditioning.cond import Conditioning
    from sdcli.families.base import PromptEncoder

SD3_PIPELINES = {"txt2img": "StableDiffusion3Pipeline", "img2img": "StableDiffusion3Img2ImgPipeline",
                 "inpaint": "StableDiffusion3InpaintPipeline", "outpaint": "StableDiffusion3InpaintPipeline"}
PATCH = 2
SHIFT = 3.0  # ComfyUI's and Forge's SD3 sigma shift
MULTIPLIER = 1000.0  # the network's timestep is sigma * 1000
HEAD_DIM = 64  # the released models' attention head width
# Original (SAI/ComfyUI) MMDiT keys; an all-in-one checkpoint prefixes them with model.diffusion_model.
MMDIT_MARK = "joint_blocks.0.context_block.adaLN_modulation.1.bias"
X_EMBEDDER = "x_embedder.proj.weight"
TEXT_ENCODERS = "text_encoders."  # the all-in-one layout's text encoders (clip_l, clip_g, t5xxl)
CLIP_L_MARK = "text_encoders.clip_l.transformer.text_model.embeddings.position_embedding.weight"
# Schedule types that do not fit a flow model's sigmas (as on Flux), and why.
SD3_UNSOUND_SCHEDULES = {**FLOW_UNSOUND_SCHEDULES, "uniform": "reads the 1000 discrete timesteps as sigmas"}
# The live preview's linear map: ComfyUI's measured factors for SD3's VAE (latent_formats.SD3).
LATENT = LatentFormat(channels=16, vae_scale=8, preview_rgb=(
    (-0.0922, -0.0175, 0.0749), (0.0311, 0.0633, 0.0954), (0.1994, 0.0927, 0.0458), (0.0856, 0.0339, 0.0902),
    (0.0587, 0.0272, -0.0496), (-0.0006, 0.1104, 0.0309), (0.0978, 0.0306, 0.0427), (-0.0042, 0.1038, 0.1358),
    (-0.0194, 0.0020, 0.0669), (-0.0488, 0.0130, -0.0268), (0.0922, 0.0988, 0.0951), (-0.0278, 0.0524, -0.0542),
    (0.0332, 0.0456, 0.0895), (-0.0069, -0.0030, -0.0810), (-0.0596, -0.0465, -0.0293), (-0.1448, -0.1463, -0.1189),
), preview_bias=(0.2394, 0.2135, 0.1925))


class SD3Adapter(FlowAdapter):
    """A diffusers SD3Transformer2DModel as the loop's network: the latent goes in as it is (the transformer
    patches it 2x2 and crops its position embedding), the text states and pooled vector from the conditioning,
    the timestep t = sigma * 1000 as ComfyUI's ModelSamplingDiscreteFlow gives it. Odd latent sides are padded
    to even by wrapping round and cropped after, as ComfyUI's MMDiT pads to its patch size."""

    patch = PATCH
    label = "SD3"

    def run(self, x: Any, t: Any, cond: Conditioning) -> Any:
        return self.module(hidden_states=x, encoder_hidden_states=cond.crossattn.to(self.dtype),
                           pooled_projections=cond.extra["pooled"].to(self.dtype),
                           timestep=t.to(self.dtype).expand(x.shape[0]), return_dict=False)[0]


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
class SD3Family(FlowFamily):
    """SD3 medium, SD3.5 medium / large / large turbo: one row (the variants differ in width and depth only); the
    sampler's own schedule where it fits a flow model, else SGM Uniform (ComfyUI's SD3 example workflows)."""

    adapter: ClassVar[type[FlowAdapter]] = SD3Adapter
    checkpoint_file: ClassVar[bool] = True
    big_text_encoders: ClassVar[tuple[str, ...]] = ("text_encoder_3",)  # T5-XXL (the two CLIPs stay)
    article: ClassVar[str] = "an"
    automatic: ClassVar[str] = SGM_UNIFORM
    unsound_schedules: ClassVar[Mapping[str, str]] = SD3_UNSOUND_SCHEDULES

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

    def lora_components(self) -> tuple[str, ...]:
        # the transformer and CLIP-L/G as diffusers' SD3LoraLoaderMixin loads them; T5-XXL loaded by sdcli (load_lora)
        return ("transformer", "text_encoder", "text_encoder_2", "text_encoder_3")

    def lora_state(self, pipe: Any, state: dict[str, Any]) -> dict[str, Any]:
        """PEFT files as they are (diffusers' SD3 loader converts nothing); kohya / ComfyUI files in SAI's MMDiT
        names and sd-scripts' CLIP-L/G and T5-XXL layers renamed by sdcli (models.flow_lora)."""
        from sdcli.models.flow_lora import linear_shapes, original_to_peft, sd3_layout, text_to_peft

        if all(k.startswith(("transformer.", "text_encoder.", "text_encoder_2.", "text_encoder_3.")) for k in state):
            return state
        text = {k: v for k, v in state.items() if k.startswith("lora_te")}
        rest = {k: v for k, v in state.items() if k not in text}
        shapes = linear_shapes(pipe.transformer)
        out = original_to_peft(rest, sd3_layout(shapes), shapes) if rest else {}
        names = ("text_encoder", "text_encoder_2", "text_encoder_3")
        encoders = {name: linear_shapes(getattr(pipe, name)) for name in names if getattr(pipe, name, None)}
        return out | text_to_peft(text, encoders)

    def load_lora(self, pipe: Any, state: dict[str, Any], adapter: str) -> None:
        """The transformer and CLIP-L/G parts through pipe.load_lora_weights; the T5-XXL part, which diffusers'
        SD3 loader leaves out, into text_encoder_3 (models.flux_lora.load_t5)."""
        from sdcli.models.flux_lora import load_t5

        converted = self.lora_state(pipe, state)
        t5 = {k: v for k, v in converted.items() if k.startswith("text_encoder_3.")}
        if rest := {k: v for k, v in converted.items() if k not in t5}:
            pipe.load_lora_weights(rest, adapter_name=adapter)
        if t5:
            load_t5(pipe, t5, adapter, "text_encoder_3")

    def released(self, config: Any) -> bool:
        return int(config.attention_head_dim) == HEAD_DIM

    def prompt_encoder(self, pipe: Any, clip_skip: int, emphasis: str, size: tuple[int, int],
                       distilled_cfg: float | None = None) -> PromptEncoder:
        from sdcli.conditioning.sd3 import SD3PromptEncoder

        return SD3PromptEncoder(pipe, clip_skip, emphasis)


# ComfyUI's SD3.5 example workflows and diffusers' SD3.5 docs: CFG 4.5, Euler, SGM Uniform; 28 steps (diffusers'
# StableDiffusion3Pipeline default). SD3.5 large turbo (4 steps, CFG 1) has large's files and configs: not told apart,
# it needs --steps 4 --cfg-scale 1 given.
SD3_DEFAULTS = {"steps": 28, "cfg_scale": 4.5, "sampler": "Euler", "schedule": SGM_UNIFORM}
SD3 = SD3Family("sd3", "SD3", SD3_PIPELINES, 1024, configs="sd3",
                capabilities=flow_capabilities("SD3"), latent=LATENT, defaults=SD3_DEFAULTS,
                table="discrete", shift=SHIFT, multiplier=MULTIPLIER)
