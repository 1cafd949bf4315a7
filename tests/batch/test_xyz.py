"""X/Y/Z plot axes: the WebUI's value syntax, its axis table, and how cells are planned (pure, no model)."""

from dataclasses import replace

import pytest

from sdcli.batch.xyz import (
    expand,
    format_label,
    parse_axis,
    plan_plot,
    plot_params,
    split_values,
)
from sdcli.errors import UsageError
from sdcli.request.generation import GenerationRequest

BASE = GenerationRequest(prompt="a cat on a mat", negative_prompt="ugly cat", steps=2, seed=7)


@pytest.mark.parametrize(("text", "values"), [
    ("1-5", [1, 2, 3, 4, 5]),
    ("1-10 (+2)", [1, 3, 5, 7, 9]),
    ("1-10(+3)", [1, 4, 7, 10]),
    ("10-1 (-3)", [10, 7, 4]),  # the WebUI's range(start, end + 1, step)
    ("1-10 [4]", [1, 4, 7, 10]),
    ("1-10 [5]", [1, 3, 5, 7, 10]),  # evenly spaced, truncated to whole numbers
    ("3-3", [3]),
    ("-1", [-1]),
    (" 42 ", [42]),
    ("-5--2", [-5, -4, -3, -2]),
])
def test_integer_values_and_ranges(text, values):
    assert expand("int", text) == values


@pytest.mark.parametrize(("text", "values"), [
    ("4-10 (+2)", [4.0, 6.0, 8.0, 10.0]),
    ("0-1 (+0.25)", [0.0, 0.25, 0.5, 0.75, 1.0]),
    ("0.1-0.3 (+0.1)", [0.1, 0.2, 0.3]),  # no extra value from float error
    ("0-1 [3]", [0.0, 0.5, 1.0]),
    ("1-2", [1.0, 2.0]),
    ("7.5", [7.5]),
    (".5", [0.5]),
])
def test_float_values_and_ranges(text, values):
    assert expand("float", text) == values


@pytest.mark.parametrize(("kind", "text", "reason"), [
    ("int", "abc", "is not a whole number or a range"),
    ("int", "1.5", "is not a whole number"),
    ("int", "1-10 (0)", "the step is 0"),
    ("int", "1-10 (+1.5)", "the step must be a whole number"),
    ("int", "10-1", "is an empty range"),
    ("int", "1-100000", "more than 1000 values"),
    ("float", "1-x", "is not a number or a range"),
])
def test_bad_values_say_why(kind, text, reason):
    with pytest.raises(ValueError, match=reason):
        expand(kind, text)


def test_values_are_one_csv_row_with_quoting():
    assert split_values('Euler, "DPM++ 2M, Karras" ,  Heun') == ["Euler", "DPM++ 2M, Karras", "Heun"]
    assert split_values("a photo of a dog") == ["a photo of a dog"]


def test_axis_names_as_the_webui_spells_them_any_case_and_labels():
    spec = parse_axis("--y", "CFG scale: 4-10 (+2)")
    assert spec.axis.label == "CFG Scale" and spec.text == "4-10 (+2)"
    assert spec.labels == ["CFG Scale: 4.0", "CFG Scale: 6.0", "CFG Scale: 8.0", "CFG Scale: 10.0"]
    assert parse_axis("--x", "sampler: Euler, DPM++ 2M Karras").labels == ["Euler", "DPM++ 2M Karras"]
    assert parse_axis("--z", "Steps: 10,20").labels == ["Steps: 10", "Steps: 20"]
    assert parse_axis("--x", None).labels == [""]
    checkpoint = parse_axis("--x", "Checkpoint name: /models/a.safetensors, b")
    assert checkpoint.labels == ["a.safetensors", "b"]
    order = parse_axis("--x", "Prompt order: cat, mat")
    assert order.values == (("cat", "mat"), ("mat", "cat")) and order.labels == ["cat, mat", "mat, cat"]
    assert format_label(parse_axis("--x", "Eta: 0.1").axis, 0.30000000000000004) == "Eta: 0.3"
    # The hires axes are labelled as the WebUI draws them (format_value_add_label).
    assert parse_axis("--x", "hires steps: 1, 2").labels == ["Hires steps: 1", "Hires steps: 2"]
    assert parse_axis("--x", "Hires sampler: Euler").labels == ["Hires sampler: Euler"]
    assert parse_axis("--x", "Hires upscaler: Latent, Lanczos").labels == ["Hires upscaler: Latent",
                                                                          "Hires upscaler: Lanczos"]
    assert parse_axis("--x", "Denoising: 0.5").labels == ["Denoising: 0.5"]


@pytest.mark.parametrize(("option", "message"), [
    ("Smpler: Euler", "--x: unknown axis 'Smpler'; did you mean Sampler"),
    ("Styles: a, b", "--x: the WebUI axis 'Styles' is not supported by sdcli"),
    ("Steps", "--x: 'Steps' has no values; write \"Steps: VALUE, VALUE, ...\""),
    ("Steps: 10, ten", "--x: Steps: 'ten' is not a whole number or a range"),
    ("Steps: 10,,20", "--x: Steps: an empty value"),
])
def test_bad_axes_are_named(option, message):
    with pytest.raises(UsageError) as exc:
        parse_axis("--x", option)
    assert str(exc.value).startswith(message)


def test_cells_in_x_then_y_then_z_order_with_one_seed():
    plot = plan_plot(BASE, ("Sampler: Euler, Heun", "CFG Scale: 3, 9", "Steps: 1, 2"), "m")
    assert plot.shape == (2, 2, 2)
    got = [(line.line, line.request.sampler, line.request.cfg_scale, line.request.steps) for line in plot.lines]
    assert got == [(1, "Euler", 3, 1), (2, "Heun", 3, 1), (3, "Euler", 9, 1), (4, "Heun", 9, 1),
                   (5, "Euler", 3, 2), (6, "Heun", 3, 2), (7, "Euler", 9, 2), (8, "Heun", 9, 2)]
    assert plot.cell(1, 0, 1) == 5
    assert {line.request.seed for line in plot.lines} == {7} and {line.model for line in plot.lines} == {"m"}


def test_random_seed_is_fixed_once_for_the_plot_and_kept_for_resume():
    base = GenerationRequest(prompt="x", steps=2)
    plot = plan_plot(base, ("Steps: 1, 2", None, None), None)
    seeds = {line.request.seed for line in plot.lines}
    assert len(seeds) == 1 and plot.resolved["seed"] in seeds
    again = plan_plot(base, ("Steps: 1, 2", None, None), None, resolved=plot.resolved)
    assert again.lines == plot.lines
    kept = plan_plot(base, ("Steps: 1, 2", None, None), None, keep_random_seeds=True)
    assert {line.request.seed for line in kept.lines} == {None}  # the runner gives each cell base + item


def test_seed_axis_minus_one_is_randomised_once_and_recorded():
    plot = plan_plot(BASE, ("Seed: 5, -1", None, None), None)
    first, second = (line.request.seed for line in plot.lines)
    assert first == 5 and second not in (-1, None)
    assert plot.resolved["axes"] == {"x": [5, second]}
    assert plot_params(plot, combined=True)["Fixed X Values"] == f"5, {second}"
    again = plan_plot(BASE, ("Seed: 5, -1", None, None), None, resolved=plot.resolved)
    assert [line.request.seed for line in again.lines] == [5, second]


def test_variation_strength_axis_gets_one_fixed_variation_seed():
    plot = plan_plot(BASE, ("Var. strength: 0-1 [3]", None, None), None)
    assert [line.request.subseed_strength for line in plot.lines] == [0.0, 0.5, 1.0]
    assert len({line.request.subseed for line in plot.lines}) == 1 and plot.lines[0].request.subseed is not None


def test_prompt_search_and_replace_in_prompt_and_negative():
    plot = plan_plot(BASE, ("Prompt S/R: cat, dog, <lora:detail:0.5>", None, None), None)
    assert [(line.request.prompt, line.request.negative_prompt) for line in plot.lines] == [
        ("a cat on a mat", "ugly cat"), ("a dog on a mat", "ugly dog"),
        ("a <lora:detail:0.5> on a mat", "ugly <lora:detail:0.5>")]
    with pytest.raises(UsageError, match=r"^--y: Prompt S/R: the first value 'bird' \(the text to replace\) is not"):
        plan_plot(BASE, (None, "Prompt S/R: bird, dog", None), None)


def test_prompt_order_permutes_the_tokens():
    plot = plan_plot(GenerationRequest(prompt="red, cat, hat", seed=1), ("Prompt order: red, hat", None, None), None)
    assert [line.request.prompt for line in plot.lines] == ["red, cat, hat", "hat, cat, red"]


def test_checkpoint_axis_sets_each_cells_model_and_checks_it():
    checked = []
    plot = plan_plot(BASE, (None, "Checkpoint name: a, b", None), "m", check_model=checked.append)
    assert [line.model for line in plot.lines] == ["a", "b"] and checked == ["a", "b"]

    def refuse(spec):
        raise UsageError(f"--model: no such model {spec!r}")

    with pytest.raises(UsageError, match=r"^--y: Checkpoint name b: no such model 'b'$"):
        plan_plot(BASE, (None, "Checkpoint name: b", None), "m", check_model=refuse)


@pytest.mark.parametrize(("axes", "message"), [
    (("Steps: 0, 2", None, None), "--x: Steps 0: 0 is out of range; use 1 to 1000"),
    ((None, "Sampler: Euler, Eulr", None), "--y: Sampler Eulr: unknown sampler 'Eulr'"),
    ((None, None, "CFG Scale: 5, 200"), "--z: CFG Scale 200.0: 200.0 is out of range"),
    (("Width: 32, 33", None, None), "--x: Width 33: 33 is not a multiple of 8"),
    (("Schedule type: karras, bogus", None, None), "--x: Schedule type bogus: unknown schedule type 'bogus'"),
    (("Schedule min sigma: 5", "Schedule max sigma: 1", None),
     "cell (--x Schedule min sigma: 5.0, --y Schedule max sigma: 1.0): --sigma-min: 5.0 is not below"),
])
def test_bad_values_name_the_axis_before_anything_runs(axes, message):
    with pytest.raises(UsageError) as exc:
        plan_plot(BASE, axes, None)
    assert str(exc.value).startswith(message)


def test_grid_params_describe_the_plot_as_the_webui_does():
    plot = plan_plot(BASE, ("Sampler: Euler, Heun", "CFG Scale: 4-10 (+2)", "Steps: 1,2"), None)
    assert plot_params(plot, combined=False) == {
        "Script": "X/Y/Z plot", "X Type": "Sampler", "X Values": "Euler, Heun",
        "Y Type": "CFG Scale", "Y Values": "4-10 (+2)"}
    assert plot_params(plot, combined=True)["Z Values"] == "1,2"


def test_hires_axes_set_the_hires_settings_and_upscalers_are_resolved_per_value():
    from sdcli.request.hires import HiresSettings

    base = replace(BASE, hires=HiresSettings(scale=1.5, upscaler="Latent"))
    resolved = []

    def resolve(spec):
        resolved.append(spec)
        return f"/abs/{spec}"

    plot = plan_plot(base, ("Hires steps: 1, 3", "Hires upscaler: Lanczos, Latent", "Denoising: 0.25"), "m",
                     resolve_upscaler=resolve)
    hires = [line.request.hires for line in plot.lines]
    assert [(h.steps, h.upscaler, h.denoise) for h in hires] == [
        (1, "/abs/Lanczos", 0.25), (3, "/abs/Lanczos", 0.25), (1, "/abs/Latent", 0.25), (3, "/abs/Latent", 0.25)]
    assert all(line.request.init is None for line in plot.lines)  # txt2img: Denoising is the hires pass's
    assert {"Latent", "Lanczos"} <= set(resolved)
    sampler = plan_plot(base, ("Hires sampler: Euler a", None, None), "m")
    assert sampler.lines[0].request.hires.sampler == "Euler a" and sampler.lines[0].request.sampler == BASE.sampler
    with pytest.raises(UsageError, match=r"^--y: Hires steps: needs --hires"):
        plan_plot(BASE, (None, "Hires steps: 1", None), "m")
