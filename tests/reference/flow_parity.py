"""The flow families' parity harness: sdcli's images through its job (job.generate.run) vs a reference's, in pixels.

A family's test file writes only its reference call, `theirs(model, prompt, **settings) -> image(s)`, and its own
rows; `FlowParity(family, theirs)` gives ours()/difference()/check() with the family's defaults (tests/
flow_families.py) on both sides. Settings: prompt, negative, steps (3), cfg (1), sampler (Euler), schedule
(Simple), seed (1), shift, batch, width/height (32), distilled_cfg, init/strength (img2img); any other key is the
reference's alone (sdcli ignores it). Each comparison shows it can fail: `perturb` changes sdcli's side only.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from tests.flow_families import FLOW_FAMILIES

PROMPT = "a red cat on a hill, photo"
BASE = {"negative": "", "steps": 3, "cfg": 1.0, "sampler": "Euler", "schedule": "Simple", "seed": 1}

# The sampler x schedule grid rows: (sampler, the sdcli-side perturbation that must break the equality).
SAMPLERS = [("Euler", {"steps": 4}), ("Euler a", {"seed": 2}), ("Heun", {"sampler": "Euler"}),
            ("DPM++ 2M", {"sampler": "Euler"})]
NON_ANCESTRAL = [row for row in SAMPLERS if row[0] != "Euler a"]
SCHEDULES = ["Simple", "Karras"]
# CFG rows: at CFG 1 no uncond pass runs (a negative prompt changes nothing, CFG 1.5 does); true CFG above 1.
CFG1 = {"cfg": 1.0, "negative": "blurry dog", "perturb": {"cfg": 1.5}}
TRUE_CFG = [{"cfg": 3.0, "negative": "blurry dog", "perturb": {"negative": "sky"}},
            {"cfg": 2.5, "negative": "", "sampler": "DPM++ 2M", "schedule": "Karras", "perturb": {"cfg": 2.0}}]
# img2img rows: WebUI strength 0.6 of 4 steps (ComfyUI 3 steps at denoise 0.75), and Euler a with true CFG.
IMG2IMG = [{"strength": 0.6, "steps": 4, "perturb": {"strength": 0.75}},
           {"strength": 0.75, "steps": 4, "sampler": "Euler a", "cfg": 2.0, "negative": "dog", "perturb": {"seed": 3}}]


def init_image():
    """The img2img source every parity test uses: a 32 px radial gradient."""
    from PIL import Image

    return Image.radial_gradient("L").convert("RGB").resize((32, 32))


def unit_tensor(image):
    """A PIL image as a (1, 3, H, W) float tensor in 0..1."""
    import torch

    return torch.from_numpy(np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0).permute(2, 0, 1)[None]


def comfy_steps(steps: int, strength: float) -> tuple[int, float]:
    """The WebUI's img2img (int(strength x steps) + 1 steps from the tail of a `steps` schedule) as ComfyUI's
    KSampler (steps, denoise) over the same sigmas."""
    run = int(min(strength, 0.999) * steps) + 1
    return run, run / steps


def comfy_img2img(steps: int, init: Any, strength: float, vae: Any = None, process_in: Callable | None = None):
    """(steps, start, denoise) for a ComfyUI reference: txt2img (start None, denoise 1) without `init`; else the
    WebUI's steps as comfy_steps and the start as the image in 0..1, or with `vae` as process_in(vae, the VAE
    posterior's mean)."""
    if init is None:
        return steps, None, 1.0
    import torch

    start = unit_tensor(init)
    if vae is not None:
        with torch.no_grad():
            start = process_in(vae, vae.encode(2.0 * start - 1.0).latent_dist.mean)
    run, denoise = comfy_steps(steps, strength)
    return run, start, denoise


def negated(network: Callable) -> Callable:
    """A reference network call with its output negated (a perturbation that must move the pixels)."""
    return lambda self, x, t, c: -network(self, x, t, c)


def ours(model: Any, prompt: str = PROMPT, *, init: Any = None, strength: float = 0.75, **s: Any) -> list[np.ndarray]:
    """sdcli's images (the job path) as uint8 arrays."""
    from sdcli.io.images import PreparedInputs
    from sdcli.job.generate import run
    from sdcli.request.generation import GenerationRequest, ImageInput, validate

    s = {**BASE, **s}
    fields = {"prompt": prompt, "negative_prompt": s["negative"], "steps": s["steps"], "cfg_scale": s["cfg"],
              "sampler": s["sampler"], "schedule": s["schedule"].lower(), "seed": s["seed"],
              "batch_size": s.get("batch", 1), "width": s.get("width", 32), "height": s.get("height", 32),
              "shift": s.get("shift")}
    if "distilled_cfg" in s:
        fields["distilled_cfg_scale"] = s["distilled_cfg"]
    inputs = None
    if init is not None:
        fields.update(mode="img2img", init=ImageInput(image="-", strength=strength))
        inputs = PreparedInputs(image=init)
    request = GenerationRequest(**fields)
    return [np.asarray(g.image) for g in run(request, model, validate(request), model_name="m", model_hash="h",
                                             inputs=inputs)]


class FlowParity:
    """One family's comparison: sdcli vs `theirs` with the family's defaults on both sides."""

    def __init__(self, family: str | dict[str, Any], theirs: Callable[..., Any], prompt: str = PROMPT):
        """`family`: a FLOW_FAMILIES key (its tiny arch and `parity` defaults) or the defaults themselves;
        `prompt`: the prompt of every comparison that names none."""
        self.prompt = prompt
        self.defaults = {**BASE, **(FLOW_FAMILIES[family].parity if isinstance(family, str) else family)}
        self.arch = FLOW_FAMILIES[family].arch if isinstance(family, str) else None
        self.theirs = theirs

    def ours(self, model: Any, prompt: str | None = None, **settings: Any) -> list[np.ndarray]:
        """sdcli's images with the family's defaults."""
        return ours(model, self.prompt if prompt is None else prompt, **{**self.defaults, **settings})

    def images(self, model: Any, prompt: str | None = None, **settings: Any) -> list[np.ndarray]:
        """The reference's images (a list, even for one)."""
        images = self.theirs(model, self.prompt if prompt is None else prompt, **{**self.defaults, **settings})
        return [images] if isinstance(images, np.ndarray) else list(images)

    def difference(self, model: Any, prompt: str | None = None, ours_settings: dict | None = None,
                   **settings: Any) -> int:
        """Largest per-pixel difference (0-255); `ours_settings` change sdcli's side only (a perturbation)."""
        prompt = self.prompt if prompt is None else prompt
        a = self.ours(model, prompt, **{**settings, **(ours_settings or {})})
        b = self.images(model, prompt, **settings)
        worst = max(int(np.abs(x.astype(int) - y.astype(int)).max()) for x, y in zip(a, b, strict=True))
        print(f"max difference {worst}: {prompt[:40]!r} {settings} {ours_settings or ''}")
        return worst

    def check(self, model: Any, prompt: str | None = None, perturb: dict | None = None, tolerance: int = 0,
              **settings: Any) -> None:
        """sdcli equals the reference within `tolerance`; with `perturb` (sdcli-side settings) it does not."""
        assert self.difference(model, prompt, **settings) <= tolerance
        if perturb is not None:
            assert self.difference(model, prompt, perturb, **settings) > tolerance

    def sampler_grid(self, samplers: list, schedules: list[str], tolerance: int = 0) -> Callable:
        """The test of each (sampler, perturbation) row under each schedule, on the family's tiny model."""

        @pytest.mark.parametrize("sampler,perturb", samplers)
        @pytest.mark.parametrize("schedule", schedules)
        def test_samplers_and_schedules(tiny_family_pipe, sampler, perturb, schedule, single_thread):
            self.check(tiny_family_pipe(self.arch), sampler=sampler, schedule=schedule, perturb=perturb,
                       tolerance=tolerance)

        return test_samplers_and_schedules

    def checks(self, rows: list[dict[str, Any]], img2img: bool = False) -> Callable:
        """A test checking each row (settings with its `perturb`, `tolerance`), from init_image() if `img2img`."""

        def test_rows(tiny_family_pipe, single_thread):
            for row in rows:
                self.check(tiny_family_pipe(self.arch), **({"init": init_image()} if img2img else {}), **row)

        return test_rows

    def network_test(self, cls: type, wrap: Callable[[Callable], Callable]) -> Callable:
        """A test that the reference's `cls.network` wrapped by `wrap` moves the pixels (the check can fail)."""

        def test_network(tiny_family_pipe, single_thread):
            self.network_moves_the_pixels(tiny_family_pipe(self.arch), cls, wrap)

        return test_network

    def network_moves_the_pixels(self, model: Any, cls: type, wrap: Callable[[Callable], Callable]) -> None:
        """The reference's network call (`cls.network`) wrapped by `wrap` moves the pixels: the check can fail."""
        original = cls.network
        try:
            cls.network = wrap(original)
            assert self.difference(model) > 0
        finally:
            cls.network = original
