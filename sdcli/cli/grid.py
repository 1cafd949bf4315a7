"""`sdcli grid`: a labelled contact sheet of a batch."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

HELP = """Write a contact sheet of a batch: each image with its prompt excerpt and seed.

Examples:

  sdcli grid outputs/prompts/manifest.jsonl

  sdcli grid out/run1/manifest.jsonl -o sheet.png --columns 8
"""


def grid(
    manifest: Annotated[Path, typer.Argument(help="A batch's manifest.jsonl.", show_default=False)],
    output: Annotated[Path | None, typer.Option("--output", "-o", show_default=False,
                                                help="PNG to write [default: grid.png beside the manifest]")] = None,
    columns: Annotated[int | None, typer.Option("--columns", min=1, show_default=False,
                                                help="Images per row [default: about square]")] = None,
) -> None:
    from sdcli.batch.grid import write_grid

    print(write_grid(manifest, output, columns))
