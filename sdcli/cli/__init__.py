"""Typer wiring: the app, its commands, and the one place errors become exit codes."""

from __future__ import annotations

import os
import sys
import traceback
import weakref
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

try:  # typer >= 0.2x vendors its own click
    from typer._click import exceptions as click_exc
except ImportError:  # pragma: no cover - older typer on real click
    from click import exceptions as click_exc

from sdcli import __version__
from sdcli.cli import (
    batch,
    edit,
    grid,
    img2img,
    info,
    inpaint,
    models,
    outpaint,
    replay,
    samplers,
    serve,
    tiny,
    txt2img,
    xyz,
)
from sdcli.cli import upscale as upscale_command
from sdcli.errors import EXIT_INTERRUPTED, EXIT_RUNTIME, EXIT_USAGE, SdcliError
from sdcli.models.startup import end as end_start_pause
from sdcli.models.startup import pause as pause_start

EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE, what a shell reports for a writer whose reader went away

NoArgsIsHelp = getattr(click_exc, "NoArgsIsHelpError", None) or click_exc.NoArgsIsHelp


def _debug(ctx: typer.Context) -> bool:
    return bool(ctx.find_root().meta.get("sdcli.debug")) or os.environ.get("SDCLI_DEBUG", "") not in ("", "0")


def _usage_error(exc: Any) -> typer.Exit:
    """A command-line parser error in sdcli's one-line format."""
    from sdcli.cli.ui import error

    hint = f" (see '{exc.ctx.command_path} --help')" if exc.ctx else ""
    error(exc.format_message() + hint)
    return typer.Exit(EXIT_USAGE)


_TIDIED: weakref.WeakSet[Any] = weakref.WeakSet()  # commands whose help texts _tidy_help has rewritten


def _tidy_help(command: Any) -> None:
    """Help texts are plain text: escape Rich markup ([num], [xformers] ...) and show flags as flags."""
    from rich.markup import escape

    if command in _TIDIED:
        return
    _TIDIED.add(command)
    for attr in ("help", "epilog"):
        if getattr(command, attr, None):
            setattr(command, attr, escape(getattr(command, attr)))
    for param in command.params:
        if getattr(param, "help", None):
            param.help = escape(param.help)
        _as_flag(param)
    original = command.get_help_option  # --help/-h is made per context, so mark it when it is made

    def help_option(ctx: Any) -> Any:
        return _as_flag(original(ctx))

    command.get_help_option = help_option


def _as_flag(param: Any) -> Any:
    """Show an on/off flag as a flag (no "<bool>" value column): it takes no value."""
    if getattr(param, "is_flag", False) and param.metavar is None:
        param.metavar = ""
    return param


class SdcliGroup(TyperGroup):
    """Turns every failure into `error: <one line>` and an exit code (traceback with --debug)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for command in self.commands.values():
            _tidy_help(command)

    def format_help(self, ctx: Any, formatter: Any) -> None:
        _tidy_help(self)  # here, not in __init__: typer adds the completion options after construction
        super().format_help(ctx, formatter)

    def make_context(self, info_name: str | None, args: list[str], parent: Any = None, **extra: Any) -> Any:
        try:
            return super().make_context(info_name, args, parent=parent, **extra)
        except NoArgsIsHelp:
            raise
        except click_exc.UsageError as exc:  # `sdcli --bogus`: before any command runs
            raise _usage_error(exc) from None

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
            raise _usage_error(exc) from None
        except (typer.Exit, typer.Abort):
            raise
        except BrokenPipeError:  # `sdcli info *.png | head`: the reader left; stop quietly as SIGPIPE would
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            raise typer.Exit(EXIT_BROKEN_PIPE) from None
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
    add_completion=True,  # --install-completion / --show-completion for bash, zsh, fish, PowerShell
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        print(f"sdcli {__version__}")
        raise typer.Exit()


# Commands whose first model load ends the collector's pause over the process's start (models.startup, begun
# by main()); every other command ends it as it starts (a server or an upscale of a folder may run long).
LOADS_A_MODEL = frozenset({"txt2img", "img2img", "inpaint", "outpaint", "edit", "batch", "xyz", "replay"})


@app.callback()
def root(
    ctx: typer.Context,
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Print the version and exit.")] = False,
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks (also SDCLI_DEBUG=1).")] = False,
) -> None:
    from sdcli.cli.ui import set_quiet
    from sdcli.models.quiet import quiet_libraries

    set_quiet(False)  # each invocation starts talking (in-process callers run several)
    if ctx.invoked_subcommand not in LOADS_A_MODEL:  # nothing ends the start's collector pause later: end it now
        end_start_pause()
    ctx.meta["sdcli.debug"] = debug
    if debug:
        os.environ["SDCLI_DEBUG"] = "1"
    else:
        import warnings

        warnings.simplefilter("ignore")  # numpy, Pillow, hub ... warnings: sdcli reports what matters itself
    quiet_libraries()


COMMANDS = (txt2img, img2img, inpaint, outpaint, edit, upscale_command, batch, grid, replay, info, models, samplers,
            tiny, serve, xyz)
for module in COMMANDS:
    name = module.__name__.rsplit(".", 1)[1]
    no_args = name in ("tiny", "batch", "grid", "upscale", "xyz", "edit")
    app.command(name, help=module.HELP, no_args_is_help=no_args)(getattr(module, name))


def main() -> None:
    """Console-script entry point (and `python -m sdcli`): the start runs with the collector paused."""
    pause_start()
    app(prog_name="sdcli")
