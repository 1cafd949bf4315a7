"""`sdcli replay`: make an image again from its own metadata, optionally changing options."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from sdcli.cli import options as o

HELP = """Regenerate an image from the metadata stored in it; any option can be overridden.

Images made by sdcli replay exactly (same pixels on the same device and dtype);
images from the WebUI or other tools replay from their "parameters" with --model.

Examples:

  sdcli replay outputs/00000-42.png

  sdcli replay outputs/00000-42.png --seed 43 --steps 40 -o variants

  sdcli replay webui-image.png --model ./sd15
"""


def replay(
    image: Annotated[Path, typer.Argument(help="An image with generation parameters.", show_default=False)],
    prompt: o.PromptOpt = None,
    negative_prompt: Annotated[str | None, typer.Option("--negative-prompt", "-n", show_default=False,
                                                        help="Override the negative prompt.")] = None,
    steps: Annotated[int | None, typer.Option("--steps", "-s", show_default=False)] = None,
    cfg_scale: Annotated[float | None, typer.Option("--cfg-scale", "-c", show_default=False)] = None,
    seed: o.Seed = None,
    subseed: o.Subseed = None,
    subseed_strength: Annotated[float | None, typer.Option("--subseed-strength", show_default=False)] = None,
    width: o.Width = None,
    height: o.Height = None,
    sampler: Annotated[str | None, typer.Option("--sampler", show_default=False)] = None,
    schedule: Annotated[str | None, typer.Option("--schedule", show_default=False)] = None,
    clip_skip: Annotated[int | None, typer.Option("--clip-skip", show_default=False)] = None,
    model: Annotated[str | None, typer.Option("--model", "-m", show_default=False,
                                              help="Use this model instead of the image's.")] = None,
    refiner: Annotated[str | None, typer.Option("--refiner", show_default=False,
                                                help="Use this refiner instead of the image's.")] = None,
    offline: o.Offline = False,
    device: o.Device = "auto",
    dtype: o.Dtype = "auto",
    attention_slicing: o.Slicing = "auto",
    xformers: o.Xformers = False,
    output: o.Output = o.DEFAULTS["output"],
    name: o.Name = "[num]-[seed]",
    json_out: o.Json = False,
) -> None:
    from dataclasses import replace

    from sdcli.cli.common import run_and_report
    from sdcli.core.replay import replay_model, request_from_image

    request, source, ours = request_from_image(image)
    overrides = {"prompt": prompt, "negative_prompt": negative_prompt, "steps": steps, "cfg_scale": cfg_scale,
                 "seed": seed, "width": width, "height": height, "sampler": sampler, "schedule": schedule,
                 "clip_skip": clip_skip, "subseed": subseed, "subseed_strength": subseed_strength, "refiner": refiner}
    request = replace(request, **{k: v for k, v in overrides.items() if v is not None})
    run_and_report(request, replay_model(image, source, ours, model), offline=offline, device=device, dtype=dtype,
                   attention_slicing=attention_slicing, xformers=xformers, output=output, name=name,
                   json_out=json_out)
