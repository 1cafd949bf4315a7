"""What the infotext writer knows of one image (Written) and the field table's writers that need more than one
request field (request.fields' `write=` rows use them). Pure: no torch."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sdcli.request.vocabulary import DIRECTIONS, LOW_BITS_LABELS, low_bits_key

if TYPE_CHECKING:
    from sdcli.sampling.samplers import SamplerChoice


@dataclass(frozen=True)
class Written:
    """What the infotext writer knows of one image: the request, its sampler, the image's seeds and size,
    the sampler's options (sampling.loop.sampler_takes) and eta default, the refiner as the WebUI names it
    ("name [hash]"), and for a hires pass its two samplers and its upscaler's name."""

    request: Any  # request.generation.GenerationRequest
    choice: SamplerChoice
    seed: int
    subseed: int | None
    width: int
    height: int
    takes: Collection[str] = ()
    eta_default: float = 1.0
    refiner: str | None = None
    hires: tuple[SamplerChoice, SamplerChoice, str] | None = None
    traits: Collection[str] = ()
    vae: str | None = None


# Model traits the infotext writer asks about (families.base.Capabilities.traits gives a model's):
DISTILLED_GUIDANCE = "distilled_guidance"  # guidance is a network input (Flux dev/Fill): `Distilled CFG Scale`


def hires_pass(w: Written) -> tuple[SamplerChoice, SamplerChoice, str]:
    """The hires pass's (first, second) samplers and upscaler name (hires rows are written only with them)."""
    assert w.hires is not None
    return w.hires


def differs(value: Any, base: Any) -> Any:
    """A hires setting is written when it is set and differs from the first pass's."""
    return value if value is not None and value != base else None


def taken(option: str, w: Written, changed: bool) -> str | None:
    """A sampler option's key: written when the sampler takes the option and it differs from the default."""
    return f"{getattr(w.request, option):g}" if option in w.takes and changed else None


def eta_written(w: Written) -> str | None:
    eta = w.eta_default if w.request.eta is None else w.request.eta
    return f"{eta:g}" if "eta" in w.takes and eta != w.eta_default else None


def ensd_written(w: Written) -> int | None:
    eta = w.eta_default if w.request.eta is None else w.request.eta
    return w.request.ensd if w.request.ensd and w.choice.sampler.uses_ensd and eta != 0 else None


def distilled_written(w: Written) -> str | None:
    """Forge writes `Distilled CFG Scale` for models that use distilled guidance (sd_model.use_distilled_cfg_scale)."""
    value = w.request.distilled_cfg_scale
    return f"{value:g}" if DISTILLED_GUIDANCE in w.traits and value is not None else None


def hires_distilled_written(w: Written) -> str | None:
    """Forge's `Hires Distilled CFG Scale`: the hires pass's distilled guidance, on models that use it, written
    (as `Hires CFG Scale`) when it differs from the first pass's."""
    value = differs(w.request.hires.distilled_cfg_scale, w.request.distilled_cfg_scale)
    return f"{value:g}" if DISTILLED_GUIDANCE in w.traits and value is not None else None


def low_bits_written(w: Written) -> str | None:
    """Forge writes `Diffusion in Low Bits` when its setting is not Automatic (its label, e.g. `bnb-nf4`)."""
    value = w.request.low_bits
    return None if value is None or low_bits_key(value) == "automatic" else LOW_BITS_LABELS[low_bits_key(value)]


def outpaint_sides(w: Written) -> str:
    pixels = w.request.outpaint.pixels
    return " ".join(f"{side} {px}" for side, px in zip(DIRECTIONS, pixels, strict=True) if px)
