"""What an edit request cannot take (one pass of the editing model): the refusals the plan step words with the
model's family (job.family_rules)."""

from __future__ import annotations

from collections.abc import Callable

from sdcli.request.generation import GenerationRequest

# What an edit (one pass of the editing model) cannot take: (flag, whether the request sets it, what it is).
EDIT_REFUSED: tuple[tuple[str, Callable[[GenerationRequest], bool], str], ...] = (
    ("--controlnet", lambda r: bool(r.controlnets), "ControlNet units"),
    ("--refiner", lambda r: bool(r.refiner), "a refiner's last steps"),
    ("--hires", lambda r: r.hires is not None, "hires fix's second pass"),
)


def edit_refusal(request: GenerationRequest, model: str) -> str | None:
    """The one-line refusal of an edit request that sets what an edit cannot take, naming the flag and `model`
    (the family's "a Flux.1 Kontext model"), or None."""
    if request.mode != "edit":
        return None
    for flag, given, what in EDIT_REFUSED:
        if given(request):
            return f"{flag}: not with an edit by {model} (an edit is one pass of the editing model, without {what})"
    return None
