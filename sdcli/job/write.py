"""The write step of a job: each finished image to its file (atomic, no clobber) with its infotext and
replay record, and the JSON record the CLI prints. Every entry point writes through here."""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from sdcli import __version__
from sdcli.conditioning.prompts import plain_text
from sdcli.errors import UsageError
from sdcli.io.output import DEFAULT_PATTERN, check_pattern, render_name
from sdcli.request.generation import GenerationRequest
from sdcli.request.records import request_to_dict
from sdcli.request.vocabulary import DIRECTIONS

ASSET_KEYS = {"vae": "VAE", "vae_hash": "VAE hash", "lora_hashes": "Lora hashes", "ti_hashes": "TI hashes"}


@dataclass(frozen=True)
class OutputOptions:
    """Where and how images are written."""

    folder: Path = Path("outputs")
    pattern: str = DEFAULT_PATTERN
    format: str = "png"  # a key of metadata.IMAGE_FORMATS
    quality: int = 90  # JPEG/WebP quality, 1-100

    def check(self) -> None:
        """Name pattern, format and quality, before any work."""
        from sdcli.io.metadata import IMAGE_FORMATS

        check_pattern(self.pattern)
        if self.format not in IMAGE_FORMATS:
            raise UsageError(f"--format: unknown format {self.format!r}; choose from {', '.join(IMAGE_FORMATS)}")
        if not 1 <= self.quality <= 100:
            raise UsageError(f"--quality: {self.quality} is out of range; use 1 to 100")

    @property
    def suffix(self) -> str:
        from sdcli.io.metadata import IMAGE_FORMATS

        return IMAGE_FORMATS[self.format][0]


def replay_record(item, request: GenerationRequest, model, assets: dict[str, Any] | None = None) -> dict[str, Any]:
    """What `sdcli replay` needs to make this one image again (stored in the PNG)."""
    single = replace(request, seed=item.seed, subseed=item.subseed, width=item.width, height=item.height,
                     batch_size=1, count=1)
    record = {"sdcli": __version__, "model": model.source, "request": request_to_dict(single)}
    if assets and any(assets.values()):
        record["assets"] = assets  # flag LoRAs, embeddings, VAE (tag LoRAs are in the prompt)
    return record


def name_values(request: GenerationRequest, *, number: int, seed: int, index: int, width: int, height: int,
                sampler: str, model_name: str, now: Any = None) -> dict[str, Any]:
    """The values file name patterns draw on (see output.FIELDS); `now` pins [date]/[datetime]."""
    values = {
        "num": number, "seed": seed, "steps": request.steps, "cfg_scale": request.cfg_scale,
        "sampler": sampler, "width": width, "height": height,
        "prompt_plain": plain_text(request.prompt), "model": model_name, "index": index,
        "input": Path(request.input_image).stem if request.input_image is not None else None,
    }
    if now is not None:
        values["now"] = now
    return values


def write_image(item, folder: Path, pattern: str, number: int, request: GenerationRequest,
                model, plan, now: Any = None, *, fmt: str = "png", quality: int = 90,
                assets: dict[str, Any] | None = None) -> dict[str, Any]:
    """Write one image (PNG, JPEG or WebP) with its infotext and replay record; return its JSON record."""
    from sdcli.io.metadata import IMAGE_FORMATS, save_image
    from sdcli.io.output import write_atomic

    model_name = model.name
    values = name_values(request, number=number, seed=item.seed, index=item.index, width=item.width,
                         height=item.height, sampler=item.params["Sampler"], model_name=model_name, now=now)
    record = replay_record(item, request, model, assets)
    path = write_atomic(folder, render_name(pattern, values), IMAGE_FORMATS[fmt][0],
                        lambda tmp: save_image(item.image, tmp, fmt, quality, item.infotext, record))
    return {
        "path": str(path),
        "mode": request.mode,
        "index": item.index,
        "seed": item.seed,
        "prompt": request.prompt,
        "negative_prompt": request.negative_prompt,
        "steps": request.steps,
        "cfg_scale": request.cfg_scale,
        "sampler": item.params["Sampler"],
        "schedule": item.params["Schedule type"],
        "width": item.width,
        "height": item.height,
        "clip_skip": request.clip_skip,
        "subseed": item.subseed,
        "subseed_strength": request.subseed_strength,
        "batch_size": request.batch_size,
        "count": request.count,
        "model": model_name,
        "model_hash": item.params["Model hash"],
        **{key: item.params[param] for key, param in ASSET_KEYS.items() if item.params.get(param)},
        "device": plan.device,
        "dtype": plan.dtype,
        **_input_record(request),
        "infotext": item.infotext,
    }


def _input_record(request: GenerationRequest) -> dict[str, Any]:
    """JSON fields for the input image and mask settings, when there are any."""
    record: dict[str, Any] = {}
    if request.init is not None:
        record.update(image=request.init.image, strength=request.init.strength, steps_run=request.steps_run)
    if request.inpaint is not None:
        record.update(mask=request.inpaint.mask, mask_blur=request.inpaint.mask_blur,
                      masked_content=request.inpaint.masked_content)
        if request.mode == "inpaint":
            record.update(inpaint_area=request.inpaint.area, padding=request.inpaint.padding)
    if request.hires is not None:
        record["hires"] = asdict(request.hires)
    if request.outpaint is not None:
        record.update(dict(zip(DIRECTIONS, request.outpaint.pixels, strict=True)),
                      fill=request.outpaint.fill)
    if request.controlnets:
        record["controlnets"] = [asdict(unit) for unit in request.controlnets]
    return record

