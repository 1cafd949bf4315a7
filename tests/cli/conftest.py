"""CLI helpers: run the real Typer app in-process."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from tests.cli.flow_files import flow_files, flow_pipes, flow_pixels  # noqa: F401 (the flow files' session fixtures)


@pytest.fixture
def cli(monkeypatch):
    """Invoke `sdcli ARGS...`; returns click's Result (exit_code, stdout, stderr)."""
    from sdcli.cli import app

    # `sdcli --debug` sets SDCLI_DEBUG for the process; undo it after each test.
    monkeypatch.delenv("SDCLI_DEBUG", raising=False)

    runner = CliRunner()

    def invoke(*args: str, env: dict[str, str] | None = None):
        return runner.invoke(app, [str(a) for a in args], env=env)

    return invoke
