"""The files a model is made of, found and checked in the plan step (headers only, no weights).

A Flux.1 --model may be a diffusers folder, an all-in-one checkpoint (transformer, CLIP-L, T5-XXL and
VAE in one file), or a transformer-only file (BFL, ComfyUI or diffusers layout, fp8 or GGUF); the other flow
families' transformer files (Chroma, Z-Image, Qwen-Image, Flux.2 klein) hold the transformer only. The parts a
file lacks are its family's (Family.file_parts: text encoder roles in ENCODERS, a VAE kind in VAES) and come from
--text-encoder FILE|NAME (repeatable, told apart by their tensors), --vae FILE|NAME, or the models folder
(text_encoder/ or ComfyUI's text_encoders/ and clip/; VAE/ or vae/). plan_model_parts() settles which file gives
each part, or refuses in one line naming the flag. (The name is Flux's, where this began.)
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from sdcli.errors import ModelError, UsageError
from sdcli.families.base import Family, FileParts
from sdcli.models.flux_files import FluxFile, Shapes, inspect_flux_file
from sdcli.models.flux_keys import COMFY_TRANSFORMER
from sdcli.models.folders import Library, is_path_like
from sdcli.models.resolve import ModelRef

# role -> (file kind, what it is called, the file people download)
ENCODERS = {"clip_l": ("clip-l", "CLIP-L", "clip_l.safetensors"),
            "t5xxl": ("t5xxl", "T5-XXL", "t5xxl_fp16.safetensors"),
            "qwen3": ("qwen3", "Qwen3", "qwen_3_4b.safetensors"),
            "qwen25vl": ("qwen2.5-vl", "Qwen2.5-VL", "qwen_2.5_vl_7b.safetensors"),
            "mistral3": ("mistral3", "Mistral Small 3", "mistral_3_small_flux2_bf16.safetensors")}
ROLE_OF_KIND = {kind: role for role, (kind, _, _) in ENCODERS.items()}
# VAE kind -> (what it is called, the file people download)
VAES = {"flux-vae": ("Flux VAE", "ae.safetensors"),
        "qwen-vae": ("Qwen-Image VAE", "qwen_image_vae.safetensors"),
        "flux2-vae": ("Flux.2 VAE", "flux2-vae.safetensors")}


def _dtype_name(stored: str | None) -> str:
    """A stored dtype as people name it (F8_E4M3: fp8, BF16: bf16, GGUF's Q8_0: q8_0)."""
    return {"F8_E4M3": "fp8", "F8_E5M2": "fp8 e5m2", "BF16": "bf16", "F16": "fp16", "F32": "fp32"}.get(
        stored or "", (stored or "").lower())


def _stored(info: FluxFile) -> str:
    """How a file's weights are stored, for people: its dominant dtype, "scaled" where ComfyUI's fp8 scales are."""
    return _dtype_name(info.dtype) + (" scaled" if info.scaled else "")


def describe(info: FluxFile) -> str:
    """What a file holds, for people: `flux-dev transformer (bfl, fp8)`, `t5xxl text encoder`, `flux vae`."""
    dtype = _stored(info)
    if info.kind in ("flux-transformer", "flux-all-in-one"):
        what = "transformer" if info.kind == "flux-transformer" else "all-in-one"
        layout = "gguf" if info.container == "gguf" else info.layout
        return f"flux-{info.variant or 'dev'} {what} ({layout}, {dtype})"
    if info.kind in ("clip-l", "t5xxl", "qwen3", "qwen2.5-vl", "mistral3"):
        return f"{info.kind.replace('-', '_')} text encoder ({dtype})"
    if info.kind in ("flux-vae", "qwen-vae", "flux2-vae"):
        return f"{info.kind.replace('-', ' ')} ({info.layout}, {dtype})"
    return "not a model part sdcli knows"


def file_kind(path: Path) -> str:
    """What a models-folder file or folder is, for `sdcli models`: family and kind, from headers only."""
    from sdcli.families import detect_folder, detect_single_file

    try:
        if path.is_dir():
            if (path / "model_index.json").is_file():
                return f"{detect_folder(path).family.name} diffusers folder"
            return "diffusers folder"
        if path.suffix.lower() not in (".safetensors", ".gguf"):
            return ""
        from sdcli.models.flux_files import _vae_layout, read_tensor_table

        shapes = read_tensor_table(path)[0]
        if (whole := _checkpoint_family(shapes, path.name)) is not None:  # its CLIP and VAE are parts of it
            return f"{whole.name} checkpoint"
        info = inspect_flux_file(path)
        if info.kind is not None and info.kind != "all-in-one" and not _other_family(info, path):
            return _named(describe(info), info, path)
        prefixes = () if info.parts else ("", "vae.", "first_stage_model.")  # an all-in-one's VAE is a part of it
        vae = next((f for p in prefixes if (f := _vae_layout(shapes, p))), None)
        if vae is not None:
            return f"{vae[1]}-channel vae"
        family = detect_single_file(shapes, name=path.name).family
        if len(info.parts) > 1:  # another family's all-in-one checkpoint
            return f"{family.name} all-in-one ({' + '.join(info.parts)}, {_stored(info)})"
        layout = "gguf" if path.suffix.lower() == ".gguf" else "comfy" if any(
            k.startswith(COMFY_TRANSFORMER) for k in shapes) else "bare"
        return f"{family.name} transformer ({layout}, {_stored(info)})"
    except Exception:  # noqa: BLE001 (a listing shows what it can; a broken file is named, not fatal)
        return "unknown"


def _checkpoint_family(shapes: Shapes, name: str) -> Family | None:
    """The family (by the family table's detection) whose whole checkpoint a single file is: one its family's own
    loader reads every part from (Family.checkpoint_file, or a family with no part files); None for anything else
    (a transformer, text encoder or VAE file, or another family's all-in-one file, which names its parts)."""
    from sdcli.families import detect_single_file

    try:
        family = detect_single_file(shapes, name=name).family
    except ModelError:
        return None
    return family if family.file_parts is None or family.checkpoint_file else None


def _named(described: str, info: FluxFile, path: Path) -> str:
    """`described` with the family a Flux.1 transformer file's name says it is (flux-kontext), where it does."""
    if info.kind not in ("flux-transformer", "flux-all-in-one"):
        return described
    from sdcli.families import detect_single_file
    from sdcli.models.flux_files import read_tensor_table

    shapes = read_tensor_table(path)[0]
    family = detect_single_file(shapes).family
    named = detect_single_file(shapes, name=path.name).family
    return described if named is family else f"{named.name} {described.split(' ', 1)[1]}"


def _other_family(info: FluxFile, path: Path) -> bool:
    """Whether a file Flux's classifier reads as a Flux.1 transformer is another family's (Chroma's BFL names)."""
    if info.kind not in ("flux-transformer", "flux-all-in-one"):
        return False
    from sdcli.families import detect_single_file
    from sdcli.models.flux_files import read_tensor_table

    parts = detect_single_file(read_tensor_table(path)[0]).family.file_parts
    return parts is not None and parts.loader != "flux"


def _resolve(spec: str, library: Library, kind: str, flag: str, names_only: bool) -> Path:
    """A path, or a name in the models folder of `kind`."""
    path = Path(spec).expanduser()
    if names_only and is_path_like(spec):
        raise ModelError(f"{flag}: {spec!r} is a path; only names in the models folder are accepted here")
    if not names_only and path.is_file():
        return path.resolve()
    if library.folders.get(kind) is None:
        raise ModelError(f"{flag}: no such file: {spec}")
    return library.find(kind, spec).path.resolve()


def _inspect(path: Path, flag: str) -> FluxFile:
    """inspect_flux_file with a one-line error naming the flag."""
    if path.suffix.lower() not in (".safetensors", ".gguf"):
        raise ModelError(f"{flag}: {path}: a model part must be a .safetensors (or .gguf) file")
    try:
        return inspect_flux_file(path)
    except (OSError, ValueError, KeyError) as exc:
        raise ModelError(f"{flag}: {path}: cannot read its tensor table ({exc})") from None


def given_encoders(specs: tuple[str, ...], library: Library, names_only: bool = False,
                   roles: tuple[str, ...] = ("clip_l", "t5xxl")) -> dict[str, Path]:
    """--text-encoder values -> {role: file} (Flux.1: {"clip_l": file, "t5xxl": file}), told apart by their
    tensors, in any order; an encoder of a role not in `roles` is refused."""
    found: dict[str, Path] = {}
    for spec in specs:
        path = _resolve(spec, library, "text_encoder", "--text-encoder", names_only)
        info = _inspect(path, "--text-encoder")
        role = ROLE_OF_KIND.get(info.kind or "")
        if role not in roles:
            names = " or ".join(ENCODERS[r][1] for r in roles)
            raise UsageError(f"--text-encoder: {path.name} is not a {names} text encoder ({describe(info)})")
        if role in found:
            raise UsageError(f"--text-encoder: two {ENCODERS[role][1]} encoders given ({found[role].name} and "
                             f"{path.name}); give one of each")
        found[role] = path
    return found


def _from_folder(library: Library, kind: str, wanted: str) -> Path | None:
    """The one file of Flux kind `wanted` in the models folder of `kind` (None: none); several: refused."""
    hits = []
    for entry in library.entries(kind):
        if entry.path.is_file() and entry.path.suffix.lower() in (".safetensors", ".gguf"):
            try:
                if inspect_flux_file(entry.path).kind == wanted:
                    hits.append(entry.path)
            except (OSError, ValueError, KeyError):
                continue
    if len(hits) > 1:
        flag = "--vae" if kind == "vae" else "--text-encoder"
        names = ", ".join(p.name for p in hits[:4])
        raise UsageError(f"{flag}: several {wanted} files in {library.folders[kind]} ({names}); choose one with "
                         f"{flag} NAME")
    return hits[0].resolve() if hits else None


def _where(library: Library, kind: str, fallback: str) -> str:
    folder = library.folders.get(kind)
    return str(folder) if folder is not None else fallback


def check_vae_channels(vae: Path | None, channels: int, label: str) -> None:
    """Refuse a --vae whose latent channels are not the model's (an SD VAE on Flux, or the reverse)."""
    if vae is None:
        return
    file = vae if vae.is_file() else vae / "diffusion_pytorch_model.safetensors"
    if file.suffix.lower() != ".safetensors" or not file.is_file():
        return  # a pickle VAE or an unusual folder: checked when it loads
    from sdcli.models.flux_files import _vae_layout, read_tensor_table

    shapes = read_tensor_table(file)[0]
    found = next((f for p in ("", "vae.", "first_stage_model.") if (f := _vae_layout(shapes, p))), None)
    if found is not None and found[1] != channels:
        kind = "a 16-channel Flux VAE" if found[1] == 16 else f"a {found[1]}-channel Stable Diffusion VAE"
        need = "a 16-channel Flux VAE (ae.safetensors)" if channels == 16 else f"a {channels}-channel VAE"
        raise UsageError(f"--vae: {vae.name if vae.is_file() else vae} is {kind}; a {label} model needs {need}")


def _family_parts(model: ModelRef, info: FluxFile | None) -> tuple[FileParts | None, tuple[str, ...], str]:
    """(the parts a single file's family loads with, the parts the file holds itself, the family's label)."""
    if model.kind != "single-file":
        return None, (), ""
    from sdcli.models.single_file import inspect

    try:
        family = inspect(model.path).family
    except ModelError:  # not a file sdcli loads: refused when it loads
        return None, (), ""
    wanted = family.file_parts
    own = info.parts if wanted is not None and wanted.own_parts and info is not None and info.parts else ()
    return wanted, own or ("transformer",), family.label


def plan_model_parts(model: ModelRef, text_encoders: tuple[str, ...], vae: Path | None, library: Library,
                     names_only: bool = False) -> ModelRef:
    """The model with the files of the parts its own file lacks (ModelRef.parts), or a one-line refusal.

    Only a transformer file of a family with file parts (Family.file_parts: Flux.1, ...) has parts; --text-encoder
    on any other model is refused. On a transformer-only file a --vae is the model's VAE (check_vae_channels has
    refused one of another family).
    """
    info = _inspect(model.path, "--model") if model.kind == "single-file" else None
    wanted, own_parts, label = _family_parts(model, info)
    if wanted is None:
        if text_encoders:
            raise UsageError(f"--text-encoder: {model.path.name} is not a transformer file; separate text encoders "
                             "go with a Flux.1, Chroma, Z-Image, Qwen-Image or Flux.2 (klein, dev) transformer file")
        return model
    parts = given_encoders(text_encoders, library, names_only, wanted.text_encoders)
    own = set(own_parts)
    # 1. text encoders: given, in the file, or the one of its kind in the models folder
    for role in wanted.text_encoders:
        if role not in parts and role not in own and (found := _from_folder(library, "text_encoder",
                                                                            ENCODERS[role][0])):
            parts[role] = found
    missing = [role for role in wanted.text_encoders if role not in parts and role not in own]
    holds = "holds only the transformer" if own == {"transformer"} else f"holds {' + '.join(own_parts)}"
    if missing:
        what = " and ".join(f"{ENCODERS[r][1]} encoder" for r in missing)
        files = ", ".join(ENCODERS[r][2] for r in missing)
        where = _where(library, "text_encoder", "<models>/text_encoder (ComfyUI: models/text_encoders)")
        raise UsageError(f"--text-encoder: {model.path.name} {holds}; give the {what} ({files}) with "
                         f"--text-encoder FILE|NAME, or put it in {where}")
    # 2. the VAE: --vae (an add-on when the file has its own), or the family's VAE in the VAE folder
    if "vae" not in own:
        name, file = VAES[wanted.vae]
        found = vae if vae is not None else _from_folder(library, "vae", wanted.vae)  # as the asset plan names it
        if found is None:
            where = _where(library, "vae", "<models>/VAE (ComfyUI: models/vae)")
            raise UsageError(f"--vae: {model.path.name} {holds}; give the {name} ({file}) with "
                             f"--vae FILE|NAME, or put it in {where}")
        if _inspect(found, "--vae").kind != wanted.vae:
            raise UsageError(f"--vae: {found.name} is not a {name} ({describe(_inspect(found, '--vae'))})")
        parts["vae"] = found
    return replace(model, parts=tuple(sorted((role, path) for role, path in parts.items())))
