"""Noise sources: the NV generator reproduces CUDA's randn; ENSD and batches behave as in the WebUI."""

import numpy as np
import torch

from sdcli.sampling.rng import ImageNoise, PhiloxGenerator, brownian_noise

# torch.randn((3, 4), generator=torch.Generator("cuda").manual_seed(0)) on an NVIDIA GPU, as the
# WebUI's rng_philox.py documents it.
CUDA_SEED_0 = [[-0.92466259, -0.42534415, -2.6438457, 0.14518388],
               [-0.12086647, -0.57972564, -0.62285122, -0.32838709],
               [-1.07454231, -0.36314407, -1.67105067, 2.26550497]]


def test_nv_generator_gives_cuda_randn_values():
    np.testing.assert_allclose(PhiloxGenerator(0).randn((3, 4)), CUDA_SEED_0, rtol=0, atol=2e-6)


def test_nv_generator_moves_on_by_one_offset_per_call():
    g = PhiloxGenerator(7)
    first, second = g.randn((2, 3)), g.randn((2, 3))
    assert not np.array_equal(first, second) and g.offset == 2
    assert np.array_equal(PhiloxGenerator(7).randn((2, 3)), first)


def test_batch_noise_is_each_seeds_own_and_ensd_reseeds_only_the_sampler_noise():
    single = [ImageNoise("cpu", (4, 4, 4), [s], "cpu") for s in (3, 4)]
    batch = ImageNoise("cpu", (4, 4, 4), [3, 4], "cpu")
    torch.testing.assert_close(batch.first(), torch.cat([n.first() for n in single]), rtol=0, atol=0)
    torch.testing.assert_close(batch.next(), torch.cat([n.next() for n in single]), rtol=0, atol=0)
    plain, ensd = ImageNoise("cpu", (4, 4, 4), [3], "cpu"), ImageNoise("cpu", (4, 4, 4), [3], "cpu", ensd=31337)
    torch.testing.assert_close(plain.first(), ensd.first(), rtol=0, atol=0)
    assert not torch.equal(plain.next(), ensd.next())


def test_ensd_sampler_noise_is_the_seed_plus_ensd_generators_first_draw():
    ensd = ImageNoise("cpu", (4, 4, 4), [3], "cpu", ensd=100)
    ensd.first()
    torch.testing.assert_close(ensd.next(), ImageNoise("cpu", (4, 4, 4), [103], "cpu").first(), rtol=0, atol=0)


def test_brownian_noise_is_seeded_per_image_and_unit_scaled():
    x = torch.zeros(2, 4, 8, 8)
    sigmas = torch.tensor([14.6, 5.0, 1.0, 0.03, 0.0])
    a = brownian_noise(x, sigmas, [1, 2])(sigmas[0], sigmas[1])
    b = brownian_noise(x, sigmas, [1, 5])(sigmas[0], sigmas[1])
    assert torch.equal(a[0], b[0]) and not torch.equal(a[1], b[1])
    assert 0.7 < float(a.std()) < 1.3


def test_comfy_noise_is_one_cpu_draw_for_the_whole_batch_then_one_sampler_generator():
    """ComfyUI's prepare_noise: torch.manual_seed(seed) then one randn of the batch latent on the CPU; its
    samplers' noise: a generator seeded seed + 1 on the CPU (k-diffusion default_noise_sampler)."""
    comfy = ImageNoise("comfy", (4, 4, 4), [3, 4], "cpu")
    expected = torch.randn((2, 4, 4, 4), generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(comfy.first(), expected, rtol=0, atol=0)
    sampler = torch.Generator().manual_seed(4)
    torch.testing.assert_close(comfy.next(), torch.randn((2, 4, 4, 4), generator=sampler), rtol=0, atol=0)
    torch.testing.assert_close(comfy.next(), torch.randn((2, 4, 4, 4), generator=sampler), rtol=0, atol=0)
    per_image = ImageNoise("cpu", (4, 4, 4), [3, 4], "cpu").first()
    torch.testing.assert_close(per_image[0], expected[0], rtol=0, atol=0)  # image 0: the same CPU draw
    assert not torch.equal(per_image[1], expected[1])  # image 1: seed 4's own draw in sdcli, not ComfyUI's
