"""`sdcli models`: the table, --json, errors, and no torch import."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys


def test_json_lists_every_kind_with_webui_hashes(cli, models_dir):
    result = cli("models", "--models-dir", models_dir, "--json")
    assert result.exit_code == 0, result.stderr
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert {(r["schema"], r["type"]) for r in rows} == {(1, "model_file")}
    assert [(r["kind"], r["name"]) for r in rows] == [
        ("checkpoint", "tiny"), ("lora", "detail"), ("lora", "style/painterly"), ("lora", "textonly"),
        ("embedding", "tinyemb"), ("vae", "tinyvae")]
    lora = next(r for r in rows if r["name"] == "detail")
    assert lora["hash"] == hashlib.sha256((models_dir / "Lora" / "detail.safetensors").read_bytes()).hexdigest()[:12]
    vae = next(r for r in rows if r["kind"] == "vae")
    assert len(vae["hash"]) == 10


def test_table_on_stdout_and_kind_filter(cli, models_dir):
    result = cli("models", "--kind", "lora", env={"SDCLI_MODELS_DIR": str(models_dir)})
    assert result.exit_code == 0, result.stderr
    assert "painterly" in result.stdout and "tinyemb" not in result.stdout and "LoRA" in result.stdout


def test_errors(cli, tmp_path):
    assert cli("models").exit_code == 2
    result = cli("models", "--models-dir", tmp_path / "nope")
    assert result.exit_code == 2 and "--models-dir: no such folder" in result.stderr
    bad = cli("models", "--models-dir", tmp_path, "--kind", "checkpoints")
    assert bad.exit_code == 2 and "--kind: unknown value 'checkpoints'" in bad.stderr


def test_models_command_does_not_import_torch(models_dir):
    code = ("import sys\nfrom sdcli.cli import main\nsys.argv = ['sdcli', 'models', '--models-dir', sys.argv[1]]\n"
            "try:\n    main()\nexcept SystemExit:\n    pass\nassert 'torch' not in sys.modules, 'torch imported'\n")
    done = subprocess.run([sys.executable, "-c", code, str(models_dir)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "tinyvae" in done.stdout


def test_whole_sd_checkpoints_are_listed_as_checkpoints(cli, tiny_xl, tmp_path):
    """A WebUI single file holds its CLIP and VAE too: it is its family's checkpoint, not the part found first."""
    from sdcli.models.tiny import build_tiny_single_file

    folder = tmp_path / "models" / "Stable-diffusion"
    for arch in ("sd1", "sd2", "sd1-inpaint"):
        build_tiny_single_file(folder / f"{arch}.safetensors", arch=arch)
    for key in ("base_file", "refiner_file"):
        (folder / tiny_xl[key].name).symlink_to(tiny_xl[key])
    result = cli("models", "--models-dir", tmp_path / "models", "--kind", "checkpoint", "--json")
    assert result.exit_code == 0, result.stderr
    what = {r["name"]: r["what"] for r in map(json.loads, result.stdout.splitlines())}
    assert what == {"sd1": "sd1 checkpoint", "sd2": "sd2 checkpoint", "sd1-inpaint": "sd1 checkpoint",
                    "tiny-xl": "sdxl checkpoint", "tiny-xl-refiner": "sdxl-refiner checkpoint"}


def test_file_names_are_listed_as_written_not_as_markup_or_emoji(cli, models_dir, tmp_path):
    import shutil

    root = tmp_path / "models"
    shutil.copytree(models_dir, root, symlinks=True)
    shutil.copy(root / "Lora" / "detail.safetensors", root / "Lora" / "[bold]odd :b: name.safetensors")
    result = cli("models", "--models-dir", root, "--kind", "lora", env={"COLUMNS": "300"})
    assert result.exit_code == 0, result.stderr
    assert "[bold]odd :b: name" in result.stdout and "\U0001f171" not in result.stdout
