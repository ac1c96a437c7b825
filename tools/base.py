"""What every expert shares: result and status types, typed errors, output sanitisation, the base tool.

An *expert* (paper §4.4) looks at an image and/or a question and returns a short text that a small language model
reads as context. Each expert here is a LangChain ``BaseTool`` (so any agent can call it) with three extras:

* ``needs_image`` (class attribute): whether it reads an image (OCR, detection, caption) or only a query (search);
* ``status()``: an :class:`ExpertStatus` saying whether the backend is usable, and if not why and how to fix it;
* ``run_expert(image=None, query=None)``: an :class:`ExpertResult` with the sanitised ``text`` for the model, the
  structured ``data`` for Python callers, the ``error`` if any and the wall time. It never raises for a backend
  failure, so one broken expert cannot take a pipeline down.

Subclasses implement ``_analyze(image, query) -> (text, data)`` and may raise the typed errors below.
"""
from __future__ import annotations

import logging
import os
import re
import socket
import threading
import time
import unicodedata
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, ClassVar

from langchain_core.tools import BaseTool, ToolException

logger = logging.getLogger(__name__)

DEFAULT_MAX_CHARS = 2000
TRUNCATION_MARKER = "…[truncated]"

__all__ = [
    "DEFAULT_MAX_CHARS",
    "TRUNCATION_MARKER",
    "ExpertError",
    "ExpertInputError",
    "ExpertResult",
    "ExpertStatus",
    "ExpertTimeout",
    "ExpertTool",
    "ExpertUnavailable",
    "ToolError",
    "network_available",
    "offline_mode",
    "sanitize_expert_text",
    "user_cache_dir",
    "user_data_dir",
]


# --------------------------------------------------------------------------------------------- errors
class ExpertError(Exception):
    """Base class of every error an expert raises on purpose; the message says what to do next."""


#: the name the ``lav2`` CLI looks up to turn library errors into one line on stderr
ToolError = ExpertError


class ExpertUnavailable(ExpertError):
    """The backend (library, binary, weights, index, network) is missing. Message: why, then how to fix."""


class ExpertInputError(ExpertError, ValueError):
    """The image or query given to an expert cannot be used (names the input and the problem)."""


class ExpertTimeout(ExpertError, TimeoutError):
    """The backend did not answer within the configured timeout."""


# --------------------------------------------------------------------------------------------- results
@dataclass(frozen=True)
class ExpertStatus:
    """Whether an expert can run now. ``reason`` is a short description when ready, why + how to fix when not."""

    ready: bool
    reason: str = ""

    def __bool__(self) -> bool:
        return self.ready

    def __str__(self) -> str:
        label = "ready" if self.ready else "unavailable"
        return f"{label}: {self.reason}" if self.reason else label


@dataclass
class ExpertResult:
    """What one expert contributed: ``text`` for the language model, ``data`` for Python, ``error`` if it failed."""

    name: str
    text: str = ""
    data: Any = None
    error: str | None = None
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.error is None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (``data`` is built from plain types by every built-in expert)."""
        return asdict(self)


# --------------------------------------------------------------------------------------------- sanitising
# Zero-width and bidirectional-override characters can hide or reorder text a human reviews; drop them.
_INVISIBLE = dict.fromkeys(
    [*range(0x200B, 0x2010), *range(0x202A, 0x202F), *range(0x2060, 0x2065), *range(0x2066, 0x206A), 0xFEFF]
)
_BLANK_RUNS = re.compile(r"\n[ \t]*\n(?:[ \t]*\n)+")
_TRAILING_SPACE = re.compile(r"[ \t]+\n")


def _keep_char(ch: str) -> bool:
    if ch in "\n\t":
        return True
    return unicodedata.category(ch) not in ("Cc", "Cs", "Co", "Cn")


def sanitize_expert_text(
    text: object,
    max_chars: int = DEFAULT_MAX_CHARS,
    *,
    forbidden: Iterable[str] = (),
    replacement: str = "[removed]",
) -> str:
    """Make untrusted expert output safe to paste into a prompt.

    Strips control, unassigned, private-use, zero-width and bidi-override characters (keeps ``\\n`` and ``\\t``),
    normalises line ends, removes trailing spaces, collapses runs of blank lines to one, and caps the length at
    ``max_chars`` with a visible ``…[truncated]`` marker (the result, marker included, is never longer).
    ``forbidden`` strings (e.g. the delimiters the prompt format wraps expert text in) are replaced by
    ``replacement`` so the text cannot close its own block.
    """
    if max_chars < len(TRUNCATION_MARKER) + 1:
        raise ValueError(f"max_chars must be at least {len(TRUNCATION_MARKER) + 1}, got {max_chars}")
    if text is None:
        return ""  # an expert that returned nothing contributes nothing (not the text "None")
    s = text if isinstance(text, str) else str(text)
    s = unicodedata.normalize("NFC", s)
    s = s.replace("\r\n", "\n").replace("\r", "\n").replace("\u2028", "\n").replace("\u2029", "\n\n")
    s = s.translate(_INVISIBLE)
    s = "".join(ch for ch in s if _keep_char(ch))
    for bad in forbidden:
        if bad:
            s = s.replace(bad, replacement)
    s = _TRAILING_SPACE.sub("\n", s)
    s = _BLANK_RUNS.sub("\n\n", s).strip()
    if len(s) <= max_chars:
        return s
    budget = max_chars - len(TRUNCATION_MARKER)
    cut = s[:budget]
    # end on a word boundary when one is near, so the model does not read half a word
    space = max(cut.rfind(" "), cut.rfind("\n"))
    if space >= budget * 0.8:
        cut = cut[:space]
    return cut.rstrip() + TRUNCATION_MARKER


# --------------------------------------------------------------------------------------------- places
def user_cache_dir() -> Path:
    """``<user cache>/lav2`` (``LAV2_CACHE_DIR`` overrides, as in core_model): experts' downloads and settings."""
    override = os.environ.get("LAV2_CACHE_DIR")
    if override:
        return Path(override).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("lav2"))


def user_data_dir() -> Path:
    """``<user data>/lav2`` (``LAV2_DATA_DIR`` overrides): the local search index lives here by default."""
    override = os.environ.get("LAV2_DATA_DIR")
    if override:
        return Path(override).expanduser()
    import platformdirs

    return Path(platformdirs.user_data_dir("lav2"))


# --------------------------------------------------------------------------------------------- network
_NET_CACHE: dict[tuple[str, int], tuple[float, bool]] = {}
_NET_TTL_S = 60.0


def offline_mode() -> bool:
    """True when ``LAV2_OFFLINE`` is set to a true value: experts then never probe or use the network."""
    return os.environ.get("LAV2_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def network_available(host: str, port: int = 443, timeout: float = 1.5) -> bool:
    """Can we open a TCP connection to ``host:port`` within ``timeout`` seconds (DNS included)?

    Used by ``status()`` of experts that would download or search, so ``lav2 tools`` can say "offline" instead of
    hanging. The probe runs in a daemon thread because ``getaddrinfo`` itself has no timeout; results are cached
    for a minute. Always False in offline mode (``LAV2_OFFLINE=1``).
    """
    if offline_mode():
        return False
    key = (host, port)
    now = time.monotonic()
    cached = _NET_CACHE.get(key)
    if cached and now - cached[0] < _NET_TTL_S:
        return cached[1]
    outcome: list[bool] = []

    def probe() -> None:
        try:
            with socket.create_connection((host, port), timeout=timeout):
                outcome.append(True)
        except OSError:
            outcome.append(False)

    worker = threading.Thread(target=probe, name=f"lav2-netprobe-{host}", daemon=True)
    worker.start()
    worker.join(timeout + 0.5)
    ok = bool(outcome and outcome[0])
    _NET_CACHE[key] = (now, ok)
    logger.debug("network probe %s:%d -> %s", host, port, ok)
    return ok


# --------------------------------------------------------------------------------------------- base tool
class ExpertTool(BaseTool):
    """Base class of every expert. Subclasses set ``name``, ``description``, ``args_schema``, ``needs_image``
    and implement ``_analyze``; they may override ``status``."""

    needs_image: ClassVar[bool] = False
    #: does the expert need a query (search) — used to reject empty calls with a clear message
    needs_query: ClassVar[bool] = False

    max_chars: int = DEFAULT_MAX_CHARS
    """Cap on the text returned to the language model (see :func:`sanitize_expert_text`)."""
    handle_tool_error: bool = True
    """In LangChain agents a failure becomes the tool's text answer instead of an exception."""

    # -- to implement -------------------------------------------------------------------------------------
    def status(self) -> ExpertStatus:
        """Whether the backend can run now; subclasses check libraries, binaries, weights, network."""
        return ExpertStatus(True, "ready")

    def _analyze(self, image: Any, query: str | None) -> tuple[str, Any]:
        """Return ``(text, data)``; raise :class:`ExpertError` subclasses for expected failures."""
        raise NotImplementedError(f"{type(self).__name__} must implement _analyze(image, query)")

    # -- shared -------------------------------------------------------------------------------------------
    def run_expert(self, image: Any = None, query: str | None = None) -> ExpertResult:
        """Run on an image (path, data-URL, URL, bytes, PIL image or array) and/or a query.

        Never raises for a backend or input failure: the returned result has ``error`` set instead
        (``"unavailable: ..."`` when the backend is missing). Programming errors — and a ``SystemExit`` raised
        by a backend — are logged with a traceback and reported the same way.
        """
        start = time.perf_counter()
        error: str | None = None
        try:
            if self.needs_image and image is None:
                raise ExpertInputError(f"expert {self.name!r} needs an image; pass image=<path, URL or PIL image>")
            if self.needs_query and not (query and query.strip()):
                raise ExpertInputError(f"expert {self.name!r} needs a non-empty query")
            analysed = self._analyze(image, query)
            text, data = ("", None) if analysed is None else analysed
            return ExpertResult(
                name=self.name,
                text=sanitize_expert_text(text, self.max_chars),
                data=data,
                seconds=time.perf_counter() - start,
            )
        except ExpertUnavailable as exc:
            error = f"unavailable: {exc}"
        except ExpertError as exc:
            error = str(exc)
        except (Exception, SystemExit) as exc:  # noqa: BLE001 - one failing expert must not break a pipeline
            logger.warning("expert %r failed", self.name, exc_info=True)
            error = f"{type(exc).__name__}: {exc}"
        elapsed = time.perf_counter() - start
        logger.info("expert %r failed after %.2fs: %s", self.name, elapsed, error)
        return ExpertResult(
            name=self.name, error=sanitize_expert_text(error or "failed", self.max_chars), seconds=elapsed
        )

    def _run(self, image: Any = None, query: str | None = None, run_manager: Any = None) -> str:
        result = self.run_expert(image=image, query=query)
        if result.error is not None:
            raise ToolException(f"{self.name}: {result.error}")
        return result.text
