"""`sdcli samplers`: list the sampler table."""

from __future__ import annotations

from typing import Annotated

import typer

HELP = """List the supported samplers (WebUI names), how each runs, and their schedule types.

Examples:

  sdcli samplers

  sdcli samplers --json | jq -r .name
"""


def samplers(
    json_out: Annotated[bool, typer.Option("--json", help="One JSON record per sampler on stdout.")] = False,
) -> None:
    from sdcli.sampling.samplers import SAMPLERS, SCHEDULE_LABELS

    rows = [{
        "name": s.name,
        "runs": f"sdcli loop: {s.function}" if s.function else f"diffusers: {s.scheduler}",
        "scheduler": s.scheduler,
        "config": s.config,
        "automatic_schedule": SCHEDULE_LABELS[s.automatic],
        "schedules": [SCHEDULE_LABELS[x] for x in s.schedules],
        "aliases": list(s.aliases),
        "note": s.note,
    } for s in SAMPLERS]
    if json_out:
        from sdcli.cli.ui import json_line

        print("\n".join(json_line({"type": "sampler", **row}) for row in rows))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table("Sampler", "Runs as", "Automatic =", "Schedules", "Aliases / note")
    for r in rows:
        table.add_row(r["name"], r["runs"],
                      r["automatic_schedule"], ", ".join(r["schedules"]),
                      ", ".join(r["aliases"]) + (f"  ({r['note']})" if r["note"] else ""))
    Console(emoji=False).print(table)
