"""A continuous-batching generation engine: one per loaded model, owning the KV cache and the decode loop.

Every generation of a model — ``AdapterV2Model.generate`` / ``stream``, the LangChain wrappers, ``lav2 batch``,
the HTTP server — is a request submitted to its engine. One background thread runs the loop:

1. **Admit** queued requests into free slots while the batch has room (``max_batch_size``) and the tokens in
   flight (prompt + ``max_new_tokens`` of every admitted request) stay within ``max_tokens_in_flight``.
2. **Prefill** newcomers, at most ``prefill_chunk`` prompt tokens per iteration (a long prompt is split over
   several iterations), so the requests already decoding are not stalled for long.
3. **Decode** one token for every decoding request in ONE batched forward. Each row has its own position and
   KV length (``Transformer.forward(positions=..., start=<per-row column>)``), its own sampling parameters,
   seed, stop strings and token budget. A request that arrives while others decode joins at the next step;
   a finished or cancelled one leaves at once and its slot is reused.

The KV cache is one preallocated buffer per layer, ``(max_batch_size, kv_heads, width, head_dim)``, a slot (row)
per request; ``width`` grows (by whole chunks, amortised, never per step) to the longest admitted request.
Decoding requests always occupy the first slots (a finished row's slot is refilled by moving the last row into
it), so a step works on plain views of the buffers — no gather of caches per step. Each slot also holds its
request's prompt keys/values (adaption prompts, and its image's visual prompt), so requests with and without an
image decode together: a row without an image has zero visual values, which adds exactly nothing.

Greedy output does not depend on what else is in the batch: every row computes what it computes alone (tested
with staggered arrivals, cancellation and failing requests).
"""
from __future__ import annotations

import asyncio
import atexit
import collections
import itertools
import logging
import threading
import time
import weakref
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, AsyncIterator, Callable, Iterator, Sequence

import torch

from .errors import ConfigError, LAV2Error
from .fastpath import decode_step
from .generation import Completion, SamplingParams, TextStreamer, check_context, sample
from .model import LayerCache

if TYPE_CHECKING:
    from .api import AdapterV2Model

log = logging.getLogger(__name__)

__all__ = ["Engine", "EngineConfig", "EngineClosedError", "QueueFullError", "RequestHandle"]


class QueueFullError(LAV2Error):
    """The engine's bounded queue is full: retry later (an HTTP server answers 429)."""


class EngineClosedError(LAV2Error):
    """The engine was closed; no request can be submitted or finished."""


@dataclass(frozen=True)
class EngineConfig:
    """Limits of one engine. Memory: the KV cache holds ``max_batch_size`` rows of the longest admitted request.

    max_batch_size: requests decoded together in one step (1 = one at a time).
    max_tokens_in_flight: the sum of prompt + ``max_new_tokens`` over admitted requests; later ones wait.
        ``None``: ``max_batch_size`` x 2048, at least the model's context.
    max_queue: requests waiting for a slot; :meth:`Engine.submit` raises :class:`QueueFullError` beyond it.
    prefill_chunk: prompt tokens prefilled per loop iteration between two decode steps.
    prefix_cache_tokens: keys/values of up to this many prompt tokens are kept, in blocks of
        :data:`PREFIX_BLOCK` tokens, so a request whose prompt starts like an earlier one (a system prompt, a
        template, a shared context) skips that part of its prefill. Text-only requests (an image changes every
        layer's keys); 0 turns it off.
    threads: CPU threads of the engine's products and decode steps. ``None``: ``torch.get_num_threads()`` of
        the thread that creates the engine, fixed. An int: that many. A callable: evaluated before every
        forward (each prefill chunk, each decode step, each engine call), so the count can follow the CPU load
        of other work in the process — ``lav2 batch`` and the server pass one that returns
        ``max(1, cores - running experts)`` (:class:`orchestrator.load.CpuLoad`): a decode step split over two
        threads while a Tesseract process takes one of two cores runs slower than on one thread
        (``bench/contention.py``). Greedy output does not depend on the count. The count is set on the engine
        thread (``torch.set_num_threads``; OpenMP thread counts are per calling thread, and torch hands the last
        count set to threads that start later).
    """

    max_batch_size: int = 8
    max_tokens_in_flight: int | None = None
    max_queue: int = 1024
    prefill_chunk: int = 256
    prefix_cache_tokens: int = 1024
    threads: int | Callable[[], int] | None = None

    def __post_init__(self) -> None:
        for name in ("max_batch_size", "max_queue", "prefill_chunk"):
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.max_tokens_in_flight is not None and self.max_tokens_in_flight < 1:
            raise ConfigError(f"max_tokens_in_flight must be >= 1, got {self.max_tokens_in_flight}")
        if self.prefix_cache_tokens < 0:
            raise ConfigError(f"prefix_cache_tokens must be >= 0, got {self.prefix_cache_tokens}")
        t = self.threads
        if t is not None and not callable(t) and (isinstance(t, bool) or not isinstance(t, int) or t < 1):
            raise ConfigError(f"threads must be None, an int >= 1 or a callable returning one, got {t!r}")


#: tokens per prefix-cache block: a prompt's prefix is reused in whole blocks
PREFIX_BLOCK = 16


class _PrefixCache:
    """Keys/values of prompt prefixes, in blocks, shared by requests whose prompts start alike (LRU).

    A block is keyed by the hash chain of every token before and in it, so a hit means the whole prefix is the
    same; and by the model's parameter versions, so keys computed before an adapter changed (training samples,
    ``apply_adapter_state``) are never reused. Values: (n_layers, 2, kv_heads, PREFIX_BLOCK, head_dim).
    Reused keys equal recomputed ones up to float summation order.
    """

    def __init__(self, capacity_tokens: int):
        self.capacity = capacity_tokens // PREFIX_BLOCK
        self.blocks: collections.OrderedDict[tuple, torch.Tensor] = collections.OrderedDict()

    @staticmethod
    def keys(ids: Sequence[int], n_blocks: int, version: int) -> list[tuple]:
        out, h = [], hash(("lav2-prefix", version))
        for b in range(n_blocks):
            block = tuple(ids[b * PREFIX_BLOCK:(b + 1) * PREFIX_BLOCK])
            h = hash((h, block))
            out.append((version, h, block))  # the block's own tokens compared exactly, the ones before by hash
        return out

    def lookup(self, keys: list[tuple]) -> list[torch.Tensor]:
        found = []
        for key in keys:
            block = self.blocks.get(key)
            if block is None:
                break
            self.blocks.move_to_end(key)
            found.append(block)
        return found

    def insert(self, key: tuple, block: torch.Tensor) -> None:
        if self.capacity <= 0:
            return
        self.blocks[key] = block
        self.blocks.move_to_end(key)
        while len(self.blocks) > self.capacity:
            self.blocks.popitem(last=False)


# ------------------------------------------------------------------------------------------------ handles
class RequestHandle:
    """A submitted request: iterate it for text pieces (``for`` or ``async for``), wait with :meth:`result`,
    stop it with :meth:`cancel`. Thread-safe; several consumers may wait on one handle."""

    def __init__(self, engine: Engine, request_id: int, prompt_tokens: int):
        self.id = request_id
        self.prompt_tokens = prompt_tokens
        self._engine = weakref.ref(engine)
        self._cond = threading.Condition()
        self._pieces: list[str] = []
        self._completion: Completion | None = None
        self._error: BaseException | None = None
        self._async_waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future]] = []
        self.cancelled = False

    # -- engine side ------------------------------------------------------------------------------------
    def _push(self, piece: str) -> None:
        with self._cond:
            self._pieces.append(piece)
            self._wake()

    def _finish(self, completion: Completion | None, error: BaseException | None = None) -> None:
        with self._cond:
            if self.done:
                return
            self._completion, self._error = completion, error
            self._wake()

    def _wake(self) -> None:  # holds self._cond
        self._cond.notify_all()
        waiters, self._async_waiters = self._async_waiters, []
        for loop, fut in waiters:
            try:
                loop.call_soon_threadsafe(_set_if_pending, fut)
            except RuntimeError:  # the loop was closed meanwhile
                pass

    # -- consumer side ----------------------------------------------------------------------------------
    @property
    def done(self) -> bool:
        return self._completion is not None or self._error is not None

    def cancel(self) -> None:
        """Stop generating: the request leaves the batch at the next step; iteration then ends and
        :meth:`result` returns what was generated with ``finish_reason="cancelled"``."""
        self.cancelled = True
        engine = self._engine()
        if engine is not None:
            engine._wake()

    def result(self, timeout: float | None = None) -> Completion:
        """Wait for the whole completion (raises the request's error, or ``TimeoutError``)."""
        with self._cond:
            if not self._cond.wait_for(lambda: self.done, timeout):
                raise TimeoutError(f"request {self.id} did not finish within {timeout}s")
        if self._error is not None:
            raise self._error
        assert self._completion is not None
        return self._completion

    def __iter__(self) -> Iterator[str]:
        i = 0
        while True:
            with self._cond:
                self._cond.wait_for(lambda: len(self._pieces) > i or self.done)
                pieces, finished = self._pieces[i:], self.done and len(self._pieces) <= i + len(self._pieces[i:])
            for piece in pieces:
                yield piece
            i += len(pieces)
            if finished and not pieces:
                break
        if self._error is not None:
            raise self._error

    async def __aiter__(self) -> AsyncIterator[str]:
        loop = asyncio.get_running_loop()
        i = 0
        while True:
            with self._cond:
                pieces = self._pieces[i:]
                finished = self.done
                fut = None
                if not pieces and not finished:
                    fut = loop.create_future()
                    self._async_waiters.append((loop, fut))
            if fut is not None:
                await fut
                continue
            for piece in pieces:
                yield piece
            i += len(pieces)
            if finished and not pieces:
                break
        if self._error is not None:
            raise self._error

    async def aresult(self) -> Completion:
        """:meth:`result` for an event loop (does not block it)."""
        async for _ in self:
            pass
        return self.result(timeout=0)

    def __repr__(self) -> str:
        state = "done" if self.done else ("cancelled" if self.cancelled else "running")
        return f"RequestHandle(id={self.id}, {state}, {len(self._pieces)} pieces)"


def _set_if_pending(fut: asyncio.Future) -> None:
    if not fut.done():
        fut.set_result(None)


# ------------------------------------------------------------------------------------------------ requests
@dataclass(eq=False)
class _Request:
    handle: RequestHandle
    ids: list[int]
    params: SamplingParams
    streamer: TextStreamer
    visual: torch.Tensor | None  # (1, N_v, dim) visual prompt tokens, or None
    generator: torch.Generator | None
    ignore_eos: bool = False
    submitted: float = field(default_factory=time.perf_counter)
    slot: int = -1
    filled: int = 0  # tokens in this slot's cache
    last: int = -1  # the last sampled token, input of the next decode step
    count: int = 0  # tokens generated
    finish: str | None = None

    @property
    def need(self) -> int:
        return len(self.ids) + self.params.max_new_tokens

    @property
    def prefilled(self) -> bool:
        return self.filled >= len(self.ids)


class _Call:
    """A function to run on the engine thread between two steps (scoring forwards share the model safely)."""

    def __init__(self, fn: Callable[[], Any]):
        self.fn = fn
        self.event = threading.Event()
        self.value: Any = None
        self.error: BaseException | None = None


# ------------------------------------------------------------------------------------------------ engine
class Engine:
    """Continuous batching for one :class:`~core_model.api.AdapterV2Model` (see the module docstring).

    Created lazily by ``model.engine``; ``Engine(model, EngineConfig(max_batch_size=16))`` for other limits.
    The loop thread starts on the first request and is a daemon (it never keeps a process alive).
    """

    _WIDTH_STEP = 256

    def __init__(self, model: AdapterV2Model, config: EngineConfig | None = None):
        self.model = model
        self.llm = model.llm
        self.config = config or EngineConfig()
        ctx = int(self.llm.config.max_seq_len)
        self.max_tokens_in_flight = self.config.max_tokens_in_flight or max(ctx, self.config.max_batch_size * 2048)
        self._ids = itertools.count(1)
        self._cond = threading.Condition()
        self._queue: collections.deque[_Request] = collections.deque()
        self._calls: collections.deque[_Call] = collections.deque()
        self._rows: list[_Request] = []  # admitted, by slot: decoding rows first, then prefilling ones
        self._thread: threading.Thread | None = None
        self._closed = False
        self._width = 0
        self._k: list[torch.Tensor] = []
        self._v: list[torch.Tensor] = []
        self._pk: list[dict[str, tuple[torch.Tensor, torch.Tensor]]] = []
        self._views: dict[tuple[int, int, bool], list[LayerCache]] = {}
        self._fast: Any = None  # the C decode step over the slot buffers (core_model/fastpath.py), or False
        self._prefix = _PrefixCache(self.config.prefix_cache_tokens)
        self.counters = collections.Counter()
        #: the thread count of ``threads=None``, and the fallback when a ``threads`` callable fails
        self.base_threads = max(1, torch.get_num_threads())
        self.threads = 0  # the count the current iteration runs with (set on the engine thread)
        self._threads_warned = False

    # -- public ---------------------------------------------------------------------------------------------
    def submit(self, prompt: str | Sequence[int], image: Any = None, *, max_new_tokens: int = 256,
               temperature: float = 0.0, top_p: float = 1.0, top_k: int = 0, stop: Sequence[str] = (),
               seed: int | None = None, visual: torch.Tensor | None = None,
               ignore_eos: bool = False) -> RequestHandle:
        """Queue one generation and return its handle at once.

        ``prompt``: a formatted prompt string (see the ``prompts`` package) or token ids. ``image``: one image
        (encoded here, on the caller's thread, into the visual prefix; needs vision weights) or ``visual``: its
        visual prompt tokens (1, N_v, dim). ``ignore_eos``: generate exactly ``max_new_tokens`` (benchmarks; EOS
        tokens are then kept in ``token_ids`` and left out of the text). Raises ``ConfigError``/``ContextLengthError``/``ImageError`` for a bad
        request and :class:`QueueFullError` when the queue is full.
        """
        if self._closed:
            raise EngineClosedError("the engine was closed: load the model again")
        if self._thread is not None and threading.current_thread() is self._thread:
            raise ConfigError("a generation cannot be submitted from inside an engine call (it would wait for itself)")
        params = SamplingParams(max_new_tokens, temperature, top_p, top_k, seed)
        ids = list(prompt) if not isinstance(prompt, str) else self.model._prompt_ids([prompt])[0]
        if not ids:
            raise ConfigError("the prompt is empty: it must have at least one token")
        check_context(self.llm, len(ids), params.max_new_tokens)
        if image is not None:
            visual = self.model.encode_images([image])
        if visual is not None:
            visual = visual.reshape(1, *visual.shape[-2:]).to(self.llm.device, self.llm.dtype)
        generator = None
        if seed is not None:
            generator = torch.Generator(device=self.llm.device).manual_seed(seed)
        with self._cond:
            if len(self._queue) >= self.config.max_queue:
                self.counters["rejected"] += 1
                raise QueueFullError(f"the generation queue is full ({self.config.max_queue} waiting): retry later")
            handle = RequestHandle(self, next(self._ids), len(ids))
            self._queue.append(_Request(handle, ids, params, TextStreamer(self.model.tokenizer, stop), visual,
                                        generator, ignore_eos=ignore_eos))
            self.counters["submitted"] += 1
            self._ensure_thread()
            self._cond.notify_all()
        return handle

    def call(self, fn: Callable[[], Any], timeout: float | None = None) -> Any:
        """Run ``fn()`` on the engine thread between two steps and return its result (scoring forwards: they
        then never compete with decode steps for the model or the cores). Runs inline when called from the
        engine thread itself."""
        if self._thread is not None and threading.current_thread() is self._thread:
            return fn()
        if self._closed:
            raise EngineClosedError("the engine was closed: load the model again")
        job = _Call(fn)
        with self._cond:
            self._calls.append(job)
            self._ensure_thread()
            self._cond.notify_all()
        if not job.event.wait(timeout):
            raise TimeoutError(f"engine call did not run within {timeout}s")
        if job.error is not None:
            raise job.error
        return job.value

    def stats(self) -> dict[str, Any]:
        """Queue depth, rows, tokens in flight and counters (for logs and ``/metrics``)."""
        with self._cond:
            rows = list(self._rows)
            return {"queue_depth": len(self._queue), "active": len(rows),
                    "decoding": sum(r.prefilled for r in rows), "max_batch_size": self.config.max_batch_size,
                    "tokens_in_flight": sum(r.need for r in rows), "max_tokens_in_flight": self.max_tokens_in_flight,
                    "kv_width": self._width, "threads": self.threads, **self.counters}

    def close(self, timeout: float = 10.0) -> None:
        """Stop the loop; unfinished requests fail with :class:`EngineClosedError`."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
        self._fail_all(EngineClosedError("the engine was closed"))

    @property
    def idle(self) -> bool:
        with self._cond:
            return not self._rows and not self._queue and not self._calls

    # -- loop -----------------------------------------------------------------------------------------------
    def _wake(self) -> None:
        with self._cond:
            self._cond.notify_all()

    def _ensure_thread(self) -> None:  # holds self._cond
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._loop, name="lav2-engine", daemon=True)
            _LIVE_ENGINES.add(self)
            self._thread.start()

    def _loop(self) -> None:
        with torch.inference_mode():
            while True:
                with self._cond:
                    self._cond.wait_for(lambda: self._closed or self._queue or self._calls or self._rows
                                        or False)
                    if self._closed:
                        return
                try:
                    self._iteration()
                except Exception as exc:  # noqa: BLE001 - a broken step fails its requests, never the loop
                    log.exception("generation step failed; failing the requests in it")
                    self._fail_rows(list(self._rows), exc)

    def _iteration(self) -> None:
        self._set_threads()
        self._run_calls()
        self._drop_cancelled()
        self._admit()
        self._prefill()
        self._decode()

    def _thread_count(self) -> int:
        """``config.threads`` now: an int, a callable's value, or :attr:`base_threads` (also when the callable
        fails or returns something that is not a positive int: logged once)."""
        spec = self.config.threads
        if spec is None:
            return self.base_threads
        if not callable(spec):
            return int(spec)
        try:
            n = spec()
            if isinstance(n, bool) or not isinstance(n, int):
                raise TypeError(f"returned {n!r}, not an int")
            return max(1, n)
        except Exception as exc:  # noqa: BLE001 - a broken load probe must not stop generation
            if not self._threads_warned:
                self._threads_warned = True
                log.warning("engine threads callable failed (%s); using %d threads", exc, self.base_threads)
            return self.base_threads

    def _set_threads(self) -> None:
        """Set the thread count of the next forward on the engine thread (torch products, the C decode step)."""
        n = self._thread_count()
        if n != self.threads or torch.get_num_threads() != n:
            torch.set_num_threads(n)
            self.threads = n

    def _run_calls(self) -> None:
        while True:
            with self._cond:
                if not self._calls:
                    return
                job = self._calls.popleft()
            try:
                job.value = job.fn()
            except BaseException as exc:  # noqa: BLE001 - handed to the caller
                job.error = exc
            job.event.set()

    def _drop_cancelled(self) -> None:
        with self._cond:
            kept = collections.deque()
            for req in self._queue:
                if req.handle.cancelled:
                    req.finish = "cancelled"
                    self._complete(req)
                else:
                    kept.append(req)
            self._queue = kept
        for req in [r for r in self._rows if r.handle.cancelled]:
            req.finish = "cancelled"
            self._release(req)

    def _admit(self) -> None:
        admitted = []
        with self._cond:
            while self._queue and len(self._rows) < self.config.max_batch_size:
                req = self._queue[0]
                in_flight = sum(r.need for r in self._rows)
                if self._rows and in_flight + req.need > self.max_tokens_in_flight:
                    break
                self._queue.popleft()
                req.slot = len(self._rows)
                self._rows.append(req)
                admitted.append(req)
        for req in admitted:
            try:
                self._start_request(req)
            except Exception as exc:  # noqa: BLE001 - e.g. a visual prefix of the wrong shape: this request only
                log.warning("request %d failed to start: %s", req.handle.id, exc)
                self._remove(req, exc)

    def _start_request(self, req: _Request) -> None:
        """Make room for the request and put its prompt keys/values into its slot."""
        self._ensure_width(req.need)
        self._fast = None  # rebuilt on the next step: it reads the adapter parameters as they are now
        prompt_kv = self.llm.prompt_kv(req.visual)
        for layer, bufs in enumerate(self._pk):
            mine = prompt_kv[layer]
            for key, (bk, bv) in bufs.items():
                if key in mine:
                    bk[req.slot].copy_(mine[key][0][0])
                    bv[req.slot].copy_(mine[key][1][0])
                else:  # no image: zero visual values add exactly nothing to this row's attention output
                    bk[req.slot].zero_()
                    bv[req.slot].zero_()
        self._reuse_prefix(req)

    # -- prefix cache ---------------------------------------------------------------------------------------
    def _prefix_keys(self, ids: Sequence[int], n_tokens: int, visual: torch.Tensor | None) -> list[tuple]:
        if self._prefix.capacity <= 0 or visual is not None:
            return []
        version = sum(p._version for p in self.llm.parameters())
        return _PrefixCache.keys(ids, n_tokens // PREFIX_BLOCK, version)

    def reuse_prefix(self, ids: Sequence[int], visual: torch.Tensor | None, k: Sequence[torch.Tensor],
                     v: Sequence[torch.Tensor], row: int) -> int:
        """Copy the cached keys/values of the longest known prefix of ``ids`` into row ``row`` of the per-layer
        cache tensors ``k``/``v`` (B, kv_heads, width, head_dim); returns how many tokens that covers. The last
        token is always left to compute (its logits are what the caller wants). Text-only prompts (``visual``
        None): an image changes every layer's keys. Engine thread only (requests and :meth:`call` functions)."""
        blocks = self._prefix.lookup(self._prefix_keys(ids, len(ids) - 1, visual))
        for b, block in enumerate(blocks):
            cols = slice(b * PREFIX_BLOCK, (b + 1) * PREFIX_BLOCK)
            for layer, (kl, vl) in enumerate(zip(k, v)):
                kl[row, :, cols] = block[layer, 0]
                vl[row, :, cols] = block[layer, 1]
        return len(blocks) * PREFIX_BLOCK

    def store_prefix(self, ids: Sequence[int], visual: torch.Tensor | None, k: Sequence[torch.Tensor],
                     v: Sequence[torch.Tensor], row: int) -> None:
        """After a prefill of ``ids`` into row ``row`` of ``k``/``v``: keep its whole blocks for later prompts that
        start alike (engine thread only)."""
        for b, key in enumerate(self._prefix_keys(ids, len(ids), visual)):
            if key in self._prefix.blocks:
                self._prefix.blocks.move_to_end(key)
                continue
            cols = slice(b * PREFIX_BLOCK, (b + 1) * PREFIX_BLOCK)
            self._prefix.insert(key, torch.stack([torch.stack([kl[row, :, cols], vl[row, :, cols]])
                                                  for kl, vl in zip(k, v)]))

    def _reuse_prefix(self, req: _Request) -> None:
        """Copy the cached keys/values of the request's longest known prefix into its slot."""
        req.filled = self.reuse_prefix(req.ids, req.visual, self._k, self._v, req.slot)
        self.counters["prefix_hit_tokens"] += req.filled

    def _remember_prefix(self, req: _Request) -> None:
        """After a prefill: keep the prompt's whole blocks for later requests."""
        self.store_prefix(req.ids, req.visual, self._k, self._v, req.slot)

    def _prefill(self) -> None:
        budget = self.config.prefill_chunk
        while budget > 0:
            req = next((r for r in self._rows if not r.prefilled), None)  # the first prefilling slot
            if req is None:
                return
            n = min(budget, len(req.ids) - req.filled)
            self._set_threads()  # per forward: an iteration can prefill several prompts
            try:
                logits = self._forward_slot(req, n)
            except Exception as exc:  # noqa: BLE001 - one request's failure does not disturb the others
                log.warning("request %d failed in prefill: %s", req.handle.id, exc)
                self._remove(req, exc)
                continue
            budget -= n
            self.counters[f"prefill_tokens_at_{self.threads}_threads"] += n
            if req.prefilled:  # it sits right after the decoding rows, so it simply becomes one of them
                self._remember_prefix(req)
                self._emit(req, int(sample(logits, req.params, req.generator)[0]))

    def _c_step(self) -> Any:
        """The C step over the slot buffers (packed GGUF models it covers), built on first use after a change of
        the buffers or the adapter; None when the torch path runs."""
        if self._fast is None:
            self._fast = decode_step(self.llm, self._k, self._v, self._pk) or False
        return self._fast or None

    def _forward_slot(self, req: _Request, n: int) -> torch.Tensor:
        """Prefill the next ``n`` prompt tokens of ``req`` into its slot (batch 1, positions filled..filled+n).

        Packed models whose whole step runs in C prefill there too: the ``n`` tokens as ``n`` rows of one cache
        row at consecutive positions, the LM head for the last only. (The torch path spends ~15-20 ms per forward
        dispatching its ~600 small operations: as much as the products of a short prompt remainder after a prefix
        cache hit.)"""
        start = req.filled
        step = self._c_step()
        if step is not None:
            ids = torch.tensor(req.ids[start:start + n], dtype=torch.long)
            pos = torch.arange(start, start + n, dtype=torch.int64)
            logits = step(ids, pos, rows=torch.full((n,), req.slot, dtype=torch.int64),
                          threads=self.threads or None, last_only=True)
            self.counters["c_prefill_tokens"] += n
        else:
            tokens = torch.tensor([req.ids[start:start + n]], dtype=torch.long, device=self.llm.device)
            cache = _SlotView(self._slot_layers(req.slot))
            logits = self.llm(tokens, start=start, cache=cache, last_only=True)[:, -1]
        req.filled += n
        return logits

    def _decode(self) -> None:
        rows = [r for r in self._rows if r.prefilled]
        if not rows:
            return
        n = len(rows)
        assert all(r.slot == i for i, r in enumerate(rows)), "decoding rows must occupy the first slots"
        self._set_threads()
        dev = self.llm.device
        tokens = torch.tensor([[r.last] for r in rows], dtype=torch.long, device=dev)
        pos_list = [r.filled for r in rows]
        step = self._c_step()
        if step is not None:
            pos = torch.tensor(pos_list, dtype=torch.long)
            logits = step(tokens[:, 0], pos, threads=self.threads or None)
            self.counters["c_steps"] += 1
        elif n == 1:
            cache = _SlotView(self._batch_layers(n, any(r.visual is not None for r in rows)))
            logits = self.llm(tokens, start=pos_list[0], cache=cache, last_only=True)[:, -1]
        else:
            cache = _SlotView(self._batch_layers(n, any(r.visual is not None for r in rows)))
            pos = torch.tensor(pos_list, dtype=torch.long, device=dev)
            kv_len = max(pos_list) + 1
            mask = (torch.arange(kv_len, device=dev)[None, :] <= pos[:, None])[:, None, None, :]
            logits = self.llm(tokens, start=pos, positions=pos[:, None], cache=cache, attn_mask=mask,
                              kv_len=kv_len, last_only=True)[:, -1]
        for r in rows:
            r.filled += 1
        self.counters["steps"] += 1
        self.counters[f"steps_at_{self.threads}_threads"] += 1
        self.counters["rows_decoded"] += n
        greedy = [i for i, r in enumerate(rows) if r.params.temperature == 0]
        picks: dict[int, int] = {}
        if greedy:
            best = logits[greedy].argmax(dim=-1).tolist()
            picks.update(zip(greedy, best))
        for i, r in enumerate(rows):
            if i not in picks:
                picks[i] = int(sample(logits[i:i + 1], r.params, r.generator)[0])
        for i, r in enumerate(rows):
            self._emit(r, picks[i])

    def _emit(self, req: _Request, tok: int) -> None:
        """Account one sampled token: EOS, stop strings, budget; stream its text; release a finished row."""
        req.count += 1
        req.last = tok
        self.counters["tokens"] += 1
        eos = self.model.tokenizer.eos_ids
        if tok in eos and not req.ignore_eos:
            req.finish = "stop"
        else:
            try:
                piece = req.streamer.push(tok)
            except Exception as exc:  # noqa: BLE001 - a tokenizer failure is this request's alone
                self._fail_rows([req], exc)
                return
            if piece:
                req.handle._push(piece)
            if req.streamer.stopped:
                req.finish = "stop"
            elif req.count >= req.params.max_new_tokens:
                req.finish = "length"
        if req.finish is None and req.handle.cancelled:
            req.finish = "cancelled"
        if req.finish is not None:
            self._release(req)

    # -- slots ----------------------------------------------------------------------------------------------
    def _release(self, req: _Request) -> None:
        """A finished or cancelled row leaves; its handle completes."""
        self._remove(req)
        self._complete(req)

    def _remove(self, req: _Request, error: BaseException | None = None) -> None:
        """Take a row out of its slot, keeping the invariant: decoding rows in the first slots, then the
        prefilling ones, no holes. At most two rows move (their used cache columns are copied)."""
        if req in self._rows:
            rows = self._rows
            n_dec = sum(1 for r in rows if r.prefilled)
            hole = req.slot
            if req.prefilled and hole != n_dec - 1:  # the last decoding row fills the hole
                self._move_row(rows[n_dec - 1], hole)
                hole = n_dec - 1
            if hole != len(rows) - 1:  # the last prefilling row fills the hole left behind the decoding rows
                self._move_row(rows[-1], hole)
            rows.remove(req)
            rows.sort(key=lambda r: r.slot)
            req.slot = -1
        if error is not None:
            req.finish = "error"
            self.counters["failed"] += 1
            req.handle._finish(None, error)

    def _move_row(self, req: _Request, slot: int) -> None:
        for k, v in zip(self._k, self._v):
            k[slot, :, :req.filled] = k[req.slot, :, :req.filled]
            v[slot, :, :req.filled] = v[req.slot, :, :req.filled]
        for bufs in self._pk:
            for bk, bv in bufs.values():
                bk[slot] = bk[req.slot]
                bv[slot] = bv[req.slot]
        req.slot = slot

    def _ensure_width(self, need: int) -> None:
        """Grow every slot to hold ``need`` tokens (whole chunks; existing columns are kept)."""
        if need <= self._width and self._k:
            return
        cfg = self.llm.config
        width = min(max(need, self._width) + (-max(need, self._width)) % self._WIDTH_STEP, int(cfg.max_seq_len))
        width = max(width, need)
        B, H, D = self.config.max_batch_size, int(cfg.n_kv_heads), cfg.head_dim  # type: ignore[arg-type]
        dev, dt = self.llm.device, self.llm.dtype
        old_k, old_v, old_w = self._k, self._v, self._width
        self._k = [torch.zeros(B, H, width, D, device=dev, dtype=dt) for _ in range(cfg.n_layers)]
        self._v = [torch.zeros(B, H, width, D, device=dev, dtype=dt) for _ in range(cfg.n_layers)]
        for new, old in zip(self._k + self._v, old_k + old_v):
            new[:, :, :old_w] = old
        self._width = width
        self._fast = None
        if not self._pk:
            self._pk = self._prompt_buffers()
        self._views.clear()
        log.debug("engine KV cache: %d slots x %d tokens", B, width)

    def _prompt_buffers(self) -> list[dict[str, tuple[torch.Tensor, torch.Tensor]]]:
        shapes = self.llm.prompt_kv(self._dummy_visual())
        B = self.config.max_batch_size
        return [{key: (torch.zeros(B, *k.shape[1:], device=k.device, dtype=k.dtype),
                       torch.zeros(B, *v.shape[1:], device=v.device, dtype=v.dtype))
                 for key, (k, v) in layer.items()} for layer in shapes]

    def _dummy_visual(self) -> torch.Tensor | None:
        acfg = self.llm.adapter_config
        if acfg.fusion == "none" or acfg.visual_tokens <= 0:
            return None
        return torch.zeros(1, acfg.visual_tokens, self.llm.config.dim, device=self.llm.device, dtype=self.llm.dtype)

    def _slot_layers(self, slot: int) -> list[LayerCache]:
        return self._layers(slice(slot, slot + 1), (slot, slot + 1, True), visual=True)

    def _batch_layers(self, n: int, visual: bool) -> list[LayerCache]:
        return self._layers(slice(0, n), (0, n, visual), visual=visual)

    def _layers(self, rows: slice, key: tuple[int, int, bool], visual: bool) -> list[LayerCache]:
        views = self._views.get(key)
        if views is None:
            views = []
            for k, v, bufs in zip(self._k, self._v, self._pk):
                pkv = {name: (bk[rows], bv[rows]) for name, (bk, bv) in bufs.items() if visual or name != "visual"}
                views.append(LayerCache(k[rows], v[rows], pkv, prompts_fixed=bool(pkv)))
            self._views[key] = views
        return views

    # -- completion -----------------------------------------------------------------------------------------
    def _complete(self, req: _Request) -> None:
        s = req.streamer
        tail = s.flush()
        if tail:
            req.handle._push(tail)
        text = s.text if s.stopped else s.text.rstrip("\ufffd")
        self.counters[f"finished_{req.finish}"] += 1
        req.handle._finish(Completion(text, len(req.ids), req.count, req.finish or "length", list(s.ids)))

    def _fail_rows(self, rows: list[_Request], exc: BaseException) -> None:
        for req in rows:
            self._remove(req, exc)

    def _fail_all(self, exc: BaseException) -> None:
        with self._cond:
            queued, self._queue = list(self._queue), collections.deque()
            calls, self._calls = list(self._calls), collections.deque()
        for req in queued + list(self._rows):
            req.handle._finish(None, exc)
        self._rows = []
        for job in calls:
            job.error = exc
            job.event.set()


#: engines whose loop thread runs; stopped at interpreter exit (see _stop_engines_at_exit)
_LIVE_ENGINES: weakref.WeakSet[Engine] = weakref.WeakSet()


@atexit.register
def _stop_engines_at_exit() -> None:
    """Stop every engine loop before the interpreter finalizes.

    The loop is a daemon thread so it never keeps a process alive, but a daemon thread that is still freeing a
    tensor when finalization starts is killed inside torch's C++ deallocator (``pthread_exit`` unwinding through a
    ``noexcept`` frame: "terminate called without an active exception", exit status 134 — seen about once in six
    ``lav2 ask`` runs). Closing lets the current step finish and the thread return first.
    """
    for engine in list(_LIVE_ENGINES):
        try:
            engine.close(timeout=10.0)
        except Exception:  # noqa: BLE001 - exit must go on
            log.debug("engine close at exit failed", exc_info=True)


class _SlotView:
    """The ``cache`` argument of ``Transformer.forward``: per-layer views into the engine's slot buffers."""

    __slots__ = ("layers",)

    def __init__(self, layers: list[LayerCache]):
        self.layers = layers
