"""`sdcli edit` from the command line on the tiny Flux.1 Kontext, Flux.2 klein and Qwen-Image-Edit models: the size
and infotext of an edit, the reference image counting, replay (and its refusal when the reference is gone), folders
and prompt files, --json, and the refusals (one line, exit 2). The pixels against the references: tests/reference/
test_edit_parity.py."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
from PIL import Image

RUN = ("--steps", "2", "--seed", "3")


@pytest.fixture(scope="module")
def refs(tmp_path_factory):
    """Reference images: a 48x32 radial gradient (a.png), a 32 px horizontal gradient (b.png), a 32 px Mandelbrot."""
    folder = tmp_path_factory.mktemp("refs")
    Image.radial_gradient("L").convert("RGB").resize((48, 32)).save(folder / "a.png")
    Image.linear_gradient("L").rotate(90).convert("RGB").resize((32, 32)).save(folder / "b.png")
    Image.effect_mandelbrot((32, 32), (-2, -1.5, 1, 1.5), 50).convert("RGB").save(folder.parent / "other.png")
    return folder


def _edit(cli, out, *args):
    result = cli("edit", *RUN, "-o", out, *args)
    assert result.exit_code == 0, result.stderr
    (png,) = out.glob("*.png")
    return png


def _pixels(png):
    return np.asarray(Image.open(png), dtype=np.int16)


@pytest.mark.slow
def test_kontext_edit_size_infotext_reference_and_replay(cli, tiny_family, refs, tmp_path, single_thread):
    model = ("-m", tiny_family("flux-kontext"))
    reference = tmp_path / "photo.png"
    reference.write_bytes((refs / "a.png").read_bytes())
    png = _edit(cli, tmp_path / "a", *model, "-i", reference, "make the sky purple")
    image = Image.open(png)
    assert image.size == (48, 32)  # the reference's own size: a tiny model takes it at whole 16 px tokens
    digest = hashlib.sha256(reference.read_bytes()).hexdigest()[:10]
    infotext = image.text["parameters"]
    assert f'Reference hashes: "photo.png: {digest}"' in infotext
    assert "Distilled CFG Scale: 2.5" in infotext and "CFG scale: 1," in infotext
    # Another reference image is another edit; -W/-H set the size.
    other = _edit(cli, tmp_path / "b", *model, "-i", refs.parent / "other.png", "-W", "48", "-H", "32",
                  "make the sky purple")
    assert not np.array_equal(_pixels(png), _pixels(other))
    # Replay makes the same pixels from the reference where it was; without it, one line and exit 2.
    replayed = tmp_path / "replayed"
    result = cli("replay", png, "-o", replayed)
    assert result.exit_code == 0, result.stderr
    assert np.array_equal(_pixels(png), _pixels(next(replayed.glob("*.png"))))
    reference.unlink()
    result = cli("replay", png, "-o", tmp_path / "gone")
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines()[-1] == (
        f"error: {png}: its reference image {reference} was not found; put it back there or run sdcli edit -i "
        "IMAGE with the image's settings")
    assert not (tmp_path / "gone").exists()


@pytest.mark.slow
def test_klein_two_references_json_and_order(cli, tiny_family, refs, tmp_path, single_thread):
    model = ("-m", tiny_family("flux2-klein"))
    result = cli("edit", *RUN, "-o", tmp_path / "a", *model, "-i", refs / "b.png", "-i", refs / "a.png", "--json",
                 "the cat wears the hat")
    assert result.exit_code == 0, result.stderr
    record = json.loads(result.stdout.splitlines()[0])
    image = Image.open(record["path"])
    assert image.size == (32, 32)  # the first reference's
    assert '"b.png: ' in image.text["parameters"] and ", a.png: " in image.text["parameters"]
    swapped = _edit(cli, tmp_path / "b", *model, "-i", refs / "b.png", "-i", refs.parent / "other.png",
                    "the cat wears the hat")
    assert not np.array_equal(_pixels(record["path"]), _pixels(swapped))


@pytest.mark.slow
def test_folder_and_prompt_file(cli, tiny_family, refs, tmp_path, single_thread):
    model = ("-m", tiny_family("flux-kontext"))
    out = tmp_path / "folder"
    result = cli("edit", *RUN, "-o", out, *model, "-i", refs, "make it purple")
    assert result.exit_code == 0, result.stderr
    assert sorted(p.name for p in out.glob("*.png")) == ["a-3.png", "b-4.png"]
    items = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()[1:]]
    assert [(i["input"], i["status"]) for i in items] == [(str(refs / "a.png"), "done"), (str(refs / "b.png"), "done")]
    # One image of the folder alone, with its seed, is the same edit.
    alone = _edit(cli, tmp_path / "alone", *model, "-i", refs / "b.png", "--seed", "4", "make it purple")
    assert np.array_equal(_pixels(out / "b-4.png"), _pixels(alone))
    # A prompt-file line with reference_images (relative to the file) is an edit too.
    lines = tmp_path / "refs" / "lines.txt"
    lines.parent.mkdir()
    (lines.parent / "b.png").write_bytes((refs / "b.png").read_bytes())
    lines.write_text('--prompt "make it purple" --reference_images b.png --seed 4\n')
    result = cli("batch", lines, *model, "--steps", "2", "-o", tmp_path / "batch")
    assert result.exit_code == 0, result.stderr
    assert np.array_equal(_pixels(alone), _pixels(next((tmp_path / "batch").glob("*.png"))))


@pytest.mark.parametrize("args,message", [
    (("-i", "{a}", "x"), "error: sdcli edit: a Stable Diffusion 1.x model cannot edit by instruction; use one of: "
                         "Flux.2 klein, Flux.2 klein base, Flux.2 dev, Flux.1 Kontext, Qwen-Image-Edit, "
                         "Qwen-Image-Edit Plus"),
    (("-i", "{a}"), "error: PROMPT: missing"),
    (("-i", "{missing}", "x"), "error: --image: {missing}: no such file"),
    (("-i", "{a}", "-i", "{folder}", "x"), "error: --image: a folder or glob of images is edited one image at a "
                                           "time; give it as the only -i"),
    (("-i", "{folder}", "--server", "http://localhost:1", "x"), "error: --server: a folder or glob of inputs runs "
                                                                 "here, not on a server; leave out --server"),
    (("-i", "{a}",) * 9 + ("x",), "error: --image: 9 reference images; sdcli edit takes at most 8"),
])
def test_refusals_are_one_line_exit_2(cli, refs, tmp_path, args, message):
    names = {"a": refs / "a.png", "missing": tmp_path / "nope.png", "folder": refs}
    result = cli("edit", "-o", tmp_path / "out", *(a.format(**names) for a in args))
    assert result.exit_code == 2, result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith(message.format(**names))
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("arch,given,says", [("flux-kontext", 5, "a Flux.1 Kontext model takes at most 4"),
                                             ("qwen-image-edit", 2, "a Qwen-Image-Edit model takes at most 1"),
                                             ("qwen-image-edit-plus", 4,
                                              "a Qwen-Image-Edit Plus model takes at most 3")])
def test_more_references_than_the_family_takes_is_refused(cli, tiny_family, refs, tmp_path, arch, given, says):
    result = cli("edit", "-o", tmp_path / "out", "-m", tiny_family(arch), *("-i", refs / "a.png") * given, "x")
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines()[-1] == f"error: --image: {given} reference images; {says}"
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_qwen_image_edit_from_the_command_line(cli, tiny_family, refs, tmp_path, single_thread):
    """Qwen-Image-Edit: the reference fitted as diffusers' pipeline sizes it (the tiny model: 64 x 64 pixels at the
    image's aspect ratio, sides multiples of 32), Qwen-Image's defaults (true CFG 2.5), replay equal."""
    png = _edit(cli, tmp_path / "a", "-m", tiny_family("qwen-image-edit"), "-i", refs / "b.png", "make it purple")
    image = Image.open(png)
    assert image.size == (64, 64)
    assert "CFG scale: 2.5," in image.text["parameters"] and "Reference hashes: " in image.text["parameters"]
    result = cli("replay", png, "-o", tmp_path / "again")
    assert result.exit_code == 0, result.stderr
    assert np.array_equal(_pixels(png), _pixels(next((tmp_path / "again").glob("*.png"))))
