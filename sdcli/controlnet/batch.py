"""ControlNet units of batch lines (a folder of inputs with `--controlnet`, say).

Planned before any model loads, as a single command plans them: each distinct set of
units has its files found, its control images read and its family checked against
the line's model. They load through the job's ModelCache (job.load): each file once
while a model is in use.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sdcli.batch.parse import BatchLine


@dataclass
class LineControls:
    """The ControlNet plans of a batch's lines (by their units)."""

    plans: dict[tuple[Any, ...], Any] = field(default_factory=dict)  # units -> controlnet.plan.ControlPlan
    allow_pickle: bool = False

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
