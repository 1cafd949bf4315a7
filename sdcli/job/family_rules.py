"""What a job's model family takes and refuses, decided in the plan step (job.plan) before anything loads: the
settings only some families take (FAMILY_SETTINGS), instruction edits, a control model's input, and the flag a
storage came from. Moved out of job.plan unchanged."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from sdcli.errors import SdcliError, UsageError
from sdcli.models.resolve import ModelRef
from sdcli.request.generation import GenerationRequest, choice_key, with_defaults


def editing_families() -> str:
    """The families that edit by instruction (Capabilities.references), by label."""
    from sdcli.families import FAMILIES

    return ", ".join(f.label for f in FAMILIES.values() if f.capabilities.references)


def comfy_edit_families() -> str:
    """The families whose edits --comfy-edit sizes as ComfyUI's nodes do, with those nodes."""
    from sdcli.families import FAMILIES

    nodes = {f.comfy_edit_nodes: [g.label for g in FAMILIES.values() if g.comfy_edit_nodes == f.comfy_edit_nodes]
             for f in FAMILIES.values() if f.comfy_edit_nodes}
    return "; ".join(f"{', '.join(labels)}: {node}" for node, labels in nodes.items())


def check_edit(request: GenerationRequest, family: Any) -> None:
    """`sdcli edit` needs a family that edits by instruction (Capabilities.references), with at most as many
    reference images as it takes, and nothing an edit cannot take (request.generation.edit_refusal); one line
    naming the family (None: a model whose files do not tell it, whose load step says why)."""
    from sdcli.families import name_hint
    from sdcli.request.edits import edit_refusal

    if request.mode != "edit":
        return
    takes = family.capabilities.references if family is not None else None
    if takes == 0:
        raise UsageError(f"sdcli edit: a {family.label} model cannot edit by instruction; use one of: "
                         f"{editing_families()}{name_hint(family)}")
    if takes is not None and len(request.references) > takes:
        raise UsageError(f"--image: {len(request.references)} reference images; a {family.label} model takes at "
                         f"most {takes}")
    flag = "--comfy-edit" if request.comfy_edit else "--reference-scale" if request.reference_scale else None
    if flag and family is not None and family.comfy_edit_nodes is None:
        raise UsageError(f"{flag}: sdcli sizes no {family.label} edit as a ComfyUI edit node does (it follows "
                         f"{comfy_edit_families()})")
    refusal = edit_refusal(request, f"{getattr(family, 'article', 'a')} {family.label} model" if family is not None
                           else "this model")
    if refusal is not None:
        raise UsageError(refusal)


def check_control_input(request: GenerationRequest, detected: Any) -> None:
    """A --control-image without --controlnet is a control model's input (Flux Control): refused for a family
    without one; a Flux Control model needs it (a BFL control LoRA's need shows once it is loaded)."""
    own = any(not unit.model for unit in request.controlnets)
    if own and detected.family.capabilities.control_channels is None:
        raise UsageError(f"--control-image: a {detected.family.label} model takes no control image without "
                         "--controlnet MODEL (alone it is for Flux Control models and BFL control LoRAs)")
    if detected.control and not own:
        raise UsageError(f"--control-image: a {detected.family.label} model needs a control image: give "
                         "--control-image IMG (--preprocessor canny for a photo; a depth map with --preprocessor none)")


def storage_flag(low_bits: str | None) -> str:
    """The flag a request's storage came from, for refusals: --quantize gives its short names (nf4), --low-bits
    Forge's labels (bnb-nf4)."""
    from sdcli.request.storage import QUANTIZE

    return "--quantize" if (low_bits or "").strip().lower() in QUANTIZE else "--low-bits"


def family_of(model: ModelRef) -> Any:
    """The model's family (families.base.Family) from its files' headers, or None when they cannot tell: the
    load step then reports the model's problem as it always has (and the unset settings take sdcli's defaults)."""
    from sdcli.models import loader

    try:
        return loader.detect_ref(model).family
    except (SdcliError, OSError, ValueError, KeyError):
        return None


# Settings only some families take: (request field, flag, the Capabilities flag, what a family without it lacks).
FAMILY_SETTINGS = (
    ("distilled_cfg_scale", "--distilled-cfg", "distilled_guidance", "have no distilled guidance", "Flux dev"),
    ("hires.distilled_cfg_scale", "--hires-distilled-cfg", "distilled_guidance", "have no distilled guidance",
     "Flux dev"),
    ("shift", "--shift", "shift", "have no sigma shift to set", "flow models such as Flux"),
    ("model_sampling", "--model-sampling", "shift", "have no flow sigmas to set", "flow models such as Flux"),
    ("upsample_prompt", "--upsample-prompt", "upsamples_prompts", "do not rewrite prompts", "Flux.2 dev"),
    ("low_bits", "--low-bits", "low_bits", "are not stored in low bits by sdcli", "Flux"),
)


def for_family(request: GenerationRequest, family: Any, fallback: Mapping[str, Any] | None = None,
               ignore_unused: bool = False) -> GenerationRequest:
    """`request` with its unset settings given `family`'s defaults (None: sdcli's), after refusing (or with
    `ignore_unused` dropping) the settings `family` does not take, one line naming the flag and the family."""
    if family is None:
        return with_defaults(request, None, fallback)
    for name, flag, capability, lacks, default_users in FAMILY_SETTINGS:
        part, _, leaf = name.rpartition(".")
        holder = getattr(request, part) if part else request
        value = None if holder is None else getattr(holder, leaf)
        if value is None or getattr(family.capabilities, capability) or (name == "low_bits" and
                                                                         value.lower() == "automatic"):
            continue
        if ignore_unused:
            unset = replace(holder, **{leaf: None})
            request = replace(request, **{part: unset}) if part else unset
            continue
        flag = storage_flag(value) if name == "low_bits" else flag
        raise UsageError(f"{flag}: {family.label} models {lacks}; it applies to {_takers(capability, default_users)}")
    return with_defaults(request, family.defaults_for(choice_key(request.emphasis)), fallback)


def _takers(capability: str, default: str) -> str:
    """The families that take a setting, by label, for a refusal ("Flux dev"): from the family table."""
    from sdcli.families import FAMILIES

    labels = [f.label for f in FAMILIES.values() if getattr(f.capabilities, capability)]
    return ", ".join(labels) if labels else default
