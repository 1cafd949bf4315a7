"""sdcli's infotext reading against the WebUI's (tests/reference/webui_infotext_ref.py)."""

from __future__ import annotations

import pytest

from sdcli.io.metadata import parse_infotext
from tests.reference.webui_infotext_ref import split_infotext

PARAMS = "Steps: 20, Sampler: Euler a, CFG scale: 7, Seed: 1, Size: 512x512"
CASES = [
    f"a cat\nNegative prompt: dog\n{PARAMS}",
    f"a cat   \n  on a mat \nNegative prompt:   dog  \n  ugly   \n{PARAMS}",  # spaces round every line
    f"line one\n\n   \nline four\n{PARAMS}",  # empty and blank lines inside the prompt
    f"a cat\nNegative prompt:\nfirst negative line\nNegative prompt: again\n{PARAMS}",  # empty first, then twice
    "just a prompt: with a colon",  # no parameter line
    f"  Negative prompt: only a negative\n{PARAMS}",  # indented marker
    f"a\tcat\t\nNegative prompt: x\t\n{PARAMS}",  # tabs
]


@pytest.mark.parametrize("text", CASES)
def test_prompts_are_split_and_stripped_as_the_webui_does(text):
    prompt, negative, params = parse_infotext(text)
    want_prompt, want_negative, keys = split_infotext(text)
    assert (prompt, negative) == (want_prompt, want_negative)
    assert list(params) == keys


def test_the_check_can_fail():
    # The reading sdcli had before (trailing spaces kept) differs from the WebUI's on a case above.
    text = CASES[1]
    kept = "\n".join(line for line in text.split("\n")[:2])
    assert split_infotext(text)[0] != kept and parse_infotext(text)[0] != kept
