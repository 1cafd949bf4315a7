"""NaN/inf output is a failed image in every command: exit 1 alone, 3 in a batch, never a black PNG."""

import pytest

from tests.images import FAST, nan_weights, pngs, write_inputs

pytestmark = pytest.mark.usefixtures("single_thread")
SMALL = (*FAST, "--width", "32", "--height", "32")


@pytest.fixture
def nan_pipe(tiny_pipe, monkeypatch):
    """Every model load returns the tiny pipeline with a NaN VAE weight."""
    import sdcli.models.loader as loader

    monkeypatch.setattr(loader, "load_model", lambda model, plan: tiny_pipe)
    with nan_weights(tiny_pipe):
        yield tiny_pipe


@pytest.mark.parametrize("command", ["txt2img", "img2img"])
def test_single_commands_exit_1_naming_the_image(cli, tiny_model, tmp_path, nan_pipe, command):
    image, _ = write_inputs(tmp_path)
    extra = ("-i", image) if command == "img2img" else ()
    result = cli(command, "x", *extra, "-m", tiny_model, *SMALL, "-o", tmp_path / "out")
    assert result.exit_code == 1, result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("error: image 0 (seed 5): NaN/inf in the decoded image")
    assert pngs(tmp_path / "out") == [] and result.stdout == ""


def test_replay_exits_1(cli, tiny_model, tmp_path, tiny_pipe, monkeypatch):
    made = cli("txt2img", "x", "-m", tiny_model, *SMALL, "-o", tmp_path)
    assert made.exit_code == 0, made.stderr
    import sdcli.models.loader as loader

    monkeypatch.setattr(loader, "load_model", lambda model, plan: tiny_pipe)
    with nan_weights(tiny_pipe):
        result = cli("replay", tmp_path / "00000-5.png", "-o", tmp_path / "again")
    assert result.exit_code == 1 and "NaN/inf in the decoded image" in result.stderr
    assert pngs(tmp_path / "again") == []


def test_batch_counts_nan_items_as_failed_exit_3(cli, tiny_model, tmp_path, nan_pipe):
    prompts = tmp_path / "p.txt"
    prompts.write_text("a\nb\n")
    result = cli("batch", prompts, "-m", tiny_model, *SMALL, "-o", tmp_path / "out", "--json")
    assert result.exit_code == 3, result.stderr
    assert "item 0 (line 1, seed 5) failed: NaN/inf in the decoded image" in result.stderr
    assert pngs(tmp_path / "out") == []
