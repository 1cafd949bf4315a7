"""Forge's "VAE / Text Encoder" modules in the infotext: `Module 1..N`, written and read back.

Forge (modules/processing.py create_infotext) writes one `Module N` key per file chosen in its
"VAE / Text Encoder" box: the file's base name without folder or extension (`Module 1: ae,
Module 2: clip_l, Module 3: t5xxl_fp16`); reading (modules/infotext_utils.py) matches each name
against the files of its VAE and text_encoder folders. Pure: no files are looked at here.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

MODULE_KEY = "Module "


def module_params(text_encoders: Sequence[str], vae: str | None) -> dict[str, str]:
    """`Module 1..N` of a request: the VAE (a file name or path; first) and the text-encoder files by base name.
    Written only when the request names text encoders: with a VAE alone the keys `VAE`/`VAE hash` stay, as sdcli
    has always written them (and as A1111 reads them)."""
    if not text_encoders:
        return {}
    files = ([vae] if vae else []) + list(text_encoders)
    return {f"{MODULE_KEY}{i}": base_name(name) for i, name in enumerate(files, start=1)}


def base_name(name: str) -> str:
    """A file's name without its folder or last extension (Forge: os.path.splitext(os.path.basename(m))[0])."""
    base = name.replace("\\", "/").rsplit("/", 1)[-1]
    stem, dot, _ = base.rpartition(".")
    return stem if dot and stem else base


def modules_from_infotext(values: Mapping[str, str],
                          is_vae: Callable[[str], bool] | None = None) -> tuple[str | None, tuple[str, ...]]:
    """(vae, text_encoders): the base names an infotext's `Module N` keys give, in N order.

    A name `is_vae` accepts is the VAE (the first one; a `VAE` key, Forge's older form, wins over them);
    every other name is a text encoder. Finding the files by base name in the models folder is the caller's
    (`is_vae` may ask it; default looks_like_vae, by the name alone).
    """
    is_vae = is_vae or looks_like_vae
    numbered = sorted((int(key[len(MODULE_KEY):]), name) for key, name in values.items()
                      if key.startswith(MODULE_KEY) and key[len(MODULE_KEY):].isdigit() and name)
    vae = values.get("VAE") or None
    encoders = []
    for _, name in numbered:
        if is_vae(name):
            vae = vae or name
        else:
            encoders.append(name)
    return vae, tuple(encoders)


def module_keys(values: Mapping[str, str]) -> list[str]:
    """The `Module N` keys of an infotext."""
    return [key for key in values if key.startswith(MODULE_KEY) and key[len(MODULE_KEY):].isdigit()]


def looks_like_vae(name: str) -> bool:
    """Whether a module's base name is a VAE's by the name alone: Flux's `ae`, anything with `vae` in it."""
    lowered = name.lower()
    return lowered == "ae" or "vae" in lowered
