"""Z-Image as a family: detection, the network adapter against diffusers' own Z-Image call, the prompt encoder
against diffusers' encode_prompt, ComfyUI's sigma table, emphasis refusals."""

from __future__ import annotations

import pytest
import torch

from sdcli.errors import UsageError
from sdcli.families import FAMILIES, detect_folder, detect_single_file
from sdcli.families.zimage import ZIMAGE


def test_folder_and_single_file_names_are_detected(tiny_zimage):
    found = detect_folder(tiny_zimage)
    assert found.family is ZIMAGE and found.in_channels == 16 and FAMILIES["zimage"] is ZIMAGE
    for prefix, embedder in (("model.diffusion_model.", "x_embedder.weight"), ("", "all_x_embedder.2-1.weight")):
        shapes = {prefix + "layers.0.adaLN_modulation.0.weight": [1024, 256],
                  prefix + "cap_embedder.1.weight": [3840, 2560], prefix + embedder: [3840, 64]}
        detected = detect_single_file(shapes)
        assert detected.family is ZIMAGE and detected.in_channels == 16
    # Lumina 2 (no adaLN in layers.0 of that name) is not taken for Z-Image.
    assert not ZIMAGE.detect({"cap_embedder.1.weight": [2304, 2304], "x_embedder.weight": [2304, 64]})


def test_adapter_is_diffusers_call_negated(tiny_zimage_pipe):
    """timestep 1 - sigma, output negated: what ZImagePipeline feeds its scheduler as the velocity."""
    from sdcli.conditioning.cond import Conditioning

    pipe = tiny_zimage_pipe.pipe
    x, sigma, text = torch.randn(2, 16, 4, 6), torch.tensor([0.7, 0.3]), torch.randn(2, 5, 32)
    ours = tiny_zimage_pipe.network(x, sigma, Conditioning(text))
    with torch.no_grad():
        out = pipe.transformer(list(x.unsqueeze(2).unbind(0)), (1000 - sigma * 1000) / 1000, list(text.unbind(0)),
                               return_dict=False)[0]
    assert torch.allclose(ours, -torch.stack(out).squeeze(2), atol=1e-6)
    assert not torch.allclose(ours, torch.stack(out).squeeze(2), atol=1e-3)
    # Odd latent sides: wrapped round to even, cropped after.
    assert tiny_zimage_pipe.network(torch.randn(1, 16, 5, 3), sigma[:1], Conditioning(text[:1])).shape == (1, 16, 5, 3)


def test_prompt_encoder_is_diffusers_encode_prompt(tiny_zimage_pipe):
    encoder = ZIMAGE.prompt_encoder(tiny_zimage_pipe.pipe, 1, "original", (64, 64))
    ours = encoder.encode("a cat, photo").crossattn
    (theirs,), _ = tiny_zimage_pipe.pipe.encode_prompt("a cat, photo", do_classifier_free_guidance=False,
                                                       max_sequence_length=128)
    assert ours.shape[1] == theirs.shape[0] and torch.allclose(ours[0], theirs, atol=1e-5)
    assert not torch.allclose(encoder.encode("a dog, photo").crossattn[0], theirs, atol=1e-3)
    ids = encoder.token_ids("ab")
    tokenizer = tiny_zimage_pipe.pipe.tokenizer
    assert tokenizer.convert_ids_to_tokens(ids) == ["<|im_start|>", *"user\nab", "<|im_end|>", "\n", "<|im_start|>",
                                                    *"assistant\n"]


def test_emphasis_is_refused_unless_literal(tiny_zimage_pipe):
    from sdcli.conditioning.zimage import literal_prompt

    assert literal_prompt(r"a \(cat\) (dog:1.0)", "original") == "a (cat) dog"
    assert literal_prompt("a (cat:1.3)", "none") == "a (cat:1.3)"
    with pytest.raises(UsageError, match=r"prompt: Z-Image takes no emphasis weights .*'cat' weighted"):
        literal_prompt("a (cat:1.3)", "original")
    with pytest.raises(UsageError, match="remove BREAK"):
        literal_prompt("a BREAK b", "original")


def test_sigmas_are_comfyuis_discrete_flow_shift_3():
    from tests.reference.comfy_ref import DiscreteFlow

    ours = ZIMAGE.parameterisation({}).table
    ref = DiscreteFlow(shift=3.0, multiplier=1.0)
    assert torch.allclose(ours.sigmas.float(), ref.sigmas.float(), atol=0)
    assert float(ours.sigma_to_t(torch.tensor(0.25))) == 0.25
    assert not torch.allclose(ZIMAGE.parameterisation({}, shift=6.0).table.sigmas.float(), ref.sigmas.float())
