"""The model behind the server: loading it (503 until ready), admitting requests (429 when full), and running one
request's generation on the model's engine with a deadline and cancellation.

Every generation goes through ``model.engine`` (``core_model.engine``): requests submitted from the event loop
join the running batch at the next decode step, so concurrent HTTP requests are decoded together. A model object
without an engine (an older ``core_model``, a stand-in) is driven through ``model.stream`` in a worker thread.
"""
from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from .._common import Captured, aiter_in_thread
from .errors import APIError, BadRequest, ServiceUnavailable, Timeout, TooManyRequests

log = logging.getLogger("lav2.serve")


def _queue_full_error() -> type[BaseException] | None:
    try:
        from core_model.engine import QueueFullError
    except ImportError:  # a core_model without the engine
        return None
    return QueueFullError


def translate_error(exc: BaseException, retry_after: int = 1) -> APIError | None:
    """The HTTP error for a library error a request caused (None: not the client's doing — a 500)."""
    from core_model.errors import ConfigError, ContextLengthError, ImageError, VisionUnavailableError

    from ..errors import UnknownExpertError

    queue_full = _queue_full_error()
    if isinstance(exc, APIError):
        return exc
    if queue_full is not None and isinstance(exc, queue_full):
        return TooManyRequests(f"the server is at capacity ({exc}); retry after {retry_after}s",
                               retry_after=retry_after)
    if isinstance(exc, ContextLengthError):
        return BadRequest(str(exc), code="context_length_exceeded", param="messages")
    if isinstance(exc, ImageError):
        return BadRequest(f"cannot use the image: {exc}", code="invalid_image")
    if isinstance(exc, VisionUnavailableError):
        return BadRequest(str(exc), code="vision_unavailable")
    if isinstance(exc, (ConfigError, UnknownExpertError)):
        return BadRequest(str(exc))
    try:
        from prompts import PromptError
    except ImportError:  # pragma: no cover - prompts is part of this distribution
        PromptError = ()  # type: ignore[assignment]  # noqa: N806
    if isinstance(exc, PromptError):
        return BadRequest(str(exc), param="messages")
    return None


# ------------------------------------------------------------------------------------------------ generation
class Generation:
    """One request's generation: iterate :meth:`pieces` (text deltas), then read :attr:`completion`
    (``core_model.Completion``: text, token counts, finish reason). :meth:`cancel` frees its batch slot."""

    def __init__(self, model: Any, prompt: Any, image: Any, params: dict[str, Any], deadline: float):
        self.deadline = deadline
        self.completion: Any = None
        self.first_token_at: float | None = None
        self._handle = None
        self._captured: Captured | None = None
        engine = getattr(model, "engine", None)
        if engine is not None and hasattr(engine, "submit"):
            # raises QueueFullError (-> 429) or a ConfigError/ContextLengthError/ImageError (-> 400) right here
            self._handle = engine.submit(prompt, image=image, **params)
        else:
            self._captured = Captured(model.stream(prompt, image=image, **params))

    @classmethod
    async def start(cls, model: Any, prompt: Any, image: Any, params: dict[str, Any], deadline: float) -> Generation:
        """Submit off the event loop: the engine tokenises the prompt and encodes the image (CLIP) on the
        submitting thread."""
        return await asyncio.to_thread(cls, model, prompt, image, params, deadline)

    async def pieces(self) -> AsyncIterator[str]:
        """Text deltas until the end; raises :class:`Timeout` at the deadline (and cancels the generation)."""
        source = self._handle.__aiter__() if self._handle is not None else \
            aiter_in_thread(lambda: iter(self._captured)).__aiter__()
        finished = False
        try:
            while True:
                remaining = self.deadline - time.monotonic()
                if remaining <= 0:
                    raise asyncio.TimeoutError
                try:
                    piece = await asyncio.wait_for(source.__anext__(), remaining)
                except StopAsyncIteration:
                    finished = True
                    break
                if self.first_token_at is None:
                    self.first_token_at = time.monotonic()
                yield piece
        except asyncio.TimeoutError:
            raise Timeout("the request took longer than the server's --request-timeout and was cancelled") from None
        finally:
            if not finished:  # timed out, failed, or the client went away: free the batch slot now
                self.cancel()
            aclose = getattr(source, "aclose", None)
            if aclose is not None:
                try:
                    await aclose()
                except (RuntimeError, StopAsyncIteration):  # already closing / finished
                    pass
        self.completion = self._handle.result(timeout=5.0) if self._handle is not None else self._captured.value

    def cancel(self) -> None:
        if self._handle is not None:
            self._handle.cancel()


async def collect(generation: Generation) -> str:
    """The whole text of a generation."""
    return "".join([piece async for piece in generation.pieces()])


# ------------------------------------------------------------------------------------------------ admission
class Admission:
    """At most ``limit`` requests in the server at once; the next one is refused at the door (429)."""

    def __init__(self, limit: int, retry_after: int = 1):
        self.limit = limit
        self.retry_after = retry_after
        self.active = 0
        self._lock = threading.Lock()

    def __enter__(self) -> Admission:
        with self._lock:
            if self.active >= self.limit:
                raise TooManyRequests(f"the server is at capacity ({self.active} requests in progress, "
                                      f"--max-pending {self.limit}); retry after {self.retry_after}s",
                                      retry_after=self.retry_after)
            self.active += 1
        return self

    def __exit__(self, *exc: Any) -> None:
        with self._lock:
            self.active -= 1


# ------------------------------------------------------------------------------------------------ the model
class ModelHost:
    """Loads the model (and the visual-QA pipeline around it) in a background thread; until it is ready every
    request gets 503. ``loader`` returns the pipeline (``orchestrator.VisualQAPipeline``)."""

    def __init__(self, loader: Callable[[], Any], engine_limits: dict[str, int] | None = None):
        self._loader = loader
        self.engine_limits = {k: v for k, v in (engine_limits or {}).items() if v is not None}
        self.pipeline: Any = None
        self.model: Any = None
        self.chat: Any = None
        self.experts: list[dict[str, Any]] = []
        self.error: BaseException | None = None
        self.started_at = time.time()
        self.load_seconds: float | None = None
        self.ready = threading.Event()
        self._thread: threading.Thread | None = None
        self.on_failure: Callable[[BaseException], None] | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._load, name="lav2-serve-load", daemon=True)
        self._thread.start()

    def load_now(self) -> None:
        self._load()

    def _load(self) -> None:
        from ..chat_models import ChatLlamaAdapterV2

        t0 = time.perf_counter()
        try:
            pipeline = self._loader()
            model = pipeline.model
            configure = getattr(model, "configure_engine", None)
            if configure is not None:  # and the engine's threads follow the experts' load (orchestrator.load)
                import torch

                from ..load import EXPERT_LOAD

                configure(**self.engine_limits, threads=EXPERT_LOAD.engine_threads(torch.get_num_threads()))
            self.chat = ChatLlamaAdapterV2(client=model, max_tokens=pipeline.max_new_tokens,
                                           temperature=pipeline.temperature)
            self.experts = describe_experts(pipeline.experts)
            self.pipeline, self.model = pipeline, model
            self.load_seconds = round(time.perf_counter() - t0, 3)
            log.info("model ready in %.1fs: %s", self.load_seconds, model.describe()
                     if hasattr(model, "describe") else model)
            self.ready.set()
        except BaseException as e:  # noqa: BLE001 - reported by /health and the CLI, never raised into uvicorn
            self.error = e
            log.error("loading the model failed: %s", e)
            if self.on_failure is not None:
                self.on_failure(e)

    def require(self) -> None:
        """Raise 503 unless the model is loaded."""
        if self.ready.is_set():
            return
        if self.error is not None:
            raise ServiceUnavailable(f"the model failed to load: {self.error}", code="model_load_failed")
        raise ServiceUnavailable("the model is still loading; retry shortly", code="model_loading")


def describe_experts(experts: list[Any]) -> list[dict[str, Any]]:
    """Name, readiness (and why not), what each expert reads, its description — for the page and ``/v1/experts``."""
    out = []
    for e in experts:
        try:
            status = e.status()
            ready, reason = bool(status.ready), str(status.reason)
        except Exception as exc:  # noqa: BLE001 - a broken plugin is shown as unavailable, not a crash
            ready, reason = False, f"{type(exc).__name__}: {exc}"
        out.append({"name": e.name, "ready": ready, "reason": reason,
                    "needs_image": bool(getattr(type(e), "needs_image", getattr(e, "needs_image", False))),
                    "description": (getattr(e, "description", "") or "").split("\n\n")[0]})
    return out
