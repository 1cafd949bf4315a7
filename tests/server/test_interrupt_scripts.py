"""/interrupt lasts the whole API request, as the WebUI's (its state.begin is once per request): a script's later
jobs (X/Y/Z cells, prompt lines, SD upscale tiles) start no batch, and each script answers with what it got,
checked against tests/reference/webui_interrupt_ref.py. /skip keeps its per-batch meaning. Deterministic: the
interrupt is sent from inside the first job's step 2; the step calls show which jobs ran."""

from __future__ import annotations

import json

import numpy as np
from PIL import Image

from sdcli.io.metadata import parse_infotext
from tests.reference import webui_interrupt_ref as ref
from tests.server.conftest import b64png, decode, interrupt_at

TXT = {"prompt": "oil", "negative_prompt": "fog", "seed": 7, "steps": 4, "width": 32, "height": 32,
       "sampler_name": "Euler a"}
XYZ = "x/y/z plot"


def post(client, path="/sdapi/v1/txt2img", **payload):
    response = client.post(path, json={**TXT, **payload})
    assert response.status_code == 200, response.text  # the WebUI answers an interrupted request as any other
    return [np.asarray(decode(x).convert("RGB")) for x in response.json()["images"]], json.loads(
        response.json()["info"])


def job(prompt: str, seed: int, made: int, count: int = 1, negative: str = "fog") -> ref.Job:
    """A job as the reference takes it: sdcli's seeds (seed + i) and subseeds (null without variation)."""
    return ref.Job((prompt,) * count, (negative,) * count, tuple(seed + i for i in range(count)), (None,) * count,
                   made)


def described(infotext: str | None) -> tuple[str, int] | None:
    """(prompt, seed) an infotext records, None for none."""
    if infotext is None:
        return None
    prompt, _, params = parse_infotext(infotext)
    return prompt, int(params["Seed"])


def check_lists(info, expected: ref.Processed) -> None:
    assert info["all_prompts"] == expected.all_prompts
    assert info["all_negative_prompts"] == expected.all_negative_prompts
    assert info["all_seeds"] == expected.all_seeds
    assert info["all_subseeds"] == expected.all_subseeds


def xyz_args(x, lone=True):
    return [x[0], x[1], [], 0, "", [], 0, "", [], True, lone, False, False, False, False, False, 0, False]


def test_a_plain_interrupted_request_lists_every_image_asked_for(client, engine, monkeypatch, single_thread):
    calls = interrupt_at(engine, monkeypatch, batch=0, step=2)
    images, info = post(client, batch_size=2, n_iter=2)
    assert calls == [(0, 1), (0, 2)]
    expected = ref.process_images(job("oil", 7, made=2, count=4))
    assert len(images) == len(expected.images) == 2
    check_lists(info, expected)  # all_seeds 7..10: the WebUI's p.all_seeds, not only the images made
    assert [described(t) for t in info["infotexts"]] == [("oil", 7), ("oil", 8)]


def test_xyz_plot_interrupted_in_its_first_cell_draws_the_others_blank(client, engine, monkeypatch, single_thread):
    cfg = (6, "5, 6, 7")  # CFG Scale: three cells, run in cell order
    full, full_info = post(client, script_name=XYZ, script_args=xyz_args(cfg))
    whole = ref.xyz_plot([job("oil", 7, made=1)] * 3, (3, 1, 1), lone=True)
    assert len(full) == len(whole.images) == 4 and full_info["index_of_first_image"] == 1
    check_lists(full_info, whole)
    assert [described(t) for t in full_info["infotexts"][1:]] == [("oil", 7)] * 3

    calls = interrupt_at(engine, monkeypatch, batch=0, step=2)
    images, info = post(client, script_name=XYZ, script_args=xyz_args(cfg))
    assert calls == [(0, 1), (0, 2)]  # the second and third cells never started
    expected = ref.xyz_plot([job("oil", 7, made=1), None, None], (3, 1, 1), lone=True)
    assert len(images) == len(expected.images) == 4
    for image, kind in zip(images[1:], expected.images[1:], strict=True):
        assert (kind == ("blank",)) == (not image.any())  # the cells not made: black, as the WebUI's
    assert images[1].std() > 0 and not np.array_equal(images[1], full[1])  # the first: half-denoised
    assert not np.array_equal(images[0], full[0])  # the grid: the half-done cell and two black ones
    check_lists(info, expected)  # all_prompts ["oil", null, null], all_seeds [7, null, null]
    assert [t is None for t in info["infotexts"]] == [t is None for t in expected.infotexts]
    assert described(info["infotexts"][1]) == ("oil", 7) and info["index_of_first_image"] == 1

    only_grid, grid_info = post(client, script_name=XYZ, script_args=xyz_args(cfg, lone=False))  # not interrupted
    assert len(only_grid) == 1 and len(grid_info["infotexts"]) == 4  # the grid's, then each cell's, as the WebUI's


def test_prompts_from_file_interrupted_in_its_first_line_runs_no_other(client, engine, monkeypatch, single_thread):
    args = [False, False, "start", "a\nb\n--prompt c --seed 40"]
    _, whole = post(client, script_name="prompts from file or textbox", script_args=args)
    calls = interrupt_at(engine, monkeypatch, batch=0, step=2)
    images, info = post(client, script_name="prompts from file or textbox", script_args=args)
    assert calls == [(0, 1), (0, 2)]  # lines b and c never started
    lines = [job("a oil", 7, made=1), job("b oil", 7, made=0), job("c oil", 40, made=0)]
    expected = ref.prompts_from_file(lines, seed=7, negative_prompt="fog")
    assert len(images) == len(expected.images) == 1 and images[0].std() > 0
    assert info["all_prompts"] == expected.all_prompts == ["a oil", "b oil", "c oil"]  # every line's, made or not
    check_lists(info, expected)  # the script's own [p.seed], [p.negative_prompt], [-1]
    # One infotext per line: the image made, then image 0 of each line as asked (from its plan, nothing run).
    assert [described(t) for t in info["infotexts"]] == [("a oil", 7), ("b oil", 7), ("c oil", 40)]
    assert info["infotexts"] == whole["infotexts"]  # each as the line's run writes it
    assert expected.infotexts == [(0, 0), (1, 0), (2, 0)]


def test_sd_upscale_interrupted_in_its_first_tile_blends_black_tiles(client, engine, monkeypatch, single_thread):
    x = np.linspace(0, 255, 32, dtype=np.uint8)
    source = Image.fromarray(np.stack(np.broadcast_arrays(x[None, :], x[:, None], 255 - x[None, :]), axis=2))
    payload = {"init_images": [b64png(source)], "denoising_strength": 0.5, "script_name": "sd upscale",
               "script_args": ["", 0, "Lanczos", 2.0], "n_iter": 2}  # four 32 px tiles, no overlap, twice
    calls = interrupt_at(engine, monkeypatch, batch=0, step=2)
    images, info = post(client, "/sdapi/v1/img2img", **payload)
    assert calls == [(0, 1), (0, 2)]  # the other seven tiles never started
    expected = ref.sd_upscale([[job("oil", 7, made=1)] + [job("oil", 7 + k, made=0) for k in (1, 2, 3)],
                               [job("oil", 8 + k, made=0) for k in range(4)]])
    assert len(images) == len(expected.images) == 2 and all(image.shape == (64, 64, 3) for image in images)
    for image, blank in zip(images, expected.extra["blank_tiles"], strict=True):
        tiles = [image[y:y + 32, x:x + 32] for y in (0, 32) for x in (0, 32)]
        assert [k for k, tile in enumerate(tiles) if not tile.any()] == blank  # [1, 2, 3], then all four
    assert len(info["infotexts"]) == len(expected.infotexts)  # the first tile's, for each upscaled image
    check_lists(info, expected)  # the last tile's lists (all_seeds [11]), though it never started


def test_an_interrupt_does_not_outlast_its_request(client, engine, monkeypatch, single_thread):
    args = xyz_args((6, "5, 7"))
    interrupt_at(engine, monkeypatch, batch=0, step=2)
    post(client, script_name=XYZ, script_args=args)
    monkeypatch.undo()
    assert client.get("/sdapi/v1/progress").json()["state"]["interrupted"] is True  # until the next request
    images, info = post(client, script_name=XYZ, script_args=args)  # cleared as it begins, as state.begin
    assert all(image.any() for image in images) and None not in info["all_seeds"]
    engine.interrupt()  # with no request running: forgotten by the next one
    images, _ = post(client, script_name=XYZ, script_args=args)
    assert all(image.any() for image in images)


def test_a_skip_in_a_script_ends_one_batch_only(client, engine, monkeypatch, single_thread):
    args = xyz_args((6, "5, 7"))
    full, _ = post(client, script_name=XYZ, script_args=args)
    original, calls = type(engine)._step.__get__(engine), []

    def step_and_skip(done, total):
        calls.append(done)
        if len(calls) == 2:  # the first cell's step 2
            engine.skip()
        original(done, total)

    monkeypatch.setattr(engine, "_step", step_and_skip)
    images, info = post(client, script_name=XYZ, script_args=args)
    assert calls == [1, 2, 1, 2, 3, 4]  # the second cell ran whole
    assert not np.array_equal(images[1], full[1]) and np.array_equal(images[2], full[2])
    assert None not in info["all_seeds"]


def test_an_interrupt_while_the_model_loads_starts_no_batch(client, engine, monkeypatch):
    loaded = type(engine)._pipeline.__get__(engine)

    def load_and_interrupt(*args, **kwargs):
        engine.interrupt()  # as the WebUI's: the batch loop's first check breaks before any batch
        return loaded(*args, **kwargs)

    _, whole = post(client, n_iter=2, hr_scale=2, enable_hr=True, hr_upscaler="Latent", denoising_strength=0.5)
    calls = interrupt_at(engine, monkeypatch, batch=9, step=9)  # records the steps; never interrupts itself
    monkeypatch.setattr(engine, "_pipeline", load_and_interrupt)
    images, info = post(client, n_iter=2, hr_scale=2, enable_hr=True, hr_upscaler="Latent", denoising_strength=0.5)
    expected = ref.process_images(job("oil", 7, made=0, count=2))
    assert calls == [] and len(images) == len(expected.images) == 0
    check_lists(info, expected)
    # No image, yet one infotext: image 0's as asked, as the run would have written it (hires keys included),
    # worked out from the plan without running the network.
    assert expected.infotexts == [(0, 0)] and info["infotexts"] == whole["infotexts"][:1]
    assert "Hires upscaler: Latent" in info["infotexts"][0]


def test_an_unmade_img2img_infotext_names_its_add_ons_as_a_run_would(api, folder_engine, monkeypatch):
    """Image 0's infotext as asked, from the plan alone: the input's size, the LoRA's hash, the VAE of
    override_settings, the sampler and schedule, as the uninterrupted run writes them."""
    x = np.linspace(0, 255, 32, dtype=np.uint8)
    source = Image.fromarray(np.stack(np.broadcast_arrays(x[None, :], x[:, None], 255 - x[None, :]), axis=2))
    payload = {"prompt": "oil <lora:detail:0.5>", "init_images": [b64png(source)], "denoising_strength": 0.5,
               "sampler_name": "DPM++ 2M", "scheduler": "Karras",
               "override_settings": {"sd_vae": "tinyvae.safetensors"}}
    _, whole = post(api, "/sdapi/v1/img2img", **payload)
    loaded = type(folder_engine)._pipeline.__get__(folder_engine)

    def load_and_interrupt(*args, **kwargs):
        folder_engine.interrupt()
        return loaded(*args, **kwargs)

    monkeypatch.setattr(folder_engine, "_pipeline", load_and_interrupt)
    images, info = post(api, "/sdapi/v1/img2img", **payload)
    assert images == [] and info["infotexts"] == whole["infotexts"][:1]
    assert "Lora hashes" in info["infotexts"][0] and "VAE: tinyvae.safetensors" in info["infotexts"][0]
