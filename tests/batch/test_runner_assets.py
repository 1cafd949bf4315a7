"""LoRAs in a batch: per-line <lora:> tags on one loaded pipeline, checked before anything loads."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from sdcli.batch.parse import BatchFileError
from sdcli.io.metadata import parse_infotext, read_infotext
from sdcli.models.assets import AssetOptions
from sdcli.models.lora import apply_loras
from tests.batch.test_runner import batch

pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.fixture
def pipe(tiny_pipe):
    yield tiny_pipe
    apply_loras(tiny_pipe, [])  # the session pipe goes back without LoRAs


def lines_params(folder):
    return [parse_infotext(read_infotext(p))[2] for p in sorted(folder.glob("*.png"))]


def test_loras_change_between_lines_without_reloading(tmp_path, tiny_model, pipe, models_dir):
    prompts = ["a cat <lora:detail:1>", "a cat", "a cat <lora:painterly:0.7>", "a cat <lora:detail:1>"]
    text = "".join(json.dumps({"prompt": p, "seed": 7}) + "\n" for p in prompts)
    loads: list[str] = []
    stats, _ = batch(tmp_path, tiny_model, pipe, text, loads=loads, fmt="jsonl",
                     assets=AssetOptions(models_dir=str(models_dir)))
    assert stats.done == 4 and stats.failed == 0
    assert len(loads) == 1  # one base model load for every LoRA change
    params = lines_params(tmp_path / "out")
    assert [p.get("Lora hashes", "").split(":")[0] for p in params] == ["detail", "", "painterly", "detail"]
    assert [p["Seed"] for p in params] == ["7"] * 4
    images = [np.asarray(Image.open(p)) for p in sorted((tmp_path / "out").glob("*.png"))]
    assert np.array_equal(images[0], images[3])  # the same LoRA again: the same pixels
    assert not np.array_equal(images[0], images[1]) and not np.array_equal(images[1], images[2])
    plain, _ = batch(tmp_path, tiny_model, pipe, '{"prompt": "a cat", "seed": 7}\n', out="plain", fmt="jsonl")
    assert np.array_equal(np.asarray(Image.open(next((tmp_path / "plain").glob("*.png")))), images[1])


def test_unknown_lora_in_a_line_fails_before_loading(tmp_path, tiny_model, pipe, models_dir):
    loads: list[str] = []
    with pytest.raises(BatchFileError, match=r"prompts\.txt:2: prompt: <lora:detial>: no lora named 'detial'"):
        batch(tmp_path, tiny_model, pipe, "a cat\na dog <lora:detial:1>\n", loads=loads,
              assets=AssetOptions(models_dir=str(models_dir)))
    assert loads == [] and not (tmp_path / "out").exists()
