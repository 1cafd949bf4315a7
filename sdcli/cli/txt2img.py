"""`sdcli txt2img`: text to image."""

from __future__ import annotations

from sdcli.cli import options as o

HELP = """Generate images from a text prompt.

Examples:

  sdcli txt2img "a lighthouse at dusk, (oil painting:1.2)"

  sdcli txt2img -m ./my-model --sampler "DPM++ 2M Karras" --steps 30 --seed 42 "a red fox"

  sdcli txt2img --batch-size 2 --count 3 --clip-skip 2 -o out --json "a cat" | jq .path
"""


def txt2img(
    prompt: o.Prompt = None,
    prompt_opt: o.PromptOpt = None,
    negative_prompt: o.Negative = "",
    steps: o.Steps = o.DEFAULTS["steps"],
    cfg_scale: o.Cfg = o.DEFAULTS["cfg_scale"],
    seed: o.Seed = None,
    subseed: o.Subseed = None,
    subseed_strength: o.SubseedStrength = 0.0,
    width: o.Width = None,
    height: o.Height = None,
    batch_size: o.BatchSize = 1,
    count: o.Count = 1,
    sampler: o.Sampler = o.DEFAULTS["sampler"],
    schedule: o.Schedule = "automatic",
    clip_skip: o.ClipSkip = 1,
    model: o.Model = None,
    offline: o.Offline = False,
    device: o.Device = "auto",
    dtype: o.Dtype = "auto",
    attention_slicing: o.Slicing = "auto",
    xformers: o.Xformers = False,
    output: o.Output = o.DEFAULTS["output"],
    name: o.Name = "[num]-[seed]",
    json_out: o.Json = False,
) -> None:
    from sdcli.cli.ui import run_and_report
    from sdcli.core.errors import UsageError
    from sdcli.core.request import GenerationRequest

    if prompt is not None and prompt_opt is not None:
        raise UsageError("PROMPT: give the prompt once, either as an argument or with --prompt")
    request = GenerationRequest(
        prompt=prompt if prompt is not None else (prompt_opt or ""),
        negative_prompt=negative_prompt, steps=steps, cfg_scale=cfg_scale, seed=seed,
        width=width, height=height, batch_size=batch_size, count=count, sampler=sampler,
        schedule=schedule, clip_skip=clip_skip, subseed=subseed, subseed_strength=subseed_strength,
    )
    run_and_report(request, model, offline=offline, device=device, dtype=dtype, attention_slicing=attention_slicing,
                   xformers=xformers, output=output, name=name, json_out=json_out)
