"""Flux.2 dev caption upsampling (conditioning.flux2_upsample) on the tiny model: the rewritten prompt is what
diffusers' Flux2Pipeline.upsample_prompt writes with torch's generator seeded alike, it depends on the seed and
leaves torch's global generator as it was, the rewrite is encoded as written (diffusers' encode_prompt of it), and a
text encoder without a language-model head is refused by name."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from diffusers import Flux2Pipeline

from sdcli.errors import UsageError
from sdcli.families.flux2_dev import FLUX2_DEV

# Seeds whose rewrites of "a (cat)" hold WebUI syntax characters ('#', '\\'); the tiny Mistral stops at a clause's
# end (models.tiny_mistral.STOP), so every rewrite is fast to sample.
SEED, OTHER = 8, 9


class TextProcessor:
    """What diffusers' pipeline asks of FLUX.2-dev's PixtralProcessor for a text-only chat (torchvision, which
    the real processor needs, is not installed): its chat template and its text tokenizer."""

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer

    def apply_chat_template(self, *args, **kwargs):
        return self.tokenizer.apply_chat_template(*args, **kwargs)


@pytest.fixture(scope="module")
def pipe(tiny_flux2_dev_pipe):
    return tiny_flux2_dev_pipe.pipe


def diffusers_rewrite(pipe, prompt: str, temperature: float, seed: int) -> str:
    """diffusers' own upsample_prompt on the tiny model's components, torch's generator seeded with `seed`."""
    theirs = SimpleNamespace(tokenizer=TextProcessor(pipe.tokenizer), text_encoder=pipe.text_encoder)
    torch.manual_seed(seed)
    return Flux2Pipeline.upsample_prompt(theirs, prompt, temperature=temperature, device="cpu")[0]


def test_the_rewrite_is_diffusers_upsample_prompt_seeded_by_the_image_seed(pipe):
    upsampler = FLUX2_DEV.prompt_upsampler(pipe, 0.15)
    torch.manual_seed(123)
    state = torch.get_rng_state()
    ours = upsampler("a cat", SEED)
    assert torch.equal(torch.get_rng_state(), state)  # the global generator is left where it was
    assert ours == diffusers_rewrite(pipe, "a cat", 0.15, SEED) and ours.strip()
    other = upsampler("a cat", OTHER)
    assert other != ours and other == diffusers_rewrite(pipe, "a cat", 0.15, OTHER)
    assert upsampler.text(SEED) == ours and upsampler.text(OTHER) == other


def test_the_rewrite_is_encoded_as_written(pipe):
    """The user's prompt is read as WebUI syntax (escapes resolved), the rewrite goes to the text encoder as it is
    (no WebUI syntax in it), as diffusers' encode_prompt encodes it; the negative prompt is not rewritten."""
    upsampler = FLUX2_DEV.prompt_upsampler(pipe, 0.15)
    plain = FLUX2_DEV.prompt_encoder(pipe, 1, "original", (32, 32))
    encoder = upsampler.encoder(plain, SEED)
    cond = encoder.encode("a \\(cat\\)")  # the WebUI's escaped brackets: "a (cat)" is rewritten
    rewritten = upsampler("a (cat)", SEED)
    assert encoder.rewritten == [rewritten] and any(c in rewritten for c in "()[]|#")  # WebUI syntax, kept as text
    theirs, _ = pipe.encode_prompt(rewritten, device="cpu")
    assert torch.equal(cond.crossattn, theirs)
    assert not torch.equal(cond.crossattn, plain.encode("a \\(cat\\)").crossattn)
    assert torch.equal(encoder.negative_encoder(False)("dog").crossattn, plain.encode("dog").crossattn)


def test_a_text_encoder_without_its_head_is_refused(pipe):
    headless = SimpleNamespace(tokenizer=pipe.tokenizer, text_encoder=pipe.text_encoder.model.language_model)
    with pytest.raises(UsageError, match=r"^--upsample-prompt: the text encoder \(MistralModel\) has no "
                                         "language-model head"):
        FLUX2_DEV.prompt_upsampler(headless, 0.15)
