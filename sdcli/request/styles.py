"""Prompt styles, the WebUI's way: named prompt / negative prompt pairs in a styles.csv, applied to a request.

The file is the WebUI's (modules/styles.py): CSV with a header, columns `name`, `prompt` (older files:
`text`) and `negative_prompt`, UTF-8 with or without a BOM. Files given later win for a name given twice.
A style's text holding `{prompt}` has the prompt put in its place; any other is appended after a comma
(blank parts left out). Styles apply in the order named, to the prompt, the negative prompt and the
hires pass's own prompts, before anything else reads them, so the infotext records the styled prompt
as the WebUI's does. An unknown name is refused on the command line, naming the flag and the styles
there are; the server leaves it out, as the WebUI's API does.
Pure: no torch, no PIL.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from sdcli.errors import UsageError

MAX_STYLES_BYTES = 8 << 20


@dataclass(frozen=True)
class PromptStyle:
    """One row of a styles.csv."""

    name: str
    prompt: str = ""
    negative_prompt: str = ""


def read_styles(path: Path, flag: str) -> list[PromptStyle]:
    """The styles of one styles.csv; UsageError naming `flag` and the file when it cannot be read."""
    try:
        if path.stat().st_size > MAX_STYLES_BYTES:
            raise UsageError(f"{flag}: {path} is over {MAX_STYLES_BYTES >> 20} MiB; not a styles file")
        with open(path, encoding="utf-8-sig", newline="") as fh:
            rows = list(csv.DictReader(fh, skipinitialspace=True))
    except FileNotFoundError:
        raise UsageError(f"{flag}: {path}: no such file") from None
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise UsageError(f"{flag}: {path}: not a readable styles CSV ({exc})") from None
    styles = []
    for number, row in enumerate(rows, start=2):
        name = row.get("name")
        if name is None:
            raise UsageError(f"{flag}: {path}: no 'name' column (the WebUI's styles.csv has name, prompt, "
                             "negative_prompt)")
        if not name:
            raise UsageError(f"{flag}: {path} line {number}: a style without a name")
        prompt = row.get("prompt", row.get("text")) or ""
        styles.append(PromptStyle(name, prompt, row.get("negative_prompt") or ""))
    return styles


def load_styles(files: list[str] | tuple[str, ...] = (), webui_dir: str | None = None) -> tuple[PromptStyle, ...]:
    """The styles of a WebUI install's styles.csv (when it has one) and of each --styles FILE, later ones winning."""
    found: dict[str, PromptStyle] = {}
    sources = [(Path(webui_dir).expanduser() / "styles.csv", "--webui-dir")] if webui_dir else []
    sources = [s for s in sources if s[0].is_file()] + [(Path(f).expanduser(), "--styles") for f in files]
    for path, flag in sources:
        for style in read_styles(path, flag):
            found[style.name] = style
    return tuple(found.values())


def merge(style_text: str, prompt: str) -> str:
    """One style's text applied to a prompt, as the WebUI's merge_prompts."""
    if "{prompt}" in style_text:
        return style_text.replace("{prompt}", prompt)
    return ", ".join(part for part in (prompt.strip(), style_text.strip()) if part)


def apply_texts(text: str, texts: list[str]) -> str:
    for style_text in texts:
        text = merge(style_text, text)
    return text


def pick(names: list[str] | tuple[str, ...], styles: tuple[PromptStyle, ...], field: str,
         lenient: bool = False) -> list[PromptStyle]:
    """The styles `names` name, in that order; UsageError naming `field` for an unknown one (`lenient`: left out,
    as the WebUI's API leaves out a style it does not have)."""
    by_name = {style.name: style for style in styles}
    for name in names:
        if name not in by_name and not lenient:
            known = ", ".join(repr(s) for s in by_name) or "none (give --styles FILE or a --webui-dir with styles.csv)"
            raise UsageError(f"{field}: no style named {name!r}; styles: {known}")
    return [by_name[name] for name in names if name in by_name]


def styled(request: Any, names: list[str] | tuple[str, ...], styles: tuple[PromptStyle, ...], field: str,
           lenient: bool = False) -> Any:
    """The GenerationRequest with the named styles applied to its prompts (and its hires pass's own prompts)."""
    chosen = pick(names, styles, field, lenient)
    if not chosen:
        return request
    positive, negative = [s.prompt for s in chosen], [s.negative_prompt for s in chosen]
    request = replace(request, prompt=apply_texts(request.prompt, positive),
                      negative_prompt=apply_texts(request.negative_prompt, negative))
    hires = request.hires
    if hires is not None and (hires.prompt is not None or hires.negative_prompt is not None):
        hires = replace(hires, prompt=None if hires.prompt is None else apply_texts(hires.prompt, positive),
                        negative_prompt=None if hires.negative_prompt is None
                        else apply_texts(hires.negative_prompt, negative))
        request = replace(request, hires=hires)
    return request
