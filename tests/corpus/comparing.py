"""Comparing a corpus run with corpus.json: one line per difference, and a hint when the environment moved."""

from __future__ import annotations

from typing import Any

from tests.corpus.hashing import prints_agree

CORPUS_NAME = "corpus.json"


def compare(expected: dict[str, Any], records: list[dict[str, Any]]) -> tuple[list[str], list[str]]:
    """One line per difference (a command's text, exit code, written files, their hashes, its stdout), and
    the names of the image files whose hash differs but whose print agrees (float-level pixel moves)."""
    problems, close = [], []
    wanted = {r["id"]: r for r in expected["commands"]}
    for got in records:
        want = wanted.pop(got["id"], None)
        where = f"{got['id']} ({got['command']})"
        if got["id"] == "test-inputs":
            where += " [the test's own inputs: numpy, Pillow or torch's generator changed?]"
        if want is None:
            problems.append(f"{where}: not in {CORPUS_NAME} (re-record)")
            continue
        if want["command"] != got["command"]:
            problems.append(f"{got['id']}: command changed: {want['command']!r} recorded, {got['command']!r} now")
        if want["exit_code"] != got["exit_code"]:
            problems.append(f"{where}: exit code {want['exit_code']!r} recorded, {got['exit_code']!r} now")
        for name in sorted(set(want["files"]) | set(got["files"])):
            a, b = want["files"].get(name), got["files"].get(name)
            if a != b and a and b and prints_agree(want.get("images", {}).get(name), got.get("images", {}).get(name)):
                close.append(f"{got['id']}/{name}")
            elif a != b:
                what = "missing now" if b is None else "not written before" if a is None else "differs"
                problems.append(f"{where}: file {name} {what} ({a} -> {b})")
        if want.get("stdout") != got.get("stdout"):
            problems.append(f"{where}: --json stdout / API info differs ({want.get('stdout')} -> {got.get('stdout')})")
    problems += [f"{entry_id}: recorded but not run (re-record)" for entry_id in wanted]
    return problems, close


def environment_hint(recorded: dict[str, str], now: dict[str, str]) -> str:
    """A line naming what differs from the recording environment, or ""."""
    changed = [f"{k}: {v} recorded, {now.get(k)} now" for k, v in recorded.items() if now.get(k) != v]
    if not changed:
        return ""
    return ("hint: the environment differs from the one corpus.json was recorded in (" + "; ".join(changed)
            + "); float results and encoders can differ with it. If hashes differ beyond the "
            "image prints, re-record on the reference commit in this environment (SDCLI_RECORD_CORPUS=1) and "
            "compare the change with that.")
