"""Typer wiring: the app, its commands, and the one place errors become exit codes."""

from __future__ import annotations

import os
import traceback
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

try:  # typer >= 0.2x vendors its own click
    from typer._click import exceptions as click_exc
except ImportError:  # pragma: no cover - older typer on real click
    from click import exceptions as click_exc

from sdcli import __version__
from sdcli.cli import batch, grid, img2img, info, inpaint, outpaint, replay, samplers, serve, tiny, txt2img
from sdcli.errors import EXIT_INTERRUPTED, EXIT_RUNTIME, EXIT_USAGE, SdcliError

NoArgsIsHelp = getattr(click_exc, "NoArgsIsHelpError", None) or click_exc.NoArgsIsHelp


def _debug(ctx: typer.Context) -> bool:
    return bool(ctx.find_root().meta.get("sdcli.debug")) or os.environ.get("SDCLI_DEBUG", "") not in ("", "0")


class SdcliGroup(TyperGroup):
    """Turns every failure into `error: <one line>` and an exit code (traceback with --debug)."""

    def invoke(self, ctx: typer.Context) -> Any:
        from sdcli.cli.ui import error

        try:
            return super().invoke(ctx)
        except SdcliError as exc:
            if _debug(ctx):
                traceback.print_exc()
            error(str(exc))
            raise typer.Exit(exc.exit_code) from None
        except NoArgsIsHelp:
            raise
        except click_exc.UsageError as exc:
            hint = f" (see '{exc.ctx.command_path} --help')" if exc.ctx else ""
            error(exc.format_message() + hint)
            raise typer.Exit(EXIT_USAGE) from None
        except (typer.Exit, typer.Abort):
            raise
        except KeyboardInterrupt:
            error("interrupted")
            raise typer.Exit(EXIT_INTERRUPTED) from None
        except Exception as exc:  # a bug or an unexpected library failure: one line unless --debug
            if _debug(ctx):
                traceback.print_exc()
            error(f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''} "
                  "(run with --debug for the traceback)")
            raise typer.Exit(EXIT_RUNTIME) from None


app = typer.Typer(
    cls=SdcliGroup,
    name="sdcli",
    help="Scriptable Stable Diffusion image generation (diffusers), speaking the AUTOMATIC1111 WebUI dialect.",
    epilog="Examples: sdcli txt2img \"a red fox\" | sdcli img2img -i in.png \"a painting\" | "
           "sdcli inpaint -i in.png --mask m.png \"a cat\" | sdcli tiny ./tiny | sdcli samplers",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        print(f"sdcli {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    ctx: typer.Context,
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Print the version and exit.")] = False,
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks (also SDCLI_DEBUG=1).")] = False,
) -> None:
    from sdcli.models.libraries import quiet_libraries

    ctx.meta["sdcli.debug"] = debug
    if debug:
        os.environ["SDCLI_DEBUG"] = "1"
    quiet_libraries()


for module in (txt2img, img2img, inpaint, outpaint, batch, grid, replay, info, samplers, tiny, serve):
    name = module.__name__.rsplit(".", 1)[1]
    app.command(name, help=module.HELP, no_args_is_help=name in ("tiny", "batch", "grid"))(getattr(module, name))


def main() -> None:
    """Console-script entry point."""
    app(prog_name="sdcli")
