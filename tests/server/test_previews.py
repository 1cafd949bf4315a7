"""/progress's live preview (`current_image`) for every family and for the samplers the diffusers pipeline runs:
each step of a server job, polled as /progress polls it, decodes to an image one pixel per 8 image pixels."""

from __future__ import annotations

import pytest

from sdcli.request.generation import GenerationRequest
from tests.flow_families import FLOW_FAMILIES
from tests.server.conftest import decode

pytestmark = pytest.mark.slow  # a few generations each, 1-3 s

# (model fixture, loaded-model fixture, sampler): SD 1.x through the diffusers pipeline (UniPC, LCM) and sdcli's
# loop; each flow family through sdcli's loop (its default sampler).
CASES = [("tiny_model", "tiny_pipe", "UniPC"), ("tiny_model", "tiny_pipe", "LCM"),
         *((f.fixture, f.pipe_fixture, None) for f in FLOW_FAMILIES.values())]


@pytest.mark.parametrize("folder_fixture, pipe_fixture, sampler", CASES,
                         ids=[f"{c[0].removeprefix('tiny_')}-{c[2] or 'default'}" for c in CASES])
def test_every_step_has_a_preview(request, folder_fixture, pipe_fixture, sampler, single_thread):
    from sdcli.models.runtime import RuntimeOptions
    from sdcli.server.engine import Engine

    folder, pipe = request.getfixturevalue(folder_fixture), request.getfixturevalue(pipe_fixture)
    engine = Engine.from_specs([str(folder)], RuntimeOptions(), load=lambda ref, plan: pipe)
    engine.options["show_progress_every_n_steps"] = 1
    seen = []
    step = engine._step

    def polled(done, total):  # a /progress poll right after each step
        step(done, total)
        seen.append((engine.progress.sampling_step, engine.progress.current_image()))

    engine._step = polled
    engine.generate(GenerationRequest(prompt="a lighthouse", steps=3, width=32, height=48, seed=5, sampler=sampler))
    steps = [n for n, _ in seen]
    assert steps == list(range(1, len(steps) + 1)) and len(steps) >= 3  # UniPC's pipeline: its own count
    previews = [decode(image) for _, image in seen]
    assert all(p.format == "PNG" and p.size == (4, 6) for p in previews)
    assert previews[0].tobytes() != previews[-1].tobytes()  # each step's latent, not the first one kept
    assert engine.progress.current_image() is None  # the job over: nothing left
