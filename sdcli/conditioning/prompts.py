"""AUTOMATIC1111 prompt syntax -> weighted fragments. Pure Python, no torch.

Rules (the WebUI's): `(x)` x1.1, `((x))` x1.21, `[x]` /1.1, `(x:1.5)` explicit,
`\\(` `\\)` `\\[` `\\]` literal brackets, `BREAK` starts a new 75-token chunk.
Malformed input never fails: an unmatched closing bracket is literal text and
an unclosed opening bracket applies to the end of the prompt; both add a warning.
Hand-written because compel's own grammar is not the WebUI's.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

UP = 1.1
DOWN = 1 / 1.1

_TOKEN = re.compile(
    r"""
    (?P<escape>\\[()\[\]\\])
  | (?P<weight>:\s*(?P<num>[+-]?(?:\d+\.?\d*|\.\d+))\s*\))
  | (?P<break>(?<![^\s,])BREAK(?![^\s,]))
  | (?P<open>[(\[])
  | (?P<close>[)\]])
  | (?P<text>[^\\()\[\]:B]+|B|:|\\)
    """,
    re.VERBOSE,
)


_EDITING = re.compile(r"(?<!\\)\[[^\[\]]*:[^\[\]]*\]")
_AND = re.compile(r"(?<![^\s,])AND(?![^\s,])")


@dataclass
class ParsedPrompt:
    """Prompt as BREAK-separated segments of (text, weight) fragments."""

    segments: list[list[tuple[str, float]]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def _merge(fragments: list[list]) -> list[tuple[str, float]]:
    """Join neighbours of equal weight; drop empty text."""
    merged: list[tuple[str, float]] = []
    for text, weight in fragments:
        if not text:
            continue
        if merged and abs(merged[-1][1] - weight) < 1e-9:
            merged[-1] = (merged[-1][0] + text, weight)
        else:
            merged.append((text, weight))
    return merged


def parse_prompt(prompt: str) -> ParsedPrompt:
    """Parse WebUI attention syntax; see the module docstring for the rules."""
    result = ParsedPrompt()
    current: list[list] = []  # [text, weight] pairs of the current segment
    stack: list[tuple[str, int]] = []  # open bracket kind, index into current

    def scale(start: int, factor: float) -> None:
        for item in current[start:]:
            item[1] *= factor

    for m in _TOKEN.finditer(prompt):
        kind = m.lastgroup if m.lastgroup != "num" else "weight"
        tok = m.group(0)
        if kind == "escape":
            current.append([tok[1], 1.0])
        elif kind == "open":
            stack.append((tok, len(current)))
        elif kind == "weight" and stack and stack[-1][0] == "(":
            scale(stack.pop()[1], float(m.group("num")))
        elif kind == "close" and stack and stack[-1][0] == {")": "(", "]": "["}[tok]:
            _, start = stack.pop()
            scale(start, UP if tok == ")" else DOWN)
        elif kind == "close":
            result.warnings.append(f"unmatched {tok!r} at position {m.start()} kept as text")
            current.append([tok, 1.0])
        elif kind == "break":
            _close_open(stack, current, result, scale)
            result.segments.append(_merge(current))
            current = []
        else:
            current.append([tok, 1.0])
    _close_open(stack, current, result, scale)
    result.segments.append(_merge(current))
    if _EDITING.search(prompt):
        result.warnings.append("prompt editing [from:to:when] is not supported; read as de-emphasised text")
    if _AND.search(prompt):
        result.warnings.append("AND (composable diffusion) is not supported; read as text")
    return result


def _close_open(stack, current, result: ParsedPrompt, scale) -> None:
    """Apply still-open brackets to the end (the WebUI's rule) and warn."""
    while stack:
        kind, start = stack.pop()
        result.warnings.append(f"unclosed {kind!r} applies to the end of the prompt")
        scale(start, UP if kind == "(" else DOWN)


def plain_text(prompt: str) -> str:
    """The prompt with attention syntax removed (for file names and display)."""
    parsed = parse_prompt(prompt)
    return " ".join("".join(t for t, _ in seg).strip() for seg in parsed.segments).strip()
