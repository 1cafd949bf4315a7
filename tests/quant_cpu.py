"""sdcli's quantized load path (--quantize) run for real on a CPU: bitsandbytes (0.48 on has a CPU backend for
4-bit and LLM.int8) and torchao (float8 weight-only runs on CPU) quantize the tiny models' layers as they would on
a GPU. CI installs neither package: tests that need them carry QUANT (marker `quant`; skipped without them), and
`make test-quant` installs both into a scratch folder (never the venv) and runs them.

The fixture `quant_on_cpu` patches only checks that are about the GPU, not sdcli's path:
1. sdcli's own refusal off CUDA (models.quantize.check_machine, tested as it is in tests/models/test_quantize.py);
2. diffusers' bitsandbytes quantizers (0.42): validate_environment's "No GPU found", then the device map they make
   ({"": "cuda:N"}) and their refusal of a map on the CPU (transformers', for the text encoders, accepts the CPU);
3. bitsandbytes' AVX512-BF16 kernel for 4-bit layers on CPU, which packs weights in blocks of 64 input features and
   32 output rows (the tiny models' layers are 32 wide): its portable path dequantizes as the CUDA kernels do.
Everything else (diffusers' PipelineQuantizationConfig, the quantizers, bitsandbytes' and torchao's layers, sdcli's
loader, placement, LoRA and job pipeline) runs unpatched."""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from typing import Any

import pytest

QUANT_PACKAGES = ("bitsandbytes", "torchao")
MISSING = [name for name in QUANT_PACKAGES if importlib.util.find_spec(name) is None]
QUANT = [pytest.mark.quant,
         pytest.mark.skipif(bool(MISSING), reason=f"needs {' and '.join(MISSING)} (make test-quant installs them)")]


def _on_cpu(validate: Callable[..., Any]) -> Callable[..., Any]:
    """A diffusers bitsandbytes quantizer's validate_environment that sees a GPU and takes a device map on the CPU."""
    import torch

    def validate_environment(self: Any, *args: Any, **kwargs: Any) -> Any:
        if kwargs.get("device_map") == {"": "cpu"}:
            kwargs["device_map"] = None
        available = torch.cuda.is_available
        torch.cuda.is_available = lambda: True
        try:
            return validate(self, *args, **kwargs)
        finally:
            torch.cuda.is_available = available

    return validate_environment


@pytest.fixture
def quant_on_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    """--quantize runs on this CPU (the module docstring's three patches), for the test's duration."""
    import bitsandbytes.nn.modules as bnb_modules
    from diffusers.quantizers.bitsandbytes import bnb_quantizer

    import sdcli.models.quantize as quantize

    monkeypatch.setattr(quantize, "check_machine", lambda *args, **kwargs: None)
    for cls in (bnb_quantizer.BnB4BitDiffusersQuantizer, bnb_quantizer.BnB8BitDiffusersQuantizer):
        monkeypatch.setattr(cls, "validate_environment", _on_cpu(cls.validate_environment))
        monkeypatch.setattr(cls, "update_device_map", lambda self, device_map: device_map or {"": "cpu"})
    monkeypatch.setattr(bnb_modules, "has_avx512bf16", lambda: False)
