"""What a model family is (Family, its Capabilities), what the weights of one model say (Detected),
and the original (ldm/sgm) single-file key layout the Stable Diffusion families share.

Pure Python: detection reads tensor names and shapes or config files; a family's behaviour
(its network adapter, prompt encoder, noise parameterisation) is built by its methods,
which import torch-side code when called. Those methods take the diffusers pipeline as `Any`:
only the family knows which components its pipelines carry (a UNet or a transformer, one or
two text encoders); everything else sees the Protocols here and models.loaded.LoadedModel.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from sdcli.families.edit_inputs import EditInputs
from sdcli.families.latent import LatentFormat
from sdcli.models.module_state import module_device, module_dtype

if TYPE_CHECKING:
    import torch

    from sdcli.conditioning.cond import Conditioning, EncoderCapabilities
    from sdcli.request.generation import GenerationRequest
    from sdcli.sampling.parameterisation import Parameterisation
    from sdcli.sampling.samplers import Sampler, SamplerChoice

# ControlNet (or any add-on) residuals for one network call: (x, t, cond) -> extra network kwargs.
Control = Callable[["torch.Tensor", "torch.Tensor", "Conditioning"], dict[str, Any]]

Shapes = Mapping[str, Sequence[int]]
Json = Mapping[str, Any]  # a parsed config file (model_index.json, a component's config.json)

# Original (ldm/sgm) key prefixes of a WebUI single-file checkpoint.
UNET_PREFIX = "model.diffusion_model."
VAE_PREFIX = "first_stage_model."
UNET_CONV_IN = UNET_PREFIX + "input_blocks.0.0.weight"
# Some SDXL fine-tunes trained for v-prediction mark it with an empty tensor of this name.
V_PRED_MARKER = "v_pred"


class NetworkAdapter(Protocol):
    """The denoising network with the one call signature of sdcli's loop (sampling.denoiser): the
    family's adapter feeds it latents, timesteps and conditioning the way it takes them."""

    @property
    def dtype(self) -> torch.dtype: ...
    @property
    def device(self) -> torch.device: ...
    @property
    def in_channels(self) -> int:
        """Input channels (latent + any inpainting input)."""
        ...

    def __call__(self, x: torch.Tensor, t: torch.Tensor, cond: Conditioning,
                 control: Control | None = None) -> torch.Tensor:
        """The network's output for latents x (scaled by the parameterisation) at timesteps t."""
        ...


class ModuleAdapter:
    """What every network adapter shares: the wrapped torch module, its dtype and device, and its input
    channels in latent units (`packing` cells a side to a token: a transformer's config counts them packed)."""

    packing: ClassVar[int] = 1

    def __init__(self, module: Any):
        self.module = module

    @property
    def dtype(self) -> torch.dtype:
        return module_dtype(self.module)

    @property
    def device(self) -> torch.device:
        return module_device(self.module)

    @property
    def in_channels(self) -> int:
        return int(self.module.config.in_channels) // (self.packing * self.packing)


class PromptEncoder(Protocol):
    """Text -> conditioning for one model (and generation size), as its family encodes prompts."""

    capabilities: EncoderCapabilities

    def encode(self, text: str) -> Conditioning:
        """One prompt (no scheduling syntax left: conditioning.schedule splits it first)."""
        ...

    def negative_encoder(self, all_empty: bool) -> Callable[[str], Conditioning]:
        """How the negative prompt's texts are encoded; `all_empty`: every scheduled negative text is ""."""
        ...

    def pipeline_embeds(self, prompt: str, negative: str) -> dict[str, Any]:
        """The embedding arguments of the family's diffusers pipeline call, for a batch of one."""
        ...


class PromptUpsampler(Protocol):
    """Rewrites prompts with the model's own text encoder before they are encoded (Flux.2 dev's caption
    upsampling, --upsample-prompt)."""

    def encoder(self, encoder: Any, seed: int) -> PromptEncoder:
        """The family's prompt encoder `encoder` with its prompts rewritten, the rewrite sampled with `seed`."""
        ...

    def text(self, seed: int) -> str:
        """The first prompt rewritten with `seed` (the first pass's), as the infotext records it."""
        ...


@dataclass(frozen=True)
class Capabilities:
    """What a family supports, as validation asks it (instead of asking which family it is)."""

    own_loop: bool = True  # sdcli's loop samples it (with a sampler of the loop); else diffusers' pipeline
    loop_channels: tuple[int, ...] = (4, 9)  # network input channels the loop feeds (latent; + inpainting)
    inpainting_channels: int | None = 9  # network input channels of a dedicated inpainting model
    # Network input channels of a model that also takes a control image's latent (Flux Control: 16 + 16); a
    # model of the family whose network has them (its own, or widened by a control LoRA) needs --control-image.
    control_channels: int | None = None
    refiner_group: str | None = None  # --refiner: models of one group hand over to each other ("SDXL")
    refines_only: bool = False  # a refiner: no txt2img of its own; used as --refiner of a base model
    controlnet: str | None = None  # the kind of ControlNet made for it (controlnet.files.ControlShape.kind)
    lora: bool = True
    # Skip the unconditional pass at CFG scale 1 (Forge/ComfyUI do; the WebUI runs it for SD models).
    skip_uncond_at_cfg1: bool = False
    timestep_samplers: bool = True  # DDIM/PLMS/UniPC walk its discrete DDPM timesteps (eps/v models)
    # Textual-inversion vectors by text encoder: file key -> (pipeline's text encoder, its tokenizer).
    embeddings: Mapping[str, tuple[str, str]] = field(
        default_factory=lambda: {"clip_l": ("text_encoder", "tokenizer")})
    # Flow-model settings it takes (job.plan refuses them for a family without; the infotext writes them):
    distilled_guidance: bool = False  # guidance is a network input (Flux dev/Fill): --distilled-cfg
    shift: bool = False  # a flow schedule whose sigma shift can be set: --shift
    low_bits: bool = False  # its diffusion model can be stored in low bits at load: --low-bits
    applies_to: str = ""  # the models the settings above are for, in refusals ("Flux dev")
    upsamples_prompts: bool = False  # its text encoder rewrites prompts before encoding them: --upsample-prompt
    references: int = 0  # reference images an edit by instruction takes (`sdcli edit`); 0: it cannot edit
    fuse_qkv: bool = True  # its diffusers pipeline fuses the attention's Q/K/V projections: --fuse-qkv

    @property
    def traits(self) -> tuple[str, ...]:
        """The settings it takes, by the names the infotext writer asks about (request.fields.Written.traits)."""
        return tuple(name for name in ("distilled_guidance", "shift", "low_bits") if getattr(self, name))

@dataclass(frozen=True)
class FileParts:
    """How a family's transformer-only files load: the text encoders they lack (roles of
    models.flux_parts.ENCODERS, e.g. "clip_l", "t5xxl", "qwen3") and their VAE kind (e.g. "flux-vae"), given by
    --text-encoder / --vae or found in the models folders, and which of models.loader.FILE_LOADERS builds the
    pipeline. `own_parts`: its files may hold some of those parts themselves (all-in-one checkpoints:
    models.flux_files.held_parts)."""

    text_encoders: tuple[str, ...]
    vae: str
    loader: str
    own_parts: bool = False


@dataclass(frozen=True)
class Family:
    """One model family: its table row (pipelines per mode, native size, prediction default,
    bundled configs, capabilities) and how it is detected. Family modules subclass it for
    behaviour that is not data."""

    network_component: ClassVar[str] = ""  # the denoising network's name among the pipeline's components
    # Its single files are all-in-one checkpoints its pipeline's from_single_file reads with a bundled config
    # folder (single_file_config), even with a transformer as the network (SD3); else models.flux_pipeline's.
    checkpoint_file: ClassVar[bool] = False
    # The separate parts a transformer-only file of this family loads with (None: it has no such files).
    file_parts: ClassVar[FileParts | None] = None
    # Its big text encoders among the pipeline's components (T5-XXL, Qwen2.5-VL, Qwen3): what
    # --quantize-text-encoder quantizes with the network (models.quantize).
    big_text_encoders: ClassVar[tuple[str, ...]] = ()
    # The model-family schedule types it runs (sampling.samplers.MODEL_SCHEDULE_LABELS; Flux.2: "flux2").
    own_schedules: ClassVar[tuple[str, ...]] = ()
    # The ComfyUI edit nodes whose sizing of the references --comfy-edit follows (comfy_edit_inputs); None: none.
    comfy_edit_nodes: ClassVar[str | None] = None

    name: str
    label: str  # for people
    pipelines: Mapping[str, str]  # mode -> diffusers pipeline class; a missing mode is not servable
    native_size: int
    detect_keys: tuple[str, ...] = ()  # original-layout single-file keys that all mark this family
    prediction: str = "eps"  # "eps" or "v": the default when the weights cannot tell
    configs: str = ""  # bundled config folder (sdcli/models/configs/<name>)
    capabilities: Capabilities = Capabilities()
    latent: LatentFormat = LatentFormat()
    load_kwargs: Mapping[str, Any] = field(default_factory=dict)  # extra arguments of its pipelines' loaders
    gpu_dtype: str = "fp16"  # --dtype auto on CUDA (Flux: bf16, whose activations overflow fp16)
    # Request fields left unset (None) take these (Forge's per-model UI defaults; Flux: cfg_scale 1, Euler,
    # simple, distilled_cfg_scale 3.5); what is not here takes request.generation.REQUEST_DEFAULTS (SD's).
    defaults: Mapping[str, Any] = field(default_factory=dict)
    # ComfyUI's own defaults where they differ from `defaults` (Flux.2 dev's guidance 3.5), for a request on
    # ComfyUI's text path (--emphasis comfy, which a replayed ComfyUI graph asks for).
    comfy_defaults: ClassVar[Mapping[str, Any]] = {}

    def defaults_for(self, emphasis: str) -> Mapping[str, Any]:
        """The defaults of a request in emphasis mode `emphasis` (a choice key): ComfyUI's for "comfy"."""
        return {**self.defaults, **self.comfy_defaults} if emphasis == "comfy" else self.defaults

    def automatic_schedule(self, choice: SamplerChoice) -> str:
        """The schedule type "automatic" means with this sampler on this family: the sampler's own (the WebUI)."""
        return choice.sampler.automatic

    def settle_choice(self, choice: SamplerChoice) -> SamplerChoice:
        """The choice with an "automatic" schedule resolved for this family (automatic_schedule)."""
        from dataclasses import replace

        if not choice.automatic or (schedule := self.automatic_schedule(choice)) == choice.schedule:
            return choice
        return replace(choice, schedule=schedule)

    def check_choice(self, choice: SamplerChoice) -> None:
        """Refuse (UsageError naming --schedule and the family) a resolved sampler/schedule this family cannot
        run; after settle_choice, in the plan step. Here: another family's own schedule type."""
        from sdcli.errors import UsageError
        from sdcli.sampling.samplers import MODEL_SCHEDULE_LABELS

        if choice.schedule in MODEL_SCHEDULE_LABELS and choice.schedule not in self.own_schedules:
            raise UsageError(f"--schedule: {MODEL_SCHEDULE_LABELS[choice.schedule]} is a schedule of its own model "
                             f"family's (sized to the image), not of a {self.label} model")

    def check(self, request: GenerationRequest, sampler: Sampler) -> None:
        """Refuse (UsageError naming the flag and the family) what a model of this family cannot do;
        runs in the plan step, before anything loads."""

    def detect(self, shapes: Shapes) -> bool:
        """Whether an original-layout checkpoint (tensor names and shapes) is of this family."""
        return bool(self.detect_keys) and all(k in shapes for k in self.detect_keys)

    def detect_folder(self, index: Json, unet: Json) -> bool:
        """Whether a diffusers folder (its model_index.json, its network's config) is of this family."""
        return False

    def detected_from(self, shapes: Shapes, source: str) -> Detected:
        """What a single file of this family says (its detect() is true): input channels, prediction type."""
        from sdcli.errors import ModelError

        if UNET_CONV_IN not in shapes:
            raise ModelError(f"{source}: the checkpoint has a {self.label} text encoder but no UNet "
                             f"({UNET_CONV_IN} is missing)")
        in_channels = int(shapes[UNET_CONV_IN][1])
        prediction, guessed = self.guess_prediction(in_channels, shapes)
        return Detected(self, in_channels, prediction, guessed)

    def single_file_config(self, shapes: Shapes, source: str) -> tuple[dict[str, Any], str] | None:
        """The config folder spec (bundled family layout) that fits a single file of this family and which
        tokenizer set to write; None: the UNet families' rule (models.single_file.config_spec)."""
        return None

    def guess_prediction(self, in_channels: int, shapes: Shapes) -> tuple[str, bool]:
        """eps or v from a single file's tensors, and whether that is a guess (see sd2)."""
        return ("v" if V_PRED_MARKER in shapes else self.prediction), False

    def native_size_for(self, prediction: str) -> int:
        """The native image side of a model of this family with this prediction type."""
        return self.native_size

    def settle(self, pipe: Any, detected: Detected) -> Detected:
        """What a loaded model shows that its files could not tell (sd2: eps or v); runs after loading."""
        return detected

    def lora_components(self) -> tuple[str, ...]:
        """The pipeline components a LoRA file's layers go into (the denoising network, the text encoders)."""
        return (self.network_component, *(encoder for encoder, _ in self.capabilities.embeddings.values()))

    def lora_state(self, pipe: Any, state: dict[str, Any]) -> dict[str, Any]:
        """A LoRA file's tensors as this family's diffusers loader (pipe.load_lora_weights) takes them."""
        return state

    def load_lora(self, pipe: Any, state: dict[str, Any], adapter: str) -> None:
        """Load a LoRA file's tensors into lora_components() as the peft adapter `adapter`."""
        pipe.load_lora_weights(self.lora_state(pipe, state), adapter_name=adapter)

    def network_module(self, pipe: Any) -> Any:
        """The denoising network's torch module (placement, memory layout, compilation, ControlNet shapes)."""
        return getattr(pipe, self.network_component)

    def network(self, pipe: Any) -> NetworkAdapter:
        """The denoising network behind the loop's call signature."""
        raise NotImplementedError(self.name)

    def native_size_of(self, pipe: Any) -> int:
        """A loaded model's native image side in pixels (a tiny model's is its own)."""
        raise NotImplementedError(self.name)

    def runs_loop(self, pipe: Any, scheduler: Json, in_channels: int) -> bool:
        """Whether sdcli's own loop samples this model (its scheduler config and network input channels)."""
        return False

    def parameterisation(self, scheduler: Json, prediction: str | None = None,
                         shift: float | None = None, sampling: str | None = None) -> Parameterisation:
        """The model's noise parameterisation (sampling.parameterisation) from its scheduler config;
        `prediction` ("eps"/"v", --prediction-type) overrides what the config says; `shift` (--shift) the
        schedule shift of a flow model; `sampling` (--model-sampling) a ComfyUI ModelSampling node's sigmas."""
        raise NotImplementedError(self.name)

    def prompt_encoder(self, pipe: Any, clip_skip: int, emphasis: str, size: tuple[int, int],
                       distilled_cfg: float | None = None) -> PromptEncoder:
        """Prompts -> conditioning for this family's text encoders, at generation size `size` (width, height);
        `distilled_cfg`: the guidance a guidance-distilled network takes with the text (Flux dev)."""
        raise NotImplementedError(self.name)

    def prompt_upsampler(self, pipe: Any, temperature: float, images: Sequence[Any] = ()) -> PromptUpsampler:
        """The pipeline's text encoder rewriting prompts at `temperature`, seeing an edit's reference `images` (PIL,
        as given) if any (Capabilities.upsamples_prompts; the plan step refuses --upsample-prompt for a family
        without)."""
        from sdcli.errors import UsageError

        raise UsageError(f"--upsample-prompt: {self.label} models do not rewrite prompts")

    def inpainting_input(self, mask: torch.Tensor, masked_latent: torch.Tensor) -> torch.Tensor:
        """A dedicated inpainting network's extra input: from the pixel mask [1, 1, H, W] (1 = repaint) and
        the latent of the image with that area blanked. SD: the mask at latent size, then the latent."""
        import torch

        small = torch.nn.functional.interpolate(mask, size=masked_latent.shape[-2:])
        return torch.cat([small.to(masked_latent.device), masked_latent.float()], dim=1)

    def fit_reference(self, image: Any, size: tuple[int, int]) -> Any:
        """An edit's reference image (PIL) fitted to `size`: cropped to its aspect ratio about the centre, then
        resized with Lanczos (PIL's ImageOps.fit: a fractional crop box; diffusers' resize_mode "crop")."""
        from PIL import Image, ImageOps

        return image if image.size == size else ImageOps.fit(image, size, Image.Resampling.LANCZOS)

    def reference_size(self, size: tuple[int, int], native: int) -> tuple[int, int]:
        """The pixel size an edit's reference image of `size` is fitted to (centre crop, then Lanczos) for a
        model of native side `native`: here its own size cut down to whole network tokens."""
        step = self.latent.vae_scale * self.latent.packing
        return max(step, size[0] // step * step), max(step, size[1] // step * step)

    def edit_prompt_encoder(self, pipe: Any, encoder: PromptEncoder, images: Sequence[Any],
                            originals: Sequence[Any], seen: Sequence[Any] = ()) -> PromptEncoder:
        """The prompt encoder of an edit whose reference images are `images` fitted (reference_size) and
        `originals` as given (`seen`: --comfy-edit's pixels for the text encoder, EditInputs.seen): here `encoder`
        (the text alone); a family whose text encoder sees the images too (Qwen-Image-Edit) builds its own."""
        return encoder

    def edit_size(self, sizes: Sequence[tuple[int, int]]) -> tuple[int, int]:
        """An edit's default size from its fitted reference images' sizes: the first one's."""
        return sizes[0]

    def comfy_edit_inputs(self, images: Sequence[Any], native: int, scale: str | None = None) -> EditInputs:
        """--comfy-edit: the reference images (PIL, as given) sized and resized as ComfyUI's edit nodes of this
        family do it (`scale`: --reference-scale, an ImageScaleToTotalPixels before each VAEEncode); UsageError
        naming the flag where sdcli has no such sizing for the family."""
        from sdcli.errors import UsageError

        raise UsageError(f"--comfy-edit: sdcli sizes no {self.label} edit as a ComfyUI edit node does")

    def control_input(self, control_latent: torch.Tensor) -> torch.Tensor:
        """A control model's extra input from the control image's latent (Flux Control: the latent itself)."""
        return control_latent.float()

    def unload_loras(self, pipe: Any) -> None:
        """Remove every LoRA layer from the pipeline's own components: the base model exactly."""
        pipe.unload_lora_weights()

    def token_pixels(self) -> int:
        """Pixels a side of one network token (a UNet: one latent cell; a Flux transformer: a packed 2x2 patch)."""
        return self.latent.vae_scale * self.latent.packing

    def in_channels_of(self, network_channels: int) -> int:
        """The input channels in latent units of a network whose config says `network_channels`."""
        return network_channels


@dataclass(frozen=True)
class Detected:
    """What the weights say: the family, the network's input channels (9 = inpainting), prediction type."""

    family: Family
    in_channels: int
    prediction: str
    prediction_guessed: bool  # True when the weights cannot tell and the family default was taken

    @property
    def inpainting(self) -> bool:
        return self.in_channels == self.family.capabilities.inpainting_channels

    @property
    def control(self) -> bool:
        """A control model (Flux Control): its network takes a control image's latent too."""
        return self.in_channels == self.family.capabilities.control_channels

    @property
    def native_size(self) -> int:
        return self.family.native_size_for(self.prediction)
