"""LoRAs, embeddings and VAEs through the CLI: tags, flags, infotext keys, replay with hash checks."""

from __future__ import annotations

import hashlib
import json
import shutil

import numpy as np
from PIL import Image

from sdcli.io.metadata import parse_infotext, read_infotext
from sdcli.models.tiny_assets import write_tiny_embedding, write_tiny_lora, write_tiny_vae

FAST = ("--steps", "2", "--width", "32", "--height", "32", "--seed", "5")


def short(path, n=12):
    return hashlib.sha256(path.read_bytes()).hexdigest()[:n]


def px(path):
    return np.asarray(Image.open(path))


def test_lora_tag_equals_lora_flag_and_is_recorded_as_the_webui_does(cli, models_dir, tmp_path):
    lora = models_dir / "Lora" / "detail.safetensors"
    tagged = cli("txt2img", "a cat <lora:detail:0.8>", "-m", "tiny", "--models-dir", models_dir, *FAST,
                 "-o", tmp_path / "tag", "--json")
    assert tagged.exit_code == 0, tagged.stderr
    assert "not supported" not in tagged.stderr
    record = json.loads(tagged.stdout)
    prompt, _, params = parse_infotext(read_infotext(tmp_path / "tag" / "00000-5.png"))
    assert prompt == "a cat <lora:detail:0.8>"  # the WebUI keeps the tag in the infotext
    assert params["Lora hashes"] == f"detail: {short(lora)}" == record["lora_hashes"]
    flagged = cli("txt2img", "a cat", "-m", "tiny", "--models-dir", models_dir, "--lora", f"{lora}:0.8", *FAST,
                  "-o", tmp_path / "flag")
    plain = cli("txt2img", "a cat", "-m", "tiny", "--models-dir", models_dir, *FAST, "-o", tmp_path / "plain")
    assert flagged.exit_code == 0 and plain.exit_code == 0, flagged.stderr + plain.stderr
    assert np.array_equal(px(tmp_path / "tag" / "00000-5.png"), px(tmp_path / "flag" / "00000-5.png"))
    assert not np.array_equal(px(tmp_path / "tag" / "00000-5.png"), px(tmp_path / "plain" / "00000-5.png"))
    assert "Lora hashes" not in read_infotext(tmp_path / "plain" / "00000-5.png")


def test_replay_finds_the_loras_again_and_warns_on_a_changed_file(cli, models_dir, tiny_model, tmp_path):
    folder = tmp_path / "models"
    shutil.copytree(models_dir, folder, symlinks=True)
    made = cli("txt2img", "a cat <lora:painterly:1>", "-m", tiny_model, "--models-dir", folder,
               "--lora", folder / "Lora" / "textonly.safetensors:0.5", *FAST, "-o", tmp_path / "a")
    assert made.exit_code == 0, made.stderr
    again = cli("replay", tmp_path / "a" / "00000-5.png", "--models-dir", folder, "-o", tmp_path / "b")
    assert again.exit_code == 0, again.stderr
    assert np.array_equal(px(tmp_path / "a" / "00000-5.png"), px(tmp_path / "b" / "00000-5.png"))
    old = short(folder / "Lora" / "style" / "painterly.safetensors")
    write_tiny_lora(tiny_model, folder / "Lora" / "style" / "painterly.safetensors", seed=9)
    changed = cli("replay", tmp_path / "a" / "00000-5.png", "--models-dir", folder, "-o", tmp_path / "c")
    assert changed.exit_code == 0, changed.stderr
    new = short(folder / "Lora" / "style" / "painterly.safetensors")
    assert f"LoRA painterly: {folder / 'Lora' / 'style' / 'painterly.safetensors'} has hash {new}" in changed.stderr
    assert f"made with hash {old}" in changed.stderr


def test_embedding_and_vae_are_recorded(cli, models_dir, tmp_path):
    vae = models_dir / "VAE" / "tinyvae.safetensors"
    result = cli("txt2img", "a tinyemb cat", "-m", "tiny", "--models-dir", models_dir, "--vae", "tinyvae",
                 *FAST, "-o", tmp_path)
    assert result.exit_code == 0, result.stderr
    _, _, params = parse_infotext(read_infotext(tmp_path / "00000-5.png"))
    assert params["TI hashes"] == f"tinyemb: {short(models_dir / 'embeddings' / 'tinyemb.safetensors')}"
    assert params["VAE"] == "tinyvae.safetensors" and params["VAE hash"] == short(vae, 10)


def test_bad_add_ons_fail_in_one_line_and_write_nothing(cli, models_dir, tiny_model, tmp_path):
    wide = write_tiny_lora(tiny_model, tmp_path / "xl_lora.safetensors", scale_width=2)
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes((models_dir / "Lora" / "detail.safetensors").read_bytes()[:-100])
    wide_vae = write_tiny_vae(tiny_model, tmp_path / "xl_vae.safetensors", scale_width=2)
    wide_emb = write_tiny_embedding(tmp_path / "sd2emb.safetensors", width=1024)
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00not json at all!")
    cases = [
        (["--vae", junk], "junk.safetensors is not a valid safetensors file"),
        (["--lora", wide], "xl_lora.safetensors does not fit this model"),
        (["--vae", wide_vae], "xl_vae.safetensors does not fit this model's VAE"),
        (["--embedding", wide_emb, "-p", "a sd2emb"], "sd2emb.safetensors has vectors of width 1024"),
        (["--lora", cut], "cut.safetensors is truncated or corrupt"),
        (["--lora", tmp_path / "missing.safetensors"], "--lora: no such file"),
        (["--vae", tmp_path / "nope"], "--vae: no such file"),
        (["--models-dir", models_dir, "--lora", "detial"], "no lora named 'detial'"),
        (["--models-dir", models_dir, "-p", "a <lora:detial:1>"], "prompt: <lora:detial>: no lora named 'detial'"),
        (["-p", "a <lora:detail:1>"], "no LoRA folder to find it in"),
        (["-p", "a <lora:detail:x>"], "the weight 'x' is not a number"),
    ]
    for args, message in cases:
        out = tmp_path / "out"
        prompt = [] if "-p" in args else ["-p", "a cat"]
        result = cli("txt2img", "-m", tiny_model, *args, *prompt, *FAST, "-o", out)
        assert result.exit_code == 2, (args, result.stderr)
        assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1, (args, result.stderr)
        assert not list(out.glob("*.png")) if out.exists() else True


def test_replaying_a_webui_image_finds_its_vae_by_name(cli, models_dir, tiny_model, tmp_path):
    from PIL import PngImagePlugin

    made = cli("txt2img", "a cat", "-m", "tiny", "--models-dir", models_dir, "--vae", "tinyvae", *FAST,
               "-o", tmp_path / "a")
    assert made.exit_code == 0, made.stderr
    infotext = read_infotext(tmp_path / "a" / "00000-5.png")
    webui = tmp_path / "webui.png"  # the same picture as the WebUI would save it: infotext only
    info = PngImagePlugin.PngInfo()
    info.add_text("parameters", infotext)
    Image.open(tmp_path / "a" / "00000-5.png").save(webui, pnginfo=info)
    again = cli("replay", webui, "-m", tiny_model, "--models-dir", models_dir, "-o", tmp_path / "b")
    assert again.exit_code == 0, again.stderr
    assert np.array_equal(px(tmp_path / "a" / "00000-5.png"), px(tmp_path / "b" / "00000-5.png"))
    lost = cli("replay", webui, "-m", tiny_model, "-o", tmp_path / "c")
    assert lost.exit_code == 0 and "VAE 'tinyvae.safetensors', not found in a VAE folder" in lost.stderr
