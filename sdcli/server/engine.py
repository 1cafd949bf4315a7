"""The server's generation engine: served models, the one loaded model, a queue, progress.

One generation runs at a time (a lock; requests wait in a bounded queue), through
sdcli's own core (core.generate.run), so a server image is the CLI's image, bit for bit.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sdcli.errors import RuntimeFailure, SdcliError, UsageError
from sdcli.models.assets import AssetOptions, apply_assets, plan_assets
from sdcli.models.loaded import LoadedModel
from sdcli.models.runtime import RuntimeOptions
from sdcli.request.generation import GenerationRequest, validate


class QueueFull(SdcliError):
    """Too many requests waiting: HTTP 503."""


class _Interrupted(Exception):
    """Raised from the step callback after /interrupt."""


@dataclass
class ServedModel:
    """A model the server may load: its resolved files, WebUI title and hash."""

    ref: Any  # models.resolve.ModelRef
    hash: str

    @property
    def title(self) -> str:
        return f"{self.ref.name} [{self.hash}]"

    def matches(self, spec: str) -> bool:
        """Whether a client's model name (title, name, path or source) means this model."""
        spec = spec.strip()
        names = {self.title, self.ref.name, str(self.ref.path), self.ref.source or "", self.hash}
        if spec in names or spec.removesuffix(".safetensors") in names:
            return True
        try:
            return Path(spec).expanduser().resolve() == Path(self.ref.path).resolve()
        except OSError:
            return False


@dataclass
class Progress:
    """What /progress reports (the WebUI's shared.state fields)."""

    job_count: int = 0
    job_no: int = 0
    sampling_step: int = 0
    sampling_steps: int = 0
    started: float = 0.0
    job_timestamp: str = "0"
    interrupted: bool = False

    def as_state(self) -> dict[str, Any]:
        return {"skipped": False, "interrupted": self.interrupted,
                "job": f"job {self.job_no}" if self.job_count else "",
                "job_count": self.job_count, "job_timestamp": self.job_timestamp, "job_no": self.job_no,
                "sampling_step": self.sampling_step, "sampling_steps": self.sampling_steps}

    def fraction(self) -> tuple[float, float]:
        """(progress 0-1, seconds left), as the WebUI estimates them."""
        if not self.job_count:
            return 0.0, 0.0
        done = 0.01 + self.job_no / self.job_count
        if self.sampling_steps:
            done += self.sampling_step / self.sampling_steps / self.job_count
        elapsed = time.time() - self.started
        return min(done, 1.0), elapsed / done - elapsed


@dataclass
class Engine:
    """Served models and the generation queue; `load(ref, plan)` loads a model (tests inject one)."""

    models: list[ServedModel]
    runtime: RuntimeOptions = field(default_factory=RuntimeOptions)
    queue_size: int = 8
    load: Callable[[Any, Any], Any] | None = None
    options: dict[str, Any] = field(default_factory=lambda: {"CLIP_stop_at_last_layers": 1, "samples_format": "png"})
    progress: Progress = field(default_factory=Progress)

    def __post_init__(self) -> None:
        self.current = self.models[0]
        self._loaded: LoadedModel | None = None
        self._plan: Any = None
        self._lock = threading.Lock()
        self._waiting = 0
        self._count_lock = threading.Lock()

    @classmethod
    def from_specs(cls, specs: list[str | None], runtime: RuntimeOptions, **kwargs: Any) -> Engine:
        """Resolve every --model of `sdcli serve` (no weights loaded yet)."""
        from sdcli.models.resolve import model_hash, resolve_model

        refs = [resolve_model(spec, offline=runtime.offline) for spec in (specs or [None])]
        return cls([ServedModel(ref, model_hash(ref.hash_path)) for ref in refs], runtime, **kwargs)

    def find(self, spec: str | None, field_name: str = "sd_model_checkpoint") -> ServedModel:
        """The served model a client names (None: the current one)."""
        if spec is None or spec == "":
            return self.current
        for model in self.models:
            if model.matches(spec):
                return model
        served = ", ".join(repr(m.title) for m in self.models)
        raise UsageError(f"{field_name}: model {spec!r} is not served here; served: {served}")

    @property
    def plan(self) -> Any:
        if self._plan is None:
            from sdcli.models.runtime import detect_runtime

            self._plan = detect_runtime(self.runtime)
        return self._plan

    def _pipeline(self, model: ServedModel) -> LoadedModel:
        """`model` loaded, loading it (and dropping the previous one) when needed. Lock held."""
        if self._loaded is None or model is not self.current:
            from sdcli.models.loader import load_model

            self._loaded = None
            self._loaded = (self.load or load_model)(model.ref, self.plan)
            self.current = model
        return self._loaded

    def warm_up(self) -> None:
        """Load the current model now, so the first request does not pay for it."""
        with self._lock:
            self._pipeline(self.current)

    def switch(self, spec: str) -> None:
        """POST /options sd_model_checkpoint: load that served model (waits for a running job)."""
        model = self.find(spec)
        with self._slot():
            self._pipeline(model)

    @contextmanager
    def _slot(self) -> Iterator[None]:
        """Wait for the generation lock in a bounded queue."""
        with self._count_lock:
            if self._waiting >= self.queue_size:
                raise QueueFull(f"the queue is full ({self.queue_size} requests); try again later")
            self._waiting += 1
        try:
            with self._lock:
                yield
        finally:
            with self._count_lock:
                self._waiting -= 1

    def interrupt(self) -> None:
        self.progress.interrupted = True

    def generate(self, request: GenerationRequest, model_spec: str | None = None
                 ) -> tuple[GenerationRequest, ServedModel, list[Any]]:
        """Run one request on a served model; return the resolved request, the model and its images.

        An /interrupt stops it after the current step; images of finished batches are kept.
        """
        from sdcli.io.images import prepare
        from sdcli.job.generate import run
        from sdcli.job.run import load_hires_upscaler, resolve_hires_upscaler

        choice = validate(request)
        model = self.find(model_spec)
        inputs = prepare(request)  # untrusted input files are checked before the queue
        # <lora:...> tags: the server has no models folder, so a tag is refused rather than ignored.
        extras = plan_assets(AssetOptions(), request.prompt, request.negative_prompt)
        # Hires upscalers: the built-in ones (latent modes, Lanczos, Nearest); no models folder here.
        hires_ref = resolve_hires_upscaler(request, AssetOptions())
        with self._slot():
            loaded = self._pipeline(model)
            hires_upscaler = load_hires_upscaler(hires_ref, AssetOptions(), self.plan)
            apply_assets(loaded, extras, AssetOptions(), lambda _message: None)
            request = request.with_resolved_seed()
            self.progress = Progress(job_count=request.count, started=time.time(),
                                     job_timestamp=time.strftime("%Y%m%d%H%M%S"))
            items: list[Any] = []
            try:
                for item in run(request, loaded, choice, model_name=model.ref.name, model_hash=model.hash,
                                on_step=self._step, inputs=inputs, hires_upscaler=hires_upscaler):
                    if item.failure:  # never sent as a black image
                        raise RuntimeFailure(f"image {item.index} (seed {item.seed}): {item.failure}")
                    items.append(item)
                    self.progress.job_no = (item.index + 1) // request.batch_size
            except _Interrupted:
                pass
            finally:
                self.progress = Progress(interrupted=self.progress.interrupted)
        return request, model, items

    def _step(self, step: int, total: int) -> None:
        if self.progress.interrupted:
            raise _Interrupted
        self.progress.sampling_step, self.progress.sampling_steps = step, total
