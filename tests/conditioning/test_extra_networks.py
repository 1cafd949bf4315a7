"""`<lora:...>` tags as the WebUI reads them: positional and named weights, bad weights."""

from __future__ import annotations

import pytest

from sdcli.conditioning.extra_networks import NetworkTag, extract_networks
from sdcli.errors import UsageError


@pytest.mark.parametrize(("prompt", "tag"), [
    ("a <lora:detail>", NetworkTag("lora", "detail", 1.0)),
    ("a <lora:detail:0.5>", NetworkTag("lora", "detail", 0.5)),
    ("a <lora:detail:0.5:1.5>", NetworkTag("lora", "detail", 0.5, 1.5)),
    ("a <lora:detail:0.5:0.5>", NetworkTag("lora", "detail", 0.5)),  # equal: one weight
    ("a <lora:detail:te=0.2:unet=0.7>", NetworkTag("lora", "detail", 0.2, 0.7)),
    ("a <lora:detail:0.4:unet=0>", NetworkTag("lora", "detail", 0.4, 0.0)),
    ("a <lyco:detail:1:0.3:dyn=8>", NetworkTag("lyco", "detail", 1.0, 0.3)),
])
def test_weights(prompt, tag):
    text, tags = extract_networks(prompt)
    assert text == "a " and tags == [tag]


@pytest.mark.parametrize("prompt", ["<lora:x:abc>", "<lora:x:1:big>", "<lora:x:te=nan>", "<lora:x:unet=inf>"])
def test_bad_weights_name_the_tag(prompt):
    with pytest.raises(UsageError, match=f"prompt: {prompt}: the weight"):
        extract_networks(prompt)
