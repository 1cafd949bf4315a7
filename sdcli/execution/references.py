"""An edit's reference images (`sdcli edit`): opened, fitted to the size the model's family wants them
(Family.reference_size), encoded by the VAE into the family's latents and given to the network with every prompt's
conditioning, as ComfyUI's ReferenceLatent node attaches them to the conditioning (the family's adapter places
them after the image's own tokens). The negative prompt's conditioning carries them too, as diffusers' editing
pipelines run their unconditional pass with the reference image.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sdcli.execution.latents import encode_image, encode_pixels
from sdcli.models.loaded import LoadedModel

if TYPE_CHECKING:
    from sdcli.conditioning.cond import Conditioning, EncoderCapabilities
    from sdcli.families.base import PromptEncoder
    from sdcli.request.generation import GenerationRequest

REFERENCE_KEY = "Reference hashes"  # the infotext key: "name: hash, ..." as the WebUI's `Lora hashes`
HASH_CHARS = 10  # of the file's sha256, as the WebUI's short hashes


def short_hash(path: Path) -> str:
    """The first HASH_CHARS hex digits of the file's sha256."""
    return hashlib.sha256(path.read_bytes()).hexdigest()[:HASH_CHARS]


@dataclass(frozen=True)
class References:
    """An edit's reference images at the sizes the model takes them, and their latents [1, C, h, w]."""

    images: tuple[Any, ...]
    latents: tuple[Any, ...]
    recorded: str  # the infotext value of REFERENCE_KEY
    originals: tuple[Any, ...]  # the images as given
    size: tuple[int, int]  # the edit's default size (Family.edit_size: the first fitted image's)
    seen: tuple[Any, ...] = ()  # --comfy-edit: what the text encoder sees (EditInputs.seen)
    comfy: bool = False  # sized as ComfyUI's nodes size them: placed as ComfyUI's model places them too
    schedule_tokens: int | None = None  # at the default size, an image-sized schedule's tokens (EditInputs')

    def params(self) -> dict[str, str]:
        return {REFERENCE_KEY: self.recorded}

    def encoder(self, model: LoadedModel, inner: PromptEncoder) -> PromptEncoder:
        """The model's prompt encoder for this edit (Family.edit_prompt_encoder: `inner`, or one that sees the
        images too) with the reference latents in every conditioning it gives."""
        return ReferenceEncoder(model.family.edit_prompt_encoder(model.pipe, inner, self.images, self.originals,
                                                                 self.seen), self.latents, self.comfy)


def prepare_references(model: LoadedModel, request: GenerationRequest) -> References:
    """Open the request's reference images, fit them (Family.fit_reference to Family.reference_size at the
    model's native side) and encode them. Raises UsageError naming --image and the file."""
    from sdcli.io.images import open_image

    paths = [Path(p) for p in request.references]
    images = [open_image(path, "--image") for path in paths]
    recorded = ", ".join(f"{path.name.replace(',', '_').replace(':', '_')}: {short_hash(path)}" for path in paths)
    if request.comfy_edit or request.reference_scale:  # as ComfyUI's nodes size them: float pixels throughout
        comfy = model.family.comfy_edit_inputs([im.convert("RGB") for im in images], model.native_size,
                                               request.reference_scale)
        latents = tuple(encode_pixels(model, 2.0 * pixels - 1.0).float() for pixels in comfy.references)
        return References(comfy.references, latents, recorded, tuple(images), comfy.size, comfy.seen, True,
                          comfy.schedule_tokens)
    fitted = tuple(model.family.fit_reference(im, model.family.reference_size(im.size, model.native_size))
                   for im in images)
    latents = tuple(encode_image(model, im, 1) for im in fitted)
    return References(fitted, latents, recorded, tuple(images), model.family.edit_size([im.size for im in fitted]))


class ReferenceEncoder:
    """A prompt encoder whose conditionings carry an edit's reference latents (extra["references"], by index) and,
    for --comfy-edit, the mark that they are placed as ComfyUI places them (conditioning.cond.COMFY_PLACEMENT)."""

    def __init__(self, inner: PromptEncoder, latents: tuple[Any, ...], comfy: bool = False):
        self.inner, self.latents, self.comfy = inner, latents, comfy
        self.capabilities: EncoderCapabilities = inner.capabilities

    def _with(self, cond: Conditioning) -> Conditioning:
        import torch

        from sdcli.conditioning.cond import COMFY_PLACEMENT, Conditioning

        device = cond.crossattn.device
        extra = {**cond.extra, "references": {str(i): latent.to(device) for i, latent in enumerate(self.latents)}}
        if self.comfy:
            extra[COMFY_PLACEMENT] = torch.ones(cond.crossattn.shape[0], device=device)
        return Conditioning(cond.crossattn, extra)

    def encode(self, text: str) -> Conditioning:
        return self._with(self.inner.encode(text))

    def negative_encoder(self, all_empty: bool) -> Callable[[str], Conditioning]:
        negative = self.inner.negative_encoder(all_empty)
        return lambda text: self._with(negative(text))

    def pipeline_embeds(self, prompt: str, negative: str) -> dict[str, Any]:
        return self.inner.pipeline_embeds(prompt, negative)
