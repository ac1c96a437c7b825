"""``VisualQAPipeline``: image + question → router → experts (concurrently) → context → answer.

The pipeline is a LangChain ``Runnable``: ``invoke``, ``batch``, ``stream``, ``ainvoke`` and ``|`` composition
work. Its output, :class:`VQAResult`, is a dict (``AddableDict``) with attribute access, so streamed chunks add up
to the full result and ``pipeline | itemgetter("answer")`` gives the answer alone.

A failing, missing or slow expert never sinks the answer: each runs with a timeout in its own thread, and its
error is recorded in ``result.errors`` (and ``result.experts[name]`` as ``"error: ..."``) while the others'
observations still reach the model.
"""
from __future__ import annotations

import concurrent.futures as cf
import contextlib
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping, Sequence
from typing import Any

from langchain_core.callbacks import CallbackManagerForChainRun
from langchain_core.runnables import Runnable, RunnableConfig
from langchain_core.runnables.utils import AddableDict

from ._common import (
    VISUAL_PREFIX_NONE,
    VISUAL_PREFIX_OFF,
    VISUAL_PREFIX_ON,
    Captured,
    aiter_in_thread,
    count_prompt_tokens,
    image_for_model,
    is_model_object,
    streamed_usage,
)
from ._model_cache import DEFAULT_MODEL, get_model, model_name, resolve_adapter
from .experts import EXPERT_LABELS, contribution, resolve_experts
from .load import EXPERT_LOAD, cpu_heavy
from .router import ExpertRouter, parse_policy

__all__ = ["DEFAULT_ANSWER_HINT", "VQAResult", "VisualQAPipeline"]

log = logging.getLogger(__name__)

#: appended to the question: a small model then answers in one short sentence that quotes the context
DEFAULT_ANSWER_HINT = "Answer briefly."
_CACHE_SIZE = 64
#: counting with the detector's answer at hand: the printed count wins only when its label names what is counted
COUNT_MIN_LABEL = 0.5


class VQAResult(AddableDict):
    """The pipeline's answer and how it was reached.

    Keys (also attributes): ``answer``; ``question``; ``image`` (what was given, shortened); ``experts`` (name →
    the text the expert contributed, or ``"error: ..."``); ``errors`` (name → error, failed experts only);
    ``router`` (policy, chosen experts, a reason per expert, ``model``-policy scores); ``context`` (the block the
    model read); ``visual_prefix`` (``"on"``, ``"off (no vision weights configured)"`` or ``"not used (no
    image)"``); ``model`` (what was loaded); ``usage`` (token counts); ``timings`` (seconds: ``route``,
    ``experts`` wall time, ``per_expert``, ``generate``, ``total``).
    """

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None

    def __add__(self, other: Mapping[str, Any]) -> VQAResult:
        return VQAResult(super().__add__(other))

    def __radd__(self, other: Mapping[str, Any]) -> VQAResult:
        return VQAResult(super().__radd__(other))

    def to_dict(self) -> dict[str, Any]:
        """A plain, JSON-serialisable dict."""
        return {k: v for k, v in self.items()}


class VisualQAPipeline(Runnable[Any, VQAResult]):
    """Visual question answering with expert tools (LLaMA-Adapter V2, paper §4.4).

    Input: ``{"image": ..., "question": ...}`` (image: path, URL, data URL, base64, bytes, PIL, numpy; optional
    keys ``experts`` — a routing policy for this call — and ``history`` — earlier turns as
    ``{"role", "content"}`` dicts), an ``(image, question)`` tuple, or a question string (no image).

    Args:
        model: a loaded ``core_model`` model, a ``ChatLlamaAdapterV2``/``LlamaAdapterV2LLM`` (its model is used),
            or a base to load (default ``smollm2-135m``; ``random:tiny`` for tests). Loaded once and shared.
        adapter: ``"auto"`` (default): the adapter shipped as the base's default (none today: the base model
            answers best in the default ``auto`` answer mode); ``"reader"``: the *reader adapter* trained for
            ``smollm2-135m`` on OCR'd documents by ``lav2 train`` (better ``generate`` answers; README "The reader
            adapter"); ``None``/``"none"``: no adapter; else a directory, official ``.pth`` or preset.
        vision, device, dtype: ``load_model`` arguments when ``model`` is a name.
        experts: ``None`` (default set: OCR, detection, caption, local and web search), ``"all"`` (plus plugins
            and registered experts), or a list of experts (``tools`` experts, LangChain tools, or plain functions
            taking ``image=`` and/or ``query=``).
        router: an :class:`ExpertRouter` or a policy: ``"auto"`` (default), ``"all"``, ``"none"``, ``"model"``,
            a list of expert names.
        expert_timeout: seconds each expert may take; a late expert is recorded as timed out (its daemon thread
            is left to finish in the background, its output ignored; it never keeps the process from exiting).
        max_new_tokens, temperature: answer generation (greedy and short by default: small models stay on topic).
        answer_hint: appended to the question (default ``"Answer briefly."``; ``""`` for none).
        system: system prompt (None: the prompt style's default).
        labels: heading per expert name in the context block (default: "Text in the image", ...).
        cache_experts: reuse an expert's output for the same image (and query, for search experts) — useful in
            chat sessions that ask several questions about one image.
        on_missing_vision: ``"warn"`` (answer from the experts, note ``visual_prefix`` off) or ``"error"``.
        expert_workers: at most this many calls run their experts at once (None: no limit). Concurrent calls
            (``batch``, a server, ``lav2 batch``) then keep expert processes such as Tesseract from crowding out
            the model: later calls wait for their turn while earlier ones generate. CPU-heavy experts (those
            that read the image: OCR, detection, caption) are counted in :data:`orchestrator.load.EXPERT_LOAD`
            while they run; an engine configured with ``threads=EXPERT_LOAD.engine_threads()`` (``lav2 batch``,
            the server) then decodes on the cores they leave free.
        answer_mode: ``"auto"`` (default), ``"extract"`` or ``"generate"`` — also per call as the input key
            ``answer_mode``. ``generate``: the model writes the answer from the context. ``extract``: the answer
            is the span of the text experts' output (``extract_from``) that best answers the question — chosen by
            the labels printed next to it and by the model's own log-probabilities, all candidates scored in one
            batched forward (:mod:`orchestrator.extract`); generation only when no expert read any text.
            ``auto``: extract for short factual questions (an amount, a date, a time, a code or number, a name, an
            e-mail, a phone number) when a candidate of that kind was read, generate otherwise (open questions,
            plain chat, counting with the detector). ``result.extraction`` shows the candidates and scores.
        extract_from: names of the experts whose text answers are extracted from (default: ``("ocr",)``).
    """

    def __init__(self, model: Any = None, *, adapter: Any = "auto", vision: Any = None, device: str = "auto",
                 dtype: str = "auto", experts: Iterable[Any] | str | None = None,
                 router: ExpertRouter | str | Sequence[str] | None = "auto", expert_timeout: float = 30.0,
                 max_new_tokens: int = 64, temperature: float = 0.0, answer_hint: str = DEFAULT_ANSWER_HINT,
                 system: str | None = None, prompt_style: str | None = None, labels: Mapping[str, str] | None = None,
                 max_chars_per_expert: int = 600, max_context_chars: int = 2000, cache_experts: bool = True,
                 on_missing_vision: str = "warn", model_kwargs: Mapping[str, Any] | None = None,
                 expert_workers: int | None = None, answer_mode: str = "auto",
                 extract_from: Sequence[str] = ("ocr",)):
        if model is not None and not isinstance(model, str) and not is_model_object(model) \
                and hasattr(model, "llama_model"):
            model = model.llama_model  # a ChatLlamaAdapterV2 / LlamaAdapterV2LLM: share its model
        self._model = model if is_model_object(model) else None
        base = model_name(model) if self._model is not None else (model or DEFAULT_MODEL)
        self._load_args = {"base": base, "adapter": resolve_adapter(base, adapter), "vision": vision, "device": device,
                           "dtype": dtype, **(model_kwargs or {})}
        self.experts = resolve_experts(experts)
        self.router = router if isinstance(router, ExpertRouter) else ExpertRouter(router)
        self.expert_timeout = float(expert_timeout)
        self.max_new_tokens = int(max_new_tokens)
        self.temperature = float(temperature)
        self.answer_hint = answer_hint
        self.system = system
        self.prompt_style = prompt_style
        self.labels = {**EXPERT_LABELS, **(labels or {})}
        self.max_chars_per_expert = max_chars_per_expert
        self.max_context_chars = max_context_chars
        self.cache_experts = cache_experts
        self.on_missing_vision = on_missing_vision
        if expert_workers is not None and expert_workers < 1:
            raise ValueError(f"expert_workers must be >= 1 or None, got {expert_workers}")
        self.answer_mode = _check_answer_mode(answer_mode)
        self.extract_from = tuple(extract_from)
        self._expert_slots = threading.BoundedSemaphore(expert_workers) if expert_workers else None
        self._cache: OrderedDict[tuple, Any] = OrderedDict()
        self._cache_lock = threading.Lock()

    def __repr__(self) -> str:
        names = ", ".join(e.name for e in self.experts)
        return f"VisualQAPipeline(model={self._load_args['base']!r}, experts=[{names}], router={self.router!r})"

    # -- model ----------------------------------------------------------------------------------------------
    @property
    def model(self) -> Any:
        """The language model (loaded on first use; shared with wrappers built from the same arguments)."""
        if self._model is None:
            self._model = get_model(**self._load_args)
        return self._model

    def _timed_load(self) -> tuple[Any, float]:
        start = time.perf_counter()
        model = self.model
        return model, time.perf_counter() - start

    def describe_model(self) -> dict[str, Any]:
        describe = getattr(self.model, "describe", None)
        return describe() if callable(describe) else {"base": model_name(self.model)}

    # -- Runnable -------------------------------------------------------------------------------------------
    @property
    def InputType(self) -> Any:  # noqa: N802 - LangChain's name
        return dict

    @property
    def OutputType(self) -> Any:  # noqa: N802 - LangChain's name
        return VQAResult

    def invoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> VQAResult:
        return self._call_with_config(self._invoke, input, config, run_type="chain", **kwargs)

    def stream(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Iterator[VQAResult]:
        """Chunks that add up to the result: routing and experts first, then the answer piece by piece, then
        usage and timings."""
        yield from self._transform_stream_with_config(iter([input]), self._stream_chunks, config, run_type="chain",
                                                      **kwargs)

    async def astream(self, input: Any, config: RunnableConfig | None = None,
                      **kwargs: Any) -> AsyncIterator[VQAResult]:
        """``stream`` without blocking the event loop (the whole stream runs on one worker thread)."""
        async for chunk in aiter_in_thread(lambda: self.stream(input, config, **kwargs)):
            yield chunk

    def _invoke(self, input: Any, run_manager: CallbackManagerForChainRun | None = None) -> VQAResult:
        result = VQAResult()
        for chunk in self._run(input, stream=False):
            result = result + chunk
        return result

    def _stream_chunks(self, inputs: Iterator[Any],
                       run_manager: CallbackManagerForChainRun | None = None) -> Iterator[VQAResult]:
        for input in inputs:
            yield from self._run(input, stream=True)

    # -- the work -------------------------------------------------------------------------------------------
    def _run(self, input: Any, *, stream: bool) -> Iterator[VQAResult]:
        t0 = time.perf_counter()
        image_src, question, policy, history = _parse_input(input)
        mode = _check_answer_mode(input.get("answer_mode") or self.answer_mode) if isinstance(input, Mapping) \
            else self.answer_mode
        model, loading = self._model, None
        if model is None and (self.router.policy if policy is None else parse_policy(policy)) != "model":
            # only 'model' routing needs the language model before the experts: otherwise the first call loads
            # it (imports included, ~1-2 s) while the experts run, instead of before them
            loading = cf.ThreadPoolExecutor(max_workers=1, thread_name_prefix="lav2-load")
            load_future = loading.submit(self._timed_load)
            loading.shutdown(wait=False)
            load_seconds = 0.0
        else:
            model = self.model
        t_loaded = time.perf_counter()
        if loading is None:
            load_seconds = t_loaded - t0
        pil = None
        if image_src is not None:
            from core_model.images import open_image

            pil = open_image(image_src)
        decision = self.router.route(question, self.experts, has_image=pil is not None, model=model,
                                     prompt_style=self.prompt_style, policy=policy)
        t_routed = time.perf_counter()
        if self._expert_slots is not None and decision.chosen:
            with self._expert_slots:  # bounded: see expert_workers
                t_routed = time.perf_counter()
                outcomes = self.run_experts(decision.chosen, pil, question)
        else:
            outcomes = self.run_experts(decision.chosen, pil, question)
        t_experts = time.perf_counter()
        if loading is not None:
            model, load_seconds = load_future.result()
        t_ready = time.perf_counter()
        contributed = {name: o["text"] for name, o in outcomes.items() if o["error"] is None and o["text"]}
        context = self.format_context(contributed)
        prompt, stop = self.build_prompt(question, context, history)
        # the result says so in `visual_prefix`; the log line is for those who read logs, not a warning
        image, visual = image_for_model(model, pil, self.on_missing_vision, logging.INFO)
        yield VQAResult(
            question=question, image=_describe_source(image_src),
            experts={n: (o["text"] if o["error"] is None else f"error: {o['error']}") for n, o in outcomes.items()},
            errors={n: o["error"] for n, o in outcomes.items() if o["error"] is not None},
            router=decision.to_dict(), context=context, visual_prefix=visual, model=self.describe_model())
        gen = {"max_new_tokens": self.max_new_tokens, "temperature": self.temperature, "stop": stop}
        extraction = self._extraction(mode, question, contributed, prompt, image, model)
        t_extracted = time.perf_counter()
        if extraction is not None:
            yield VQAResult(extraction=extraction.to_dict())
        if extraction is not None and extraction.answer is not None:
            yield VQAResult(answer=extraction.answer, answer_mode="extract")
            usage = {"prompt_tokens": count_prompt_tokens(model, prompt), "completion_tokens": 0}
        elif stream:
            answer, first = "", True
            pieces = Captured(model.stream(prompt, image=image, **gen))
            for piece in pieces:
                if first:
                    piece, first = piece.lstrip(), not piece.strip()
                if piece:
                    answer += piece
                    yield VQAResult(answer=piece)
            n_in, n_out = streamed_usage(model, prompt, answer, pieces.value)
            usage = {"prompt_tokens": n_in, "completion_tokens": n_out}
            yield VQAResult(answer_mode="generate")
        else:
            completion = model.generate(prompt, images=image, **gen)
            yield VQAResult(answer=completion.text.strip(), answer_mode="generate")
            usage = {"prompt_tokens": completion.prompt_tokens, "completion_tokens": completion.completion_tokens}
        t_end = time.perf_counter()
        timings = {"load": round(load_seconds, 4), "route": decision.seconds,
                   "experts": round(t_experts - t_routed, 4),
                   "per_expert": {n: o["seconds"] for n, o in outcomes.items()},
                   "extract": round(t_extracted - t_ready, 4), "generate": round(t_end - t_extracted, 4),
                   "total": round(t_end - t0, 4)}
        yield VQAResult(usage=usage, timings=timings)

    def _extraction(self, mode: str, question: str, contributed: Mapping[str, str], prompt: str, image: Any,
                    model: Any) -> Any:
        """Extractive answer for ``extract``/``auto`` (None: generate). Open questions in ``auto`` and prompts
        without any read text go to generation; so does counting when the detector answered, unless a printed label
        names what is counted ("Pallets | 20" for "How many pallets are in the shipment?")."""
        if mode == "generate":
            return None
        text = "\n".join(contributed[n] for n in self.extract_from if contributed.get(n))
        if not text.strip():
            return None
        from prompts import sanitize_expert_text

        from .extract import answer_type, extract_answer

        qtype = answer_type(question)
        if mode == "auto" and qtype is None:
            return None
        min_label = COUNT_MIN_LABEL if mode == "auto" and qtype == "count" and "detection" in contributed else None
        scorer = None
        if callable(getattr(model, "continuation_logprobs", None)):
            def scorer(spans: Sequence[str]) -> list[float]:
                rows = model.continuation_logprobs(prompt, list(spans), image)
                return [sum(r) / len(r) if r else float("-inf") for r in rows]
        result = extract_answer(question, sanitize_expert_text(text), scorer, require_type=mode == "auto",
                                min_label=min_label)
        if result.answer is None:
            log.debug("extraction found no answer (%s): generating", result.reason)
        return result

    def run_experts(self, names: Sequence[str], image: Any, question: str) -> dict[str, dict[str, Any]]:
        """Run the named experts concurrently, each with ``expert_timeout``; ``{name: {text, error, seconds}}``.

        All start at once (one thread each), so the wall time is that of the slowest expert, not the sum. Never
        raises for an expert's failure — not even for ``SystemExit`` raised inside one. The threads are daemon
        threads: a hung expert is abandoned after its timeout and cannot keep the interpreter from exiting
        (a ``ThreadPoolExecutor`` joins its workers at exit).
        """
        by_name = {e.name: e for e in self.experts}
        tools = [by_name[n] for n in names]
        if not tools:
            return {}
        outcomes: dict[str, dict[str, Any]] = {}
        started = time.perf_counter()
        futures: dict[cf.Future, str] = {}
        for tool in tools:
            future: cf.Future = cf.Future()
            threading.Thread(target=self._run_into, args=(future, tool, image, question),
                             name=f"lav2-expert-{tool.name}", daemon=True).start()
            futures[future] = tool.name
        done, not_done = cf.wait(futures, timeout=self.expert_timeout)
        for future in done:
            outcomes[futures[future]] = future.result()
        for future in not_done:
            name = futures[future]
            log.warning("expert %r timed out after %.1fs", name, self.expert_timeout)
            outcomes[name] = {"text": "", "error": f"timed out after {self.expert_timeout:g}s",
                              "seconds": round(time.perf_counter() - started, 4)}
        return {n: outcomes[n] for n in names}  # router order

    def _run_into(self, future: cf.Future, tool: Any, image: Any, question: str) -> None:
        if not future.set_running_or_notify_cancel():
            return
        try:
            future.set_result(self._run_one(tool, image, question))
        except BaseException as exc:  # noqa: BLE001 - handed to the caller's future, never lost in a thread
            future.set_exception(exc)

    def _run_one(self, tool: Any, image: Any, question: str) -> dict[str, Any]:
        start = time.perf_counter()
        key = self._cache_key(tool, image, question)
        if key is not None:
            with self._cache_lock:
                cached = self._cache.get(key)
                if cached is not None:
                    self._cache.move_to_end(key)
                    return {**cached, "seconds": 0.0, "cached": True}
        try:
            with EXPERT_LOAD.busy() if cpu_heavy(tool) else contextlib.nullcontext():
                result = tool.run_expert(image=image, query=question)
            if result is None:  # an expert outside tools' contract that returned nothing contributes nothing
                outcome = {"text": "", "error": None, "seconds": round(time.perf_counter() - start, 4)}
            else:
                error = getattr(result, "error", None)
                text = (contribution(result, tool) or "") if error is None else ""
                outcome = {"text": text, "error": error,
                           "seconds": round(getattr(result, "seconds", 0) or time.perf_counter() - start, 4)}
        except BaseException as exc:  # noqa: BLE001 - SystemExit from an expert must not sink the answer either
            log.warning("expert %r raised", tool.name, exc_info=True)
            outcome = {"text": "", "error": f"{type(exc).__name__}: {exc}",
                       "seconds": round(time.perf_counter() - start, 4)}
        if key is not None and outcome["error"] is None:
            with self._cache_lock:
                self._cache[key] = outcome
                while len(self._cache) > _CACHE_SIZE:
                    self._cache.popitem(last=False)
        return outcome

    def _cache_key(self, tool: Any, image: Any, question: str) -> tuple | None:
        if not self.cache_experts or image is None:
            return None
        digest = getattr(image, "_lav2_digest", None)
        if digest is None:
            from core_model.images import image_digest

            digest = image_digest(image)
            try:
                image._lav2_digest = digest  # PIL images take attributes; saves re-hashing per expert
            except AttributeError:
                pass
        query = question if getattr(tool, "needs_query", False) or not getattr(tool, "needs_image", True) else None
        return (tool.name, id(tool), digest, query)

    def format_context(self, contributed: Mapping[str, str]) -> str:
        """The context block: one titled block per expert that contributed, in router order."""
        from prompts import format_expert_context

        titled = {self.labels.get(name, name): text for name, text in contributed.items()}
        return format_expert_context(titled, header=None, max_chars_per_expert=self.max_chars_per_expert,
                                     max_total_chars=self.max_context_chars)

    def build_prompt(self, question: str, context: str, history: Sequence[Any] | None = None) -> tuple[str, list[str]]:
        """``(prompt, stop strings)``: the context first, the question (with the answer hint) last.

        ``history`` is limited by tokens: the oldest turns are dropped until the prompt and ``max_new_tokens`` fit
        the model's context. If even the question alone does not fit, the ``ContextLengthError`` says so.
        """
        from prompts import compose_prompt, get_style

        style = get_style(self.prompt_style or self.model.prompt_style)
        asked = f"{question.strip()} {self.answer_hint}".strip() if self.answer_hint else question.strip()
        turns = list(history or [])
        prompt = compose_prompt(style, asked, context or None, system=self.system, history=turns or None)
        limit = getattr(getattr(self.model, "config", None), "max_seq_len", None)
        if not turns or not isinstance(limit, int):
            return prompt, list(style.stop)
        dropped = 0
        while count_prompt_tokens(self.model, prompt) + self.max_new_tokens > limit:
            removed = _drop_oldest_exchange(turns)
            if not removed:
                from core_model.errors import ContextLengthError

                raise ContextLengthError(
                    f"the question with its expert context needs {count_prompt_tokens(self.model, prompt)} tokens + "
                    f"max_new_tokens {self.max_new_tokens}, more than the model's context of {limit} tokens, even "
                    f"with all {dropped} earlier messages of the conversation history dropped: ask a shorter "
                    "question, lower max_new_tokens, or consult fewer experts")
            dropped += removed
            prompt = compose_prompt(style, asked, context or None, system=self.system, history=turns or None)
        if dropped:
            log.info("dropped the %d oldest message(s) of the conversation history to fit the model's context of "
                     "%d tokens", dropped, limit)
        return prompt, list(style.stop)


# ------------------------------------------------------------------------------------------------ helpers
def _check_answer_mode(mode: Any) -> str:
    from .extract import ANSWER_MODES

    if not isinstance(mode, str) or mode.strip().lower() not in ANSWER_MODES:
        raise ValueError(f"answer_mode must be one of {', '.join(ANSWER_MODES)}, not {mode!r}")
    return mode.strip().lower()


def _drop_oldest_exchange(turns: list[Any]) -> int:
    """Remove the oldest exchange (a message and the assistant replies after it; system messages stay) in place,
    so the history still alternates user/assistant. Returns how many messages were removed."""
    def role(turn: Any) -> Any:
        return turn.get("role") if isinstance(turn, Mapping) else getattr(turn, "role", None)

    first = next((i for i, t in enumerate(turns) if role(t) != "system"), None)
    if first is None:
        return 0
    end = first + 1
    while end < len(turns) and role(turns[end]) == "assistant":
        end += 1
    del turns[first:end]
    return end - first


def _parse_input(input: Any) -> tuple[Any, str, Any, list | None]:
    """``(image source or None, question, routing policy for this call or None, history or None)``."""
    if isinstance(input, str):
        return None, input, None, None
    if isinstance(input, tuple) and len(input) == 2:
        return input[0], str(input[1]), None, None
    if isinstance(input, Mapping):
        question = input.get("question") or input.get("text") or input.get("input")
        if not isinstance(question, str) or not question.strip():
            raise ValueError("VisualQAPipeline input needs a non-empty 'question'")
        return input.get("image"), question, input.get("experts"), input.get("history")
    raise TypeError(f"VisualQAPipeline takes {{'image': ..., 'question': ...}}, (image, question) or a question "
                    f"string, not {type(input).__name__}")


def _describe_source(source: Any) -> str | None:
    if source is None:
        return None
    if isinstance(source, str):
        return source if len(source) <= 200 else source[:80] + f"... ({len(source)} chars)"
    import os

    if isinstance(source, os.PathLike):
        return os.fspath(source)
    size = getattr(source, "size", None)
    return f"<{type(source).__name__} {size[0]}x{size[1]}>" if isinstance(size, tuple) else f"<{type(source).__name__}>"


# keep the visual-prefix notes importable from here (they are part of the result's vocabulary)
VISUAL_PREFIX_NOTES = (VISUAL_PREFIX_ON, VISUAL_PREFIX_OFF, VISUAL_PREFIX_NONE)
