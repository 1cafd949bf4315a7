"""`sdcli xyz --edit`: an X/Y/Z plot of instruction edits on the tiny Flux.1 Kontext. Each cell is the same image,
infotext included, as `sdcli edit` run alone with that cell's settings; the Reference image axis replaces the first
-i; refusals are one line, exit 2, nothing written."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytestmark = pytest.mark.usefixtures("single_thread")
RUN = ("--steps", "2", "--seed", "3")


@pytest.fixture(scope="module")
def refs(tmp_path_factory):
    """Two 48x32 reference images: a radial and a linear gradient."""
    folder = tmp_path_factory.mktemp("refs")
    Image.radial_gradient("L").convert("RGB").resize((48, 32)).save(folder / "a.png")
    Image.linear_gradient("L").rotate(90).convert("RGB").resize((48, 32)).save(folder / "b.png")
    return folder


def _records(result, kind):
    return [r for r in map(json.loads, result.stdout.splitlines()) if r["type"] == kind]


def _hash(path):
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()[:10]


def _image(path):
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB")), im.text["parameters"]


@pytest.mark.slow
def test_edit_plot_cells_equal_sdcli_edit_alone(cli, tiny_family, refs, tmp_path):
    model = ("-m", tiny_family("flux-kontext"))
    out = tmp_path / "plot"
    result = cli("xyz", "--edit", *model, "-i", refs / "a.png", *RUN, "-o", out, "--json", "make the sky purple",
                 "--x", "Prompt S/R: purple, green", "--y", f"Reference image: {refs / 'a.png'}, {refs / 'b.png'}")
    assert result.exit_code == 0, result.stderr
    cells = {r["item"]: Path(r["path"]) for r in _records(result, "item") if r["status"] == "done"}
    assert sorted(cells) == [0, 1, 2, 3]
    assert [Path(g["path"]).name for g in _records(result, "grid")] == ["xyz_grid-0000.png"]
    # Cell (ix, iy) = item ix + 2 iy: the same edit alone (both axes at their second value) gives the same pixels
    # and infotext.
    one = cli("edit", *model, "-i", refs / "b.png", *RUN, "-o", tmp_path / "one", "--json", "make the sky green")
    assert one.exit_code == 0, one.stderr
    pixels, infotext = _image(json.loads(one.stdout.splitlines()[0])["path"])
    assert np.array_equal(_image(cells[3])[0], pixels)
    assert _image(cells[3])[1] == infotext and 'Reference hashes: "b.png: ' in infotext
    # Each axis moves the pixels: the prompt (cells 0, 1) and the reference image (cells 0, 2; 1, 3).
    first = _image(cells[0])
    assert first[1] == infotext.replace("green", "purple").replace("b.png: ", "a.png: ").replace(
        _hash(refs / "b.png"), _hash(refs / "a.png"))
    for i, j in ((0, 1), (0, 2), (1, 3)):
        assert not np.array_equal(_image(cells[i])[0], _image(cells[j])[0])
    # --resume needs only the folder (the references are recorded); the plot is complete: nothing runs again.
    again = cli("xyz", "--resume", "-o", out, "--json")
    assert again.exit_code == 0, again.stderr
    assert not [r for r in _records(again, "item") if r["status"] == "done"]


def test_edit_cells_take_each_axis_value(refs, tmp_path):
    """The planned cells (no model): edits of the -i references with each Seed, Steps, CFG Scale, Distilled CFG
    Scale and Reference image value (the axis replaces the first reference, keeps the others)."""
    from sdcli.batch.xyz import plan_plot
    from sdcli.cli.xyz import edit_request
    from sdcli.request.generation import GenerationRequest

    a, b = str(refs / "a.png"), str(refs / "b.png")
    base = edit_request(GenerationRequest(prompt="make it purple", seed=1), [a, b])
    plot = plan_plot(base, ("Seed: 4, 5", "Steps: 3, 6", "Reference image: " + b), None)
    requests = [line.request for line in plot.lines]
    assert [(r.mode, r.seed, r.steps, r.references) for r in requests] == [
        ("edit", 4, 3, (b, b)), ("edit", 5, 3, (b, b)), ("edit", 4, 6, (b, b)), ("edit", 5, 6, (b, b))]
    plot = plan_plot(base, ("CFG Scale: 1, 2.5", "Distilled CFG Scale: 2, 3", None), None)
    assert [(line.request.cfg_scale, line.request.distilled_cfg_scale, line.request.references)
            for line in plot.lines] == [(1.0, 2.0, (a, b)), (2.5, 2.0, (a, b)), (1.0, 3.0, (a, b)), (2.5, 3.0, (a, b))]


@pytest.mark.parametrize("args,message", [
    (("--edit", "x", "--x", "Steps: 2"),
     "error: --edit: give the reference image(s) with -i IMAGE (repeat it for several)"),
    (("-i", "{a}", "-i", "{b}", "x", "--x", "Steps: 2"),
     "error: --image: 2 images; an img2img plot takes one input image (with --edit, repeat -i for an edit's "
     "reference images)"),
    (("-i", "{a}", "x", "--x", "Reference image: {b}"),
     "error: --x: Reference image: needs --edit: it replaces the first reference image of an edit"),
    (("--edit", "-i", "{a}", "x", "--x", "Reference image: {missing}"),
     "error: --x: Reference image: {missing}: no such file"),
    (("--edit", "-i", "{missing}", "x", "--x", "Steps: 2"), "error: --image: {missing}: no such file"),
    (("--edit", "-i", "{a}", "x", "--x", "Denoising: 0.5"),
     "error: --x: Denoising: an edit draws a new image from noise; it has no denoising strength"),
    (("--edit", "-i", "{a}", "--strength", "0.5", "x", "--x", "Steps: 2"),
     "error: --strength: an edit draws a new image from noise (no denoising strength); leave it out"),
])
def test_edit_plot_refusals_one_line_exit_2(cli, refs, tmp_path, args, message):
    names = {"a": refs / "a.png", "b": refs / "b.png", "missing": tmp_path / "nope.png"}
    result = cli("xyz", "-o", tmp_path / "out", *(a.format(**names) for a in args))
    assert result.exit_code == 2, result.stderr
    assert result.stderr.strip().splitlines() == [message.format(**names)]
    assert not (tmp_path / "out").exists()


def test_reference_image_values_are_recorded_as_absolute_paths_for_resume(refs, tmp_path, monkeypatch):
    """A relative Reference image value is the file where the plot was planned; --resume (its `resolved`) finds
    the same files from another folder, whatever --keep-random-seeds says."""
    from sdcli.batch.xyz import plan_plot
    from sdcli.cli.xyz import edit_request
    from sdcli.request.generation import GenerationRequest

    base = edit_request(GenerationRequest(prompt="make it purple", seed=1), [str(refs / "a.png")])
    monkeypatch.chdir(refs)
    for keep in (False, True):
        plot = plan_plot(base, ("Reference image: b.png, a.png", None, None), None, keep_random_seeds=keep)
        assert plot.resolved["axes"]["x"] == [str(refs / "b.png"), str(refs / "a.png")]
        assert [line.request.references for line in plot.lines] == [(str(refs / "b.png"),), (str(refs / "a.png"),)]
        assert plot.axes[0].labels == ["b.png", "a.png"]
        monkeypatch.chdir(tmp_path)  # elsewhere, with the recorded values: the same cells
        again = plan_plot(base, ("Reference image: b.png, a.png", None, None), None, keep_random_seeds=keep,
                          resolved=plot.resolved)
        assert [line.request for line in again.lines] == [line.request for line in plot.lines]
        monkeypatch.chdir(refs)
