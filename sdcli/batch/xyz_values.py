"""The X/Y/Z plot's value syntax, as the WebUI's xyz_grid script reads it (pure).

VALUES is one CSV row (quote a value holding a comma); on whole-number and number
axes each item may be a range: `1-5` (step 1), `1-10 (+2)` (step), `1-10 [4]` (count,
evenly spaced). The axis table that uses it is batch.xyz.
"""

from __future__ import annotations

import csv
import math
import re
from io import StringIO
from typing import Any

MAX_VALUES = 1000  # values one range may expand to

# Ranges: "1-5", "1-10 (+2)" (step), "1-10 [4]" (count); numbers may carry a sign.
_INT = r"\s*([+-]?\s*\d+)"
_FLOAT = r"\s*([+-]?\s*\d+(?:\.\d*)?|[+-]?\s*\.\d+)"
_STEP = r"(?:\s*\(\s*([+-]?\s*\d+(?:\.\d*)?)\s*\))?\s*"
_COUNT = r"\s*\[\s*(\d+)\s*\]\s*"
RANGES = {
    "int": (re.compile(_INT + r"\s*-" + _INT + _STEP), re.compile(_INT + r"\s*-" + _INT + _COUNT)),
    "float": (re.compile(_FLOAT + r"\s*-" + _FLOAT + _STEP), re.compile(_FLOAT + r"\s*-" + _FLOAT + _COUNT)),
}


def split_values(text: str) -> list[str]:
    """One CSV row, each value stripped (the WebUI's csv_string_to_list_strip); "a, \"b, c\"" -> [a, "b, c"]."""
    rows = list(csv.reader(StringIO(text), skipinitialspace=True))
    return [value.strip() for row in rows for value in row]


def _number(kind: str, text: str) -> float:
    text = text.replace(" ", "")
    return int(text) if kind == "int" else float(text)


def expand(kind: str, value: str) -> list[Any]:
    """One value of an int/float axis: a single number or a range -> its numbers (ValueError when bad)."""
    steps, counts = RANGES[kind]
    if match := steps.fullmatch(value):
        if kind == "int" and match[3] and "." in match[3]:
            raise ValueError(f"{value!r}: the step must be a whole number")
        start, end = _number(kind, match[1]), _number(kind, match[2])
        step = _number(kind, match[3]) if match[3] else 1
        if step == 0:
            raise ValueError(f"{value!r}: the step is 0")
        if kind == "int":  # the WebUI's range(start, end + 1, step)
            out = list(range(int(start), int(end) + 1, int(step))) if (end - start) / step <= MAX_VALUES else None
        else:
            n = math.floor((end - start) / step + 1e-9) + 1
            out = [round(start + i * step, 8) for i in range(n)] if n <= MAX_VALUES else None
    elif match := counts.fullmatch(value):
        start, end, n = _number(kind, match[1]), _number(kind, match[2]), int(match[3])
        if n > MAX_VALUES:
            out = None
        else:
            spaced = [start + (end - start) * i / (n - 1) for i in range(n)] if n > 1 else [start] * n
            out = [int(v) for v in spaced] if kind == "int" else [round(v, 8) for v in spaced]
    else:
        try:
            return [_number(kind, value)]
        except ValueError:
            what = "a whole number" if kind == "int" else "a number"
            raise ValueError(f"{value!r} is not {what} or a range (1-5, 1-10 (+2), 1-10 [4])") from None
    if out is None:
        raise ValueError(f"{value!r} makes more than {MAX_VALUES} values")
    if not out:
        raise ValueError(f"{value!r} is an empty range")
    return out
