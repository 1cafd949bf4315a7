"""The running batch seen from outside: its latest denoised latent, kept for a live preview (the server's
/progress), and StopSampling, which ends its sampling early (the server's /skip; with stop_job, its /interrupt).

The loop records a reference to each step's denoised latent here (no copy, no device sync); a reader
that wants a preview decodes it cheaply (families.base.LatentFormat.preview) when one is due. Per
thread and context (a ContextVar), so concurrent runs in other threads never see each other's latents.
"""

from __future__ import annotations

from contextvars import ContextVar
from typing import Any, NoReturn

_LATEST: ContextVar[Any] = ContextVar("sdcli_latest_denoised", default=None)
_JOB_STOPPED: ContextVar[bool] = ContextVar("sdcli_job_stopped", default=False)


class StopSampling(Exception):
    """Raised by a step callback: the batch's sampling ends at once and the batch finishes (decoded, written) from
    its latest denoised latent, as the WebUI's skipped batch (its sampler returns the last latent on
    InterruptedException); on diffusers' pipeline its remaining steps are left out (the pipeline's interrupt)."""


def stop_job() -> NoReturn:
    """Called from a step callback (the server's /interrupt): the batch's sampling ends as with StopSampling, and
    its later passes are left out: after a first pass stopped, the batch is decoded from it without its hires
    pass, as the WebUI's interrupted batch (its hires pass returns the first pass's samples when interrupted)."""
    _JOB_STOPPED.set(True)
    raise StopSampling


def job_stopped() -> bool:
    """Whether a step callback of this run called stop_job."""
    return _JOB_STOPPED.get()


def record(denoised: Any) -> None:
    """Keep a reference to this step's denoised latent [B, C, h, w]."""
    _LATEST.set(denoised)


def latest() -> Any:
    """The denoised latent of the step just run in this context (None: none yet)."""
    return _LATEST.get()


def clear() -> None:
    """Drop the reference and the stop (a run ended)."""
    _LATEST.set(None)
    _JOB_STOPPED.set(False)
