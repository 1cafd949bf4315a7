"""models.module_state: a diffusers model's dtype and device, walked once per model state, and walked again
whenever the model is cast, moved or given new weights or hooks (each case checked against diffusers'
own answer)."""

import pytest
import torch

from sdcli.models import module_state
from sdcli.models.module_state import module_device, module_dtype


@pytest.fixture
def vae():
    from diffusers import AutoencoderKL

    torch.manual_seed(0)
    return AutoencoderKL(block_out_channels=(8,), norm_num_groups=4, latent_channels=4, layers_per_block=1)


@pytest.fixture
def walks(monkeypatch):
    import diffusers.models.modeling_utils as modeling

    counted = {"dtype": 0, "device": 0}
    for kind in counted:
        real = getattr(modeling, f"get_parameter_{kind}")

        def spy(module, _real=real, _kind=kind):
            counted[_kind] += 1
            return _real(module)

        monkeypatch.setattr(modeling, f"get_parameter_{kind}", spy)
    return counted


def test_asked_again_the_module_is_not_walked(vae, walks):
    assert (module_dtype(vae), module_device(vae)) == (torch.float32, torch.device("cpu"))
    assert walks == {"dtype": 1, "device": 1}
    for _ in range(3):
        assert (module_dtype(vae), module_device(vae)) == (torch.float32, torch.device("cpu"))
    assert walks == {"dtype": 1, "device": 1}


def test_a_cast_is_seen(vae, walks):
    assert module_dtype(vae) == torch.float32
    vae.to(torch.bfloat16)
    assert module_dtype(vae) == torch.bfloat16 == vae.dtype
    vae.to(torch.float32)
    assert module_dtype(vae) == torch.float32


def test_a_move_is_seen(vae):
    assert module_device(vae) == torch.device("cpu")
    vae.to("meta")
    assert module_device(vae) == torch.device("meta") == vae.device


def test_a_replaced_first_weight_is_seen(vae):
    assert module_dtype(vae) == torch.float32
    first = next(vae.parameters())
    owner = vae.encoder.conv_in
    assert owner.weight is first
    owner.weight = torch.nn.Parameter(first.detach().to(torch.float16))
    assert module_dtype(vae) == torch.float16 == vae.dtype


def test_layerwise_casting_gives_its_compute_dtype(vae):
    assert module_dtype(vae) == torch.float32
    vae.enable_layerwise_casting(storage_dtype=torch.float8_e4m3fn, compute_dtype=torch.bfloat16)
    assert module_dtype(vae) == torch.bfloat16 == vae.dtype


def test_what_is_not_a_torch_module_is_asked_each_time():
    class Fake:
        def __init__(self):
            self.asked = 0

        @property
        def dtype(self):
            self.asked += 1
            return torch.float16

    fake = Fake()
    assert module_dtype(fake) == module_dtype(fake) == torch.float16 and fake.asked == 2
    assert fake not in module_state._known
