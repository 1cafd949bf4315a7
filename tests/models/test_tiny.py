import hashlib
import time

import pytest

from sdcli.errors import UsageError
from sdcli.models.tiny import build_tiny, folder_bytes


def _digest(folder):
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_layout_size_and_speed(tmp_path):
    start = time.monotonic()
    out = build_tiny(tmp_path / "m")
    elapsed = time.monotonic() - start
    for part in ("model_index.json", "unet/config.json", "unet/diffusion_pytorch_model.safetensors",
                 "vae/diffusion_pytorch_model.safetensors", "text_encoder/model.safetensors",
                 "tokenizer/tokenizer_config.json", "scheduler/scheduler_config.json"):
        assert (out / part).is_file(), part
    assert not list(out.rglob("*.bin")), "no pickle weights"
    assert folder_bytes(out) < 20 * 1024 * 1024
    assert elapsed < 30, f"took {elapsed:.1f}s"


def test_same_seed_same_bytes_other_seed_other_weights(tmp_path, tiny_model):
    again = build_tiny(tmp_path / "again")
    other = build_tiny(tmp_path / "other", seed=1)
    assert _digest(again) == _digest(tiny_model)
    unet = "unet/diffusion_pytorch_model.safetensors"
    assert _digest(other)[unet] != _digest(tiny_model)[unet]


def test_tokenizer_builds_offline_and_tokenizes(tiny_model):
    from transformers import CLIPTokenizer

    tok = CLIPTokenizer.from_pretrained(tiny_model / "tokenizer", local_files_only=True)
    ids = tok("a cat").input_ids
    assert ids[0] == tok.bos_token_id and ids[-1] == tok.eos_token_id and len(ids) > 3


def test_refuses_non_empty_target_and_unknown_arch(tmp_path):
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("keep me")
    with pytest.raises(UsageError, match="not an empty folder"):
        build_tiny(tmp_path / "full")
    assert (tmp_path / "full" / "x").read_text() == "keep me"
    with pytest.raises(UsageError, match="--arch: unknown architecture 'sd9'"):
        build_tiny(tmp_path / "new", arch="sd9")
    assert not (tmp_path / "new").exists()


def test_inpainting_arch_is_the_same_builder_with_a_9_channel_unet(tiny_model, tiny_inpaint_model):
    import json

    plain = json.loads((tiny_model / "unet" / "config.json").read_text())
    inpaint = json.loads((tiny_inpaint_model / "unet" / "config.json").read_text())
    assert (plain["in_channels"], inpaint["in_channels"]) == (4, 9)
    assert {k: v for k, v in plain.items() if k != "in_channels"} == \
        {k: v for k, v in inpaint.items() if k != "in_channels"}
    model_index = json.loads((tiny_inpaint_model / "model_index.json").read_text())
    assert model_index["_class_name"] == "StableDiffusionInpaintPipeline"


def test_sd2_arch_is_v_prediction_and_every_sampler_keeps_it(tmp_path):
    import numpy as np

    from sdcli.job.generate import run
    from sdcli.models.loader import load_model
    from sdcli.models.resolve import ModelRef
    from sdcli.models.runtime import RuntimeOptions, plan_runtime
    from sdcli.request.generation import GenerationRequest, validate

    model = build_tiny(tmp_path / "sd2", arch="sd2")
    pipe = load_model(ModelRef(model, "sd2"), plan_runtime(RuntimeOptions(), cuda=False, mps=False,
                                                               xformers=False))
    assert pipe.pipe.unet.config.use_linear_projection and pipe.pipe.scheduler.config.prediction_type == "v_prediction"
    images = []
    for sampler in ("Euler", "DPM++ 2M", "DDIM"):
        request = GenerationRequest(prompt="a hill", steps=3, seed=1, width=32, height=32, sampler=sampler)
        images.append(np.asarray(next(run(request, pipe, validate(request), model_name="sd2",
                                          model_hash="0")).image, dtype=np.int16))
        assert pipe.pipe.scheduler.config.prediction_type == "v_prediction", sampler
    assert images[0].std() > 5 and not np.array_equal(images[0], images[1])


def test_sd2_inpainting_arch(tmp_path):
    import json

    model = build_tiny(tmp_path / "sd2i", arch="sd2-inpaint")
    assert json.loads((model / "unet" / "config.json").read_text())["in_channels"] == 9
    assert json.loads((model / "scheduler" / "scheduler_config.json").read_text())["prediction_type"] == "v_prediction"


def test_tiny_sdxl_and_refiner_have_random_norms_and_the_real_layout(tiny_xl):
    import json

    import torch
    from safetensors.torch import load_file

    for key in ("base", "refiner"):
        unet = load_file(tiny_xl[key] / "unet" / "diffusion_pytorch_model.safetensors")
        norms = [v for k, v in unet.items() if ".norm" in k and k.endswith("weight")]
        assert norms and not any(torch.equal(v, torch.ones_like(v)) for v in norms), "norm weights left at 1"
    index = json.loads((tiny_xl["refiner"] / "model_index.json").read_text())
    assert index["text_encoder"] == [None, None] and index["text_encoder_2"][1] == "CLIPTextModelWithProjection"
    config = json.loads((tiny_xl["base"] / "unet" / "config.json").read_text())
    assert (config["addition_embed_type"], config["cross_attention_dim"]) == ("text_time", 32 + 48)


def test_single_file_is_the_same_file_in_every_process(tmp_path):
    """The same arch and seed give the same bytes (safetensors orders header metadata per process)."""
    import hashlib
    import subprocess
    import sys

    digests = set()
    for run in range(3):
        out = tmp_path / f"m{run}.safetensors"
        code = f"from sdcli.models.tiny import build_tiny_single_file as b; b({str(out)!r}, arch='sd1')"
        subprocess.run([sys.executable, "-c", code], check=True, timeout=300)
        digests.add(hashlib.sha256(out.read_bytes()).hexdigest())
    assert len(digests) == 1


def test_tiny_help_names_every_architecture(cli):
    from sdcli.models.tiny import INPAINT_SUFFIX, known_arches

    shown = " ".join(cli("tiny", "--help").stdout.split())
    named = [a for a in known_arches() if not a.endswith(INPAINT_SUFFIX)]
    assert [a for a in named if a not in shown] == []
