"""Component configs and tokenizer files that ship inside sdcli, written out as diffusers config folders.

Loading a single-file checkpoint needs a diffusers config folder (model_index.json,
each component's config, tokenizer files) and sdcli must never fetch one from a hub.
configs/<family>.json holds one family's component configs (written for sdcli from the
published SD 1.5 / 2.1 / XL base / XL refiner configurations); the tokenizer files come from
models.tokenizer_files (where the bundled vocabularies' sources are recorded).
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Any

from sdcli.models.tokenizer_files import (  # noqa: F401 (TINY_VOCAB and the writers: imported from here too)
    CONFIGS,
    TINY_T5_VOCAB,
    TINY_VOCAB,
    TOKENIZER_WRITERS,
    copy_user_tokenizer,
    folder_digest,
    tokenizer_writer,
    write_clip_tokenizer,
    write_tiny_tokenizer,
)

# Folder layout of each part of a family config (tokenizer files are added separately).
CONFIG_FILES = {"unet": "config.json", "transformer": "config.json", "vae": "config.json",
                "text_encoder": "config.json", "text_encoder_2": "config.json",
                "text_encoder_3": "config.json", "scheduler": "scheduler_config.json",
                "tokenizer": "tokenizer_config.json", "tokenizer_2": "tokenizer_config.json",
                "tokenizer_3": "tokenizer_config.json"}


@cache
def _family_json(name: str) -> dict[str, Any]:
    return json.loads((CONFIGS / f"{name}.json").read_text(encoding="utf-8"))


def family_config(name: str) -> dict[str, Any]:
    """A fresh copy of a family's bundled configs: {"model_index": ..., "unet": ..., ...}."""
    return copy.deepcopy(_family_json(name))


def write_config_folder(spec: dict[str, Any], dest: Path, tokenizer: str = "bundled",
                        user_tokenizers: Mapping[str, Path] | None = None) -> Path:
    """Write a diffusers config folder (no weights) for `spec` (a family_config()-shaped dict).

    Each tokenizer part gets the files of its class (model_index.json) from the `tokenizer` set
    ("bundled": the real ones; "tiny": character-level ones), or the user's own folder for the
    parts in `user_tokenizers` (tokenizer_files.user_tokenizers).
    """
    user = user_tokenizers or {}
    dest.mkdir(parents=True, exist_ok=True)
    (dest / "model_index.json").write_text(json.dumps(spec["model_index"], indent=1), encoding="utf-8")
    for part, filename in CONFIG_FILES.items():
        if part not in spec:
            continue
        (dest / part).mkdir(exist_ok=True)
        (dest / part / filename).write_text(json.dumps(spec[part], indent=1), encoding="utf-8")
        if part in user:
            copy_user_tokenizer(user[part], dest / part)
        elif part.startswith("tokenizer"):
            cls = (spec["model_index"].get(part) or [None, "CLIPTokenizer"])[-1]
            tokenizer_writer(tokenizer, cls)(dest / part)
    return dest


def cached_config_folder(spec: dict[str, Any], root: Path, tokenizer: str = "bundled",
                         user_tokenizers: Mapping[str, Path] | None = None) -> Path:
    """write_config_folder into `root`/<content hash>, once; later calls reuse it."""
    keyed: list[Any] = [spec, tokenizer]
    if user_tokenizers:  # their files' content, so an edited tokenizer gets a new folder
        keyed.append({part: folder_digest(folder) for part, folder in user_tokenizers.items()})
    key = hashlib.sha256(json.dumps(keyed, sort_keys=True).encode()).hexdigest()[:16]
    dest = root / key
    if (dest / "model_index.json").is_file():
        return dest
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{key}.", dir=root))
    try:
        write_config_folder(spec, tmp, tokenizer, user_tokenizers)
        os.replace(tmp, dest)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
        if not (dest / "model_index.json").is_file():  # not a lost race: a real failure
            raise
    return dest
