"""What the server serves and what a request adds, by name: a served model (its files, WebUI title and hash) and a
request's add-ons (LoRAs, embeddings, VAE)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass
class ServedModel:
    """A model the server may load: its resolved files, WebUI title and hash; `label`: a models-folder
    checkpoint's WebUI name (its path there with the extension), which its title shows."""

    ref: Any  # models.resolve.ModelRef
    hash: str
    label: str | None = None

    @property
    def title(self) -> str:
        return f"{self.label or self.ref.name} [{self.hash}]"

    def matches(self, spec: str) -> bool:
        """Whether a client's model name (title, name, path or source) means this model."""
        spec = spec.strip()
        names = {self.title, self.ref.name, str(self.ref.path), self.ref.source or "", self.hash, self.label or ""}
        if spec in names or spec.removesuffix(".safetensors") in names:
            return True
        try:
            return Path(spec).expanduser().resolve() == Path(self.ref.path).resolve()
        except (OSError, RuntimeError):  # RuntimeError: "~user" of no such user
            return False


@dataclass(frozen=True)
class AddOns:
    """A request's add-ons, by name: LoRAs (NAME[:WEIGHT]), embeddings and a VAE (None: the model's own)."""

    loras: tuple[str, ...] = ()
    embeddings: tuple[str, ...] = ()
    vae: str | None = None
