"""--tiling (the WebUI's Tiling): an image whose edges wrap, its infotext key, replay, and no leak into later jobs."""

from pathlib import Path

import numpy as np

from sdcli.io.metadata import parse_infotext
from sdcli.io.replay import ImageMetadata, request_from_infotext
from sdcli.job.generate import run
from sdcli.request.generation import GenerationRequest, validate

BASE = {"prompt": "a stone wall", "steps": 3, "seed": 1, "width": 64, "height": 64}


def generate(pipe, **fields):
    request = GenerationRequest(**{**BASE, **fields})
    return list(run(request, pipe, validate(request), model_name="t", model_hash="0"))


def pixels(item) -> np.ndarray:
    return np.asarray(item.image, dtype=float)


def seam(image: np.ndarray) -> float:
    """How much the wrap seams (last column -> first, last row -> first) stand out from the image's own
    neighbouring columns and rows: about 1 for an image that tiles, clearly more for one that does not."""
    across = np.abs(image[:, -1] - image[:, 0]).mean() / np.abs(np.diff(image, axis=1)).mean()
    down = np.abs(image[-1] - image[0]).mean() / np.abs(np.diff(image, axis=0)).mean()
    return (across + down) / 2


def test_a_tiling_image_continues_across_its_edges(tiny_pipe, single_thread):
    tiled = [seam(pixels(i)) for i in generate(tiny_pipe, tiling=True, batch_size=4)]
    plain = [seam(pixels(i)) for i in generate(tiny_pipe, batch_size=4)]
    assert np.mean(tiled) < 1.3, tiled  # the seam is like any other column of the image
    assert np.mean(plain) > 1.5, plain  # the same seeds without --tiling: the edges do not meet


def test_infotext_says_tiling_and_replays_the_same_pixels(tiny_pipe, single_thread):
    item = generate(tiny_pipe, tiling=True)[0]
    prompt, negative, params = parse_infotext(item.infotext)
    assert params["Tiling"] == "True"
    assert "Tiling" not in parse_infotext(generate(tiny_pipe)[0].infotext)[2]  # written only when on, as the WebUI
    replayed, ignored, _ = request_from_infotext(ImageMetadata(Path("x.png"), prompt, negative, params, item.infotext,
                                                               None))
    assert replayed.tiling is True and "Tiling" not in ignored
    again = list(run(replayed, tiny_pipe, validate(replayed), model_name="t", model_hash="0"))[0]
    assert np.array_equal(pixels(again), pixels(item))


def test_a_tiling_job_does_not_leak_into_the_next(tiny_pipe, single_thread):
    before = pixels(generate(tiny_pipe, seed=5)[0])
    generate(tiny_pipe, tiling=True, seed=5)
    after = pixels(generate(tiny_pipe, seed=5)[0])
    assert np.array_equal(before, after)
    parts = (tiny_pipe.pipe.unet, tiny_pipe.pipe.vae)
    modes = {m.padding_mode for c in parts for m in c.modules() if hasattr(m, "padding_mode")}
    assert modes == {"zeros"}


def test_tiling_img2img(tiny_pipe, tmp_path, single_thread):
    from PIL import Image

    from sdcli.request.generation import ImageInput

    source = tmp_path / "in.png"
    Image.fromarray(np.asarray(generate(tiny_pipe)[0].image)).save(source)
    init = ImageInput(str(source), strength=0.9)
    tiled = generate(tiny_pipe, mode="img2img", init=init, tiling=True, batch_size=2)
    assert parse_infotext(tiled[0].infotext)[2]["Tiling"] == "True"
    plain = generate(tiny_pipe, mode="img2img", init=init, batch_size=2)
    assert np.mean([seam(pixels(i)) for i in tiled]) < np.mean([seam(pixels(i)) for i in plain])
