"""A family owns its behaviour: code outside sdcli/families/ never asks which family a model is, never
touches the UNet or duck-types pipelines and encoders, and sdcli never hangs its state on other
libraries' objects (models.loaded.LoadedModel holds it). Read from the source, so it fails the moment
such a branch comes back."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "sdcli"

# What family code alone may do (name -> pattern).
FAMILY_ONLY = {
    "is_xl": re.compile(r"\bis_xl\w*"),
    "the UNet": re.compile(r"\.unet\b"),
    "the second text encoder": re.compile(r"\btext_encoder_2\b"),
    "hasattr(pipe, ...)": re.compile(r"hasattr\(\s*\w*pipe\w*\s*,"),
    "hasattr(encoder, ...)": re.compile(r"hasattr\(\s*\w*encoder\w*\s*,"),
}
# Files outside sdcli/families/ that may, each for one reason, and only the patterns named.
ALLOWED = {
    "sdcli/models/tiny.py": ({"the UNet", "the second text encoder"},
                             "the tiny-model builder writes each architecture's UNet and text encoder configs"),
    "sdcli/models/original_keys.py": ({"the UNet", "the second text encoder"},
                                      "writes a built pipeline's weights in the original single-file key layout"),
    "sdcli/models/flux_write.py": ({"the second text encoder"}, "writes a Flux T5 encoder in each file layout"),
    "sdcli/models/flux_pipeline.py": ({"the second text encoder"}, "assembles a Flux pipeline from its files"),
    "sdcli/models/flux_lora.py": ({"the second text encoder"}, "loads a Flux LoRA's T5 layers into the T5 encoder"),
    "sdcli/models/tiny_flux_lora.py": ({"the second text encoder"}, "writes tiny Flux LoRAs with T5 layers"),
    "sdcli/models/flow_lora.py": ({"the second text encoder"}, "maps kohya's lora_te2_/lora_te3_ onto SD3's encoders"),
    "sdcli/models/tiny_flow_lora.py": ({"the second text encoder"}, "writes tiny SD3 LoRAs with CLIP-G/T5 layers"),
    "sdcli/models/tiny_flux.py": ({"the second text encoder"}, "the tiny Flux builder builds its T5 encoder"),
    "sdcli/models/single_file.py": ({"the UNet"}, "matches a file's UNet width to a tiny architecture's UNet config"),
    "sdcli/models/bundled.py": ({"the second text encoder"}, "names the config files of a bundled config folder"),
    "sdcli/controlnet/files.py": ({"the UNet"}, "builds a tiny ControlNet from a tiny architecture's UNet config"),
    "sdcli/conditioning/sdxl.py": ({"the second text encoder"}, "SDXL's prompt encoder reads its OpenCLIP-bigG"),
    "sdcli/conditioning/sd3.py": ({"the second text encoder"}, "SD3's prompt encoder reads its OpenCLIP-bigG"),
    "sdcli/models/sd3_write.py": ({"the second text encoder"}, "writes an SD3 bigG in the single-file layout"),
    "sdcli/models/tiny_sd3.py": ({"the second text encoder"}, "the tiny SD3 builder builds its bigG encoder"),
}
# sdcli's own attributes on objects of other libraries (diffusers pipelines, VAEs, click commands): nowhere.
SDCLI_ATTRIBUTE = re.compile(r"\.\s*_?sdcli_\w+|(?:get|set|has)attr\([^)]*[\"']_?sdcli_")


def _sources() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def _lines(path: Path) -> list[tuple[int, str]]:
    """Code lines (comments dropped, docstrings kept: they name the code they describe rarely enough)."""
    return [(n, line.split("#", 1)[0]) for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)]


def family_branches(path: Path) -> list[str]:
    """`file:line: what` for each family-only pattern in a file outside sdcli/families/ not allowed there."""
    rel = path.relative_to(ROOT).as_posix()
    if rel.startswith("sdcli/families/"):
        return []
    allowed = ALLOWED.get(rel, (set(), ""))[0]
    return [f"{rel}:{n}: {name}" for n, line in _lines(path) for name, pattern in FAMILY_ONLY.items()
            if name not in allowed and pattern.search(line)]


def test_no_family_branching_outside_the_family_modules():
    found = [hit for path in _sources() for hit in family_branches(path)]
    assert not found, "family decisions belong in sdcli/families/ (a Family method or capability):\n" + "\n".join(found)


def test_no_sdcli_attributes_on_other_objects():
    found = [f"{path.relative_to(ROOT)}:{n}" for path in _sources() for n, line in _lines(path)
             if SDCLI_ATTRIBUTE.search(line)]
    assert not found, "sdcli's state lives in its own objects (models.loaded.LoadedModel):\n" + "\n".join(found)


def test_every_allowed_file_exists_and_needs_its_exception():
    for rel, (patterns, reason) in ALLOWED.items():
        path = ROOT / rel
        assert path.is_file() and reason, rel
        text = "\n".join(line for _, line in _lines(path))
        for name in patterns:
            assert FAMILY_ONLY[name].search(text), f"{rel} no longer needs {name!r}: drop it from ALLOWED"


@pytest.mark.parametrize("line, name", [
    ("    if detected.family.is_xl:", "is_xl"),
    ("    config = pipe.unet.config", "the UNet"),
    ("    if hasattr(pipe, 'text_encoder_2'):", "hasattr(pipe, ...)"),
    ("    if hasattr(encoder, 'pipeline_kwargs'):", "hasattr(encoder, ...)"),
])
def test_the_check_catches_each_pattern(tmp_path, monkeypatch, line, name):
    bad = tmp_path / "sdcli" / "execution" / "bad.py"
    bad.parent.mkdir(parents=True)
    bad.write_text(f"def f(pipe, encoder, detected):\n{line}\n", encoding="utf-8")
    monkeypatch.setattr(f"{__name__}.ROOT", tmp_path)
    assert any(hit.endswith(f": {name}") for hit in family_branches(bad))
    assert SDCLI_ATTRIBUTE.search("    pipe.sdcli_detected = detected")
    assert SDCLI_ATTRIBUTE.search('    getattr(vae, "sdcli_guarded", False)')
    assert not SDCLI_ATTRIBUTE.search('    adapter = f"sdcli_{spec.hash}"')  # a peft adapter's name, not an attribute
