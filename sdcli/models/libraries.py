"""Keep the libraries sdcli drives quiet: sdcli reports progress and warnings itself."""

from __future__ import annotations

import os
from typing import Any


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


def compel_embeddings() -> Any:
    """compel.embeddings_provider, without running compel/__init__ until something needs it.

    compel's __init__ imports its convenience wrappers, and they import the Flux, Lumina2,
    Sana and SDXL pipelines: other model families' modules, a second or more of start-up
    for an SD1 job. The package is registered with a lazy __getattr__ that runs the real
    __init__ on first use of any top-level name, so `from compel import Compel` still works.
    """
    import importlib
    import importlib.util
    import sys
    import types

    if "compel" not in sys.modules:
        spec = importlib.util.find_spec("compel")
        if spec is None or spec.loader is None or spec.submodule_search_locations is None:
            return importlib.import_module("compel.embeddings_provider")
        package = types.ModuleType("compel")
        package.__spec__, package.__file__ = spec, spec.origin
        package.__path__ = list(spec.submodule_search_locations)
        package.__package__ = "compel"

        def load_all(name: str) -> Any:
            del package.__dict__["__getattr__"]
            spec.loader.exec_module(package)
            return getattr(package, name)

        package.__getattr__ = load_all  # type: ignore[attr-defined]
        sys.modules["compel"] = package
    return importlib.import_module("compel.embeddings_provider")
