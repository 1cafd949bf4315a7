"""Quantized loading (--quantize, --low-bits bnb-*/torchao-*): the diffusers quantization configs built from the
storage table (request.storage), and the check that this machine can run a mode, before anything loads.

The diffusion network gets diffusers' config class of the row's backend, each big text encoder (a transformers
model: T5-XXL, Qwen2.5-VL, Qwen3) transformers' class of the same backend, both with the row's arguments, joined in
one diffusers PipelineQuantizationConfig (its `quant_mapping`: the backends' two config classes do not always take
the same arguments, so diffusers' own `quant_backend` form cannot build both). torch, diffusers and transformers are
imported when a function runs.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from typing import Any

from sdcli.errors import UsageError
from sdcli.request.storage import COMPUTE, Storage


def backend_config(row: Storage, dtype: Any, *, transformers: bool = False) -> Any:
    """The row's config object for one component: diffusers' class (a diffusion network) or transformers' (a text
    encoder), with the row's arguments; `dtype` (a torch dtype) stands for COMPUTE."""
    if transformers:
        from transformers.quantizers.auto import AUTO_QUANTIZATION_CONFIG_MAPPING
    else:
        from diffusers.quantizers.auto import AUTO_QUANTIZATION_CONFIG_MAPPING
    kwargs = {k: dtype if v == COMPUTE else v for k, v in row.config.items()}
    if row.ao_config is not None:  # torchao: its own config object inside diffusers'/transformers' TorchAoConfig
        import torchao.quantization

        kwargs["quant_type"] = getattr(torchao.quantization, row.ao_config)()
    return AUTO_QUANTIZATION_CONFIG_MAPPING[row.backend](**kwargs)


def pipeline_config(row: Storage, network: str, encoders: Sequence[str], dtype: Any) -> Any:
    """diffusers' PipelineQuantizationConfig for from_pretrained: the diffusion network `network` (a diffusers
    model) and the text encoders `encoders` (transformers models) quantized as `row` says; the rest as stored."""
    from diffusers import PipelineQuantizationConfig

    mapping = {network: backend_config(row, dtype)}
    mapping.update({name: backend_config(row, dtype, transformers=True) for name in encoders})
    return PipelineQuantizationConfig(quant_mapping=mapping)


def check_machine(row: Storage, device: str, flag: str = "--quantize") -> None:
    """Refuse (UsageError naming `flag`) a mode this machine cannot run: not on CUDA, without its package, or on a
    GPU older than the mode needs. `device` is the job's planned device ("cpu", "cuda", "cuda:1", "mps")."""
    name = row.quantize if flag == "--quantize" and row.quantize else row.label
    if not device.startswith("cuda"):
        raise UsageError(f"{flag}: {name} needs {row.hardware}; this job runs on {device} (use --low-bits "
                         "float8-e4m3fn to store the weights in fp8 on any device)")
    if row.package is not None and importlib.util.find_spec(row.package) is None:
        raise UsageError(f"{flag}: {name} needs the {row.package} package, which is not installed "
                         f"(pip install {row.package})")
    if row.cuda is not None and row.cuda > (0, 0):
        import torch

        index = int(device.partition(":")[2] or 0)
        have = torch.cuda.get_device_capability(index)
        if tuple(have) < row.cuda:
            raise UsageError(f"{flag}: {name} needs {row.hardware}; this GPU's is {have[0]}.{have[1]}")
