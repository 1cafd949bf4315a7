"""Planning a batch before anything loads: its options; models and add-ons checked; units grouped."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from sdcli.batch.parse import BatchFileError, BatchLine, BatchUnit
from sdcli.errors import SdcliError, UsageError
from sdcli.job.plan import JobPlan
from sdcli.job.write import OutputOptions
from sdcli.models.assets import AssetOptions
from sdcli.models.runtime import RuntimeOptions
from sdcli.request.generation import GenerationRequest


@dataclass(frozen=True)
class BatchOptions:
    """A batch: the prompt file, the command-line defaults, and how to run and write it."""

    file: Path
    fmt: str = "auto"
    defaults: GenerationRequest = field(default_factory=lambda: GenerationRequest(prompt=""))
    seed: int | None = None
    model: str | None = None
    runtime: RuntimeOptions = field(default_factory=RuntimeOptions)
    output: OutputOptions = field(default_factory=OutputOptions)
    resume: bool = False
    assets: AssetOptions = field(default_factory=AssetOptions)
    record: dict[str, Any] = field(default_factory=dict)  # the options, kept in the manifest for --resume
    group: int = 8  # most images one pipeline call may batch together (1 = never group)
    lines: tuple[BatchLine, ...] = ()  # lines planned elsewhere (an X/Y/Z plot, a folder of inputs): `file` is not read
    source: str = ""  # what planned `lines` come from, for the --resume refusal ("the inputs DIR")
    line_assets: dict[int, AssetOptions] = field(default_factory=dict)  # a line's own add-on options (X/Y/Z VAE axis)

    def assets_of(self, line: int) -> AssetOptions:
        """The add-on options of one line: its own, else the command line's."""
        return self.line_assets.get(line, self.assets)


def resolve_models(lines: list[BatchLine], options: BatchOptions) -> dict[str | None, Any]:
    """Every model spec of the file -> ModelRef; bad specs named by file and line."""
    from sdcli.models.resolve import resolve_model

    refs: dict[str | None, Any] = {}
    bad: dict[str | None, str] = {}
    library = options.assets.library()
    for spec in dict.fromkeys(line.model for line in lines):
        try:
            refs[spec] = resolve_model(spec, offline=options.runtime.offline, library=library,
                                       allow_pickle=options.assets.allow_pickle)
        except UsageError as exc:
            if spec == options.model:
                raise  # the --model flag itself: its own one-line message
            bad[spec] = str(exc).removeprefix("--model: ")
    problems = [f"{options.file}:{line.line}: sd_model: {bad[line.model]}" for line in lines if line.model in bad]
    if problems:
        raise BatchFileError(options.file, problems)
    return refs


# The job's flags in its plan errors -> the prompt-file keys a line gives them with.
LINE_KEYS = {"--model": "sd_model", "--refiner": "refiner_checkpoint", "--hires-upscaler": "hr_upscaler"}


@dataclass
class LineNames:
    """How a prompt file's names become files: its models as resolve_models found them; refiners and hires
    upscalers as the CLI finds them (job.plan.LocalNames)."""

    models: dict[str | None, Any]
    options: BatchOptions

    def model(self, spec: str | None) -> Any:
        return self.models[spec]

    def refiner(self, spec: str) -> Any:
        from sdcli.job.plan import resolve_refiner

        return resolve_refiner(spec, self.options.runtime.offline, self.options.assets.library())

    def hires_upscaler(self, spec: str, assets: AssetOptions) -> Any:
        from sdcli.models.upscalers import resolve_upscaler

        return resolve_upscaler(spec, "--hires-upscaler", assets.library(), assets.allow_pickle)


def plan_lines(lines: list[BatchLine], options: BatchOptions, models: dict[str | None, Any], placement: Any,
               reporter: Any) -> dict[int, JobPlan]:
    """Each line through the job's plan step (job.plan.plan_job) before anything loads: its add-ons, ControlNet
    units, refiner and hires upscaler found and checked, each distinct value once. Problems are named by file
    and line (BatchFileError); notes once each, with the line that first gave them."""
    from sdcli.job.plan import PlanMemo, plan_job

    plans: dict[int, JobPlan] = {}
    problems: list[str] = []
    memo, names, told = PlanMemo(), LineNames(models, options), set()
    for line in lines:
        def note(message: str, where: int = line.line) -> None:
            if message not in told:
                told.add(message)
                reporter.note(f"{options.file}:{where}: {message}")

        try:
            plans[line.line] = plan_job(line.request, options.runtime, line.model, options.assets_of(line.line),
                                        note, names=names, placement=placement, prepare_inputs=False, memo=memo)
        except SdcliError as exc:
            flag, sep, rest = str(exc).partition(": ")
            problems.append(f"{options.file}:{line.line}: " + (f"{LINE_KEYS[flag]}: {rest}" if sep and flag in
                                                                LINE_KEYS else str(exc)))
    if problems:
        raise BatchFileError(options.file, problems)
    return plans


def group_units(units: list[BatchUnit], limit: int) -> list[BatchUnit]:
    """Merge consecutive units into one batched pipeline call where pixels stay the same.

    Units merge when they come from the same line and model, and the next one's items and
    seeds (and variation seeds) continue the previous one's: a line's --count batches then
    run as one batch of up to `limit` images. Image i still gets its own CPU generator
    seeded seed + i, so each image equals the ungrouped one within the batch-size
    invariance rule (no pixel moves by more than one level; tests/batch). Lines with
    different prompts are not merged: job.generate.run batches one prompt per call.
    """
    grouped: list[BatchUnit] = []
    for unit in units:
        last = grouped[-1] if grouped else None
        if last is not None and _continues(last, unit) and \
                last.request.batch_size + unit.request.batch_size <= limit:
            size = last.request.batch_size + unit.request.batch_size
            grouped[-1] = replace(last, request=replace(last.request, batch_size=size))
        else:
            grouped.append(unit)
    return grouped


def _continues(last: BatchUnit, unit: BatchUnit) -> bool:
    """Whether `unit` is `last` with the next items and seeds (everything else equal)."""
    a, b, size = last.request, unit.request, last.request.batch_size
    if (last.line, last.model) != (unit.line, unit.model) or unit.first != last.first + size:
        return False
    if b.seed != a.seed + size or (a.subseed_strength and b.subseed != a.subseed + size):
        return False
    return replace(a, seed=b.seed, subseed=b.subseed, batch_size=b.batch_size) == b


def join_units(units: list[BatchUnit], plans: dict[int, JobPlan], limit: int) -> list[list[BatchUnit]]:
    """Consecutive units run as one batched pipeline call of up to `limit` images where only their prompts,
    negative prompts and seeds differ (their model, add-ons, size, sampler, steps, CFG, inputs: everything
    that shapes the loop, the same). Each image keeps its own seed, variation seed and conditioning, so it
    equals the image made alone within the batch-size invariance rule. Not joined: lines with a hires pass,
    a refiner, ControlNet units or reference images (they condition or finish each line apart); whether the
    job's sampler runs in sdcli's loop is known once the model loads (batch.calls.run_call)."""
    calls: list[list[BatchUnit]] = []
    for unit in units:
        last = calls[-1] if calls else None
        if last is not None and _joins(last[0], unit, plans) and \
                sum(u.request.batch_size for u in last) + unit.request.batch_size <= limit:
            last.append(unit)
        else:
            calls.append([unit])
    return calls


JOIN_FREE = ("prompt", "negative_prompt", "seed", "subseed", "batch_size")  # what joined units may differ in


def _joins(first: BatchUnit, unit: BatchUnit, plans: dict[int, JobPlan]) -> bool:
    """Whether `unit` can join a call that `first` began."""
    a, b = first.request, unit.request
    if a.hires is not None or a.refiner or a.controlnets or a.mode == "edit" or first.model != unit.model:
        return False
    if replace(b, **{key: getattr(a, key) for key in JOIN_FREE}) != a:
        return False
    plan_a, plan_b = plans.get(first.line), plans.get(unit.line)
    if plan_a is None or plan_b is None or plan_a.control is not None:
        return False
    return _loop_shape(plan_a) == _loop_shape(plan_b)


def _loop_shape(plan: JobPlan) -> JobPlan:
    """A line's plan without its request (compared apart) and add-on warnings: what a joined call shares."""
    return replace(plan, request=None, choice=None,  # type: ignore[arg-type]
                   extras=replace(plan.extras, warnings=()))


def largest_job(lines: list[BatchLine], group: int) -> Any:
    """The largest image and batch (grouping included) of the file, for the runtime plan's memory decisions."""
    from sdcli.models.runtime import JobSize

    sizes = [(line.request.width, line.request.height) for line in lines]
    width = None if any(w is None for w, _ in sizes) else max((w for w, _ in sizes), default=None)
    height = None if any(h is None for _, h in sizes) else max((h for _, h in sizes), default=None)
    batch = max((max(line.request.batch_size, min(group, line.request.total_images)) for line in lines), default=1)
    if len(lines) > 1:  # lines joined into one call (join_units)
        batch = max(batch, min(group, sum(line.request.total_images for line in lines)))
    return JobSize(width, height, batch)
