"""The conditioning schedule: which conditioning the denoiser uses at each step (the one place).

As the WebUI's prompt_parser: a prompt is split on `AND` into weighted parts
(`a cat :1.2 AND a dog :0.8`, composable diffusion); each part is a schedule of
plain prompts over the run's steps, from prompt editing (`[from:to:when]`,
`[to:when]`, `[from::when]`; `when` below 1 is a fraction of the steps) and
alternation (`[a|b]`, switching every step). The negative prompt has no AND. Steps
count denoiser calls: a second-order sampler's schedule spans twice its steps, as
in the WebUI. Parsing uses lark (the WebUI does too); an unparsable prompt is used as it is.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from sdcli.conditioning.cond import Conditioning

# The WebUI's prompt-editing language (prompt_parser.py), as a lark grammar: brackets nest,
# `[a:b:N]` / `[b:N]` / `[a::N]` switch at step N, `[a|b|...]` alternates. Earley, as there,
# so ambiguous prompts resolve the same way. Only `scheduled`, `alternate`, `plain` and
# `start` are transformed; the other rules just pass their text through.
_GRAMMAR = r"""
!start: (text | /[][():]/+)*
text: (bracketed | scheduled | alternate | plain | WS)*
!bracketed: "(" text ")" | "(" text ":" text ")" | "[" text "]"
scheduled: "[" [text ":"] text ":" [WS] NUMBER [WS] "]"
alternate: "[" text ("|" [text])+ "]"
plain: /([^\\\[\]():|]|\\.)+/
WS: /\s+/
%import common.SIGNED_NUMBER -> NUMBER
"""
_AND = re.compile(r"\bAND\b")
_PART_WEIGHT = re.compile(r"^((?:\s|.)*?)(?:\s*:\s*([-+]?(?:\d+\.?|\d*\.\d+)))?\s*$")


@lru_cache(maxsize=1)
def _parser() -> Any:
    import lark

    return lark.Lark(_GRAMMAR)


def and_parts(prompt: str) -> list[tuple[str, float]]:
    """`a :1.2 AND b` -> [("a", 1.2), ("b", 1.0)]: composable-diffusion parts and their weights."""
    parts = []
    for sub in _AND.split(prompt):
        match = _PART_WEIGHT.search(sub)
        text, weight = match.groups() if match is not None else (sub, None)
        parts.append((text, float(weight) if weight is not None else 1.0))
    return parts


def prompt_schedule(prompt: str, steps: int) -> list[tuple[int, str]]:
    """[(last step, plain prompt)] for prompt editing and alternation over `steps` steps."""
    if "[" not in prompt:  # no editing or alternation possible: skip building the parser (~0.5 s)
        return [(steps, prompt)]
    import lark

    try:
        tree = _parser().parse(prompt)
    except lark.exceptions.LarkError:
        return [(steps, prompt)]
    ends = {steps}

    class Steps(lark.Visitor):
        def scheduled(self, node: Any) -> None:
            text = node.children[-2]
            value = float(text)
            when = min(steps, int(value * steps if "." in text else value))
            node.children[-2] = when
            if when >= 1:
                ends.add(when)

        def alternate(self, node: Any) -> None:
            ends.update(range(1, steps + 1))

    Steps().visit(tree)
    return [(end, _text_at(end, tree)) for end in sorted(ends)]


def _text_at(step: int, tree: Any) -> str:
    """The plain prompt of `tree` at `step`."""
    import lark

    class At(lark.Transformer):
        def scheduled(self, args: list[Any]) -> Any:
            before, after, _, when, _ = args
            yield (before or ()) if step <= when else after

        def alternate(self, args: list[Any]) -> Any:
            options = [a or "" for a in args]
            yield options[(step - 1) % len(options)]

        def start(self, args: list[Any]) -> str:
            def flatten(x: Any) -> Any:
                if isinstance(x, str):
                    yield x
                else:
                    for item in x:
                        yield from flatten(item)
            return "".join(flatten(args))

        def plain(self, args: list[Any]) -> Any:
            yield args[0].value

        def __default__(self, data: Any, children: list[Any], meta: Any) -> Any:
            yield from children

    return At().transform(tree)


def _pad_tokens(cond: Conditioning, tokens: int) -> Conditioning:
    """Repeat the last token vector up to `tokens` (how the WebUI stacks unequal AND parts)."""
    import torch

    missing = tokens - cond.tokens
    if missing <= 0:
        return cond
    last = cond.crossattn[:, -1:].repeat(1, missing, 1)
    return Conditioning(torch.cat([cond.crossattn, last], dim=1), cond.extra)


def _pad_chunks(schedule: list[tuple[int, Conditioning]], empty: Conditioning) -> list[tuple[int, Conditioning]]:
    """One prompt's schedule entries padded to one chunk count with empty-prompt chunks.

    The WebUI encodes a schedule's prompts as one batch, whose shorter rows get empty chunks.
    """
    import torch

    chunks = max(c.tokens for _, c in schedule)
    return [(end, c if c.tokens == chunks else Conditioning(
        torch.cat([c.crossattn, *[empty.crossattn] * ((chunks - c.tokens) // empty.tokens)], dim=1), c.extra))
        for end, c in schedule]


def _pick(schedule: list[tuple[int, Conditioning]], step: int) -> Conditioning:
    return next((cond for end, cond in schedule if step <= end), schedule[0][1])


@dataclass
class CondSchedule:
    """Per-step conditioning of one prompt/negative pair (see the module doc)."""

    parts: list[tuple[list[tuple[int, Conditioning]], float]]
    negative: list[tuple[int, Conditioning]]

    @classmethod
    def build(cls, prompt: str, negative: str, steps: int, encode: Callable[[str], Conditioning],
              encode_negative: Callable[[str], Conditioning] | None = None, literal: bool = False) -> CondSchedule:
        """Encode every distinct plain prompt the schedule uses once (encode caches); `encode_negative`
        encodes the negative prompt's texts where they differ from the prompt's (SDXL); `literal`: no AND,
        editing or alternation, the whole text for every step (ComfyUI reads prompts so: --emphasis comfy)."""
        empty = encode("")

        def encoded(text: str, encode: Callable[[str], Conditioning]) -> list[tuple[int, Conditioning]]:
            steps_texts = [(steps, text)] if literal else prompt_schedule(text, steps)
            return _pad_chunks([(end, encode(t)) for end, t in steps_texts], empty)

        parts = [(prompt, 1.0)] if literal else and_parts(prompt)
        return cls([(encoded(part, encode), weight) for part, weight in parts],
                   encoded(negative, encode_negative or encode))

    def conds_at(self, step: int) -> list[tuple[Conditioning, float]]:
        """The AND parts at `step` (0-based denoiser call), padded to one token count."""
        picked = [(_pick(schedule, step), weight) for schedule, weight in self.parts]
        tokens = max(c.tokens for c, _ in picked)
        return [(_pad_tokens(c, tokens), w) for c, w in picked]

    def uncond_at(self, step: int) -> Conditioning:
        return _pick(self.negative, step)

    @staticmethod
    def is_plain(prompt: str, negative: str, steps: int = 100) -> bool:
        """No prompt editing, alternation or weighted AND (parsed only, nothing encoded): one conditioning
        for the whole run, which a diffusers pipeline can run too."""
        parts = and_parts(prompt)
        return (len(parts) == 1 and parts[0][1] == 1.0 and len(prompt_schedule(parts[0][0], steps)) == 1
                and len(prompt_schedule(negative, steps)) == 1)
