"""What llama.cpp's converter (convert_hf_to_gguf.py; conversion/llama.py, mistral3.py, qwen2vl.py) writes for a
transformers text model, transcribed independently for sdcli's tests of its GGUF text encoders: Mistral Small 3's
text model as the "llama" architecture (the 2025 files of Mistral-Small-3.1/3.2-24B) or "mistral3" (the converter
since its Ministral 3 support), and Qwen2.5-VL's language model as "qwen2vl" (the vision tower goes to a separate
mmproj file). Imports nothing from sdcli.

The facts transcribed:
- tensor names: gguf-py's name table for the architecture (the converter's map_tensor_name);
- LlamaModel.modify_tensors (undo_permute, True for llama and for Mistral3Model's Ministral3Model): each q_proj and
  k_proj weight or bias has its rows reordered per head, the heads of k_proj counted as num_key_value_heads; within a
  head of d rows, rows [0, d/2) and [d/2, d) are interleaved (first-half row i goes to 2i, second-half row i to
  2i + 1), the order llama.cpp's rotary kernel pairs (LLAMA_ROPE_TYPE_NORM); Qwen2VLModel keeps the rows as they are;
- TextModel.set_gguf_parameters: block_count, context_length, embedding_length, feed_forward_length,
  attention.head_count, attention.head_count_kv, rope.freq_base, attention.layer_norm_rms_epsilon,
  attention.key_length / value_length where the config has head_dim; LlamaModel adds vocab_size and
  rope.dimension_count (head_dim, or width / heads); Qwen2VLModel adds rope.dimension_sections (mrope_section, padded
  with zeros to 4);
- types: 1-D tensors (norms, biases) stay F32; with --outtype q8_0 every other tensor is Q8_0; the lm_head is written
  as output.weight.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

INTERLEAVED = ("llama", "mistral3")


def interleave_halves(rows: np.ndarray, heads: int) -> np.ndarray:
    """llama.cpp's reorder of a query or key projection's rows: in each of `heads` heads, the first half's row i
    becomes row 2i and the second half's row i row 2i + 1."""
    out = np.empty_like(rows)
    size = rows.shape[0] // heads
    half = size // 2
    for head in range(heads):
        block = rows[head * size:(head + 1) * size]
        out[head * size:(head + 1) * size][0::2] = block[:half]
        out[head * size:(head + 1) * size][1::2] = block[half:]
    return out


def _metadata(writer: Any, arch: str, config: Any) -> None:
    """The architecture fields TextModel / LlamaModel / Qwen2VLModel write (see the module docstring)."""
    heads = config.num_attention_heads
    head_dim = getattr(config, "head_dim", None) if arch in INTERLEAVED else None
    writer.add_block_count(config.num_hidden_layers)
    writer.add_context_length(config.max_position_embeddings)
    writer.add_embedding_length(config.hidden_size)
    writer.add_feed_forward_length(config.intermediate_size)
    writer.add_head_count(heads)
    writer.add_head_count_kv(config.num_key_value_heads)
    writer.add_rope_freq_base(float(config.rope_theta if hasattr(config, "rope_theta") else
                                    config.rope_parameters["rope_theta"]))
    writer.add_layer_norm_rms_eps(float(config.rms_norm_eps))
    if head_dim is not None:
        writer.add_key_length(head_dim)
        writer.add_value_length(head_dim)
    if arch in INTERLEAVED:
        writer.add_vocab_size(config.vocab_size)
        writer.add_rope_dimension_count(head_dim or config.hidden_size // heads)
    else:
        rope = getattr(config, "rope_parameters", None) or getattr(config, "rope_scaling", None) or {}
        sections = list(rope.get("mrope_section", []))
        writer.add_rope_dimension_sections(sections + [0] * max(0, 4 - len(sections)))


def write_text_gguf(language: Any, lm_head: Any, dest: Path, arch: str, qtype: str = "F32",
                    name: str = "Mistral-Small-3.2-24B-Instruct-2506", interleave: bool = True) -> Path:
    """The transformers text model `language` (MistralModel or Qwen2_5_VLTextModel: keys layers.N..., embed_tokens,
    norm) and its `lm_head` weight as llama.cpp's converter writes them, of type `qtype` (F32 or Q8_0).
    `interleave` False leaves a llama file's query and key rows unreordered (a wrong file, for a test to tell)."""
    import gguf

    config = language.config
    table = gguf.get_tensor_name_map(next(k for k, v in gguf.MODEL_ARCH_NAMES.items() if v == arch),
                                     config.num_hidden_layers)
    state = {**{k: v.detach().float().numpy() for k, v in language.state_dict().items()},
             "lm_head.weight": lm_head.detach().float().numpy()}
    dest.parent.mkdir(parents=True, exist_ok=True)
    writer = gguf.GGUFWriter(path=str(dest), arch=arch)
    writer.add_name(name)
    writer.add_file_type(gguf.LlamaFileType.ALL_F32 if qtype == "F32" else gguf.LlamaFileType.MOSTLY_Q8_0)
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
    _metadata(writer, arch, config)
    for key, values in state.items():
        module, _, leaf = key.rpartition(".")
        tensor = table.get_name(module)
        assert tensor is not None, key
        if interleave and arch in INTERLEAVED and module.endswith(("q_proj", "k_proj")):
            heads = config.num_attention_heads if module.endswith("q_proj") else config.num_key_value_heads
            values = interleave_halves(values, heads)
        kind = gguf.GGMLQuantizationType.F32 if values.ndim == 1 or qtype == "F32" else gguf.GGMLQuantizationType.Q8_0
        packed = gguf.quants.quantize(np.ascontiguousarray(values, dtype=np.float32), kind)
        writer.add_tensor(f"{tensor}.{leaf}", packed, raw_dtype=kind)  # the packed bytes; the shape follows from them
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return dest
