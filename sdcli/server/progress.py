"""What /sdapi/v1/progress reports about the running job: the WebUI's shared.state fields."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any


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
