"""GGUF text encoders: T5-XXL (city96's t5-v1_1-xxl-encoder GGUFs), Qwen3 (the Qwen3 4B / 8B GGUFs people use with
ComfyUI-GGUF for Z-Image and Flux.2 klein), Mistral Small 3 (llama.cpp's Mistral-Small-3.1/3.2-24B GGUFs, unsloth's
and bartowski's, as Flux.2 dev's text encoder) and Qwen2.5-VL's language model (llama.cpp's qwen2vl GGUFs, for
Qwen-Image), in llama.cpp's tensor names.

transformers reads GGUF for these architectures (integrations/ggml.py: t5, t5encoder, qwen3, llama, qwen2vl), but
only through from_pretrained(gguf_file=) on a hub-style folder, with the GGUF's metadata as the config and a progress
bar of its own. sdcli keeps its bundled or tiny config and its strict key check, so it takes only the pieces
transformers uses: gguf-py's tensor name tables (llama.cpp -> transformers names), gguf-py's dequantize, the
metadata fields of the architecture (gguf_text_config: layers, heads, rope base, norm epsilon) and, for the
llama-layout architectures, the inverse of the row order llama.cpp's converter writes the query and key
projections in (PERMUTED). transformers' get_gguf_hf_weights_map walks every sub-module and rebuilds the table for
each: about 25 s for sdcli's 28-layer tiny Qwen3 on a CPU. The weights are dequantized once at load (a text encoder
runs once per prompt; the diffusion model is the one kept quantized). write_gguf_encoder is the inverse (llama.cpp's
names, gguf-py's quantizer) for sdcli's tiny T5 and Qwen3 test files.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from sdcli.errors import ModelError

# GGUF architectures of each transformers model type sdcli reads (gguf-py's MODEL_ARCH_NAMES values), the one
# write_gguf_encoder writes first. llama.cpp's converter writes Mistral Small 3 (Mistral3ForConditionalGeneration)
# as "mistral3" since its Ministral 3 support, as "llama" before (the 2025 files people download).
GGUF_ARCHS = {"t5": ("t5encoder",), "qwen3": ("qwen3",), "mistral": ("llama", "mistral3"),
              "qwen2_5_vl_text": ("qwen2vl",)}
# llama.cpp's converter reorders each head's query and key rows for these architectures (LlamaModel.permute: the
# two halves that transformers' rotary embedding rotates together are interleaved, as llama.cpp's kernel pairs
# neighbours); qwen2vl's rows are written as they are.
PERMUTED = ("llama", "mistral3")
ROTATED = re.compile(r"blk\.\d+\.attn_([qk])\.(weight|bias)")
# Architecture metadata field -> transformers config field (the fields transformers' GGUF loader maps too);
# head_dim only where sdcli's config has one (Mistral Small 3's heads are 128 wide, not width / heads).
CONFIG_FIELDS = {"block_count": "num_hidden_layers", "attention.head_count": "num_attention_heads",
                 "attention.head_count_kv": "num_key_value_heads", "attention.key_length": "head_dim",
                 "feed_forward_length": "intermediate_size", "rope.freq_base": "rope_theta",
                 "attention.layer_norm_rms_epsilon": "rms_norm_eps"}
UNUSED = ("dec.", "output.")  # a whole T5's decoder, a causal LM's head: the image models use neither


def gguf_to_transformers_names(cls: Any, config: Any, arch_name: str | None = None) -> dict[str, str]:
    """llama.cpp tensor name -> transformers parameter name for the model class `cls` built from `config` (gguf-py's
    name table for the GGUF architecture `arch_name`, default the model type's first, which transformers' own GGUF
    loading maps through)."""
    import gguf
    import torch

    with torch.device("meta"):
        keys = list(cls(config).state_dict())
    wanted = arch_name or GGUF_ARCHS[config.model_type][0]
    arch = next(k for k, v in gguf.MODEL_ARCH_NAMES.items() if v == wanted)
    layers = getattr(config, "num_hidden_layers", None) or config.num_layers
    table = gguf.get_tensor_name_map(arch, layers)
    names: dict[str, str] = {}
    for key in keys:
        module, _, leaf = key.rpartition(".")
        if (name := table.get_name(module)) is not None:
            names.setdefault(f"{name}.{leaf}", key)
    return names


def gguf_fields(path: Path) -> dict[str, Any]:
    """A GGUF's metadata (key -> value: numbers, strings, lists), without its tensor data."""
    from gguf import GGUFReader

    reader = GGUFReader(path)
    return {key: field.contents() for key, field in reader.fields.items() if not key.startswith("tokenizer.")}


def gguf_arch(fields: dict[str, Any], model_type: str, path: Path, what: str, source: str) -> str:
    """The GGUF architecture of a file (general.architecture), refused by name unless it is one that `model_type`
    is written as (GGUF_ARCHS)."""
    arch = str(fields.get("general.architecture", ""))
    if arch not in GGUF_ARCHS[model_type]:
        raise ModelError(f"{source}: {path}: a GGUF of architecture {arch or 'none'!r}, not a {what} text encoder "
                         f"(llama.cpp's {' or '.join(GGUF_ARCHS[model_type])})")
    return arch


def gguf_text_config(path: Path, config: dict[str, Any], model_type: str, what: str,
                     source: str = "--text-encoder") -> dict[str, Any]:
    """`config` (a transformers text config dict) with the layer count, heads, head width, feed-forward width, rope
    base, norm epsilon and multimodal rope sections of the GGUF's architecture metadata where it has them; a file of
    another width than `config`'s (the width the image model takes) is refused by name."""
    import numpy as np

    fields = gguf_fields(path)
    arch = gguf_arch(fields, model_type, path, what, source)
    width = fields.get(f"{arch}.embedding_length")
    if width is not None and int(width) != int(config["hidden_size"]):
        raise ModelError(f"{source}: {path}: a text model {width} wide; {what} is {config['hidden_size']} wide")
    out = dict(config)
    for field, name in CONFIG_FIELDS.items():
        value = fields.get(f"{arch}.{field}")
        if value is not None and (name != "head_dim" or name in config):  # floats stored as float32: 1e-06 back
            out[name] = float(str(np.float32(value))) if name in ("rope_theta", "rms_norm_eps") else int(value)
    if isinstance(rope := out.get("rope_scaling"), dict):  # a copy: transformers' config writes rope_theta into it
        out["rope_scaling"] = {k: v for k, v in rope.items() if k != "rope_theta"}
        sections = fields.get(f"{arch}.rope.dimension_sections")
        if sections is not None and "mrope_section" in rope:  # qwen2vl's, padded to 4 with zeros
            out["rope_scaling"]["mrope_section"] = [int(n) for n in sections if int(n)]
    return out


def unpermute_rows(values: Any, heads: int) -> Any:
    """The rows of a llama.cpp query or key projection (weight or bias) of `heads` heads in transformers' order:
    the inverse of llama.cpp's converter, which interleaves the two halves of each head's rows."""
    rows = values.shape[0] // heads
    return values.reshape(heads, rows // 2, 2, *values.shape[1:]).swapaxes(1, 2).reshape(values.shape)


def read_gguf_encoder(path: Path, cls: Any, config: Any, dtype: Any = None,
                      source: str = "--text-encoder") -> dict[str, Any]:
    """The tensors of a llama.cpp-named GGUF text encoder, dequantized and cast one by one to `dtype` (None:
    float32; a 4B encoder in float32 is 16 GB), in the names of the transformers model `cls` (a tensor of no known
    name is refused by name; the caller checks the set strictly). The query and key rows of a llama-layout file
    (PERMUTED) are put back in transformers' order with `config`'s head counts."""
    import numpy as np
    import torch
    from gguf import GGUFReader, dequantize

    reader = GGUFReader(path)
    field = reader.fields.get("general.architecture")
    arch = str(field.contents()) if field is not None else GGUF_ARCHS[config.model_type][0]
    names = gguf_to_transformers_names(cls, config, arch if arch in GGUF_ARCHS[config.model_type] else None)
    heads = {"q": getattr(config, "num_attention_heads", None), "k": getattr(config, "num_key_value_heads", None)}
    state: dict[str, Any] = {}
    for tensor in reader.tensors:
        if tensor.name.startswith(UNUSED):
            continue
        if tensor.name not in names:
            raise ModelError(f"{source}: {path}: {tensor.name} is not a {config.model_type} weight sdcli knows")
        values = dequantize(tensor.data, tensor.tensor_type)
        if arch in PERMUTED and (m := ROTATED.fullmatch(tensor.name)):
            values = unpermute_rows(values, heads[m[1]] or heads["q"])
        # a writable copy where the file's F32 data is mapped read-only: a loaded weight never aliases the file
        state[names[tensor.name]] = torch.from_numpy(np.require(values, np.float32, ["C", "W"])).to(
            dtype or torch.float32)
    return state


def write_gguf_encoder(model: Any, dest: Path, qtype: str = "F32") -> Path:
    """A transformers T5 encoder or Qwen3 model's weights as a GGUF in llama.cpp's names, of GGUF type `qtype`
    (norms and other 1-D weights stay F32, as llama.cpp's converter keeps them)."""
    from sdcli.models.flux_write import write_gguf

    config = model.config
    if GGUF_ARCHS[config.model_type][0] in PERMUTED:
        raise ValueError("write_gguf_encoder writes no llama-layout files (tests/reference/llama_cpp_gguf.py does)")
    inverse = {v: k for k, v in gguf_to_transformers_names(type(model), config).items()}
    state = {name: value for key, value in model.state_dict().items() if (name := inverse.get(key)) is not None}
    return write_gguf(state, dest, qtype, arch=GGUF_ARCHS[config.model_type][0], keep=())
