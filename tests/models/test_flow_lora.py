"""LoRAs on the flow families beyond Flux.1 (SD3, Z-Image, Chroma, Qwen-Image, Flux.2 klein), from tiny files that
hold the same weights in each format people publish for the family (models.tiny_flow_lora): weight 0 is the base
and 1 changes it; every format puts the PEFT file's weights into the model; a kohya file gives the PEFT file's
pixels; a LoRA merged into a copy of the model by hand gives the pixels of applying it; tags and --lora agree and
are recorded; another family's LoRA and broken files are refused in one line."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from PIL import Image

from sdcli.models.tiny_flow_lora import write_tiny_flow_lora

RUN = ("--steps", "2", "-W", "32", "-H", "32", "--seed", "3")
# arch -> the formats its LoRAs are published in besides PEFT (models.tiny_flow_lora)
FORMATS = {"sd3": ("kohya", "comfy", "comfy-kohya"), "zimage": ("kohya", "comfy", "comfy-kohya", "musubi", "aitoolkit"),
           "chroma": ("kohya", "comfy", "comfy-kohya"),
           "qwen-image": ("kohya", "comfy", "comfy-kohya", "lightning", "aitoolkit"),
           "flux2-klein": ("kohya", "comfy", "comfy-kohya"), "flux2-dev": ("kohya", "comfy", "comfy-kohya")}
ARCHS = tuple(FORMATS)
# The command-line paths (tags, prompt files, X/Y/Z): once per loader; Flux.2 dev loads as klein does.
CLI_ARCHS = tuple(a for a in ARCHS if a != "flux2-dev")
LABELS = {"sd3": "SD3", "zimage": "Z-Image", "chroma": "Chroma", "qwen-image": "Qwen-Image", "flux2-klein": "Flux.2",
          "flux2-dev": "Flux.2"}
TEXT_ENCODERS = ("sd3",)  # archs whose tiny LoRAs also hold text-encoder (CLIP-L/G, T5-XXL) layers


@pytest.fixture(scope="module")
def loras(tiny_family, tmp_path_factory):
    """`loras(arch)`: a models folder whose Lora/ holds that family's LoRA (seed 1) in every format, and the
    kohya form of other weights (kohya-seed2)."""
    cache = {}

    def folder(arch):
        if arch not in cache:
            root = tmp_path_factory.mktemp(f"{arch}-loras")
            model, text = tiny_family(arch), arch in TEXT_ENCODERS
            for fmt in ("peft", *FORMATS[arch]):
                write_tiny_flow_lora(model, root / "Lora" / f"{fmt}.safetensors", arch, fmt=fmt, seed=1,
                                     text_encoders=text and fmt in ("peft", "kohya"))
            write_tiny_flow_lora(model, root / "Lora" / "kohya-seed2.safetensors", arch, fmt="kohya", seed=2,
                                 text_encoders=text)
            cache[arch] = root
        return cache[arch]

    return folder


def run(cli, model, out, *args, prompt="a cat"):
    result = cli("txt2img", "-m", model, *RUN, "-o", out, *args, prompt)
    assert result.exit_code == 0, result.stderr
    (png,) = out.glob("*.png")
    return np.asarray(Image.open(png), dtype=np.int16)


def _deltas(model, path):
    """Module -> the weight delta (scale * B @ A) the LoRA file at `path` puts there, applied by sdcli at weight 1."""
    from sdcli.models.lora import LoraSpec, apply_loras

    name = f"{path.parent.parent.name}_{path.stem}".replace("-", "_")
    apply_loras(model, [LoraSpec(path, 1.0, path.stem, name)])
    adapter = f"sdcli_{name}"
    try:
        return {f"{part}.{name}": module.get_delta_weight(adapter).detach().clone()
                for part in model.family.lora_components()
                for name, module in getattr(model.pipe, part).named_modules()
                if adapter in getattr(module, "lora_A", {})}
    finally:
        apply_loras(model, [])


@pytest.mark.parametrize("arch", ARCHS)
def test_weight_zero_is_the_base_and_one_changes_it(cli, tiny_family, loras, tmp_path, arch):
    model, lora = tiny_family(arch), loras(arch) / "Lora" / "peft.safetensors"
    base = run(cli, model, tmp_path / "base")
    assert np.array_equal(run(cli, model, tmp_path / "zero", "--lora", f"{lora}:0"), base)
    assert np.abs(run(cli, model, tmp_path / "one", "--lora", lora) - base).max() > 10


@pytest.mark.parametrize("arch, fmt", [(arch, fmt) for arch, formats in FORMATS.items() for fmt in formats])
def test_each_format_puts_the_peft_files_weights_into_the_model(tiny_family_pipe, loras, arch, fmt):
    """The weight deltas sdcli's loader puts into every LoRA'd layer (fused layers split, alpha folded in; SD3's
    kohya file: CLIP-L/G and T5-XXL too) are the PEFT file's, bit for bit; taking the LoRA off leaves no LoRA
    layer in any component."""
    import torch

    model, folder = tiny_family_pipe(arch), loras(arch) / "Lora"
    peft = _deltas(model, folder / "peft.safetensors")
    if arch in TEXT_ENCODERS and fmt != "kohya":  # only kohya's files hold text-encoder layers
        peft = {k: v for k, v in peft.items() if k.startswith("transformer.")}
    other = _deltas(model, folder / f"{fmt}.safetensors")
    assert len(peft) > 10 and set(other) == set(peft)
    assert all(torch.equal(other[k], peft[k]) for k in peft)
    parts = {key.split(".", 1)[0] for key in other}
    assert parts == ({"transformer", "text_encoder", "text_encoder_2", "text_encoder_3"}
                     if arch in TEXT_ENCODERS and fmt == "kohya" else {"transformer"})
    for part in model.family.lora_components():  # taken off: no LoRA layer left anywhere
        assert not any(".lora_" in name for name, _ in getattr(model.pipe, part).named_modules())


@pytest.mark.parametrize("arch", ARCHS)
def test_another_seed_puts_other_weights(tiny_family_pipe, loras, arch):
    """The format check above can fail: other weights in the same keys give other deltas."""
    import torch

    model, folder = tiny_family_pipe(arch), loras(arch) / "Lora"
    kohya, other = _deltas(model, folder / "kohya.safetensors"), _deltas(model, folder / "kohya-seed2.safetensors")
    assert set(kohya) == set(other) and not any(torch.equal(kohya[k], other[k]) for k in kohya)


@pytest.mark.parametrize("arch", ARCHS)
def test_a_kohya_file_gives_the_pixels_of_the_peft_file(cli, tiny_family, loras, tmp_path, arch):
    model, folder = tiny_family(arch), loras(arch) / "Lora"
    peft = run(cli, model, tmp_path / "peft", "--lora", folder / "peft.safetensors")
    assert np.array_equal(run(cli, model, tmp_path / "kohya", "--lora", folder / "kohya.safetensors"), peft)


def _merge_into(folder, lora, scale):
    """W += scale * B @ A in a model folder's files for every layer of a PEFT LoRA file; the number merged."""
    from safetensors.torch import load_file, save_file

    merged = 0
    for part in {key.split(".", 1)[0] for key in lora}:
        (file,) = (folder / part).glob("*.safetensors")
        state = load_file(str(file))
        for key in [k for k in lora if k.startswith(part + ".") and k.endswith(".lora_A.weight")]:
            weight = key[len(part) + 1:-len(".lora_A.weight")] + ".weight"
            state[weight] = state[weight] + scale * (lora[key.replace("lora_A", "lora_B")] @ lora[key])
            merged += 1
        save_file(state, str(file))
    return merged


@pytest.mark.parametrize("arch", ARCHS)
def test_a_lora_merged_by_hand_gives_the_pixels_of_applying_it(cli, tiny_family, loras, tmp_path, arch):
    """The PEFT file merged into a copy of the model's weights at 0.7 (transformer, and SD3's CLIP-L/G, T5) against
    the kohya file of the same weights applied at 0.7: within 1 level (fp32 on CPU; the merged network adds the
    delta into the weight before the matmul, peft after it, so the sums may round differently; measured: 0 levels
    in all five families)."""
    from safetensors.torch import load_file

    model, folder = tiny_family(arch), loras(arch) / "Lora"
    merged = tmp_path / "merged"
    shutil.copytree(model, merged)
    assert _merge_into(merged, load_file(str(folder / "peft.safetensors")), 0.7) > 10
    applied = run(cli, model, tmp_path / "applied", "--lora", f"{folder / 'kohya.safetensors'}:0.7")
    by_hand = run(cli, merged, tmp_path / "by-hand")
    assert np.abs(by_hand - applied).max() <= 1
    assert np.abs(by_hand - run(cli, model, tmp_path / "base")).max() > 10


@pytest.mark.parametrize("arch", CLI_ARCHS)
def test_a_tag_equals_the_flag_and_is_recorded(cli, tiny_family, loras, tmp_path, arch):
    from sdcli.io.metadata import parse_infotext, read_infotext
    from sdcli.models.hashes import file_sha256

    model, root = tiny_family(arch), loras(arch)
    tagged = run(cli, model, tmp_path / "tag", "--models-dir", root, prompt="a cat <lora:comfy:0.6>")
    flagged = run(cli, model, tmp_path / "flag", "--lora", f"{root / 'Lora' / 'comfy.safetensors'}:0.6")
    assert np.array_equal(tagged, flagged)
    _, _, params = parse_infotext(read_infotext(next((tmp_path / "tag").glob("*.png"))))
    assert params["Lora hashes"] == f"comfy: {file_sha256(root / 'Lora' / 'comfy.safetensors')[:12]}"


# Each family gets another family's LoRA (its kohya file): the refusal names the file and both families.
OTHER = {"sd3": "zimage", "zimage": "qwen-image", "chroma": "flux2-klein", "qwen-image": "sd3",
         "flux2-klein": "zimage", "flux2-dev": "qwen-image"}


@pytest.mark.parametrize("arch", ARCHS)
def test_another_familys_lora_is_refused_naming_both(cli, tiny_family, loras, tmp_path, arch):
    other = loras(OTHER[arch]) / "Lora" / "kohya.safetensors"
    result = cli("txt2img", "-m", tiny_family(arch), *RUN, "-o", tmp_path / "o", "--lora", other, "a cat")
    assert result.exit_code == 2 and not (tmp_path / "o").exists()
    (line,) = [x for x in result.stderr.splitlines() if x.startswith("error:")]
    assert f"{other} does not fit this model: a LoRA for {LABELS[OTHER[arch]]}" in line
    assert f"not for {LABELS[arch]}" in line


@pytest.mark.parametrize("arch, case", [("sd3", "t5"), ("zimage", "half"), ("chroma", "unknown"),
                                        ("flux2-klein", "half")])
def test_a_broken_file_is_one_error_line(cli, tiny_family, loras, tmp_path, arch, case):
    """A T5 layer naming no T5 module on SD3, a layer without its up matrix, an unknown layer: exit 2, one line
    naming the file, nothing written."""
    import torch
    from safetensors.torch import load_file, save_file

    state = load_file(str(loras(arch) / "Lora" / ("kohya.safetensors" if case != "half" else "comfy.safetensors")))
    if case == "half":
        del state[next(k for k in sorted(state) if k.endswith(".lora_B.weight"))]
    else:
        stem = "lora_te3_encoder_block_99_layer_0_SelfAttention_q" if case == "t5" else "lora_unet_foo_bar"
        state |= {f"{stem}.lora_down.weight": torch.zeros(4, 8), f"{stem}.lora_up.weight": torch.zeros(8, 4)}
    bad = tmp_path / f"{case}.safetensors"
    save_file(state, str(bad))
    result = cli("txt2img", "-m", tiny_family(arch), *RUN, "-o", tmp_path / "o", "--lora", bad, "a cat")
    assert result.exit_code == 2 and not (tmp_path / "o").exists()
    assert "Traceback" not in result.stderr
    (line,) = [x for x in result.stderr.splitlines() if x.startswith("error:")]
    assert f"{bad} is broken: its layer" in line if case == "half" else f"{bad} does not fit this model" in line


HIRES = ("--hires", "--hires-steps", "2", "--hires-upscaler", "Lanczos")


@pytest.mark.parametrize("arch", CLI_ARCHS)
def test_prompt_files_and_hires_xyz_take_the_lora(cli, tiny_family, loras, tmp_path, arch):
    """A prompt file whose second line drops the tag gives the base image there (the adapter comes off the loaded
    model); X/Y/Z's Prompt S/R over a tag's weight with hires: the weight-0 cell is the hires base, 1 differs."""
    model, root = tiny_family(arch), loras(arch)
    prompts = tmp_path / "p.txt"
    prompts.write_text('a cat <lora:comfy:1>\n--prompt "a cat" --seed 3\n')
    result = cli("batch", prompts, "-m", model, *RUN, "--models-dir", root, "-o", tmp_path / "b")
    assert result.exit_code == 0, result.stderr
    lines = [np.asarray(Image.open(p), dtype=np.int16) for p in sorted((tmp_path / "b").glob("*.png"))]
    assert np.array_equal(lines[0], run(cli, model, tmp_path / "one", "--lora", root / "Lora" / "comfy.safetensors"))
    assert np.array_equal(lines[1], run(cli, model, tmp_path / "base"))
    result = cli("xyz", "a cat <lora:comfy:0>", "-m", model, *RUN, *HIRES, "--models-dir", root,
                 "-o", tmp_path / "x", "--x", "Prompt S/R: 0, 1")
    assert result.exit_code == 0, result.stderr
    zero, one = (np.asarray(Image.open(p), dtype=np.int16) for p in sorted((tmp_path / "x").glob("0000*.png")))
    hires_base = run(cli, model, tmp_path / "hb", *HIRES)
    assert hires_base.shape == (64, 64, 3) and np.array_equal(zero, hires_base)
    assert np.abs(one - hires_base).max() > 10


def test_sd3s_text_encoder_layers_count_and_take_their_own_weight(cli, tiny_family, loras, tmp_path):
    """SD3's kohya file holds CLIP-L/G and T5-XXL layers besides the transformer's (the comfy file: the same
    transformer weights, no text-encoder layers): `<lora:kohya:0:1>` (text encoders 0, transformer 1) is the comfy
    file's image, and at 1 for both the text-encoder part changes it."""
    model, root = tiny_family("sd3"), loras("sd3")
    comfy = run(cli, model, tmp_path / "comfy", "--models-dir", root, prompt="a cat <lora:comfy:1>")
    split = run(cli, model, tmp_path / "split", "--models-dir", root, prompt="a cat <lora:kohya:0:1>")
    both = run(cli, model, tmp_path / "both", "--models-dir", root, prompt="a cat <lora:kohya:1>")
    assert np.array_equal(split, comfy) and np.abs(both - comfy).max() > 5


def test_replay_finds_a_tagged_lora_again(cli, tiny_family, loras, tmp_path):
    """Replay of a Qwen-Image image made with a ComfyUI LoRA tag: the LoRA found in the models folder again, the same
    pixels."""
    model, root = tiny_family("qwen-image"), loras("qwen-image")
    made = run(cli, model, tmp_path / "a", "--models-dir", root, prompt="a cat <lora:comfy:0.8>")
    again = cli("replay", next((tmp_path / "a").glob("*.png")), "-m", model, "--models-dir", root, "-o", tmp_path / "b")
    assert again.exit_code == 0, again.stderr
    assert np.array_equal(np.asarray(Image.open(next((tmp_path / "b").glob("*.png"))), dtype=np.int16), made)
    assert not np.array_equal(made, run(cli, model, tmp_path / "base"))
