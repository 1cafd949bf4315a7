"""What every generating command does with its flags: flags -> request -> run_and_report."""

from __future__ import annotations

from typing import Any

# Flags that map one to one onto GenerationRequest / RuntimeOptions fields.
REQUEST_FLAGS = ("negative_prompt", "steps", "cfg_scale", "seed", "subseed", "subseed_strength", "width", "height",
                 "batch_size", "count", "sampler", "schedule", "clip_skip", "rng", "emphasis", "eta", "ensd",
                 "s_churn", "s_tmin", "s_tmax", "s_noise", "sigma_min", "sigma_max")
# Flags passed through to run_and_report.
TAIL_FLAGS = ("offline", "device", "dtype", "attention_slicing", "xformers", "output", "name", "json_out")
RUNTIME_FLAGS = ("device", "dtype", "attention_slicing", "xformers", "offline")


def runtime_options(flags: dict[str, Any]) -> Any:
    """RuntimeOptions from a command's device/precision flags."""
    from sdcli.models.runtime import RuntimeOptions

    return RuntimeOptions(**{name: flags[name] for name in RUNTIME_FLAGS})


def run_command(mode: str, flags: dict[str, Any], **parts: Any) -> None:
    """Build the request from a command's `flags` (its locals()) plus mode `parts`, run it, render it."""
    from sdcli.core.request import GenerationRequest
    from sdcli.errors import UsageError

    prompt, prompt_opt = flags["prompt"], flags["prompt_opt"]
    if prompt is not None and prompt_opt is not None:
        raise UsageError("PROMPT: give the prompt once, either as an argument or with --prompt")
    request = GenerationRequest(
        prompt=prompt if prompt is not None else (prompt_opt or ""), mode=mode,
        **{name: flags[name] for name in REQUEST_FLAGS if name in flags}, **parts,
    )
    run_and_report(request, flags["model"], **{name: flags[name] for name in TAIL_FLAGS})


def run_and_report(request: Any, model: str | None, *, offline: bool, device: str, dtype: str,
                   attention_slicing: str, xformers: bool, output: Any, name: str, json_out: bool) -> None:
    """The shared tail of every generating command: runtime flags -> run_job -> printed records."""
    from sdcli.cli.ui import CliReporter
    from sdcli.core.job import OutputOptions, run_job

    runtime = runtime_options(locals())
    with CliReporter(as_json=json_out) as reporter:
        records = run_job(request, runtime, model, OutputOptions(output, name), reporter)
    reporter.summary(records)
