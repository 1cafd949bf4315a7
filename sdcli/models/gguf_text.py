"""GGUF text encoders: T5-XXL (city96's t5-v1_1-xxl-encoder GGUFs) and Qwen3 (the Qwen3 4B / 8B GGUFs
people use with ComfyUI-GGUF for Z-Image and Flux.2 klein), in llama.cpp's tensor names.

transformers reads GGUF for these architectures (integrations/ggml.py: t5, t5encoder, qwen3), but only through
from_pretrained(gguf_file=) on a hub-style folder, with the GGUF's metadata as the config and a progress bar of its
own. sdcli keeps its bundled or tiny config and its strict key check, so it takes only the pieces transformers
uses: gguf-py's tensor name tables (llama.cpp -> transformers names) and gguf-py's dequantize
(transformers' get_gguf_hf_weights_map walks every sub-module and rebuilds the table for each: about 25 s for
sdcli's 28-layer tiny Qwen3 on a CPU). The weights are dequantized once at
load (a text encoder runs once per prompt; the diffusion model is the one kept quantized). write_gguf_encoder is
the inverse (llama.cpp's names, gguf-py's quantizer) for sdcli's tiny test files.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sdcli.errors import ModelError

# GGUF architecture of each transformers model type sdcli reads (gguf-py's MODEL_ARCH_NAMES values).
GGUF_ARCH = {"t5": "t5encoder", "qwen3": "qwen3"}
UNUSED = ("dec.", "output.")  # a whole T5's decoder, a causal LM's head: the image models use neither


def gguf_to_transformers_names(cls: Any, config: Any) -> dict[str, str]:
    """llama.cpp tensor name -> transformers parameter name for the model class `cls` built from `config` (gguf-py's
    name table for the architecture, which transformers' own GGUF loading maps through)."""
    import gguf
    import torch

    with torch.device("meta"):
        keys = list(cls(config).state_dict())
    arch = next(k for k, v in gguf.MODEL_ARCH_NAMES.items() if v == GGUF_ARCH[config.model_type])
    layers = getattr(config, "num_hidden_layers", None) or config.num_layers
    table = gguf.get_tensor_name_map(arch, layers)
    names: dict[str, str] = {}
    for key in keys:
        module, _, leaf = key.rpartition(".")
        if (name := table.get_name(module)) is not None:
            names.setdefault(f"{name}.{leaf}", key)
    return names


def read_gguf_encoder(path: Path, cls: Any, config: Any, dtype: Any = None,
                      source: str = "--text-encoder") -> dict[str, Any]:
    """The tensors of a llama.cpp-named GGUF text encoder, dequantized and cast one by one to `dtype` (None:
    float32; a 4B encoder in float32 is 16 GB), in the names of the transformers model `cls` (a tensor of no known
    name is refused by name; the caller checks the set strictly)."""
    import numpy as np
    import torch
    from gguf import GGUFReader, dequantize

    names = gguf_to_transformers_names(cls, config)
    state: dict[str, Any] = {}
    for tensor in GGUFReader(path).tensors:
        if tensor.name.startswith(UNUSED):
            continue
        if tensor.name not in names:
            raise ModelError(f"{source}: {path}: {tensor.name} is not a {config.model_type} weight sdcli knows")
        values = dequantize(tensor.data, tensor.tensor_type)
        state[names[tensor.name]] = torch.from_numpy(np.ascontiguousarray(values, dtype=np.float32)).to(
            dtype or torch.float32)
    return state


def write_gguf_encoder(model: Any, dest: Path, qtype: str = "F32") -> Path:
    """A transformers T5 encoder or Qwen3 model's weights as a GGUF in llama.cpp's names, of GGUF type `qtype`
    (norms and other 1-D weights stay F32, as llama.cpp's converter keeps them)."""
    from sdcli.models.flux_write import write_gguf

    config = model.config
    inverse = {v: k for k, v in gguf_to_transformers_names(type(model), config).items()}
    state = {name: value for key, value in model.state_dict().items() if (name := inverse.get(key)) is not None}
    return write_gguf(state, dest, qtype, arch=GGUF_ARCH[config.model_type], keep=())
