"""`sdcli info`: print the generation parameters stored in images."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

HELP = """Print the generation parameters stored in images: sdcli's, the WebUI's and Forge's (PNG "parameters"
chunk, JPEG/WebP EXIF UserComment, stealth PNG info in the alpha or RGB bits), ComfyUI's (API prompt graph or UI
workflow), InvokeAI's (all three formats), NovelAI's, Fooocus', SwarmUI's and Draw Things' (XMP).

Other tools' settings are shown as a WebUI infotext (the WebUI's keys and sampler names where they map),
followed by what a replay would do differently; --json keeps the tool's own fields beside them.

Exit code: 0 all files had parameters, 1 none had, 3 some had.

Examples:

  sdcli info outputs/00000-42.png

  sdcli info --json outputs/*.png | jq -r .parameters.Seed

  sdcli info --webui comfyui.png
"""


def info(
    images: Annotated[list[Path], typer.Argument(help="Image files.", show_default=False)],
    json_out: Annotated[bool, typer.Option("--json", help="One JSON record per image on stdout.")] = False,
    webui: Annotated[bool, typer.Option("--webui", help="Only the WebUI infotext (any tool's image written as "
                                        "the WebUI writes it), for tools that read the WebUI's.")] = False,
) -> None:
    from sdcli.cli.ui import error, json_line
    from sdcli.errors import EXIT_PARTIAL, EXIT_RUNTIME, SdcliError
    from sdcli.io.metadata import escape_control
    from sdcli.io.replay import read_metadata

    failed = printed = 0
    for path in images:
        try:
            meta = read_metadata(path)
        except SdcliError as exc:  # one bad file (missing, corrupt, a text bomb) does not stop the others
            error(str(exc))
            failed += 1
            continue
        if json_out:
            print(json_line({"type": "info", **meta.as_json()}))
        else:  # untrusted text: control characters shown escaped, never sent to the terminal
            header = f"== {escape_control(str(path))} ==\n" if len(images) > 1 else ""
            lines = [meta.infotext]
            if not webui and meta.source is not None:
                lines.append(f"(read from {meta.generator} metadata; --json shows its own fields)")
                lines += [f"replay: {note}" for note in meta.notes]
                lines += [f"replay cannot map: {what}" for what in meta.unmapped]
            print(("\n" if printed else "") + header + escape_control("\n".join(lines)))
        printed += 1
    if failed:
        raise typer.Exit(EXIT_RUNTIME if failed == len(images) else EXIT_PARTIAL)
