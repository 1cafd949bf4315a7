"""NaN/inf detection where images come out of generation (broken weights, fp16 overflow).

A non-finite latent or decode turns into a black or garbage PNG that looks like a
success; sdcli refuses to write it. The check sits on the VAE decode, which every
pipeline calls once per batch with the final latents, so it sees both.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

NONFINITE = "NaN/inf in the {what} (broken weights or fp16 overflow; try --dtype fp32); not written"


def nonfinite_rows(tensor: Any) -> list[int]:
    """Indices along the first (batch) axis whose values are not all finite."""
    import torch

    if not isinstance(tensor, torch.Tensor) or not tensor.is_floating_point():
        return []
    bad = ~torch.isfinite(tensor.detach()).reshape(tensor.shape[0], -1).all(dim=1)
    return [int(i) for i in bad.nonzero().flatten()]


class FiniteGuard:
    """What a guarded pipeline call produced: the problem of each image, by batch offset."""

    def __init__(self) -> None:
        self.problems: dict[int, str] = {}

    def note(self, rows: list[int], what: str) -> None:
        for row in rows:
            self.problems.setdefault(row, NONFINITE.format(what=what))

    def failure(self, offset: int) -> str | None:
        """The reason image `offset` of the batch must not be written, or None."""
        return self.problems.get(offset)


@contextmanager
def finite_guard(pipe: Any) -> Iterator[FiniteGuard]:
    """Watch one pipeline call: NaN/inf in the latents going into the VAE or in its decode.

    Pipelines without a VAE (or a test double) pass through unchecked.
    """
    guard = FiniteGuard()
    vae = getattr(pipe, "vae", None)
    original = getattr(vae, "decode", None)
    if original is None:
        yield guard
        return

    def decode(latents: Any, *args: Any, **kwargs: Any) -> Any:
        guard.note(nonfinite_rows(latents), "latents")
        out = original(latents, *args, **kwargs)
        sample = out[0] if isinstance(out, tuple) else getattr(out, "sample", None)
        guard.note(nonfinite_rows(sample), "decoded image")
        return out

    vae.decode = decode
    try:
        yield guard
    finally:
        del vae.decode  # the instance attribute shadowed the class method
