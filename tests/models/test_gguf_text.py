"""models.gguf_text on llama.cpp's Mistral Small 3 and Qwen2.5-VL GGUFs, written as llama.cpp's converter writes them
(tests/reference/llama_cpp_gguf.py): the model's shape comes from the file's metadata (not sdcli's config), the
query / key rows of the llama layout go back to transformers' order with the file's head counts (grouped-query heads
too), and a file of another width or architecture is refused by name. The CLI runs: tests/cli/test_gguf_text_cli.py."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.reference.llama_cpp_gguf import interleave_halves, write_text_gguf

# Another shape than sdcli's tiny configs (Mistral: 30 layers, 2 heads / 1 kv head of 16, rope 1e6, eps 1e-6;
# Qwen2.5-VL: 2 layers, 2 / 1 heads, mrope [2, 3, 3]): only the width (the image model's) is the same.
MISTRAL = {"hidden_size": 32, "intermediate_size": 48, "num_hidden_layers": 3, "num_attention_heads": 4,
           "num_key_value_heads": 2, "head_dim": 8, "rope_theta": 1e4, "rms_norm_eps": 1e-5, "vocab_size": 64,
           "max_position_embeddings": 256}
QWEN = {"hidden_size": 32, "intermediate_size": 48, "num_hidden_layers": 3, "num_attention_heads": 4,
        "num_key_value_heads": 2, "rope_theta": 1e4, "rms_norm_eps": 1e-5, "vocab_size": 64,
        "max_position_embeddings": 256, "rope_scaling": {"type": "mrope", "mrope_section": [1, 1, 2]}}
IDS = torch.tensor([[1, 5, 9, 12, 40, 3, 7]])


def test_the_row_order_is_llama_cpps_inverse():
    """unpermute_rows undoes the converter's reorder for any head count, and the reorder is not the identity."""
    from sdcli.models.gguf_text import unpermute_rows

    rows = np.arange(48 * 3, dtype=np.float32).reshape(48, 3)
    for heads in (1, 2, 3, 6):
        moved = interleave_halves(rows, heads)
        assert not np.array_equal(moved, rows) and np.array_equal(unpermute_rows(moved, heads), rows)
    assert interleave_halves(np.arange(8.0), 1).tolist() == [0, 4, 1, 5, 2, 6, 3, 7]


@pytest.mark.parametrize("arch", ["llama", "mistral3"])
def test_a_mistral_gguf_loads_in_the_files_shape(tmp_path, arch):
    """load_mistral on a GGUF of 3 layers of 4 heads over 2 kv heads of 8 (sdcli's tiny config says otherwise) gives
    the source model's hidden states; a model built on sdcli's config would not even load these weights."""
    import transformers

    from sdcli.models.flux2_files import load_mistral
    from sdcli.models.tiny_mistral import MISTRAL_TEXT

    torch.manual_seed(0)
    source = transformers.MistralModel(transformers.MistralConfig(**MISTRAL)).eval()
    path = write_text_gguf(source, torch.randn(64, 32), tmp_path / f"{arch}.gguf", arch)
    model = load_mistral(path, torch.float32, {**MISTRAL_TEXT, "vocab_size": 64})
    config = model.config
    assert (config.num_hidden_layers, config.num_attention_heads, config.num_key_value_heads, config.head_dim,
            config.rms_norm_eps) == (3, 4, 2, 8, 1e-5), config
    with torch.no_grad():
        assert torch.equal(model(IDS).last_hidden_state, source(IDS).last_hidden_state)


def test_a_qwen25_vl_gguf_loads_in_the_files_shape_without_a_vision_tower(tmp_path):
    """load_qwen25vl on a qwen2vl GGUF (rows as they are, mrope sections [1, 1, 2] from the metadata) gives the
    source language model's hidden states through Qwen2.5-VL's own forward, with no vision tower."""
    import transformers

    from sdcli.models.qwenimage_files import load_qwen25vl
    from sdcli.models.tiny_qwenimage import QWEN_TEXT, QWEN_VISION

    torch.manual_seed(0)
    source = transformers.Qwen2_5_VLForConditionalGeneration(transformers.Qwen2_5_VLConfig(
        text_config=QWEN, vision_config=QWEN_VISION, vocab_size=64)).eval()
    language = source.model.language_model
    path = write_text_gguf(language, source.lm_head.weight, tmp_path / "qwen.gguf", "qwen2vl")
    model = load_qwen25vl(path, torch.float32, {"text_config": {**QWEN_TEXT, "vocab_size": 64},
                                                "vision_config": QWEN_VISION, "vocab_size": 64})
    assert model.model.visual is None and model.config.text_config.num_hidden_layers == 3
    with torch.no_grad():
        ours = model(input_ids=IDS, output_hidden_states=True).hidden_states[-1]
        theirs = source(input_ids=IDS, output_hidden_states=True).hidden_states[-1]
    assert torch.equal(ours, theirs)


def test_a_gguf_of_another_width_or_architecture_is_refused_by_name(tmp_path):
    import transformers

    from sdcli.errors import ModelError
    from sdcli.models.flux2_files import load_mistral
    from sdcli.models.tiny_mistral import MISTRAL_TEXT

    source = transformers.MistralModel(transformers.MistralConfig(**{**MISTRAL, "hidden_size": 64}))
    wide = write_text_gguf(source, torch.zeros(64, 64), tmp_path / "wide.gguf", "llama")
    with pytest.raises(ModelError, match=f"^--text-encoder: {wide}: a text model 64 wide; Mistral Small 3 is 32 wide$"):
        load_mistral(wide, torch.float32, {**MISTRAL_TEXT, "vocab_size": 64})
    source = transformers.MistralModel(transformers.MistralConfig(**MISTRAL))
    other = write_text_gguf(source, torch.zeros(64, 32), tmp_path / "other.gguf", "granite")
    with pytest.raises(ModelError, match=r"a GGUF of architecture 'granite', not a Mistral Small 3 text encoder "
                                         r"\(llama.cpp's llama or mistral3\)$"):
        load_mistral(other, torch.float32, {**MISTRAL_TEXT, "vocab_size": 64})


def test_a_qwen25_vl_gguf_in_bf16_equals_the_safetensors_file_in_bf16(tmp_path):
    """In bf16 the GGUF's model computes as the safetensors file's does (from_pretrained keeps the rotary tables in
    float32; a bf16 cast of the whole model would not)."""
    import transformers
    from safetensors.torch import save_file

    from sdcli.models.qwenimage_files import load_qwen25vl, to_checkpoint_names
    from sdcli.models.tiny_qwenimage import QWEN_VISION

    torch.manual_seed(0)
    config = {"text_config": QWEN, "vision_config": QWEN_VISION, "vocab_size": 64}
    source = transformers.Qwen2_5_VLForConditionalGeneration(transformers.Qwen2_5_VLConfig(**config)).eval()
    gguf = write_text_gguf(source.model.language_model, source.lm_head.weight, tmp_path / "qwen.gguf", "qwen2vl")
    safetensors = tmp_path / "qwen_2.5_vl_7b.safetensors"
    save_file({k: v.contiguous() for k, v in to_checkpoint_names(source.state_dict()).items()}, str(safetensors))
    ours, theirs = (load_qwen25vl(path, torch.bfloat16, config) for path in (gguf, safetensors))
    assert ours.model.language_model.rotary_emb.inv_freq.dtype == torch.float32
    with torch.no_grad():
        states = [m(input_ids=IDS, output_hidden_states=True).hidden_states[-1] for m in (ours, theirs)]
    assert states[0].dtype == torch.bfloat16 and torch.equal(*states)
