"""--quantize loads and generates for real, on this CPU (tests/quant_cpu.py: bitsandbytes and torchao installed,
marker `quant`, `make test-quant`): each flow family's tiny model with nf4, int8 and fp8, its transformer and big
text encoder quantized by the mode's backend (and nothing else), its image near the unquantized one, the infotext
recording Forge's "Diffusion in Low Bits" value, replay making the same image; LoRAs on quantized models, the modes
of a loaded model (img2img, inpaint, hires), an X/Y/Z axis of storages, and no library chatter on stderr."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from sdcli.io.metadata import read_infotext
from sdcli.request.storage import QUANTIZE
from tests.quant_cpu import QUANT, quant_on_cpu  # noqa: F401 (the fixture)

pytestmark = [*QUANT, pytest.mark.usefixtures("quant_on_cpu")]
RUN = ("--device", "cpu", "--steps", "4", "-W", "64", "-H", "64", "--seed", "7")  # CPU on a GPU machine too
FAMILIES = ("flux-dev", "zimage", "qwen-image", "flux2-klein", "chroma", "sd3")
# What a quantized torch.nn.Linear becomes: bitsandbytes' layer and parameter classes; torchao keeps the Linear and
# makes its weight a tensor subclass.
QUANTIZED = {"nf4": ("Linear4bit", "Params4bit"), "fp4": ("Linear4bit", "Params4bit"),
             "int8": ("Linear8bitLt", "Int8Params"), "fp8": ("Linear", "Float8Tensor")}
# Mean |difference| (levels of 255) from the unquantized image, 64 px, 4 steps, fp32, text encoder quantized too.
# Measured on the tiny models with bitsandbytes 0.50.2 and torchao 0.18.0: nf4 1.9-4.9 (Chroma's, its T5 in
# nf4, the most), fp4 2.3-5.9, int8 0.12-0.32, fp8 0.42-0.77. The bounds leave 1.5-2x room.
NEAR = {"nf4": 7.5, "fp4": 9.0, "int8": 0.6, "fp8": 1.2}
_FULL: dict[tuple[str, tuple[str, ...]], np.ndarray] = {}


def _run(cli, out, model, *args, command="txt2img"):
    result = cli(command, "-m", model, *RUN, "-o", out, *args, "a red cube")
    assert result.exit_code == 0, result.stderr
    (png,) = out.glob("*.png")
    return np.asarray(Image.open(png), dtype=np.int16), png


def _full(cli, tmp_path, model, arch, *args):
    """The unquantized image of `arch` with `args` (made once a session)."""
    key = (arch, tuple(str(a) for a in args))
    if key not in _FULL:
        _FULL[key] = _run(cli, tmp_path / "full", model, *args)[0]
    return _FULL[key]


def _linears(module: torch.nn.Module) -> list[tuple[str, str]]:
    """(layer class, weight class) of each Linear layer."""
    return [(type(m).__name__, type(m.weight).__name__) for m in module.modules() if isinstance(m, torch.nn.Linear)]


@pytest.fixture
def loaded_models(monkeypatch):
    """The models the job pipeline loads during the test (models.loader.load_model's results), in order."""
    from sdcli.models import loader

    models, load = [], loader.load_model
    monkeypatch.setattr(loader, "load_model", lambda ref, plan: models.append(load(ref, plan)) or models[-1])
    return models


@pytest.mark.parametrize("mode", ["nf4", "int8", "fp8"])
@pytest.mark.parametrize("arch", FAMILIES)
def test_each_family_loads_quantized_and_generates(cli, tiny_family, loaded_models, caplog, tmp_path, arch, mode):
    model, row = tiny_family(arch), QUANTIZE[mode]
    full = _full(cli, tmp_path, model, arch)
    low, png = _run(cli, tmp_path / "low", model, "--quantize", mode, "--quantize-text-encoder")
    # 1. What loaded: the transformer's Linear layers all quantized, the big text encoder's nearly all
    #    (transformers keeps T5's `wo` in fp32 under bitsandbytes), the VAE and the CLIP encoders as stored.
    loaded = loaded_models[-1]
    family, pipe, quantized = loaded.family, loaded.pipe, QUANTIZED[mode]
    assert set(_linears(family.network_module(pipe))) == {quantized}
    for name in family.big_text_encoders:
        kinds = _linears(getattr(pipe, name))
        assert kinds.count(quantized) >= 0.8 * len(kinds), (name, kinds)
    for name, part in pipe.components.items():
        if isinstance(part, torch.nn.Module) and name not in (family.network_component, *family.big_text_encoders):
            assert set(_linears(part)) <= {("Linear", "Parameter")}, name
    # 2. The image: near the unquantized one, not the same; the infotext records the mode as Forge does.
    difference = np.abs(full - low).mean()
    assert 0 < difference < NEAR[mode], difference
    text = read_infotext(png)
    assert f"Diffusion in Low Bits: {row.label}" in text and "Quantize text encoder: True" in text
    # 3. Replay reads the storage back: the same image, the same record.
    result = cli("replay", png, "-m", model, "--device", "cpu", "-o", tmp_path / "replay")
    assert result.exit_code == 0, result.stderr
    (replayed,) = (tmp_path / "replay").glob("*.png")
    assert np.array_equal(low, np.asarray(Image.open(replayed), dtype=np.int16))
    assert f"Diffusion in Low Bits: {row.label}" in read_infotext(replayed)
    # 4. The backends said nothing on sdcli's stderr (LLM.int8 logs a dtype note on every matmul).
    assert not [r.getMessage() for r in caplog.records if r.name.startswith(("bitsandbytes", "torchao"))]


def test_fp4_and_the_compute_dtype_of_a_gpu(cli, tiny_family, tmp_path):
    """Forge's bnb-fp4, and nf4/int8 computed in bf16 (the flow families' dtype on CUDA) against bf16 unquantized."""
    model = tiny_family("flux-dev")
    low, _ = _run(cli, tmp_path / "fp4", model, "--quantize", "fp4")
    assert 0 < np.abs(_full(cli, tmp_path, model, "flux-dev") - low).mean() < NEAR["fp4"]
    full = _full(cli, tmp_path, model, "flux-dev", "--dtype", "bf16")
    for mode in ("nf4", "int8"):
        low, png = _run(cli, tmp_path / f"bf16-{mode}", model, "--dtype", "bf16", "--quantize", mode)
        assert 0 < np.abs(full - low).mean() < NEAR[mode] + 0.5  # bf16 rounding on top: int8 0.60 measured
        assert "Diffusion in Low Bits: " in read_infotext(png)


@pytest.mark.parametrize("arch", ["flux-dev", "sd3"])
def test_a_lora_with_t5_layers_on_a_quantized_t5(cli, tiny_family, loaded_models, tmp_path, arch):
    """The T5 part of a LoRA (sdcli's load_t5) into a bitsandbytes T5: it once cast the whole encoder, which
    bitsandbytes refuses ("You cannot cast a bitsandbytes model in a new `dtype`")."""
    from sdcli.models.tiny_flow_lora import write_tiny_flow_lora
    from sdcli.models.tiny_flux_lora import write_tiny_flux_lora

    model, lora = tiny_family(arch), tmp_path / "t5.safetensors"
    if arch == "flux-dev":
        write_tiny_flux_lora(model, lora, fmt="kohya", t5=True)
    else:
        write_tiny_flow_lora(model, lora, "sd3", fmt="kohya", text_encoders=True)
    with_lora = ("--lora", f"{lora}:1")
    full = _full(cli, tmp_path, model, arch, *with_lora)
    quantized = ("--quantize", "nf4", "--quantize-text-encoder")
    plain, _ = _run(cli, tmp_path / "plain", model, *quantized)
    low, png = _run(cli, tmp_path / "lora", model, *quantized, *with_lora)
    t5 = getattr(loaded_models[-1].pipe, loaded_models[-1].family.big_text_encoders[0])
    adapted = [m for m in t5.modules() if hasattr(m, "lora_A") and type(m.base_layer.weight).__name__ == "Params4bit"]
    assert adapted  # peft's LoRA layers around bitsandbytes' 4-bit ones
    assert np.abs(low - plain).mean() > 10  # the LoRA counts
    assert np.abs(low - full).mean() < NEAR["nf4"]  # as it does on the unquantized model
    assert "Lora hashes" in read_infotext(png)


def test_loras_come_and_go_on_a_quantized_model(cli, tiny_family, tmp_path):
    """A prompt file's LoRA tags on one quantized model: removed, the image is the plain one again, bit for bit."""
    from sdcli.models.tiny_flux_lora import write_tiny_flux_lora

    model, models = tiny_family("flux-dev"), tmp_path / "models"
    write_tiny_flux_lora(model, models / "Lora" / "t.safetensors", fmt="kohya", t5=True)
    lines = tmp_path / "p.txt"
    lines.write_text("".join(f'--prompt "a red cube{tag}" --seed 7\n' for tag in
                             (" <lora:t:1>", "", " <lora:t:1>", " <lora:t:0.5>")))
    quantized = ("--quantize", "int8", "--quantize-text-encoder")
    result = cli("batch", lines, "-m", model, "--models-dir", models, *RUN[:-2], "-o", tmp_path / "b", *quantized)
    assert result.exit_code == 0, result.stderr
    images = [np.asarray(Image.open(p)) for p in sorted((tmp_path / "b").glob("0000*.png"))]
    plain, _ = _run(cli, tmp_path / "plain", model, *quantized)
    assert np.array_equal(images[1], plain) and np.array_equal(images[0], images[2])
    assert not np.array_equal(images[0], plain) and not np.array_equal(images[3], images[0])


@pytest.mark.parametrize("arch", ["flux-dev", "zimage"])
def test_img2img_inpaint_and_hires_share_the_quantized_weights(cli, tiny_family, tmp_path, arch):
    """The other modes' pipelines (LoadedModel.for_mode: from_pipe, the quantized parts put back as they are)."""
    model, image, mask = tiny_family(arch), tmp_path / "in.png", tmp_path / "mask.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(image)
    square = np.zeros((64, 64), np.uint8)
    square[16:48, 16:48] = 255
    Image.fromarray(square).save(mask)
    quantized = ("--quantize", "nf4", "--quantize-text-encoder")
    for command, args in (("img2img", ("-i", image, "--strength", "0.6")), ("inpaint", ("-i", image, "--mask", mask)),
                          ("txt2img", ("--hires", "--hires-steps", "2", "--hires-upscaler", "Lanczos"))):
        full, _ = _run(cli, tmp_path / f"{command}-full", model, *args, command=command)
        low, png = _run(cli, tmp_path / f"{command}-low", model, *args, *quantized, command=command)
        assert 0 < np.abs(full - low).mean() < NEAR["nf4"], command
        assert "Diffusion in Low Bits: bnb-nf4" in read_infotext(png)


def test_an_xyz_axis_of_storages_reloads_for_each(cli, tiny_family, tmp_path):
    model = tiny_family("zimage")
    result = cli("xyz", "a red cube", "-m", model, *RUN, "-o", tmp_path / "x",
                 "--x", "Diffusion in Low Bits: Automatic, nf4, fp8, Automatic")
    assert result.exit_code == 0, result.stderr
    cells = [np.asarray(Image.open(p), dtype=np.int16) for p in sorted((tmp_path / "x").glob("0000*.png"))]
    full = _full(cli, tmp_path, model, "zimage")
    nf4, _ = _run(cli, tmp_path / "nf4", model, "--quantize", "nf4")
    assert np.array_equal(cells[0], full) and np.array_equal(cells[3], full)
    assert np.array_equal(cells[1], nf4) and 0 < np.abs(cells[2] - full).mean() < NEAR["fp8"]



def test_the_webui_api_loads_the_storage_it_is_given(cli, tiny_family, tmp_path):
    """override_settings.forge_unet_storage_dtype (Forge's setting) on `sdcli serve`: the CLI's quantized image."""
    import base64
    import io
    import json

    from fastapi.testclient import TestClient

    from sdcli.models.runtime import RuntimeOptions
    from sdcli.server.app import Limits, create_app
    from sdcli.server.engine import Engine

    model = tiny_family("zimage")
    client = TestClient(create_app(Engine.from_specs([str(model)], RuntimeOptions(device="cpu")),
                                   limits=Limits(max_body_bytes=1 << 20, max_pixels=64 * 64, max_images=4)))
    payload = {"prompt": "a red cube", "width": 64, "height": 64, "seed": 7, "steps": 4}
    for storage, mode in (("bnb-nf4", "nf4"), ("torchao-float8wo", "fp8")):
        answer = client.post("/sdapi/v1/txt2img",
                             json={**payload, "override_settings": {"forge_unet_storage_dtype": storage}})
        assert answer.status_code == 200, answer.text
        served = Image.open(io.BytesIO(base64.b64decode(answer.json()["images"][0])))
        assert f"Diffusion in Low Bits: {storage}" in json.loads(answer.json()["info"])["infotexts"][0]
        made, _ = _run(cli, tmp_path / mode, model, "--quantize", mode)
        assert np.array_equal(np.asarray(served, dtype=np.int16), made)



@pytest.mark.parametrize("mode", ["nf4", "int8", "fp8"])
def test_the_offload_planner_counts_the_bytes_as_stored(tiny_family, mode):
    """placement.part_bytes (what --cpu-offload auto weighs) counts a quantized Linear's weight as it is stored:
    nf4 4 bits and a float32 scale a block of 64 (4.5 bits), int8 a byte, torchao's fp8 a byte and a float32
    scale a row. torchao's Float8Tensor reports the compute dtype (bf16 on CUDA: 2 bytes), which was counted, and
    the nf4 blocks' scales were not."""
    from sdcli.models.loader import load_model
    from sdcli.models.placement import part_bytes
    from sdcli.models.resolve import ModelRef
    from sdcli.models.runtime import RuntimeOptions, plan_runtime

    plan = plan_runtime(RuntimeOptions(device="cpu", dtype="bf16"), cuda=False, mps=False, xformers=False)
    ref = ModelRef(tiny_family("flux-dev"), "flux-dev", storage=QUANTIZE[mode].label,
                   storage_encoders=("text_encoder_2",))
    pipe = load_model(ref, plan).pipe

    def expected(part: torch.nn.Module) -> int:
        quantized = {f"{name}.weight": m for name, m in part.named_modules() if _linears(m) == [QUANTIZED[mode]]}
        size = 0
        for name, tensor in (*part.named_parameters(), *part.named_buffers()):
            if (layer := quantized.get(name)) is None:
                size += tensor.numel() * tensor.element_size()
                continue
            weights = layer.in_features * layer.out_features
            size += {"nf4": weights // 2 + weights // 64 * 4, "int8": weights,
                     "fp8": weights + layer.out_features * 4}[mode]
        assert quantized
        return size

    measured = part_bytes(pipe)
    assert measured["transformer"] == expected(pipe.transformer)
    assert measured["text_encoder_2"] == expected(pipe.text_encoder_2)
