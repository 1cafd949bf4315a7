"""Start-up: one-shot runs import only what they use; light commands import no torch."""

import json
import os
import subprocess
import sys

import pytest

from sdcli.sampling.samplers import SAMPLERS, resolve_sampler


@pytest.mark.parametrize("sampler", [s.name for s in SAMPLERS])
def test_build_scheduler_equals_from_config(tiny_model, sampler):
    import diffusers

    from sdcli.models.loader import build_scheduler

    config = json.loads((tiny_model / "scheduler" / "scheduler_config.json").read_text())
    config["_use_default_values"] = ["beta_end"]  # from_config leaves these at the class default
    choice = resolve_sampler(sampler)
    cls = getattr(diffusers, choice.sampler.scheduler)
    ours = build_scheduler(cls, config, choice.scheduler_config)
    theirs = cls.from_config(config, **choice.scheduler_config)
    import inspect

    params = set(inspect.signature(cls.__init__).parameters) - {"self", "kwargs"}
    assert {k: ours.config[k] for k in params} == {k: theirs.config[k] for k in params}
    ours.set_timesteps(7)
    theirs.set_timesteps(7)
    assert ours.timesteps.tolist() == theirs.timesteps.tolist()


# One sdcli command run through the console entry point (sdcli.cli.main), in its own process. It reports the
# modules it imported and the collector's state at its end (models.startup: the pause over a command's start,
# and how many torch modules with weights existed when that pause ended: none may).
PROBE = """
import gc
import sys
import sdcli.models.startup as startup

weights_at_end = []
end = startup.end
def watched():
    if startup.paused():
        torch = sys.modules.get("torch")
        weights_at_end.append(0 if torch is None else sum(
            isinstance(o, torch.nn.Module) and next(o.parameters(False), None) is not None for o in gc.get_objects()))
    end()
startup.end = watched
from sdcli.cli import main
sys.argv = ["sdcli"] + sys.argv[1:]
try:
    main()
except SystemExit:
    pass
print("MODULES " + " ".join(sorted(sys.modules)), file=sys.stderr)
print(f"GC enabled={gc.isenabled()} frozen={gc.get_freeze_count()} weights_at_end={','.join(map(str, weights_at_end))}",
      file=sys.stderr)
"""
_RUNS: dict[tuple[str, ...], tuple[subprocess.CompletedProcess, set[str], dict[str, str]]] = {}


def _run(*args, tmp_path):
    """The probe's process, its modules and its collector report; each command line runs once per session."""
    if args not in _RUNS:
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        proc = subprocess.run([sys.executable, "-c", PROBE, *args], capture_output=True, text=True, env=env,
                              timeout=300, cwd=tmp_path)
        line = next(x for x in proc.stderr.splitlines() if x.startswith("MODULES "))
        report = next(x for x in proc.stderr.splitlines() if x.startswith("GC "))
        _RUNS[args] = proc, set(line.split()[1:]), dict(part.split("=", 1) for part in report.split()[1:])
    return _RUNS[args]


def _modules(*args, tmp_path):
    proc, modules, _ = _run(*args, tmp_path=tmp_path)
    return proc, modules


OTHER_FAMILIES = ("diffusers.pipelines.auto_pipeline", "diffusers.pipelines.stable_diffusion_xl",
                  "diffusers.pipelines.controlnet", "diffusers.pipelines.flux", "diffusers.pipelines.kandinsky")


@pytest.fixture(scope="module")
def one_shot(tiny_model, tmp_path_factory):
    """One `sdcli txt2img` process on the tiny model (the probe's result)."""
    out = tmp_path_factory.mktemp("one-shot")
    return _run("txt2img", "x", "-m", str(tiny_model), "--steps", "2", "-W", "32", "-H", "32", "-o", str(out),
                tmp_path=out)


def test_one_shot_txt2img_imports_one_family_and_no_optional_sampler_deps(one_shot):
    proc, modules, _ = one_shot
    assert "wrote 1 image" in proc.stderr
    assert "diffusers.pipelines.stable_diffusion.pipeline_stable_diffusion" in modules
    assert not modules & set(OTHER_FAMILIES)
    assert "torchsde" not in modules  # only DPM++ SDE needs it


@pytest.mark.parametrize("args", [("--help",), ("samplers",), ("txt2img", "--help"), ("serve", "--help")])
def test_light_commands_import_no_torch(args, tmp_path):
    proc, modules = _modules(*args, tmp_path=tmp_path)
    assert not modules & {"torch", "diffusers", "transformers", "fastapi", "uvicorn"}, proc.stderr[-500:]


def test_one_shot_start_runs_without_the_collector_until_the_libraries_are_in(one_shot):
    proc, _, report = one_shot  # the same process as the test above
    assert "wrote 1 image" in proc.stderr
    # The pause ended once, before any weights existed; the libraries' objects are frozen; the collector is on.
    assert report == {"enabled": "True", "frozen": report["frozen"], "weights_at_end": "0"}
    assert int(report["frozen"]) > 100_000  # torch, diffusers and transformers: about 740,000


def test_commands_that_load_no_model_end_the_pause_as_they_start(tmp_path):
    proc, _, report = _run("samplers", tmp_path=tmp_path)  # the same process as the light-command test's
    assert report["enabled"] == "True" and int(report["frozen"]) > 0, proc.stderr[-500:]
    proc, _, report = _run("--help", tmp_path=tmp_path)  # help ends the process with the pause still on
    assert report["enabled"] == "False", proc.stderr[-500:]
    # A one-shot command on --server loads nothing here: the pause ends before it talks to the server.
    proc, _, report = _run("txt2img", "x", "--server", "http://127.0.0.1:9", tmp_path=tmp_path)
    assert "cannot reach" in proc.stderr
    assert report["enabled"] == "True", proc.stderr[-500:]


def test_the_pause_is_the_entry_points_alone(monkeypatch):
    import gc

    from sdcli.models import startup

    assert gc.isenabled() and not startup.paused()  # importing sdcli (tests, library callers) pauses nothing
    monkeypatch.setattr(gc, "freeze", lambda: None)  # this test process keeps its objects collectable
    startup.pause()
    try:
        assert not gc.isenabled() and startup.paused()
    finally:
        startup.end()
    assert gc.isenabled() and not startup.paused()
    startup.end()  # a second end changes nothing
    assert gc.isenabled()
    gc.disable()  # a caller that turned the collector off itself keeps it off
    try:
        startup.pause()
        startup.end()
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_commands_that_load_a_model_are_commands():
    from sdcli.cli import LOADS_A_MODEL, app

    commands = {command.name for command in app.registered_commands}
    assert not LOADS_A_MODEL - commands
