"""Component configs and tokenizer files that ship inside sdcli, written out as diffusers config folders.

Loading a single-file checkpoint needs a diffusers config folder (model_index.json,
each component's config, tokenizer files) and sdcli must never fetch one from a hub.
configs/<family>.json holds one family's component configs (written for sdcli from the
published SD 1.5 / 2.1 / XL base / XL refiner configurations); the CLIP BPE merges are
configs/clip_bpe_simple_vocab_16e6.txt.gz, taken unchanged from the open-clip-torch 3.3.0
wheel on PyPI (open_clip/bpe_simple_vocab_16e6.txt.gz, MIT licence; the same BPE as
OpenAI's CLIP). vocab.json/merges.txt are derived from it the way CLIP builds its vocabulary.
"""

from __future__ import annotations

import copy
import gzip
import hashlib
import json
import os
import shutil
import tempfile
from functools import cache
from pathlib import Path
from typing import Any

CONFIGS = Path(__file__).with_name("configs")
BPE_FILE = CONFIGS / "clip_bpe_simple_vocab_16e6.txt.gz"
CLIP_MERGES = 49152 - 256 - 2  # CLIP uses the first 48894 merges of the file
# Folder layout of each part of a family config (tokenizer files are added separately).
CONFIG_FILES = {"unet": "config.json", "vae": "config.json", "text_encoder": "config.json",
                "text_encoder_2": "config.json", "scheduler": "scheduler_config.json",
                "tokenizer": "tokenizer_config.json", "tokenizer_2": "tokenizer_config.json"}


@cache
def _family_json(name: str) -> dict[str, Any]:
    return json.loads((CONFIGS / f"{name}.json").read_text(encoding="utf-8"))


def family_config(name: str) -> dict[str, Any]:
    """A fresh copy of a family's bundled configs: {"model_index": ..., "unet": ..., ...}."""
    return copy.deepcopy(_family_json(name))


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


TINY_VOCAB = 2 * 256 + 2
TOKENIZER_WRITERS = {"clip": write_clip_tokenizer, "tiny": write_tiny_tokenizer}


def write_config_folder(spec: dict[str, Any], dest: Path, tokenizer: str = "clip") -> Path:
    """Write a diffusers config folder (no weights) for `spec` (a family_config()-shaped dict)."""
    dest.mkdir(parents=True, exist_ok=True)
    (dest / "model_index.json").write_text(json.dumps(spec["model_index"], indent=1), encoding="utf-8")
    for part, filename in CONFIG_FILES.items():
        if part not in spec:
            continue
        (dest / part).mkdir(exist_ok=True)
        (dest / part / filename).write_text(json.dumps(spec[part], indent=1), encoding="utf-8")
        if part.startswith("tokenizer"):
            TOKENIZER_WRITERS[tokenizer](dest / part)
    return dest


def cached_config_folder(spec: dict[str, Any], root: Path, tokenizer: str = "clip") -> Path:
    """write_config_folder into `root`/<content hash>, once; later calls reuse it."""
    key = hashlib.sha256(json.dumps([spec, tokenizer], sort_keys=True).encode()).hexdigest()[:16]
    dest = root / key
    if (dest / "model_index.json").is_file():
        return dest
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{key}.", dir=root))
    try:
        write_config_folder(spec, tmp, tokenizer)
        os.replace(tmp, dest)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
        if not (dest / "model_index.json").is_file():  # not a lost race: a real failure
            raise
    return dest
