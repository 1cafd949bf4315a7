"""`sdcli upscale` over folders and globs: the input list, the manifest, --resume, failures and Ctrl-C.

Arguments that are folders or globs are expanded with `inputs.expand_inputs` (the same
order, skipping and hidden-file rules as img2img/inpaint over folders; the output folder
left out); a plain file among them is one more input, in argument order. Input i of that
list is item i.

Output names: the input's key (its path relative to the folder or the glob's fixed
folders, without suffix) under --output, so `--recursive` keeps subfolders (`in/a/cat.png`
-> `out/a/cat.png`) and same-named inputs of different subfolders never meet; the
suffix is that of the input's format. A name already taken (an older file, or two
inputs with the same key such as cat.jpg and cat.jpeg) gets `-1`, `-2` ... as every
sdcli output; the path written is recorded, so --resume maps each input to its output
through the manifest, never by guessing.

The manifest is the batch runner's (batch/manifest.py): a `batch` header whose digest
covers the input list and the options (a changed folder or option is refused on
--resume, one line), and one `item` record per finished input (`item`, `input`,
`path`, `status` done/failed, `error`, `seconds`). Upscaling uses no seeds: the
header's `base_seed` is 0. A corrupt input, or one whose upscaled size is out of
range, fails its own item; the others go on (exit 3 at the end). The first Ctrl-C
finishes the current image, records it and stops (exit 130).
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from sdcli import __version__
from sdcli.batch import manifest
from sdcli.batch.inputs import InputFile, expand_inputs, is_input_set
from sdcli.batch.process import GracefulStop
from sdcli.batch.runner import BatchStats
from sdcli.errors import SdcliError, UsageError


def is_set_run(images: list[Path]) -> bool:
    """Whether any argument is a folder or glob (then every argument goes through the set runner)."""
    return any(is_input_set(p) for p in images)


def expand_all(images: list[Path], recursive: bool, output: Path) -> tuple[list[InputFile], int]:
    """Every input of the arguments in order (folders/globs expanded), and how many other files were skipped."""
    files: list[InputFile] = []
    skipped = 0
    for spec in images:
        if is_input_set(spec):
            found = expand_inputs(spec, "IMAGE", recursive=recursive, exclude=(output,))
            files += found.files
            skipped += found.skipped
        elif not spec.expanduser().is_file():
            raise UsageError(f"IMAGE: {spec}: " + ("not a file" if spec.expanduser().exists() else "no such file"))
        else:  # one file: read (a PNG, JPEG or WebP image) when its turn comes, failing its own item
            files.append(InputFile(spec.expanduser().absolute(), spec.stem))
    return files, skipped


def run_header(images: list[Path], files: list[InputFile], options: Any, recursive: bool) -> dict[str, Any]:
    """The manifest header: a digest of the input list (paths and output keys) and the options."""
    recorded = {**asdict(options), "recursive": recursive}
    rows = [[str(f.path), f.key] for f in files]
    digest = hashlib.sha256(json.dumps([rows, recorded], sort_keys=True).encode()).hexdigest()[:16]
    return {"type": "batch", "command": "upscale", "version": __version__,
            "source": "the inputs " + " ".join(str(p) for p in images), "digest": digest, "items": len(files),
            "base_seed": 0, "seed_given": False, "base_number": 0,
            "started": _dt.datetime.now().isoformat(timespec="seconds"), "options": recorded}


def run_set(files: list[InputFile], header: dict[str, Any], folder: Path, options: Any, resume: bool,
            load: Callable[[], Any], note: Callable[[str], None], emit: Callable[[dict[str, Any]], None],
            skipped: int = 0) -> BatchStats:
    """Upscale each input not done yet into `folder`, recording each in the manifest; return the stats.

    `load()` gives the ready upscaler, called once after the manifest is opened (so a
    changed input set or option is refused before any model loads); if it fails, the
    error is raised and a run that had just started leaves nothing behind (its
    manifest and the folder it created are removed).
    `skipped` (files of the folders that are not images) is told with the count of
    inputs. `emit(record)` gets each finished item: the `upscale` record (with `item`) when
    done, the manifest's `item` record when failed.
    """
    from sdcli.io.output import prepare_folder, remove_stale_temps
    from sdcli.job.upscale import upscale_one

    created = not folder.exists()
    new = created or not ((folder / manifest.MANIFEST).exists() or manifest.part_paths(folder))
    prepare_folder(folder, clean=False)
    remove_stale_temps(folder)
    manifest.start(folder, header, resume)
    _, records = manifest.load(folder)
    done = manifest.done_items(records)
    stats = BatchStats(total=len(files), skipped=sum(1 for i in done if i < len(files)))
    todo = [i for i in range(len(files)) if i not in done]
    started = time.monotonic()
    try:
        upscaler = load() if todo else None
    except BaseException:
        if new:  # nothing of this run stays behind
            (folder / manifest.MANIFEST).unlink(missing_ok=True)
            if created:
                folder.rmdir()
        raise
    note(f"{len(files)} input(s), in name order" + (f"; {skipped} file(s) not PNG/JPEG/WebP skipped"
                                                    if skipped else ""))
    if done:
        note(f"resuming: {stats.skipped} of {len(files)} input(s) already done")
    with manifest.ManifestWriter(folder / manifest.MANIFEST) as writer, GracefulStop(_Notes(note)) as stop:

        def record(index: int, seconds: float, result: dict[str, Any] | None = None, error: str | None = None
                   ) -> None:
            item = {"type": "item", "item": index, "input": str(files[index].path),
                    "path": result["path"] if result else None, "status": "failed" if error else "done",
                    "error": error, "seconds": round(seconds, 3)}
            writer.append({**item, **({"width": result["width"], "height": result["height"]} if result else {})})
            if result is None:
                stats.failed += 1
                emit(item)
            else:
                stats.done += 1
                emit({**result, "item": index})

        for index in todo:
            if stop.requested:
                stats.interrupted = True
                break
            began = time.monotonic()
            item = files[index]
            parent, stem = folder.joinpath(*item.key.split("/")[:-1]), item.key.split("/")[-1]
            try:
                parent.mkdir(parents=True, exist_ok=True)
                result = upscale_one(item.path, upscaler, options, parent, stem=stem)
            except Exception as exc:  # this input only: the others go on
                record(index, time.monotonic() - began, error=_message(exc))
                continue
            record(index, time.monotonic() - began, result)
        stats.interrupted = stats.interrupted or (stop.requested and stats.done + stats.failed < len(todo))
    stats.seconds = time.monotonic() - started
    return stats


class _Notes:
    """What GracefulStop needs of a reporter: a note."""

    def __init__(self, note: Callable[[str], None]):
        self.note = note


def _message(exc: Exception) -> str:
    return str(exc) if isinstance(exc, SdcliError) else f"{type(exc).__name__}: {exc}"

