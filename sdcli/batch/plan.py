"""Planning a batch before anything loads: its options; models and add-ons checked; units grouped."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from sdcli.batch.parse import BatchFileError, BatchLine, BatchUnit
from sdcli.errors import SdcliError, UsageError
from sdcli.job.write import OutputOptions
from sdcli.models.assets import AssetOptions, AssetPlan, plan_assets
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
    problems += _refiner_problems(lines, options, refs)
    problems += _hires_problems(lines, options)
    if problems:
        raise BatchFileError(options.file, problems)
    return refs


def _refiner_problems(lines: list[BatchLine], options: BatchOptions, models: dict[str | None, Any]) -> list[str]:
    """Each line's refiner_checkpoint resolved (not loaded) and paired with the line's model, as the job's plan
    step does (job.plan): problems named by file and line."""
    from sdcli.job.plan import resolve_refiner
    from sdcli.models.loader import check_refiner

    refs: dict[str, Any] = {}
    bad: dict[tuple[str | None, str], str] = {}
    for line in lines:
        spec, key = line.request.refiner, (line.model, line.request.refiner or "")
        if not spec or key in bad or line.model not in models:
            continue
        try:
            if spec not in refs:
                refs[spec] = resolve_refiner(spec, options.runtime.offline, options.assets.library())
            check_refiner(models[line.model], refs[spec])
        except SdcliError as exc:
            if spec == options.defaults.refiner and line.model == options.model:
                raise  # --refiner with --model: their own one-line message
            bad[key] = str(exc).removeprefix("--refiner: ").removeprefix("--model: ")
    return [f"{options.file}:{line.line}: refiner_checkpoint: {bad[(line.model, line.request.refiner or '')]}"
            for line in lines if (line.model, line.request.refiner or "") in bad]


def _hires_problems(lines: list[BatchLine], options: BatchOptions) -> list[str]:
    """Each line's hires upscaler found (a built-in name, a file, a name in the models folder) before anything
    loads, as the job's plan step does: problems named by file and line (the --hires-upscaler flag by itself)."""
    from sdcli.job.plan import resolve_hires_upscaler

    bad: dict[tuple[str, int], str] = {}
    checked: set[tuple[str, int]] = set()
    for line in lines:
        hires, assets = line.request.hires, options.assets_of(line.line)
        if hires is None or (hires.upscaler, id(assets)) in checked:
            continue
        checked.add((hires.upscaler, id(assets)))
        try:
            resolve_hires_upscaler(line.request, assets)
        except SdcliError as exc:
            if options.defaults.hires is not None and hires.upscaler == options.defaults.hires.upscaler:
                raise  # the --hires-upscaler flag itself: its own one-line message
            bad[(hires.upscaler, id(assets))] = str(exc).removeprefix("--hires-upscaler: ")
    return [f"{options.file}:{line.line}: hr_upscaler: {bad[key]}" for line in lines if line.request.hires
            and (key := (line.request.hires.upscaler, id(options.assets_of(line.line)))) in bad]


def plan_line_assets(lines: list[BatchLine], options: BatchOptions,
                     reporter: Any) -> dict[tuple[str, str, str | None], AssetPlan]:
    """Each line's LoRAs/embeddings/VAE found and checked before any load; problems named by file and line.

    Keyed by (prompt, negative prompt, the line's --vae)."""
    plans: dict[tuple[str, str, str | None], AssetPlan] = {}
    problems = []
    for line in lines:
        assets = options.assets_of(line.line)
        key = (line.request.prompt, line.request.negative_prompt, assets.vae)
        if key in plans:
            continue
        try:
            plans[key] = plan_assets(assets, *key[:2])
        except UsageError as exc:
            problems.append(f"{options.file}:{line.line}: {exc}")
            continue
        for warning in plans[key].warnings:
            reporter.note(f"{options.file}:{line.line}: {warning}")
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


def largest_job(lines: list[BatchLine], group: int) -> Any:
    """The largest image and batch (grouping included) of the file, for the runtime plan's memory decisions."""
    from sdcli.models.runtime import JobSize

    sizes = [(line.request.width, line.request.height) for line in lines]
    width = None if any(w is None for w, _ in sizes) else max((w for w, _ in sizes), default=None)
    height = None if any(h is None for _, h in sizes) else max((h for _, h in sizes), default=None)
    batch = max((max(line.request.batch_size, min(group, line.request.total_images)) for line in lines), default=1)
    return JobSize(width, height, batch)
