"""Samplers keep every tensor on the latent's device. The meta device stands in for a GPU here: a CPU tensor
mixed into a stack fails on it exactly as it does on CUDA."""

import torch

from sdcli.sampling.unipc import sample_unipc


class _Eps:
    """A stand-in eps model that checks where its inputs live."""

    def __init__(self, device: str):
        self.alphas_cumprod = torch.cumprod(1 - torch.linspace(0.00085, 0.012, 1000), 0)
        self.device, self.calls = device, 0

    def __call__(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        assert x.device.type == self.device and t.device.type == self.device
        self.calls += 1
        return x * 0.5


def test_unipc_runs_every_order_on_the_latents_device():
    for steps in (1, 2, 3, 6):  # orders 1 to 3 with the corrector, lower orders at the end
        model = _Eps("meta")
        out = sample_unipc(model, torch.ones(2, 4, 8, 8, device="meta"), torch.arange(999, 0, -1000 // steps)[:steps],
                           lambda *a: None, lambda *a: None)
        assert out.device.type == "meta" and out.shape == (2, 4, 8, 8) and model.calls == steps
