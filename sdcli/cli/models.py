"""`sdcli models`: list what the models folder holds, with the WebUI's short hashes."""

from __future__ import annotations

from typing import Annotated

import typer

from sdcli.cli import options as o

HELP = """List the checkpoints, LoRAs, embeddings, VAEs, ControlNets and upscalers (ESRGAN/) in the models folder.

The folder is --models-dir (or SDCLI_MODELS_DIR), laid out like the WebUI's (Forge's) models/
folder, --webui-dir, a WebUI/Forge install, or --comfy-dir, a ComfyUI install. "What" is each
model file's family and kind, read from its header (flux-dev transformer (bfl, fp8), t5xxl text
encoder, flux vae, sd1 checkpoint). Hashes are the WebUI's short hashes (SHA-256
of the file: 10 hex digits for checkpoints and VAEs, 12 for LoRAs and embeddings;
ControlNets: the legacy 8-hex hash the ControlNet extension shows), read once and
cached. NAME is what --model, --lora, --vae, --controlnet, --hires-upscaler and <lora:NAME:W> accept.

Examples:

  sdcli models --webui-dir ~/stable-diffusion-webui

  sdcli models --comfy-dir ~/ComfyUI --kind diffusion_model --kind text_encoder

  SDCLI_MODELS_DIR=~/sd/models sdcli models --kind lora --json | jq -r .name
"""

DESCRIBED = ("checkpoint", "diffusion_model", "text_encoder", "vae")  # kinds whose family and kind are shown
KIND_LABELS = {"checkpoint": "Checkpoint", "diffusion_model": "Diffusion model", "text_encoder": "Text encoder",
               "lora": "LoRA", "embedding": "Embedding", "vae": "VAE",
               "controlnet": "ControlNet", "upscaler": "Upscaler", "gfpgan": "GFPGAN", "codeformer": "CodeFormer"}


def models(
    models_dir: o.ModelsDir = None,
    webui_dir: o.WebuiDir = None,
    comfy_dir: o.ComfyDir = None,
    kind: Annotated[list[str] | None, typer.Option(
        "--kind", show_default=False,
        help="Only these kinds: checkpoint, diffusion_model, text_encoder, lora, embedding, vae, controlnet, "
        "upscaler, gfpgan, codeformer (repeatable).")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON on stdout.")] = False,
) -> None:
    from sdcli.errors import UsageError
    from sdcli.models.folders import KINDS, library_from

    if not models_dir and not webui_dir and not comfy_dir:
        raise UsageError("--models-dir: no models folder given; pass --models-dir DIR (or set SDCLI_MODELS_DIR), "
                         "--webui-dir DIR or --comfy-dir DIR")
    for value in kind or ():
        if value not in KINDS:
            raise UsageError(f"--kind: unknown value {value!r}; choose from {', '.join(KINDS)}")
    from sdcli.models.flux_parts import file_kind

    library = library_from(models_dir, webui_dir, comfy_dir)
    rows = [{"kind": entry.kind, "name": entry.name, "hash": entry.short_hash(),
             "what": file_kind(entry.path) if entry.kind in DESCRIBED else "", "path": str(entry.path)}
            for k in KINDS if not kind or k in kind for entry in library.entries(k)]
    if json_out:  # one record per file, in the shared --json schema (cli.ui.json_line)
        from sdcli.cli.ui import json_line

        print("\n".join(json_line({"type": "model_file", **row}) for row in rows))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table("Kind", "Name", "Hash", "What")
    table.add_column("Path", overflow="fold")  # data: never cut short with an ellipsis
    for row in rows:
        table.add_row(KIND_LABELS[row["kind"]], row["name"], row["hash"], row["what"], row["path"])
    Console(soft_wrap=True, markup=False, emoji=False).print(table)  # file names as they are: no markup, no emoji
    folders = ", ".join(f"{KIND_LABELS[k]}: {p}" for k, p in library.folders.items() if not p.is_dir())
    if folders:
        Console(stderr=True, emoji=False).print(f"not found (nothing listed): {folders}", markup=False)
