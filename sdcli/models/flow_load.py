"""Load the parts of the flow families other than Flux.1 from single files, offline, with strict key checks.

load_transformer reads a transformer-only file (.safetensors or a city96-style .gguf) in the original layout
(bare, or under ComfyUI's "model.diffusion_model.") or in diffusers' names and converts the original names with
the converter diffusers' own single-file support uses for that class (SINGLE_FILE_LOADABLE_CLASSES), or with a
converter of the family's given here where diffusers' has none or fixes the released widths; the result is
checked against the model the config builds and loaded by from_single_file (config= a folder of sdcli's,
local_files_only; GGUF through diffusers' GGUFQuantizationConfig). load_qwen3 reads a Qwen3 text encoder
(transformers' names, bare or under "model." as ComfyUI's qwen_3_4b.safetensors) into transformers' class.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from sdcli.errors import ModelError
from sdcli.models.flux_files import inspect_part, read_tensor_table
from sdcli.models.flux_load import Config, _load_diffusers, _load_transformers, config_dict, read_tensors, upcast
from sdcli.models.resolve import ModelRef

COMFY_PREFIX = "model.diffusion_model."
Converter = Callable[[dict[str, Any], dict[str, Any]], dict[str, Any]]


def transformer_prefix(path: Path, mark: str) -> str:
    """The prefix of a transformer's keys in a file ("" or ComfyUI's), from the key ending in `mark`."""
    shapes = read_tensor_table(path)[0]
    hits = sorted((k for k in shapes if k == mark or k.endswith("." + mark)), key=len)
    if not hits:
        raise ModelError(f"--model: {path}: no {mark} in it; not a transformer file sdcli knows")
    return hits[0][: -len(mark)]


def diffusers_converter(cls_name: str) -> Converter:
    """diffusers' own original -> diffusers converter for the model class `cls_name`."""
    from diffusers.loaders.single_file_model import SINGLE_FILE_LOADABLE_CLASSES

    convert: Any = SINGLE_FILE_LOADABLE_CLASSES[cls_name]["checkpoint_mapping_fn"]  # type: ignore[index]
    return lambda state, config: dict(convert(checkpoint=dict(state), config=config))


def load_transformer(cls_name: str, path: Path, dtype: Any, config: Config, prefix: str, diffusers_layout: bool,
                     convert: Converter | None = None, source: str = "--model") -> Any:
    """The diffusers model `cls_name` from a transformer-only file whose keys start with `prefix`.

    `diffusers_layout`: the keys are diffusers' already; else `convert` (default: diffusers' converter for the
    class) renames them. A .gguf file stays quantized (diffusers' GGUF quantizer, `dtype` its compute dtype).
    """
    import diffusers

    where = f"{source}: {path}"
    cls = getattr(diffusers, cls_name)
    state = read_tensors(path, prefix, source, dtype)
    if not diffusers_layout:
        try:
            state = (convert or diffusers_converter(cls_name))(state, config_dict(config))
        except (KeyError, ValueError, RuntimeError, IndexError) as exc:
            raise ModelError(f"{where}: cannot convert the transformer's keys ({exc})") from None
    quantization = None
    if path.suffix.lower() == ".gguf":
        quantization = diffusers.GGUFQuantizationConfig(compute_dtype=dtype)
    return _load_diffusers(cls, upcast(state, dtype), config, dtype, where, quantization)


def load_qwen3(path: Path, dtype: Any, config: Config, cls_name: str = "Qwen3Model",
               source: str = "--text-encoder") -> Any:
    """A transformers Qwen3 text model (`cls_name`: Qwen3Model or Qwen3ForCausalLM) from a Qwen3 file."""
    import transformers

    where = f"{source}: {path}"
    info = inspect_part(path, "qwen3")
    if info.kind != "qwen3":
        raise ModelError(f"{where} is not a Qwen3 text encoder")
    if info.container == "gguf":  # llama.cpp's names, dequantized (models.gguf_text)
        from sdcli.models.gguf_text import read_gguf_encoder

        qwen3 = transformers.Qwen3Config(**config_dict(config))
        state = read_gguf_encoder(path, transformers.Qwen3Model, qwen3, dtype, source)
    else:
        state = read_tensors(path, info.prefix, source, dtype)
    state.pop("lm_head.weight", None)  # tied to the token embedding (Qwen3 4B), or unused by the image models
    if cls_name != "Qwen3Model":  # a causal LM: its head is the token embedding (tied in Qwen3 4B)
        state = {f"model.{k}": v for k, v in state.items()}
        state["lm_head.weight"] = state["model.embed_tokens.weight"]
    cls = getattr(transformers, cls_name)
    return _load_transformers(cls, transformers.Qwen3Config, upcast(state, dtype), config, dtype, where)


def part_source(model: ModelRef, role: str) -> tuple[Path, str]:
    """The file giving the part `role` ("qwen3", "vae", ...) and the flag its errors name: the one the plan step
    found (ModelRef.parts), else the model's own file (an all-in-one checkpoint holds it)."""
    parts = dict(model.parts)
    return (parts[role], "--vae" if role == "vae" else "--text-encoder") if role in parts else (model.path, "--model")


def file_tokenizer(config: Config, tiny: bool, files: tuple[Path, ...], what: str) -> Any:
    """The tokenizer of a transformer file's Qwen text encoder `what` ("Qwen3", "Qwen2.5-VL"): sdcli's tiny one for
    its tiny models (the encoder's `config` sized to it, a VL config's text_config too), else the user's `tokenizer`
    folder beside one of `files` or the bundled real one (models.llm_tokenizers.text_tokenizer)."""
    if not tiny:
        from sdcli.models.llm_tokenizers import text_tokenizer

        return text_tokenizer(files, what)
    from sdcli.models.tiny_qwen import tiny_qwen_tokenizer

    tokenizer = tiny_qwen_tokenizer()
    ids = {"vocab_size": len(tokenizer), "pad_token_id": tokenizer.pad_token_id}
    if "text_config" in config:
        ids |= {"bos_token_id": tokenizer.pad_token_id, "eos_token_id": tokenizer.eos_token_id}
        config["text_config"].update(ids)
    config.update(ids)
    return tokenizer
