"""AUTOMATIC1111 prompt syntax -> weighted fragments. Pure Python, no torch.

Rules (the WebUI's): `(x)` x1.1, `((x))` x1.21, `[x]` /1.1, `(x:1.5)` explicit,
`\\(` `\\)` `\\[` `\\]` literal brackets, `BREAK` starts a new 75-token chunk.
Malformed input never fails: an unmatched closing bracket is literal text and
an unclosed opening bracket applies to the end of the prompt; both add a warning.
Hand-written because no library parses the WebUI's grammar.
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


# The WebUI's attention grammar (prompt_parser.parse_prompt_attention), token by token:
# escapes, a lone backslash, brackets, ":weight)" and plain text. Used for encoding, so
# the embeddings follow the WebUI exactly, quirks included (crossed brackets, BREAK
# next to punctuation, a lone backslash dropped).
_ATTENTION = re.compile(r"\\\(|\\\)|\\\[|\\]|\\\\|\\|\(|\[|:\s*([+-]?[.\d]+)\s*\)|\)|]|[^\\()\[\]:]+|:")
_BREAK_SPLIT = re.compile(r"\s*\bBREAK\b\s*", re.S)
BREAK_MARK = ("BREAK", -1.0)  # how a BREAK appears in parse_attention's output


def bad_weight(text: str) -> str | None:
    """The first `(text:weight)` whose weight the WebUI's grammar takes but float() cannot read (`1.2.3`, `.`),
    as `'(text:1.2.3)'`; None when every weight is a number."""
    opens: list[int] = []
    for m in _ATTENTION.finditer(text):
        if m.group(0) == "(":
            opens.append(m.start())
        elif m.group(1) is not None and opens:
            start = opens.pop()
            try:
                float(m.group(1))
            except ValueError:
                return f"{m.group(1)!r} in {text[start:m.end()]!r}"
        elif m.group(0) == ")" and opens:
            opens.pop()
    return None


def parse_attention(text: str) -> list[tuple[str, float]]:
    """Text -> [(fragment, weight)] as the WebUI parses it; BREAK is ("BREAK", -1).

    Runs of equal weight are merged; an empty prompt gives [("", 1.0)].
    """
    res: list[list] = []
    round_open: list[int] = []
    square_open: list[int] = []

    def multiply(start: int, factor: float) -> None:
        for item in res[start:]:
            item[1] *= factor

    for m in _ATTENTION.finditer(text):
        tok, weight = m.group(0), m.group(1)
        if tok.startswith("\\"):
            res.append([tok[1:], 1.0])
        elif tok == "(":
            round_open.append(len(res))
        elif tok == "[":
            square_open.append(len(res))
        elif weight is not None and round_open:
            multiply(round_open.pop(), float(weight))
        elif tok == ")" and round_open:
            multiply(round_open.pop(), UP)
        elif tok == "]" and square_open:
            multiply(square_open.pop(), DOWN)
        else:
            for i, part in enumerate(_BREAK_SPLIT.split(tok)):
                if i:
                    res.append(list(BREAK_MARK))
                res.append([part, 1.0])
    for start in round_open:
        multiply(start, UP)
    for start in square_open:
        multiply(start, DOWN)
    if not res:
        res = [["", 1.0]]
    merged: list[list] = [res[0]]
    for text_, weight_ in res[1:]:
        if merged[-1][1] == weight_:
            merged[-1][0] += text_
        else:
            merged.append([text_, weight_])
    return [(t, w) for t, w in merged]


# ComfyUI's prompt weights (comfy/sd1_clip.py token_weights), which --emphasis comfy reads prompts with: only round
# brackets, `(x)` x1.1 nesting, `(x:w)` SETS the weight to w (not times the outer one), `\(` `\)` literal; `[x]`,
# BREAK, AND and prompt editing are plain text to ComfyUI. Hand-written: ComfyUI's parser is part of its app.
_COMFY_ESCAPES = (("\\)", "\0\1"), ("\\(", "\0\2"))


def comfy_weights(text: str) -> list[tuple[str, float]]:
    """Text -> [(fragment, weight)] as ComfyUI weights it (escapes resolved; fragments in order, unmerged)."""
    for escape, mark in _COMFY_ESCAPES:
        text = text.replace(escape, mark)
    out: list[tuple[str, float]] = []
    _comfy_weigh(text, 1.0, out)
    return [(_comfy_unescape(t), w) for t, w in out]


def comfy_literal(text: str) -> str:
    """Text as ComfyUI reads it with weights disabled (the LLM text encoders' tokenizers): brackets are text, only
    the escapes `\\(` `\\)` resolved to `(` `)` (escape_important, then unescape_important)."""
    for escape, mark in _COMFY_ESCAPES:
        text = text.replace(escape, mark)
    return _comfy_unescape(text)


def _comfy_unescape(text: str) -> str:
    for escape, mark in _COMFY_ESCAPES:
        text = text.replace(mark, escape[1])
    return text


def _comfy_weigh(text: str, weight: float, out: list[tuple[str, float]]) -> None:
    """Each top-level group of `text`: a bracketed one recursively at its weight, the rest at `weight`."""
    for group in _comfy_groups(text):
        if len(group) < 2 or group[0] != "(" or group[-1] != ")":
            out.append((group, weight))
            continue
        inner, inner_weight = group[1:-1], weight * 1.1
        colon = inner.rfind(":")
        explicit = _number(inner[colon + 1:]) if colon > 0 else None  # `(a:b)`: text, weighted x1.1
        if explicit is not None:
            inner_weight, inner = explicit, inner[:colon]
        _comfy_weigh(inner, inner_weight, out)


def _number(text: str) -> float | None:
    """float(text) (Python's reading, as ComfyUI's), or None when it is not a number."""
    try:
        return float(text)
    except ValueError:
        return None


def _comfy_groups(text: str) -> list[str]:
    """Split at top-level brackets, as ComfyUI's parse_parentheses (a stray `)` sends its depth below zero, after
    which brackets are text until it comes back)."""
    groups, current, depth = [], "", 0
    for char in text:
        if char == "(" and depth == 0:
            if current:
                groups.append(current)
            current = "("
        elif char == ")" and depth == 1:
            groups.append(current + ")")
            current = ""
        else:
            current += char
        depth += {"(": 1, ")": -1}.get(char, 0)
    if current:
        groups.append(current)
    return groups
