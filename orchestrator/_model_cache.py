"""One loaded model per set of load arguments, shared by every wrapper and pipeline in the process.

``ChatLlamaAdapterV2(model="smollm2-135m")``, ``LlamaAdapterV2LLM(model="smollm2-135m")`` and a
``VisualQAPipeline`` built from the same arguments all get the same :class:`core_model.AdapterV2Model`: the
weights are loaded once (generation is serialised by the model's own lock). ``random:<preset>`` (e.g.
``random:tiny``) builds a randomly initialised model with the byte tokenizer instead — instant, for tests and
dry runs; its answers are noise.
"""
from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Hashable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from core_model import AdapterV2Model

log = logging.getLogger(__name__)

DEFAULT_MODEL = "smollm2-135m"
RANDOM_PREFIX = "random:"
#: random models get a long context so prompts with expert context fit (the byte tokenizer is 1 token per byte)
RANDOM_MAX_SEQ_LEN = 4096

#: the reader adapter trained for the offline default (issue 13; training/configs/smollm2_reader.yaml)
READER_ADAPTER = Path(__file__).resolve().parent / "adapters" / "smollm2-reader"
#: what ``adapter="auto"`` (the pipeline's and the CLI's default) loads for a base. Empty: the reader adapter is
#: shipped but opt-in (``adapter="reader"``) — measured on document kinds it never saw, it lifts ``generate`` answers
#: (test kinds 52.6% -> 68.4%) but not the default ``auto`` mode (75.4% -> 70.2%), whose extraction scores spans
#: better with the base model's log-probabilities (bench/RESULTS.md "The reader adapter").
DEFAULT_ADAPTERS: dict[str, Path] = {}

_models: dict[tuple, AdapterV2Model] = {}
_key_locks: dict[tuple, threading.Lock] = {}
_lock = threading.Lock()


def _hashable(value: Any) -> Hashable:
    if isinstance(value, Mapping):
        return tuple(sorted((str(k), _hashable(v)) for k, v in value.items()))
    if isinstance(value, (list, tuple)):
        return tuple(_hashable(v) for v in value)
    try:
        hash(value)
    except TypeError:
        return ("id", id(value))
    return value if isinstance(value, (str, int, float, bool, type(None))) else ("id", id(value))


def resolve_adapter(base: Any, adapter: Any) -> Any:
    """The adapter to load with ``base``: ``"auto"`` is the shipped default for that base (:data:`DEFAULT_ADAPTERS`;
    today none for every base); ``None``/``"none"`` none; ``"reader"`` the reader adapter trained for
    ``smollm2-135m`` (an error if it is missing); anything else (a directory, a ``.pth``, a preset) as given."""
    if adapter is None or (isinstance(adapter, str) and adapter.strip().lower() in ("none", "off", "")):
        return None
    if isinstance(adapter, str) and adapter == "auto":
        path = DEFAULT_ADAPTERS.get(str(base))
        return str(path) if path is not None and (path / "adapter.safetensors").is_file() else None
    if isinstance(adapter, str) and adapter == "reader":
        if str(base).startswith(RANDOM_PREFIX):
            from core_model.errors import ModelLoadError

            raise ModelLoadError(f"the reader adapter is trained for {DEFAULT_MODEL}, not for the random model {base}: "
                                 f"use --model {DEFAULT_MODEL}, or --adapter none")
        if not (READER_ADAPTER / "adapter.safetensors").is_file():
            from core_model.errors import ModelLoadError

            raise ModelLoadError(f"the reader adapter is missing from {READER_ADAPTER}: reinstall the package or "
                                 "train it (lav2 reader-data + lav2 train training/configs/smollm2_reader.yaml)")
        return str(READER_ADAPTER)
    return adapter


def cache_key(base: str, adapter: Any = None, vision: Any = None, device: Any = "auto", dtype: Any = "auto",
              **kwargs: Any) -> tuple:
    return (str(base), _hashable(adapter), _hashable(vision), str(device), str(dtype), _hashable(kwargs))


def _random_model(spec: str, adapter: Any, device: Any, dtype: Any, kwargs: dict[str, Any]) -> AdapterV2Model:
    """``random:<preset>[:seed]`` → ``core_model.random_model`` with a context long enough for expert context."""
    import torch

    from core_model import random_model
    from core_model.config import model_preset

    from core_model.errors import WeightsFormatError

    if kwargs.pop("weights", "auto") == "packed":
        raise WeightsFormatError(f"{spec} is built with dense weights; weights='packed' needs a .gguf base")
    if kwargs.pop("activations", None) not in (None, "fp32"):
        from core_model.errors import ConfigError

        raise ConfigError(f"{spec} is built with dense weights; activations='int8' needs a packed .gguf base")
    preset, _, seed = spec[len(RANDOM_PREFIX):].partition(":")
    cfg = dataclasses.replace(model_preset(preset or "tiny"), max_seq_len=RANDOM_MAX_SEQ_LEN)
    torch_dtype = torch.float32 if str(dtype) == "auto" else getattr(torch, str(dtype), torch.float32)
    return random_model(cfg, adapter, seed=int(seed or kwargs.pop("seed", 0) or 0),
                        device="cpu" if str(device) == "auto" else device, dtype=torch_dtype, **kwargs)


def get_model(base: str = DEFAULT_MODEL, adapter: Any = None, vision: Any = None, device: Any = "auto",
              dtype: Any = "auto", **kwargs: Any) -> AdapterV2Model:
    """The shared model for these ``core_model.load_model`` arguments, loading it on first use (thread-safe).
    ``adapter`` also takes the names :func:`resolve_adapter` knows (``"auto"``, ``"reader"``, ``"none"``)."""
    adapter = resolve_adapter(base, adapter)
    key = cache_key(base, adapter, vision, device, dtype, **kwargs)
    with _lock:
        model = _models.get(key)
        if model is not None:
            return model
        key_lock = _key_locks.setdefault(key, threading.Lock())
    with key_lock:  # one load per key even when several threads ask at once; other keys load in parallel
        model = _models.get(key)
        if model is None:
            if str(base).startswith(RANDOM_PREFIX):
                model = _random_model(str(base), adapter, device, dtype, dict(kwargs))
            else:
                from core_model import load_model

                log.info("loading %s (adapter=%s, vision=%s)", base, adapter, vision)
                model = load_model(base, adapter, vision, device, dtype, **kwargs)
            with _lock:
                _models[key] = model
    return model


def clear_model_cache() -> None:
    """Forget every shared model (they are freed once no wrapper holds them)."""
    with _lock:
        _models.clear()
        _key_locks.clear()


def model_name(model: AdapterV2Model) -> str:
    """A short name for tracing and ``--json`` output: the base the model was loaded from."""
    info = getattr(model, "info", None) or {}
    return str(info.get("base") or type(model).__name__)
