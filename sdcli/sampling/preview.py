"""The latest denoised latent of the running batch, kept for a live preview (the server's /progress).

The loop records a reference to each step's denoised latent here (no copy, no device sync); a reader
that wants a preview decodes it cheaply (families.base.LatentFormat.preview) when one is due. Per
thread and context (a ContextVar), so concurrent runs in other threads never see each other's latents.
"""

from __future__ import annotations

from contextvars import ContextVar
from typing import Any

_LATEST: ContextVar[Any] = ContextVar("sdcli_latest_denoised", default=None)


def record(denoised: Any) -> None:
    """Keep a reference to this step's denoised latent [B, C, h, w]."""
    _LATEST.set(denoised)


def latest() -> Any:
    """The denoised latent of the step just run in this context (None: none yet)."""
    return _LATEST.get()


def clear() -> None:
    """Drop the reference (a run ended)."""
    _LATEST.set(None)
