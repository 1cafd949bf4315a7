"""The bundled Qwen3, Qwen2.5-VL and Mistral Small 3 tokenizers (models.llm_tokenizers): the published files byte
for byte, ids that independent tools published for the real tokenizers, the chat templates diffusers' pipelines
render, single-file loads with no tokenizer folder (through the loaders' own functions, every socket failing), and a
user's `tokenizer` folder beside a file winning over them."""

from __future__ import annotations

import hashlib

import pytest

from sdcli.errors import ModelError
from sdcli.models.llm_tokenizers import mistral_files, qwen3_files, qwen25vl_files
from tests.cli.flow_files import offline

# Ids that others published for the real tokenizers, each with its tool.
QWEN_LLAMA_CPP = {  # llama-tokenize on Qwen3's GGUF, no BOS
    "Hello, Qwen3!": [9707, 11, 1207, 16948, 18, 0],
    "¡Hola, 世界! café 🚀": [39832, 68012, 11, 220, 99489, 0, 51950, 11162, 248, 222],
    "  alpha\tbeta\n\ngamma  ": [220, 8287, 2233, 1915, 271, 32214, 256],
}
QWEN_HF = {  # Hugging Face tokenizers on Qwen2.5-0.5B-Instruct's tokenizer.json
    "<|im_start|>user\nWhat is 2+2?<|im_end|>": [151644, 872, 198, 3838, 374, 220, 17, 10, 17, 30, 151645],
    "<|im_start|>system\nYou are helpful.<|im_end|>\n<|im_start|>user\nHello<|im_end|>":
        [151644, 8948, 198, 2610, 525, 10950, 13, 151645, 198, 151644, 872, 198, 9707, 151645],
}
MISTRAL_COMMON = {  # mistral-common 1.11.7 on the released tekken files (v3 ... v15 alike), with BOS
    "Hello, world!": [1, 22177, 1044, 4304, 1033],
    "The quick brown fox jumps over the lazy dog.": [1, 1784, 7586, 22980, 94137, 72993, 2136, 1278, 42757, 10575,
                                                     1046],
    "función común días 日本語 🎉": [1, 12127, 1963, 35239, 20608, 30367, 15199, 119685, 1142, 1137],
}
# mistral-common 1.13.1's encode_chat_completion (tokenizer v7) of diffusers' Flux.2 system message and "a cat".
FLUX2_SYSTEM_IDS = [17, 4568, 1584, 1420, 26554, 1455, 12738, 2314, 3937, 38340, 1046, 3213, 5628, 37253, 11688, 30557,
                    1408, 3481, 14608, 1044, 3481, 1010, 2452, 5604, 1321, 10636, 3816, 67813, 1046, 18]
A_CAT_CHAT = [1, *FLUX2_SYSTEM_IDS, 3, 1097, 7990, 4]


@pytest.fixture(scope="module")
def loaded(tmp_path_factory):
    """The three tokenizers as the single-file loaders get them at the released widths (tiny=False), with no
    tokenizer folder anywhere, every socket failing and empty Hugging Face caches."""
    from sdcli.models.flow_load import file_tokenizer
    from sdcli.models.flux2_files import mistral_tokenizer

    root = tmp_path_factory.mktemp("no-tokenizer")
    files = (root / "text_encoders" / "encoder.safetensors", root / "diffusion_models" / "model.safetensors")
    with pytest.MonkeyPatch.context() as patch:
        offline(root, patch)
        return {"Qwen3": file_tokenizer({}, False, files, "Qwen3"),
                "Qwen2.5-VL": file_tokenizer({}, False, files, "Qwen2.5-VL"),
                "Mistral Small 3": mistral_tokenizer({}, False, files)}


def test_the_bundled_files_are_the_published_ones():
    """Qwen3's tokenizer.json (Qwen3-0.6B/4B/8B) and tokenizer_config.json, Qwen2.5's tokenizer.json derived from it
    byte for byte, Qwen-Image's tokenizer_config.json, and the converted tekken file as recorded."""
    def sha(data: bytes) -> str:
        return hashlib.sha256(data).hexdigest()

    qwen3, qwen25, mistral = qwen3_files(), qwen25vl_files(), mistral_files()
    assert sha(qwen3["tokenizer.json"]) == "aeb13307a71acd8fe81861d94ad54ab689df773318809eed3cbe794b4492dae4"
    assert sha(qwen3["tokenizer_config.json"]) == "d5d09f07b48c3086c508b30d1c9114bd1189145b74e982a265350c923acd8101"
    assert sha(qwen25["tokenizer.json"]) == "9c5ae00e602b8860cbd784ba82a8aa14e8feecec692e7076590d014d7b7fdafa"
    assert sha(qwen25["tokenizer_config.json"]) == "543eb62a932fd0f63ab66fc83b725e3da0369ad1e38f8e743d00d5b2c52dddab"
    assert sha(mistral["tokenizer.json"]) == "a4a46593c229fecfd57601b6d355584e4c78e66f7d1de29fef3c7465642b5974"


def test_qwen3_gives_the_published_ids_and_the_chat_templates_of_zimage_and_klein(loaded):
    tok = loaded["Qwen3"]
    assert len(tok) == 151669
    assert tok.convert_tokens_to_ids(["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<think>", "</think>"]) == [
        151643, 151644, 151645, 151667, 151668]
    assert (tok.pad_token_id, tok.eos_token_id) == (151643, 151645)
    for text, ids in {**QWEN_LLAMA_CPP, **QWEN_HF}.items():
        assert tok(text).input_ids == ids, text
    user = [{"role": "user", "content": "a cat"}]
    # Z-Image renders with enable_thinking=True, Flux.2 [klein] with False (diffusers' pipelines).
    assert tok.apply_chat_template(user, tokenize=False, add_generation_prompt=True, enable_thinking=True) == (
        "<|im_start|>user\na cat<|im_end|>\n<|im_start|>assistant\n")
    klein = tok.apply_chat_template(user, tokenize=False, add_generation_prompt=True, enable_thinking=False)
    assert klein == "<|im_start|>user\na cat<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n"
    assert tok(klein).input_ids == [151644, 872, 198, 64, 8251, 151645, 198, 151644, 77091, 198, 151667, 271, 151668,
                                    271]
    assert tok("a dog").input_ids != tok("a cat").input_ids


def test_qwen25vl_is_qwen_images_tokenizer(loaded):
    """Qwen2.5's vocabulary without Qwen3's four last added tokens; Qwen-Image's prompt template prefix is the 34
    tokens diffusers' QwenImagePipeline drops (prompt_template_encode_start_idx)."""
    from diffusers import QwenImagePipeline

    tok = loaded["Qwen2.5-VL"]
    assert len(tok) == 151665
    assert tok.convert_tokens_to_ids(["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>",
                                      "<|image_pad|>"]) == [151643, 151644, 151645, 151652, 151655]
    assert len(tok("<think>").input_ids) == 3 and len(loaded["Qwen3"]("<think>").input_ids) == 1
    for text, ids in QWEN_HF.items():
        assert tok(text).input_ids == ids, text
    pipe = QwenImagePipeline(scheduler=None, vae=None, text_encoder=None, tokenizer=None, transformer=None)
    prefix = pipe.prompt_template_encode.split("{}")[0]
    assert len(tok(prefix).input_ids) == pipe.prompt_template_encode_start_idx == 34
    assert tok(pipe.prompt_template_encode.format("a cat")).input_ids[34:36] == [64, 8251]


def test_mistral_gives_mistral_commons_ids_and_flux2_devs_chat_encoding(loaded):
    """Text ids as mistral-common encodes the released tekken files; diffusers' Flux2Pipeline's own call
    (format_input, apply_chat_template padded to max_length) gives mistral-common's chat encoding, padded left."""
    from diffusers.pipelines.flux2.pipeline_flux2 import format_input
    from diffusers.pipelines.flux2.system_messages import SYSTEM_MESSAGE

    tok = loaded["Mistral Small 3"]
    assert len(tok) == 131072
    assert tok.convert_tokens_to_ids(["<unk>", "<s>", "</s>", "[INST]", "[/INST]", "[IMG]", "<pad>",
                                      "[SYSTEM_PROMPT]", "[/SYSTEM_PROMPT]", "<SPECIAL_999>"]) == [
        0, 1, 2, 3, 4, 10, 11, 17, 18, 999]
    for text, ids in MISTRAL_COMMON.items():
        assert [tok.bos_token_id, *tok(text, add_special_tokens=False).input_ids] == ids, text
    batch = tok.apply_chat_template(format_input(["a cat", "a dog"], SYSTEM_MESSAGE), add_generation_prompt=False,
                                    tokenize=True, return_dict=True, padding="max_length", truncation=True,
                                    max_length=40)
    cat, dog = batch["input_ids"]
    assert cat == [11] * (40 - len(A_CAT_CHAT)) + A_CAT_CHAT
    assert batch["attention_mask"][0] == [0] * (40 - len(A_CAT_CHAT)) + [1] * len(A_CAT_CHAT)
    assert dog != cat and dog[-len(A_CAT_CHAT):-3] == A_CAT_CHAT[:-3]


def test_a_tokenizer_folder_beside_the_encoder_or_model_wins_and_a_broken_one_is_refused(tmp_path):
    from sdcli.models.flow_load import file_tokenizer
    from sdcli.models.flux2_files import mistral_tokenizer
    from sdcli.models.tiny_mistral import tiny_mistral_tokenizer
    from sdcli.models.tiny_qwen import tiny_qwen_tokenizer

    encoder, model = tmp_path / "te" / "qwen_3_4b.safetensors", tmp_path / "m" / "z.safetensors"
    tiny_qwen_tokenizer().save_pretrained(tmp_path / "m" / "tokenizer")
    mine = file_tokenizer({}, False, (encoder, model), "Qwen3")
    assert len(mine) == len(tiny_qwen_tokenizer()) < 200
    assert mine("<|im_start|>a").input_ids == tiny_qwen_tokenizer()("<|im_start|>a").input_ids
    tiny_mistral_tokenizer().save_pretrained(tmp_path / "te" / "tokenizer")  # the encoder's folder comes first
    assert len(mistral_tokenizer({}, False, (encoder, model))) == len(tiny_mistral_tokenizer())
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        (tmp_path / "te" / "tokenizer" / name).unlink(missing_ok=True)
    with pytest.raises(ModelError) as info:
        file_tokenizer({}, False, (encoder, model), "Qwen3")
    message = str(info.value)
    assert message.startswith(f"{tmp_path / 'te' / 'tokenizer'} (your Qwen3 tokenizer, used instead of sdcli's "
                              "bundled one): missing tokenizer.json") and "\n" not in message


def test_a_comfyui_mistral_file_with_its_embedded_tekken_tensor_still_loads(tmp_path):
    """ComfyUI's mistral_3_small_flux2_*.safetensors carry Mistral's tekken.json as a uint8 tensor `tekken_model`
    beside the text model's "model.*" weights; sdcli leaves it unread (the bundled tokenizer is diffusers')."""
    import torch
    from safetensors.torch import save_file

    from sdcli.models.flux2_files import load_mistral
    from sdcli.models.tiny_mistral import MISTRAL_TEXT, tiny_mistral3, tiny_mistral_tokenizer

    tok = tiny_mistral_tokenizer()
    text = {k.removeprefix("model.language_model."): v.contiguous()
            for k, v in tiny_mistral3(tok).state_dict().items() if k.startswith("model.language_model.")}
    path = tmp_path / "mistral_3_small_flux2_bf16.safetensors"
    save_file({**{"model." + k: v for k, v in text.items()},
               "tekken_model": torch.frombuffer(bytearray(b'{"config": {"version": "v11"}}'), dtype=torch.uint8)},
              str(path))
    config = {**MISTRAL_TEXT, "vocab_size": len(tok), "pad_token_id": tok.pad_token_id, "bos_token_id": 1,
              "eos_token_id": 2}
    model = load_mistral(path, torch.float32, config)
    assert torch.equal(model.embed_tokens.weight, text["embed_tokens.weight"])
