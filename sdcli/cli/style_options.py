"""The prompt style flags (--style NAME, --styles FILE) of the generating commands; applied in common.build_request."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

import typer

from sdcli.cli import options as o

Style = Annotated[list[str] | None, typer.Option(
    "--style", metavar="NAME", show_default=False, rich_help_panel=o.ASSETS,
    help="Apply a prompt style (repeat for several, applied in order) from --styles files or --webui-dir's "
    "styles.csv, as the WebUI: {prompt} in a style takes the prompt, otherwise the style is appended.")]
StylesFile = Annotated[list[str] | None, typer.Option(
    "--styles", metavar="FILE", show_default=False, rich_help_panel=o.ASSETS,
    help="A WebUI styles.csv (name, prompt, negative_prompt) that --style names (repeat for several).")]


def _styles(style: Style = None, styles_file: StylesFile = None) -> None:
    """Template only: the style flags."""


def style_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """Give a command (decorated by options.shared_options) the style flags too."""
    return o._append(func, (_styles,), ())


def apply_style_flags(request: Any, flags: dict[str, Any]) -> Any:
    """The request with the --style styles applied to its prompts (unchanged without --style)."""
    if not flags.get("style"):
        if flags.get("styles_file"):
            from sdcli.request.styles import load_styles

            load_styles(flags["styles_file"], None)  # a bad file is an error even when no style is named
        return request
    from sdcli.request.styles import load_styles, styled

    return styled(request, flags["style"], load_styles(flags.get("styles_file") or [], flags.get("webui_dir")),
                  "--style")
