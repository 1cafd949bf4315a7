"""A tiny SD2 checkpoint (v-prediction, OpenCLIP-style text encoder) for the parity tests."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def tiny_sd2_pipe(tmp_path_factory):
    from sdcli.models.tiny import build_tiny
    from tests.conftest import _load_on_cpu

    return _load_on_cpu(build_tiny(tmp_path_factory.mktemp("models") / "tiny-sd2", arch="sd2"))
