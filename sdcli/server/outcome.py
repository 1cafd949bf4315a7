"""What a server request made: the plan, the served model, the request as run and its images."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sdcli.job.plan import JobPlan
from sdcli.request.generation import GenerationRequest


@dataclass(frozen=True)
class Generated:
    """What a request made: its plan, the served model, the request as run (names resolved, seeds
    resolved) and the finished images."""

    plan: JobPlan
    model: Any  # server.engine.ServedModel
    request: GenerationRequest
    items: list[Any]
    job_timestamp: str = "0"
