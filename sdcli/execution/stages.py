"""What a run is made of before its batches: which path runs it, the prompt encoder, the refiner stage."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sdcli.families.base import PromptEncoder
from sdcli.models.loaded import LoadedModel
from sdcli.request.generation import GenerationRequest, choice_key
from sdcli.sampling.samplers import SamplerChoice

StepCallback = Callable[[int, int], None]


def runs_own_loop(model: LoadedModel, choice: SamplerChoice, request: GenerationRequest) -> bool:
    """Whether sdcli's own loop runs this: a sampler of the loop on a model its family lets the loop run."""
    return choice.sampler.function is not None and model.family.runs_loop(
        model.pipe, model.base_scheduler.config, model.detected.in_channels)


def prompt_encoder(model: LoadedModel, request: GenerationRequest,
                   size: tuple[int, int] = (1024, 1024)) -> PromptEncoder:
    """The family's prompt encoder for `request` at generation size `size` (width, height), its encodings kept
    on the model across jobs (execution.text_cache)."""
    from sdcli.execution.text_cache import KeptEncoder

    settings = (request.clip_skip, choice_key(request.emphasis), size, request.distilled_cfg_scale)
    return KeptEncoder(model.family.prompt_encoder(model.pipe, *settings), model, settings)


@dataclass(frozen=True)
class OwnRefiner:
    """The refiner for sdcli's loop: its model (network, VAE) and its prompt encoder."""

    model: LoadedModel
    encoder: PromptEncoder


def refiner_stage(model: LoadedModel, request: GenerationRequest, refiner: LoadedModel | None, choice: SamplerChoice,
                  own: bool = False, size: tuple[int, int] = (1024, 1024)) -> Any:
    """With --refiner: for sdcli's loop (`own`) an OwnRefiner it switches to, as the WebUI; else a function
    finishing the base's latents with the refiner (diffusers' denoising_end/denoising_start split at
    --refiner-switch). None without a refiner."""
    from sdcli.families import check_refiner_pair
    from sdcli.models.loader import set_sampler

    if refiner is None:
        return None
    check_refiner_pair(model.family, refiner.family)
    if own:
        return OwnRefiner(refiner, prompt_encoder(refiner, request, size))
    # txt2img hands over to the refiner's img2img pipeline; the image modes to its own kind.
    stage = refiner.for_mode("img2img" if request.mode == "txt2img" else request.mode)
    set_sampler(stage, choice, request.prediction_type)
    embeds = prompt_encoder(stage, request).pipeline_embeds(request.prompt, request.negative_prompt)

    def finish(latents: Any, generators: list[Any], step_end: Any, mode_args: dict[str, Any]) -> Any:
        n = latents.shape[0]
        # The inpainting pipelines take the latents as their image and keep the mask and size.
        kept = {} if request.mode == "txt2img" else {
            k: v for k, v in mode_args.items() if k in ("mask_image", "width", "height", "strength")}
        return stage.pipe(image=latents, denoising_start=request.refiner_switch, num_inference_steps=request.step_count,
                          guidance_scale=request.cfg_scale, generator=generators, callback_on_step_end=step_end,
                          output_type="pt", **kept, **{k: v.repeat(n, *[1] * (v.ndim - 1)) for k, v in embeds.items()})

    return finish
