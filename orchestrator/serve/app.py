"""The FastAPI app: OpenAI-compatible endpoints, visual QA, health, metrics and the web page.

Endpoints: ``POST /v1/chat/completions``, ``POST /v1/completions``, ``GET /v1/models``, ``POST /v1/vqa``,
``GET /v1/experts``, ``GET /health``, ``GET /metrics``, and the page at ``/``.
"""
from __future__ import annotations

import asyncio
import hmac
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager, suppress
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from .backend import Admission, Generation, ModelHost, collect, translate_error
from .config import ServeConfig
from .errors import APIError, BadRequest, NotFound, PayloadTooLarge, Timeout, Unauthorized, error_body
from .images import open_request_image
from .metrics import CONTENT_TYPE, ServerMetrics
from .protocol import (
    ChatCompletionRequest,
    CompletionRequest,
    VQARequest,
    chat_chunk,
    chat_completion,
    completion_choice,
    new_id,
    openai_tool_calls,
    parse_body,
    sse,
    text_completion,
    to_langchain_messages,
    usage,
)

log = logging.getLogger("lav2.serve")

STATIC = Path(__file__).with_name("static")
#: the page loads nothing from elsewhere (works offline; a script injected by content could not phone home)
PAGE_CSP = ("default-src 'self'; img-src 'self' data: blob:; style-src 'self'; script-src 'self'; "
            "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'none'")
_PROTECTED = ("/v1/", "/metrics")
_ENDPOINTS = {"/v1/chat/completions", "/v1/completions", "/v1/models", "/v1/vqa", "/v1/experts", "/health",
              "/metrics", "/"}
CLIENT_GONE = 499  # nginx's "client closed request": for logs and metrics, nobody receives it


class ClientDisconnected(Exception):
    """The client went away before its answer was ready; its generation was cancelled."""


# ------------------------------------------------------------------------------------------------ middleware
class Guard:
    """API key (constant-time compare), request-body cap, and request metrics — before any route runs."""

    def __init__(self, app: Any, config: ServeConfig, metrics: ServerMetrics):
        self.app = app
        self.config = config
        self.metrics = metrics
        self.key = config.api_key.encode() if config.api_key else None

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        endpoint = path if path in _ENDPOINTS else ("/v1/models" if path.startswith("/v1/models/") else
                                                    "/static" if path.startswith("/static/") else "other")
        started = time.monotonic()
        status_box = {"status": 500}

        async def send_wrapper(message: dict) -> None:
            if message["type"] == "http.response.start":
                status_box["status"] = message["status"]
            await send(message)

        try:
            refusal = self._refusal(scope, path)
            if refusal is not None:
                await refusal(scope, receive, send_wrapper)
                return
            await self.app(scope, self._capped(receive), send_wrapper)
        finally:
            status = status_box["status"]
            self.metrics.requests.labels(endpoint, str(status)).inc()
            if endpoint != "other":
                self.metrics.latency.labels(endpoint).observe(time.monotonic() - started)
            if status == 429:
                self.metrics.rejected.inc()

    def _refusal(self, scope: dict, path: str) -> Response | None:
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        if self.key is not None and path.startswith(_PROTECTED):
            given = headers.get("authorization", "")
            scheme, _, token = given.partition(" ")
            if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), self.key):
                err = Unauthorized("missing or wrong API key: send the header 'Authorization: Bearer <key>'",
                                   code="invalid_api_key")
                return JSONResponse(err.body(), status_code=401, headers={"WWW-Authenticate": "Bearer"})
        length = headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > self.config.max_body_bytes):
            return JSONResponse(_too_large(self.config.max_body_bytes).body(), status_code=413)
        return None

    def _capped(self, receive: Callable) -> Callable:
        limit, seen = self.config.max_body_bytes, [0]

        async def capped() -> dict:
            message = await receive()
            if message["type"] == "http.request":
                seen[0] += len(message.get("body", b""))
                if seen[0] > limit:
                    raise _too_large(limit)
            return message

        return capped


def _too_large(limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(f"the request body exceeds the server's limit of {limit} bytes (--max-body-mb)",
                           code="request_too_large")


# ------------------------------------------------------------------------------------------------ the app
def create_app(config: ServeConfig | None = None, *, pipeline: Any = None, model: Any = None,
               loader: Callable[[], Any] | None = None) -> FastAPI:
    """The server's ASGI app.

    Give exactly one of: ``pipeline`` (a ``VisualQAPipeline``; its model is used), ``model`` (a loaded
    ``core_model`` model; a pipeline without experts is built around it), or ``loader`` (a callable returning a
    pipeline, run in a background thread at start-up: requests get 503 until it returns). None: the default
    pipeline from ``config.load`` (``lav2 serve``'s model flags).
    """
    config = config or ServeConfig()
    if sum(x is not None for x in (pipeline, model, loader)) > 1:
        raise ValueError("give one of pipeline, model or loader")
    if model is not None:
        from ..pipeline import VisualQAPipeline

        pipeline = VisualQAPipeline(model, experts=[], max_new_tokens=config.default_max_tokens,
                                    temperature=config.default_temperature)
    background = pipeline is None
    host = ModelHost((lambda: pipeline) if pipeline is not None else (loader or _default_loader(config)),
                     {"max_batch_size": config.max_batch_size, "max_queue": config.max_pending})
    metrics = ServerMetrics(lambda: _engine_stats(host))
    admission = Admission(config.max_pending, config.retry_after)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if background:
            host.start()
        else:
            host.load_now()
            if host.error is not None:
                raise host.error
        yield

    app = FastAPI(title="lav2 serve", description="LLaMA-Adapter V2: OpenAI-compatible API and visual QA",
                  docs_url=None, redoc_url=None, lifespan=lifespan)  # the docs pages load assets from a CDN
    app.state.config, app.state.host, app.state.metrics, app.state.admission = config, host, metrics, admission
    _install_error_handlers(app)
    api = _Api(config, host, metrics, admission, served_model_id(config, pipeline))

    app.add_api_route("/v1/chat/completions", api.chat_completions, methods=["POST"])
    app.add_api_route("/v1/completions", api.completions, methods=["POST"])
    app.add_api_route("/v1/models", api.models, methods=["GET"])
    app.add_api_route("/v1/models/{model_id:path}", api.model, methods=["GET"])
    app.add_api_route("/v1/vqa", api.vqa, methods=["POST"])
    app.add_api_route("/v1/experts", api.experts, methods=["GET"])
    app.add_api_route("/health", api.health, methods=["GET"])
    app.add_api_route("/metrics", api.prometheus, methods=["GET"])
    app.add_api_route("/", api.page, methods=["GET"], include_in_schema=False)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.add_middleware(Guard, config=config, metrics=metrics)
    return app


def _default_loader(config: ServeConfig) -> Callable[[], Any]:
    def load() -> Any:
        from ..pipeline import VisualQAPipeline

        return VisualQAPipeline(**{"expert_workers": config.expert_workers, **config.load})

    return load


def _engine_stats(host: ModelHost) -> dict[str, Any] | None:
    engine = getattr(host.model, "engine", None) if host.ready.is_set() else None
    if engine is None or not hasattr(engine, "stats"):
        return None
    try:
        return dict(engine.stats())
    except Exception:  # noqa: BLE001 - a scrape must not fail because of one statistic
        log.debug("engine.stats() failed", exc_info=True)
        return None


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(APIError)
    async def api_error(request: Request, exc: APIError) -> JSONResponse:
        return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code)
        message = {404: f"no such endpoint: {request.method} {request.url.path}",
                   405: f"method {request.method} is not allowed on {request.url.path}"}.get(
            exc.status_code, str(exc.detail))
        return JSONResponse(error_body(message, "invalid_request_error", code), status_code=exc.status_code,
                            headers=getattr(exc, "headers", None))

    @app.exception_handler(ClientDisconnected)
    async def gone(request: Request, exc: ClientDisconnected) -> Response:
        return Response(status_code=CLIENT_GONE)

    async def known_error(request: Request, exc: Exception) -> JSONResponse:
        err = translate_error(exc, app.state.config.retry_after)
        if err is None:
            return await unexpected(request, exc)
        return JSONResponse(err.body(), status_code=err.status, headers=err.headers)

    from core_model.errors import LAV2Error
    from prompts import PromptError

    for cls in (LAV2Error, PromptError, *_engine_errors()):
        app.add_exception_handler(cls, known_error)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.error("%s %s failed", request.method, request.url.path, exc_info=exc)
        return JSONResponse(error_body("internal server error (details are in the server's log)", "server_error"),
                            status_code=500)


def _engine_errors() -> tuple[type[BaseException], ...]:
    try:
        from core_model.engine import QueueFullError
    except ImportError:
        return ()
    return (QueueFullError,)


# ------------------------------------------------------------------------------------------------ helpers
async def _json(request: Request) -> Any:
    raw = await request.body()
    try:
        return json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise BadRequest(f"the request body is not valid JSON ({e})") from None
    except RecursionError:  # "[[[[...]]]]": small enough for the body cap, too deep for the parser
        raise BadRequest("the request body is JSON nested too deeply") from None


async def _wait_disconnect(request: Request) -> None:
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return


async def run_or_disconnect(request: Request, awaitable: Awaitable[Any]) -> Any:
    """Await ``awaitable`` unless the client disconnects first; then cancel it and raise ClientDisconnected."""
    task = asyncio.ensure_future(awaitable)
    watcher = asyncio.ensure_future(_wait_disconnect(request))
    try:
        done, _ = await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
        if task in done:
            return task.result()
        task.cancel()
        with suppress(asyncio.CancelledError, Exception):
            await task
        raise ClientDisconnected()
    finally:
        watcher.cancel()
        if not task.done():
            task.cancel()


_END = object()


async def _next(iterator: AsyncIterator[Any]) -> Any:
    """The next item, or ``_END`` (a task must not raise StopAsyncIteration)."""
    try:
        return await iterator.__anext__()
    except StopAsyncIteration:
        return _END


class _Ticket:
    """A request's place in the server (released exactly once, whether the response is streamed or not)."""

    def __init__(self, admission: Admission, metrics: ServerMetrics):
        self.admission, self.metrics = admission, metrics
        admission.__enter__()  # 429 when full
        metrics.in_progress.inc()
        self._open = True

    def release(self) -> None:
        if self._open:
            self._open = False
            self.admission.__exit__(None, None, None)
            self.metrics.in_progress.dec()


class SSEResponse(StreamingResponse):
    """Server-sent events; the event generator is always closed (so a disconnect cancels its generation)."""

    def __init__(self, events: AsyncIterator[str], on_close: Callable[[], None] | None = None):
        super().__init__(events, media_type="text/event-stream",
                         headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
        self._events = events
        self._on_close = on_close

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            with suppress(Exception):
                await self._events.aclose()  # type: ignore[attr-defined]
            if self._on_close is not None:
                self._on_close()


def served_model_id(config: ServeConfig, pipeline: Any = None) -> str:
    """The id ``/v1/models`` lists: ``config.model_id``, else the base's name (``smollm2-135m``, a directory's
    or GGUF file's name, ``random:tiny``)."""
    if config.model_id:
        return config.model_id
    base = (getattr(pipeline, "_load_args", None) or {}).get("base") or config.load.get("model")
    if base is None and pipeline is not None:
        from .._model_cache import model_name

        base = model_name(pipeline.model)
    base = str(base or "smollm2-135m")
    if base.startswith("random:"):
        return base
    return (Path(base).name or base).removesuffix(".gguf")


def _prompt_length(model: Any, prompt: Any) -> int:
    ids = getattr(model, "_prompt_ids", None)
    if callable(ids):
        return len(ids([prompt])[0])
    return len(model.tokenizer.encode(prompt))


def _error_event(exc: BaseException, what: str) -> str:
    """An error inside a stream that has already started: one ``data: {"error": ...}`` event."""
    known = translate_error(exc)
    if known is None:
        log.error("%s failed", what, exc_info=exc)
        known = APIError("internal server error (details are in the server's log)", status=500, type="server_error")
    return sse(known.body())


# ------------------------------------------------------------------------------------------------ routes
class _Api:
    def __init__(self, config: ServeConfig, host: ModelHost, metrics: ServerMetrics, admission: Admission,
                 served: str):
        self.config, self.host, self.metrics, self.admission, self.served = config, host, metrics, admission, served

    # -- shared -------------------------------------------------------------------------------------------
    def _check_model(self, requested: str) -> str:
        if requested not in (self.served, "default"):
            raise NotFound(f"model {requested!r} is not served here: use {self.served!r} (or \"default\"); see "
                           "GET /v1/models", code="model_not_found", param="model")
        return self.served

    def _deadline(self) -> float:
        return time.monotonic() + self.config.request_timeout

    def _sampling(self, body: Any, prompt: Any, stops: list[str], max_new: int | None) -> dict[str, Any]:
        model = self.host.model
        if max_new is None:  # as much as fits, up to the server's default
            room = model.config.max_seq_len - _prompt_length(model, prompt)
            max_new = max(1, min(self.config.default_max_tokens, room))
        return {"max_new_tokens": int(max_new),
                "temperature": float(self.config.default_temperature if body.temperature is None
                                     else body.temperature),
                "top_p": float(1.0 if body.top_p is None else body.top_p),
                "top_k": int(body.top_k or 0), "stop": stops, "seed": body.seed}

    def _account(self, endpoint: str, started: float, generation: Generation | None) -> None:
        if generation is None:
            return
        if generation.first_token_at is not None:
            self.metrics.ttft.labels(endpoint).observe(generation.first_token_at - started)
        c = generation.completion
        if c is not None:
            self.metrics.tokens(c.prompt_tokens, c.completion_tokens)

    def _image_options(self) -> dict[str, bool]:
        return {"allow_local_files": self.config.allow_local_files, "allow_urls": self.config.allow_image_urls,
                "allow_private_urls": self.config.allow_private_urls}

    # -- chat ---------------------------------------------------------------------------------------------
    async def chat_completions(self, request: Request) -> Response:
        from .._common import image_for_model, merge_stop
        from ..chat_models import _ai_message, _normalise_tool_choice

        started = time.monotonic()
        body: ChatCompletionRequest = parse_body(ChatCompletionRequest, await _json(request))
        self.host.require()
        served = self._check_model(body.model)
        body.check_supported()
        messages, image_source = to_langchain_messages(body.messages)
        tools: list[dict[str, Any]] = []
        choice = None
        if body.tools and body.tool_choice != "none":
            from langchain_core.utils.function_calling import convert_to_openai_tool

            tools = [convert_to_openai_tool(t) for t in body.tools]
            try:
                choice = _normalise_tool_choice(body.tool_choice, [t["function"]["name"] for t in tools])
            except ValueError as e:
                raise BadRequest(str(e), param="tool_choice") from None
        ticket = _Ticket(self.admission, self.metrics)
        generation: Generation | None = None
        handed_off = False
        try:
            model = self.host.model
            image = None
            if image_source is not None:
                pil = await run_or_disconnect(request, open_request_image(image_source, param="messages",
                                                                          **self._image_options()))
                image, _ = image_for_model(model, pil, "warn", logging.INFO)
            # the chat model renders the conversation (prompt style, tool instructions, forced-call prefill)
            prompt, stops, _, _, prefill = self.host.chat._prepare(
                messages, merge_stop(body.stop_list), {"tools": tools, "tool_choice": choice})
            params = self._sampling(body, prompt, stops, body.max_new_tokens)
            generation = await Generation.start(model, prompt, image, params, self._deadline())
            rid, created = new_id("chatcmpl"), int(time.time())
            if body.stream and not tools:
                response = await self._chat_stream(request, body, generation, ticket, rid, created, served,
                                                   started)
                handed_off = True
                return response
            text = await run_or_disconnect(request, collect(generation))
            c = generation.completion
            content: str | None = prefill + text
            calls = None
            finish = c.finish_reason
            if tools:
                message = _ai_message(content, [t["function"]["name"] for t in tools])
                if message.tool_calls:
                    calls, finish = openai_tool_calls(message.tool_calls), "tool_calls"
                    content = message.content or None
            u = usage(c.prompt_tokens, c.completion_tokens)
            if body.stream:  # with tools a call is only known once complete: it arrives as one chunk
                return _whole_as_stream(body, rid, created, served, content, calls, finish, u)
            return JSONResponse(chat_completion(rid, served, content, finish, u, calls))
        finally:
            if not handed_off:
                if generation is not None and generation.completion is None:
                    generation.cancel()
                self._account("/v1/chat/completions", started, generation)
                ticket.release()

    async def _chat_stream(self, request: Request, body: ChatCompletionRequest, generation: Generation,
                           ticket: _Ticket, rid: str, created: int, served: str, started: float) -> Response:
        pieces = generation.pieces()
        # the first piece before the response starts, so queue-full, context and deadline errors keep their status
        first = await run_or_disconnect(request, _next(pieces))
        include = body.include_usage

        def chunk(delta: dict[str, Any] | None, finish: str | None = None, u: dict | None = None) -> str:
            return sse(chat_chunk(rid, served, created, delta, finish, u, include))

        async def events() -> AsyncIterator[str]:
            try:
                yield chunk({"role": "assistant", "content": "", "refusal": None})
                if first is not _END:
                    yield chunk({"content": first})
                    async for piece in pieces:
                        yield chunk({"content": piece})
                c = generation.completion
                yield chunk({}, c.finish_reason)
                if include:
                    yield chunk(None, None, usage(c.prompt_tokens, c.completion_tokens))
            except Exception as e:  # noqa: BLE001 - e.g. the deadline passed mid-stream: an error event, no trace
                yield _error_event(e, f"stream {rid}")
            finally:
                await pieces.aclose()  # cancels the generation if the client went away
            yield sse("[DONE]")

        def close() -> None:
            if generation.completion is None:
                generation.cancel()
            self._account("/v1/chat/completions", started, generation)
            ticket.release()

        return SSEResponse(events(), on_close=close)

    # -- completions --------------------------------------------------------------------------------------
    async def completions(self, request: Request) -> Response:
        started = time.monotonic()
        body: CompletionRequest = parse_body(CompletionRequest, await _json(request))
        self.host.require()
        served = self._check_model(body.model)
        body.check_supported()
        ticket = _Ticket(self.admission, self.metrics)
        generations: list[Generation] = []
        handed_off = False

        def finish() -> None:
            for g in generations:
                if g.completion is None:
                    g.cancel()
                self._account("/v1/completions", started, g)
            ticket.release()

        try:
            deadline = self._deadline()
            for prompt in body.prompts:
                params = self._sampling(body, prompt, body.stop_list, body.max_tokens)
                generations.append(await Generation.start(self.host.model, prompt, None, params, deadline))
            rid, created = new_id("cmpl"), int(time.time())
            if body.stream:
                handed_off = True
                return SSEResponse(self._completion_events(body, generations, rid, created, served),
                                   on_close=finish)
            texts = await run_or_disconnect(request, asyncio.gather(*(collect(g) for g in generations)))
            choices = [completion_choice(i, (p if body.echo else "") + t, g.completion.finish_reason)
                       for i, (p, t, g) in enumerate(zip(body.prompts, texts, generations))]
            u = usage(sum(g.completion.prompt_tokens for g in generations),
                      sum(g.completion.completion_tokens for g in generations))
            return JSONResponse(text_completion(rid, served, created, choices, u))
        finally:
            if not handed_off:
                finish()

    async def _completion_events(self, body: CompletionRequest, generations: list[Generation], rid: str,
                                 created: int, served: str) -> AsyncIterator[str]:
        include = body.include_usage
        queue: asyncio.Queue = asyncio.Queue()

        def event(choices: list[dict[str, Any]], u: dict[str, int] | None = None) -> str:
            return sse(text_completion(rid, served, created, choices, u, include))

        async def pump(index: int, g: Generation) -> None:
            try:
                async for piece in g.pieces():
                    await queue.put((index, piece, None))
                await queue.put((index, None, None))
            except Exception as e:  # noqa: BLE001 - handed to the consumer
                await queue.put((index, None, e))

        tasks = [asyncio.create_task(pump(i, g)) for i, g in enumerate(generations)]
        try:
            if body.echo:
                for i, p in enumerate(body.prompts):
                    yield event([completion_choice(i, p, None)])
            running = len(tasks)
            while running:
                index, piece, error = await queue.get()
                if error is not None:
                    raise error
                if piece is None:
                    running -= 1
                    yield event([completion_choice(index, "", generations[index].completion.finish_reason)])
                else:
                    yield event([completion_choice(index, piece, None)])
            if include:
                yield event([], usage(sum(g.completion.prompt_tokens for g in generations),
                                      sum(g.completion.completion_tokens for g in generations)))
        except Exception as e:  # noqa: BLE001
            yield _error_event(e, f"stream {rid}")
        finally:
            for t in tasks:
                t.cancel()
        yield sse("[DONE]")

    # -- models, experts, health, metrics, page -----------------------------------------------------------
    def _model_card(self) -> dict[str, Any]:
        card: dict[str, Any] = {"id": self.served, "object": "model", "created": int(self.host.started_at),
                                "owned_by": "lav2"}
        if self.host.ready.is_set():
            model = self.host.model
            info = model.describe() if hasattr(model, "describe") else {}
            card["lav2"] = {"base": info.get("base"), "adapter": info.get("adapter"),
                            "vision": bool(info.get("vision")), "weights": info.get("weights"),
                            "device": info.get("device"), "dtype": info.get("dtype"),
                            "prompt_style": info.get("prompt_style"), "context_length": model.config.max_seq_len}
        return card

    async def models(self) -> JSONResponse:
        return JSONResponse({"object": "list", "data": [self._model_card()]})

    async def model(self, model_id: str) -> JSONResponse:
        self._check_model(model_id)
        return JSONResponse(self._model_card())

    async def experts(self) -> JSONResponse:
        self.host.require()
        policy = self.host.pipeline.router.policy
        return JSONResponse({"object": "list", "data": self.host.experts,
                             "default_policy": policy if isinstance(policy, str) else ",".join(policy)})

    async def health(self) -> JSONResponse:
        host = self.host
        if host.ready.is_set():
            return JSONResponse({"status": "ok", "model": self.served, "load_seconds": host.load_seconds,
                                 "uptime_seconds": round(time.time() - host.started_at, 1),
                                 "requests_in_progress": self.admission.active})
        if host.error is not None:
            return JSONResponse({"status": "error", "error": str(host.error)}, status_code=503)
        return JSONResponse({"status": "loading"}, status_code=503, headers={"Retry-After": "2"})

    async def prometheus(self) -> Response:
        self.metrics.model_ready.set(1 if self.host.ready.is_set() else 0)
        return Response(self.metrics.render(), media_type=CONTENT_TYPE)

    async def page(self) -> Response:
        return FileResponse(STATIC / "index.html", media_type="text/html; charset=utf-8",
                            headers={"Content-Security-Policy": PAGE_CSP, "X-Content-Type-Options": "nosniff",
                                     "Referrer-Policy": "no-referrer", "Cache-Control": "no-cache"})

    # -- visual QA ----------------------------------------------------------------------------------------
    async def vqa(self, request: Request) -> Response:
        from ..pipeline import VQAResult, _describe_source

        started = time.monotonic()
        body: VQARequest = parse_body(VQARequest, await _json(request))
        self.host.require()
        ticket = _Ticket(self.admission, self.metrics)
        chunks: Any = None
        handed_off = False
        try:
            image = None
            if body.image is not None:
                image = await run_or_disconnect(request, open_request_image(body.image, param="image",
                                                                            **self._image_options()))
            # the pipeline's whole run (router, experts, answer) happens on one worker thread
            chunks = _deadlined(self.host.pipeline.astream(
                {"image": image, "question": body.question, "experts": body.experts, "history": body.history,
                 **({"answer_mode": body.answer_mode} if body.answer_mode else {})}),
                self._deadline())
            first = await run_or_disconnect(request, _next(chunks))
            if first is _END:
                raise APIError("the pipeline returned nothing", status=500, type="server_error")
            first["image"] = _describe_source(body.image)
            if body.stream:
                handed_off = True
                return SSEResponse(self._vqa_events(first, chunks, started), on_close=ticket.release)

            async def rest(result: Any) -> Any:
                async for chunk in chunks:
                    result = result + chunk
                return result

            result = await run_or_disconnect(request, rest(VQAResult(first)))
            result["answer"] = str(result.get("answer", "")).strip()
            self._vqa_tokens(result)
            return JSONResponse(_jsonable(result))
        finally:
            if not handed_off:
                if chunks is not None:
                    await chunks.aclose()
                ticket.release()

    def _vqa_tokens(self, result: Any) -> None:
        u = result.get("usage") or {}
        self.metrics.tokens(u.get("prompt_tokens", 0), u.get("completion_tokens", 0))

    async def _vqa_events(self, first: Any, chunks: Any, started: float) -> AsyncIterator[str]:
        answered = False
        try:
            yield sse(_jsonable(first))
            async for chunk in chunks:
                if "answer" in chunk and not answered:
                    answered = True
                    self.metrics.ttft.labels("/v1/vqa").observe(time.monotonic() - started)
                if "usage" in chunk:
                    self._vqa_tokens(chunk)
                yield sse(_jsonable(chunk))
        except Exception as e:  # noqa: BLE001
            yield _error_event(e, "vqa stream")
        finally:
            await chunks.aclose()
        yield sse("[DONE]")


def _whole_as_stream(body: ChatCompletionRequest, rid: str, created: int, served: str, content: str | None,
                     calls: list | None, finish: str, u: dict[str, int]) -> Response:
    """A finished answer (a tool call) as the stream a client asked for: role, the whole delta, finish, usage."""
    include = body.include_usage

    async def events() -> AsyncIterator[str]:
        yield sse(chat_chunk(rid, served, created, {"role": "assistant", "content": ""}, None, None, include))
        delta: dict[str, Any] = {}
        if content:
            delta["content"] = content
        if calls:
            delta["tool_calls"] = [{"index": i, **call} for i, call in enumerate(calls)]
        yield sse(chat_chunk(rid, served, created, delta, None, None, include))
        yield sse(chat_chunk(rid, served, created, {}, finish, None, include))
        if include:
            yield sse(chat_chunk(rid, served, created, None, None, u, include))
        yield sse("[DONE]")

    return SSEResponse(events())


def _jsonable(chunk: Any) -> dict[str, Any]:
    return json.loads(json.dumps(dict(chunk), ensure_ascii=False, default=str))


async def _deadlined(source: AsyncIterator[Any], deadline: float) -> AsyncIterator[Any]:
    """``source``'s items until ``deadline``; then :class:`Timeout` (and ``source`` is closed)."""
    it = source.__aiter__()
    try:
        while True:
            remaining = deadline - time.monotonic()
            try:
                if remaining <= 0:
                    raise asyncio.TimeoutError
                item = await asyncio.wait_for(it.__anext__(), remaining)
            except StopAsyncIteration:
                return
            except asyncio.TimeoutError:
                raise Timeout("the request took longer than the server's --request-timeout and was "
                              "cancelled") from None
            yield item
    finally:
        with suppress(Exception):
            await it.aclose()  # type: ignore[attr-defined]
