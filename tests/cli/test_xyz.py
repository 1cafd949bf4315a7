"""`sdcli xyz` end to end on tiny models: cells, labelled grids, infotext, checkpoints, resume, failures."""

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

FAST = ("--width", "32", "--height", "32")
pytestmark = pytest.mark.usefixtures("single_thread")
CELL = 128  # a 32 px cell is shown 4x in the grid (plotgrid.MIN_CELL)
LEFT = CELL * 3 // 4  # the row-label band


def pixels(path):
    return np.asarray(Image.open(path).convert("RGB"))


def records(result, kind):
    return [r for r in map(json.loads, result.stdout.splitlines()) if r["type"] == kind]


def cells_of(result):
    return {r["item"]: Path(r["path"]) for r in records(result, "item") if r["status"] == "done"}


def grid_cell(grid, pad_top, ix, iy):
    """Cell (ix, iy) of a grid of 32 px cells shown 4x, back at 32 px."""
    block = pixels(grid)[pad_top + iy * CELL: pad_top + (iy + 1) * CELL, LEFT + ix * CELL: LEFT + (ix + 1) * CELL]
    return block[::4, ::4]


@pytest.fixture(scope="module")
def second_model(tmp_path_factory):
    from sdcli.models.tiny import build_tiny

    return build_tiny(tmp_path_factory.mktemp("models") / "tiny-b", seed=1)


def test_2x2x2_plot_cells_equal_txt2img_and_grids_are_labelled(cli, tiny_model, tmp_path):
    out = tmp_path / "plot"
    result = cli("xyz", "a red fox", "-m", tiny_model, *FAST, "--seed", "5", "-o", out, "--json",
                 "--x", "Sampler: Euler a, DPM++ 2M Karras", "--y", "CFG Scale: 3, 9", "--z", "Steps: 2, 3")
    assert result.exit_code == 0, result.stderr
    cells = cells_of(result)
    grids = records(result, "grid")
    assert sorted(cells) == list(range(8))
    assert [Path(g["path"]).name for g in grids] == ["xyz_grid-0000.png", "xyz_grid-0001.png", "xyz_grid.png"]
    assert sorted(p.name for p in out.iterdir() if p.suffix == ".png") == sorted(
        [c.name for c in cells.values()] + [Path(g["path"]).name for g in grids])

    # Each cell got its settings: the same settings through txt2img make the same pixels ...
    for item, args in ((0, ("--sampler", "Euler a", "--cfg-scale", "3", "--steps", "2")),
                       (7, ("--sampler", "DPM++ 2M Karras", "--cfg-scale", "9", "--steps", "3"))):
        one = cli("txt2img", "a red fox", "-m", tiny_model, *FAST, "--seed", "5", *args,
                  "-o", tmp_path / f"one{item}", "--json")
        assert one.exit_code == 0, one.stderr
        assert np.array_equal(pixels(json.loads(one.stdout)["path"]), pixels(cells[item]))
    # ... and each axis changes them.
    for a, b in ((0, 1), (0, 2), (0, 4)):
        assert not np.array_equal(pixels(cells[a]), pixels(cells[b]))

    # The Z grids: X across, Y down, each cell in its place, labels in the top and left bands.
    for iz in range(2):
        grid = out / f"xyz_grid-{iz:04d}.png"
        width, height = Image.open(grid).size
        pad_top = height - 2 * CELL
        assert width == LEFT + 2 * CELL and pad_top > 12
        for iy in range(2):
            for ix in range(2):
                assert np.array_equal(grid_cell(grid, pad_top, ix, iy), pixels(cells[ix + 2 * iy + 4 * iz]))
        dark = (pixels(grid) < 100).all(axis=2)
        assert dark[:pad_top, LEFT:].sum() > 50, "column labels on top"
        assert dark[pad_top:, :LEFT].sum() > 50, "row labels on the left"
        assert not dark[:pad_top, :LEFT].any(), "the corner stays blank"
    combined = Image.open(out / "xyz_grid.png")
    assert combined.width == 2 * width and combined.height > height

    # The grids' infotext describes the plot; each cell's is its own.
    info = cli("info", out / "xyz_grid.png")
    assert info.exit_code == 0
    assert ('Script: X/Y/Z plot, X Type: Sampler, X Values: "Euler a, DPM++ 2M Karras", Y Type: CFG Scale, '
            'Y Values: "3, 9", Z Type: Steps, Z Values: "2, 3"') in info.stdout
    sub = json.loads(cli("info", "--json", out / "xyz_grid-0001.png").stdout)["parameters"]
    assert sub["X Type"] == "Sampler" and "Z Type" not in sub and sub["Steps"] == "3"
    cell = json.loads(cli("info", "--json", cells[7]).stdout)["parameters"]
    assert (cell["Sampler"], cell["Schedule type"], cell["CFG scale"], cell["Steps"], cell["Seed"]) == (
        "DPM++ 2M", "Karras", "9", "3", "5")
    assert "Script" not in cell

    # Replay: a cell makes itself again; a grid makes its first cell (the plot keys named as not honoured).
    again = cli("replay", cells[7], "-o", tmp_path / "again", "--json")
    assert np.array_equal(pixels(json.loads(again.stdout)["path"]), pixels(cells[7]))
    first = cli("replay", out / "xyz_grid-0001.png", "-m", tiny_model, "-o", tmp_path / "first", "--json")
    assert np.array_equal(pixels(json.loads(first.stdout)["path"]), pixels(cells[4]))
    assert "cannot honour these keys of the image, so they are ignored: Script, X Type" in first.stderr


def test_checkpoint_axis_loads_each_model_once(cli, tiny_model, second_model, tmp_path, monkeypatch):
    import sdcli.models.loader as loader

    loads = []
    real = loader.load_model
    monkeypatch.setattr(loader, "load_model", lambda ref, plan: loads.append(ref.path.name) or real(ref, plan))
    out = tmp_path / "plot"
    result = cli("xyz", "a fox", *FAST, "--steps", "2", "--seed", "3", "-o", out, "--json",
                 "--x", f"Checkpoint name: {tiny_model}, {second_model}", "--y", "CFG Scale: 3, 9")
    assert result.exit_code == 0, result.stderr
    assert sorted(loads) == sorted([tiny_model.name, second_model.name])  # 4 cells, 2 loads
    cells = cells_of(result)
    models = [json.loads(cli("info", "--json", cells[i]).stdout)["parameters"]["Model"] for i in range(4)]
    assert models == [tiny_model.name, second_model.name] * 2
    assert not np.array_equal(pixels(cells[0]), pixels(cells[1]))


def test_resume_skips_done_cells_keeps_the_random_seed_and_redraws_the_grid(cli, tiny_model, tmp_path):
    out = tmp_path / "plot"
    first = cli("xyz", "a fox", "-m", tiny_model, *FAST, "--steps", "2", "-o", out, "--json",
                "--x", "CFG Scale: 3, 6, 9")  # no --seed: the plot's random seed is recorded
    assert first.exit_code == 0, first.stderr
    cells = cells_of(first)
    seed = records(first, "item")[0]["seed"]
    lost = pixels(cells[2])
    grid = pixels(out / "xyz_grid-0000.png")
    cells[2].unlink()
    again = cli("xyz", "--resume", "-o", out, "--json")
    assert again.exit_code == 0, again.stderr
    redone = records(again, "item")
    assert [(r["item"], r["seed"]) for r in redone] == [(2, seed)]
    assert np.array_equal(pixels(redone[0]["path"]), lost)
    assert sorted(p.name for p in out.glob("xyz_grid*")) == ["xyz_grid-0000.png"]  # redrawn in place
    assert np.array_equal(pixels(out / "xyz_grid-0000.png"), grid)
    done = cli("xyz", "--resume", "-o", out)  # nothing left to make: the grid is redrawn, its path on stdout
    assert done.exit_code == 0 and done.stdout.splitlines() == [str(out / "xyz_grid-0000.png")]
    changed = cli("xyz", "--resume", "-o", out, "--x", "CFG Scale: 3, 6")
    assert changed.exit_code == 2
    assert "--x: CFG Scale: 3, 6, 9 in the manifest, CFG Scale: 3, 6 now" in changed.stderr


def test_a_failing_cell_is_black_in_the_grid_and_exits_3(cli, tiny_model, tmp_path, monkeypatch):
    import sdcli.job.generate as generate

    real = generate.run

    def flaky(request, *args, **kwargs):
        if request.cfg_scale == 9:
            raise RuntimeError("boom")
        return real(request, *args, **kwargs)

    monkeypatch.setattr(generate, "run", flaky)
    out = tmp_path / "plot"
    result = cli("xyz", "a fox", "-m", tiny_model, *FAST, "--steps", "2", "--seed", "1", "-o", out, "--json",
                 "--x", "Steps: 1, 2", "--y", "CFG Scale: 3, 9")
    assert result.exit_code == 3
    assert sorted(cells_of(result)) == [0, 1]
    assert [(r["item"], r["error"]) for r in records(result, "item") if r["status"] == "failed"] == [
        (2, "RuntimeError: boom"), (3, "RuntimeError: boom")]
    grid = out / "xyz_grid-0000.png"
    pad_top = Image.open(grid).height - 2 * CELL
    assert not grid_cell(grid, pad_top, 0, 1).any() and grid_cell(grid, pad_top, 0, 0).any()
    assert records(result, "grid")[0]["missing"] == 2


@pytest.mark.parametrize(("axes", "message"), [
    (("--x", "Smpler: Euler"), "error: --x: unknown axis 'Smpler'; did you mean Sampler"),
    (("--y", "Steps: 2, 0"), "error: --y: Steps 0: 0 is out of range; use 1 to 1000"),
    (("--x", "Sampler: Euler, Eulr"), "error: --x: Sampler Eulr: unknown sampler 'Eulr'"),
    (("--z", "Checkpoint name: ./no-such-model"), "error: --z: Checkpoint name ./no-such-model: "),
    (("--x", "Prompt S/R: cat, dog"), "error: --x: Prompt S/R: the first value 'cat' (the text to replace) is not"),
    (("--x", "CFG Scale: 1-x"), "error: --x: CFG Scale: '1-x' is not a number or a range"),
    ((), "error: --x/--y/--z: no axis"),
    (("--x", "Hires steps: 1, 2"), "error: --x: Hires steps: needs --hires"),
    (("--y", "Hires upscaler: Latent"), "error: --y: Hires upscaler: needs --hires"),
    (("--hires", "--z", "Hires upscaler: Lanczos, Bogus"), "error: --z: Hires upscaler Bogus: 'Bogus' is neither"),
    (("--hires", "--hires-upscaler", "Bogus", "--x", "Steps: 2"), "error: --hires-upscaler: 'Bogus' is neither"),
    (("--hires", "--x", "Hires sampler: Euler, Eulr"), "error: --x: Hires sampler Eulr: unknown sampler 'Eulr'"),
    (("--hires-scale", "1.5", "--x", "Steps: 2"), "error: --hires-scale: given without --hires"),
])
def test_bad_axis_or_value_exit_2_naming_it_nothing_loaded_or_written(cli, tiny_model, tmp_path, monkeypatch,
                                                                      axes, message):
    import sdcli.models.loader as loader

    monkeypatch.setattr(loader, "load_model", lambda *a: pytest.fail("a model was loaded"))
    result = cli("xyz", "a fox", "-m", tiny_model, *FAST, "--steps", "2", "-o", tmp_path / "out", *axes)
    assert result.exit_code == 2
    assert len(result.stderr.splitlines()) == 1 and result.stderr.startswith(message), result.stderr
    assert not (tmp_path / "out").exists()


def test_lora_weight_through_prompt_search_and_replace(cli, tiny_model, models_dir, tmp_path):
    out = tmp_path / "plot"
    result = cli("xyz", "a fox <lora:detail:0.1>", "-m", "tiny", "--models-dir", models_dir, *FAST, "--steps", "2",
                 "--seed", "2", "-o", out, "--json", "--x", "Prompt S/R: 0.1, 1")
    assert result.exit_code == 0, result.stderr
    cells = cells_of(result)
    assert not np.array_equal(pixels(cells[0]), pixels(cells[1]))
    text = json.loads(cli("info", "--json", cells[1]).stdout)
    assert text["prompt"] == "a fox <lora:detail:1>" and "detail" in text["parameters"]["Lora hashes"]
    bad = cli("xyz", "a fox <lora:detail:0.1>", "-m", "tiny", "--models-dir", models_dir, *FAST,
              "-o", tmp_path / "bad", "--x", "Prompt S/R: detail, nope")
    assert bad.exit_code == 2 and bad.stderr.startswith("error: cell (--x nope): ") and "nope" in bad.stderr
    assert not (tmp_path / "bad").exists()


def test_ctrl_c_stops_the_plot_resumably_and_resume_finishes_it(cli, tiny_model, tmp_path, monkeypatch):
    import sdcli.job.generate as generate

    real = generate.run

    def interrupted(request, *args, **kwargs):
        if request.steps == 3:
            raise KeyboardInterrupt
        return real(request, *args, **kwargs)

    monkeypatch.setattr(generate, "run", interrupted)
    out = tmp_path / "plot"
    stopped = cli("xyz", "a fox", "-m", tiny_model, *FAST, "--seed", "4", "-o", out, "--json",
                  "--x", "Steps: 2, 3, 2")
    assert stopped.exit_code == 130
    assert f"to continue: sdcli xyz --resume -o {out}" in stopped.stderr
    assert sorted(cells_of(stopped)) == [0] and not list(out.glob("xyz_grid*"))
    monkeypatch.setattr(generate, "run", real)
    finished = cli("xyz", "--resume", "-o", out, "--json")
    assert finished.exit_code == 0, finished.stderr
    assert sorted(cells_of(finished)) == [1, 2] and len(records(finished, "grid")) == 1


def test_vae_axis_sets_each_cells_vae_on_the_loaded_model(cli, models_dir, tmp_path, monkeypatch):
    import sdcli.models.loader as loader

    loads = []
    real = loader.load_model
    monkeypatch.setattr(loader, "load_model", lambda ref, plan: loads.append(ref) or real(ref, plan))
    out = tmp_path / "plot"
    result = cli("xyz", "a fox", "-m", "tiny", "--models-dir", models_dir, *FAST, "--steps", "2", "--seed", "2",
                 "-o", out, "--json", "--x", "VAE: None, tinyvae, Automatic")
    assert result.exit_code == 0, result.stderr
    assert len(loads) == 1
    cells = cells_of(result)
    params = [json.loads(cli("info", "--json", cells[i]).stdout)["parameters"] for i in range(3)]
    assert [p.get("VAE") for p in params] == [None, "tinyvae.safetensors", None]
    assert not np.array_equal(pixels(cells[0]), pixels(cells[1]))
    assert np.array_equal(pixels(cells[0]), pixels(cells[2]))  # Automatic = no --vae given = the model's own
    bad = cli("xyz", "a fox", "-m", "tiny", "--models-dir", models_dir, *FAST, "-o", tmp_path / "bad",
              "--x", "VAE: None, nope")
    assert bad.exit_code == 2 and bad.stderr.startswith("error: cell (--x VAE: nope): "), bad.stderr
    assert not (tmp_path / "bad").exists()


def test_img2img_plot_over_the_denoising_strength(cli, tiny_model, tmp_path):
    source = tmp_path / "in.png"
    Image.fromarray((np.random.default_rng(0).random((32, 32, 3)) * 255).astype("uint8")).save(source)
    out = tmp_path / "plot"
    result = cli("xyz", "a fox", "-m", tiny_model, "-i", source, "--steps", "4", "--seed", "3", "-o", out, "--json",
                 "--x", "Denoising: 0.3, 0.9")
    assert result.exit_code == 0, result.stderr
    cells = cells_of(result)
    for item, strength in ((0, "0.3"), (1, "0.9")):
        one = cli("img2img", "a fox", "-m", tiny_model, "-i", source, "--strength", strength, "--steps", "4",
                  "--seed", "3", "-o", tmp_path / f"one{item}", "--json")
        assert one.exit_code == 0, one.stderr
        assert np.array_equal(pixels(json.loads(one.stdout)["path"]), pixels(cells[item]))
        params = json.loads(cli("info", "--json", cells[item]).stdout)["parameters"]
        assert params["Denoising strength"] == strength
    bad = cli("xyz", "a fox", "-m", tiny_model, "-o", tmp_path / "bad", "--x", "Denoising: 0.5")
    assert bad.exit_code == 2
    assert bad.stderr.startswith("error: --x: Denoising: needs an input image (--image) or --hires"), bad.stderr
    assert not (tmp_path / "bad").exists()
    hires = cli("xyz", "a fox", "-m", tiny_model, "-i", source, "--hires", "-o", tmp_path / "bad", "--x", "Steps: 2")
    assert hires.exit_code == 2 and not (tmp_path / "bad").exists()
    assert hires.stderr == "error: --hires: hires fix is a second pass of txt2img (as in the WebUI); not with --image\n"


HIRES = ("--hires", "--hires-scale", "1.5")


def test_hires_axes_cells_equal_txt2img_hires(cli, tiny_model, tmp_path):
    out = tmp_path / "plot"
    result = cli("xyz", "a red fox", "-m", tiny_model, *FAST, "--steps", "2", "--seed", "5", *HIRES, "-o", out,
                 "--json", "--x", "Hires steps: 1, 2", "--y", "Hires upscaler: Latent, Lanczos")
    assert result.exit_code == 0, result.stderr
    cells = cells_of(result)
    assert sorted(cells) == [0, 1, 2, 3]
    for item, args in ((0, ("--hires-steps", "1")), (3, ("--hires-steps", "2", "--hires-upscaler", "Lanczos"))):
        one = cli("txt2img", "a red fox", "-m", tiny_model, *FAST, "--steps", "2", "--seed", "5", *HIRES, *args,
                  "-o", tmp_path / f"one{item}", "--json")
        assert one.exit_code == 0, one.stderr
        assert np.array_equal(pixels(json.loads(one.stdout)["path"]), pixels(cells[item]))
    assert pixels(cells[0]).shape == (48, 48, 3)
    for a, b in ((0, 1), (0, 2)):
        assert not np.array_equal(pixels(cells[a]), pixels(cells[b]))
    params = json.loads(cli("info", "--json", cells[3]).stdout)["parameters"]
    assert (params["Hires steps"], params["Hires upscaler"], params["Hires upscale"]) == ("2", "Lanczos", "1.5")
    grid = json.loads(cli("info", "--json", out / "xyz_grid-0000.png").stdout)["parameters"]
    assert (grid["X Type"], grid["X Values"], grid["Y Type"]) == ("Hires steps", "1, 2", "Hires upscaler")

    # --resume alone takes the recorded hires flags; a changed one is refused by name, nothing run.
    lost = pixels(cells[1])
    cells[1].unlink()
    again = cli("xyz", "--resume", "-o", out, "--json")
    assert again.exit_code == 0, again.stderr
    [redone] = records(again, "item")
    assert redone["item"] == 1 and np.array_equal(pixels(redone["path"]), lost)
    changed = cli("xyz", "--resume", "-o", out, "--hires-scale", "2")
    assert changed.exit_code == 2
    assert "--hires-scale: 1.5 in the manifest, 2.0 now" in changed.stderr, changed.stderr


def test_denoising_axis_with_hires_sets_the_hires_strength(cli, tiny_model, tmp_path):
    result = cli("xyz", "a fox", "-m", tiny_model, *FAST, "--steps", "2", "--seed", "3", *HIRES,
                 "--hires-upscaler", "Lanczos", "-o", tmp_path / "plot", "--json", "--x", "Denoising: 0.3, 0.9")
    assert result.exit_code == 0, result.stderr
    cells = cells_of(result)
    assert not np.array_equal(pixels(cells[0]), pixels(cells[1]))
    for item, strength in ((0, "0.3"), (1, "0.9")):
        one = cli("txt2img", "a fox", "-m", tiny_model, *FAST, "--steps", "2", "--seed", "3", *HIRES,
                  "--hires-upscaler", "Lanczos", "--hires-denoise", strength, "-o", tmp_path / f"one{item}", "--json")
        assert one.exit_code == 0, one.stderr
        assert np.array_equal(pixels(json.loads(one.stdout)["path"]), pixels(cells[item]))
        assert json.loads(cli("info", "--json", cells[item]).stdout)["parameters"]["Denoising strength"] == strength


def test_hires_upscaler_axis_takes_an_esrgan_name_from_the_models_folder(cli, tiny_model, tmp_path, monkeypatch):
    import sdcli.models.upscalers as upscalers
    from sdcli.models.tiny_assets import write_tiny_upscaler

    loads = []
    real = upscalers.load_model
    monkeypatch.setattr(upscalers, "load_model", lambda *a: loads.append(a[0].name) or real(*a))
    esrgan = write_tiny_upscaler(tmp_path / "models" / "ESRGAN" / "4x-Tiny.safetensors")
    result = cli("xyz", "a cat", "-m", tiny_model, *FAST, "--steps", "2", "--seed", "4", *HIRES, "--models-dir",
                 tmp_path / "models", "-o", tmp_path / "plot", "--json", "--x", "Hires upscaler: Lanczos, 4x-Tiny",
                 "--y", "Hires steps: 0, 1")
    assert result.exit_code == 0, result.stderr
    assert loads == ["4x-Tiny"]  # loaded once for the two cells that use it
    cells = cells_of(result)
    one = cli("txt2img", "a cat", "-m", tiny_model, *FAST, "--steps", "2", "--seed", "4", *HIRES,
              "--hires-upscaler", esrgan, "-o", tmp_path / "one", "--json")
    assert one.exit_code == 0, one.stderr
    assert np.array_equal(pixels(json.loads(one.stdout)["path"]), pixels(cells[1]))
    assert not np.array_equal(pixels(cells[0]), pixels(cells[1]))
    assert json.loads(cli("info", "--json", cells[1]).stdout)["parameters"]["Hires upscaler"] == "4x-Tiny"

    # A file by a relative path is recorded as an absolute one: --resume works from another folder.
    monkeypatch.chdir(tmp_path / "models")
    rel = cli("xyz", "a cat", "-m", tiny_model, *FAST, "--steps", "2", "--seed", "4", *HIRES, "--hires-upscaler",
              "ESRGAN/4x-Tiny.safetensors", "-o", tmp_path / "rel", "--json", "--x", "Hires steps: 0")
    assert rel.exit_code == 0, rel.stderr
    [cell] = cells_of(rel).values()
    assert np.array_equal(pixels(cell), pixels(cells[1]))
    cell.unlink()
    monkeypatch.chdir(tmp_path)
    again = cli("xyz", "--resume", "-o", tmp_path / "rel", "--json")
    assert again.exit_code == 0, again.stderr
    assert np.array_equal(pixels(records(again, "item")[0]["path"]), pixels(cells[1]))
