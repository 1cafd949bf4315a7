"""What /sdapi/v1/progress reports about the running job: the WebUI's shared.state fields, and a live preview.

The step callback only stores a reference to the loop's latest denoised latent (sampling.preview): no copy,
no device sync. A poll that wants the current image decodes that latent with the family's cheap linear
latent -> RGB map (families.base.LatentFormat.preview, the WebUI's "Approx cheap" live preview) when one is
due: at least `every` steps after the last one decoded (the WebUI's show_progress_every_n_steps).
"""

from __future__ import annotations

import base64
import io
import threading
import time
from dataclasses import dataclass, field
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
    skipped: bool = False
    skip_batch: int = -1  # the batch (job_no) a /skip ends
    latent_format: Any = None  # families.base.LatentFormat of the running model (None: no previews)
    every: int = 10  # a preview at most every this many steps (0: none)
    latent: Any = None  # the latest denoised latent (a reference), and its step counted over the whole job
    latent_step: int = 0
    _preview: tuple[int, str | None] = (-1, None)  # (job step, base64 PNG) of the last preview decoded
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def running(self) -> bool:
        return self.job_count > 0

    def as_state(self) -> dict[str, Any]:
        return {"skipped": self.skipped, "interrupted": self.interrupted, "stopping_generation": False,
                "job": f"Batch {self.job_no + 1} out of {self.job_count}" if self.running else "",
                "job_count": self.job_count, "job_timestamp": self.job_timestamp, "job_no": self.job_no,
                "sampling_step": self.sampling_step, "sampling_steps": self.sampling_steps}

    def textinfo(self) -> str | None:
        if not self.running:
            return None
        return (f"Batch {self.job_no + 1} of {self.job_count}: sampling step {self.sampling_step} of "
                f"{self.sampling_steps}")

    def fraction(self) -> tuple[float, float]:
        """(progress 0-1, seconds left), as the WebUI estimates them."""
        if not self.job_count:
            return 0.0, 0.0
        done = 0.01 + self.job_no / self.job_count
        if self.sampling_steps:
            done += self.sampling_step / self.sampling_steps / self.job_count
        elapsed = time.time() - self.started
        return min(done, 1.0), elapsed / done - elapsed

    def step(self, step: int, total: int, latent: Any) -> None:
        """The loop finished `step` of `total` (of the current batch); `latent` is its denoised latent."""
        self.sampling_step, self.sampling_steps = step, total
        self.latent, self.latent_step = latent, self.job_no * total + step

    def current_image(self) -> str | None:
        """The live preview as a base64 PNG: the last one, or a new one when `every` steps have passed."""
        latent, at = self.latent, self.latent_step
        if latent is None or self.latent_format is None or self.every <= 0:
            return self._preview[1]
        with self._lock:  # one poll decodes; others meanwhile get the previous preview
            if self._preview[1] is None or at - self._preview[0] >= self.every:
                self._preview = (at, _png(self.latent_format.preview(latent)))
            return self._preview[1]


def _png(rgb: Any) -> str | None:
    """[h, w, 3] in [-1, 1] -> a base64 PNG."""
    from PIL import Image

    if rgb is None:
        return None
    pixels = ((rgb + 1) * 127.5).round().clamp(0, 255).byte().numpy()
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")
