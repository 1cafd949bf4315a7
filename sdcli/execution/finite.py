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
    """What a guarded batch produced: the problem of each image, by batch offset.

    Decodes are counted in order: one call with the whole batch (diffusers pipelines) or one
    call per image (sdcli's own loop) both map rows to the right image.
    """

    def __init__(self) -> None:
        self.problems: dict[int, str] = {}
        self.decoded = 0  # rows decoded so far in this batch

    def note(self, rows: list[int], what: str, first: int = 0) -> None:
        for row in rows:
            self.problems.setdefault(first + row, NONFINITE.format(what=what))

    def failure(self, offset: int) -> str | None:
        """The reason image `offset` of the batch must not be written, or None."""
        return self.problems.get(offset)


@contextmanager
def finite_guard(*pipes: Any) -> Iterator[FiniteGuard]:
    """Watch one batch: NaN/inf in the latents going into a VAE or in its decode.

    Every pipe given (the model and, with --refiner, the refiner) is watched; those without
    a VAE (or a test double) pass through unchecked.
    """
    guard = FiniteGuard()
    watched: list[tuple[Any, Any]] = []  # (vae, its own instance-level decode, e.g. models.vae's NaN retry)
    for pipe in pipes:
        vae = getattr(pipe, "vae", None)
        original = getattr(vae, "decode", None)
        if original is None or any(vae is seen for seen, _ in watched):
            continue

        def decode(latents: Any, *args: Any, _original: Any = original, **kwargs: Any) -> Any:
            first = guard.decoded
            guard.note(nonfinite_rows(latents), "latents", first)
            out = _original(latents, *args, **kwargs)
            sample = out[0] if isinstance(out, tuple) else getattr(out, "sample", None)
            guard.note(nonfinite_rows(sample), "decoded image", first)
            guard.decoded += int(latents.shape[0]) if hasattr(latents, "shape") else 1
            return out

        watched.append((vae, vae.__dict__.get("decode")))
        vae.decode = decode
    try:
        yield guard
    finally:
        for vae, own in watched:
            if own is not None:
                vae.decode = own  # keep a wrapper installed before (the fp32 retry of a NaN decode)
            else:
                del vae.decode  # the instance attribute shadowed the class method
