"""Flux.2 [dev]: the Flux.2 transformer (families.flux2: latents, network call, sampling) at 6144 wide with a
guidance embedding, Mistral Small 3 (Mistral3ForConditionalGeneration, 24B) as its text encoder.

As diffusers' Flux2Pipeline runs it: the prompt in Mistral's chat template under BFL's system message, padded to
512 tokens, hidden states 10, 20 and 30 side by side (conditioning.flux2; --emphasis comfy, a replayed ComfyUI
graph: ComfyUI's unpadded encoding with zeros in front); the distilled guidance
(--distilled-cfg, as Flux.1 dev) as a network input; no negative prompt (CFG 1: true CFG is off unless
--cfg-scale asks for it). Sampled as Klein: ComfyUI's Flux2Scheduler by default, its Flux2 table (mu 2.02) for the
other schedule types; reference images (`sdcli edit`) as klein takes them, as diffusers' Flux2Pipeline does.
Imported without torch.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from sdcli.families.base import FileParts, Json, Shapes
from sdcli.families.flow import find_key, flow_capabilities
from sdcli.families.flux2 import (
    DEV_PIPELINES,
    DEV_WIDTHS,
    FLUX2_DIFFUSERS_MARK,
    FLUX2_MARK,
    FLUX2_SCHEDULE,
    GUIDANCE_MARKS,
    LATENT,
    SHIFT,
    Flux2Family,
)

if TYPE_CHECKING:
    from sdcli.families.base import PromptEncoder, PromptUpsampler
    from sdcli.request.generation import GenerationRequest

DEV_GUIDANCE = 4.0  # diffusers' Flux2Pipeline.__call__ default guidance_scale
COMFY_GUIDANCE = 3.5  # ComfyUI's, without a FluxGuidance node


@dataclass(frozen=True)
class Flux2DevFamily(Flux2Family):
    """Flux.2 [dev]: detected by a Flux2Pipeline folder (a Mistral3 text encoder, a transformer with guidance
    embeddings) or a Flux.2 transformer file with a guidance embedding; prompts through Mistral Small 3."""

    clip_skip_why: ClassVar[str | None] = "has no CLIP skip (its text is Mistral Small 3's layers 10, 20 and 30)"
    full_widths: ClassVar[tuple[int, ...]] = DEV_WIDTHS
    # ComfyUI's guidance where no FluxGuidance node sets it (comfy/model_base.py Flux.extra_conds, which Flux2 keeps)
    comfy_defaults: ClassVar[Mapping[str, Any]] = {"distilled_cfg_scale": COMFY_GUIDANCE}
    file_parts: ClassVar[FileParts | None] = FileParts(("mistral3",), "flux2-vae", "flux2")  # models.flux2_files

    def detect(self, shapes: Shapes) -> bool:
        marked = any(find_key(shapes, mark) is not None for mark in (FLUX2_MARK, FLUX2_DIFFUSERS_MARK))
        return marked and any(find_key(shapes, g) is not None for g in GUIDANCE_MARKS)

    def detect_folder(self, index: Json, unet: Json) -> bool:
        """A Flux2* pipeline that is not Klein's, or any Flux2* folder with a Mistral3 text encoder or a guidance
        embedding in its transformer."""
        name = str(index.get("_class_name", ""))
        encoder = index.get("text_encoder") or ["", ""]
        mistral = str(encoder[-1]).startswith("Mistral")
        return name.startswith("Flux2") and (not name.startswith("Flux2Klein") or mistral
                                             or bool(unet.get("guidance_embeds", False)))

    def prompt_encoder(self, pipe: Any, clip_skip: int, emphasis: str, size: tuple[int, int],
                       distilled_cfg: float | None = None) -> PromptEncoder:
        from sdcli.conditioning.flux2 import Flux2DevPromptEncoder

        return Flux2DevPromptEncoder(pipe.tokenizer, pipe.text_encoder, emphasis,
                                     DEV_GUIDANCE if distilled_cfg is None else distilled_cfg)

    def refusals(self, request: GenerationRequest) -> dict[str, tuple[bool, str]]:
        """Flux2Family's, and caption upsampling of a plain prompt only."""
        from sdcli.conditioning.schedule import CondSchedule

        upsample = request.upsample_prompt is not None
        return {**super().refusals(request),
                "--upsample-prompt": (upsample and not CondSchedule.is_plain(request.prompt, ""),
                                      "rewrites a plain prompt only (no prompt editing, alternation or AND)")}

    def prompt_upsampler(self, pipe: Any, temperature: float, images: Sequence[Any] = ()) -> PromptUpsampler:
        """Mistral Small 3 rewriting prompts as diffusers' Flux2Pipeline.upsample_prompt (conditioning.flux2_upsample),
        seeing an edit's reference `images` through its vision tower: a text encoder loaded without its
        language-model head (a single file's text model), or for an edit without a vision tower or a tokenizer
        without Pixtral's image tokens, is refused by name."""
        from sdcli.conditioning.flux2_upsample import IMAGE_TOKENS, PromptUpsampler
        from sdcli.errors import UsageError

        encoder = type(pipe.text_encoder).__name__
        whole = ("caption upsampling needs the whole Mistral Small 3 (a diffusers folder's "
                 "Mistral3ForConditionalGeneration)")
        if not pipe.text_encoder.can_generate():
            raise UsageError(f"--upsample-prompt: the text encoder ({encoder}) has no language-model head to write "
                             f"with; {whole}")
        if images and getattr(pipe.text_encoder.config, "vision_config", None) is None:
            raise UsageError(f"--upsample-prompt: the text encoder ({encoder}) has no vision tower to see the "
                             f"reference images (--image) with; {whole}")
        tokenizer = getattr(pipe.tokenizer, "tokenizer", pipe.tokenizer)  # a PixtralProcessor's text tokenizer
        missing = [t for t in IMAGE_TOKENS if tokenizer.convert_tokens_to_ids(t) in (None, tokenizer.unk_token_id)]
        if images and missing:
            raise UsageError(f"--upsample-prompt: the tokenizer has no {' or '.join(missing)} token to show Mistral "
                             "the reference images (--image) with; use the model's published tokenizer (a tiny "
                             "model: build it again with `sdcli tiny`)")
        return PromptUpsampler(pipe.tokenizer, pipe.text_encoder, temperature, images)


# diffusers' Flux2Pipeline.__call__ defaults: 50 steps, guidance 4 (distilled, a network input); CFG 1 (the pipeline
# has no negative prompt); Euler on ComfyUI's Flux2Scheduler as ComfyUI's Flux.2 dev template.
FLUX2_DEV = Flux2DevFamily("flux2-dev", "Flux.2 dev", DEV_PIPELINES, 1024,
                           capabilities=flow_capabilities("Flux.2 dev", loop_channels=(128,), references=4,
                                                          distilled_guidance=True, upsamples_prompts=True),
                           latent=LATENT,
                           defaults={"steps": 50, "cfg_scale": 1.0, "sampler": "Euler", "schedule": FLUX2_SCHEDULE,
                                     "distilled_cfg_scale": DEV_GUIDANCE},
                           shift=SHIFT)
