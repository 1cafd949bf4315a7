"""Tiny SD2 and SDXL checkpoints for the parity tests."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def tiny_sd2_pipe(tmp_path_factory):
    from sdcli.models.tiny import build_tiny
    from tests.conftest import _load_on_cpu

    return _load_on_cpu(build_tiny(tmp_path_factory.mktemp("models") / "tiny-sd2", arch="sd2"))


@pytest.fixture(scope="session")
def tiny_xl_pipe(tiny_xl):
    """The tiny SDXL base checkpoint (CLIP-L + OpenCLIP-bigG, size/crop conditioning) on CPU."""
    from tests.conftest import _load_on_cpu

    return _load_on_cpu(tiny_xl["base"])


@pytest.fixture(scope="session")
def tiny_xl_inpaint_pipe(tmp_path_factory):
    """A tiny SDXL inpainting checkpoint (9-channel UNet) on CPU."""
    from sdcli.models.tiny import build_tiny
    from tests.conftest import _load_on_cpu

    return _load_on_cpu(build_tiny(tmp_path_factory.mktemp("models") / "tiny-xl-inpaint", arch="sdxl-inpaint"))
