"""Process control of a batch: this process's shard under accelerate, and a graceful Ctrl-C."""

from __future__ import annotations

import signal
import threading
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Shard:
    """This process's share of the batch (index of count) and how to reach the others."""

    index: int = 0
    count: int = 1
    device: str = "cpu"

    @property
    def is_main(self) -> bool:
        return self.index == 0

    def share(self, value: Any) -> Any:
        """The main process's `value`, in every process."""
        if self.count == 1:
            return value
        from accelerate.utils import broadcast_object_list

        return broadcast_object_list([value], from_process=0)[0]


def current_shard(device: str) -> Shard:
    """accelerate's view of the launch; a plain run is process 0 of 1."""
    from accelerate import PartialState

    state = PartialState(cpu=device != "cuda")
    return Shard(state.process_index, state.num_processes, str(state.device))


class GracefulStop:
    """First Ctrl-C: finish the current image, then stop. Second: stop now (KeyboardInterrupt)."""

    def __init__(self, reporter: Any):
        self.reporter = reporter
        self.requested = False
        self.previous: Any = None
        self.installed = False

    def _handle(self, signum: int, frame: Any) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        self.reporter.note("Ctrl-C: stopping after the current image (Ctrl-C again to stop at once)")

    def __enter__(self) -> GracefulStop:
        if threading.current_thread() is threading.main_thread():
            self.previous = signal.signal(signal.SIGINT, self._handle)
            self.installed = True
        return self

    def __exit__(self, *exc: object) -> None:
        if self.installed:  # whatever was there before: SIG_IGN under nohup, None if set outside Python
            signal.signal(signal.SIGINT, self.previous if self.previous is not None else signal.SIG_DFL)


class Stop(Exception):
    """Raised between images once a graceful stop was asked for."""
