"""Textual-inversion embeddings: read the WebUI, diffusers and SDXL formats, put them on a pipeline.

An embedding is used when its name (file stem) appears as a word in a prompt,
as in the WebUI. Vectors go in through diffusers' load_textual_inversion (new
tokens in the tokenizer, rows in the text encoder's embedding table);
multi-vector embeddings are expanded in the text the encoder sees.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sdcli.errors import ModelError

if TYPE_CHECKING:
    from sdcli.models.loaded import LoadedModel

# SDXL embeddings carry one tensor per text encoder (the file keys; a family's capabilities.embeddings
# names the text encoder each goes to).
SDXL_KEYS = ("clip_l", "clip_g")


@dataclass(frozen=True)
class EmbeddingSpec:
    """One embedding file and the word that triggers it."""

    path: Path
    name: str
    hash: str  # the WebUI's short hash (sha256, 12 hex)


def mentioned(name: str, *prompts: str) -> bool:
    """Whether `name` appears as a whole word in any prompt (WebUI: the file stem triggers it)."""
    pattern = re.compile(rf"(?<![\w-]){re.escape(name)}(?![\w-])")
    return any(pattern.search(p) for p in prompts)


def read_vectors(path: Path, *, allow_pickle: bool = False) -> dict[str, Any]:
    """The embedding's vectors: {"clip_l": [n, dim]} for one encoder, plus "clip_g" for SDXL."""
    from sdcli.models.safety import load_state_dict

    data = load_state_dict(path, flag="--embedding", allow_pickle=allow_pickle)
    if "string_to_param" in data:  # the WebUI's own format
        params = data["string_to_param"]
        if not isinstance(params, dict) or len(params) != 1:
            raise ModelError(f"--embedding: {path} holds {len(params)} terms; sdcli reads one per file")
        vectors = {"clip_l": next(iter(params.values()))}
    elif any(key in data for key in SDXL_KEYS):
        vectors = {key: data[key] for key in SDXL_KEYS if key in data}
    else:  # diffusers ({token: vector}) and kohya ("emb_params"): one tensor
        tensors = [v for v in data.values() if hasattr(v, "shape")]
        if len(tensors) != 1:
            raise ModelError(f"--embedding: {path} is not a textual-inversion embedding "
                             f"({len(tensors)} tensors, expected 1)")
        vectors = {"clip_l": tensors[0]}
    for key, tensor in vectors.items():
        if not hasattr(tensor, "dim") or tensor.dim() not in (1, 2):
            raise ModelError(f"--embedding: {path}: {key} is not a vector or a list of vectors")
        vectors[key] = tensor.detach().float().reshape(-1, tensor.shape[-1])
    return vectors


def apply_embeddings(model: LoadedModel, specs: list[EmbeddingSpec], *, allow_pickle: bool = False) -> None:
    """Make exactly `specs` the model's embeddings (no change when they already are)."""
    pipe, addons, slots = model.pipe, model.addons, model.family.capabilities.embeddings
    wanted = {spec.name: spec.hash for spec in specs}
    if addons.embeddings == wanted:
        return
    if addons.embeddings:
        pipe.unload_textual_inversion()
    addons.embeddings = {}
    for spec in specs:
        vectors = read_vectors(spec.path, allow_pickle=allow_pickle)
        if "clip_g" in vectors and "clip_g" not in slots:
            raise ModelError(f"--embedding: {spec.path} is an SDXL embedding (clip_l and clip_g vectors); "
                             "this model has one text encoder")
        if "clip_g" in slots and "clip_g" not in vectors:
            raise ModelError(f"--embedding: {spec.path} has vectors for one text encoder; this model (SDXL) "
                             "needs clip_l and clip_g vectors")
        for key, (encoder_name, tokenizer_name) in slots.items():
            encoder = getattr(pipe, encoder_name, None)
            if key not in vectors or encoder is None:
                continue
            width = encoder.get_input_embeddings().weight.shape[1]
            if vectors[key].shape[1] != width:
                raise ModelError(f"--embedding: {spec.path} has vectors of width {vectors[key].shape[1]}; this "
                                 f"model's text encoder needs {width} (an embedding for another model family?)")
            pipe.load_textual_inversion({spec.name: vectors[key]}, token=spec.name,
                                        text_encoder=encoder, tokenizer=getattr(pipe, tokenizer_name))
        addons.embeddings[spec.name] = spec.hash


def ti_hashes(specs: list[EmbeddingSpec]) -> str | None:
    """The WebUI's `TI hashes` value: "name: hash, ..." (None when no embedding was used)."""
    return ", ".join(f"{spec.name}: {spec.hash}" for spec in specs) or None


def expand_prompt(model: LoadedModel, text: str) -> str:
    """Spell multi-vector embeddings out as their tokens (name -> name name_1 ...), as diffusers does."""
    # An SDXL refiner has only its second tokenizer; embeddings load into each, so any one spells them out.
    slots = model.family.capabilities.embeddings.values()
    tokenizer = next((t for t in (getattr(model.pipe, name, None) for _, name in slots) if t is not None), None)
    if not model.addons.embeddings or tokenizer is None:
        return text
    return model.pipe.maybe_convert_prompt(text, tokenizer)
