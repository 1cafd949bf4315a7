"""The one place that opens weight files: checks, safe loading, and the no-remote-code rule.

Policy: safetensors files load after a header/size check. Pickle files
(.ckpt/.pt/.bin/.pth) can run code when unpickled, so they are refused unless
--allow-pickle, and then read only through torch's weights-only unpickler
(torch >= 2.6), never retried unsafely. A model_index.json may only name
classes of diffusers and transformers: anything else would import user code.
"""

from __future__ import annotations

import json
import os
import re
import struct
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sdcli.errors import ModelError, UsageError

PICKLE_SUFFIXES = (".bin", ".ckpt", ".pt", ".pth", ".pkl")
WEIGHT_SUFFIXES = (".safetensors", *PICKLE_SUFFIXES)
MIN_TORCH_FOR_PICKLE = (2, 6)
# Libraries a model_index.json may name (besides diffusers' own pipeline packages); any other would make
# diffusers import a module by that name, or a .py file from the model folder.
KNOWN_LIBRARIES = ("diffusers", "transformers")
_CLASS_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
CONVERT_HINT = ("convert it to .safetensors first (e.g. in a trusted environment: "
                "safetensors.torch.save_file(torch.load(f, weights_only=True), 'out.safetensors')), "
                "or pass --allow-pickle to read it with torch's weights-only loader")


def check_safetensors(path: Path, flag: str = "--model") -> None:
    """Header and size check: catches truncated and corrupt files before loading."""
    size = path.stat().st_size
    try:
        with open(path, "rb") as fh:
            (header_len,) = struct.unpack("<Q", fh.read(8))
            if header_len > min(size - 8, 100 * 1024 * 1024):
                raise ValueError("header length past the end of the file")
            header = json.loads(fh.read(header_len))
        end = max((v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"), default=0)
    except (struct.error, ValueError, KeyError, TypeError, IndexError, AttributeError) as exc:
        raise ModelError(f"{flag}: {path} is not a valid safetensors file ({exc})") from None
    if 8 + header_len + end != size:
        raise ModelError(
            f"{flag}: {path} is truncated or corrupt ({size} bytes, header says {8 + header_len + end})"
        )


def refuse_pickle(path: Path, flag: str) -> ModelError:
    """The one-line refusal of a pickle file without --allow-pickle."""
    return ModelError(f"{flag}: {path} is a pickle file ({path.suffix}), which can run code when loaded; "
                      f"{CONVERT_HINT}")


def safetensors_metadata(path: Path) -> dict[str, str]:
    """The __metadata__ of a safetensors header (no tensors read); {} when absent."""
    with open(path, "rb") as fh:
        (header_len,) = struct.unpack("<Q", fh.read(8))
        header = json.loads(fh.read(header_len))
    meta = header.get("__metadata__") or {}
    return {str(k): str(v) for k, v in meta.items()}


def load_state_dict(path: Path, *, flag: str, allow_pickle: bool = False) -> dict[str, Any]:
    """Tensors of one weight file on the CPU, by the policy in the module docstring.

    Raises ModelError (exit 2) naming `flag` and the file for pickles without
    --allow-pickle, unsafe pickles, and truncated or corrupt files.
    """
    suffix = path.suffix.lower()
    if suffix == ".safetensors":
        from safetensors.torch import load_file

        check_safetensors(path, flag)
        try:
            return load_file(str(path), device="cpu")
        except Exception as exc:  # safetensors raises its own error types
            raise ModelError(f"{flag}: {path} is not a valid safetensors file ({_first_line(exc)})") from None
    if suffix not in PICKLE_SUFFIXES:
        raise ModelError(f"{flag}: {path}: unknown weight file type {suffix or '(none)'}; "
                         "use .safetensors (or a pickle file with --allow-pickle)")
    if not allow_pickle:
        raise refuse_pickle(path, flag)
    data = _load_pickle_weights_only(path, flag)
    if isinstance(data, dict) and isinstance(data.get("state_dict"), dict):
        data = data["state_dict"]  # old LDM checkpoints nest their weights
    if not isinstance(data, dict):
        raise ModelError(f"{flag}: {path} holds a {type(data).__name__}, not a dictionary of tensors")
    return data


def _load_pickle_weights_only(path: Path, flag: str) -> Any:
    """torch.load with weights_only=True; anything it refuses is refused, never retried."""
    import pickle
    import warnings
    import zipfile

    import torch

    version = tuple(int(p) for p in re.findall(r"\d+", torch.__version__)[:2])
    if version < MIN_TORCH_FOR_PICKLE:
        raise UsageError(f"--allow-pickle: torch {torch.__version__} is too old to load pickles safely "
                         "(its weights-only loader could be bypassed); needs torch 2.6 or newer")
    try:
        with _no_unsafe_override(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch's notes on pickle protocols: not the user's business
            return torch.load(path, map_location="cpu", weights_only=True, mmap=False)
    except pickle.UnpicklingError as exc:
        found = re.search(r"GLOBAL ([\w.]+)", str(exc))  # not torch's advice on how to load it unsafely
        what = f"it calls {found.group(1)}" if found else "not plain tensors"
        raise ModelError(f"{flag}: {path} was refused by torch's weights-only loader: it holds more than "
                         f"plain weights and could run code ({what})") from None
    except (RuntimeError, EOFError, ValueError, OSError, zipfile.BadZipFile, struct.error) as exc:
        raise ModelError(f"{flag}: {path} is truncated or corrupt ({_first_line(exc)})") from None


@contextmanager
def _no_unsafe_override():
    """Hide TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD while loading: some torch versions let it turn
    weights_only off; sdcli asks for weights-only loading explicitly and means it."""
    saved = os.environ.pop("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", None)
    try:
        yield
    finally:
        if saved is not None:
            os.environ["TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"] = saved


def check_model_index(index: Path, components: dict[str, Any]) -> None:
    """Refuse a model_index.json that would load code: custom pipelines or non-library classes."""
    pipeline = components.get("_class_name")
    if not isinstance(pipeline, str) or not _CLASS_NAME.match(pipeline):
        raise ModelError(f"--model: {index} names a custom pipeline ({pipeline!r}); sdcli runs no remote "
                         "or custom code, only diffusers' own pipelines")
    for name, value in components.items():
        if name.startswith("_") or not isinstance(value, list):
            continue
        if len(value) != 2:
            raise ModelError(f"--model: {index}: component {name!r} is malformed ({value!r})")
        library, cls = value
        if library is None and cls is None:
            continue  # an unused optional component (e.g. safety_checker)
        known = library in KNOWN_LIBRARIES or _is_diffusers_pipeline_module(library)
        if not known or not isinstance(cls, str) or not _CLASS_NAME.match(cls):
            raise ModelError(f"--model: {index}: component {name!r} is {library}.{cls}; sdcli loads only "
                             f"classes of {' and '.join(KNOWN_LIBRARIES)} (no custom or remote code)")


def _is_diffusers_pipeline_module(name: Any) -> bool:
    """Whether `name` is one of diffusers' own pipeline packages (e.g. "stable_diffusion", which SD 1.x
    model indexes name for their safety checker); found on disk, without importing diffusers."""
    import importlib.util

    if not isinstance(name, str) or not _CLASS_NAME.match(name):
        return False
    spec = importlib.util.find_spec("diffusers")
    roots = spec.submodule_search_locations if spec is not None else None
    return any((Path(root) / "pipelines" / name / "__init__.py").is_file() for root in roots or ())


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
