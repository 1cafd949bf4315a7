"""The server's generation engine: served models, the one loaded model, a queue, progress.

One generation runs at a time (a lock; requests wait in a bounded queue), through
the job pipeline every entry point drives (job.plan, job.load), so a server image is the CLI's image, bit
for bit.

A request never points the server at a file. Every model it names (the model, the refiner,
the hires upscaler, the VAE, LoRAs in flags and <lora:...> tags, embeddings) is looked up
only in the server's own lists: the models it serves (-m: a title, name or hash, or exactly
the path it was started with, which is how `--server` sends -m and --refiner) and its models
folder (--models-dir / --webui-dir), by name, as the CLI looks names up there; a checkpoint of
that folder by its WebUI title too (server.checkpoints). A path or an unknown name is refused
(UsageError: HTTP 422) before any model loads.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from sdcli.errors import RuntimeFailure, SdcliError, UsageError
from sdcli.job.load import ModelCache, load_job
from sdcli.job.plan import JobPlan, plan_job, recorded_request
from sdcli.models.assets import AssetOptions
from sdcli.models.folders import is_path_like
from sdcli.models.loaded import LoadedModel
from sdcli.models.resolve import ModelRef
from sdcli.models.runtime import RuntimeOptions
from sdcli.request.generation import GenerationRequest
from sdcli.sampling import preview
from sdcli.server.checkpoints import FolderCheckpoint, FolderCheckpoints
from sdcli.server.outcome import Generated, Run, asked
from sdcli.server.progress import Progress
from sdcli.server.served import AddOns, ServedModel

# What a WebUI API payload that names no sampler or steps gets when its model family sets none: the WebUI API's Euler
# (its sampler_index default) and 50 steps (its steps default); job.plan.plan_job's `fallback`.
API_DEFAULTS = {"sampler": "Euler", "steps": 50}


class QueueFull(SdcliError):
    """Too many requests waiting, or the server is stopping: HTTP 503 with Retry-After (Engine.retry_after)."""


class Cancelled(SdcliError):
    """The client went away before or while its job ran: nothing is sent (its slot is freed)."""


# Whether the client of the request this thread serves has gone away (server.app sets it per request).
CLIENT_GONE: ContextVar[Callable[[], bool] | None] = ContextVar("sdcli_client_gone", default=None)


@dataclass
class Engine:
    """Served models and the generation queue; `load(ref, plan)` loads a model (tests inject one)."""

    models: list[ServedModel]
    runtime: RuntimeOptions = field(default_factory=RuntimeOptions)
    queue_size: int = 8
    folders: AssetOptions = field(default_factory=lambda: AssetOptions(names_only=True))  # its models folder
    load: Callable[[Any, Any], Any] | None = None
    options: dict[str, Any] = field(default_factory=lambda: {"CLIP_stop_at_last_layers": 1, "samples_format": "png",
                                                             "sd_vae": "Automatic"})
    progress: Progress = field(default_factory=Progress)
    styles: tuple[Any, ...] = ()  # prompt styles (request.styles.PromptStyle) the WebUI API's `styles` names
    output: Path = Path("outputs")  # where the WebUI API's save_images writes (sdcli serve -o)

    def __post_init__(self) -> None:
        self.current = self.models[0]
        self.checkpoints = FolderCheckpoints(self.folders.library() if self.folders.models_dir or
                                             self.folders.webui_dir or self.folders.comfy_dir else None)
        self._folder_models: dict[Path, ServedModel] = {}  # models-folder checkpoints resolved (and hashed)
        self.cache = ModelCache(self.load, self.load)  # the served model, refiners and hires upscalers loaded
        self._plan: Any = None
        self._turns = threading.Condition()  # guards the line, the busy flag and the count
        self._line: deque[object] = deque()  # requests waiting, first come first served
        self._busy = False  # a request holds the model
        self._waiting = 0  # the one holding it and those in line (what queue_size bounds)
        self._closing = False
        self._seconds = 0.0  # how long the last job held the lock (for Retry-After)
        self._run: Run | None = None  # the request whose job holds (or last held) the lock, until it ends

    @classmethod
    def from_specs(cls, specs: Sequence[str | None], runtime: RuntimeOptions, models_dir: str | None = None,
                   webui_dir: str | None = None, comfy_dir: str | None = None, **kwargs: Any) -> Engine:
        """Resolve every --model of `sdcli serve` (paths, hub ids, names in the models folder; no weights loaded);
        a transformer-only file takes its text encoders and VAE from the models folder (as a local run does)."""
        from sdcli.models.flux_parts import plan_model_parts
        from sdcli.models.resolve import model_hash, resolve_model

        folders = AssetOptions(models_dir=models_dir, webui_dir=webui_dir, comfy_dir=comfy_dir, names_only=True)
        library = folders.library()  # a missing folder: --models-dir/--webui-dir named in the error
        refs = [plan_model_parts(resolve_model(spec, offline=runtime.offline, library=library), (), None, library,
                                 names_only=True) for spec in (specs or [None])]
        return cls([ServedModel(ref, model_hash(ref.hash_path)) for ref in refs], runtime, folders=folders, **kwargs)

    def find(self, spec: str | None, field_name: str = "sd_model_checkpoint") -> ServedModel:
        """The served model a client names (None: the current one), else a checkpoint of the models folder by
        name (never by path); hashed when first named, as the WebUI hashes a checkpoint it loads."""
        if spec is None or spec == "":
            return self.current
        for model in self.models:
            if model.matches(spec):
                return model
        checkpoint = None if is_path_like(spec) else self.checkpoints.find(spec)
        if checkpoint is not None:
            return self._folder_model(checkpoint, field_name)
        served = ", ".join(repr(m.title) for m in self.models)
        folder = self.folders.library().folders.get("checkpoint") if self.checkpoints.library else None
        where = f"; nor is it a checkpoint in {folder} (see /sdapi/v1/sd-models)" if folder else ""
        raise UsageError(f"{field_name}: model {spec!r} is not served here; served: {served}{where}")

    def _folder_model(self, checkpoint: FolderCheckpoint, field_name: str) -> ServedModel:
        """A models-folder checkpoint as a ServedModel (the same object each time it is named)."""
        from sdcli.models.flux_parts import plan_model_parts
        from sdcli.models.resolve import model_hash, resolve_model

        path = checkpoint.entry.path.resolve()
        for model in self.models:  # the folder's copy of a model served by path: that one
            if Path(model.ref.path).resolve() == path:
                return model
        if path not in self._folder_models:
            try:  # a transformer-only file takes its text encoders and VAE from the folder, as a served one
                ref = plan_model_parts(resolve_model(str(path), allow_pickle=self.folders.allow_pickle), (), None,
                                       self.checkpoints.library, names_only=True)
            except SdcliError as exc:
                raise type(exc)(str(exc).replace("--model:", f"{field_name}:", 1)) from None
            self._folder_models[path] = ServedModel(ref, model_hash(ref.hash_path), checkpoint.label)
        return self._folder_models[path]

    def refresh_checkpoints(self) -> None:
        """/sdapi/v1/refresh-checkpoints: the models folder read again (a changed file is hashed again)."""
        self.checkpoints.refresh()
        self._folder_models = {path: model for path, model in self._folder_models.items() if model is self.current}

    def find_refiner(self, spec: str) -> ServedModel:
        """--refiner / refiner_checkpoint: a served model, else a checkpoint name in the models folder."""
        from sdcli.models.resolve import model_hash, resolve_model

        served = next((model for model in self.models if model.matches(spec)), None)
        if served is not None:
            return served
        library = self.folders.library()
        if is_path_like(spec):
            raise UsageError(f"--refiner: {spec!r} is a path but not a model served here; name a served model "
                             "or a checkpoint in the server's models folder (Stable-diffusion/)")
        if library.folders.get("checkpoint") is None:
            raise UsageError(f"--refiner: {spec!r} is not served here, and there is no models folder to find it "
                             f"in; served: {', '.join(repr(m.title) for m in self.models)}")
        try:
            ref = resolve_model(str(library.find("checkpoint", spec.strip()).path))
        except SdcliError as exc:
            raise type(exc)(str(exc).replace("--model:", "--refiner:", 1)) from None
        return ServedModel(ref, model_hash(ref.hash_path))

    @property
    def plan(self) -> Any:
        if self._plan is None:
            from sdcli.models.runtime import detect_runtime

            self._plan = detect_runtime(self.runtime)
        return self._plan

    def _pipeline(self, model: ServedModel, switch: bool = True, ref: ModelRef | None = None) -> LoadedModel:
        """`model` loaded, loading it (and dropping the previous one) when needed; `ref`: as a job's plan names it
        (its storage: override_settings.forge_unet_storage_dtype), else as served. With `switch` it is the
        current model after (what requests naming no model get). Lock held."""
        loaded = self.cache.model(ref or model.ref, self.plan)
        if switch:
            self.current = model
        return loaded

    def warm_up(self) -> None:
        """Load the current model now, so the first request does not pay for it."""
        with self._slot():
            self._pipeline(self.current)

    def switch(self, spec: str) -> None:
        """POST /options sd_model_checkpoint: load that served model (waits for a running job)."""
        model = self.find(spec)
        with self._slot():
            self._pipeline(model)

    @contextmanager
    def keeping_current(self) -> Iterator[None]:
        """The current model (what requests naming none get) put back after the block, as the WebUI's X/Y/Z
        plot puts back its checkpoint after the grid (a failed one too); loaded again when next used."""
        current = self.current
        try:
            yield
        finally:
            self.current = current

    @contextmanager
    def _slot(self) -> Iterator[None]:
        """Wait for the generation lock (one job at a time) in a bounded queue: the running job and those
        waiting count against queue_size. A waiting client that goes away, or a server stopping, leaves it."""
        gone = CLIENT_GONE.get() or (lambda: False)
        ticket = object()
        with self._turns:
            if self._closing:
                raise QueueFull("the server is shutting down")
            if self._waiting >= self.queue_size:
                raise QueueFull(f"the queue is full ({self.queue_size} requests); try again later")
            self._waiting += 1
            self._line.append(ticket)
            try:  # in turn: first come, first served (a plain lock lets some wait far longer than others)
                while self._busy or self._line[0] is not ticket:
                    self._turns.wait(timeout=0.05)
                    if gone():
                        raise Cancelled("the client went away while its request waited")
                    if self._closing:
                        raise QueueFull("the server is shutting down")
            except BaseException:
                self._line.remove(ticket)
                self._waiting -= 1
                self._turns.notify_all()
                raise
            self._line.popleft()
            self._busy = True
        started = time.monotonic()
        try:
            yield
        finally:
            with self._turns:
                self._seconds = time.monotonic() - started
                self._busy = False
                self._waiting -= 1
                self._turns.notify_all()

    @property
    def waiting(self) -> int:
        """Requests holding or waiting for the generation lock."""
        return self._waiting

    def retry_after(self) -> int:
        """Seconds until a place in the queue is likely free: the last job's time for each request queued."""
        return max(1, math.ceil(self._seconds * self._waiting))

    def close(self) -> None:
        """Stop taking jobs (SIGTERM): waiting requests get 503; the running one finishes."""
        self._closing = True

    @contextmanager
    def request(self) -> Iterator[Run]:
        """One API request's run, passed to generate for each of its jobs: an /interrupt that comes while one of
        them runs, or between two of them, stops the rest of the request; the next request starts afresh."""
        run = Run()
        try:
            yield run
        finally:
            if self._run is run:
                self._run = None

    def interrupt(self) -> None:
        """/interrupt: the running job stops (its running batch comes back half done) and so does the rest of its
        request; an interrupt while no request runs is forgotten by the next one, as the WebUI's state.begin."""
        self.progress.interrupted = True
        run = self._run
        if run is not None:
            run.interrupted = True

    def skip(self) -> None:
        progress = self.progress
        progress.skip_batch = progress.job_no  # first: a step that sees `skipped` compares with it
        progress.skipped = True

    def prepare(self, request: GenerationRequest, model_spec: str | None = None,
                add_ons: AddOns = AddOns(), webui: bool = False) -> tuple[JobPlan, ServedModel]:
        """The job pipeline's plan step with the server's names (its served models and models folder only);
        loads nothing. Errors name the CLI flag (the WebUI endpoints rename it to their field). `webui`: a
        WebUI API payload: no sampler named is the API's Euler (unless the model family has its own default), and
        Forge's settings the model does not take (distilled_cfg_scale on an SD model) are ignored, as Forge does."""
        names = ServedNames(self, model_spec)
        plan = plan_job(request, self.runtime, model_spec, self.assets(add_ons), lambda _message: None,
                        names=names, placement=self.plan, fallback=API_DEFAULTS if webui else None,
                        ignore_unused=webui)
        assert names.served is not None  # plan_job names the model through ServedNames.model
        return plan, names.served

    def assets(self, add_ons: AddOns) -> AssetOptions:
        """The add-ons as asset options: names in the server's models folder only."""
        return replace(self.folders, loras=add_ons.loras, embeddings=add_ons.embeddings, vae=add_ons.vae)

    def generate(self, request: GenerationRequest, model_spec: str | None = None,
                 add_ons: AddOns = AddOns(), webui: bool = False, switch: bool = True,
                 run: Run | None = None) -> Generated:
        """Run one request on a served model: plan -> load -> generate, as every entry point; return the
        plan, the model, the request as run and its images.

        A /skip ends the running batch's sampling now, its images made from the latest denoised latent
        (half-denoised, as the WebUI returns a skipped batch), and goes on with the next. An /interrupt does the
        same and starts no further batch nor the batch's hires pass: the finished batches and the running one come
        back, as the WebUI's interrupt. `run`: the API request this job is part of (Engine.request; None: a
        request of its own); once it is interrupted its later jobs make no image and load nothing (the WebUI's
        process_images after an interrupt). A client that goes away
        cancels its job after the current step (Cancelled). `switch` False: the model named is used for this
        request only (override_settings restored after); the current model stays the one requests get.
        """
        plan, model = self.prepare(request, model_spec, add_ons, webui)
        run = run or Run()
        if run.interrupted:
            return self._unmade(plan, model)
        with self._slot():
            self._run = run
            job = None if run.interrupted else load_job(plan, self.cache, lambda _message: None,
                                                        loaded=self._pipeline(model, switch, plan.model))
            if job is None or run.interrupted:  # while it waited for the lock or loaded: no batch starts
                return self._unmade(plan, model)
            request = recorded_request(plan).with_resolved_seed()
            every = int(self.options.get("show_progress_every_n_steps", 10))
            progress = self.progress = Progress(
                job_count=request.count, started=time.time(), job_timestamp=time.strftime("%Y%m%d%H%M%S"),
                latent_format=job.model.family.latent, every=every if self.options.get("live_previews_enable",
                                                                                       True) else 0)
            progress.interrupted = run.interrupted  # one that came since the check above
            try:
                items = self._batches(job, request)
            finally:
                preview.clear()
                run.interrupted = run.interrupted or progress.interrupted
                self.progress = Progress(interrupted=progress.interrupted, skipped=progress.skipped)
        if not items:  # an /interrupt before the first batch
            return self._unmade(plan, model, request)
        info = {**asked(request), "infotexts": [item.infotext for item in items]}
        return Generated(plan, model, request, items, progress.job_timestamp, info)

    def _unmade(self, plan: JobPlan, model: ServedModel, request: GenerationRequest | None = None) -> Generated:
        """A job of an interrupted request: no image; the images it asked for listed, seeds resolved, and the
        infotext of image 0 as asked (worked out from the plan, nothing run), as the WebUI's process_images."""
        from sdcli.job.load import asked_infotext

        request = request or recorded_request(plan).with_resolved_seed()
        info = {**asked(request), "infotexts": [asked_infotext(plan, request, self.cache)]}
        return Generated(plan, model, request, [], self.progress.job_timestamp, info)

    def _batches(self, job: Any, request: GenerationRequest) -> list[Any]:
        """The job's images, batch by batch (a skipped or interrupted batch's too); none after an /interrupt."""
        items: list[Any] = []
        for item in job.generate(request, self._step):
            if item.failure:  # never sent as a black image
                raise RuntimeFailure(f"image {item.index} (seed {item.seed}): {item.failure}")
            items.append(item)
            self.progress.job_no = (item.index + 1) // request.batch_size
            if self.progress.interrupted and len(items) % request.batch_size == 0:
                break  # the WebUI starts no batch after an interrupt
        return items

    def _step(self, step: int, total: int) -> None:
        progress = self.progress
        if progress.interrupted:
            preview.stop_job()  # the batch ends here, decoded from its latest denoised latent
        if progress.skipped:
            if progress.job_no == progress.skip_batch:
                raise preview.StopSampling  # the batch ends here and is decoded from its latest denoised latent
            progress.skipped = False  # a skip that came after its batch's last step: cleared as the next starts
        if (gone := CLIENT_GONE.get()) is not None and gone():
            raise Cancelled("the client went away while its request ran")
        progress.step(step, total, preview.latest())


@dataclass
class ServedNames:
    """The server's rules for names (job.plan.Names): the models it serves, then its models folder by name."""

    engine: Engine
    spec: str | None
    served: ServedModel | None = None

    def model(self, spec: str | None) -> ModelRef:
        self.served = self.engine.find(spec)
        return self.served.ref

    def refiner(self, spec: str) -> ModelRef:
        return self.engine.find_refiner(spec).ref

    def hires_upscaler(self, spec: str, assets: AssetOptions) -> Any:
        from sdcli.models.upscalers import resolve_upscaler

        return resolve_upscaler(spec, "--hires-upscaler", assets.library(), names_only=True)
