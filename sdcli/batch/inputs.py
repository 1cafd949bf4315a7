"""Input sets: a folder or glob of images expanded into a sorted list, masks paired by name, batch lines.

Pure: no Pillow, no torch; only names and directory listings are read (images are
decoded later, one at a time, so a corrupt one fails its own item only).

- A folder holds its PNG/JPEG/WebP files (by extension, case-insensitive); other
  files are skipped and counted; hidden files and folders (".name") are ignored.
  With `recursive`, subfolders too (symlinked folders are not followed).
- A glob (a path with * ? or [ that is not an existing file) matches files; `**`
  matches any depth of folders.
- Order: natural sort of the path relative to the set's root, folder by folder
  (img2 before img10; case-insensitive, ties broken by the exact name). Input i
  of that order is item i of the batch (seed + i).
- Each input's key is that relative path without its suffix ("cat", "sub/cat"):
  masks pair with inputs by key.

`expand_inputs` is the one entry point for any command taking many images
(img2img, inpaint, upscale).
"""

from __future__ import annotations

import glob
import os
import re
from dataclasses import dataclass, replace
from pathlib import Path

from sdcli.errors import UsageError
from sdcli.request.generation import GenerationRequest, check_seed_room, with_input_image

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")  # what io.images.open_image reads (PNG, JPEG, WebP)
_MAGIC = re.compile(r"[*?[]")
_DIGITS = re.compile(r"(\d+)")
KINDS = "PNG, JPEG or WebP images"


@dataclass(frozen=True)
class InputFile:
    """One input: its absolute path and its key (relative path from the set's root, no suffix)."""

    path: Path
    key: str


@dataclass(frozen=True)
class InputSet:
    """The images a folder or glob names, in processing order, and how many other files were skipped."""

    spec: str
    root: Path
    files: tuple[InputFile, ...]
    skipped: int = 0



def is_input_set(spec: str | Path) -> bool:
    """Whether `spec` names many inputs: an existing folder, or a glob that is not an existing file."""
    path = Path(spec).expanduser()
    return path.is_dir() or (not path.exists() and bool(_MAGIC.search(str(spec))))


def natural_key(relative: str) -> tuple[tuple[tuple[object, ...], str], ...]:
    """Sort key: folder by folder, runs of digits compared as numbers, case-insensitive first."""
    return tuple((tuple(int(t) if i % 2 else t.casefold() for i, t in enumerate(_DIGITS.split(part))), part)
                 for part in relative.split("/"))


def input_root(spec: str | Path) -> Path:
    """The folder an input set's names are relative to: the folder itself, or a glob's fixed leading folders."""
    path = Path(spec).expanduser()
    if path.is_dir():
        return path
    parts = path.parts
    fixed = parts[: next((i for i, p in enumerate(parts) if _MAGIC.search(p)), len(parts))]
    return Path(*fixed) if fixed else Path(".")


def _hidden(relative: Path) -> bool:
    return any(part.startswith(".") for part in relative.parts)


def _walk(root: Path, recursive: bool, exclude: tuple[Path, ...]) -> list[Path]:
    """Files under `root` (its top level only unless `recursive`), hidden ones and `exclude`d folders left out."""
    found: list[Path] = []
    for folder, dirs, names in os.walk(root):
        here = Path(folder)
        dirs[:] = [d for d in dirs if recursive and not d.startswith(".")
                   and (here / d).resolve() not in exclude]
        found += [here / n for n in names if not n.startswith(".") and (here / n).is_file()]
    return found


def expand_inputs(spec: str | Path, flag: str = "--image", *, recursive: bool = False,
                  exclude: tuple[Path, ...] = ()) -> InputSet:
    """The images of folder or glob `spec`, sorted (see the module docstring); UsageError naming `flag` if none.

    `exclude` lists folders to leave out (an output folder inside the input folder,
    so a second run or --resume does not take its own outputs as inputs).
    """
    text = str(spec)
    path = Path(text).expanduser()
    excluded = tuple(p.resolve() for p in exclude)
    root = input_root(path)
    if path.is_dir():
        candidates = _walk(path, recursive, excluded)
    else:
        candidates = [Path(p) for p in glob.glob(str(path), recursive=True) if os.path.isfile(p)]
        candidates = [p for p in candidates if not any(p.resolve().is_relative_to(e) for e in excluded)]
    relative = {p: p.relative_to(root) for p in candidates}
    candidates = [p for p in candidates if not _hidden(relative[p])]  # a glob's ".x/" folders, as a folder's
    images = [p for p in candidates if p.suffix.lower() in IMAGE_SUFFIXES]
    if not images:
        where = "holds" if path.is_dir() else "matches"
        others = len(candidates) - len(images)
        raise UsageError(f"{flag}: {text} {where} no {KINDS}"
                         + (f" ({others} other file(s) skipped by extension)" if others else ""))
    keys = {p: relative[p].with_suffix("").as_posix() for p in images}
    ordered = sorted(images, key=lambda p: natural_key(relative[p].as_posix()))
    files = tuple(InputFile(p.absolute(), keys[p]) for p in ordered)
    return InputSet(text, root, files, skipped=len(candidates) - len(images))


def pair_masks(inputs: InputSet, masks: InputSet) -> tuple[list[Path], list[str]]:
    """Each input's mask (same key: relative path without suffix), in input order, and the unused masks' keys.

    An input without a mask, or a key with two masks (cat.png and cat.webp), is a
    UsageError naming the file, raised before anything loads.
    """
    by_key: dict[str, Path] = {}
    for mask in masks.files:
        if mask.key in by_key:
            raise UsageError(f"--mask: two masks for {mask.key}: {by_key[mask.key]} and {mask.path}; keep one")
        by_key[mask.key] = mask.path
    paired = []
    for item in inputs.files:
        if item.key not in by_key:
            raise UsageError(f"--mask: no mask for input {item.path}: no {item.key}.png, .jpg, .jpeg or .webp "
                             f"in {masks.spec}")
        paired.append(by_key[item.key])
    used = {item.key for item in inputs.files}
    return paired, [key for key in by_key if key not in used]


@dataclass(frozen=True)
class ExpandedRequest:
    """A request over an input set: one request per input, in input order, and the masks no input used."""

    inputs: InputSet
    requests: tuple[GenerationRequest, ...]
    unused_masks: tuple[str, ...] = ()


def expand_request(template: GenerationRequest, *, recursive: bool = False, exclude: tuple[Path, ...] = (),
                   flags: tuple[str, str] = ("--image", "--mask")) -> ExpandedRequest:
    """`template`, whose input image is a folder or glob, as one request per input (UsageError naming `flags`).

    Its mask is a folder/glob paired by name, or one file for every input. Input i
    of N gets the template's own seed and variation seed (when given) + i x images
    per input, so its images are those of a one-input run with seed + i; with no
    seed (None) the batch runner's base seed + item does the same.
    """
    if template.input_image is None:
        raise ValueError("expand_request needs a request with an input image")
    inputs = expand_inputs(template.input_image, flags[0], recursive=recursive, exclude=exclude)
    mask = template.inpaint.mask if template.inpaint is not None else None
    masks, unused = None, []
    if mask and is_input_set(mask):
        masks, unused = pair_masks(inputs, expand_inputs(mask, flags[1], recursive=recursive, exclude=exclude))
    elif mask and not Path(mask).is_file():
        raise UsageError(f"{flags[1]}: {mask}: no such file" if not Path(mask).exists()
                         else f"{flags[1]}: {mask} is not a file")
    per_input, count = template.total_images, len(inputs.files)
    seed_given = template.seed not in (None, -1)
    subseed_given = bool(template.subseed_strength) and template.subseed not in (None, -1)
    if seed_given:
        check_seed_room("--seed", template.seed, per_input * count)
    if subseed_given:
        check_seed_room("--subseed", template.subseed, per_input * count)
    requests = []
    for i, item in enumerate(inputs.files):
        request = with_input_image(template, str(item.path))
        if masks is not None and request.inpaint is not None:
            request = replace(request, inpaint=replace(request.inpaint, mask=str(masks[i])))
        if seed_given:
            request = replace(request, seed=template.seed + i * per_input)  # type: ignore[operator]
        if subseed_given:
            request = replace(request, subseed=template.subseed + i * per_input)  # type: ignore[operator]
        requests.append(request)
    return ExpandedRequest(inputs, tuple(requests), tuple(unused))
