"""LoRAs on a loaded pipeline, through diffusers/peft (load_lora_weights, set_adapters, unload).

Files are kohya/WebUI (`lora_unet_...`, `lora_te_...`) or diffusers/peft
format; diffusers converts the former. A pipeline keeps the adapters it has,
keyed by file hash, so a batch that changes LoRAs between lines loads only the
new files and never reloads the base model. A LoRA whose layers are missing
from the model or do not fit their shapes (made for another family) is refused.
Components a family loads LoRAs into beyond its diffusers pipeline's own
(Flux's T5-XXL) get the same adapter weights, switching and unloading here.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sdcli.errors import ModelError

if TYPE_CHECKING:
    from sdcli.models.loaded import LoadedModel

# Suffixes of the "down" (A) matrix key of one LoRA layer, kohya and peft spellings.
# kohya, peft, diffusers' older ".lora.down"/".lora_linear_layer.down" and XLabs' "qkv_lora1.down" spellings.
_DOWN_KEYS = (".lora_down.weight", ".lora_A.weight", ".down.weight")
_UP_KEYS = {".lora_down.weight": ".lora_up.weight", ".lora_A.weight": ".lora_B.weight", ".down.weight": ".up.weight"}


@dataclass(frozen=True)
class LoraSpec:
    """One LoRA to apply: its file, weight, and the name the infotext records."""

    path: Path
    weight: float
    name: str
    hash: str  # the WebUI's short hash (sha256, 12 hex)
    from_tag: bool = False  # named by a <lora:...> tag in the prompt (replay finds it there again)
    unet_weight: float | None = None  # <lora:name:te:unet>; None = `weight` for the UNet too


def parse_lora_flag(value: str) -> tuple[str, float]:
    """`PATH[:WEIGHT]` -> (path, weight); a path may itself hold ':' (the weight is the last part)."""
    head, sep, tail = value.rpartition(":")
    if sep and head and "/" not in tail and "\\" not in tail:
        try:
            return head, float(tail)
        except ValueError:
            pass
    return value, 1.0


def apply_loras(model: LoadedModel, loras: list[LoraSpec], *, allow_pickle: bool = False) -> None:
    """Make `loras` (and only them) active on `model` at their weights.

    Adapters already on the pipeline are reused; ones no longer wanted are
    deleted; none wanted = all LoRA layers removed (the base model exactly).
    """
    from sdcli.models.safety import load_state_dict

    pipe, addons = model.pipe, model.addons
    if loras and not model.family.capabilities.lora:
        raise ModelError(f"--lora: {model.family.label} models take no LoRA")
    addons.text_loras = None  # unsettled until the adapters are set (no prompt encoding kept meanwhile)
    loaded = addons.loras  # adapter name -> file path
    weights: dict[str, tuple[float, float]] = {}  # adapter -> (text encoder, UNet) weight
    for spec in loras:  # the same file twice (a tag and a flag) adds up, as two loads would
        adapter = f"sdcli_{spec.hash}"
        te, unet = weights.get(adapter, (0.0, 0.0))
        unet_weight = spec.weight if spec.unet_weight is None else spec.unet_weight
        weights[adapter] = (te + spec.weight, unet + unet_weight)
    if not weights:
        if loaded:
            _unload(model)
            addons.loras = {}
        addons.text_loras = ()
        return
    stale = [name for name in loaded if name not in weights]
    if stale and model.network.in_channels != model.detected.in_channels:
        _unload(model)  # a LoRA widened the network's input (a BFL control LoRA): only a full unload narrows it
        loaded = {}
    elif stale:
        _delete(model, stale)
    addons.loras = loaded = {k: v for k, v in loaded.items() if k not in stale}
    network = model.family.network_component
    for spec in loras:
        adapter = f"sdcli_{spec.hash}"
        if adapter not in loaded:
            state = load_state_dict(spec.path, flag="--lora", allow_pickle=allow_pickle)
            _load_checked(model, spec, state, adapter)
            loaded[adapter] = str(spec.path)
    # diffusers refuses an adapter none of its components holds (a T5-only LoRA on Flux)
    held = {name for names in pipe.get_list_adapters().values() for name in names}
    if ours := [name for name in weights if name in held]:
        pipe.set_adapters(ours, [_component_weights(pipe, network, *weights[name]) for name in ours])
    if extra := _extra_encoders(model):
        from diffusers.loaders.lora_base import set_adapters_for_text_encoder

        for encoder in extra:
            set_adapters_for_text_encoder(list(weights), encoder, [te for te, _ in weights.values()])
    addons.text_loras = tuple(sorted((name, te) for name, (te, _) in weights.items()))


def _extra_encoders(model: LoadedModel) -> list[Any]:
    """The text encoders the family puts LoRAs into that diffusers' pipeline does not manage (Flux's T5)."""
    pipe = model.pipe
    names = [n for n in model.family.lora_components() if n not in pipe._lora_loadable_modules]
    return [part for part in (getattr(pipe, n, None) for n in names) if part is not None]


def _delete(model: LoadedModel, adapters: list[str]) -> None:
    """Delete these adapters from every component."""
    from diffusers.utils.peft_utils import delete_adapter_layers

    model.pipe.delete_adapters(adapters)
    for encoder in _extra_encoders(model):
        for adapter in adapters:
            delete_adapter_layers(encoder, adapter)


def _unload(model: LoadedModel) -> None:
    """Remove every LoRA layer from every component: the base model exactly."""
    from diffusers.utils import recurse_remove_peft_layers
    from diffusers.utils.peft_utils import delete_adapter_layers

    model.family.unload_loras(model.pipe)
    for encoder in _extra_encoders(model):
        for adapter in list(getattr(encoder, "peft_config", None) or {}):
            delete_adapter_layers(encoder, adapter)  # also drops transformers' record of it
        recurse_remove_peft_layers(encoder)


def _component_weights(pipe: Any, network: str, te: float, unet: float) -> float | dict[str, float]:
    """One weight for all, or per component when the text encoders and the denoising `network` differ."""
    if te == unet:
        return te
    return {name: unet if name == network else te for name in pipe._lora_loadable_modules}


def _load_checked(model: LoadedModel, spec: LoraSpec, state: dict[str, Any], adapter: str) -> None:
    """load_lora_weights, then check every layer of the file found a home in the model."""
    pipe = model.pipe
    layers = sum(1 for key in state if key.endswith(_DOWN_KEYS))
    if not layers:
        raise ModelError(f"--lora: {spec.path} holds no LoRA layers (is it a LoRA file?)")
    if half := _half_layer(state):
        raise ModelError(f"--lora: {spec.path} is broken: its layer {half} lacks its down or up matrix")
    try:
        with _quiet():
            model.family.load_lora(pipe, dict(state), adapter)
    except Exception as exc:  # noqa: BLE001 - converters and peft raise anything on a misfit; one line says so
        _drop(model, adapter)
        reason = "its tensor shapes differ" if "size mismatch" in str(exc) else _first_line(exc)
        raise _misfit(model, spec, state, f"{reason} (a LoRA for another model family?)") from None
    found = sum(1 for module in _lora_modules(model) if adapter in getattr(module, "lora_A", {}))
    if found < layers:
        _drop(model, adapter)
        raise _misfit(model, spec, state, f"{layers - found} of its {layers} layers have no matching layer here; "
                      "is it a LoRA for another model family?")


def _half_layer(state: dict[str, Any]) -> str | None:
    """A layer with a down matrix and no up matrix, or the other way round (some loaders would zero it silently)."""
    for key in state:
        for down, up in _UP_KEYS.items():
            for have, want in ((down, up), (up, down)):
                if key.endswith(have) and key[:-len(have)] + want not in state:
                    return key[:-len(have)]
    return None


def _misfit(model: LoadedModel, spec: LoraSpec, state: dict[str, Any], reason: str) -> ModelError:
    """The refusal of a LoRA that does not fit: naming both families where its layer names tell its own."""
    from sdcli.models.lora_target import lora_target

    family = model.family
    target = lora_target(state)
    if target is not None and family.name not in target.families:
        reason = f"a LoRA for {target.label} (by its layer names), not for {family.label}"
    return ModelError(f"--lora: {spec.path} does not fit this model: {reason}")


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """diffusers logs, and peft warns, what sdcli reports itself in one line."""
    import warnings

    from diffusers.utils import logging

    level = logging.get_verbosity()
    logging.set_verbosity(logging.CRITICAL)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logging.set_verbosity(level)


def _lora_modules(model: LoadedModel) -> list[Any]:
    """Every module of the denoising network and text encoders that carries peft LoRA layers."""
    parts = [getattr(model.pipe, name, None) for name in model.family.lora_components()]
    return [m for part in parts if part is not None for m in part.modules() if hasattr(m, "lora_A")]


def _drop(model: LoadedModel, adapter: str) -> None:
    """Remove a half-loaded adapter so the pipeline is as before."""
    with contextlib.suppress(ValueError, KeyError, AttributeError):
        _delete(model, [adapter])
    if not model.addons.loras:
        _unload(model)


def lora_hashes(loras: list[LoraSpec]) -> str | None:
    """The WebUI's `Lora hashes` value: "name: hash, name2: hash2" (None when no LoRA)."""
    seen: dict[str, str] = {}
    for spec in loras:
        seen.setdefault(spec.name.replace(":", "").replace(",", ""), spec.hash)
    return ", ".join(f"{name}: {digest}" for name, digest in seen.items()) or None


def parse_hashes(value: str | None) -> dict[str, str]:
    """Inverse of lora_hashes (also for `TI hashes`)."""
    pairs = (part.rpartition(":") for part in (value or "").split(","))
    return {name.strip(): digest.strip() for name, sep, digest in pairs if sep and name.strip()}


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
