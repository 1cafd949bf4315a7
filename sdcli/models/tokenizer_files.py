"""Tokenizer files for diffusers config folders: the real CLIP tokenizer from the bundled BPE file,
and a character-level CLIP tokenizer for tiny models.

configs/clip_bpe_simple_vocab_16e6.txt.gz is taken unchanged from the open-clip-torch 3.3.0 wheel on
PyPI (open_clip/bpe_simple_vocab_16e6.txt.gz, MIT licence; the same BPE as OpenAI's CLIP);
vocab.json/merges.txt are derived from it the way CLIP builds its vocabulary.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

CONFIGS = Path(__file__).with_name("configs")
BPE_FILE = CONFIGS / "clip_bpe_simple_vocab_16e6.txt.gz"
CLIP_MERGES = 49152 - 256 - 2  # CLIP uses the first 48894 merges of the file


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
