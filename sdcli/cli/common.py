"""What every generating command does with its flags: flags -> request -> run_and_report."""

from __future__ import annotations

from typing import Any

from sdcli.request.fields import FIELDS

# Flags that map one to one onto GenerationRequest fields: the field table's flags of the request's own
# fields (the prompt comes as PROMPT or --prompt, an edit's reference images as its -i; the parts' flags are each
# command's own).
REQUEST_FLAGS = tuple(row.name for row in FIELDS if row.flag and not row.part and row.name not in ("prompt",
                                                                                                  "references"))
# The order a batch manifest has recorded these options in since sdcli 0.1; options added later follow.
# Kept so that the manifest of the same command is the same file (`recorded_options`).
_RECORD_ORDER = ("negative_prompt", "steps", "cfg_scale", "seed", "subseed", "subseed_strength", "width", "height",
                 "batch_size", "count", "sampler", "schedule", "clip_skip", "prediction_type", "refiner",
                 "refiner_switch", "rng", "emphasis", "eta", "ensd", "s_churn", "s_tmin", "s_tmax", "s_noise",
                 "sigma_min", "sigma_max")
# Flags passed through to run_and_report.
RUNTIME_FLAGS = ("device", "dtype", "attention_slicing", "xformers", "offline", "vae_tiling", "cpu_offload",
                 "compile", "channels_last", "tf32", "fuse_qkv")
TAIL_FLAGS = (*RUNTIME_FLAGS, "server", "output", "name", "json_out", "quiet", "image_format", "quality")


def recorded_options(options: dict[str, Any]) -> dict[str, Any]:
    """A batch's options as its manifest records them (for --resume): request options in their recorded
    order, those added later only when set (request.records.RECORDED_WHEN_SET), then the rest."""
    from sdcli.request.records import RECORDED_WHEN_SET

    def rank(key: str) -> int:
        return _RECORD_ORDER.index(key) if key in _RECORD_ORDER else len(_RECORD_ORDER)

    kept = {k: v for k, v in options.items() if k not in RECORDED_WHEN_SET or v not in (RECORDED_WHEN_SET[k], None)}
    request = sorted((k for k in kept if k in REQUEST_FLAGS), key=rank)
    return {**{k: kept[k] for k in request}, **{k: v for k, v in kept.items() if k not in REQUEST_FLAGS}}


def runtime_options(flags: dict[str, Any]) -> Any:
    """RuntimeOptions from a command's device/precision flags (flags a command lacks keep their defaults)."""
    from sdcli.models.runtime import RuntimeOptions

    return RuntimeOptions(**{name: flags[name] for name in RUNTIME_FLAGS if name in flags})


def asset_options(flags: dict[str, Any], recorded: dict[str, str] | None = None) -> Any:
    """AssetOptions from a command's models-folder and add-on flags."""
    from sdcli.models.assets import AssetOptions

    return AssetOptions(models_dir=flags.get("models_dir"), webui_dir=flags.get("webui_dir"),
                        comfy_dir=flags.get("comfy_dir"),
                        loras=tuple(flags.get("lora") or ()), embeddings=tuple(flags.get("embedding") or ()),
                        vae=flags.get("vae"), allow_pickle=bool(flags.get("allow_pickle")),
                        no_half_vae=bool(flags.get("no_half_vae")), recorded=recorded or {})


def run_command(mode: str, flags: dict[str, Any], **parts: Any) -> None:
    """Build the request from a command's `flags` (its locals()) plus mode `parts`, run it, render it."""
    request = build_request(mode, flags, **parts)
    run_and_report(request, flags["model"], **{name: flags[name] for name in TAIL_FLAGS},
                   assets=asset_options(flags))


def merge_quantize(flags: dict[str, Any]) -> dict[str, Any]:
    """The flags with --quantize's value as the request's storage (low_bits: one setting, two spellings); both
    given is refused. A --quantize name given to --low-bits is kept as its Forge label (nf4: bnb-nf4): refusals
    tell the two flags apart by the spelling (job.plan.storage_flag), and name the flag given."""
    from sdcli.errors import UsageError
    from sdcli.request.storage import QUANTIZE
    from sdcli.request.vocabulary import low_bits_label

    quantize, low_bits = flags.get("quantize"), flags.get("low_bits")
    if quantize is None:
        return flags if low_bits is None else {**flags, "low_bits": low_bits_label(low_bits)}
    if flags.get("low_bits") is not None:
        raise UsageError("--quantize: not with --low-bits; both say how the diffusion model is stored (give one)")
    if quantize.strip().lower() not in QUANTIZE:
        raise UsageError(f"--quantize: unknown value {quantize!r}; choose from {', '.join(QUANTIZE)}")
    return {**flags, "low_bits": quantize.strip().lower()}


def build_request(mode: str, flags: dict[str, Any], **parts: Any) -> Any:
    """The GenerationRequest of a command's `flags` (its locals()) plus mode `parts` (not validated yet)."""
    from sdcli.cli.control_options import control_part
    from sdcli.cli.style_options import apply_style_flags
    from sdcli.errors import UsageError
    from sdcli.request.generation import GenerationRequest

    prompt, prompt_opt = flags["prompt"], flags["prompt_opt"]
    if prompt is not None and prompt_opt is not None:
        raise UsageError("PROMPT: give the prompt once, either as an argument or with --prompt")
    if prompt is None and prompt_opt is None and mode in ("txt2img", "edit"):
        raise UsageError('PROMPT: missing; give a prompt (or --prompt "" to generate without one)')
    text = prompt if prompt is not None else (prompt_opt or "")
    flags = merge_quantize(flags)
    request = GenerationRequest(
        prompt=read_stdin("PROMPT") if text == "-" else text, mode=mode,
        **{name: flags[name] for name in REQUEST_FLAGS if name in flags}, **parts, **control_part(flags),
    )
    return apply_style_flags(request, flags)


def typed(ctx: Any, option: str) -> bool:
    """Whether the user gave `option` (on the command line or, for --model, as SDCLI_MODEL)."""
    source = ctx.get_parameter_source(option)
    return source is not None and source.name in ("COMMANDLINE", "ENVIRONMENT")  # typer's own click or real click


def read_stdin(what: str) -> str:
    """`-` as a prompt: the text on stdin (one trailing newline dropped), size-limited like any prompt."""
    import sys

    from sdcli.errors import UsageError
    from sdcli.request.fields import MAX_PROMPT_CHARS

    if sys.stdin is None or sys.stdin.isatty():
        raise UsageError(f"{what}: '-' reads the prompt from stdin, but stdin is a terminal; pipe the prompt in")
    data = sys.stdin.buffer.read(4 * MAX_PROMPT_CHARS + 1)
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise UsageError(f"{what}: stdin is not valid UTF-8 (byte {exc.start + 1})") from None
    return text.removesuffix("\n").removesuffix("\r")


def run_and_report(request: Any, model: str | None, *, output: Any, name: str, json_out: bool,
                   server: str | None = None, quiet: bool = False, image_format: str = "png", quality: int = 90,
                   assets: Any = None, **runtime_flags: Any) -> None:
    """The shared tail of every generating command: runtime flags -> run_job (here or on --server) -> records."""
    from sdcli.cli.ui import CliReporter, set_quiet
    from sdcli.job.run import run_job
    from sdcli.job.write import OutputOptions

    set_quiet(quiet)
    runtime = runtime_options(runtime_flags)
    out = OutputOptions(output, name, image_format, quality)
    with CliReporter(as_json=json_out) as reporter:
        if server:  # the server's loaded model runs the job; no torch in this process
            from sdcli.models.startup import end as end_start_pause
            from sdcli.server.client import run_remote_job

            end_start_pause()  # no model loads here to end the start's collector pause (models.startup)
            records = run_remote_job(server, request, runtime, model, out, reporter, assets)
        else:
            records = run_job(request, runtime, model, out, reporter, assets=assets)
    reporter.summary(records)
