"""Honest comparisons: interleaved repetitions, min/median, ratio of medians with its spread.

Pure Python (no numpy), so `make bench`'s verdicts are easy to check by hand.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable


def summary(times: list[float]) -> dict[str, float | int]:
    """min / median / max of one path's repetitions (seconds)."""
    return {"n": len(times), "min": round(min(times), 4), "median": round(statistics.median(times), 4),
            "max": round(max(times), 4)}


def compare(a: list[float], b: list[float], target: float | None = None) -> dict[str, object]:
    """a vs b from interleaved repetitions (a[i] and b[i] ran back to back).

    ratio: median(a) / median(b). spread: half the range of the paired ratios a[i]/b[i]
    (with 5 or more pairs, half their interquartile range), i.e. how far the ratio moves
    from repetition to repetition on this machine. verdict: "inconclusive" when the spread
    is at least the effect |ratio - 1|, else "a faster" / "a slower". With a target
    (e.g. 0.95): "met" only when ratio + spread <= target, "not met" when ratio - spread >
    target, else "inconclusive".
    """
    pairs = sorted(x / y for x, y in zip(a, b, strict=True))
    if len(pairs) >= 5:
        q = statistics.quantiles(pairs, n=4)
        spread = (q[2] - q[0]) / 2
    else:
        spread = (pairs[-1] - pairs[0]) / 2
    ratio = statistics.median(a) / statistics.median(b)
    effect = abs(ratio - 1)
    verdict = "inconclusive" if spread >= effect else ("a faster" if ratio < 1 else "a slower")
    result: dict[str, object] = {"ratio": round(ratio, 4), "spread": round(spread, 4),
                                 "paired_ratios": [round(p, 4) for p in pairs], "verdict": verdict}
    if target is not None:
        result["target"] = target
        result["target_verdict"] = ("met" if ratio + spread <= target else
                                    "not met" if ratio - spread > target else "inconclusive")
    return result


def interleave(paths: dict[str, Callable[[], float]], repeat: int, warmup: int = 1) -> dict[str, list[float]]:
    """Run every path `warmup` times (discarded), then `repeat` rounds of all paths in turn.

    Each callable returns the seconds it measured. Rounds alternate the order, so slow drift
    of a shared machine does not always fall on the same path.
    """
    names = list(paths)
    for _ in range(warmup):
        for name in names:
            paths[name]()
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(repeat):
        for name in (names if r % 2 == 0 else names[::-1]):
            times[name].append(paths[name]())
    return times
