"""How many CPU-heavy expert calls run right now, and the engine thread count that leaves them their cores.

Why: ``lav2 batch`` and the server run experts (Tesseract OCR, detection, captioning) beside the model's engine.
The engine's decode step splits its work over its threads; with two threads on two cores and one Tesseract
process competing, a step ran at a third of its speed — slower than on one thread (``bench/contention.py``).
So the pipeline counts its CPU-heavy expert calls in :data:`EXPERT_LOAD` while they run, and the engine of a
batch run or a server is configured with ``threads=EXPERT_LOAD.engine_threads(cores)``: before every step it
uses ``max(1, cores - running)`` threads.

One counter per process: every pipeline's experts compete for the same cores, whichever pipeline runs them.
"""
from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable, Iterator
from typing import Any

__all__ = ["CpuLoad", "EXPERT_LOAD", "cpu_heavy", "usable_cores"]


def usable_cores() -> int:
    """CPUs this process may run on (its affinity mask where the OS has one)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def cpu_heavy(tool: Any) -> bool:
    """Whether an expert's call keeps a core busy: its ``cpu_heavy`` attribute if it has one, else whether it
    reads an image (OCR, detection, caption do; the search experts wait on a network or a small index)."""
    flag = getattr(tool, "cpu_heavy", None)
    if isinstance(flag, bool):
        return flag
    return bool(getattr(tool, "needs_image", False))


class CpuLoad:
    """A thread-safe count of CPU-heavy tasks running now (``with load.busy(): ...``)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._running = 0
        self.peak = 0
        self.total = 0

    @property
    def running(self) -> int:
        return self._running

    @contextlib.contextmanager
    def busy(self) -> Iterator[None]:
        with self._lock:
            self._running += 1
            self.total += 1
            self.peak = max(self.peak, self._running)
        try:
            yield
        finally:
            with self._lock:
                self._running -= 1

    def engine_threads(self, cores: int | None = None) -> Callable[[], int]:
        """An ``EngineConfig.threads`` callable: ``max(1, cores - running)`` (cores: default
        :func:`usable_cores`)."""
        n = int(cores) if cores else usable_cores()
        if n < 1:
            raise ValueError(f"cores must be >= 1, got {cores}")

        def threads() -> int:
            return max(1, n - self._running)

        threads.__qualname__ = f"CpuLoad.engine_threads(cores={n})"
        return threads


#: the CPU-heavy expert calls of every pipeline in this process
EXPERT_LOAD = CpuLoad()
