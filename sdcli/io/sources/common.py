"""What every tool's reader shares: the Found shape, BrokenMetadata, and small value helpers."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from sdcli.errors import UsageError


class BrokenMetadata(UsageError):
    """An image's metadata is there but unreadable (truncated JSON, a graph with a missing node, junk)."""


@dataclasses.dataclass(frozen=True)
class Found:
    """One tool's metadata: prompt, negative prompt and the WebUI's keys where they map; its own fields as
    written (`source`); `notes`: what a replay does differently; `unmapped`: what stops a replay;
    `input_image`: the file name an img2img was made from (the metadata does not hold the image); `references`: the
    file names of an edit's reference images (ComfyUI's ReferenceLatent), in the order the model took them."""

    generator: str
    prompt: str
    negative_prompt: str
    parameters: dict[str, str]
    source: dict[str, Any]
    notes: tuple[str, ...] = ()
    unmapped: tuple[str, ...] = ()
    input_image: str | None = None  # the input image's file name as the tool loaded it (img2img), not held
    references: tuple[str, ...] = ()  # an edit's reference images' file names, not held


def load_json(text: Any, where: str) -> Any:
    """JSON text from a chunk; BrokenMetadata naming the chunk when it is not JSON."""
    if not isinstance(text, str):
        return text
    try:
        return json.loads(text)
    except (json.JSONDecodeError, RecursionError) as exc:
        raise BrokenMetadata(f"its {where} is not valid JSON ({exc})") from None


def text(value: Any) -> str:
    """A parameter value as the WebUI writes it (floats without a trailing .0)."""
    if isinstance(value, float):
        return f"{value:g}" if value == value else str(value)
    return str(value)


def lora_tags(loras: list[tuple[str, float]]) -> str:
    """LoRAs as the WebUI's prompt tags `<lora:NAME:WEIGHT>` (NAME: the file's stem)."""
    tags = []
    for name, weight in loras:
        stem = name.replace("\\", "/").rsplit("/", 1)[-1]
        stem = stem.rsplit(".", 1)[0] if stem.lower().endswith((".safetensors", ".ckpt", ".pt", ".bin")) else stem
        tags.append(f"<lora:{stem}:{text(float(weight))}>")
    return " ".join(tags)


def with_loras(prompt: str, loras: list[tuple[str, float]]) -> str:
    """The prompt with the LoRA tags appended (as Civitai and the WebUI show a LoRA run)."""
    tags = lora_tags(loras)
    return f"{prompt}, {tags}" if prompt and tags else prompt or tags


def size(width: Any, height: Any) -> str | None:
    """`Size: WxH`, or None when either is missing."""
    return f"{int(width)}x{int(height)}" if width is not None and height is not None else None


def clean(params: dict[str, Any]) -> dict[str, str]:
    """Parameters without missing values, each as text."""
    return {k: text(v) for k, v in params.items() if v is not None and v != ""}


def via_sd_parsers(parser_name: str, chunks: dict[str, Any], where: str) -> Any:
    """sd-parsers' PromptInfo for the chunks (parser_name: one of sd_parsers.parsers); BrokenMetadata naming
    `where` when the chunks are its tool's but unreadable."""
    import logging

    from sd_parsers import parsers
    from sd_parsers.exceptions import ParserError

    logging.getLogger("sd_parsers").setLevel(logging.CRITICAL)  # its debug logging is ours to give, not its
    parser = getattr(parsers, parser_name)()
    try:
        return parser.parse(dict(chunks))
    except (ParserError, ValueError, TypeError, AttributeError, KeyError) as exc:
        cause = exc.__cause__ or exc
        raise BrokenMetadata(f"its {where} is not readable ({exc}: {cause})" if cause is not exc else
                             f"its {where} is not readable ({exc})") from None


def first_sampler(info: Any) -> tuple[str, dict[str, Any], str | None]:
    """sd-parsers' first sampler: its name, its parameters, its model's name."""
    sampler = info.samplers[0] if info.samplers else None
    if sampler is None:
        return "", {}, None
    return sampler.name, dict(sampler.parameters), sampler.model.name if sampler.model else None
