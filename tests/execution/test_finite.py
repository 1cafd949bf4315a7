"""No silent bad images: NaN/inf latents or decodes are caught where images leave generation."""

import pytest

from sdcli.errors import RuntimeFailure
from sdcli.execution.finite import nonfinite_rows
from sdcli.job.run import run_job
from sdcli.job.write import OutputOptions
from sdcli.models.runtime import RuntimeOptions
from sdcli.request.generation import GenerationRequest, ImageInput
from tests.images import nan_weights, pngs, write_inputs

pytestmark = pytest.mark.usefixtures("single_thread")


class Notes:
    def __init__(self):
        self.notes, self.images = [], []

    def note(self, message):
        self.notes.append(message)

    def start(self, total, steps):
        pass

    def step(self, step, total):
        pass

    def image(self, record):
        self.images.append(record)


def test_rows_with_nan_or_inf_are_named_by_batch_offset():
    import torch

    batch = torch.zeros(3, 4, 2, 2)
    batch[1, 2, 0, 1] = float("nan")
    batch[2, 0, 0, 0] = float("inf")
    assert nonfinite_rows(batch) == [1, 2]
    assert nonfinite_rows(torch.zeros(2, 4)) == [] and nonfinite_rows(None) == []


@pytest.mark.parametrize(("where", "what"), [("vae", "decoded image"), ("unet", "latents")])
@pytest.mark.parametrize("mode", ["txt2img", "img2img"])
def test_nan_output_fails_the_job_naming_the_image_and_writes_nothing(tiny_model, tiny_pipe, tmp_path, where,
                                                                        what, mode):
    parts = {}
    if mode == "img2img":
        image, _ = write_inputs(tmp_path)
        parts = {"init": ImageInput(str(image))}
    request = GenerationRequest(prompt="x", steps=2, seed=11, width=32, height=32, batch_size=2, mode=mode, **parts)
    reporter = Notes()
    with nan_weights(tiny_pipe, where), pytest.raises(RuntimeFailure) as caught:
        run_job(request, RuntimeOptions(device="cpu"), str(tiny_model), OutputOptions(tmp_path / "out"), reporter,
                loaded=tiny_pipe)
    assert caught.value.exit_code == 1
    assert str(caught.value).startswith(f"2 of 2 images failed; first: image 0 (seed 11): NaN/inf in the {what}")
    assert [n.split(":")[0] for n in reporter.notes if n.startswith("image")] == ["image 0 (seed 11)",
                                                                               "image 1 (seed 12)"]
    assert reporter.images == [] and pngs(tmp_path / "out") == []
