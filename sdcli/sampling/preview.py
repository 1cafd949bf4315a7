"""The running batch seen from outside: its latest denoised latent, kept for a live preview (the server's
/progress), and StopSampling, which ends its sampling early (the server's /skip).

The loop records a reference to each step's denoised latent here (no copy, no device sync); a reader
that wants a preview decodes it cheaply (families.base.LatentFormat.preview) when one is due. Per
thread and context (a ContextVar), so concurrent runs in other threads never see each other's latents.
"""

from __future__ import annotations

from contextvars import ContextVar
from typing import Any

_LATEST: ContextVar[Any] = ContextVar("sdcli_latest_denoised", default=None)


class StopSampling(Exception):
    """Raised by a step callback: the batch's sampling ends at once and the batch finishes (decoded, written) from
    its latest denoised latent, as the WebUI's skipped batch (its sampler returns the last latent on
    InterruptedException); on diffusers' pipeline its remaining steps are left out (the pipeline's interrupt)."""


def record(denoised: Any) -> None:
    """Keep a reference to this step's denoised latent [B, C, h, w]."""
    _LATEST.set(denoised)


def latest() -> Any:
    """The denoised latent of the step just run in this context (None: none yet)."""
    return _LATEST.get()


def clear() -> None:
    """Drop the reference (a run ended)."""
    _LATEST.set(None)
