"""The AUTOMATIC1111 WebUI API's response shapes, transcribed by hand as data (imports nothing from sdcli).

Sources: modules/api/models.py (SamplerItem, SchedulerItem, UpscalerItem, LatentUpscalerModeItem,
SDModelItem, SDVaeItem, HypernetworkItem, FaceRestorerItem, RealesrganItem, PromptStyleItem,
EmbeddingItem/EmbeddingsResponse, MemoryResponse, ScriptsList, ScriptInfo/ScriptArg, ExtensionItem,
ExtrasSingleImageResponse, ExtrasBatchImagesResponse, PNGInfoResponse); the built-in Lora extension's
create_lora_json (GET /sdapi/v1/loras); Forge's GET /sdapi/v1/sd-modules ({model_name, filename}).

A shape maps each field to the JSON types its pydantic annotation allows ("null" for Optional).
"""

from __future__ import annotations

from typing import Any

STR, NSTR = ("str",), ("str", "null")
NUM = ("int", "float")

ITEMS: dict[str, dict[str, tuple[str, ...]]] = {
    "samplers": {"name": STR, "aliases": ("list",), "options": ("dict",)},
    "schedulers": {"name": STR, "label": STR, "aliases": ("list", "null"), "default_rho": (*NUM, "null"),
                   "need_inner_model": ("bool", "null")},
    "upscalers": {"name": STR, "model_name": NSTR, "model_path": NSTR, "model_url": NSTR, "scale": (*NUM, "null")},
    "latent-upscale-modes": {"name": STR},
    "sd-models": {"title": STR, "model_name": STR, "hash": NSTR, "sha256": NSTR, "filename": STR, "config": NSTR},
    "sd-vae": {"model_name": STR, "filename": STR},
    "sd-modules": {"model_name": STR, "filename": STR},
    "hypernetworks": {"name": STR, "path": NSTR},
    "face-restorers": {"name": STR, "cmd_dir": NSTR},
    "realesrgan-models": {"name": STR, "path": NSTR, "scale": ("int", "null")},
    "prompt-styles": {"name": STR, "prompt": NSTR, "negative_prompt": NSTR},
    "loras": {"name": STR, "alias": STR, "path": STR, "metadata": ("dict",)},
    "script-info": {"name": NSTR, "is_alwayson": ("bool", "null"), "is_img2img": ("bool", "null"), "args": ("list",)},
    "extensions": {"name": STR, "remote": STR, "branch": STR, "commit_hash": STR, "version": STR,
                   "commit_date": STR, "enabled": ("bool",)},
}
# Endpoints answering one object rather than a list.
OBJECTS: dict[str, dict[str, tuple[str, ...]]] = {
    "embeddings": {"loaded": ("dict",), "skipped": ("dict",)},
    "memory": {"ram": ("dict",), "cuda": ("dict",)},
    "scripts": {"txt2img": ("list", "null"), "img2img": ("list", "null")},
}
EMBEDDING_ITEM = {"step": ("int", "null"), "sd_checkpoint": NSTR, "sd_checkpoint_name": NSTR, "shape": ("int",),
                  "vectors": ("int",)}
SCRIPT_ARG = {"label": NSTR, "value": ("any",), "minimum": ("any",), "maximum": ("any",), "step": ("any",),
              "choices": ("list", "null")}
EXTRAS_SINGLE = {"html_info": STR, "image": NSTR}
EXTRAS_BATCH = {"html_info": STR, "images": ("list",)}
PNG_INFO = {"info": STR, "items": ("dict",), "parameters": ("dict",)}
# The WebUI's ExtrasBaseRequest fields (what extra-single-image / extra-batch-images read).
EXTRAS_REQUEST_FIELDS = ("resize_mode", "show_extras_results", "gfpgan_visibility", "codeformer_visibility",
                         "codeformer_weight", "upscaling_resize", "upscaling_resize_w", "upscaling_resize_h",
                         "upscaling_crop", "upscaler_1", "upscaler_2", "extras_upscaler_2_visibility",
                         "upscale_first")


def json_type(value: Any) -> str:
    if value is None:
        return "null"
    for name, kind in (("bool", bool), ("int", int), ("float", float), ("str", str), ("list", list),
                       ("dict", dict)):
        if isinstance(value, kind):
            return name
    return type(value).__name__


def mismatches(item: Any, shape: dict[str, tuple[str, ...]]) -> list[str]:
    """What differs between one JSON object and a shape: missing/extra fields, wrong types."""
    if not isinstance(item, dict):
        return [f"not an object: {item!r}"]
    found = [f"missing {k}" for k in shape if k not in item] + [f"extra {k}" for k in item if k not in shape]
    for key, kinds in shape.items():
        if key in item and "any" not in kinds and json_type(item[key]) not in kinds:
            found.append(f"{key}: {json_type(item[key])} is not {'/'.join(kinds)}")
    return found
