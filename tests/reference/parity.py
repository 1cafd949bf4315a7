"""sdcli's images vs the WebUI reference: one comparison, used by the tests and the bench."""

from __future__ import annotations

from typing import Any

import numpy as np

from tests.reference.pipeline_ref import generate

# WebUI reference keyword -> sdcli GenerationRequest field.
SDCLI_FIELDS = {"negative": "negative_prompt", "cfg": "cfg_scale", "sampler": "sampler", "scheduler": "schedule",
                "clip_skip": "clip_skip", "emphasis": "emphasis", "rng": "rng", "ensd": "ensd", "eta": "eta",
                "subseed": "subseed", "subseed_strength": "subseed_strength", "s_churn": "s_churn",
                "s_tmin": "s_tmin", "s_tmax": "s_tmax", "s_noise": "s_noise", "sigma_min": "sigma_min",
                "sigma_max": "sigma_max", "steps": "steps", "seed": "seed", "width": "width", "height": "height",
                "batch_size": "batch_size"}


CONTENTS = {"original": "original", "latent noise": "latent-noise", "latent nothing": "latent-nothing"}


def sdcli_images(model: Any, prompt: str, init_image: Any = None, denoising_strength: float = 0.75,
                 mask_image: Any = None, inpainting_fill: str = "original", refiner: Any = None,
                 refiner_switch_at: float = 0.8, **settings: Any) -> list[np.ndarray]:
    """The same settings through sdcli's job (job.generate.run) on a loaded model (models.loaded.LoadedModel)."""
    from dataclasses import replace

    from sdcli.io.images import PreparedInputs
    from sdcli.job.generate import run
    from sdcli.request.generation import GenerationRequest, ImageInput, InpaintSettings, validate

    fields = {SDCLI_FIELDS[k]: v for k, v in settings.items()}
    for key, value in (("schedule", "automatic"), ("emphasis", "original"), ("rng", "cpu")):
        fields[key] = str(fields.get(key, value)).lower()
    inputs, mode = None, "txt2img"
    if init_image is not None:
        mode = "img2img"
        fields["init"] = ImageInput(image="-", strength=denoising_strength)
        inputs = PreparedInputs(image=init_image, mask=mask_image)  # no paste-back: compared before it
    if mask_image is not None:
        mode = "inpaint"
        fields["inpaint"] = InpaintSettings(mask="-", mask_blur=0, masked_content=CONTENTS[inpainting_fill])
    if refiner is not None:
        fields.update(refiner="r", refiner_switch=refiner_switch_at)
        refiner = replace(refiner, name="r", hash="h")
    request = GenerationRequest(prompt=prompt, mode=mode, **fields)
    choice = validate(request)
    return [np.asarray(g.image) for g in run(request, model, choice, model_name="m", model_hash="h", inputs=inputs,
                                             refiner=refiner)]


DEFAULTS = {"steps": 4, "cfg": 7.0, "seed": 1, "width": 32, "height": 32}


def max_difference(model: Any, prompt: str, **settings: Any) -> int:
    """Largest per-pixel difference (0-255) between sdcli (on a loaded model) and the WebUI reference (on its
    diffusers pipeline's components)."""
    settings = {**DEFAULTS, **settings}
    ours = sdcli_images(model, prompt, **settings)
    if settings.get("refiner") is not None:
        settings["refiner"] = settings["refiner"].pipe
    theirs = generate(model.pipe, prompt, **settings)
    return max(int(np.abs(a.astype(int) - b.astype(int)).max()) for a, b in zip(ours, theirs, strict=True))
