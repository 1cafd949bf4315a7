"""How a diffusion model's weights are stored: THE table of storage modes, one row a mode.

Forge calls the setting "Diffusion in Low Bits" (modules_forge/main_entry.py, forge_unet_storage_dtype_options:
`Automatic`, `bnb-nf4`, `float8-e4m3fn`, `bnb-fp4`, `float8-e5m2`, each also with ` (fp16 LoRA)`). sdcli takes
Forge's labels with --low-bits and its own short names with --quantize (nf4, fp4, int8, fp8); a row says how sdcli
loads the mode (diffusers' layerwise casting, or a diffusers/transformers quantization backend and the keyword
arguments of its config), the package and the hardware it needs, and the label the infotext writes. Pure data:
models.quantize builds the diffusers configs from it; job.plan refuses what a machine cannot run.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

COMPUTE = "compute"  # a config value that is the run's compute dtype (bf16 on CUDA for the flow families)
LAYERWISE = "layerwise"  # diffusers' enable_layerwise_casting: fp8 storage, each layer upcast for its call


@dataclass(frozen=True)
class Storage:
    """One storage mode of the diffusion model (and, for a quantization backend, of the big text encoders)."""

    label: str  # Forge's "Diffusion in Low Bits" value; sdcli's own where Forge has none (int8, torchao fp8)
    quantize: str | None  # the --quantize name (None: --low-bits only)
    backend: str  # LAYERWISE, or the quantization backend (diffusers' and transformers' quantizer table key)
    config: Mapping[str, Any] = field(default_factory=dict)  # the backend config's keyword arguments
    # torchao: the torchao.quantization config class its TorchAoConfig wraps (and that class's arguments: `config`)
    ao_config: str | None = None
    package: str | None = None  # the Python package it needs (None: torch alone)
    cuda: tuple[int, int] | None = None  # the CUDA compute capability it needs (None: any device, CPU too)
    hardware: str = ""  # that need in words, for refusals
    storage_dtype: str | None = None  # LAYERWISE: the torch dtype the weights are kept in

    @property
    def quantized(self) -> bool:
        """Loaded through a quantization backend (bitsandbytes, torchao), not cast layer by layer."""
        return self.backend != LAYERWISE


_BNB = "a CUDA GPU (bitsandbytes' kernels)"
STORAGES: tuple[Storage, ...] = (
    Storage("float8-e4m3fn", None, LAYERWISE, storage_dtype="float8_e4m3fn"),
    Storage("float8-e5m2", None, LAYERWISE, storage_dtype="float8_e5m2"),
    # Forge's bnb-nf4/bnb-fp4 (backend/operations_bnb.py: bitsandbytes Params4bit quantized as it loads, blocks of
    # 64, compress_statistics=False, computed in the run's dtype): diffusers' bitsandbytes quantizer with the same
    # quant type, its default blocks of 64 and no double quantization.
    Storage("bnb-nf4", "nf4", "bitsandbytes_4bit",
            {"load_in_4bit": True, "bnb_4bit_quant_type": "nf4", "bnb_4bit_compute_dtype": COMPUTE},
            package="bitsandbytes", cuda=(0, 0), hardware=_BNB),
    Storage("bnb-fp4", "fp4", "bitsandbytes_4bit",
            {"load_in_4bit": True, "bnb_4bit_quant_type": "fp4", "bnb_4bit_compute_dtype": COMPUTE},
            package="bitsandbytes", cuda=(0, 0), hardware=_BNB),
    Storage("bnb-int8", "int8", "bitsandbytes_8bit", {"load_in_8bit": True},
            package="bitsandbytes", cuda=(0, 0), hardware=_BNB),
    # float8 weight-only (e4m3fn weights with a scale per row, dequantized for each matmul): torchao's own check
    # in diffusers asks for fp8 hardware (CUDA compute capability 8.9: Ada, Hopper, Blackwell).
    Storage("torchao-float8wo", "fp8", "torchao", ao_config="Float8WeightOnlyConfig",
            package="torchao", cuda=(8, 9), hardware="a CUDA GPU with fp8 (compute capability 8.9 or newer)"),
)
BY_LABEL: dict[str, Storage] = {s.label: s for s in STORAGES}
QUANTIZE: dict[str, Storage] = {s.quantize: s for s in STORAGES if s.quantize}
AUTOMATIC = "Automatic"  # the file's own storage (Forge writes no infotext key for it)
LORA_SUFFIX = " (fp16 LoRA)"  # Forge's variants that apply LoRAs in fp16 on the fly (sdcli always does)


def storage_of(label: str | None) -> Storage | None:
    """The row of a --low-bits label (with or without Forge's " (fp16 LoRA)"); None: the file's own."""
    if label is None:
        return None
    return BY_LABEL.get(label.removesuffix(LORA_SUFFIX))
