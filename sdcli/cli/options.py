"""Shared Annotated option types, so every command spells a flag the same way."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from sdcli.core.samplers import DEFAULT_SAMPLER

GEN = "Generation"
MODEL = "Model and hardware"
OUT = "Output"

Prompt = Annotated[str | None, typer.Argument(help="What to draw (WebUI prompt syntax).", show_default=False)]
PromptOpt = Annotated[str | None, typer.Option("--prompt", "-p", help="The prompt, as an option.",
                                                  rich_help_panel=GEN, show_default=False)]
Negative = Annotated[str, typer.Option("--negative-prompt", "-n", help="What to avoid.", rich_help_panel=GEN)]
Steps = Annotated[int, typer.Option("--steps", "-s", help="Sampling steps.", rich_help_panel=GEN)]
Cfg = Annotated[float, typer.Option("--cfg-scale", "-c", help="Classifier-free guidance scale (0 or more).",
                                    rich_help_panel=GEN)]
Seed = Annotated[int | None, typer.Option("--seed", help="Seed; none or -1 = random (the seed used is reported).",
                                             rich_help_panel=GEN, show_default=False)]
Subseed = Annotated[int | None, typer.Option("--subseed", help="Variation seed; none or -1 = random when "
                                             "--subseed-strength > 0.", rich_help_panel=GEN, show_default=False)]
SubseedStrength = Annotated[float, typer.Option("--subseed-strength", help="How far to move towards the variation "
                                                "seed's noise (0-1, spherical interpolation).", rich_help_panel=GEN)]
Width = Annotated[int | None, typer.Option("--width", "-W", help="Width, multiple of 8 [default: model's native]",
                                              rich_help_panel=GEN, show_default=False)]
Height = Annotated[int | None, typer.Option("--height", "-H", help="Height, multiple of 8 [default: model's native]",
                                               rich_help_panel=GEN, show_default=False)]
BatchSize = Annotated[int, typer.Option("--batch-size", "-b", help="Images generated in parallel.",
                                        rich_help_panel=GEN)]
Count = Annotated[int, typer.Option("--count", help="Batches run one after another.", rich_help_panel=GEN)]
Sampler = Annotated[str, typer.Option("--sampler", help="WebUI sampler name, e.g. 'Euler a', 'DPM++ 2M Karras' "
                                      "(see `sdcli samplers`).", rich_help_panel=GEN)]
Schedule = Annotated[str, typer.Option("--schedule", help="Schedule type: automatic, uniform, karras, exponential, "
                                       "beta, sgm-uniform, simple.", rich_help_panel=GEN)]
ClipSkip = Annotated[int, typer.Option("--clip-skip", help="WebUI CLIP skip: 1 = last layer, 2 = penultimate (1-12).",
                                       rich_help_panel=GEN)]
Model = Annotated[str | None, typer.Option(
    "--model", "-m", envvar="SDCLI_MODEL", show_default=False, rich_help_panel=MODEL,
    help="Local diffusers folder or hub id [default: built-in tiny random-weight demo model]")]
Offline = Annotated[bool, typer.Option("--offline", help="Never use the network (also HF_HUB_OFFLINE=1).",
                                       rich_help_panel=MODEL)]
Device = Annotated[str, typer.Option("--device", help="auto, cpu, cuda or mps.", rich_help_panel=MODEL)]
Dtype = Annotated[str, typer.Option("--dtype", help="auto (fp16 on CUDA, fp32 on CPU), fp16, bf16 or fp32.",
                                    rich_help_panel=MODEL)]
Slicing = Annotated[str, typer.Option("--attention-slicing", help="auto (on for CUDA), on or off.",
                                      rich_help_panel=MODEL)]
Xformers = Annotated[bool, typer.Option("--xformers", help="Use xformers attention (needs the [xformers] extra); "
                                        "default is PyTorch SDPA.", rich_help_panel=MODEL)]
Output = Annotated[Path, typer.Option("--output", "-o", help="Output folder.", rich_help_panel=OUT)]
Name = Annotated[str, typer.Option("--name", help="File name pattern; fields [num] [seed] [steps] [cfg] [sampler] "
                                   "[width] [height] [prompt_words] [model_name] [date] [datetime] [index].",
                                   rich_help_panel=OUT)]
Json = Annotated[bool, typer.Option("--json", help="Print one JSON record per image on stdout.", rich_help_panel=OUT)]

DEFAULTS = {"steps": 20, "cfg_scale": 7.0, "sampler": DEFAULT_SAMPLER, "output": Path("outputs")}
