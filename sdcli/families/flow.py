"""What the flow-matching families (Flux.1, Chroma, SD3, Z-Image, Qwen-Image, Flux.2) share: FlowFamily, their
sampler/schedule refusals and common refusal table, their parameterisation as data (sigma table, shift,
multiplier), the tiny-model rule of their native size, and FlowAdapter, the network call with the odd-size
circular padding. Each family module keeps only what differs. Imported without torch.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from sdcli.families.base import Capabilities, Control, Family, Json, ModuleAdapter, NetworkAdapter, Shapes

if TYPE_CHECKING:
    from sdcli.conditioning.cond import Conditioning
    from sdcli.request.generation import GenerationRequest
    from sdcli.sampling.parameterisation import Parameterisation
    from sdcli.sampling.samplers import Sampler, SamplerChoice

TINY_SIZE = 64  # a tiny model's native image side
SIMPLE = "simple"
SGM_UNIFORM = "sgm uniform"
# The schedule types that fit a flow model's sigmas, in the order refusals name them (the family's automatic first).
FLOW_SCHEDULES = (SIMPLE, "beta", "normal", SGM_UNIFORM, "karras", "exponential")
# Schedule types that do not fit a flow model's sigmas (Forge runs them, to no good image), and why; a family whose
# sigma table reads "uniform" otherwise says so in its own unsound_schedules.
FLOW_UNSOUND_SCHEDULES = {
    "uniform": "reads discrete timesteps as sigmas",
    "align your steps": "is a list of SD sigmas (up to 14.6)",
}
FLOW_SAMPLERS = "Euler, Euler a, Heun, DPM++ 2M, DPM++ SDE, DPM++ 2M SDE, ..."


def find_key(shapes: Shapes, suffix: str) -> str | None:
    """The first tensor name ending in `suffix` (with or without a prefix such as model.diffusion_model.)."""
    return next((k for k in shapes if k == suffix or k.endswith("." + suffix)), None)


def flow_capabilities(applies_to: str, **changes: Any) -> Capabilities:
    """A flow family's capabilities: sdcli's loop on 16 latent channels, no inpainting network, no embeddings, no
    unconditional pass at CFG 1, no timestep samplers, no --fuse-qkv (diffusers' flow pipelines have no
    fuse_qkv_projections), --shift and --low-bits; `changes` are the family's own."""
    return Capabilities(**{"loop_channels": (16,), "inpainting_channels": None, "embeddings": {},
                           "skip_uncond_at_cfg1": True, "timestep_samplers": False, "shift": True, "low_bits": True,
                           "fuse_qkv": False, "applies_to": applies_to, **changes})


def pad_to_patches(x: Any, patch: int) -> Any:
    """Latents [B, C, H, W] padded at the bottom and right to whole patches by wrapping round (Forge's and
    ComfyUI's circular padding); the network's output is cropped back after."""
    import torch

    _, _, rows, cols = x.shape
    return torch.nn.functional.pad(x, (0, (-cols) % patch, 0, (-rows) % patch), mode="circular")


class FlowAdapter(ModuleAdapter):
    """A flow transformer as the loop's network: no ControlNet residuals, odd latent sides padded to whole
    `patch`es by wrapping round (pad_to_patches) and the output cropped back; run() is the family's call."""

    label: ClassVar[str] = ""  # the family's models, in the ControlNet refusal
    patch: ClassVar[int] = 1  # latent cells a side the network needs whole (1: none)

    def __call__(self, x: Any, t: Any, cond: Conditioning, control: Control | None = None) -> Any:
        if control is not None:
            raise ValueError(f"{self.label} models take no ControlNet residuals")
        _, _, rows, cols = x.shape
        if self.patch == 1:
            return self.run(x, t, cond)
        return self.run(pad_to_patches(x, self.patch), t, cond)[:, :, :rows, :cols]

    def run(self, x: Any, t: Any, cond: Conditioning) -> Any:
        """The network's output for latents x of whole patches at timesteps t (sigma)."""
        raise NotImplementedError(type(self).__name__)


@dataclass(frozen=True)
class FlowFamily(Family):
    """A flow-matching transformer family sampled by sdcli's loop: the rules and refusals the flow families share,
    their differences as data (class attributes for a family, fields for a row)."""

    network_component: ClassVar[str] = "transformer"
    big_text_encoders: ClassVar[tuple[str, ...]] = ("text_encoder",)  # Qwen3 (Z-Image, Flux.2), T5 (Chroma), ...
    article: ClassVar[str] = "a"  # before the label in refusals ("an SD3 model")
    automatic: ClassVar[str] = SIMPLE  # the schedule "automatic" means where the sampler's own does not fit
    unsound_schedules: ClassVar[Mapping[str, str]] = FLOW_UNSOUND_SCHEDULES
    clip_skip_why: ClassVar[str | None] = None  # why --clip-skip is refused (None: the family takes it)
    clip_skip_first: ClassVar[bool] = False  # --clip-skip is refused before the sampler (Chroma, Qwen-Image)
    controlnet_why: ClassVar[str] = "takes no Stable Diffusion ControlNet"
    full_widths: ClassVar[tuple[int, ...]] = ()  # the released transformers' widths; narrower ones are tiny
    adapter: ClassVar[type[FlowAdapter]] = FlowAdapter  # the transformer as the loop's network

    gpu_dtype: str = "bf16"
    # The parameterisation as data: "flux" = Flux's 10,000-point sigma table with mu = `shift`; "discrete" =
    # ComfyUI's ModelSamplingDiscreteFlow (1000 shifted timesteps, the network's timestep sigma * `multiplier`).
    table: str = "flux"
    shift: float = 1.15
    multiplier: float = 1.0

    def automatic_schedule(self, choice: SamplerChoice) -> str:
        """The sampler's own schedule where it fits a flow model (Karras, Exponential), else the family's."""
        return self.automatic if choice.sampler.automatic in self.unsound_schedules else choice.sampler.automatic

    def check_choice(self, choice: SamplerChoice) -> None:
        """Schedules of discrete timesteps or SD sigmas are refused, and other families' own schedules."""
        from sdcli.errors import UsageError
        from sdcli.sampling.samplers import ALL_SCHEDULE_LABELS

        super().check_choice(choice)
        if choice.schedule in self.unsound_schedules:
            labels = ALL_SCHEDULE_LABELS
            usable = [labels[s] for s in (self.automatic, *(s for s in FLOW_SCHEDULES if s != self.automatic))]
            raise UsageError(f"--schedule: {labels[choice.schedule]} {self.unsound_schedules[choice.schedule]}"
                             f" on {self.article} {self.label} model; use {', '.join(usable[:-1])} or {usable[-1]}")

    def refusals(self, request: GenerationRequest) -> dict[str, tuple[bool, str]]:
        """The request settings the family refuses: flag -> (whether this request sets it, why), in order."""
        # A unit with no ControlNet model (a lone --control-image) is a control model's input: job.plan's
        # check_control_input refuses it under --control-image where the model takes none.
        controlnet = any(unit.model for unit in request.controlnets)
        clip_skip = {} if self.clip_skip_why is None else {"--clip-skip": (request.clip_skip != 1, self.clip_skip_why)}
        return {**clip_skip,
                "--prediction-type": (request.prediction_type is not None, "is a flow model, neither eps nor v"),
                "--refiner": (request.refiner is not None, "takes no refiner"),
                "--controlnet": (controlnet, self.controlnet_why)}

    def check(self, request: GenerationRequest, sampler: Sampler) -> None:
        """What a flow family refuses: samplers off sdcli's loop, on discrete timesteps or VE re-noising, then
        refusals() (CLIP skip, eps/v, a refiner, SD ControlNets)."""
        from sdcli.errors import UsageError

        refused = [(flag, why) for flag, (on, why) in self.refusals(request).items() if on]
        if self.clip_skip_first and refused and refused[0][0] == "--clip-skip":
            raise UsageError(f"--clip-skip: {self.article} {self.label} model {refused[0][1]}")
        if sampler.function is None or sampler.timesteps or not sampler.flow_sound:
            why = ("walks a discrete DDPM schedule" if sampler.timesteps else
                   "runs only in diffusers" if sampler.function is None else "re-noises as on an SD model")
            raise UsageError(f"--sampler: {sampler.name} {why}; {self.label} models take the flow samplers "
                             f"({FLOW_SAMPLERS})")
        if refused:
            flag, why = refused[0]
            raise UsageError(f"{flag}: {self.article} {self.label} model {why}")

    def token_pixels(self) -> int:
        """Patches made inside the network (SD3, Z-Image: 2x2 latent cells) count as well as packed ones."""
        return self.latent.vae_scale * max(self.latent.packing, self.adapter.patch)

    def network(self, pipe: Any) -> NetworkAdapter:
        return self.adapter(pipe.transformer)

    def released(self, config: Any) -> bool:
        """Whether a transformer config is a released model's (its width), not one of sdcli's tiny ones."""
        return int(config.num_attention_heads) * int(config.attention_head_dim) in self.full_widths

    def native_size_of(self, pipe: Any) -> int:
        return self.native_size if self.released(pipe.transformer.config) else TINY_SIZE

    def runs_loop(self, pipe: Any, scheduler: Json, in_channels: int) -> bool:
        return True

    def parameterisation(self, scheduler: Json, prediction: str | None = None,
                         shift: float | None = None, sampling: str | None = None) -> Parameterisation:
        """Rectified flow on the family's sigma table: its shift (Flux's table: mu) = --shift, else the row's.
        `sampling` (a ComfyUI ModelSampling node, request.vocabulary.MODEL_SAMPLINGS) replaces the table by the
        node's, whatever the family's own: 1000 discrete sigmas shifted by --shift (else the node's default), the
        network's timestep sigma x the node's multiplier, which the adapter gets as it gets the family's own."""
        from sdcli.request.vocabulary import MODEL_SAMPLINGS, choice_key
        from sdcli.sampling.parameterisation import Flow, FlowSigmas, FluxSigmas

        if sampling is not None:
            _, multiplier, default = MODEL_SAMPLINGS[choice_key(sampling)]
            return Flow(FlowSigmas(default if shift is None else shift, multiplier))
        shift = self.shift if shift is None else shift
        return Flow(FluxSigmas(shift) if self.table == "flux" else FlowSigmas(shift, self.multiplier))
