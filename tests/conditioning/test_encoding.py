"""Prompt encoding as the WebUI's CLIP wrapper: chunks, CLIP skip, emphasis modes.

Exact agreement with the WebUI reference is in tests/reference/test_webui_parity.py;
these tests pin the behaviour itself.
"""

import pytest
import torch
import transformers

from sdcli.conditioning.encoding import ClipPromptEncoder, ClipTextEncoder, apply_emphasis, final_layer_norm


def test_installed_transformers_is_the_layout_diffusers_0_42_trips_on():
    # diffusers 0.42's own clip_skip path uses `text_encoder.text_model`; transformers 5
    # flattened CLIPTextModel. sdcli must work on this layout (and on the old one).
    assert int(transformers.__version__.split(".")[0]) >= 5


def _ids(pipe, text="a cat on a mat"):
    return pipe.tokenizer(text, padding="max_length", max_length=77, return_tensors="pt").input_ids


@torch.no_grad()
@pytest.mark.parametrize("skip", [1, 2, 5, 12])
def test_clip_skip_is_hidden_state_minus_n_through_final_layer_norm(tiny_pipe, skip):
    te = tiny_pipe.pipe.text_encoder
    reference = te(_ids(tiny_pipe.pipe), output_hidden_states=True)
    expected = final_layer_norm(te)(reference.hidden_states[-skip]) if skip > 1 else reference.last_hidden_state
    got = ClipTextEncoder(tiny_pipe.pipe.tokenizer, te, skip)("a cat on a mat")
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-6)


@torch.no_grad()
def test_clip_skip_2_changes_the_embedding(tiny_pipe):
    one = ClipPromptEncoder(tiny_pipe.pipe.tokenizer, tiny_pipe.pipe.text_encoder, 1).encode("a cat").crossattn
    two = ClipPromptEncoder(tiny_pipe.pipe.tokenizer, tiny_pipe.pipe.text_encoder, 2).encode("a cat").crossattn
    assert one.shape == two.shape == (1, 77, 32)
    assert (one - two).abs().max() > 1e-3


@torch.no_grad()
def test_long_prompts_are_chunked_not_truncated_and_the_negative_is_not_padded(tiny_pipe):
    enc = ClipPromptEncoder(tiny_pipe.pipe.tokenizer, tiny_pipe.pipe.text_encoder, 1)
    base = "a red fox in the snow " * 6  # 96 tokens: this tokenizer makes one per character
    a, b = enc.encode(base + "at dawn").crossattn, enc.encode(base + "at dusk").crossattn
    assert a.shape[1] == 154 and enc.encode("").crossattn.shape[1] == 77
    assert (a[:, 77:] - b[:, 77:]).abs().max() > 1e-4, "text past token 77 reaches the embedding"
    pos, neg = enc.encode_pair(base, "")  # diffusers pipelines need equal lengths: padded there only
    assert pos.shape == neg.shape == (1, 154, 32)


def test_a_long_prompt_goes_back_to_its_last_comma(tiny_pipe):
    clip = ClipTextEncoder(tiny_pipe.pipe.tokenizer, tiny_pipe.pipe.text_encoder)
    text = "x" * 70 + ",abcdefghij"  # the chunk fills up 10 tokens after the comma
    first, second = clip.chunks(text)
    comma = clip.comma
    assert first.tokens[1:72] == clip.tokenizer("x" * 70 + ",", add_special_tokens=False)["input_ids"][:71]
    assert first.tokens[71] == comma and set(first.tokens[72:]) == {clip.id_end}
    assert len(first.tokens) == len(second.tokens) == 77
    far = clip.chunks("x" * 50 + "," + "y" * 40)  # comma 25 tokens back: cut at 75 as usual
    assert far[0].tokens[75] != clip.id_end


@torch.no_grad()
def test_weights_and_break(tiny_pipe):
    enc = ClipPromptEncoder(tiny_pipe.pipe.tokenizer, tiny_pipe.pipe.text_encoder, 1)
    plain = enc.encode("a cat").crossattn
    torch.testing.assert_close(plain, enc.encode("(a cat:1)").crossattn)
    assert (enc.encode("(a cat:1.5)").crossattn - plain).abs().max() > 1e-3
    assert enc.encode("a cat BREAK a dog").crossattn.shape[1] == 154


def test_emphasis_modes():
    z = torch.randn(1, 77, 8) + 0.3
    weights = torch.ones(1, 77)
    weights[0, 3] = 1.5
    original, no_norm = apply_emphasis(z, weights, "original"), apply_emphasis(z, weights, "no norm")
    torch.testing.assert_close(no_norm[0, 3], z[0, 3] * 1.5)
    torch.testing.assert_close(no_norm[0, 4], z[0, 4])
    torch.testing.assert_close(original.mean(), z.mean())  # Original restores the mean afterwards
    torch.testing.assert_close(original, no_norm * (z.mean() / no_norm.mean()))
    assert torch.equal(apply_emphasis(z, weights, "none"), z)


@torch.no_grad()
def test_emphasis_none_reads_brackets_as_text(tiny_pipe):
    clip = ClipTextEncoder(tiny_pipe.pipe.tokenizer, tiny_pipe.pipe.text_encoder, emphasis="none")
    (chunk,) = clip.chunks("(a cat:1.5)")
    assert set(chunk.multipliers) == {1.0}
    ids = clip.tokenizer("(a cat:1.5)", add_special_tokens=False)["input_ids"]
    assert chunk.tokens[1:1 + len(ids)] == ids


def test_the_family_builds_its_prompt_encoder_with_its_capabilities(tiny_pipe):
    encoder = tiny_pipe.family.prompt_encoder(tiny_pipe.pipe, 2, "original", (64, 64))
    caps = encoder.capabilities
    assert (caps.clip_skip_layers, caps.pooled, caps.zero_empty_negative) == (12, False, False)
    assert encoder.negative_encoder(True)("") is encoder.encode("")  # an empty negative is encoded, not zeroed
    embeds = encoder.pipeline_embeds("a cat", "")
    assert set(embeds) == {"prompt_embeds", "negative_prompt_embeds"}
