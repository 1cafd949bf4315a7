"""Chroma's table row: detection from a folder and from tensor names (before Flux schnell, whose keys it has),
single files refused by name, the network call's text mask, the prompt format."""

from __future__ import annotations

from sdcli.families import FAMILIES, detect_folder, detect_single_file


def test_folder_and_tensor_names(tiny_chroma, tiny_flux):
    detected = detect_folder(tiny_chroma)
    assert detected.family is FAMILIES["chroma"] and detected.in_channels == 16
    assert detect_folder(tiny_flux["flux-schnell"]).family.name == "flux-schnell"
    bfl = {"img_in.weight": (3072, 64), "distilled_guidance_layer.in_proj.weight": (5120, 64)}
    assert detect_single_file(bfl).family is FAMILIES["chroma"] and detect_single_file(bfl).in_channels == 16
    assert detect_single_file({"img_in.weight": (3072, 64)}).family.name == "flux-schnell"


def test_prompt_format_and_mask(tiny_chroma):
    import torch

    from sdcli.conditioning.chroma import ChromaPromptEncoder, chroma_tokens
    from tests.conftest import _load_on_cpu

    pipe = _load_on_cpu(tiny_chroma).pipe
    ids, length = chroma_tokens(pipe.tokenizer, "a cat")
    expected = pipe.tokenizer(["a cat"], padding="max_length", max_length=512, truncation=True)["input_ids"][0]
    assert ids == expected and length == len(pipe.tokenizer("a cat")["input_ids"])
    cond = ChromaPromptEncoder(pipe.tokenizer, pipe.text_encoder).encode("a cat")
    assert cond.crossattn.shape[1] == 512 and int(cond.extra["mask"].sum()) == length + 1
    adapter = FAMILIES["chroma"].network(pipe)
    x, t = torch.randn(1, 16, 4, 4), torch.tensor([0.5])
    out = adapter(x, t, cond)
    changed = type(cond)(cond.crossattn, {"mask": torch.ones_like(cond.extra["mask"])})
    assert out.shape == x.shape and not torch.equal(out, adapter(x, t, changed))  # the mask reaches the network
