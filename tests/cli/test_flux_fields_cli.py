"""Forge's Flux settings through the real CLI: refusals on SD models, family defaults, prompt files, X/Y/Z, info."""

import json

import pytest
from PIL import Image

import sdcli.job.plan
from sdcli.families import FAMILIES
from sdcli.families.base import Capabilities
from sdcli.families.sd1 import SD1
from sdcli.io.metadata import png_info, read_infotext
from tests.request.test_flux_fields import FORGE_FLUX

FAST = ("--steps", "2", "-W", "32", "-H", "32", "--seed", "3")


def test_distilled_cfg_on_an_sd_model_is_refused_naming_flag_and_family(cli, tiny_model, tmp_path):
    result = cli("txt2img", "a cat", "-m", tiny_model, *FAST, "--distilled-cfg", "3.5", "-o", tmp_path / "o")
    assert result.exit_code == 2
    takers = ", ".join(f.label for f in FAMILIES.values() if f.capabilities.distilled_guidance)
    assert result.stderr.strip() == ("error: --distilled-cfg: Stable Diffusion 1.x models have no distilled guidance; "
                                     f"it applies to {takers}")
    assert not (tmp_path / "o").exists()


def test_unset_settings_take_the_model_familys_defaults(cli, tiny_model, tmp_path, monkeypatch):
    """A stub family (SD 1.x with Flux-like defaults) shows the mechanism: plan -> infotext and record."""
    stub = SD1.__class__("sd1", SD1.label, SD1.pipelines, SD1.native_size, detect_keys=SD1.detect_keys,
                         configs=SD1.configs, capabilities=Capabilities(controlnet="sd", distilled_guidance=True),
                         load_kwargs=SD1.load_kwargs,
                         defaults={"cfg_scale": 1.0, "sampler": "Euler", "schedule": "karras",
                                   "distilled_cfg_scale": 3.5})
    monkeypatch.setattr(sdcli.job.plan, "family_of", lambda model: stub)
    result = cli("txt2img", "a cat", "-m", tiny_model, *FAST, "--json", "-o", tmp_path / "o")
    assert result.exit_code == 0, result.stderr
    text = read_infotext(json.loads(result.stdout)["path"])
    assert "Sampler: Euler, Schedule type: Karras, CFG scale: 1, Seed: 3" in text
    record = json.loads(Image.open(json.loads(result.stdout)["path"]).info["sdcli"])["request"]
    assert (record["cfg_scale"], record["sampler"], record["schedule"], record["distilled_cfg_scale"]) == (
        1.0, "Euler", "karras", 3.5)
    # Given values win over the family's.
    result = cli("txt2img", "a cat", "-m", tiny_model, *FAST, "--cfg-scale", "5", "--sampler", "Euler a", "--json",
                 "-o", tmp_path / "p")
    assert result.exit_code == 0, result.stderr
    assert "Sampler: Euler a, Schedule type: Karras, CFG scale: 5," in read_infotext(json.loads(result.stdout)["path"])


def test_sd_defaults_are_unchanged(cli, tiny_model, tmp_path):
    result = cli("txt2img", "a cat", "-m", tiny_model, *FAST, "--json", "-o", tmp_path / "o")
    text = read_infotext(json.loads(result.stdout)["path"])
    assert "Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 7, Seed: 3" in text
    assert "Distilled" not in text and "Module" not in text


def test_prompt_file_keys_and_xyz_axes_reach_the_request(tmp_path):
    from sdcli.batch.parse import parse_file
    from sdcli.batch.xyz import cell_request, parse_axis
    from sdcli.request.generation import GenerationRequest

    file = tmp_path / "p.txt"
    file.write_text('--prompt "a" --distilled_cfg_scale 2.5 --shift 3 --text_encoder "clip_l, t5xxl_fp16" '
                    '--low_bits bnb-nf4\n')
    jsonl = tmp_path / "p.jsonl"
    jsonl.write_text('{"prompt": "b", "text_encoder": ["clip_l"], "distilled_cfg": 4}\n')
    (first,), (second,) = (parse_file(f, "auto", GenerationRequest(prompt=""), None) for f in (file, jsonl))
    assert (first.request.distilled_cfg_scale, first.request.shift, first.request.text_encoders,
            first.request.low_bits) == (2.5, 3.0, ("clip_l", "t5xxl_fp16"), "bnb-nf4")
    assert (second.request.distilled_cfg_scale, second.request.text_encoders) == (4.0, ("clip_l",))
    x, y = parse_axis("--x", "Distilled CFG Scale: 2-4 (+1)"), parse_axis("--y", "Shift: 1, 3")
    assert x.values == (2.0, 3.0, 4.0) and x.labels[0] == "Distilled CFG Scale: 2.0"
    cell = cell_request(GenerationRequest(prompt="a"), (x, y), (1, 1))
    assert (cell.distilled_cfg_scale, cell.shift) == (3.0, 3.0)


@pytest.fixture
def forge_png(tmp_path):
    path = tmp_path / "forge.png"
    Image.new("RGB", (32, 32), "gray").save(path, pnginfo=png_info(FORGE_FLUX))
    return path


def test_info_shows_a_forge_flux_infotext(cli, forge_png):
    result = cli("info", "--json", forge_png)
    assert result.exit_code == 0
    params = json.loads(result.stdout)["parameters"]
    assert params["Distilled CFG Scale"] == "3.5" and params["Module 3"] == "t5xxl_fp16"
    assert params["Diffusion in Low Bits"] == "Automatic (fp16 LoRA)"
    assert cli("info", forge_png).stdout.strip() == FORGE_FLUX


def test_replaying_a_forge_flux_image_on_an_sd_model_is_refused(cli, forge_png, tiny_model, tmp_path):
    result = cli("replay", forge_png, "-m", tiny_model, "-o", tmp_path / "o")
    assert result.exit_code == 2
    assert "error: --distilled-cfg: Stable Diffusion 1.x models have no distilled guidance" in result.stderr
