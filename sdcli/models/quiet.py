"""Keep the libraries sdcli drives quiet: sdcli reports progress and warnings itself."""

from __future__ import annotations

import os

QUANTIZATION_LOGGERS = ("bitsandbytes", "torchao", "torch.utils._pytree")


def quiet_libraries() -> None:
    """Silence diffusers/transformers/hub progress bars and warnings; sdcli reports itself.

    Env vars must be set before those libraries are imported (some warn at import);
    already-imported ones are set directly. SDCLI_DEBUG=1 keeps their output.
    """
    import logging
    import sys
    import warnings

    if os.environ.get("SDCLI_DEBUG", "") not in ("", "0"):
        return
    for var in ("TRANSFORMERS_VERBOSITY", "DIFFUSERS_VERBOSITY"):
        os.environ.setdefault(var, "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    warnings.filterwarnings("ignore", category=FutureWarning, module=r"(diffusers|transformers)\b")
    for name in ("diffusers", "transformers"):
        if name in sys.modules:
            library = sys.modules[name].utils.logging
            library.set_verbosity_error()
            library.disable_progress_bar()
    # The quantization backends (--quantize) log as they are imported (kernels this machine lacks) and, LLM.int8,
    # on every matmul; torch logs deprecations that torchao's import trips. Python loggers: set before the import.
    for name in QUANTIZATION_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)
