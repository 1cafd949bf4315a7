"""Add-ons of a job: LoRAs, embeddings and a VAE, planned before any model loads, then applied.

plan_assets() is pure (no torch): it finds every file (path or name in the
models folder), checks it (pickle policy, safetensors header) and hashes it, so
a bad add-on fails before the model loads. apply_assets() puts the plan on a
loaded pipeline; the plan's params() are the WebUI infotext keys it adds.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sdcli.conditioning.extra_networks import LORA_KINDS, extract_networks
from sdcli.errors import ModelError, UsageError
from sdcli.models.embeddings import EmbeddingSpec, mentioned, ti_hashes
from sdcli.models.folders import FLAGS, SHORT_HASH, Library, is_path_like, library_from, weights_file
from sdcli.models.hashes import file_sha256
from sdcli.models.lora import LoraSpec, lora_hashes, parse_hashes, parse_lora_flag
from sdcli.models.safety import PICKLE_SUFFIXES, check_safetensors, refuse_pickle

if TYPE_CHECKING:
    from sdcli.models.loaded import LoadedModel


@dataclass(frozen=True)
class AssetOptions:
    """The models-folder and add-on flags of a job."""

    models_dir: str | None = None
    webui_dir: str | None = None
    comfy_dir: str | None = None  # a ComfyUI install (models/checkpoints, diffusion_models, text_encoders, ...)
    loras: tuple[str, ...] = ()  # PATH[:WEIGHT] or NAME[:WEIGHT]
    embeddings: tuple[str, ...] = ()
    vae: str | None = None
    allow_pickle: bool = False
    no_half_vae: bool = False
    names_only: bool = False  # the server: every value is a name in the models folder, never a path
    # Infotext of the image being replayed: its Lora/TI/VAE hashes are checked against the files found.
    recorded: dict[str, str] = field(default_factory=dict, compare=False)

    def library(self) -> Library:
        return library_from(self.models_dir, self.webui_dir, self.comfy_dir)


@dataclass(frozen=True)
class AssetPlan:
    """The files one prompt pair uses, with their hashes, and warnings for the user."""

    loras: tuple[LoraSpec, ...] = ()
    embeddings: tuple[EmbeddingSpec, ...] = ()
    vae: Path | None = None
    vae_hash: str | None = None
    warnings: tuple[str, ...] = ()

    def params(self) -> dict[str, Any]:
        """WebUI infotext keys: VAE hash, VAE, Lora hashes, TI hashes (None = left out)."""
        return {
            "VAE hash": self.vae_hash,
            "VAE": self.vae.name if self.vae is not None else None,
            "Lora hashes": lora_hashes(list(self.loras)),
            "TI hashes": ti_hashes(list(self.embeddings)),
        }

    def record(self) -> dict[str, Any]:
        """What replay needs besides the prompt: the flag LoRAs, embeddings and VAE, as paths."""
        flag_loras = [f"{s.path}:{s.weight:g}" for s in self.loras if not s.from_tag]
        return {"loras": flag_loras, "embeddings": [str(s.path) for s in self.embeddings],
                "vae": str(self.vae) if self.vae else None}


def find_file(kind: str, spec: str, library: Library, allow_pickle: bool, names_only: bool = False) -> Path:
    """A path, or a name looked up in the models folder; checked by the pickle/safetensors policy.
    VAE folders stay folders (diffusers layout); other kinds resolve to their weights file.
    `names_only` (the server): only a name in the models folder, never a path."""
    flag = FLAGS[kind]
    path = Path(spec).expanduser()
    if names_only and is_path_like(spec):
        raise ModelError(f"{flag}: {spec!r} is a path; only names in the models folder are accepted here")
    if names_only or not path.exists():
        if library.folders.get(kind) is None:
            raise ModelError(f"{flag}: {spec!r}: no models folder to find it in" if names_only
                             else f"{flag}: no such file: {spec}")
        path = library.find(kind, spec).path
    file = path if path.is_file() else weights_file(path)
    if file.suffix.lower() in PICKLE_SUFFIXES:
        if not allow_pickle:
            raise refuse_pickle(file, flag)
    elif file.suffix.lower() == ".safetensors":
        check_safetensors(file, flag)
    else:
        raise ModelError(f"{flag}: {file}: unknown weight file type {file.suffix or '(none)'}; use .safetensors")
    return path if kind == "vae" else file  # a LoRA/embedding folder (diffusers' save_*): its weights file


def short_hash(kind: str, path: Path) -> str:
    """The WebUI's short hash of an add-on file (LoRA 12, embedding 12, VAE 10 hex digits)."""
    return file_sha256(weights_file(path))[:SHORT_HASH[kind]]


def plan_assets(options: AssetOptions, prompt: str, negative_prompt: str = "") -> AssetPlan:
    """Find, check and hash every add-on the flags and the prompts ask for. No torch."""
    library = options.library()
    warnings: list[str] = []
    # 1. LoRAs: --lora flags, then <lora:name:weight> tags of the prompt.
    loras = []
    for value in options.loras:
        spec, weight = parse_lora_flag(value)
        path = find_file("lora", spec, library, options.allow_pickle, options.names_only)
        name = Path(spec).expanduser().name if Path(spec).expanduser().is_dir() else path.stem  # a folder: its name
        loras.append(LoraSpec(path, weight, name, short_hash("lora", path)))
    for tag in extract_networks(prompt)[1] + extract_networks(negative_prompt)[1]:
        if tag.kind not in LORA_KINDS:
            warnings.append(f"prompt: <{tag.kind}:...> networks are not supported; the tag is ignored")
            continue
        if library.folders.get("lora") is None:
            where = ("start the server with --models-dir or --webui-dir" if options.names_only else
                     "set --models-dir, SDCLI_MODELS_DIR or --webui-dir (or use --lora PATH)")
            raise UsageError(f"prompt: <{tag.kind}:{tag.name}>: no LoRA folder to find it in; {where}")
        try:
            path = find_file("lora", tag.name, library, options.allow_pickle, options.names_only)
        except ModelError as exc:
            raise ModelError(f"prompt: <{tag.kind}:{tag.name}>: {str(exc).removeprefix('--lora: ')}") from None
        loras.append(LoraSpec(path, tag.weight, tag.name, short_hash("lora", path), from_tag=True,
                              unet_weight=tag.unet_weight))
    # 2. Embeddings: --embedding files and the embeddings folder, when their name is in a prompt.
    candidates: dict[str, Path] = {}
    for spec in options.embeddings:
        path = find_file("embedding", spec, library, options.allow_pickle, options.names_only)
        candidates.setdefault(path.stem, path)
    for entry in library.entries("embedding"):
        candidates.setdefault(entry.stem, entry.path)
    used = [EmbeddingSpec(find_file("embedding", str(path), library, options.allow_pickle), name,
                          short_hash("embedding", path))
            for name, path in candidates.items() if mentioned(name, prompt, negative_prompt)]
    # 3. The VAE.
    vae = None
    if options.vae:
        vae = find_file("vae", options.vae, library, options.allow_pickle, options.names_only)
    if vae is None and options.recorded.get("VAE"):  # replaying a WebUI image: its VAE by name
        vae = _recorded_vae(options, library, options.recorded["VAE"], warnings)
    plan = AssetPlan(tuple(loras), tuple(used), vae, short_hash("vae", vae) if vae else None, tuple(warnings))
    return _check_recorded(plan, options.recorded)


def _recorded_vae(options: AssetOptions, library: Library, name: str, warnings: list[str]) -> Path | None:
    """The VAE folder's file the image's `VAE: name` names; a warning (and the model's own) if none."""
    entry = None
    if library.folders.get("vae") is not None:
        entry = next((e for e in library.entries("vae") if name in (e.path.name, e.name, e.stem)), None)
    if entry is None:
        warnings.append(f"the image was made with VAE {name!r}, not found in a VAE folder; using the model's own "
                        "(pass --vae)")
        return None
    return find_file("vae", str(entry.path), library, options.allow_pickle)


def _check_recorded(plan: AssetPlan, recorded: dict[str, str]) -> AssetPlan:
    """Replay: warn, naming both hashes, where a file found differs from the one the image used."""
    warnings = list(plan.warnings)
    for key, label, specs in (("Lora hashes", "LoRA", plan.loras), ("TI hashes", "embedding", plan.embeddings)):
        wanted = parse_hashes(recorded.get(key))
        for spec in specs:
            if spec.name in wanted and wanted[spec.name] != spec.hash:
                warnings.append(f"{label} {spec.name}: {spec.path} has hash {spec.hash}, the image was made "
                                f"with hash {wanted[spec.name]}; the result will differ")
    if plan.vae_hash and recorded.get("VAE hash") and recorded["VAE hash"] != plan.vae_hash:
        warnings.append(f"VAE {plan.vae}: hash {plan.vae_hash}, the image was made with hash "
                        f"{recorded['VAE hash']}; the result will differ")
    return AssetPlan(plan.loras, plan.embeddings, plan.vae, plan.vae_hash, tuple(warnings))


def apply_assets(model: LoadedModel, plan: AssetPlan, options: AssetOptions, note: Callable[[str], None]) -> None:
    """Put the plan on a loaded model: VAE (+ NaN guard), embeddings, LoRAs. No base-model reload."""
    from sdcli.models.embeddings import apply_embeddings
    from sdcli.models.lora import apply_loras
    from sdcli.models.vae import guard_decode, set_vae

    set_vae(model, plan.vae, allow_pickle=options.allow_pickle)
    guard_decode(model.pipe.vae, note, force_fp32=options.no_half_vae, guard=model.addons.guard)
    apply_embeddings(model, list(plan.embeddings), allow_pickle=options.allow_pickle)
    apply_loras(model, list(plan.loras), allow_pickle=options.allow_pickle)


def encoder_text(model: LoadedModel, text: str) -> str:
    """The text the text encoder sees: network tags removed, multi-vector embeddings spelled out."""
    from sdcli.models.embeddings import expand_prompt

    return expand_prompt(model, extract_networks(text)[0])
