"""User-facing errors. Each class carries the exit code the CLI returns for it."""

from __future__ import annotations

EXIT_OK = 0
EXIT_RUNTIME = 1
EXIT_USAGE = 2
EXIT_PARTIAL = 3
EXIT_INTERRUPTED = 130


class SdcliError(Exception):
    """Base class: one line of text for the user and an exit code."""

    exit_code = EXIT_RUNTIME


class UsageError(SdcliError):
    """A flag, argument or input file is invalid (exit 2)."""

    exit_code = EXIT_USAGE


class ModelError(UsageError):
    """The model the user pointed at cannot be used (missing, not a model, corrupt)."""


class RuntimeFailure(SdcliError):
    """Something failed while generating or writing (exit 1)."""

    exit_code = EXIT_RUNTIME
