"""`save_images: true`: a request's images written into the server's output folder (`sdcli serve -o DIR`) as the
CLI writes them (job.write: the running number, the seed, the infotext and replay record), in the format of the
server's samples_format option (png, jpg, webp) at its jpeg_quality."""

from __future__ import annotations

from typing import Any

from sdcli.errors import UsageError

FORMATS = {"png": "png", "jpg": "jpeg", "jpeg": "jpeg", "webp": "webp"}  # samples_format -> io.metadata format


def image_format(value: str, field: str = "samples_format") -> str:
    """The sdcli image format of a samples_format value; UsageError naming `field` for others."""
    fmt = FORMATS.get(value.strip().lower())
    if fmt is None:
        raise UsageError(f"{field}: {value!r} is not one of {', '.join(FORMATS)}")
    return fmt


def save_generated(engine: Any, done: Any, options: dict[str, Any]) -> list[str]:
    """Write `done`'s images (a server.engine.Generated) into the engine's output folder; their paths."""
    from sdcli.io.output import DEFAULT_PATTERN, next_number, prepare_folder
    from sdcli.job.write import write_image

    fmt = image_format(str(options.get("samples_format", "png")))
    quality = int(options.get("jpeg_quality", 80))
    folder = prepare_folder(engine.output)
    number = next_number(folder)
    return [write_image(item, folder, DEFAULT_PATTERN, number + item.index, done.request, done.plan.model,
                        done.plan.runtime, fmt=fmt, quality=quality, assets=done.plan.extras.record())["path"]
            for item in done.items]
