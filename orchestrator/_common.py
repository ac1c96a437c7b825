"""What the LLM, the chat model and the pipeline share: the model behind them, sampling arguments, the image path."""
from __future__ import annotations

import asyncio
import logging
import threading
import warnings
from collections.abc import AsyncIterator, Callable, Iterator
from typing import TYPE_CHECKING, Any, TypeVar

from ._model_cache import DEFAULT_MODEL, get_model, model_name

if TYPE_CHECKING:
    from core_model import AdapterV2Model

log = logging.getLogger("orchestrator")
T = TypeVar("T")

VISUAL_PREFIX_ON = "on"
VISUAL_PREFIX_OFF = "off (no vision weights configured)"
VISUAL_PREFIX_NONE = "not used (no image)"

_warned: set[tuple[int, int]] = set()
_warned_lock = threading.Lock()


def is_model_object(value: Any) -> bool:
    """A loaded model (``core_model.AdapterV2Model`` or anything with the same ``generate``/``tokenizer``)."""
    return not isinstance(value, str) and hasattr(value, "generate") and hasattr(value, "tokenizer")


#: other ecosystems' names for our fields (Ollama, OpenAI, Google, Anthropic, Mistral, transformers)
ARGUMENT_ALIASES = {
    "num_predict": "max_tokens", "max_completion_tokens": "max_tokens", "max_output_tokens": "max_tokens",
    "max_tokens_to_sample": "max_tokens", "model_name": "model", "model_id": "model", "stop_sequences": "stop",
    "random_seed": "seed",
}
_ALIAS_MARKERS = ("max_new_tokens",)  # pydantic aliases of our own fields


def normalise_arguments(cls: type, values: Any) -> Any:
    """Constructor arguments of a wrapper: known aliases mapped onto our fields, unknown names warned about.

    ``ChatOpenAI`` warns when it does not know an argument; silently dropping ``num_predict=16`` would leave a
    user with 256-token answers and no idea why. An alias given together with its field (different values) is
    an error.
    """
    if not isinstance(values, dict):
        return values
    fields = set(cls.model_fields)
    known = fields | {f.alias for f in cls.model_fields.values() if f.alias} | set(_ALIAS_MARKERS)
    out = dict(values)
    for alias, target in ARGUMENT_ALIASES.items():
        if alias not in out or alias in fields:
            continue
        value = out.pop(alias)
        given = [k for k in (target, *(f.alias for n, f in cls.model_fields.items() if n == target and f.alias))
                 if k in out]
        if given and out[given[0]] != value:
            raise ValueError(f"{cls.__name__}: {alias}={value!r} and {given[0]}={out[given[0]]!r} name the same "
                             f"setting ({target}); pass only one")
        if not given:
            out[target] = value
    unknown = sorted(k for k in out if k not in known)
    if unknown:
        warnings.warn(f"{cls.__name__}: unknown argument(s) {', '.join(unknown)} ignored (not parameters of this "
                      f"model; known aliases: {', '.join(sorted(ARGUMENT_ALIASES))}). Please confirm that they "
                      "are what you intended.", UserWarning, stacklevel=4)
        for k in unknown:
            out.pop(k)
    return out


def count_text_tokens(model: Any, text: str) -> list[int]:
    """Token ids of ``text`` as content (no BOS, control-token text is plain text) with the model's tokenizer."""
    tok = model.tokenizer
    try:
        return list(tok.encode(text, bos=False, parse_special=False))
    except TypeError:  # a tokenizer without the parse_special switch
        return list(tok.encode(text, bos=False))


def count_prompt_tokens(model: Any, prompt: str) -> int:
    """How many tokens the model reads for ``prompt`` (segmented prompts keep their content plain)."""
    tok = model.tokenizer
    encode = getattr(tok, "encode_prompt", None) or tok.encode
    return len(encode(prompt))


def split_model_argument(values: dict[str, Any]) -> dict[str, Any]:
    """Let ``model=`` take a loaded model object too: it moves to ``client`` and ``model`` becomes its name."""
    if not isinstance(values, dict):
        return values
    model = values.get("model")
    if model is not None and is_model_object(model):
        values = {**values, "client": model, "model": model_name(model)}
    elif values.get("client") is not None and "model" not in values:
        values = {**values, "model": model_name(values["client"])}
    return values


def load_client(wrapper: Any) -> AdapterV2Model:
    """The model behind a wrapper: its ``client`` if given, else the shared model for its load arguments."""
    if wrapper.client is not None:
        return wrapper.client
    return get_model(wrapper.model or DEFAULT_MODEL, wrapper.adapter, wrapper.vision, wrapper.device, wrapper.dtype,
                     **(wrapper.model_kwargs or {}))


def image_for_model(model: AdapterV2Model, image: Any, on_missing_vision: str = "warn",
                    log_level: int = logging.WARNING) -> tuple[Any, str]:
    """``(image to pass to generate or None, visual-prefix note)``.

    Without vision weights the image cannot become a visual prefix: with ``on_missing_vision="warn"`` the answer
    is generated from text alone and this is logged once per model (at ``log_level``); with ``"error"`` the model's
    ``VisionUnavailableError`` is raised.
    """
    if image is None:
        return None, VISUAL_PREFIX_NONE
    if getattr(model, "has_vision", False):
        return image, VISUAL_PREFIX_ON
    if on_missing_vision == "error":
        model.encode_images([image])  # raises VisionUnavailableError with the model's own how-to-fix message
    from core_model.images import open_image

    open_image(image)  # unseen by the model, but still an input: an invalid image is an ImageError, not ignored
    with _warned_lock:
        first = (id(model), log_level) not in _warned
        _warned.add((id(model), log_level))
    if first:
        log.log(log_level, "visual prefix %s for %s: the image is not seen by the language model; answers come from "
                    "the text (and the experts' observations). Load a vision encoder and a visual adapter "
                    "(load_model(vision=..., adapter=...)) to use it.", VISUAL_PREFIX_OFF, model_name(model))
    return None, VISUAL_PREFIX_OFF


def sampling_kwargs(wrapper: Any, overrides: dict[str, Any]) -> dict[str, Any]:
    """``generate``/``stream`` keyword arguments from a wrapper's fields, with per-call overrides."""
    def pick(name: str, field: str | None = None) -> Any:
        return overrides[name] if overrides.get(name) is not None else getattr(wrapper, field or name)

    max_new = next((overrides[k] for k in ("max_new_tokens", "max_tokens", *(a for a, t in ARGUMENT_ALIASES.items()
                                                                           if t == "max_tokens"))
                    if overrides.get(k) is not None), None)
    return {
        "max_new_tokens": int(max_new if max_new is not None else wrapper.max_tokens),
        "temperature": float(pick("temperature")),
        "top_p": float(pick("top_p")),
        "top_k": int(pick("top_k")),
        "seed": pick("seed"),
    }


def merge_stop(*stops: Any) -> list[str]:
    """Stop strings from several sources, in order, without duplicates or empties."""
    merged: list[str] = []
    for stop in stops:
        for s in ([stop] if isinstance(stop, str) else (stop or [])):
            if s and s not in merged:
                merged.append(s)
    return merged


_DONE = object()


async def aiter_in_thread(make_iter: Callable[[], Iterator[T]]) -> AsyncIterator[T]:
    """Consume a blocking iterator in ONE worker thread and yield its items asynchronously.

    LangChain's default ``astream`` advances a sync generator with ``run_in_executor(next)``, so successive steps
    may run on different threads. The model's generation lock is held across the generator's yields, and a lock
    released from another thread than the one that took it breaks (then every later call waits forever). One
    thread per stream keeps the generator, and its lock, on a single thread.
    """
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue = asyncio.Queue()
    stop = threading.Event()

    def put(item: Any, error: BaseException | None = None) -> None:
        try:
            loop.call_soon_threadsafe(queue.put_nowait, (item, error))
        except RuntimeError:  # the event loop is gone: nobody is listening any more
            stop.set()

    def work() -> None:
        try:
            iterator = make_iter()
            try:
                for item in iterator:
                    put(item)
                    if stop.is_set():
                        break
            finally:
                close = getattr(iterator, "close", None)
                if close is not None:
                    close()  # on this thread: the generator releases its lock where it took it
            put(_DONE)
        except BaseException as e:  # noqa: BLE001 - handed to the consumer, re-raised there
            put(_DONE, e)

    threading.Thread(target=work, name="lav2-astream", daemon=True).start()
    try:
        while True:
            item, error = await queue.get()
            if item is _DONE:
                if error is not None:
                    raise error
                return
            yield item
    finally:
        stop.set()


class Captured:
    """Iterate a generator and keep its return value (``.value``), e.g. a final ``Completion`` with exact token
    counts if the model's ``stream`` returns one; ``None`` otherwise."""

    def __init__(self, generator: Iterator[T]):
        self.generator = generator
        self.value: Any = None

    def __iter__(self) -> Iterator[T]:
        self.value = yield from self.generator


def streamed_usage(model: Any, prompt: str, text: str, returned: Any) -> tuple[int, int]:
    """``(prompt tokens, completion tokens)`` of a streamed generation: exact when ``stream`` returned a
    ``Completion``, else counted by re-encoding (can differ by a token at odd byte boundaries)."""
    if returned is not None and hasattr(returned, "completion_tokens"):
        return int(returned.prompt_tokens), int(returned.completion_tokens)
    return count_prompt_tokens(model, prompt), len(count_text_tokens(model, text)) if text else 0
