"""What an edit cannot take is refused in one line naming the model's family and the option (exit 2, nothing
written), from every entry point that edits: `sdcli edit`, `sdcli xyz --edit`, a prompt file's edit line (the
server's /sdcli/v1/edit: tests/server/test_edit_server.py). One table; the options an edit never takes are checked
for every family that edits, without a model."""

from __future__ import annotations

import pytest
from PIL import Image

from sdcli.families import FAMILIES
from sdcli.job.family_rules import editing_families
from sdcli.request.edits import EDIT_REFUSED

FLOW = "Euler, Euler a, Heun, DPM++ 2M, DPM++ SDE, DPM++ 2M SDE, ..."
EDITORS = editing_families()  # from the family table: Flux.2 klein, ..., Qwen-Image-Edit Plus
GUIDED = ", ".join(f.label for f in FAMILIES.values() if f.capabilities.distilled_guidance)
ONE_PASS = "not with an edit by {model} (an edit is one pass of the editing model, without {what})"


@pytest.fixture(scope="module")
def image(tmp_path_factory):
    path = tmp_path_factory.mktemp("refs") / "a.png"
    Image.radial_gradient("L").convert("RGB").resize((32, 32)).save(path)
    return path


# (family arch, command, arguments before the prompt, the last line of stderr). {m}: the model, {i}: the image,
# {sd1}: a Stable Diffusion 1.x model, {file}: the prompt file.
ROWS = [
    ("flux-kontext", "edit", ("--refiner", "{sd1}"),
     "error: --refiner: " + ONE_PASS.format(model="a Flux.1 Kontext model", what="a refiner's last steps")),
    ("qwen-image-edit", "xyz", ("--edit", "--hires", "--x", "Steps: 1, 2"),
     "error: --hires: " + ONE_PASS.format(model="a Qwen-Image-Edit model", what="hires fix's second pass")),
    ("flux2-klein", "xyz", ("--edit", "--refiner", "{sd1}", "--x", "Seed: 1, 2"),
     "error: --refiner: " + ONE_PASS.format(model="a Flux.2 klein model", what="a refiner's last steps")),
    ("flux2-klein", "batch", ("--refiner_checkpoint {sd1}",),
     "{file}:1: refiner_checkpoint: " + ONE_PASS.format(model="a Flux.2 klein model", what="a refiner's last steps")),
    ("sd1", "xyz", ("--edit", "--x", "Steps: 1, 2"),
     f"error: sdcli edit: a Stable Diffusion 1.x model cannot edit by instruction; use one of: {EDITORS}"),
    ("qwen-image-edit", "edit", ("--clip-skip", "2"),
     "error: --clip-skip: a Qwen-Image-Edit model has no CLIP skip (its text is Qwen2.5-VL's last hidden states)"),
    ("qwen-image-edit", "edit", ("--prediction-type", "v"),
     "error: --prediction-type: a Qwen-Image-Edit model is a flow model, neither eps nor v"),
    ("flux2-klein", "edit", ("--distilled-cfg", "3"),
     "error: --distilled-cfg: Flux.2 klein models have no distilled guidance; it applies to " + GUIDED),
    ("flux-kontext", "edit", ("--sampler", "DDIM"),
     f"error: --sampler: DDIM walks a discrete DDPM schedule; Flux.1 Kontext models take the flow samplers ({FLOW})"),
    ("qwen-image-edit-plus", "edit", ("--schedule", "uniform"),
     "error: --schedule: Uniform reads timesteps 9999..0 as sigmas on a Qwen-Image-Edit Plus model; use Simple, Beta, "
     "Normal, SGM Uniform, Karras or Exponential"),
]


@pytest.mark.parametrize("arch,command,args,line", ROWS, ids=[f"{r[0]}-{r[1]}-{r[2][0]}" for r in ROWS])
def test_edit_refusals_name_the_family_and_the_option(cli, tiny_family, tiny_model, image, tmp_path, arch, command,
                                                      args, line):
    model = tiny_model if arch == "sd1" else tiny_family(arch)
    names = {"m": model, "i": image, "sd1": tiny_model, "file": tmp_path / "lines.txt"}
    args = tuple(a.format(**names) for a in args)
    out = tmp_path / "out"
    if command == "batch":
        names["file"].write_text(f'--prompt "make it purple" --reference_images {image} {" ".join(args)}\n')
        result = cli("batch", names["file"], "-m", model, "-o", out)
    else:
        result = cli(command, "-m", model, "-i", image, "-o", out, *args, "make it purple")
    assert result.exit_code == 2, result.stderr
    assert result.stderr.strip().splitlines()[-1] == line.format(**names)
    assert not out.exists()


@pytest.mark.parametrize("arch", ["flux-kontext", "flux2-klein", "qwen-image-edit", "qwen-image-edit-plus"])
def test_every_editing_family_refuses_each_option_an_edit_cannot_take(arch):
    """The plan step's check (job.family_rules.check_edit) for each option of request.generation.EDIT_REFUSED and each
    family that edits, on a request that sets only that option: the flag and the family in one line."""
    from dataclasses import replace

    from sdcli.controlnet.units import ControlUnit
    from sdcli.errors import UsageError
    from sdcli.families import FAMILIES
    from sdcli.job.family_rules import check_edit
    from sdcli.request.generation import GenerationRequest
    from sdcli.request.hires import HiresSettings

    family = FAMILIES[arch]
    base = GenerationRequest(prompt="make it purple", mode="edit", references=("a.png",))
    check_edit(base, family)  # nothing set: no refusal
    settings = {"--controlnet": {"controlnets": (ControlUnit(model="cn", image="c.png"),)},
                "--refiner": {"refiner": "xl-refiner"}, "--hires": {"hires": HiresSettings()}}
    assert sorted(settings) == sorted(flag for flag, _, _ in EDIT_REFUSED)
    for flag, _, what in EDIT_REFUSED:
        with pytest.raises(UsageError) as refused:
            check_edit(replace(base, **settings[flag]), family)
        assert str(refused.value) == f"{flag}: " + ONE_PASS.format(model=f"a {family.label} model", what=what)
