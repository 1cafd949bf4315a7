"""Self-tests of the Forge Flux.1 reference (forge_flux_ref.py and friends) on tiny random models, without sdcli."""

from __future__ import annotations

import pytest
import torch

from tests.reference import comfy_ref
from tests.reference import forge_flux_ref as F
from tests.reference import forge_flux_text_ref as T

pytestmark = pytest.mark.parity

WORDS = ["a", "cat", "dog", "red", "blue", "on", "the", "hill", "sky", ",", "photo", "of"]


def _tokenizer(specials, bos=None, eos=None, pad=None, unk=None):
    """A whitespace word-level tokenizer (the engines need only input_ids, the special ids and get_vocab)."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {tok: i for i, tok in enumerate(specials + WORDS)}
    tok = Tokenizer(models.WordLevel(vocab, unk_token=unk))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=bos, eos_token=eos, pad_token=pad, unk_token=unk)


@pytest.fixture(scope="module")
def tiny():
    """Tiny Flux dev/schnell transformers, T5 and CLIP-L encoders with their tokenizers, a 16-channel VAE."""
    from diffusers import AutoencoderKL, FluxTransformer2DModel
    from transformers import CLIPTextConfig, CLIPTextModel, T5Config, T5EncoderModel

    t5_tok = _tokenizer(["<pad>", "</s>", "<unk>"], eos="</s>", pad="<pad>", unk="<unk>")
    clip_tok = _tokenizer(["<|startoftext|>", "<|endoftext|>"], bos="<|startoftext|>", eos="<|endoftext|>",
                          pad="<|endoftext|>", unk="<|endoftext|>")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        t5 = T5EncoderModel(T5Config(vocab_size=len(t5_tok), d_model=32, d_kv=8, d_ff=64, num_layers=1, num_heads=2,
                                     relative_attention_num_buckets=8, feed_forward_proj="gated-gelu")).eval()
        clip = CLIPTextModel(CLIPTextConfig(vocab_size=len(clip_tok), hidden_size=32, intermediate_size=64,
                                            num_hidden_layers=1, num_attention_heads=2, max_position_embeddings=77,
                                            bos_token_id=0, eos_token_id=1, pad_token_id=1)).eval()
        kw = dict(patch_size=1, in_channels=64, num_layers=1, num_single_layers=1, attention_head_dim=8,
                  num_attention_heads=2, joint_attention_dim=32, pooled_projection_dim=32, axes_dims_rope=(2, 2, 4))
        dev = FluxTransformer2DModel(**kw, guidance_embeds=True).eval()
        schnell = FluxTransformer2DModel(**kw, guidance_embeds=False).eval()
        vae = AutoencoderKL(in_channels=3, out_channels=3, latent_channels=16, block_out_channels=(8, 8, 8, 8),
                            down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
                            layers_per_block=1, norm_num_groups=4, scaling_factor=0.3611, shift_factor=0.1159).eval()
    return {"dev": dev, "schnell": schnell, "t5": t5, "t5_tokenizer": t5_tok, "clip": clip,
            "clip_tokenizer": clip_tok, "vae": vae}


def run(tiny, model="dev", **settings):
    settings = {"prompt": "a red cat", "seeds": (1,), "width": 32, "height": 32, "steps": 3, **settings}
    return F.sample_flux(tiny[model], tiny["t5"], tiny["t5_tokenizer"], tiny["clip"], tiny["clip_tokenizer"],
                         tiny["vae"], **settings)


# ---------------------------------------------------------------- the sigma table and schedules


def test_the_flux_table_is_comfyuis_and_mu_is_chosen_by_the_guidance_embedder():
    dev, schnell = F.flux_predictor(True), F.flux_predictor(False)
    assert (dev.mu, schnell.mu) == (1.15, 1.0)
    torch.testing.assert_close(dev.sigmas, comfy_ref.Flux(1.15).sigmas, rtol=0, atol=0)
    torch.testing.assert_close(schnell.sigmas, comfy_ref.Flux(1.0).sigmas, rtol=0, atol=0)
    with pytest.raises(AssertionError):  # the comparison can fail: another mu is another table
        torch.testing.assert_close(F.flux_predictor(True, mu=1.16).sigmas, comfy_ref.Flux(1.15).sigmas)
    assert len(dev.sigmas) == 10000 and float(dev.sigmas[-1]) == 1.0


def test_simple_reads_the_shifted_table_but_normal_is_linear_in_sigma():
    """Forge's PredictionFlux maps t -> sigma by identity, so Normal/SGM Uniform ignore the shift (ComfyUI's do not)."""
    wrap = F.ForgeScheduleLinker(F.flux_predictor(True))
    simple = F.get_sigmas(wrap, {}, "Simple", 4)
    table = wrap.sigmas
    assert simple.tolist() == pytest.approx([float(table[-1]), float(table[-2501]), float(table[-5001]),
                                             float(table[-7501]), 0.0])
    normal = F.get_sigmas(wrap, {}, "Normal", 4)
    torch.testing.assert_close(normal[:-1], torch.linspace(1.0, float(table[0]), 4))
    assert F.get_sigmas(wrap, {}, "Automatic", 3)[0] == 9999  # Euler + Automatic = Uniform: unsound on Flux
    karras = F.get_sigmas(wrap, {"scheduler": "karras"}, "Automatic", 4)  # DPM++ 2M's default
    assert float(karras[0]) == pytest.approx(1.0) and float(karras[-2]) == pytest.approx(float(table[0]), rel=1e-4)
    discard = F.get_sigmas(wrap, {"scheduler": "karras", "discard_next_to_last_sigma": True}, "Automatic", 4)
    assert len(discard) == 5 and float(discard[-1]) == 0.0


def test_noise_scaling_and_denoised_are_comfyuis_const():
    p, ref = F.flux_predictor(True), comfy_ref.CONST()
    g = torch.Generator().manual_seed(0)
    x, out, noise = (torch.randn(2, 16, 4, 4, generator=g) for _ in range(3))
    sigma = torch.tensor([0.8, 0.3])
    torch.testing.assert_close(p.calculate_denoised(sigma, out, x), ref.calculate_denoised(sigma, out, x))
    rows = sigma[:, None, None, None]
    torch.testing.assert_close(p.noise_scaling(rows, noise, x), ref.noise_scaling(sigma, noise, x))


# ---------------------------------------------------------------- the network call, Fill layout


def test_packing_and_ids_are_diffusers_flux_pipelines(tiny):
    from diffusers import FluxPipeline

    g = torch.Generator().manual_seed(0)
    x, ctx = torch.randn(1, 16, 4, 6, generator=g), torch.randn(1, 7, 32, generator=g)
    y = torch.randn(1, 32, generator=g)
    t, guidance = torch.tensor([0.7]), torch.tensor([3.5])
    ours = F.FluxModel(tiny["dev"], F.flux_predictor(True)).forward(x, t, ctx, y, guidance)
    packed = FluxPipeline._pack_latents(x, 1, 16, 4, 6)
    ids = FluxPipeline._prepare_latent_image_ids(1, 2, 3, "cpu", torch.float32)
    out = tiny["dev"](hidden_states=packed, encoder_hidden_states=ctx, pooled_projections=y, timestep=t,
                      img_ids=ids, txt_ids=torch.zeros(7, 3), guidance=guidance, return_dict=False)[0]
    torch.testing.assert_close(ours, FluxPipeline._unpack_latents(out, 32, 48, 8), rtol=0, atol=0)
    odd = F.FluxModel(tiny["dev"], F.flux_predictor(True)).forward(x[:, :, :3, :5], t, ctx, y, guidance)
    assert odd.shape == (1, 16, 3, 5)  # odd latent sizes: circular padding, then cropped


def test_fill_concat_packs_like_diffusers_flux_fill(tiny):
    from diffusers import FluxFillPipeline

    g = torch.Generator().manual_seed(0)
    latent, masked = torch.randn(1, 16, 4, 4, generator=g), torch.randn(1, 16, 4, 4, generator=g)
    mask = (torch.rand(1, 1, 32, 32, generator=g) > 0.5).float()
    forge_way = F.rearrange(torch.cat([latent, T.fill_concat(masked, mask)], 1),
                            "b c (h ph) (w pw) -> b (h w) (c ph pw)", ph=2, pw=2)
    pack = FluxFillPipeline._pack_latents
    m = mask[:, 0].view(1, 4, 8, 4, 8).permute(0, 2, 4, 1, 3).reshape(1, 64, 4, 4)
    theirs = torch.cat([pack(latent, 1, 16, 4, 4), pack(masked, 1, 16, 4, 4), pack(m, 1, 64, 4, 4)], dim=-1)
    assert forge_way.shape == (1, 4, 384)
    torch.testing.assert_close(forge_way, theirs, rtol=0, atol=0)


# ---------------------------------------------------------------- text conditioning


def test_t5_engine_pads_to_256_ends_with_1_and_breaks_into_rows(tiny):
    engine = T.T5Engine(tiny["t5"], tiny["t5_tokenizer"])
    (chunk,), count = engine.tokenize_line("a (red:1.5) cat")
    assert chunk.tokens[:4] == [3, 6, 4, 1] and set(chunk.tokens[4:]) == {0} and len(chunk.tokens) == 256
    assert chunk.multipliers[:4] == [1.0, 1.5, 1.0, 1.0] and count == 4
    chunks, _ = engine.tokenize_line("a cat BREAK blue sky")
    assert [c.tokens[:3] for c in chunks] == [[3, 4, 1], [7, 11, 1]]
    assert engine(["a cat BREAK blue sky"]).shape == (2, 256, 32)  # stacked on the batch axis, not concatenated
    (long,), _ = engine.tokenize_line(" ".join(["cat"] * 300))
    assert len(long.tokens) == 301 and long.tokens[-1] == 1  # no truncation, no 75-token chunks


def test_clip_pooled_is_the_first_chunks_end_token(tiny):
    tok, clip = tiny["clip_tokenizer"], tiny["clip"]
    pooled = T.ClipLPooled(clip, tok)(["a red cat", "(dog:1.3) on the hill"])
    direct = [0, *tok("a red cat", add_special_tokens=False)["input_ids"]] + [1] * 74
    torch.testing.assert_close(pooled[0], clip(torch.tensor([direct[:77]])).pooler_output[0])
    emphasised = T.ClipLPooled(clip, tok)(["dog on the hill"])
    torch.testing.assert_close(pooled[1], emphasised[0])  # emphasis does not reach the pooled vector


# ---------------------------------------------------------------- sample_flux end to end


def test_sample_flux_is_deterministic_and_per_seed(tiny):
    a, b = run(tiny, seeds=(1, 2)), run(tiny, seeds=(1, 2))
    assert a.shape == (2, 16, 4, 4) and torch.equal(a, b)
    torch.testing.assert_close(run(tiny, seeds=(2,))[0], a[1], rtol=1e-4, atol=1e-5)
    assert not torch.allclose(a[0], a[1])
    assert not torch.allclose(run(tiny, mu=1.16), run(tiny))  # a parity check on latents sees another mu


def test_cfg_1_ignores_the_negative_and_true_cfg_uses_it(tiny):
    assert torch.equal(run(tiny, negative="blue sky"), run(tiny, negative="dog"))
    with pytest.raises(AssertionError):
        torch.testing.assert_close(run(tiny, cfg=3.0, negative="blue sky"), run(tiny, cfg=3.0, negative="dog"))


def test_distilled_guidance_reaches_dev_and_not_schnell(tiny):
    assert not torch.allclose(run(tiny, distilled_cfg=3.5), run(tiny, distilled_cfg=7.0))
    assert torch.equal(run(tiny, "schnell", distilled_cfg=3.5), run(tiny, "schnell", distilled_cfg=7.0))
    assert torch.equal(run(tiny, distilled_cfg=0.0), run(tiny, distilled_cfg=3.5))  # `or 3.5`


@pytest.mark.parametrize("sampler", ["Euler a", "Heun", "DPM++ 2M", "DPM++ 2M SDE", "DPM++ SDE", "LCM", "DPM2 a"])
def test_samplers_run_and_differ_from_euler(tiny, sampler):
    out = run(tiny, sampler=sampler, steps=2)
    assert torch.isfinite(out).all() and not torch.allclose(out, run(tiny, steps=2))


def test_rf_euler_ancestral_without_noise_is_euler(tiny):
    torch.testing.assert_close(run(tiny, sampler="Euler a", eta=0.0), run(tiny), rtol=1e-4, atol=1e-5)


def test_img2img_starts_from_the_strength_index(tiny):
    init = torch.randn(1, 16, 4, 4, generator=torch.Generator().manual_seed(3))
    out = run(tiny, steps=4, init_latent=init, strength=0.5)
    assert out.shape == init.shape and not torch.allclose(out, run(tiny, steps=4, init_latent=init, strength=0.75))


def test_the_reference_refuses_what_cannot_run_on_flux(tiny):
    with pytest.raises(ValueError, match="timestep sampler"):
        run(tiny, sampler="DDIM")


def test_vae_round_trip_uses_the_flux_latent_format(tiny):
    image = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    latent = T.encode_first_stage(tiny["vae"], image, generator=torch.Generator().manual_seed(0))
    dist = tiny["vae"].encode(2 * image - 1).latent_dist
    assert latent.shape == (1, 16, 4, 4)
    eps = torch.randn(dist.mean.shape, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(latent, (dist.mean + dist.std * eps - 0.1159) * 0.3611)
    assert T.decode_first_stage(tiny["vae"], latent).shape == (1, 3, 32, 32)


def test_prompt_editing_and_and_change_the_conditioning(tiny):
    plain = run(tiny, prompt="a red cat", steps=4)  # the denoiser's step counts from 0: [a:b:0.5] at 4 steps
    assert not torch.allclose(run(tiny, prompt="a [red:blue:0.5] cat", steps=4), plain)  # switches for step 3
    two = run(tiny, prompt="a red cat", steps=2)
    assert torch.equal(run(tiny, prompt="a [red:blue:0.5] cat", steps=2), two)  # 2 steps: never switches
    both = run(tiny, prompt="a red cat AND blue dog", steps=2, cfg=2.0)
    assert torch.isfinite(both).all() and not torch.allclose(both, run(tiny, prompt="a red cat", steps=2, cfg=2.0))
