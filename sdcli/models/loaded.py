"""A loaded model: the diffusers pipeline's components and everything sdcli knows and did about them.

sdcli keeps its state here, never as attributes on diffusers objects: the family and what
the weights said (Detected), the model's own scheduler (samplers are built from its config),
the add-ons put on it (LoRA adapters, embeddings, the VAE in use, the NaN guard on decodes),
the runtime plan as carried out, and how the infotext names it. No torch at import.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from sdcli.errors import ModelError
from sdcli.families import pipeline_class
from sdcli.families.base import Detected, Family, NetworkAdapter

if TYPE_CHECKING:
    from sdcli.models.runtime import RuntimePlan
    from sdcli.sampling.parameterisation import Parameterisation


INPAINTING_MODES = ("inpaint", "outpaint")  # modes a dedicated inpainting checkpoint runs


class Components(Protocol):
    """What sdcli reads of a diffusers pipeline everywhere: its VAE, scheduler and VAE scale factor.
    The family module reads the rest (denoising network, text encoders)."""

    vae: Any
    scheduler: Any
    vae_scale_factor: int
    components: dict[str, Any]  # every part by name (diffusers' DiffusionPipeline.components)

    def __call__(self, *args: Any, **kwargs: Any) -> Any: ...


@dataclass
class DecodeGuard:
    """The fp16 NaN guard of one model's VAEs: which ones carry it and where it reports."""

    note: Callable[[str], None] = field(default=lambda _message: None)
    vaes: list[Any] = field(default_factory=list)

    def covers(self, vae: Any) -> bool:
        return any(v is vae for v in self.vaes)


@dataclass
class AddOns:
    """What sdcli put on a loaded model; shared by every mode's pipeline of it (one set of weights)."""

    loras: dict[str, str] = field(default_factory=dict)  # peft adapter name -> file path
    # The active adapters' text-encoder weights (models.lora; None while being changed)
    text_loras: tuple[tuple[str, float], ...] | None = ()
    embeddings: dict[str, str] = field(default_factory=dict)  # embedding name -> hash
    vae_path: Path | None = None  # --vae in use (None: the model's own)
    base_vae: Any = None  # the model's own VAE, kept while another is in use
    guard: DecodeGuard = field(default_factory=DecodeGuard)  # the fp16 NaN guard on VAE decodes (models.vae)


@dataclass
class LoadedModel:
    """One loaded model (see the module doc). `pipe` is the pipeline of one mode; for_mode() gives
    another mode's, sharing the weights, the add-ons and the base scheduler."""

    pipe: Components
    detected: Detected
    base_scheduler: Any  # the model's own scheduler; pipe.scheduler is the chosen sampler's
    name: str = ""  # for the infotext (`Model:` / `Refiner:`)
    hash: str = ""
    addons: AddOns = field(default_factory=AddOns)
    runtime: RuntimePlan | None = None  # the plan as carried out (memory decisions included)
    # Other modes' pipelines made by for_mode, by class name, with the components they were made from:
    # one per batch line cost a from_pipe each (~25 ms on the tiny model). Shared by this model's copies.
    mode_pipes: dict[str, tuple[tuple[int, ...], Components]] = field(default_factory=dict, repr=False,
                                                                      compare=False)
    # Prompt encodings kept across jobs (execution.text_cache), most recent last. Shared by this model's copies.
    encodings: OrderedDict[Any, Any] = field(default_factory=OrderedDict, repr=False, compare=False)

    @classmethod
    def of(cls, pipe: Components, family: str, name: str = "") -> LoadedModel:
        """A pipeline built elsewhere (benchmarks, tools) as a loaded model of the named family: its
        network's input channels and its scheduler's prediction type as the folder detection reads them."""
        from sdcli.families import FAMILIES

        fam = FAMILIES[family]
        channels = int(fam.network_module(pipe).config.in_channels)
        prediction = "v" if pipe.scheduler.config.get("prediction_type") == "v_prediction" else "eps"
        return cls(pipe, Detected(fam, channels, prediction, False), pipe.scheduler, name=name)

    @property
    def family(self) -> Family:
        return self.detected.family

    def for_mode(self, mode: str) -> LoadedModel:
        """This model with the pipeline for `mode`, sharing its loaded weights (diffusers' from_pipe: no
        second load).

        The families table names the class; the network's input channels decide what it can do;
        a mismatch is a usage error.
        """
        import diffusers

        detected, pipe = self.detected, self.pipe
        cls = pipeline_class(detected, mode)
        # An ordinary checkpoint takes the latent (and inpaints by blending latents with the mask); a
        # dedicated inpainting checkpoint takes latents + mask + masked-image latents, in its modes only.
        latent, inpainting = self.family.latent.channels, self.family.capabilities.inpainting_channels
        channels = (latent, inpainting) if mode in INPAINTING_MODES and inpainting else (latent,)
        if detected.control:  # a control model (Flux Control): its family's pipelines are its own
            channels = (detected.in_channels,)
        kinds = {latent: "an ordinary checkpoint", inpainting: "a dedicated inpainting checkpoint"}
        in_channels = detected.in_channels
        if in_channels not in channels:
            hint = "; use sdcli inpaint or outpaint with it" if detected.inpainting else ""
            raise ModelError(f"--model: {mode} needs a UNet with {' or '.join(map(str, channels))} input "
                             f"channels; this model's has {in_channels} "
                             f"({kinds.get(in_channels, 'an unknown kind')}){hint}")
        if type(pipe).__name__ == cls:
            return self
        components: dict[str, Any] = getattr(pipe, "components", {})
        made_from = tuple(id(c) for c in components.values())  # a swapped VAE or scheduler: made anew
        cached = self.mode_pipes.get(cls)
        if cached is not None and cached[0] == made_from:
            return replace(self, pipe=cached[1])
        # from_pipe casts every component to one dtype, which diffusers refuses for a quantized model (a GGUF
        # transformer): those are left out of it and put back as they are.
        quantized = {name: part for name, part in components.items() if getattr(part, "is_quantized", False)}
        moved = getattr(diffusers, cls).from_pipe(pipe, **dict.fromkeys(quantized))
        if quantized:
            moved.register_modules(**quantized)
        moved.set_progress_bar_config(disable=True)
        self.mode_pipes[cls] = (made_from, moved)
        return replace(self, pipe=moved)

    def parameterisation(self, prediction: str | None = None, shift: float | None = None,
                         sampling: str | None = None) -> Parameterisation:
        """The model's noise parameterisation from its own scheduler; `prediction` ("eps"/"v"), `shift`
        (a flow model's schedule shift) and `sampling` (a ComfyUI ModelSampling node's sigmas) override."""
        return self.family.parameterisation(self.base_scheduler.config, prediction, shift, sampling)

    @property
    def network(self) -> NetworkAdapter:
        """The denoising network behind the loop's one call signature (the family's adapter)."""
        return self.family.network(self.pipe)

    @property
    def native_size(self) -> int:
        """The model's native image side in pixels (its network's sample size x the VAE scale factor)."""
        return self.family.native_size_of(self.pipe)
