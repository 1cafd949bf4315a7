"""Joined lines: consecutive prompt-file lines that differ only in prompts and seeds run as one batched call,
each image equal to the one-by-one run's within the batch-size invariance rule, everything per line kept."""

import json
import os
import signal
from dataclasses import dataclass

import numpy as np
import pytest
from PIL import Image

from sdcli.batch.parse import BatchUnit
from sdcli.batch.plan import join_units
from sdcli.io.metadata import read_infotext
from sdcli.job import generate
from sdcli.models.assets import AssetPlan
from sdcli.request.generation import GenerationRequest
from tests.batch.test_runner import FOUR, Recorder, batch, files, items

pytestmark = pytest.mark.usefixtures("single_thread")

# Lines 1-3 join (a second 75-token chunk, AND with a weight and a negative prompt, an own seed); a size change
# and a sampler change begin new calls. `--group 1` runs the seven lines as seven calls.
MIXED = ("--prompt 'a red fox'\n"
         f"--prompt '{'a blue bird on a branch, ' * 14}'\n"
         "--prompt 'a cat AND a dog :0.5' --negative_prompt fog --seed 7\n"
         "--prompt 'a tree' --width 48\n"
         "--prompt 'a house' --width 48 --batch_size 2\n"
         "--prompt 'a boat' --sampler_name 'Euler a'\n"
         "--prompt 'a cloud' --sampler_name 'Euler a'\n")


@pytest.fixture
def calls(monkeypatch):
    """The number of images of each generate.run call."""
    sizes, real = [], generate.run

    def spy(request, *args, **kwargs):
        sizes.append(sum(r.total_images for r in kwargs.get("group") or [request]))
        return real(request, *args, **kwargs)

    monkeypatch.setattr(generate, "run", spy)
    return sizes


def outputs(folder):
    """item -> (pixels, infotext, manifest record without its time and folder) of every done item."""
    found = {}
    for record in items(folder):
        if record["status"] == "done":
            path = record["path"]
            kept = {k: v for k, v in record.items() if k not in ("seconds", "path")}
            found[record["item"]] = (np.asarray(Image.open(path), dtype=np.int16), read_infotext(path),
                                     {**kept, "file": os.path.basename(path)})
    return found


def same_images(a, b):
    """The batch-size invariance rule (tests/job/test_generate.py): no pixel moves more than one level, and
    almost all are equal."""
    return all(np.abs(a[i][0] - b[i][0]).max() <= 1 and (a[i][0] == b[i][0]).mean() > 0.99 for i in a)


def assert_same_outputs(a, b):
    assert sorted(a) == sorted(b)
    assert same_images(a, b)
    assert [a[i][1:] for i in sorted(a)] == [b[i][1:] for i in sorted(b)]  # infotext and manifest record


def unit(line, prompt, seed, **fields):
    return BatchUnit(line, line, line, GenerationRequest(prompt=prompt, seed=seed, **fields), None)


def test_join_units_joins_only_lines_differing_in_prompts_and_seeds():
    units = [unit(0, "a", 1), unit(1, "b", 9, negative_prompt="fog", batch_size=2), unit(2, "c", 3),
             unit(3, "d", 4, width=64), unit(4, "e", 5, width=64),
             unit(5, "f", 6, steps=3), unit(6, "g", 7, sampler="Euler a"), unit(7, "h", 8, cfg_scale=3.0)]
    plans = {}  # no plans: nothing joins
    assert [len(c) for c in join_units(units, plans, 8)] == [1] * 8
    plans = {u.line: _Plan() for u in units}
    assert [[u.line for u in c] for c in join_units(units, plans, 8)] == [[0, 1, 2], [3, 4], [5], [6], [7]]
    assert [[u.line for u in c] for c in join_units(units, plans, 3)] == [[0, 1], [2], [3, 4], [5], [6], [7]]
    assert all(len(c) == 1 for c in join_units(units, plans, 1))
    plans[1] = _Plan(vae="other")  # another add-on set (a LoRA, a VAE): its own call
    assert [[u.line for u in c] for c in join_units(units[:3], plans, 8)] == [[0], [1], [2]]


@dataclass(frozen=True)
class _Plan:
    """A stand-in for a line's JobPlan (join_units compares plans without their request and choice)."""

    request: object = None
    choice: object = None
    control: object = None
    extras: AssetPlan = AssetPlan()
    vae: str = "own"


def test_mixed_prompt_file_joined_equals_one_by_one(tmp_path, tiny_model, tiny_pipe, calls):
    joined, _ = batch(tmp_path, tiny_model, tiny_pipe, MIXED, out="joined")
    assert calls == [3, 3, 2]  # the groups break where the size and the sampler change
    calls.clear()
    single, _ = batch(tmp_path, tiny_model, tiny_pipe, MIXED, out="single", group=1)
    assert calls == [1, 1, 1, 1, 2, 1, 1]
    assert joined.done == single.done == 8
    a, b = outputs(tmp_path / "joined"), outputs(tmp_path / "single")
    assert_same_outputs(a, b)
    assert [a[i][2]["seed"] for i in sorted(a)] == [100, 101, 7, 103, 104, 105, 106, 107]


def test_img2img_and_inpaint_lines_join(tmp_path, tiny_model, tiny_pipe, calls):
    from tests.images import write_inputs

    image, mask = write_inputs(tmp_path, (32, 32))
    text = (f"--prompt 'a red fox' --init_image {image} --denoising_strength 0.6\n"
            f"--prompt 'a blue bird' --init_image {image} --denoising_strength 0.6 --seed 3\n"
            f"--prompt 'a cat' --init_image {image} --mask {mask} --denoising_strength 0.6\n"
            f"--prompt 'a dog' --init_image {image} --mask {mask} --denoising_strength 0.6\n")
    batch(tmp_path, tiny_model, tiny_pipe, text, out="joined")
    assert calls == [2, 2]
    batch(tmp_path, tiny_model, tiny_pipe, text, out="single", group=1)
    assert_same_outputs(outputs(tmp_path / "joined"), outputs(tmp_path / "single"))


def test_the_equality_check_fails_on_a_wrong_seed_in_the_group(tmp_path, tiny_model, tiny_pipe, monkeypatch):
    real = generate.own_batch

    def swapped(request, model, choice, encoder, inputs, seeds, *args, **kwargs):
        return real(request, model, choice, encoder, inputs, seeds[::-1], *args, **kwargs)

    batch(tmp_path, tiny_model, tiny_pipe, FOUR, out="single", group=1)
    monkeypatch.setattr(generate, "own_batch", swapped)
    batch(tmp_path, tiny_model, tiny_pipe, FOUR, out="wrong")
    a, b = outputs(tmp_path / "wrong"), outputs(tmp_path / "single")
    assert [a[i][1:] for i in sorted(a)] == [b[i][1:] for i in sorted(b)]  # the records cannot tell ...
    assert not same_images(a, b)  # ... the pixels do


def test_stopped_in_the_middle_of_a_group_resumes_the_rest(tmp_path, tiny_model, tiny_pipe, calls):
    def ctrl_c(done_so_far, step):
        if done_so_far == 0 and step == 1:
            os.kill(os.getpid(), signal.SIGINT)

    stopped, _ = batch(tmp_path, tiny_model, tiny_pipe, FOUR, out="run", reporter=Recorder(ctrl_c))
    assert stopped.interrupted and stopped.done == 1 and calls == [4]
    calls.clear()
    resumed, _ = batch(tmp_path, tiny_model, tiny_pipe, FOUR, out="run", resume=True, seed=None)
    # The group runs whole again (its batch as uninterrupted); only the items not done are written.
    assert (resumed.done, resumed.skipped, resumed.exit_code) == (3, 1, 0) and calls == [4]
    assert [r["item"] for r in items(tmp_path / "run")] == [0, 1, 2, 3]  # each item recorded once
    batch(tmp_path, tiny_model, tiny_pipe, FOUR, out="full")
    assert files(tmp_path / "run") == files(tmp_path / "full")  # byte for byte, as README's Resume says
    batch(tmp_path, tiny_model, tiny_pipe, FOUR, out="single", group=1)
    assert_same_outputs(outputs(tmp_path / "run"), outputs(tmp_path / "single"))


def test_a_bad_line_fails_only_itself(tmp_path, tiny_model, tiny_pipe, calls, monkeypatch):
    from sdcli.models import assets

    real = assets.encoder_text

    def encoder_text(model, text):
        if "boom" in text:
            raise RuntimeError("the encoder broke (simulated)")
        return real(model, text)

    monkeypatch.setattr(assets, "encoder_text", encoder_text)
    stats, reporter = batch(tmp_path, tiny_model, tiny_pipe, "a red fox\nboom\nb blue bird\n")
    assert calls == [3, 1, 1, 1]  # the joined call, then each line alone
    assert (stats.done, stats.failed, stats.exit_code) == (2, 1, 3)
    assert any("lines 1, 2, 3 failed as one batch (RuntimeError: the encoder broke (simulated))" in n
               for n in reporter.notes)
    records = {r["prompt"]: r for r in items(tmp_path / "out")}
    assert records["boom"]["error"] == "RuntimeError: the encoder broke (simulated)"
    assert records["a red fox"]["status"] == records["b blue bird"]["status"] == "done"
    batch(tmp_path, tiny_model, tiny_pipe, "a red fox\nboom\nb blue bird\n", out="single", group=1)
    assert_same_outputs(outputs(tmp_path / "out"), outputs(tmp_path / "single"))


def test_records_of_joined_lines_are_their_own(tmp_path, tiny_model, tiny_pipe):
    stats, reporter = batch(tmp_path, tiny_model, tiny_pipe, FOUR)
    assert stats.done == 4
    records = [json.loads(x) for x in (tmp_path / "out" / "manifest.jsonl").read_text().splitlines()[1:]]
    assert [(r["item"], r["line"], r["prompt"], r["seed"]) for r in records] == [
        (0, 1, "a red fox", 100), (1, 2, "b blue bird", 101), (2, 3, "c", 7), (3, 4, "d dog", 103)]
    assert [r["item"] for r in reporter.records] == [0, 1, 2, 3]


@pytest.mark.parametrize("arch", ["zimage", "qwen-image"])
def test_flow_families_group_as_they_run_alone(tiny_family_pipe, arch):
    """Z-Image at CFG 1 (the conditional-only pass) and Qwen-Image at CFG 2.5, whose prompts encode to
    different token counts (run apart inside the call)."""
    from dataclasses import replace

    from sdcli.request.generation import validate

    model = tiny_family_pipe(arch)
    first = GenerationRequest(prompt="a red fox", steps=2, width=32, height=32, seed=5,
                              cfg_scale=1.0 if arch == "zimage" else 2.5)
    group = [first, replace(first, prompt="a blue bird on a long branch in the morning sun", seed=9,
                            negative_prompt="fog"), replace(first, prompt="x", seed=11, batch_size=2)]
    choice = validate(first)
    alone = [generate.run(r, model, choice, model_name="t", model_hash="h") for r in group]
    alone = [(np.asarray(i.image, dtype=np.int16), i.infotext) for images in alone for i in images]
    joined = [(np.asarray(i.image, dtype=np.int16), i.infotext)
              for i in generate.run(first, model, choice, model_name="t", model_hash="h", group=group)]
    assert generate.groupable(first, model, choice)
    assert [t for _, t in joined] == [t for _, t in alone]
    assert all(np.abs(a - b).max() <= 1 for (a, _), (b, _) in zip(joined, alone, strict=True))
