"""WebUI extra-network tags in prompts (`<lora:name:weight>`): found and removed. Pure Python.

As in the WebUI, every `<kind:args>` tag is taken out of the text the text
encoder sees; `lora` (and its alias `lyco`) tags name a LoRA and its weight.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from sdcli.errors import UsageError

_TAG = re.compile(r"<(\w+):([^>]+)>")
LORA_KINDS = ("lora", "lyco")


@dataclass(frozen=True)
class NetworkTag:
    """One `<kind:name:weight>` tag."""

    kind: str
    name: str
    weight: float


def extract_networks(prompt: str) -> tuple[str, list[NetworkTag]]:
    """prompt -> (the prompt without its tags, the tags in order). Bad weights are a UsageError."""
    tags = []
    for match in _TAG.finditer(prompt):
        kind, args = match.group(1).lower(), match.group(2).split(":")
        try:
            weight = float(args[1]) if len(args) > 1 and args[1].strip() else 1.0
        except ValueError:
            raise UsageError(f"prompt: {match.group(0)}: the weight {args[1]!r} is not a number") from None
        tags.append(NetworkTag(kind, args[0].strip(), weight))
    return _TAG.sub("", prompt), tags
