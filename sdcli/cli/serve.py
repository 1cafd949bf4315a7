"""`sdcli serve`: keep models loaded and answer the AUTOMATIC1111 WebUI API."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from sdcli.cli import options as o

HELP = """Serve the AUTOMATIC1111 WebUI API (/sdapi/v1/txt2img, img2img, options, the lists clients read,
extras, png-info, progress, interrupt, skip; the ControlNet extension's /controlnet/* and alwayson_scripts
units) with models kept loaded.

Binds 127.0.0.1 unless --listen. One generation runs at a time; others wait in a
bounded queue (503 with Retry-After when full); SIGTERM lets the running job finish.
`sdcli txt2img --server http://127.0.0.1:7860 ...` (or SDCLI_SERVER) sends CLI jobs
here: same files, same pixels, no model load.

Requests name models, never files: the served models (-m) and, with --models-dir or
--webui-dir, names in that folder (ESRGAN/ upscalers, Stable-diffusion/ refiners, Lora/,
embeddings/, VAE/), found as the CLI finds them. A path or an unknown name: 422.

Examples:

  sdcli serve -m ./my-model -m ./other-model --port 7860

  sdcli serve -m sdxl-base --models-dir ~/sd/models   # refiner_checkpoint, hr_upscaler, <lora:...> by name

  sdcli serve -m ./my-model --listen --api-auth me:secret
"""

SERVE = "Server"
Models = Annotated[list[str] | None, typer.Option(
    "--model", "-m", show_default=False, rich_help_panel=o.MODEL,
    help="A model to serve: a path, hub id or name in the models folder (repeat for several; the first is "
    "loaded at start, others on request) (default: the tiny random-weight demo model).")]
ModelsDir = Annotated[str | None, typer.Option(
    "--models-dir", envvar="SDCLI_MODELS_DIR", show_default=False, metavar="DIR", rich_help_panel=o.ASSETS,
    help="Models folder laid out like the WebUI's models/ (ESRGAN/, Stable-diffusion/, Lora/, embeddings/, VAE/): "
    "requests name upscalers, refiners, LoRAs, embeddings and VAEs there (default: none; built-in upscalers only).")]
WebuiDir = Annotated[str | None, typer.Option(
    "--webui-dir", show_default=False, metavar="DIR", rich_help_panel=o.ASSETS,
    help="An AUTOMATIC1111 WebUI install: its models/ folders and embeddings/ serve names as with --models-dir.")]


def serve(
    model: Models = None,
    port: Annotated[int, typer.Option("--port", help="TCP port.", rich_help_panel=SERVE)] = 7860,
    listen: Annotated[bool, typer.Option("--listen", help="Bind 0.0.0.0 (all interfaces) instead of 127.0.0.1.",
                                         rich_help_panel=SERVE)] = False,
    api_auth: Annotated[str | None, typer.Option("--api-auth", show_default=False, rich_help_panel=SERVE,
                                                 help="user:password[,user2:password2] for HTTP Basic auth.")] = None,
    max_body_mb: Annotated[int, typer.Option("--max-body-mb", help="Largest request body in MiB.",
                                             rich_help_panel=SERVE)] = 64,
    max_pixels: Annotated[int, typer.Option("--max-pixels", help="Largest width x height a request may ask for.",
                                            rich_help_panel=SERVE)] = 2048 * 2048,
    max_images: Annotated[int, typer.Option("--max-images", help="Most images (batch_size x n_iter) per request.",
                                            rich_help_panel=SERVE)] = 16,
    queue_size: Annotated[int, typer.Option(
        "--queue-size", rich_help_panel=SERVE,
        help="Requests the server holds at once, the running one included; more get 503 with Retry-After.")] = 8,
    cors_allow_origins: Annotated[str | None, typer.Option(
        "--cors-allow-origins", show_default=False, metavar="ORIGINS", rich_help_panel=SERVE,
        help="Comma-separated origins browsers may call the API from (CORS), as the WebUI's flag (default: none: "
        "no CORS headers).")] = None,
    cors_allow_origins_regex: Annotated[str | None, typer.Option(
        "--cors-allow-origins-regex", show_default=False, metavar="REGEX", rich_help_panel=SERVE,
        help="Origins allowed by a regular expression (CORS), as the WebUI's flag.")] = None,
    models_dir: ModelsDir = None,
    webui_dir: WebuiDir = None,
    comfy_dir: o.ComfyDir = None,
    styles: Annotated[list[str] | None, typer.Option(
        "--styles", metavar="FILE", show_default=False, rich_help_panel=o.ASSETS,
        help="A WebUI styles.csv whose styles requests name in `styles` (repeat for several; a --webui-dir's "
        "styles.csv is read too).")] = None,
    output: Annotated[Path, typer.Option("--output", "-o", rich_help_panel=SERVE,
                                         help="Where requests with save_images: true write their images, named "
                                         "as the CLI names them.")] = Path("outputs"),
    offline: o.Offline = False,
    device: o.Device = "auto",
    dtype: o.Dtype = "auto",
    attention_slicing: o.Slicing = "auto",
    xformers: o.Xformers = False,
    vae_tiling: o.VaeTiling = "auto",
    cpu_offload: o.CpuOffload = "auto",
    compile: o.Compile = False,
    channels_last: o.ChannelsLast = False,
    tf32: o.Tf32 = False,
    fuse_qkv: o.FuseQkv = False,
) -> None:
    from sdcli.cli.common import runtime_options
    from sdcli.cli.ui import note
    from sdcli.errors import UsageError

    try:
        import uvicorn  # noqa: F401  (a missing server extra is named here)

        from sdcli.server import live
        from sdcli.server.app import Limits, create_app
        from sdcli.server.engine import Engine
    except ImportError as exc:
        raise UsageError(f"serve: {exc.name} is not installed (pip install 'sdcli[server]')") from None
    auth = parse_auth(api_auth)
    if cors_allow_origins_regex is not None:
        import re

        try:
            re.compile(cors_allow_origins_regex)
        except re.error as exc:
            raise UsageError(f"--cors-allow-origins-regex: {cors_allow_origins_regex!r} is not a regular "
                             f"expression ({exc})") from None
    for flag, value in (("--max-body-mb", max_body_mb), ("--max-pixels", max_pixels), ("--max-images", max_images),
                        ("--queue-size", queue_size)):
        if value < 1:
            raise UsageError(f"{flag}: {value} must be 1 or more")
    if not 0 < port < 65536:
        raise UsageError(f"--port: {port} is not a TCP port (1-65535)")
    runtime = runtime_options(locals())
    from sdcli.request.styles import load_styles

    prompt_styles = load_styles(styles or [], webui_dir)
    engine = Engine.from_specs(model or [], runtime, models_dir=models_dir, webui_dir=webui_dir, comfy_dir=comfy_dir,
                               queue_size=queue_size, styles=prompt_styles, output=output)
    note(f"loading {engine.current.title} ...")
    engine.warm_up()
    host = "0.0.0.0" if listen else "127.0.0.1"
    if listen and not auth:
        note("warning: --listen without --api-auth: anyone who can reach this machine can use the server")
    origins = tuple(o.strip() for o in (cors_allow_origins or "").split(",") if o.strip())
    app = create_app(engine, limits=Limits(max_body_mb << 20, max_pixels, max_images), auth=auth,
                     flags={"listen": listen, "port": port, "styles_files": styles or []},
                     cors_origins=origins, cors_origin_regex=cors_allow_origins_regex)
    for flag, folder in (("--models-dir", models_dir), ("--webui-dir", webui_dir), ("--comfy-dir", comfy_dir)):
        if folder:
            note(f"requests may name upscalers, refiners, LoRAs, embeddings and VAEs in {folder} ({flag})")
    note(f"serving {len(engine.models)} model(s) on http://{host}:{port} (Ctrl-C stops)")
    live.serve(app, engine, host, port)


def parse_auth(value: str | None) -> dict[str, str] | None:
    """--api-auth user:pass[,user:pass] -> {user: pass}."""
    from sdcli.errors import UsageError

    if value is None:
        return None
    users = {}
    for pair in value.split(","):
        user, sep, password = pair.strip().partition(":")
        if not sep or not user or not password:
            raise UsageError(f"--api-auth: {pair.strip()!r} is not user:password")
        if not pair.strip().isascii():  # HTTP Basic credentials reach the server as ASCII only
            raise UsageError(f"--api-auth: {user + ':…'!r} is not ASCII; use ASCII users and passwords")
        users[user] = password
    return users

