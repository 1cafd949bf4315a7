"""The input image of a replayed img2img: -i, or another tool's input file found by the name its metadata gives."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from sdcli.errors import UsageError
from sdcli.request.generation import GenerationRequest


def with_input(path: Path, generator: str, name: str | None, strength: float, request: GenerationRequest,
               overrides: dict[str, Any], given: Path | None,
               folders: tuple[Path, ...]) -> tuple[GenerationRequest, str, tuple[str, ...]]:
    """The img2img request of an image made from an input file: -i, else the file `name` the tool loaded (its
    metadata's) found beside the image or in `folders`; its size the input's (to a multiple of 8), as ComfyUI's
    VAEEncode crops it. Also where the input came from and a note when the replay differs."""
    from sdcli.io.images import open_image
    from sdcli.request.generation import ImageInput

    if given is not None:
        if name is None and request.init is None:
            raise UsageError(f"-i: {path} was not made from an input image (its metadata names none)")
        found, where = given, "-i"
    else:
        assert name is not None  # called only with -i or a name
        found, where = _find_input(name, path, folders), "found by its name"
        if found is None:
            raise UsageError(f"{path}: its {generator} graph loads the input image {name!r} (LoadImage), "
                             "which is not beside the image or in --comfy-dir's input/ folder; pass -i INPUT")
    width, height = open_image(found, "-i").size
    init = request.init or ImageInput(str(found), strength, "crop")
    init = dataclasses.replace(init, image=str(found.resolve()))
    fixed = {k: v for k, v in (("width", width // 8 * 8), ("height", height // 8 * 8)) if overrides.get(k) is None}
    notes: tuple[str, ...] = ()
    if request.init is None and (width % 8 or height % 8):
        notes = (f"the input is {width}x{height}: ComfyUI crops it to {width // 8 * 8}x{height // 8 * 8} about "
                 "its centre; sdcli crops and resizes (--resize crop), the same when one side is cut",)
    if request.init is not None:
        fixed = {}  # an sdcli image: its own size and resize mode, only the file changes
    return dataclasses.replace(request, mode="img2img" if request.init is None else request.mode, init=init,
                               **fixed), where, notes


def with_references(path: Path, generator: str, names: tuple[str, ...], request: GenerationRequest,
                    given: list[Path], folders: tuple[Path, ...]) -> tuple[GenerationRequest, str]:
    """The edit request of an image made from reference images (ComfyUI's ReferenceLatent): the -i files in the
    graph's order, else each file the graph names found as an img2img's input is; its size the edit's own (the
    first reference's). Also where the references came from."""
    if given and len(given) != len(names):
        raise UsageError(f"-i: {path}'s {generator} graph takes {len(names)} reference image(s) ({', '.join(names)}); "
                         f"{len(given)} given")
    found = list(given)
    for name in names if not given else ():
        file = _find_input(name, path, folders)
        if file is None:
            raise UsageError(f"{path}: its {generator} graph loads the reference image {name!r} (LoadImage), "
                             "which is not beside the image or in --comfy-dir's input/ folder; pass -i REF")
        found.append(file)
    references = tuple(str(f.expanduser().resolve()) for f in found)
    return dataclasses.replace(request, mode="edit", references=references, init=None), \
        "-i" if given else "found by name"


def _find_input(name: str, image: Path, folders: tuple[Path, ...]) -> Path | None:
    """A tool's input file name (ComfyUI's may have a subfolder) beside `image`, else in a folder's input/."""
    relative = Path(name.replace("\\", "/"))
    if relative.is_absolute() or ".." in relative.parts:
        return None  # untrusted metadata never names a file outside those folders
    for folder in (image.parent, *(f / "input" for f in folders)):
        if (folder / relative).is_file():
            return folder / relative
    return None

