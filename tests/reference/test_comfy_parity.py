"""A replayed ComfyUI image vs an independent transcription of ComfyUI's KSampler path (comfy_ref.ksampler).

The image is written as ComfyUI's SaveImage writes it (tests/io/tool_images.py); sdcli reads its graph
(io.sources.comfyui), plans the replay (the mapped sampler and schedule, --rng comfy) and runs it on the
tiny SD1 model; the reference runs ComfyUI's noise, sigmas, start scaling, nearest-timestep model calls,
CFG and sampler on the same network. Prompts without weights: ComfyUI and the WebUI encode those alike.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.io.tool_images import comfy_api, comfy_img2img_api, comfy_png
from tests.reference import comfy_ref
from tests.reference.pipeline_ref import decode
from tests.reference.webui_ref import CLIPWrapper

# Levels of 255: at most 1. sdcli's and the reference's final latents agree to ~1e-4 (float32 rounding in a
# different order: the ancestral step, c_in); one pixel may round to the next level (karras: 0 with the WebUI's
# float32 sigma table, 1 with ComfyUI's float64-built one, which sdcli now uses; normal: 1 either way).
TOLERANCE = {"karras": 1, "normal": 1}


@torch.no_grad()
def reference(pipe, prompt, negative, **settings):
    clip = CLIPWrapper(pipe.tokenizer, pipe.text_encoder)
    latent = comfy_ref.ksampler(pipe.unet, clip([prompt]), clip([negative]), **settings)
    return decode(pipe, latent)


def replayed(model, path, **overrides):
    from sdcli.io.replay import plan_replay
    from sdcli.job.generate import run
    from sdcli.request.generation import validate

    request = plan_replay(path, overrides, model_override="m").request
    return [np.asarray(g.image) for g in run(request, model, validate(request), model_name="m", model_hash="h")]


@pytest.mark.parametrize("sampler,scheduler", [("euler", "normal"), ("euler_ancestral", "karras")])
def test_replayed_comfyui_graph_gives_comfyuis_pixels(tiny_pipe, tmp_path, sampler, scheduler, single_thread):
    settings = {"seed": 21, "steps": 4, "cfg": 5.0, "sampler_name": sampler, "scheduler": scheduler,
                "width": 64, "height": 64}
    graph = comfy_api(seed=21, steps=4, cfg=5.0, sampler=sampler, scheduler=scheduler, width=64, height=64,
                      prompt="a red fox in snow", negative="blurry")
    ours = replayed(tiny_pipe, comfy_png(tmp_path / "c.png", graph))
    theirs = reference(tiny_pipe.pipe, "a red fox in snow", "blurry", **settings)
    difference = int(np.abs(ours[0].astype(int) - theirs[0].astype(int)).max())
    print(f"max difference {difference}: {sampler} {scheduler}")
    assert difference <= TOLERANCE[scheduler]


def test_the_parity_test_can_fail(tiny_pipe, tmp_path, single_thread):
    """The same graph with the WebUI's CPU noise and model sampling (--rng cpu) is far from ComfyUI's pixels."""
    graph = comfy_api(seed=21, steps=4, cfg=5.0, sampler="euler_ancestral", scheduler="karras", width=64, height=64,
                      prompt="a red fox in snow", negative="blurry")
    webui_way = replayed(tiny_pipe, comfy_png(tmp_path / "c.png", graph), rng="cpu")
    theirs = reference(tiny_pipe.pipe, "a red fox in snow", "blurry", seed=21, steps=4, cfg=5.0,
                       sampler_name="euler_ancestral", scheduler="karras", width=64, height=64)
    difference = int(np.abs(webui_way[0].astype(int) - theirs[0].astype(int)).max())
    print(f"max difference with --rng cpu {difference}")
    assert difference > 10


# ---------------------------------------------------------------- img2img graphs (LoadImage + VAEEncode)

def photo(path, size=(64, 64)):
    """A smooth input image, written beside the replayed one (where replay finds it by its LoadImage name)."""
    from PIL import Image

    y, x = np.mgrid[0:size[1], 0:size[0]]
    rgb = np.stack([x * 255 // size[0], y * 255 // size[1], (x + y) * 127 // sum(size)], -1).astype(np.uint8)
    Image.fromarray(rgb).save(path)
    return path


@torch.no_grad()
def img2img_reference(pipe, input_path, **settings):
    clip = CLIPWrapper(pipe.tokenizer, pipe.text_encoder)
    latent = comfy_ref.vae_encode(pipe.vae, comfy_ref.load_image(input_path))
    out = comfy_ref.ksampler(pipe.unet, clip(["a red fox in snow"]), clip(["blurry"]), latent_image=latent, **settings)
    return decode(pipe, out)


IMG2IMG = {"seed": 21, "cfg": 5.0, "sampler_name": "euler_ancestral", "scheduler": "karras"}


@pytest.mark.parametrize("steps,denoise,start", [(4, 0.6, None), (3, 0.45, None), (6, 1.0, 2)])
def test_replayed_comfyui_img2img_gives_comfyuis_pixels(tiny_pipe, tmp_path, steps, denoise, start, single_thread):
    """KSampler at denoise d walks the last steps + 1 sigmas of int(steps / d) (4 at 0.6: 4 of 6; 3 at 0.45: 3 of
    6), not the WebUI's int(d x steps) + 1 of steps; KSamplerAdvanced from step 2 of 6 runs 4."""
    photo(tmp_path / "photo.png")
    graph = comfy_img2img_api(denoise=denoise, start=start, seed=21, steps=steps, cfg=5.0, sampler="euler_ancestral",
                              scheduler="karras", prompt="a red fox in snow", negative="blurry")
    ours = replayed(tiny_pipe, comfy_png(tmp_path / "c.png", graph))
    theirs = img2img_reference(tiny_pipe.pipe, tmp_path / "photo.png", steps=steps, denoise=denoise,
                               start_step=start, **IMG2IMG)
    difference = int(np.abs(ours[0].astype(int) - theirs[0].astype(int)).max())
    print(f"max difference {difference}: img2img steps {steps} denoise {denoise} start {start}")
    assert difference <= 1  # the latents agree to ~1e-5 (see TOLERANCE)


def test_the_img2img_parity_test_can_fail(tiny_pipe, tmp_path, single_thread):
    """The WebUI's img2img step rule on ComfyUI's side (int(0.6 x 4) + 1 = 3 of 4 sigmas) is far from the replay."""
    photo(tmp_path / "photo.png")
    graph = comfy_img2img_api(denoise=0.6, seed=21, steps=4, cfg=5.0, sampler="euler_ancestral", scheduler="karras",
                              prompt="a red fox in snow", negative="blurry")
    ours = replayed(tiny_pipe, comfy_png(tmp_path / "c.png", graph))
    webui_rule = comfy_ref.ksampler_sigmas
    try:  # the reference's schedule swapped for the WebUI's: steps' schedule, its last int(d x steps) + 2 sigmas
        comfy_ref.ksampler_sigmas = lambda ms, sched, steps, denoise, start: webui_rule(ms, sched, steps)[
            steps - int(denoise * steps) - 1:]
        theirs = img2img_reference(tiny_pipe.pipe, tmp_path / "photo.png", steps=4, denoise=0.6, **IMG2IMG)
    finally:
        comfy_ref.ksampler_sigmas = webui_rule
    difference = int(np.abs(ours[0].astype(int) - theirs[0].astype(int)).max())
    print(f"max difference with the WebUI's step rule {difference}")
    assert difference > 10


# ---------------------------------------------------------------- ComfyUI's prompt weighting (comfy_text_ref)

WEIGHTED = ("a (red:1.8) fox in ((snow)), [winter] \\(photo\\) (grey:0.3)", "(blurry:0.5), (low quality)")


def test_comfyui_prompt_weighting_gives_comfyuis_pixels(tiny_pipe, tmp_path, single_thread):
    """A weighted ComfyUI prompt replays with --emphasis comfy: the encoding matches ComfyUI's exactly and the
    pixels by at most 1 level (see TOLERANCE)."""
    from sdcli.conditioning.encoding import ClipTextEncoder
    from tests.reference import comfy_text_ref

    pipe = tiny_pipe.pipe
    for text in (*WEIGHTED, "", "x " * 80 + "(long:1.2)"):  # and an empty prompt, and one of two chunks
        ours = ClipTextEncoder(pipe.tokenizer, pipe.text_encoder, emphasis="comfy")(text)
        theirs = comfy_text_ref.clip_text_encode(pipe.tokenizer, pipe.text_encoder, text)
        assert ours.shape == theirs.shape and float((ours - theirs).abs().max()) < 1e-5, text
    plain = "a red fox, in snow"  # without weights ComfyUI and the WebUI encode a short prompt alike
    assert torch.equal(ClipTextEncoder(pipe.tokenizer, pipe.text_encoder, emphasis="comfy")(plain),
                       ClipTextEncoder(pipe.tokenizer, pipe.text_encoder)(plain))
    graph = comfy_api(seed=21, steps=4, cfg=5.0, sampler="euler_ancestral", scheduler="karras", width=64, height=64,
                      prompt=WEIGHTED[0], negative=WEIGHTED[1])
    ours_px = replayed(tiny_pipe, comfy_png(tmp_path / "c.png", graph))
    cond, uncond = (comfy_text_ref.clip_text_encode(pipe.tokenizer, pipe.text_encoder, t) for t in WEIGHTED)
    with torch.no_grad():
        latent = comfy_ref.ksampler(pipe.unet, cond, uncond, seed=21, steps=4, cfg=5.0,
                                    sampler_name="euler_ancestral", scheduler="karras")
        theirs_px = decode(pipe, latent)
    difference = int(np.abs(ours_px[0].astype(int) - theirs_px[0].astype(int)).max())
    print(f"max difference {difference}: weighted prompt")
    assert difference <= 1
    webui_way = replayed(tiny_pipe, comfy_png(tmp_path / "c.png", graph), emphasis="original")
    failed = int(np.abs(webui_way[0].astype(int) - theirs_px[0].astype(int)).max())
    webui_cond = ClipTextEncoder(pipe.tokenizer, pipe.text_encoder, emphasis="original")(WEIGHTED[0])
    print(f"max difference with the WebUI's emphasis {failed} levels, {float((webui_cond - cond).abs().max()):.3f} "
          "in the encoding")
    assert failed > 1 and float((webui_cond - cond).abs().max()) > 0.1  # the test can fail


def test_comfyui_prompt_weighting_on_sdxl(tiny_family_pipe, single_thread):
    """SDXL's two encoders weighted ComfyUI's way (bigG's padding 0 included) give ComfyUI's conditioning and
    pooled vector; the WebUI's emphasis does not."""
    from sdcli.conditioning.sdxl import SDXLPromptEncoder
    from tests.reference import comfy_text_ref

    pipe = tiny_family_pipe("sdxl").pipe
    for text in WEIGHTED:
        ours = SDXLPromptEncoder(pipe, emphasis="comfy").encode(text)
        theirs, pooled = comfy_text_ref.sdxl_text_encode(pipe, text)
        assert float((ours.crossattn - theirs).abs().max()) < 1e-5, text
        assert float((ours.extra["added_cond_kwargs"]["text_embeds"] - pooled).abs().max()) < 1e-5
        webui = SDXLPromptEncoder(pipe, emphasis="original").encode(text).crossattn
        assert float((webui - theirs).abs().max()) > 0.1
    empty, _ = comfy_text_ref.sdxl_text_encode(pipe, "")  # ComfyUI encodes an empty negative; the WebUI zeroes it
    negative = SDXLPromptEncoder(pipe, emphasis="comfy").negative_encoder(True)("").crossattn
    assert float((negative - empty).abs().max()) < 1e-5
    assert not SDXLPromptEncoder(pipe).negative_encoder(True)("").crossattn.any()
