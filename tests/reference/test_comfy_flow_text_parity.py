"""ComfyUI's text paths for Flux.2 (dev, klein), Z-Image, Qwen-Image and Chroma (--emphasis comfy, which a
replayed ComfyUI graph sets) vs an independent transcription (comfy_flow_text_ref), on the tiny models: the
conditioning equal, and a ComfyUI graph replayed through sdcli's job in ComfyUI's pixels (0 levels). Each check
is shown to fail with sdcli's default text path (diffusers' encoding) where the two differ, or with the prompt
read the WebUI's way where only the reading of brackets differs."""

from __future__ import annotations

from contextlib import contextmanager

import pytest
import torch

from tests.reference import comfy_flow_text_ref as R

pytestmark = [pytest.mark.parity]

# family arch -> (sdcli's encoder from the loaded pipe and the emphasis mode, the reference encoder)
ARCHES = {"flux2-dev": R.flux2_dev_encode, "flux2-klein": R.klein_encode, "zimage": R.zimage_encode,
          "qwen-image": R.qwen_image_encode, "chroma": R.chroma_encode}
PROMPTS = ["a red cat on a hill", "a (red:1.4) cat, [photo] \\(sic\\) BREAK hill"]


def ours(model, emphasis, text):
    """sdcli's conditioning of `text` by the family's own prompt encoder in emphasis mode `emphasis`."""
    encoder = model.family.prompt_encoder(model.pipe, 1, emphasis, (32, 32))
    with torch.no_grad():
        return encoder.encode(text)


@contextmanager
def pad_embedding(model, scale=0.5):
    """The text encoder's pad-token embedding made non-zero (seeded) for the block, then put back: the tiny
    Mistral model's is zero (padding_idx), which makes diffusers' left padding ComfyUI's zeros by accident."""
    tokenizer = getattr(model.pipe.tokenizer, "tokenizer", model.pipe.tokenizer)
    weight = model.pipe.text_encoder.get_input_embeddings().weight
    row, kept = tokenizer.pad_token_id, weight.data[tokenizer.pad_token_id].clone()
    weight.data[row] = scale * torch.randn(kept.shape, generator=torch.manual_seed(0))
    try:
        yield
    finally:
        weight.data[row] = kept


def most(a, b):
    return float((a - b).abs().max()) if a.shape == b.shape else float("inf")


@pytest.mark.parametrize("arch", ARCHES)
@pytest.mark.parametrize("prompt", PROMPTS)
def test_conditioning_is_comfyuis(tiny_family_pipe, arch, prompt):
    model = tiny_family_pipe(arch)
    theirs = ARCHES[arch](model.pipe.tokenizer, model.pipe.text_encoder, prompt)
    cond = ours(model, "comfy", prompt)
    print(f"{arch} {prompt!r}: {tuple(cond.crossattn.shape)} vs {tuple(theirs.shape)}, "
          f"max difference {most(cond.crossattn, theirs)}")
    assert cond.crossattn.shape == theirs.shape and most(cond.crossattn, theirs) < 1e-5
    assert "mask" not in cond.extra or bool(cond.extra["mask"].all())


def test_default_text_path_differs_where_comfyui_encodes_otherwise(tiny_family_pipe):
    """Flux.2 dev: diffusers' left-padded encoding (sdcli's default) is far from ComfyUI's zeros in front with a
    non-zero pad embedding, as a released model has (the tiny one's is zero: the same by accident). Chroma: the
    default attends the first pad token too (its states as T5 gives them), ComfyUI none (the pixel test shows the
    effect). Klein, Z-Image and Qwen-Image encode a plain prompt as ComfyUI does, and refuse the bracketed one that
    ComfyUI reads as text."""
    from sdcli.errors import UsageError

    dev = tiny_family_pipe("flux2-dev")
    theirs = R.flux2_dev_encode(dev.pipe.tokenizer, dev.pipe.text_encoder, PROMPTS[0])
    with pad_embedding(dev):
        default = ours(dev, "original", PROMPTS[0]).crossattn
        assert most(ours(dev, "comfy", PROMPTS[0]).crossattn, theirs) < 1e-5
    print(f"flux2-dev: default vs ComfyUI's, max difference {most(default, theirs)}")
    assert most(default, theirs) > 0.01
    chroma = tiny_family_pipe("chroma")
    theirs = R.chroma_encode(chroma.pipe.tokenizer, chroma.pipe.text_encoder, PROMPTS[0])
    default = ours(chroma, "original", PROMPTS[0])
    attended = default.crossattn[:, default.extra["mask"][0].bool()]
    print(f"chroma: default attends {attended.shape[1]} tokens (one pad), ComfyUI's {theirs.shape[1]}")
    assert attended.shape[1] == theirs.shape[1] + 1 and most(attended[:, :-1], theirs) < 1e-5
    for arch in ("flux2-klein", "zimage", "qwen-image"):
        model = tiny_family_pipe(arch)
        theirs = ARCHES[arch](model.pipe.tokenizer, model.pipe.text_encoder, PROMPTS[0])
        assert most(ours(model, "original", PROMPTS[0]).crossattn, theirs) < 1e-5
        with pytest.raises(UsageError, match="^prompt: "):
            ours(model, "original", PROMPTS[1])


def test_qwen_image_own_template_and_long_prompts(tiny_family_pipe):
    """ComfyUI takes a Qwen-Image prompt that starts with <|im_start|> as the whole template and cuts a prompt at no
    length (diffusers: 1024 tokens after the template's start); Flux.2 klein pads to 512 and cuts nothing."""
    model = tiny_family_pipe("qwen-image")
    own = "<|im_start|>system\nDraw it.<|im_end|>\n<|im_start|>user\na red cat<|im_end|>\n<|im_start|>assistant\n"
    long = "a red cat on a hill, " * 60  # 1260 tokens with the tiny character-level tokenizer
    for text in (own, long):
        theirs = R.qwen_image_encode(model.pipe.tokenizer, model.pipe.text_encoder, text)
        assert most(ours(model, "comfy", text).crossattn, theirs) < 1e-5
        assert most(ours(model, "original", text).crossattn, theirs) > 0.01
    klein = tiny_family_pipe("flux2-klein")
    theirs = R.klein_encode(klein.pipe.tokenizer, klein.pipe.text_encoder, long)
    assert theirs.shape[1] > 512 and most(ours(klein, "comfy", long).crossattn, theirs) < 1e-5
