"""Batch grouping: a line's --count batches run as one pipeline call, same images as ungrouped."""

import json

import numpy as np
import pytest
from PIL import Image

from sdcli.batch.parse import BatchUnit
from sdcli.batch.plan import group_units
from sdcli.job import generate
from sdcli.request.generation import GenerationRequest
from tests.batch.test_runner import batch

pytestmark = pytest.mark.usefixtures("single_thread")


def unit(number, line, first, seed, size=1, prompt="a", subseed=None, strength=0.0):
    request = GenerationRequest(prompt=prompt, seed=seed, batch_size=size, subseed=subseed, subseed_strength=strength)
    return BatchUnit(number, line, first, request, None)


def test_group_units_merges_only_continuing_units():
    units = [unit(0, 1, 0, 10), unit(1, 1, 1, 11), unit(2, 1, 2, 12),  # one line's --count 3
             unit(3, 2, 3, 13, prompt="b"),                             # another line: never merged
             unit(4, 3, 4, 50), unit(5, 3, 5, 60)]                      # seeds do not continue
    grouped = group_units(units, limit=8)
    assert [(u.first, u.request.batch_size, u.request.seed) for u in grouped] == [
        (0, 3, 10), (3, 1, 13), (4, 1, 50), (5, 1, 60)]
    assert [u.request.batch_size for u in group_units(units[:3], limit=2)] == [2, 1]
    assert len(group_units(units[:3], limit=1)) == 3


def test_grouped_batch_images_equal_ungrouped(tmp_path, tiny_model, tiny_pipe, monkeypatch):
    calls = []
    original = generate.run

    def spy(request, *args, **kwargs):
        calls.append(sum(r.batch_size for r in kwargs.get("group") or [request]))
        return original(request, *args, **kwargs)

    monkeypatch.setattr(generate, "run", spy)
    text = "--prompt 'a harbour' --n_iter 4\n--prompt 'a cat'\n"
    grouped, _ = batch(tmp_path, tiny_model, tiny_pipe, text, out="grouped")
    assert calls == [5]  # the line's 4 batches, and the next line joined (tests/batch/test_joining.py)
    calls.clear()
    single, _ = batch(tmp_path, tiny_model, tiny_pipe, text, out="single", group=1)
    assert calls == [1, 1, 1, 1, 1]
    assert grouped.done == single.done == 5

    def images(folder):
        records = [json.loads(x) for x in (tmp_path / folder / "manifest.jsonl").read_text().splitlines()[1:]]
        return {r["seed"]: np.asarray(Image.open(r["path"]), dtype=np.int16) for r in records}

    a, b = images("grouped"), images("single")
    assert sorted(a) == sorted(b) == [100, 101, 102, 103, 104]
    stacked_a, stacked_b = np.stack([a[s] for s in sorted(a)]), np.stack([b[s] for s in sorted(b)])
    # The batch-size invariance rule (tests/job/test_generate.py): at most one level, almost all equal.
    assert np.abs(stacked_a - stacked_b).max() <= 1
    assert (stacked_a == stacked_b).mean() > 0.999


def test_group_flag_is_checked(tmp_path, tiny_model, tiny_pipe):
    from sdcli.errors import UsageError

    with pytest.raises(UsageError, match="--group: 0 is out of range"):
        batch(tmp_path, tiny_model, tiny_pipe, "x\n", group=0)
