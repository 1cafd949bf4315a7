"""Flux LoRAs on the tiny Flux dev model, from the command line: kohya, PEFT and XLabs files of the same
weights give the same pixels; a LoRA merged into the weights by hand gives the pixels of applying it;
weight 0 is the base model; tags and --lora agree; the CLIP-L part counts; other families' LoRAs are refused."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from PIL import Image

from sdcli.models.tiny_assets import write_tiny_lora
from sdcli.models.tiny_flux_lora import write_tiny_flux_lora

RUN = ("--steps", "2", "-W", "32", "-H", "32", "--seed", "3", "--sampler", "Euler", "--schedule", "simple",
       "--cfg-scale", "1")


@pytest.fixture(scope="module")
def lib(tiny_flux, tmp_path_factory):
    """A models folder with Flux LoRAs: every layer + CLIP-L (PEFT, kohya), attention only (all three formats),
    CLIP-L only."""
    root = tmp_path_factory.mktemp("flux-loras")
    dev = tiny_flux["flux-dev"]
    for fmt in ("peft", "kohya"):
        write_tiny_flux_lora(dev, root / "Lora" / f"full-{fmt}.safetensors", fmt=fmt, seed=1)
    for fmt in ("peft", "kohya", "xlabs"):
        write_tiny_flux_lora(dev, root / "Lora" / f"attn-{fmt}.safetensors", fmt=fmt, seed=2, layers="attn",
                             text_encoder=False)
    write_tiny_flux_lora(dev, root / "Lora" / "clip.safetensors", seed=3, transformer=False)
    return root


def pixels(cli, tiny_flux, out, *args, prompt="a cat"):
    result = cli("txt2img", "-m", tiny_flux["flux-dev"], *RUN, "-o", out, *args, prompt)
    assert result.exit_code == 0, result.stderr
    (png,) = out.glob("*.png")
    return np.asarray(Image.open(png), dtype=np.int16)


def test_weight_zero_is_the_base_and_one_changes_it(cli, tiny_flux, lib, tmp_path):
    lora = lib / "Lora" / "full-peft.safetensors"
    base = pixels(cli, tiny_flux, tmp_path / "base")
    assert np.array_equal(pixels(cli, tiny_flux, tmp_path / "zero", "--lora", f"{lora}:0"), base)
    assert np.abs(pixels(cli, tiny_flux, tmp_path / "one", "--lora", lora) - base).max() > 20
    assert np.array_equal(pixels(cli, tiny_flux, tmp_path / "again"), base)  # taken off: the base exactly


@pytest.mark.parametrize("layers, fmt", [("full", "kohya"), ("attn", "kohya"), ("attn", "xlabs")])
def test_each_format_gives_the_pixels_of_the_peft_file(cli, tiny_flux, lib, tmp_path, layers, fmt):
    peft = pixels(cli, tiny_flux, tmp_path / "peft", "--lora", lib / "Lora" / f"{layers}-peft.safetensors")
    other = pixels(cli, tiny_flux, tmp_path / fmt, "--lora", lib / "Lora" / f"{layers}-{fmt}.safetensors")
    assert np.array_equal(other, peft)


def test_another_seed_of_the_same_format_differs(cli, tiny_flux, lib, tmp_path):
    """The format parity above can fail: other weights in the same keys give other pixels."""
    other = write_tiny_flux_lora(tiny_flux["flux-dev"], tmp_path / "seed9.safetensors", fmt="kohya", seed=9)
    a = pixels(cli, tiny_flux, tmp_path / "a", "--lora", lib / "Lora" / "full-peft.safetensors")
    assert not np.array_equal(pixels(cli, tiny_flux, tmp_path / "b", "--lora", other), a)


def _merge(state: dict, lora: dict, prefix: str, scale: float) -> int:
    """W += scale * B @ A for every `prefix` layer of a PEFT file; the number merged."""
    merged = 0
    for key in [k for k in lora if k.startswith(prefix) and k.endswith(".lora_A.weight")]:
        module = key[len(prefix):-len(".lora_A.weight")]
        name = next(n for n in (f"{module}.weight", f"{module.removeprefix('text_model.')}.weight") if n in state)
        delta = lora[key.replace("lora_A", "lora_B")] @ lora[key]
        state[name] = state[name] + scale * delta
        merged += 1
    return merged


def test_a_lora_merged_by_hand_gives_the_pixels_of_applying_it(cli, tiny_flux, lib, tmp_path):
    from safetensors.torch import load_file, save_file

    lora = load_file(str(lib / "Lora" / "full-peft.safetensors"))
    folder = tmp_path / "merged"
    shutil.copytree(tiny_flux["flux-dev"], folder)
    for part, file, prefix in (("transformer", "diffusion_pytorch_model.safetensors", "transformer."),
                               ("text_encoder", "model.safetensors", "text_encoder.")):
        state = load_file(str(folder / part / file))
        assert _merge(state, lora, prefix, 0.7) > 0
        save_file(state, str(folder / part / file))
    applied = pixels(cli, tiny_flux, tmp_path / "applied", "--lora", f"{lib / 'Lora' / 'full-peft.safetensors'}:0.7")
    result = cli("txt2img", "-m", folder, *RUN, "-o", tmp_path / "m", "a cat")
    assert result.exit_code == 0, result.stderr
    merged = np.asarray(Image.open(next((tmp_path / "m").glob("*.png"))), dtype=np.int16)
    assert np.abs(merged - applied).max() <= 1  # measured: 0 (fp32 on CPU)
    base = pixels(cli, tiny_flux, tmp_path / "base")
    assert np.abs(merged - base).max() > 20


def test_tags_and_the_flag_agree_and_are_recorded(cli, tiny_flux, lib, tmp_path):
    from sdcli.io.metadata import parse_infotext, read_infotext
    from sdcli.models.hashes import file_sha256

    tagged = pixels(cli, tiny_flux, tmp_path / "tag", "--models-dir", lib, prompt="a cat <lora:full-kohya:0.6>")
    flagged = pixels(cli, tiny_flux, tmp_path / "flag", "--lora", f"{lib / 'Lora' / 'full-kohya.safetensors'}:0.6")
    assert np.array_equal(tagged, flagged)
    # The tag is stripped before T5/CLIP see it: at weight 0 the image is the untagged prompt's.
    zero = pixels(cli, tiny_flux, tmp_path / "zero", "--models-dir", lib, prompt="a cat <lora:full-kohya:0>")
    assert np.array_equal(zero, pixels(cli, tiny_flux, tmp_path / "base"))
    _, _, params = parse_infotext(read_infotext(next((tmp_path / "tag").glob("*.png"))))
    assert params["Lora hashes"] == f"full-kohya: {file_sha256(lib / 'Lora' / 'full-kohya.safetensors')[:12]}"


def test_replay_finds_the_lora_and_warns_on_a_changed_file(cli, tiny_flux, lib, tmp_path):
    folder = tmp_path / "models"
    shutil.copytree(lib, folder)
    made = pixels(cli, tiny_flux, tmp_path / "a", "--models-dir", folder, prompt="a cat <lora:attn-xlabs:1>")
    (png,) = (tmp_path / "a").glob("*.png")
    again = cli("replay", png, "--models-dir", folder, "-o", tmp_path / "b")
    assert again.exit_code == 0, again.stderr
    assert np.array_equal(np.asarray(Image.open(next((tmp_path / "b").glob("*.png"))), dtype=np.int16), made)
    write_tiny_flux_lora(tiny_flux["flux-dev"], folder / "Lora" / "attn-xlabs.safetensors", fmt="xlabs", seed=8,
                         layers="attn", text_encoder=False)
    changed = cli("replay", png, "--models-dir", folder, "-o", tmp_path / "c")
    assert changed.exit_code == 0, changed.stderr
    assert "LoRA attn-xlabs:" in changed.stderr and "the result will differ" in changed.stderr


def test_the_clip_part_changes_the_pixels(cli, tiny_flux, lib, tmp_path):
    base = pixels(cli, tiny_flux, tmp_path / "base")
    clip = pixels(cli, tiny_flux, tmp_path / "clip", "--lora", lib / "Lora" / "clip.safetensors")
    assert np.abs(clip - base).max() > 0


@pytest.mark.parametrize("fmt", ["kohya", "diffusers"])
def test_an_sd_lora_on_flux_is_refused_by_name(cli, tiny_flux, tiny_model, tmp_path, fmt):
    sd = write_tiny_lora(tiny_model, tmp_path / f"sd-{fmt}.safetensors", fmt=fmt, text_encoder=False)
    result = cli("txt2img", "-m", tiny_flux["flux-dev"], *RUN, "-o", tmp_path / "o", "--lora", sd, "a cat")
    assert result.exit_code != 0 and not (tmp_path / "o").exists()
    (line,) = [x for x in result.stderr.splitlines() if x.startswith("error:")]
    assert f"{sd} does not fit this model" in line


@pytest.mark.parametrize("fmt", ["kohya", "peft", "xlabs"])
def test_a_flux_lora_on_sd_is_refused_by_name(cli, tiny_flux, tiny_model, tmp_path, fmt):
    flux = write_tiny_flux_lora(tiny_flux["flux-dev"], tmp_path / f"flux-{fmt}.safetensors", fmt=fmt,
                                layers="attn", text_encoder=False)
    result = cli("txt2img", "-m", tiny_model, *RUN, "-o", tmp_path / "o", "--lora", flux, "a cat")
    assert result.exit_code != 0 and not (tmp_path / "o").exists()
    (line,) = [x for x in result.stderr.splitlines() if x.startswith("error:")]
    assert f"{flux} does not fit this model" in line
