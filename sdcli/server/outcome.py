"""What a server request made (the plan, the served model, the request as run and its images), and the run of
an API request its jobs share (the WebUI's state from state.begin to state.end)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sdcli.job.plan import JobPlan
from sdcli.request.generation import GenerationRequest


@dataclass(frozen=True)
class Generated:
    """What a request made: its plan, the served model, the request as run (names resolved, seeds
    resolved) and the finished images; `info`: the WebUI API `info` keys it sets over those drawn from the
    images (a job: asked(request); a script: its own lists)."""

    plan: JobPlan
    model: Any  # server.served.ServedModel
    request: GenerationRequest
    items: list[Any]
    job_timestamp: str = "0"
    info: dict[str, Any] = field(default_factory=dict)


def asked(request: GenerationRequest) -> dict[str, list[Any]]:
    """The WebUI's p.all_prompts / all_negative_prompts / all_seeds / all_subseeds: every image the request asked
    for, made or not (an interrupted request lists those it never started too)."""
    total = request.total_images
    return {"all_prompts": [request.prompt] * total, "all_negative_prompts": [request.negative_prompt] * total,
            "all_seeds": request.seeds(), "all_subseeds": request.subseeds()}


@dataclass
class Run:
    """One API request from its start to its answer (the WebUI's state.begin .. state.end). An /interrupt lasts
    for the rest of it: its later jobs (a script's cells, lines, tiles) start no batch and make no image."""

    interrupted: bool = False
