"""The load step of a job: weights in memory, add-ons applied, and the generate step over them.

A ModelCache is what a driver keeps between jobs: the base model (one at a time), the
refiners and the hires upscalers it has loaded. A one-shot command makes one for its one
job; a prompt file, an X/Y/Z plot or the server keep theirs, so a model loads once.
"""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterator, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sdcli.controlnet.plan import ControlPlan, LoadedControl
from sdcli.job.generate import GeneratedImage
from sdcli.job.plan import JobPlan, Notes
from sdcli.models.assets import AssetOptions, apply_assets
from sdcli.models.loaded import LoadedModel
from sdcli.models.resolve import ModelRef
from sdcli.models.runtime import RuntimePlan

Loader = Callable[[ModelRef, RuntimePlan], LoadedModel]
Stage = Callable[[str], Any]


@dataclass
class ModelCache:
    """Loaded models kept between jobs; `load(ref, plan)` loads a model (default models.loader's)."""

    load: Loader | None = None
    load_refiner: Loader | None = None  # how refiners load (default models.loader's)
    refiners: dict[Path, LoadedModel] = field(default_factory=dict)
    upscalers: dict[tuple[str, str | None], Any] = field(default_factory=dict)
    faces: dict[Any, Any] = field(default_factory=dict)  # models.faces.FaceRef -> its FaceRestorer
    controlnets: dict[str, Any] = field(default_factory=dict)  # ControlNet file -> its model, for `_controls_of`
    _path: Path | None = None
    _parts: tuple[tuple[str, Path], ...] = ()  # the held model's part files (a Flux transformer's encoders, VAE)
    _storage: tuple[str | None, tuple[str, ...]] = (None, ())  # the held model's storage and quantized encoders
    _model: LoadedModel | None = None
    _controls_of: LoadedModel | None = None
    # model path -> its short hash, worked out once per cache: a batch line otherwise walked the folder, stat'ed
    # its files and read the hash cache file again (the weights in memory are the ones first hashed)
    _hashes: dict[Path, str] = field(default_factory=dict)

    def model_hash(self, path: Path) -> str:
        """The short hash (models.resolve.model_hash) of the model file or folder at `path`, once per cache."""
        from sdcli.models import resolve

        if path not in self._hashes:
            self._hashes[path] = resolve.model_hash(path)
        return self._hashes[path]

    def model(self, ref: ModelRef, plan: RuntimePlan, stage: Stage | None = None) -> LoadedModel:
        """`ref` loaded, loading it (and dropping the one held before) when it is not the one held."""
        from sdcli.models import loader

        storage = (ref.storage, ref.storage_encoders)
        if self._model is None or (self._path, self._parts, self._storage) != (ref.path, ref.parts, storage):
            self.drop()
            with stage(f"loading model {ref.name}") if stage else nullcontext():
                self._model = (self.load or loader.load_model)(ref, plan)
            self._path, self._parts, self._storage = ref.path, ref.parts, storage
        return self._model

    def refiner(self, ref: ModelRef | None, plan: RuntimePlan) -> LoadedModel | None:
        """The loaded --refiner (None without one), named for the infotext; loaded once."""
        from sdcli.models import loader

        if ref is None:
            return None
        if ref.path not in self.refiners:
            refiner = (self.load_refiner or loader.load_model)(ref, plan)
            refiner.name, refiner.hash = ref.name, self.model_hash(ref.hash_path)
            self.refiners[ref.path] = refiner
        return self.refiners[ref.path]

    def hires_upscaler(self, ref: Any, assets: AssetOptions, plan: RuntimePlan) -> Any:
        """The ready hires upscaler (a model file loaded on the job's device), or None; loaded once."""
        from sdcli.models.upscalers import ready

        if ref is None:
            return None
        key = (ref.name, ref.path and str(ref.path))
        if key not in self.upscalers:
            self.upscalers[key] = ready(ref, "--hires-upscaler", assets.allow_pickle, plan.device)
        return self.upscalers[key]

    def face_restorer(self, ref: Any, assets: AssetOptions, plan: RuntimePlan) -> Any:
        """The ready face restorer of --restore-faces (models.faces), or None; loaded once."""
        from sdcli.models.faces import load_restorer

        if ref is None:
            return None
        if ref not in self.faces:
            self.faces[ref] = load_restorer(ref, assets.allow_pickle, plan.device)
        return self.faces[ref]

    def control(self, plan: ControlPlan | None, model: LoadedModel, allow_pickle: bool) -> LoadedControl | None:
        """The ControlNets of `plan` loaded for `model` (each file once while `model` is the one in use)."""
        from sdcli.controlnet.files import load_controlnet
        from sdcli.controlnet.plan import LoadedControl

        if plan is None:
            return None
        if model is not self._controls_of:  # another model: its ControlNets load anew (they follow its dtype)
            self._controls_of, self.controlnets = model, {}
        for file in plan.files:
            if str(file.path) not in self.controlnets:
                self.controlnets[str(file.path)] = load_controlnet(file, model, allow_pickle=allow_pickle)
        return LoadedControl(plan, tuple(self.controlnets[str(file.path)] for file in plan.files))

    def drop(self) -> None:
        """Let go of the base model (the next model() loads again)."""
        if self._model is not None:
            self._model, self._path, self._controls_of, self.controlnets = None, None, None, {}
            gc.collect()


@dataclass(frozen=True)
class LoadedJob:
    """A planned job with its weights in memory: what the generate step needs."""

    plan: JobPlan
    model: LoadedModel
    model_hash: str
    refiner: LoadedModel | None = None
    control: Any = None  # controlnet.plan.LoadedControl
    hires_upscaler: Any = None  # models.upscalers.Upscaler
    faces: Any = None  # models.faces.FaceRestorer

    def generate(self, request: Any, on_step: Callable[[int, int], None] | None = None,
                 group: Sequence[Any] = ()) -> Iterator[GeneratedImage]:
        """The generate step: `request` (the plan's, seed resolved) -> finished images, one at a time; `group`:
        requests differing from it only in prompts and seeds, made in one batch (where `groupable`)."""
        from sdcli.job.generate import run

        plan = self.plan
        return run(request, self.model, plan.choice, model_name=plan.model.name, model_hash=self.model_hash,
                   on_step=on_step, inputs=plan.inputs, extra_params=plan.extras.params(), refiner=self.refiner,
                   control=self.control, hires_upscaler=self.hires_upscaler, faces=self.faces, group=group)

    def groupable(self, request: Any) -> bool:
        """Whether requests like `request` (the plan's) can run as one batch of several prompts."""
        from sdcli.job.generate import groupable

        return groupable(request, self.model, self.plan.choice, refiner=self.refiner, control=self.control)


def load_job(plan: JobPlan, cache: ModelCache, notes: Notes, *, stage: Stage | None = None,
             loaded: LoadedModel | None = None) -> LoadedJob:
    """Load what `plan` names (the base model from `cache` unless `loaded` is given), add-ons applied."""
    if loaded is None:
        loaded = cache.model(plan.model, plan.runtime, stage)
    apply_assets(loaded, plan.extras, plan.assets, notes)
    with stage("loading ControlNet") if stage and plan.control else nullcontext():
        control = cache.control(plan.control, loaded, plan.assets.allow_pickle)
    model_hash = cache.model_hash(plan.model.hash_path)
    refiner = cache.refiner(plan.refiner, plan.runtime)
    upscaler = cache.hires_upscaler(plan.hires_upscaler, plan.assets, plan.runtime)
    with stage("loading face restorer") if stage and plan.faces else nullcontext():
        faces = cache.face_restorer(plan.faces, plan.assets, plan.runtime)
    return LoadedJob(plan, loaded, model_hash, refiner, control, upscaler, faces)


def asked_infotext(plan: JobPlan, request: Any, cache: ModelCache) -> str:
    """The infotext LoadedJob.generate writes for image 0 of `request` (the plan's, seed resolved), from the plan
    alone: no weights load (the WebUI's infotext of a job that made no image, image 0 as asked). Hashes come from
    `cache` (each file hashed once)."""
    from sdcli.job.family_rules import family_of
    from sdcli.job.generate import asked_infotext as infotext
    from sdcli.models.upscalers import resolve_upscaler

    refiner = plan.refiner
    hires = request.hires
    upscaler = plan.hires_upscaler or (resolve_upscaler(hires.upscaler, "--hires-upscaler") if hires else None)
    vae = plan.extras.vae or dict(plan.model.parts).get("vae")
    return infotext(request, plan.choice, family_of(plan.model), model_name=plan.model.name,
                    model_hash=cache.model_hash(plan.model.hash_path), inputs=plan.inputs,
                    extra_params=plan.extras.params(),
                    refiner=f"{refiner.name} [{cache.model_hash(refiner.hash_path)}]" if refiner else None,
                    hires_upscaler=upscaler.name if upscaler is not None else None,
                    vae=vae.name if vae is not None else None)
