"""Flux LoRAs on the tiny Flux dev model, from the command line: kohya, PEFT and XLabs files of the same
weights give the same pixels; a LoRA merged into the weights by hand gives the pixels of applying it;
weight 0 is the base model; tags and --lora agree; the CLIP-L and T5-XXL parts count; other families' LoRAs and
broken files are refused in one line."""

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
    for fmt in ("kohya", "peft"):
        write_tiny_flux_lora(dev, root / "Lora" / f"t5-{fmt}.safetensors", fmt=fmt, seed=4, t5=True)
    write_tiny_flux_lora(dev, root / "Lora" / "t5-only.safetensors", fmt="kohya", seed=5, t5=True,
                         transformer=False, text_encoder=False)
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


@pytest.mark.parametrize("name", ["full-peft", "t5-peft"])
def test_a_lora_merged_by_hand_gives_the_pixels_of_applying_it(cli, tiny_flux, lib, tmp_path, name):
    """Transformer, CLIP-L and (t5-peft) T5-XXL weights merged into a copy of the model by hand."""
    from safetensors.torch import load_file, save_file

    lora = load_file(str(lib / "Lora" / f"{name}.safetensors"))
    folder = tmp_path / "merged"
    shutil.copytree(tiny_flux["flux-dev"], folder)
    parts = [("transformer", "diffusion_pytorch_model.safetensors", "transformer."),
             ("text_encoder", "model.safetensors", "text_encoder.")]
    if name == "t5-peft":
        parts.append(("text_encoder_2", "model.safetensors", "text_encoder_2."))
    for part, file, prefix in parts:
        state = load_file(str(folder / part / file))
        assert _merge(state, lora, prefix, 0.7) > 0
        save_file(state, str(folder / part / file))
    applied = pixels(cli, tiny_flux, tmp_path / "applied", "--lora", f"{lib / 'Lora' / f'{name}.safetensors'}:0.7")
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


def test_the_t5_part_counts_and_kohya_equals_peft(cli, tiny_flux, lib, tmp_path):
    """sd-scripts' lora_te3_ T5 layers load into T5-XXL: the kohya file gives the PEFT file's pixels, the T5
    part alone changes the image, weight 0 is the base, and a job without LoRA after them is the base again."""
    base = pixels(cli, tiny_flux, tmp_path / "base")
    kohya = pixels(cli, tiny_flux, tmp_path / "kohya", "--lora", lib / "Lora" / "t5-kohya.safetensors")
    peft = pixels(cli, tiny_flux, tmp_path / "peft", "--lora", lib / "Lora" / "t5-peft.safetensors")
    assert np.array_equal(kohya, peft)
    only = pixels(cli, tiny_flux, tmp_path / "only", "--lora", lib / "Lora" / "t5-only.safetensors")
    assert np.abs(only - base).max() > 5  # measured: 18 levels
    zero = pixels(cli, tiny_flux, tmp_path / "zero", "--lora", f"{lib / 'Lora' / 't5-kohya.safetensors'}:0")
    assert np.array_equal(zero, base)


def test_switching_from_a_t5_lora_to_none_gives_the_base(tiny_flux, lib):
    """On one loaded model (as a batch keeps it): T5 LoRA, then none = the base model's T5 states exactly,
    every LoRA layer taken out of T5-XXL."""
    import torch

    from sdcli.models.lora import LoraSpec, apply_loras
    from tests.conftest import _load_on_cpu

    model = _load_on_cpu(tiny_flux["flux-dev"])
    encoder, tokens = model.pipe.text_encoder_2, model.pipe.tokenizer_2("a cat", return_tensors="pt").input_ids

    def states():
        with torch.no_grad():
            return encoder(tokens)[0]

    base = states()
    for name in ("t5-only", "t5-kohya"):
        path = lib / "Lora" / f"{name}.safetensors"
        apply_loras(model, [LoraSpec(path, 1.0, name, name)])
        assert (states() - base).abs().max() > 0.1
    apply_loras(model, [])
    assert torch.equal(states(), base)
    assert not any("lora" in name for name, _ in encoder.named_modules())


@pytest.mark.parametrize("case", ["unknown", "t5", "half"])
def test_a_broken_kohya_file_is_one_error_line(cli, tiny_flux, lib, tmp_path, case):
    """Unknown layers, T5 layers naming no T5 module, a layer without its up matrix: exit 2, one line naming
    the file, no traceback, nothing written."""
    from safetensors.torch import load_file, save_file

    state = load_file(str(lib / "Lora" / "t5-kohya.safetensors"))
    key = "lora_te3_encoder_block_0_layer_0_SelfAttention_q"
    if case == "unknown":
        state["lora_foo_bar.lora_down.weight"] = state[f"{key}.lora_down.weight"].clone()
    elif case == "t5":
        state = {k.replace("encoder_block_0", "encoder_block_99"): v for k, v in state.items()}
    else:
        del state[f"{key}.lora_up.weight"]
    bad = tmp_path / f"{case}.safetensors"
    save_file(state, str(bad))
    result = cli("txt2img", "-m", tiny_flux["flux-dev"], *RUN, "-o", tmp_path / "o", "--lora", bad, "a cat")
    assert result.exit_code == 2 and not (tmp_path / "o").exists()
    assert "Traceback" not in result.stderr
    (line,) = [x for x in result.stderr.splitlines() if x.startswith("error:")]
    assert str(bad) in line
