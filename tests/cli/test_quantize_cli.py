"""--quantize and --quantize-text-encoder from the command line, prompt files, X/Y/Z and the WebUI API: refused in one
line naming the flag and the reason where they cannot run (this CPU, a single file, a GGUF file, a family without
low-bits storage, with --low-bits), nothing written; the infotext's `Diffusion in Low Bits` (Forge's bnb-nf4, sdcli's
bnb-int8 and torchao-float8wo) written and read back; the prompt-file key `quantize`."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from sdcli.io.metadata import parse_infotext
from sdcli.io.replay import ImageMetadata, request_from_infotext
from sdcli.request.generation import GenerationRequest, with_defaults
from tests.request.test_flux_fields import _params

RUN = ("--steps", "1", "-W", "32", "-H", "32", "--seed", "3")


def _refused(cli, tmp_path, *args, command="txt2img"):
    out = tmp_path / "out"
    result = cli(command, *RUN, "-o", out, *args)
    assert result.exit_code == 2, result.stderr
    assert not out.exists()  # refused in the plan step: nothing written, no folder made
    (line,) = result.stderr.strip().splitlines()
    return line


@pytest.mark.parametrize(("args", "message"), [
    (("--quantize", "nf4"), "error: --quantize: nf4 needs a CUDA GPU (bitsandbytes' kernels); this job runs on cpu "
                            "(use --low-bits float8-e4m3fn to store the weights in fp8 on any device)"),
    (("--quantize", "fp8", "--quantize-text-encoder"), "error: --quantize: fp8 needs a CUDA GPU with fp8 (compute "
                                                       "capability 8.9 or newer); this job runs on cpu"),
    (("--low-bits", "bnb-int8"), "error: --low-bits: bnb-int8 needs a CUDA GPU"),
    (("--low-bits", "nf4"), "error: --low-bits: bnb-nf4 needs a CUDA GPU"),  # --quantize's name, under the flag given
    (("--quantize", "int8", "--low-bits", "float8-e4m3fn"), "error: --quantize: not with --low-bits; both say how "
                                                            "the diffusion model is stored (give one)"),
    (("--quantize-text-encoder",), "error: --quantize-text-encoder: give --quantize nf4, fp4, int8 or fp8 too"),
    (("--low-bits", "float8-e5m2", "--quantize-text-encoder"), "error: --quantize-text-encoder: give --quantize"),
    (("--quantize", "q4"), "error: --quantize: unknown value 'q4'; choose from nf4, fp4, int8, fp8"),
])
def test_refusals_on_this_cpu(cli, tiny_family, tmp_path, args, message):
    line = _refused(cli, tmp_path, "-m", tiny_family("zimage"), *args, "a cat")
    assert line.startswith(message)


def test_refused_for_files_and_families_that_cannot_take_it(cli, tiny_model, tiny_flux, tmp_path):
    from sdcli.models.tiny_flux import write_tiny_flux_files

    assert _refused(cli, tmp_path, "-m", tiny_model, "--quantize", "nf4", "a cat").startswith(
        "error: --quantize: Stable Diffusion 1.x models are not stored in low bits by sdcli; it applies to Flux.1 dev")
    assert _refused(cli, tmp_path, "-m", tiny_model, "--low-bits", "int8", "a cat").startswith(
        "error: --low-bits: Stable Diffusion 1.x models are not stored in low bits by sdcli")
    files = {layout: write_tiny_flux_files(tmp_path / layout / f"flux1-dev.{suffix}", "flux-dev", 0, layout, qtype)
             for layout, suffix, qtype in (("bfl", "safetensors", "F16"), ("gguf", "gguf", "Q8_0"))}
    gguf, single = files["gguf"]["transformer"], files["bfl"]["transformer"]

    def parts(folder: Path) -> tuple[str, ...]:
        return ("--text-encoder", str(folder / "clip_l.safetensors"), "--text-encoder",
                str(folder / "t5xxl.safetensors"), "--vae", str(folder / "ae.safetensors"))

    assert _refused(cli, tmp_path, "-m", gguf, *parts(gguf.parent), "--quantize", "nf4", "a cat") == (
        "error: --quantize: flux1-dev.gguf is a GGUF file, stored in low bits already; leave --quantize out")
    assert _refused(cli, tmp_path, "-m", single, *parts(single.parent), "--quantize", "int8", "a cat") == (
        "error: --quantize: flux1-dev.safetensors is a single file; quantized loading takes diffusers folders "
        "(--low-bits float8-e4m3fn stores a single file's diffusion model in fp8)")


def test_infotext_writes_the_storage_label_and_reads_it_back():
    request = with_defaults(GenerationRequest(prompt="a cat", seed=1))
    for given, label in (("nf4", "bnb-nf4"), ("NF4", "bnb-nf4"), ("fp4", "bnb-fp4"), ("int8", "bnb-int8"),
                         ("fp8", "torchao-float8wo"), ("bnb-nf4 (fp16 LoRA)", "bnb-nf4 (fp16 LoRA)")):
        params = _params(dataclasses.replace(request, low_bits=given))
        assert params["Diffusion in Low Bits"] == label and "Quantize text encoder" not in params
    both = _params(dataclasses.replace(request, low_bits="fp8", quantize_text_encoder=True))
    assert both["Quantize text encoder"] == "True"
    text = ("a cat\nSteps: 8, Sampler: Euler, CFG scale: 1, Seed: 1, Size: 64x64, Diffusion in Low Bits: bnb-nf4, "
            "Quantize text encoder: True")
    prompt, negative, parsed = parse_infotext(text)
    read, ignored, given = request_from_infotext(ImageMetadata(Path("i.png"), prompt, negative, parsed, text, None))
    assert (read.low_bits, read.quantize_text_encoder, ignored) == ("bnb-nf4", True, [])
    assert {"low_bits", "quantize_text_encoder"} <= given


def test_prompt_file_keys_and_the_xyz_axis():
    from sdcli.batch.parse import parse_file
    from sdcli.batch.xyz import cell_request, parse_axis

    lines = "--prompt a --quantize nf4 --quantize_text_encoder true\n--prompt b --forge_unet_storage_dtype bnb-int8\n"

    def parse(tmp: Path):
        file = tmp / "p.txt"
        file.write_text(lines, encoding="utf-8")
        return parse_file(file, "auto", GenerationRequest(prompt=""), None)

    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        first, second = parse(Path(tmp))
    assert (first.request.low_bits, first.request.quantize_text_encoder) == ("nf4", True)
    assert (second.request.low_bits, second.request.quantize_text_encoder) == ("bnb-int8", False)
    axis = parse_axis("--x", "Diffusion in Low Bits: float8-e4m3fn, nf4")
    assert [cell_request(GenerationRequest(prompt="a"), (axis,), (i,)).low_bits for i in (0, 1)] == [
        "float8-e4m3fn", "nf4"]


def test_prompt_file_refusals_name_the_key_given(cli, tiny_family, tmp_path):
    prompts = tmp_path / "p.txt"
    prompts.write_text('--prompt "a cat" --low-bits nf4\n--prompt "a dog" --quantize nf4\n', encoding="utf-8")
    result = cli("batch", prompts, "-m", tiny_family("zimage"), *RUN, "-o", tmp_path / "out")
    assert result.exit_code == 2, result.stderr
    assert f"{prompts}:1: --low-bits: bnb-nf4 needs a CUDA GPU" in result.stderr
    assert f"{prompts}:2: --quantize: nf4 needs a CUDA GPU" in result.stderr
    assert not (tmp_path / "out").exists()


def test_xyz_cell_is_refused_before_anything_runs(cli, tiny_family, tmp_path):
    out = tmp_path / "plot"
    result = cli("xyz", "-m", tiny_family("zimage"), *RUN, "--x", "Diffusion in Low Bits: float8-e4m3fn, nf4",
                 "-o", out, "a cat")
    assert result.exit_code == 2, result.stderr
    assert "nf4 needs a CUDA GPU" in result.stderr and not list(out.rglob("*.png"))


def test_webui_api_override_settings(tiny_family, tiny_family_pipe):
    from fastapi.testclient import TestClient

    from sdcli.models.runtime import RuntimeOptions
    from sdcli.server.app import Limits, create_app
    from sdcli.server.engine import Engine

    zimage = tiny_family("zimage")
    engine = Engine.from_specs([str(zimage)], RuntimeOptions(), load=lambda ref, plan: tiny_family_pipe("zimage"))
    engine.current = engine.models[0]
    client = TestClient(create_app(engine, limits=Limits(max_body_bytes=1 << 20, max_pixels=64 * 64, max_images=4)))
    payload = {"prompt": "a cat", "width": 32, "height": 32, "seed": 3, "steps": 1}
    answer = client.post("/sdapi/v1/txt2img",
                         json={**payload, "override_settings": {"forge_unet_storage_dtype": "bnb-nf4"}})
    assert answer.status_code == 422 and answer.json()["detail"].startswith(
        "override_settings.forge_unet_storage_dtype: bnb-nf4 needs a CUDA GPU"), answer.text
    answer = client.post("/sdapi/v1/txt2img",
                         json={**payload, "override_settings": {"forge_unet_storage_dtype": "Automatic"}})
    assert answer.status_code == 200, answer.text


def test_webui_api_override_settings_loads_that_storage(cli, tiny_family, tmp_path):
    """The server once loaded the served model as stored whatever override_settings said, and recorded the override:
    an image labelled float8-e4m3fn made in full precision. Its image is the CLI's with --low-bits now."""
    import base64
    import io
    import json

    import numpy as np
    from fastapi.testclient import TestClient
    from PIL import Image

    from sdcli.models.runtime import RuntimeOptions
    from sdcli.server.app import Limits, create_app
    from sdcli.server.engine import Engine

    zimage = tiny_family("zimage")
    client = TestClient(create_app(Engine.from_specs([str(zimage)], RuntimeOptions()),
                                   limits=Limits(max_body_bytes=1 << 20, max_pixels=64 * 64, max_images=4)))
    payload = {"prompt": "a cat", "width": 32, "height": 32, "seed": 3, "steps": 2}

    def served(storage: str) -> tuple[np.ndarray, str]:
        answer = client.post("/sdapi/v1/txt2img",
                             json={**payload, "override_settings": {"forge_unet_storage_dtype": storage}})
        assert answer.status_code == 200, answer.text
        image = Image.open(io.BytesIO(base64.b64decode(answer.json()["images"][0])))
        return np.asarray(image, dtype=np.int16), json.loads(answer.json()["info"])["infotexts"][0]

    def made(*args: str) -> np.ndarray:
        out = tmp_path / str(len(args))
        result = cli("txt2img", "-m", zimage, "--steps", "2", "-W", "32", "-H", "32", "--seed", "3", "-o", out, *args,
                     "a cat")
        assert result.exit_code == 0, result.stderr
        (png,) = out.glob("*.png")
        return np.asarray(Image.open(png), dtype=np.int16)

    low, text = served("float8-e4m3fn")
    assert "Diffusion in Low Bits: float8-e4m3fn" in text
    assert np.array_equal(low, made("--low-bits", "float8-e4m3fn"))
    full, text = served("Automatic")  # the next request without it: the model as stored again
    assert "Diffusion in Low Bits" not in text and np.array_equal(full, made())
    assert not np.array_equal(low, full)


def test_xyz_axis_loads_each_storage(cli, tiny_family, tmp_path):
    import numpy as np
    from PIL import Image

    from sdcli.io.metadata import read_infotext

    out = tmp_path / "plot"
    result = cli("xyz", "-m", tiny_family("zimage"), "--steps", "2", "-W", "32", "-H", "32", "--seed", "3",
                 "--x", "Diffusion in Low Bits: Automatic, float8-e4m3fn", "-o", out, "a cat")
    assert result.exit_code == 0, result.stderr
    cells = sorted(p for p in out.rglob("*.png") if "grid" not in p.name)
    texts = [read_infotext(p) for p in cells]
    assert ["Diffusion in Low Bits: float8-e4m3fn" in t for t in texts] == [False, True]
    first, second = (np.asarray(Image.open(p), dtype=np.int16) for p in cells)
    assert not np.array_equal(first, second)  # the second cell's transformer is stored in fp8


def test_prompt_file_lines_load_their_own_storage(cli, tiny_family, tmp_path):
    import numpy as np
    from PIL import Image

    from sdcli.io.metadata import read_infotext

    prompts = tmp_path / "p.txt"
    line = '--prompt "a cat" --seed 3'
    prompts.write_text(f"{line}\n{line} --low_bits float8-e4m3fn\n{line}\n", encoding="utf-8")
    out = tmp_path / "batch"
    result = cli("batch", prompts, "-m", tiny_family("zimage"), "--steps", "2", "-W", "32", "-H", "32", "--seed", "3",
                 "-o", out)
    assert result.exit_code == 0, result.stderr
    cells = sorted(out.glob("*.png"))  # numbered in file order
    assert ["Diffusion in Low Bits: float8-e4m3fn" in read_infotext(p) for p in cells] == [False, True, False]
    pixels = [np.asarray(Image.open(p), dtype=np.int16) for p in cells]
    assert not np.array_equal(pixels[0], pixels[1]) and np.array_equal(pixels[0], pixels[2])


def test_sd3_takes_low_bits_storage(cli, tiny_family, tmp_path):
    import numpy as np
    from PIL import Image

    from sdcli.io.metadata import read_infotext

    def run(name, *args):
        out = tmp_path / name
        result = cli("txt2img", "-m", tiny_family("sd3"), "--steps", "2", "-W", "32", "-H", "32", "--seed", "3", "-o",
                     out, *args, "a cat")
        assert result.exit_code == 0, result.stderr
        (png,) = out.glob("*.png")
        return np.asarray(Image.open(png), dtype=np.int16), read_infotext(png)

    full, _ = run("full")
    low, text = run("low", "--low-bits", "float8-e4m3fn")
    assert "Diffusion in Low Bits: float8-e4m3fn" in text and not np.array_equal(full, low)
    assert np.abs(full - low).mean() < 20


def test_replay_keeps_the_storage_and_low_bits_overrides_it(cli, tiny_family, tmp_path):
    from sdcli.io.metadata import read_infotext

    model = tiny_family("zimage")
    result = cli("txt2img", "-m", model, "--steps", "2", "-W", "32", "-H", "32", "--seed", "3", "--low-bits",
                 "float8-e5m2", "-o", tmp_path / "a", "a cat")
    assert result.exit_code == 0, result.stderr
    (image,) = (tmp_path / "a").glob("*.png")
    for args, kept in (((), True), (("--low-bits", "automatic"), False)):
        out = tmp_path / f"r{len(args)}"
        result = cli("replay", image, "-m", model, *args, "-o", out)
        assert result.exit_code == 0, result.stderr
        (again,) = out.glob("*.png")
        assert ("Diffusion in Low Bits: float8-e5m2" in read_infotext(again)) is kept


def test_webui_api_options_set_the_storage_of_later_requests(tiny_family):
    """POST /sdapi/v1/options forge_unet_storage_dtype (Forge's "Diffusion in Low Bits" setting) stores every later
    request's model so, until set back to Automatic; a request's override_settings still win; a bad name: 422."""
    import base64
    import io
    import json

    import numpy as np
    from fastapi.testclient import TestClient
    from PIL import Image

    from sdcli.models.runtime import RuntimeOptions
    from sdcli.server.app import Limits, create_app
    from sdcli.server.engine import Engine

    client = TestClient(create_app(Engine.from_specs([str(tiny_family("zimage"))], RuntimeOptions()),
                                   limits=Limits(max_body_bytes=1 << 20, max_pixels=64 * 64, max_images=4)))
    payload = {"prompt": "a cat", "width": 32, "height": 32, "seed": 3, "steps": 2}

    def served(**extra) -> tuple[np.ndarray, str]:
        answer = client.post("/sdapi/v1/txt2img", json={**payload, **extra})
        assert answer.status_code == 200, answer.text
        image = Image.open(io.BytesIO(base64.b64decode(answer.json()["images"][0])))
        return np.asarray(image, dtype=np.int16), json.loads(answer.json()["info"])["infotexts"][0]

    full, _ = served()
    assert client.post("/sdapi/v1/options", json={"forge_unet_storage_dtype": "float8-e4m3fn"}).status_code == 200
    assert client.get("/sdapi/v1/options").json()["forge_unet_storage_dtype"] == "float8-e4m3fn"
    low, text = served()
    assert "Diffusion in Low Bits: float8-e4m3fn" in text and not np.array_equal(low, full)
    again, text = served(override_settings={"forge_unet_storage_dtype": "Automatic"})
    assert "Diffusion in Low Bits" not in text and np.array_equal(again, full)
    bad = client.post("/sdapi/v1/options", json={"forge_unet_storage_dtype": "fp3"})
    assert bad.status_code == 422 and "forge_unet_storage_dtype" in bad.text
    assert client.post("/sdapi/v1/options", json={"forge_unet_storage_dtype": "Automatic"}).status_code == 200
    assert np.array_equal(served()[0], full)
