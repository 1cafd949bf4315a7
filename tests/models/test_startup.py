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


PROBE = """
import sys
from sdcli.cli import main
sys.argv = ["sdcli"] + sys.argv[1:]
try:
    main()
except SystemExit:
    pass
print("MODULES " + " ".join(sorted(sys.modules)), file=sys.stderr)
"""


def _modules(*args, tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-c", PROBE, *args], capture_output=True, text=True, env=env,
                          timeout=300, cwd=tmp_path)
    line = next(x for x in proc.stderr.splitlines() if x.startswith("MODULES "))
    return proc, set(line.split()[1:])


OTHER_FAMILIES = ("diffusers.pipelines.auto_pipeline", "diffusers.pipelines.stable_diffusion_xl",
                  "diffusers.pipelines.controlnet", "diffusers.pipelines.flux", "diffusers.pipelines.kandinsky")


def test_one_shot_txt2img_imports_one_family_and_no_optional_sampler_deps(tiny_model, tmp_path):
    proc, modules = _modules("txt2img", "x", "-m", str(tiny_model), "--steps", "2", "-W", "32", "-H", "32",
                             "-o", str(tmp_path), tmp_path=tmp_path)
    assert "wrote 1 image" in proc.stderr
    assert "diffusers.pipelines.stable_diffusion.pipeline_stable_diffusion" in modules
    assert not modules & set(OTHER_FAMILIES)
    assert "torchsde" not in modules  # only DPM++ SDE needs it


@pytest.mark.parametrize("args", [("--help",), ("samplers",), ("txt2img", "--help"), ("serve", "--help")])
def test_light_commands_import_no_torch(args, tmp_path):
    proc, modules = _modules(*args, tmp_path=tmp_path)
    assert not modules & {"torch", "diffusers", "transformers", "fastapi", "uvicorn"}, proc.stderr[-500:]
