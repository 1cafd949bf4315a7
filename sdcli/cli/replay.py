"""`sdcli replay`: make an image again from its own metadata, optionally changing options."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from sdcli.cli import options as o

KEEP = "Override the image's value."

HELP = """Regenerate an image from the metadata stored in it; any option can be overridden.

Images made by sdcli replay exactly (same pixels on the same device and dtype);
images from the WebUI, Forge, ComfyUI, InvokeAI, NovelAI, Fooocus, SwarmUI and Draw Things
replay with --model where their settings map to the WebUI's (`sdcli info` shows how).

Examples:

  sdcli replay outputs/00000-42.png

  sdcli replay outputs/00000-42.png --seed 43 --steps 40 -o variants

  sdcli replay webui-image.png --model ./sd15

  sdcli replay webui-image.png --webui-dir ~/stable-diffusion-webui --model v1-5-pruned-emaonly

  sdcli replay comfyui-image.png --model ./sd15 --dry-run

  sdcli replay comfyui-img2img.png --model ./sd15 -i photo.png

Image metadata is untrusted: replay first lists every setting it will use and
where it came from (the sdcli record, the WebUI infotext, a flag or the default)
and names the keys it cannot honour. It loads the image's model only if that is
an existing local folder; a hub id needs --model or --trust-metadata. It makes
one image unless --count/--batch-size say otherwise.
"""


@o.asset_options
def replay(
    image: Annotated[Path, typer.Argument(help="An image with generation parameters.", show_default=False)],
    prompt: o.PromptOpt = None,
    negative_prompt: Annotated[str | None, typer.Option("--negative-prompt", "-n", show_default=False,
                                                        help="Override the negative prompt.")] = None,
    steps: Annotated[int | None, typer.Option("--steps", "-s", show_default=False, help=KEEP)] = None,
    cfg_scale: Annotated[float | None, typer.Option("--cfg-scale", "-c", show_default=False, help=KEEP)] = None,
    seed: o.Seed = None,
    subseed: o.Subseed = None,
    subseed_strength: Annotated[float | None, typer.Option("--subseed-strength", show_default=False,
                                                           help=KEEP)] = None,
    width: o.Width = None,
    height: o.Height = None,
    sampler: Annotated[str | None, typer.Option("--sampler", show_default=False, help=KEEP)] = None,
    schedule: Annotated[str | None, typer.Option("--schedule", show_default=False, help=KEEP)] = None,
    clip_skip: Annotated[int | None, typer.Option("--clip-skip", show_default=False, help=KEEP)] = None,
    batch_size: Annotated[int | None, typer.Option("--batch-size", "-b", show_default=False,
                                                   help="Images in parallel [default: 1]")] = None,
    count: Annotated[int | None, typer.Option("--count", show_default=False,
                                              help="Batches one after another [default: 1]")] = None,
    model: Annotated[str | None, typer.Option("--model", "-m", show_default=False,
                                              help="Use this model instead of the image's.")] = None,
    trust_metadata: Annotated[bool, typer.Option("--trust-metadata", help="Let the image's metadata name a hub "
                                                 "model to download.")] = False,
    refiner: Annotated[str | None, typer.Option("--refiner", show_default=False,
                                                help="Use this refiner instead of the image's.")] = None,
    control_image: Annotated[list[Path] | None, typer.Option(
        "--control-image", show_default=False, metavar="IMG",
        help="Control image of each of the image's ControlNet units, in order (a WebUI infotext does not store "
        "them; an sdcli image's own are used by default).")] = None,
    input_image: Annotated[list[Path] | None, typer.Option(
        "--image", "-i", show_default=False, metavar="INPUT",
        help="The input image of an img2img image (ComfyUI's LoadImage file: by default found by its name beside "
        "the image or in --comfy-dir's input/ folder; an sdcli image: instead of its own); of a ComfyUI edit "
        "graph (ReferenceLatent), its reference images, one -i each in the graph's order.")] = None,
    low_bits: Annotated[str | None, typer.Option(
        "--low-bits", show_default=False, help="Store the diffusion model this way instead of as the image's "
        "`Diffusion in Low Bits` says (Automatic: as the file has it, e.g. a bnb-nf4 image on a CPU).")] = None,
    hires_upscaler: Annotated[str | None, typer.Option("--hires-upscaler", show_default=False,
                                                       help="Use this hires upscaler (name or file) instead of the "
                                                       "image's.")] = None,
    offline: o.Offline = False,
    device: o.Device = "auto",
    dtype: o.Dtype = "auto",
    attention_slicing: o.Slicing = "auto",
    xformers: o.Xformers = False,
    output: o.Output = o.DEFAULTS["output"],
    name: o.Name = "[num]-[seed]",
    image_format: o.ImageFormat = "png",
    quality: o.Quality = 90,
    json_out: o.Json = False,
    quiet: o.Quiet = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show the job replay would run (as a command line; "
                                          "with --json, the request as JSON) and stop: nothing is loaded.")] = False,
    **flags: Any,
) -> None:
    from sdcli.cli.common import asset_options, run_and_report
    from sdcli.cli.ui import set_quiet, show_replay_plan
    from sdcli.io.replay import plan_replay, read_metadata

    if prompt == "-":
        from sdcli.cli.common import read_stdin

        prompt = read_stdin("--prompt")
    overrides = {"prompt": prompt, "negative_prompt": negative_prompt, "steps": steps, "cfg_scale": cfg_scale,
                 "seed": seed, "width": width, "height": height, "sampler": sampler, "schedule": schedule,
                 "clip_skip": clip_skip, "subseed": subseed, "subseed_strength": subseed_strength,
                 "batch_size": batch_size, "count": count, "refiner": refiner, "low_bits": low_bits}
    set_quiet(quiet)
    model = model or _model_by_name(image, flags)
    plan = plan_replay(image, overrides, model, trust_metadata, check_model=not dry_run,
                       control_images=[str(p) for p in control_image] if control_image else None,
                       input_images=input_image,
                       input_dirs=(Path(flags["comfy_dir"]),) if flags.get("comfy_dir") else ())
    if hires_upscaler is not None:
        plan = _with_hires_upscaler(plan, hires_upscaler)
    show_replay_plan(image, plan)
    if dry_run:
        from sdcli.cli.ui import json_line
        from sdcli.request.flags import as_command, as_json

        print(json_line(as_json(plan.request, plan.model)) if json_out else as_command(plan.request, plan.model))
        return
    run_and_report(plan.request, plan.model, offline=offline, device=device, dtype=dtype,
                   attention_slicing=attention_slicing, xformers=xformers, output=output, name=name,
                   json_out=json_out, quiet=quiet, image_format=image_format, quality=quality,
                   assets=asset_options(*_with_recorded_assets(read_metadata(image), flags)))


RECORDED_KEYS = ("Lora hashes", "TI hashes", "VAE hash", "VAE")


def _with_recorded_assets(meta: Any, flags: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    """The add-on flags, defaulting to the image's own (sdcli's record), and the hashes it recorded."""
    from sdcli.request.modules import modules_from_infotext

    record = (meta.replay or {}).get("assets") or {}
    flags = {**flags, "lora": flags.get("lora") or record.get("loras"),
             "embedding": flags.get("embedding") or record.get("embeddings"),
             "vae": flags.get("vae") or record.get("vae")}
    recorded = {key: meta.parameters[key] for key in RECORDED_KEYS if key in meta.parameters}
    vae, _ = modules_from_infotext(meta.parameters)  # Forge's `Module N`: its VAE, found by name in the VAE folder
    if vae and "VAE" not in recorded:
        recorded["VAE"] = vae
    return flags, recorded


def _model_by_name(image: Path, flags: dict[str, Any]) -> str | None:
    """A WebUI/Forge image's `Model: NAME`, to find in the models folder when one is given (else None: replay
    asks for --model)."""
    from sdcli.io.replay import read_metadata

    if not any(flags.get(k) for k in ("models_dir", "webui_dir", "comfy_dir")):
        return None
    meta = read_metadata(image)
    return meta.parameters.get("Model") if meta.replay is None else None


def _with_hires_upscaler(plan: Any, upscaler: str) -> Any:
    """--hires-upscaler: the image's hires pass with another upscaler (e.g. a file for a WebUI name)."""
    from dataclasses import replace

    from sdcli.errors import UsageError

    if plan.request.hires is None:
        raise UsageError("--hires-upscaler: this image had no hires pass")
    request = replace(plan.request, hires=replace(plan.request.hires, upscaler=upscaler))
    return replace(plan, request=request, sources={**plan.sources, "hires": "--hires-upscaler"})
