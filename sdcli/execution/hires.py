"""The hires fix pass on sdcli's loop, as the WebUI's sample_hr_pass does it:

1. upscale the first pass: a latent mode interpolates the latents; any other upscaler
   decodes, upscales the 8-bit images (models.upscalers) and encodes them again;
2. crop the latents to the `Hires resize` target;
3. fresh image noise of the same seeds (and variation seeds) at the new size;
4. img2img on the loop at the target size with the hires prompt, sampler, schedule and CFG:
   `Hires steps` (0 = the first pass's) are run exactly, out of a schedule of
   int(steps / min(denoise, 0.999)) steps, as the WebUI's img2img counts steps it is given.

The settings, target size and infotext keys are sdcli.request.hires.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from sdcli.errors import UsageError
from sdcli.families.base import PromptEncoder
from sdcli.models.loaded import LoadedModel
from sdcli.request.generation import GenerationRequest, hires_choices
from sdcli.request.hires import check_final_size, target_size


@dataclass
class HiresStage:
    """A ready hires pass for sdcli's loop: the hires request (prompt, sampler, CFG, steps as the
    second pass runs them), its sampler and prompt encoder, the upscaler and the target."""

    request: Any  # GenerationRequest of the second pass
    choice: Any
    encoder: PromptEncoder
    upscaler: Any  # models.upscalers.Upscaler
    target: tuple[int, int, int, int]
    control: Any = None  # controlnet.hook.ControlHook at the hires size (ControlNet's "Hr Option: Both")

    def run(self, model: LoadedModel, latents: Any, seeds: list[int], subseeds: list[int | None],
            on_step: Any = None) -> Any:
        """The first pass's latents -> the hires pass's latents (steps 1-4 of the module doc)."""
        import torch

        from sdcli.execution.latents import decode, encode_image
        from sdcli.execution.own_loop import image_noise, loop_denoiser, sampling_options
        from sdcli.sampling.loop import sample

        to_x, to_y, tx, ty = self.target
        factor = model.family.latent.vae_scale
        if (mode := self.upscaler.ref.latent) is not None:
            latents = torch.nn.functional.interpolate(latents, size=(to_y // factor, to_x // factor),
                                                      mode=mode[0], antialias=mode[1])
        else:
            images = [self.upscaler.resize_to(image, to_x, to_y) for image in decode(model, latents)]
            latents = torch.cat([encode_image(model, image, 1) for image in images])
        h, w = latents.shape[-2:]
        latents = latents[:, :, ty // 2:h - (ty + 1) // 2, tx // 2:w - (tx + 1) // 2]
        request, s = self.request, self.request.hires
        if s.denoise == 0:  # the WebUI's img2img steps for strength 0: a schedule of no steps, the latents as they are
            return latents
        noise = image_noise(request, model, seeds, subseeds, latents.shape[-1] * factor, latents.shape[-2] * factor)
        denoiser = loop_denoiser(request, model, self.choice, self.encoder)
        if self.control is not None:
            denoiser.control, on_step = self.control, self.control.follow(on_step)
        steps = s.steps or request.step_count
        total = int(steps / min(s.denoise, 0.999))
        return sample(self.choice, denoiser, noise, total, options=sampling_options(request),
                      init_latent=latents, strength=s.denoise, t_enc=steps - 1, on_step=on_step)


def hires_stage(model: LoadedModel, request: GenerationRequest, own: bool, size: tuple[int, int],
                upscaler: Any = None) -> HiresStage | None:
    """The hires pass of `request` (prompts already encoder text) at first-pass `size`, or None.

    `upscaler` is a ready models.upscalers.Upscaler (a built-in one is made when not given).
    Raises UsageError for what the pass cannot run.
    """
    from sdcli.conditioning.schedule import CondSchedule
    from sdcli.execution.stages import prompt_encoder
    from sdcli.models.assets import encoder_text
    from sdcli.models.upscalers import ready, resolve_upscaler

    s = request.hires
    if s is None:
        return None
    if not own:
        raise UsageError("--hires: this model or sampler runs in the diffusers pipeline; hires fix runs only in "
                         "sdcli's own loop (SD 1.x/2.x/XL with a sampler of `sdcli samplers`)")
    width, height = size
    factor = model.family.latent.vae_scale
    check_final_size(width, height, s, factor)
    target = target_size(width, height, s, factor)
    prompt = encoder_text(model, s.prompt) if s.prompt is not None else request.prompt
    negative = encoder_text(model, s.negative_prompt) if s.negative_prompt is not None else request.negative_prompt
    steps = s.steps or request.step_count
    if not CondSchedule.is_plain(prompt, negative, steps) or not CondSchedule.is_plain(
            request.prompt, request.negative_prompt, request.step_count):
        raise UsageError("--hires: prompt editing [a:b:N], [a|b] and weighted AND are not supported with hires "
                         "fix yet (the WebUI's hires prompt timeline); use plain prompts")
    upscaler = upscaler or ready(resolve_upscaler(s.upscaler, "--hires-upscaler"), "--hires-upscaler")
    _, second = hires_choices(request)
    hires_request = replace(request, prompt=prompt, negative_prompt=negative, steps=steps,
                            cfg_scale=request.cfg_scale if s.cfg_scale is None else s.cfg_scale,
                            distilled_cfg_scale=request.distilled_cfg_scale if s.distilled_cfg_scale is None
                            else s.distilled_cfg_scale,
                            sampler=second.sampler.name, schedule=second.schedule)
    encoder = prompt_encoder(model, hires_request, (target[0], target[1]))
    return HiresStage(hires_request, second, encoder, upscaler, target)

