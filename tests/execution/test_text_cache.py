"""Prompt encodings kept across jobs (execution.text_cache): a batch encodes its shared negative prompt once,
and every image is pixel-for-pixel what it is with nothing kept, also when the lines' text-encoder LoRA
weights or embeddings change between them."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from sdcli.execution import text_cache
from sdcli.models.assets import AssetOptions
from sdcli.models.lora import apply_loras
from tests.batch.test_runner import batch

pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.fixture
def pipe(tiny_pipe):
    tiny_pipe.encodings.clear()
    yield tiny_pipe
    apply_loras(tiny_pipe, [])  # the session pipe goes back without LoRAs
    tiny_pipe.encodings.clear()


@pytest.fixture
def forwards(pipe, monkeypatch):
    """The texts of every forward pass of the text encoder, by their first token id after BOS."""
    encoder, calls = pipe.pipe.text_encoder, []
    real = encoder.forward

    def spy(input_ids=None, *args, **kwargs):
        calls.append(tuple(input_ids[0, :4].tolist()))
        return real(input_ids, *args, **kwargs)

    monkeypatch.setattr(encoder, "forward", spy)
    return calls


def images(folder):
    return [np.asarray(Image.open(p)) for p in sorted(folder.glob("*.png"))]


def run(tmp_path, tiny_model, pipe, out, lines, **options):
    text = "".join(json.dumps(line) + "\n" for line in lines)
    stats, _ = batch(tmp_path, tiny_model, pipe, text, out=out, fmt="jsonl", group=1, **options)
    assert stats.done == len(lines) and stats.failed == 0
    return images(tmp_path / out)


def test_a_shared_negative_prompt_is_encoded_once_and_pixels_are_unchanged(tmp_path, tiny_model, pipe, forwards,
                                                                          monkeypatch):
    lines = [{"prompt": f"a cat number {i}", "negative_prompt": "blurry, ugly", "seed": i} for i in range(4)]
    kept = run(tmp_path, tiny_model, pipe, "kept", lines)
    assert len(forwards) == 3 + 1 + 1 + 1  # line 1: "", its prompt, the negative; then each new prompt only
    forwards.clear()
    pipe.encodings.clear()
    monkeypatch.setattr(text_cache, "KEEP", 0)
    fresh = run(tmp_path, tiny_model, pipe, "fresh", lines)
    assert len(forwards) == 3 * 4  # nothing kept: every line encodes all three
    assert len(kept) == len(fresh) == 4
    assert all(np.array_equal(a, b) for a, b in zip(kept, fresh, strict=True))


def test_text_encoder_lora_weights_and_settings_are_part_of_what_is_kept(tmp_path, tiny_model, pipe, models_dir,
                                                                           monkeypatch):
    """The same text under other text-encoder LoRA weights (a LoRA of the text encoder only) or another CLIP
    skip gives its own encoding; one kept from another line would give the wrong pixels."""
    prompts = ["a cat <lora:textonly:1>", "a cat <lora:textonly:0.3>", "a cat", "a cat <lora:textonly:1>",
               "a cat tinyemb", "a cat"]
    lines = [{"prompt": p, "negative_prompt": "blurry", "seed": 3} for p in prompts]
    lines.append({"prompt": "a cat", "negative_prompt": "blurry", "seed": 3, "clip_skip": 2})  # other settings
    assets = AssetOptions(models_dir=str(models_dir))
    kept = run(tmp_path, tiny_model, pipe, "kept", lines, assets=assets)
    monkeypatch.setattr(text_cache, "KEEP", 0)
    pipe.encodings.clear()
    fresh = run(tmp_path, tiny_model, pipe, "fresh", lines, assets=assets)
    assert all(np.array_equal(a, b) for a, b in zip(kept, fresh, strict=True))
    assert not np.array_equal(kept[0], kept[1]) and not np.array_equal(kept[1], kept[2])  # the weights matter
    assert np.array_equal(kept[0], kept[3]) and np.array_equal(kept[2], kept[5])
    assert not np.array_equal(kept[4], kept[5])  # the embedding matters
    assert not np.array_equal(kept[5], kept[6])  # and CLIP skip


def test_the_newest_encodings_stay(tiny_pipe, monkeypatch):
    from sdcli.execution.stages import prompt_encoder
    from sdcli.request.generation import GenerationRequest

    tiny_pipe.encodings.clear()
    monkeypatch.setattr(text_cache, "KEEP", 2)
    encoder = prompt_encoder(tiny_pipe, GenerationRequest(prompt="x"), (32, 32))
    first = encoder.encode("a")
    encoder.encode("b")
    assert encoder.encode("a") is first  # kept, and now the most recent
    encoder.encode("c")  # drops "b", the least recently used
    assert [key[-1] for key in tiny_pipe.encodings] == ["a", "c"]
    tiny_pipe.encodings.clear()

