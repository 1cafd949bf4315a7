"""The models folder, WebUI-style: where checkpoints, LoRAs, embeddings and VAEs live,
how a NAME is found there, and the file hashes the WebUI shows. No torch here.

Layouts: --models-dir DIR is laid out like the WebUI's (and Forge's) `models/` folder
(DIR/Stable-diffusion, DIR/Lora, DIR/VAE, DIR/text_encoder and DIR/embeddings); --webui-dir W
is a WebUI/Forge install (W/models/..., embeddings in W/embeddings); --comfy-dir C is a ComfyUI
install (C/models/checkpoints, diffusion_models or unet, text_encoders or clip, vae, loras, ...). Names are matched as
the WebUI's model list does: the path relative to the kind's folder, with or
without its extension, the file name or stem, or the short hash.
"""

from __future__ import annotations

import difflib
import os
import re
from dataclasses import dataclass
from pathlib import Path

from sdcli.errors import ModelError, UsageError
from sdcli.models.hashes import file_sha256, model_hash

# Kind -> (sub-folder of a --models-dir, of a --webui-dir (None: none), file suffixes listed).
KINDS: dict[str, tuple[str | None, str | None, tuple[str, ...]]] = {
    "checkpoint": ("Stable-diffusion", "models/Stable-diffusion", (".safetensors", ".ckpt", ".gguf")),
    # ComfyUI keeps bare diffusion models (a Flux transformer) apart; Forge puts them in Stable-diffusion/.
    "diffusion_model": (None, None, (".safetensors", ".gguf")),
    "text_encoder": ("text_encoder", "models/text_encoder", (".safetensors", ".gguf")),  # GGUF: models.gguf_text
    "lora": ("Lora", "models/Lora", (".safetensors", ".pt", ".ckpt")),
    "embedding": ("embeddings", "embeddings", (".safetensors", ".pt", ".bin")),
    "vae": ("VAE", "models/VAE", (".safetensors", ".pt", ".ckpt")),
    "controlnet": ("ControlNet", "models/ControlNet", (".safetensors", ".pth", ".pt", ".ckpt", ".bin")),
    "upscaler": ("ESRGAN", "models/ESRGAN", (".safetensors", ".pth", ".pt")),  # ESRGAN-family (models.upscalers)
    "gfpgan": ("GFPGAN", "models/GFPGAN", (".safetensors", ".pth")),  # face restorers (models.faces)
    "codeformer": ("Codeformer", "models/Codeformer", (".safetensors", ".pth")),
}
# Kind -> sub-folders of a --comfy-dir, the first that exists is used.
COMFY: dict[str, tuple[str, ...]] = {
    "checkpoint": ("models/checkpoints",), "diffusion_model": ("models/diffusion_models", "models/unet"),
    "text_encoder": ("models/text_encoders", "models/clip"), "lora": ("models/loras",),
    "embedding": ("models/embeddings",), "vae": ("models/vae",), "controlnet": ("models/controlnet",),
    "upscaler": ("models/upscale_models",), "gfpgan": ("models/facerestore_models",),
    "codeformer": ("models/facerestore_models",),
}
FLAGS = {"checkpoint": "--model", "diffusion_model": "--model", "text_encoder": "--text-encoder",
         "lora": "--lora", "embedding": "--embedding", "vae": "--vae",
         "controlnet": "--controlnet", "upscaler": "--upscaler", "gfpgan": "--restore-faces",
         "codeformer": "--restore-faces"}
_TITLE = re.compile(r"^(.+?)\s*\[[0-9a-fA-F]{8,64}\]$")
_SHORT_HASH = re.compile(r"^[0-9a-fA-F]{10}$")
SHORT_HASH = {"checkpoint": 10, "diffusion_model": 10, "text_encoder": 10, "vae": 10, "upscaler": 10,
              "lora": 12, "embedding": 12, "controlnet": 10, "gfpgan": 10,
              "codeformer": 10}  # hex digits the WebUI shows


@dataclass(frozen=True)
class Entry:
    """One file (or diffusers folder) found in a models folder."""

    kind: str
    name: str  # relative path without extension, '/'-separated (the WebUI's model_name)
    path: Path

    @property
    def stem(self) -> str:
        return self.name.rsplit("/", 1)[-1]

    def short_hash(self) -> str:
        """The WebUI's short hash of the file: sha256, first 10 (checkpoint, VAE) or 12 hex.
        A diffusers checkpoint folder gets sdcli's folder hash, the one its images record."""
        if self.kind == "checkpoint" and self.path.is_dir():
            return model_hash(self.path)
        if self.kind == "controlnet":  # the extension's title hash: the WebUI's legacy model hash
            from sdcli.models.hashes import legacy_hash

            return legacy_hash(weights_file(self.path))
        return file_sha256(weights_file(self.path))[:SHORT_HASH[self.kind]]


@dataclass(frozen=True)
class Library:
    """The folders of each kind (None: that kind has no folder configured)."""

    folders: dict[str, Path]

    def entries(self, kind: str) -> list[Entry]:
        """Everything of `kind` in its folder, sorted by name."""
        folder = self.folders.get(kind)
        if folder is None or not folder.is_dir():
            return []
        suffixes = KINDS[kind][2]
        found: list[Entry] = []
        for root, dirs, files in os.walk(folder, followlinks=True):
            base = Path(root)
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            if kind in ("checkpoint", "vae", "controlnet") and (base / ("model_index.json" if kind == "checkpoint"
                                                          else "config.json")).is_file() and base != folder:
                found.append(Entry(kind, base.relative_to(folder).as_posix(), base))
                dirs[:] = []  # a diffusers folder is one model
                continue
            for file in sorted(files):
                path = base / file
                if path.suffix.lower() in suffixes and not file.startswith("."):
                    found.append(Entry(kind, path.relative_to(folder).with_suffix("").as_posix(), path))
        return sorted(found, key=lambda e: e.name.lower())

    def find(self, kind: str, name: str) -> Entry:
        """The one entry `name` means; a clear error for none or several (with close matches)."""
        flag = FLAGS[kind]
        if self.folders.get(kind) is None:
            raise UsageError(f"{flag}: {name!r} is not a file, and no models folder is set "
                             "(--models-dir, SDCLI_MODELS_DIR, --webui-dir or --comfy-dir) to look it up in")
        entries = self.entries(kind)
        if title := _TITLE.match(name):  # the WebUI's title, "name.safetensors [hash]" (API, prompt files)
            name = title.group(1)
        matches = [e for e in entries if name in _aliases(e)]
        if not matches and _SHORT_HASH.match(name):  # the WebUI accepts a short hash too
            matches = [e for e in entries if e.short_hash() == name.lower()]
        if not matches:  # the WebUI falls back to a substring of the title
            matches = [e for e in entries if name.lower() in e.name.lower()] if len(name) >= 3 else []
        if len(matches) == 1:
            return matches[0]
        where = self.folders[kind]
        if matches:
            names = ", ".join(e.path.relative_to(where).as_posix() for e in matches[:8])
            raise ModelError(f"{flag}: {name!r} matches several {kind}s in {where}: {names}; "
                             "give the relative path with its extension")
        close = difflib.get_close_matches(name, sorted({a for e in entries for a in (e.name, e.stem)}), n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else f" ({len(entries)} {kind}s there)"
        raise ModelError(f"{flag}: no {kind} named {name!r} in {where}{hint}")


def _aliases(entry: Entry) -> set[str]:
    """Names the WebUI's model list accepts for one entry."""
    rel = entry.name if entry.path.is_dir() else entry.name + entry.path.suffix
    return {entry.name, rel, entry.stem, entry.path.name}


def library_from(models_dir: Path | str | None, webui_dir: Path | str | None,
                 comfy_dir: Path | str | None = None) -> Library:
    """The folders of --models-dir / --webui-dir / --comfy-dir (for a kind several give: the models dir,
    then the WebUI's, then ComfyUI's)."""
    folders: dict[str, Path] = {}
    for flag, root in (("--comfy-dir", comfy_dir), ("--webui-dir", webui_dir), ("--models-dir", models_dir)):
        if root is None or str(root) == "":
            continue
        base = Path(root).expanduser()
        if not base.is_dir():
            raise UsageError(f"{flag}: no such folder: {base}")
        if flag == "--comfy-dir":
            for kind, subs in COMFY.items():
                folders[kind] = next((base / sub for sub in subs if (base / sub).is_dir()), base / subs[0])
            continue
        column = 0 if flag == "--models-dir" else 1
        for kind, layout in KINDS.items():
            if layout[column] is not None:
                folders[kind] = base / str(layout[column])
    return Library(folders)


def is_path_like(name: str) -> bool:
    """Whether a model name is spelled as a filesystem path (absolute, ~, ./, a .. part, a drive) rather than
    a name in a models folder; where only names are taken (the server), such a value is refused."""
    text = name.strip().replace("\\", "/")
    return (text == "." or text.startswith(("/", "~", "./")) or ".." in text.split("/")
            or re.match(r"^[A-Za-z]:", text) is not None)


def weights_file(path: Path) -> Path:
    """The file whose hash names `path`: itself, or a diffusers folder's main weights file."""
    if path.is_file():
        return path
    for pattern in ("diffusion_pytorch_model.safetensors", "unet/diffusion_pytorch_model.safetensors",
                    "*.safetensors", "*/*.safetensors"):
        if found := sorted(path.glob(pattern)):
            return found[0]
    raise ModelError(f"{path}: no .safetensors weights inside")
