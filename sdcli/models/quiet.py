"""Keep the libraries sdcli drives quiet: sdcli reports progress and warnings itself."""

from __future__ import annotations

import os


def quiet_libraries() -> None:
    """Silence diffusers/transformers/hub progress bars and warnings; sdcli reports itself.

    Env vars must be set before those libraries are imported (some warn at import);
    already-imported ones are set directly. SDCLI_DEBUG=1 keeps their output.
    """
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
            logging = sys.modules[name].utils.logging
            logging.set_verbosity_error()
            logging.disable_progress_bar()
