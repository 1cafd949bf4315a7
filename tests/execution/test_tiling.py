"""execution.tiling: circular padding on every Conv2d of a pipeline for one batch, restored whatever happens."""

from types import SimpleNamespace

import pytest
import torch

from sdcli.execution.tiling import circular_padding, conv_layers


def pipe_of(*modules):
    return SimpleNamespace(components={f"m{i}": m for i, m in enumerate(modules)} | {"tokenizer": object()})


def test_set_for_the_batch_and_restored_even_after_an_error():
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 1, 3, padding=1), torch.nn.Conv2d(1, 1, 3, padding=1,
                                                                                  padding_mode="reflect"))
    vae = torch.nn.Conv2d(1, 1, 3, padding=1)
    pipe, other = pipe_of(net, vae), pipe_of(vae)  # a module shared by two pipelines is set once
    assert len(conv_layers(pipe, other)) == 3
    with pytest.raises(RuntimeError), circular_padding(True, pipe, other):
        assert {m.padding_mode for m in conv_layers(pipe)} == {"circular"}
        raise RuntimeError("the batch failed")
    assert [m.padding_mode for m in conv_layers(pipe)] == ["zeros", "reflect", "zeros"]
    with circular_padding(False, pipe):
        assert [m.padding_mode for m in conv_layers(pipe)] == ["zeros", "reflect", "zeros"]


def test_circular_convolution_wraps():
    conv = torch.nn.Conv2d(1, 1, 3, padding=1, bias=False)
    x = torch.randn(1, 1, 8, 8)
    with torch.no_grad(), circular_padding(True, pipe_of(conv)):
        out = conv(x)
        shifted = conv(torch.roll(x, 3, dims=3))
    assert torch.allclose(torch.roll(out, 3, dims=3), shifted, atol=1e-6)  # shift-equivariant: no edges
