"""Model tests that also drive the CLI use its runner fixture."""

from tests.cli.conftest import cli  # noqa: F401
