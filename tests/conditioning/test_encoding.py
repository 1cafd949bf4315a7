"""CLIP skip and prompt encoding, with the transformers this project installs."""

import pytest
import torch
import transformers

from sdcli.conditioning.encoding import ClipSkipEncoder, PromptEncoder, final_layer_norm


def test_installed_transformers_is_the_layout_diffusers_0_42_trips_on():
    # diffusers 0.42's own clip_skip path uses `text_encoder.text_model`; transformers 5
    # flattened CLIPTextModel. sdcli must work on this layout (and on the old one).
    assert int(transformers.__version__.split(".")[0]) >= 5


def _ids(pipe, text="a cat on a mat"):
    return pipe.tokenizer(text, padding="max_length", max_length=77, return_tensors="pt").input_ids


@torch.no_grad()
@pytest.mark.parametrize("skip", [1, 2, 5, 12])
def test_clip_skip_is_hidden_state_minus_n_through_final_layer_norm(tiny_pipe, skip):
    te = tiny_pipe.text_encoder
    ids = _ids(tiny_pipe)
    reference = te(ids, output_hidden_states=True)
    expected = final_layer_norm(te)(reference.hidden_states[-skip])
    got = ClipSkipEncoder(te, skip)(ids).last_hidden_state
    torch.testing.assert_close(got, expected, rtol=0, atol=0)
    if skip == 1:  # WebUI 1 = the encoder's normal output
        torch.testing.assert_close(got, reference.last_hidden_state)


@torch.no_grad()
def test_clip_skip_2_changes_the_embedding(tiny_pipe):
    one, _ = PromptEncoder(tiny_pipe, 1).encode_pair("a cat", "")
    two, _ = PromptEncoder(tiny_pipe, 2).encode_pair("a cat", "")
    assert one.shape == two.shape == (1, 77, 32)
    assert (one - two).abs().max() > 1e-3


@torch.no_grad()
def test_clip_skip_embedding_is_what_prompt_encoder_returns(tiny_pipe):
    te = tiny_pipe.text_encoder
    emb, _ = PromptEncoder(tiny_pipe, 2).encode_pair("a cat on a mat", "")
    expected = final_layer_norm(te)(te(_ids(tiny_pipe), output_hidden_states=True).hidden_states[-2])
    torch.testing.assert_close(emb, expected, atol=1e-5, rtol=1e-5)


@torch.no_grad()
def test_long_prompts_are_chunked_not_truncated(tiny_pipe):
    enc = PromptEncoder(tiny_pipe, 1)
    base = "a red fox in the snow " * 6  # 96 tokens: this tokenizer makes one per character
    a, neg = enc.encode_pair(base + "at dawn", "")
    b, _ = enc.encode_pair(base + "at dusk", "")
    assert a.shape[1] == 154 and neg.shape[1] == 154, "negative is padded to the same length"
    assert (a[:, 77:] - b[:, 77:]).abs().max() > 1e-4, "text past token 77 reaches the embedding"


@torch.no_grad()
def test_weights_and_break(tiny_pipe):
    enc = PromptEncoder(tiny_pipe, 1)
    plain, _ = enc.encode_pair("a cat", "")
    explicit_one, _ = enc.encode_pair("(a cat:1)", "")
    torch.testing.assert_close(plain, explicit_one)
    heavy, _ = enc.encode_pair("(a cat:1.5)", "")
    assert (heavy - plain).abs().max() > 1e-3
    broken, _ = enc.encode_pair("a cat BREAK a dog", "")
    assert broken.shape[1] == 154


@torch.no_grad()
def test_raising_a_weight_moves_the_embedding_away_from_the_empty_prompt(tiny_pipe):
    enc = PromptEncoder(tiny_pipe, 1)
    empty = enc.provider.empty_z
    distances = [float((enc.encode_pair(f"a (cat:{w})", "")[0] - empty).norm()) for w in (0.5, 0.9, 1.0, 1.5, 2.0)]
    assert distances == sorted(distances) and len(set(distances)) == 5
    down, _ = enc.encode_pair("a [cat]", "")
    up, _ = enc.encode_pair("a (cat)", "")
    assert float((down - empty).norm()) < distances[2] < float((up - empty).norm())


@torch.no_grad()
def test_long_prompt_break_and_clip_skip_work_together(tiny_pipe):
    long = "a red fox in the snow " * 6 + "BREAK at dawn"
    one, neg1 = PromptEncoder(tiny_pipe, 1).encode_pair(long, "blurry " * 20)
    two, neg2 = PromptEncoder(tiny_pipe, 2).encode_pair(long, "blurry " * 20)
    assert one.shape == two.shape == neg1.shape == (1, 231, 32)
    assert (one - two).abs().max() > 1e-3 and (neg1 - neg2).abs().max() > 1e-3
