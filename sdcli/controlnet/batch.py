"""ControlNet units of batch lines (a folder of inputs with `--controlnet`, say).

Planned before any model loads, as a single command plans them: each distinct set of
units has its files found, its control images read and its family checked against
the line's model. While a model is loaded, each ControlNet file loads once for it.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from sdcli.batch.parse import BatchLine
from sdcli.models.loaded import LoadedModel


@dataclass
class LineControls:
    """The ControlNet plans of a batch's lines, and the ControlNets loaded for the current pipeline."""

    plans: dict[tuple[Any, ...], Any] = field(default_factory=dict)  # units -> core.controlnets.ControlPlan
    allow_pickle: bool = False
    _loaded: dict[str, Any] = field(default_factory=dict)  # ControlNet file -> model, for `_model`
    _model: Any = None

    @classmethod
    def plan(cls, lines: list[BatchLine], models: dict[str | None, Any], assets: Any) -> LineControls:
        """Find and check every line's units (UsageError/ModelError before anything loads)."""
        from sdcli.controlnet.plan import plan_controlnets
        from sdcli.models.loader import detect_ref

        controls = cls(allow_pickle=assets.allow_pickle)
        checked: set[tuple[Any, ...]] = set()
        for line in lines:
            units = line.request.controlnets
            if not units:
                continue
            if units not in controls.plans:
                controls.plans[units] = plan_controlnets(units, assets.library(), assets.allow_pickle)
            model = models[line.model]
            if (units, model.path) not in checked:
                controls.plans[units].check_model(detect_ref(model).family)
                checked.add((units, model.path))
        return controls

    def warnings(self) -> list[str]:
        return list(dict.fromkeys(w for plan in self.plans.values() for w in plan.warnings()))

    def for_request(self, request: Any, model: LoadedModel) -> tuple[Any, Any]:
        """(the loaded control for `request` on `model` or None, the request naming its units as replay needs)."""
        from sdcli.controlnet.files import load_controlnet
        from sdcli.controlnet.plan import LoadedControl

        if not request.controlnets:
            return None, request
        if model is not self._model:  # another model: its ControlNets load anew (they follow its UNet's dtype)
            self._model, self._loaded = model, {}
        plan = self.plans[request.controlnets]
        nets = []
        for file in plan.files:
            key = str(file.path)
            if key not in self._loaded:
                self._loaded[key] = load_controlnet(file, model, allow_pickle=self.allow_pickle)
            nets.append(self._loaded[key])
        return LoadedControl(plan, tuple(nets)), replace(request, controlnets=plan.record_units())
