"""--png-info: each input's own generation parameters for its item (the WebUI img2img batch tab's "PNG info").

As in the WebUI, the input's prompt and negative prompt are appended to the given
ones (after a space), and its Seed, CFG scale, Sampler and Steps replace the
command's; sdcli also takes its Schedule type (the WebUI's sampler names once
carried it). An input without parameters, or with values sdcli cannot use, keeps
the command's options, with a note. Image metadata is untrusted: only these
values are taken, each converted and validated like a flag.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from sdcli.errors import UsageError
from sdcli.request.generation import GenerationRequest, validate

TAKEN = ("Seed", "CFG scale", "Sampler", "Schedule type", "Steps")  # infotext keys, see io.replay.INFOTEXT_FIELDS


def _joined(given: str, found: str) -> str:
    return f"{given} {found}" if given and found else given or found


def with_png_info(request: GenerationRequest, note: Callable[[str], None]) -> GenerationRequest:
    """`request` with its input image's own prompt, seed, CFG scale, sampler and steps (see the module docstring)."""
    from sdcli.io.replay import INFOTEXT_FIELDS, NoMetadata, read_metadata

    assert request.init is not None
    path = Path(request.init.image)
    try:
        meta = read_metadata(path)
    except NoMetadata:
        note(f"{path}: no PNG info; using the command's prompt and options")
        return request
    except UsageError:
        return request  # unreadable: its item fails when it runs, with the reason
    changes = {}
    for key in TAKEN:
        if key in meta.parameters:
            field, convert = INFOTEXT_FIELDS[key]
            try:
                changes[field] = convert(meta.parameters[key])
            except ValueError:
                note(f"{path}: PNG info not used: bad {key!r} value {meta.parameters[key]!r}")
                return request
    changed = replace(request, prompt=_joined(request.prompt, meta.prompt),
                      negative_prompt=_joined(request.negative_prompt, meta.negative_prompt), **changes)
    try:
        validate(changed)
    except UsageError as exc:
        note(f"{path}: PNG info not used: {exc}")
        return request
    return changed
