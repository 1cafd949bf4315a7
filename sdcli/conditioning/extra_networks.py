"""WebUI extra-network tags in prompts (`<lora:name:weight>`): found and removed. Pure Python.

As in the WebUI, every `<kind:args>` tag is taken out of the text the text
encoder sees; `lora` (and its alias `lyco`) tags name a LoRA and its weights:
`<lora:name:te:unet>` or `<lora:name:te=0.5:unet=1>`, where the UNet weight
defaults to the text-encoder one (the WebUI's rule; `dyn=` is accepted and unused).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from sdcli.errors import UsageError

_TAG = re.compile(r"<(\w+):([^>]+)>")
LORA_KINDS = ("lora", "lyco")


@dataclass(frozen=True)
class NetworkTag:
    """One `<kind:name:weight[:unet_weight]>` tag; `weight` is the text encoder's."""

    kind: str
    name: str
    weight: float
    unet_weight: float | None = None  # None: the same as `weight`


def extract_networks(prompt: str) -> tuple[str, list[NetworkTag]]:
    """prompt -> (the prompt without its tags, the tags in order). Bad weights are a UsageError."""
    tags = []
    for match in _TAG.finditer(prompt):
        kind, args = match.group(1).lower(), match.group(2).split(":")
        positional = [a for a in args if "=" not in a]
        named = dict(a.split("=", 1) for a in args if "=" in a)
        te = _weight(match.group(0), named.get("te", positional[1] if len(positional) > 1 else ""), 1.0)
        unet = _weight(match.group(0), named.get("unet", positional[2] if len(positional) > 2 else ""), None)
        tags.append(NetworkTag(kind, positional[0].strip() if positional else "", te,
                               None if unet == te else unet))
    return _TAG.sub("", prompt), tags


def _weight(tag: str, text: str, default: float | None) -> float | None:
    """One weight of a tag; empty = `default`."""
    if not text.strip():
        return default
    try:
        value = float(text)
    except ValueError:
        raise UsageError(f"prompt: {tag}: the weight {text!r} is not a number") from None
    if not math.isfinite(value):
        raise UsageError(f"prompt: {tag}: the weight {text!r} is not a finite number")
    return value
