"""Prompt encodings kept across jobs on a loaded model, as the WebUI keeps its last conds (cached_c, cached_uc).

A batch of a thousand lines with one negative prompt encodes it once, not a thousand times: the text
encoder's forward pass is the same every time (a tiny model's CLIP: 4% of an image; Flux.2 dev's
Mistral 24B: far more). An encoding is kept under everything it depends on: the family encoder's
settings (CLIP skip, emphasis, generation size, distilled CFG), the text, which of the encoder's
entry points made it (the prompt's or the negative's), and the text encoders' add-ons (the LoRAs'
text-encoder weights, the embeddings). While models.lora changes the adapters nothing is kept.
The newest `KEEP` encodings stay, least recently used dropped first; each is the encoder's own
output, untouched (Conditioning methods return new tensors), so an image's pixels are the same.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sdcli.families.base import PromptEncoder
from sdcli.models.loaded import LoadedModel

KEEP = 8  # encodings per loaded model (Flux.2 dev's: 16 MB each)


class KeptEncoder:
    """A family's prompt encoder whose encodings are kept on the loaded model (see the module doc); every
    other attribute is the family encoder's own."""

    def __init__(self, inner: PromptEncoder, model: LoadedModel, settings: tuple[Any, ...]):
        self.inner, self.model, self.settings = inner, model, settings
        self.capabilities = inner.capabilities

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def _kept(self, key: tuple[Any, ...], encode: Callable[[], Any]) -> Any:
        addons = self.model.addons
        if addons.text_loras is None:
            return encode()
        key = (self.settings, addons.text_loras, tuple(sorted(addons.embeddings.items())), *key)
        store = self.model.encodings
        if key in store:
            store.move_to_end(key)
            return store[key]
        value = store[key] = encode()
        while len(store) > KEEP:
            store.popitem(last=False)
        return value

    def encode(self, text: str) -> Any:
        return self._kept(("prompt", text), lambda: self.inner.encode(text))

    def negative_encoder(self, all_empty: bool) -> Callable[[str], Any]:
        negative = self.inner.negative_encoder(all_empty)
        return lambda text: self._kept(("negative", all_empty, text), lambda: negative(text))

    def pipeline_embeds(self, prompt: str, negative: str) -> dict[str, Any]:
        return self.inner.pipeline_embeds(prompt, negative)
