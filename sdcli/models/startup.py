"""A command's start without the cyclic garbage collector: the imports before its first model load.

Importing torch, diffusers and transformers makes about 740,000 objects that live as long as the
process and almost no garbage, yet the collector walks them again and again while they are made,
and once more at exit. On the tiny SD1 model that was over a quarter of a one-shot `sdcli txt2img`'s
CPU time (docs/benchmarks.md, issue 21). So the console entry point pauses the collector (pause), and
the first model load ends the pause once its library modules are imported, before any weights load
(end): what exists then is frozen (gc.freeze: kept out of every later collection) and the collector
runs again as usual, so a batch or a server collects as before and a dropped model is still freed.
Only a process that called pause() is affected: tests and library callers never are.
"""

from __future__ import annotations

import gc

_paused = False


def pause() -> None:
    """Pause the collector for this process's start (the console entry point calls it first)."""
    global _paused
    if gc.isenabled():
        gc.disable()
        _paused = True


def end() -> None:
    """End the start's pause, if one is on: freeze what exists (modules, classes: kept for the process's
    life) and run the collector again. Called once the libraries a load needs are imported; a no-op after."""
    global _paused
    if _paused:
        _paused = False
        gc.freeze()
        gc.enable()


def paused() -> bool:
    """Whether the start's pause is on."""
    return _paused
