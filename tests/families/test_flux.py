"""Flux.1 as a family: detection, the network adapter against diffusers' own Flux call, the prompt encoder,
and the loop's behaviour on tiny dev / schnell / Fill models (distilled guidance, CFG 1, refusals)."""

from __future__ import annotations

import torch

from sdcli.families import detect_folder
from sdcli.families.flux import FLUX_DEV, FLUX_FILL, FLUX_SCHNELL, image_ids, pack, unpack


def test_folders_are_detected_by_their_transformer(tiny_flux):
    found = {arch: detect_folder(path) for arch, path in tiny_flux.items()}
    assert found["flux-dev"].family is FLUX_DEV and found["flux-dev"].in_channels == 16
    assert found["flux-schnell"].family is FLUX_SCHNELL
    assert found["flux-dev-inpaint"].family is FLUX_FILL and found["flux-dev-inpaint"].inpainting


def test_packing_is_diffusers_packing():
    from diffusers import FluxPipeline

    x = torch.randn(2, 16, 6, 8)
    assert torch.equal(pack(x), FluxPipeline._pack_latents(x, 2, 16, 6, 8))
    assert torch.equal(unpack(pack(x), 6, 8), x)
    assert torch.equal(image_ids(6, 8, "cpu", torch.float32),
                       FluxPipeline._prepare_latent_image_ids(2, 3, 4, "cpu", torch.float32))


def test_adapter_calls_the_transformer_as_diffusers_does(tiny_flux_pipe):
    from sdcli.conditioning.cond import Conditioning

    pipe = tiny_flux_pipe.pipe
    x, sigma = torch.randn(1, 16, 4, 4), torch.tensor([0.7])
    text, pooled = torch.randn(1, 5, 32), torch.randn(1, 32)
    cond = Conditioning(text, {"pooled": pooled, "guidance": torch.tensor([3.5])})
    ours = tiny_flux_pipe.network(x, sigma, cond)
    with torch.no_grad():
        theirs = pipe.transformer(hidden_states=pipe._pack_latents(x, 1, 16, 4, 4), timestep=sigma,
                                  guidance=torch.tensor([3.5]), pooled_projections=pooled,
                                  encoder_hidden_states=text, txt_ids=torch.zeros(5, 3),
                                  img_ids=pipe._prepare_latent_image_ids(1, 2, 2, "cpu", torch.float32),
                                  return_dict=False)[0]
    assert torch.equal(ours, pipe._unpack_latents(theirs, 32, 32, 8))


def test_t5_chunk_is_forges(tiny_flux_pipe):
    """One chunk: the end token 1, then pad id 0 to 256 (Forge's min_length); BREAK starts another chunk, of
    which Forge conditions on the first alone (padded to the longest)."""
    from sdcli.conditioning.flux import T5TextEncoder

    pipe = tiny_flux_pipe.pipe
    t5 = T5TextEncoder(pipe.tokenizer_2, pipe.text_encoder_2)
    (chunk,) = t5.chunks("a (cat:1.5)")
    words = pipe.tokenizer_2(["a ", "cat"], add_special_tokens=False)["input_ids"]
    n = len(words[0]) + len(words[1])
    assert chunk.tokens == [*words[0], *words[1], 1, *[0] * (255 - n)]
    assert chunk.multipliers[:len(words[0]) + len(words[1])] == [1.0] * len(words[0]) + [1.5] * len(words[1])
    assert [len(c.tokens) for c in t5.chunks("a BREAK b")] == [256, 256]
    assert len(t5.chunks("word " * 300)[0].tokens) > 256  # no 75-token limit: one long chunk
    assert t5("a cat").shape == (1, 256, 32)
    assert torch.equal(t5("a cat BREAK blue sky"), t5("a cat"))  # the first chunk only, as Forge
    assert t5("a cat BREAK " + "word " * 300).shape[1] > 256  # padded to the longest chunk


def test_distilled_guidance_is_an_input_of_dev_only(tiny_flux):
    from sdcli.families import FAMILIES
    from tests.conftest import _load_on_cpu

    for arch, guided in (("flux-dev", True), ("flux-schnell", False)):
        model = _load_on_cpu(tiny_flux[arch])
        outputs = []
        for guidance in (3.5, 7.0):
            encoder = FAMILIES[arch].prompt_encoder(model.pipe, 1, "original", (32, 32), guidance)
            outputs.append(model.network(torch.ones(1, 16, 4, 4), torch.tensor([0.5]), encoder.encode("a cat")))
        assert torch.equal(outputs[0], outputs[1]) != guided
