"""`sdcli tiny`: write a tiny random-weight checkpoint."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

HELP = """Write a tiny random-weight checkpoint (diffusers folder or single file) for smoke tests and CI.

Offline, a few MB, built in seconds on CPU; the same --seed gives identical weights.
Its images are noise: it exercises every code path of a real model, fast.

Examples:

  sdcli tiny ./tiny-sd1

  sdcli tiny ./tiny --seed 7 && sdcli txt2img -m ./tiny --steps 2 "smoke test"

  sdcli tiny --arch sd2 ./tiny-sd2       # SD 2.x layout: v-prediction, linear attention projections

  sdcli tiny --inpaint ./tiny-inpaint   # 9-channel inpainting checkpoint for sdcli inpaint/outpaint

  sdcli tiny --arch sdxl ./tiny-xl && sdcli tiny --arch sdxl-refiner ./tiny-xl-refiner

  sdcli tiny --arch sdxl --single-file ./tiny-xl.safetensors   # WebUI-style single file

  sdcli tiny --arch flux-dev ./tiny-flux   # Flux.1 dev (flux-schnell; --inpaint: Fill) as a diffusers folder

  sdcli tiny --arch flux-dev --single-file ./f/flux1-dev.safetensors --layout bfl
  sdcli txt2img -m ./f/flux1-dev.safetensors --text-encoder ./f/t5xxl.safetensors \
      --text-encoder ./f/clip_l.safetensors --vae ./f/ae.safetensors --cfg-scale 1 "a cat"
      # Flux --layout: bfl, comfy, diffusers (transformer only: ae, clip_l, t5xxl written beside it),
      # all-in-one (one checkpoint), gguf (OUT.gguf; --gguf-type F32, F16 or Q8_0); --fp8: fp8 weights

  sdcli tiny --controlnet ./tiny-cn   # a tiny ControlNet for the tiny sd1 model (--arch sdxl: for sdxl)
  sdcli tiny --upscaler ./tiny-4x.safetensors   # a tiny ESRGAN upscaler (--upscaler-scale 2 for 2x)
"""


def tiny(
    out_dir: Annotated[Path, typer.Argument(help="Folder to create (must not exist, or be empty); with "
                                        "--single-file, the .safetensors file to write.")],
    arch: Annotated[str, typer.Option("--arch", help="Architecture: sd1, sd2 (v-prediction), sdxl, "
                                      "sdxl-refiner, flux-dev, flux-schnell, flux-control, flux-kontext, sd3, zimage, "
                                      "chroma, qwen-image, qwen-image-edit, qwen-image-edit-plus, flux2-klein, "
                                      "flux2-klein-base or flux2-dev.")] = "sd1",
    seed: Annotated[int, typer.Option("--seed", help="Weight seed.")] = 0,
    inpaint: Annotated[bool, typer.Option("--inpaint", help="A dedicated inpainting checkpoint "
                                          "(9-channel UNet) instead of an ordinary one.")] = False,
    single_file: Annotated[bool, typer.Option("--single-file", help="Write one WebUI-style .safetensors file "
                                              "(original key layout) instead of a diffusers folder.")] = False,
    layout: Annotated[str | None, typer.Option("--layout", help="Flux --single-file: bfl, comfy or diffusers "
                                               "(a transformer file, with ae.safetensors, clip_l.safetensors and "
                                               "t5xxl.safetensors beside it), all-in-one, or gguf.")] = None,
    gguf_type: Annotated[str, typer.Option("--gguf-type", help="--layout gguf: the weights' type: F32, F16, "
                                           "BF16, Q8_0, Q5_1, Q5_0, Q4_1 or Q4_0.")] = "F16",
    fp8: Annotated[bool, typer.Option("--fp8", help="Flux --single-file: store the transformer (all-in-one: "
                                      "everything) as float8_e4m3fn, as the fp8 files people share.")] = False,
    controlnet: Annotated[bool, typer.Option("--controlnet", help="Write a tiny ControlNet for the --arch tiny "
                                             "model (sd1, sd2 or sdxl) instead of a checkpoint; with --single-file "
                                             "one .safetensors file.")] = False,
    upscaler: Annotated[bool, typer.Option("--upscaler", help="Write a tiny ESRGAN upscaler .safetensors "
                                           "(for --hires-upscaler and sdcli upscale) instead.")] = False,
    upscaler_scale: Annotated[int, typer.Option("--upscaler-scale", help="Its factor: 2 or 4.")] = 4,
    json_out: Annotated[bool, typer.Option("--json", help="Print a JSON record on stdout.")] = False,
) -> None:
    from sdcli.cli.ui import console, json_line
    from sdcli.errors import UsageError
    from sdcli.models.tiny import INPAINT_SUFFIX, build_tiny, build_tiny_single_file, folder_bytes

    if upscaler:
        _tiny_upscaler(out_dir, upscaler_scale, seed, json_out)
        return
    if controlnet:
        from sdcli.controlnet.files import build_tiny_controlnet

        path = build_tiny_controlnet(out_dir, arch, seed, single_file)
        kind, size = f"{arch} ControlNet", (path.stat().st_size if single_file else folder_bytes(path))
    elif arch.startswith("flux") and single_file:
        from sdcli.models.tiny_flux import write_tiny_flux_files

        arch += INPAINT_SUFFIX if inpaint else ""
        files = write_tiny_flux_files(out_dir, arch, seed, layout or "all-in-one", gguf_type.upper(), fp8)
        path, kind = out_dir, f"{arch} {layout or 'all-in-one'} files ({', '.join(p.name for p in files.values())})"
        size = sum(p.stat().st_size for p in files.values())
    else:
        if layout is not None:
            raise UsageError("--layout: only for a Flux --arch with --single-file")
        arch += INPAINT_SUFFIX if inpaint else ""
        build = build_tiny_single_file if single_file else build_tiny
        path = build(out_dir, arch=arch, seed=seed)
        kind, size = f"{arch} checkpoint", (path.stat().st_size if single_file else folder_bytes(path))
    if json_out:
        print(json_line({"type": "model", "path": str(path), "arch": arch, "seed": seed, "bytes": size}))
    else:
        print(path)
        console.print(f"tiny {kind} (random weights, seed {seed}): {size / 1e6:.1f} MB")


def _tiny_upscaler(path: Path, scale: int, seed: int, json_out: bool) -> None:
    from sdcli.cli.ui import console, json_line
    from sdcli.errors import UsageError
    from sdcli.models.tiny_assets import write_tiny_upscaler

    if scale not in (2, 4):
        raise UsageError(f"--upscaler-scale: {scale}; a tiny upscaler is 2x or 4x")
    if path.suffix != ".safetensors" or path.exists():
        raise UsageError(f"OUT_DIR: {path} must be a new .safetensors file for --upscaler")
    write_tiny_upscaler(path, scale=scale, seed=seed)
    if json_out:
        print(json_line({"type": "upscaler", "path": str(path), "scale": scale, "seed": seed,
                         "bytes": path.stat().st_size}))
    else:
        print(path)
        console.print(f"tiny {scale}x ESRGAN upscaler (random weights, seed {seed})")
