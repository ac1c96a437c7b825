"""Decode steps that stay in C for models whose layer matrices are packed GGUF blocks.

Why: at batch 1 a SmolLM2-135M token is 30 layers of about twenty small torch operations each (norms, three
projections, rotary, the cache write, attention, the gated prompt attention, the SwiGLU, residuals); measured when
the block kernels landed, their dispatch cost more than the products themselves. :class:`DecodeStep` runs one
whole decode step — every layer, the final norm and the LM head — in one call into ``kernels/gguf_blocks.c``
(``lav2_decode``): one OpenMP parallel region, the q/k/v rows and the gate/up rows each split over the threads as
one range, SiLU·up fused into the product loop, rotary and the cache write in the attention task, no allocation
per operation. The products are the same row kernels as :meth:`PackedWeight.linear`, so only the summation order
of norms, softmax and attention differs from the torch path, which stays the reference (tests compare the two).

Covered: packed weights in every layer matrix (any of :data:`~core_model.quant.BLOCK_TYPES`), float32 on the
CPU, Adapter-V2 bias / scale / input-scale linears, trainable norms, gated adaption prompts and early visual
prompts (their keys/values as computed at prefill, one set per batch row or shared), a batch of rows each with its
own position and key range; a packed matrix set to int8 activations (:meth:`PackedWeight.set_activations`) uses
the same int8 kernels as its :meth:`~PackedWeight.linear`. Not covered (:func:`decode_step` returns None and the caller uses the torch path):
LoRA, dense layer matrices, other dtypes/devices, subclassed modules.
"""
from __future__ import annotations

import ctypes
import logging
import os
from typing import Any

import torch

from .errors import WeightsFormatError
from .quant import BLOCK_TYPES, KernelUnavailableError, kernels, packed_weight

log = logging.getLogger(__name__)

#: set to False (or LAV2_C_DECODE=0 in the environment) to decode packed models with the torch path
enabled: bool = os.environ.get("LAV2_C_DECODE", "1") != "0"

_i64, _i32, _f32, _ptr = ctypes.c_int64, ctypes.c_int32, ctypes.c_float, ctypes.c_void_p
_MODES = {"none": 0, "bias": 1, "bias_scale": 2, "input_scale": 3}


class _Lin(ctypes.Structure):
    _fields_ = [("w", _ptr), ("type", _i32), ("mode", _i32), ("n", _i64), ("k", _i64), ("bias", _ptr),
                ("scale", _ptr), ("act", _i64)]


class _Prompt(ctypes.Structure):
    _fields_ = [("k", _ptr), ("v", _ptr), ("P", _i64), ("row_stride", _i64), ("head_stride", _i64),
                ("pos_stride", _i64), ("gate", _ptr)]


class _Layer(ctypes.Structure):
    _fields_ = [*((name, _Lin) for name in ("wq", "wk", "wv", "wo", "w1", "w2", "w3")),
                ("attn_norm", _ptr), ("ffn_norm", _ptr), ("kc", _ptr), ("vc", _ptr), ("n_prompts", _i64),
                ("prompts", _Prompt * 2)]


class _Model(ctypes.Structure):
    _fields_ = [("dim", _i64), ("n_heads", _i64), ("n_kv_heads", _i64), ("head_dim", _i64), ("ffn_dim", _i64),
                ("n_layers", _i64), ("max_keys", _i64), ("eps", _f32), ("layers", ctypes.POINTER(_Layer)),
                ("norm", _ptr), ("head", _Lin), ("rope", _ptr), ("rope_len", _i64), ("kv_hs", _i64),
                ("kv_ps", _i64)]


class Unsupported(Exception):
    """Why a model/cache is not covered by the C decode step (internal: :func:`decode_step` returns None)."""


def _f32_vec(t: torch.Tensor | None, n: int, keep: list, what: str) -> int:
    if t is None:
        raise Unsupported(f"{what} is missing")
    t = t.detach()
    if t.device.type != "cpu" or t.dtype != torch.float32 or t.numel() != n:
        raise Unsupported(f"{what} is not {n} float32 values on the CPU")
    t = t.reshape(n).contiguous()
    keep.append(t)
    return t.data_ptr()


def _lin(module, keep: list, what: str) -> _Lin:
    from .model import AdapterV2Linear

    w = packed_weight(module)
    dense = None
    if w is None:  # a matrix the file keeps in F16/F32 (dense float32 here): fine as long as it is plain
        dense = getattr(module, "weight", None)
        if (dense is None or dense.dtype != torch.float32 or dense.dim() != 2 or dense.device.type != "cpu"
                or not dense.is_contiguous()):
            raise Unsupported(f"{what} is neither packed nor a contiguous float32 matrix")
    if isinstance(module, AdapterV2Linear):
        if type(module).forward is not AdapterV2Linear.forward or module.lora_a is not None:
            raise Unsupported(f"{what} has LoRA or a custom forward")
        mode = module.mode
    elif isinstance(module, (torch.nn.Linear, torch.nn.Embedding)):
        mode = "none"
        if getattr(module, "bias", None) is not None:
            raise Unsupported(f"{what} has a bias")
    else:
        raise Unsupported(f"{what} is a {type(module).__name__}")
    if mode not in _MODES:
        raise Unsupported(f"{what} has linear mode {mode!r}")
    if dense is not None:
        dense = dense.detach()
        (n, k), data, type_id = dense.shape, dense, 0  # 0: GGML's F32
    else:
        (n, k), data, type_id = w.shape, w.blocks, BLOCK_TYPES[w.kind][0]
    keep.append(data)
    lin = _Lin(data.data_ptr(), type_id, _MODES[mode], n, k, None, None,
               int(w is not None and w.activations == "int8"))  # the weight's opt-in int8 activations
    if mode != "none":
        lin.bias = _f32_vec(module.bias, n, keep, f"{what}.bias")
    if mode == "bias_scale":
        lin.scale = _f32_vec(module.scale, n, keep, f"{what}.scale")
    elif mode == "input_scale":
        lin.scale = _f32_vec(module.scale, k, keep, f"{what}.scale")
    return lin


class DecodeStep:
    """One decode step of ``model`` over ``cache`` in C. Build it with :func:`decode_step`.

    ``cache_k[i]``/``cache_v[i]``: layer i's key/value buffers, (rows, kv_heads, positions, head_dim) with
    contiguous head_dim; ``prompt_kv[i]``: {"prompt"|"visual": (k, v)} of (rows or 1, heads, P, head_dim) as the
    torch path caches them at prefill.
    """

    def __init__(self, model, cache_k: list[torch.Tensor], cache_v: list[torch.Tensor],
                 prompt_kv: list[dict[str, tuple[torch.Tensor, torch.Tensor]]] | None = None):
        from .model import Attention, FeedForward, GatedPromptAttention, RMSNorm, Transformer, TransformerBlock

        cfg = model.config
        if type(model).forward is not Transformer.forward:
            raise Unsupported("the model overrides Transformer.forward")
        if model.device.type != "cpu" or model.dtype != torch.float32:
            raise Unsupported(f"the model is {model.dtype} on {model.device}, not float32 on the CPU")
        if not any(packed_weight(m) is not None for m in model.layers[0].modules()):
            raise Unsupported("the first layer has no packed matrix (dense models use the torch path)")
        self._lib = kernels().lib  # built once per machine; only reached for packed models
        keep: list[Any] = []
        self._keep = keep
        H, D = cfg.n_heads, cfg.head_dim
        layers = (_Layer * cfg.n_layers)()
        self._prompt_rows = 1 << 62  # rows that have their own prompt keys/values (shared sets: any number)
        k0 = cache_k[0]
        if k0.dtype != torch.float32 or k0.device.type != "cpu" or k0.dim() != 4 or k0.stride(3) != 1:
            raise Unsupported("the KV cache is not float32 (rows, heads, positions, head_dim) on the CPU")
        for i, layer in enumerate(model.layers):
            if type(layer) is not TransformerBlock or type(layer.feed_forward) is not FeedForward:
                raise Unsupported(f"layer {i} is a {type(layer).__name__}")
            att = layer.attention
            if type(att) not in (Attention, GatedPromptAttention):
                raise Unsupported(f"layer {i}'s attention is a {type(att).__name__}")
            for norm in (layer.attention_norm, layer.ffn_norm):
                if type(norm) is not RMSNorm or norm.eps != cfg.norm_eps:
                    raise Unsupported(f"layer {i} has a non-standard norm")
            if not any(packed_weight(mod) is not None for mod in (att.wq, att.wk, att.wv, att.wo,
                       layer.feed_forward.w1, layer.feed_forward.w2, layer.feed_forward.w3)):
                raise Unsupported(f"layer {i} has no packed matrix (dense models use the torch path)")
            L = layers[i]
            for name in ("wq", "wk", "wv", "wo"):
                setattr(L, name, _lin(getattr(att, name), keep, f"layers.{i}.attention.{name}"))
            for name in ("w1", "w2", "w3"):
                setattr(L, name, _lin(getattr(layer.feed_forward, name), keep, f"layers.{i}.feed_forward.{name}"))
            L.attn_norm = _f32_vec(layer.attention_norm.weight, cfg.dim, keep, f"layers.{i}.attention_norm")
            L.ffn_norm = _f32_vec(layer.ffn_norm.weight, cfg.dim, keep, f"layers.{i}.ffn_norm")
            kc, vc = cache_k[i], cache_v[i]
            if kc.shape != k0.shape or vc.shape != k0.shape or kc.stride() != k0.stride() or vc.stride() != k0.stride():
                raise Unsupported("the layers' KV buffers differ in shape or layout")
            L.kc, L.vc = kc.data_ptr(), vc.data_ptr()
            keep += [kc, vc]
            sets = (prompt_kv[i] if prompt_kv else {}) or {}
            if sets and type(att) is not GatedPromptAttention:
                raise Unsupported(f"layer {i} has prompt keys but no gates")
            if len(sets) > 2:
                raise Unsupported(f"layer {i} attends to {len(sets)} prompt sets")
            L.n_prompts = len(sets)
            for s, (key, (pk, pv)) in enumerate(sorted(sets.items())):
                if key == "visual":
                    gate = att.visual_gate.detach().float().tanh().reshape(H)
                else:
                    gate = att.gate.detach().float().tanh().reshape(H)
                    if att.new_gate is not None:
                        gate = gate * att.new_gate.detach().float().reshape(())
                if (pk.shape != pv.shape or pk.stride() != pv.stride() or pk.dim() != 4 or pk.shape[1] != H
                        or pk.shape[3] != D or pk.stride(3) != 1 or pk.dtype != torch.float32):
                    raise Unsupported(f"layer {i}'s {key} keys/values have an unexpected layout")
                keep += [pk, pv]
                L.prompts[s] = _Prompt(pk.data_ptr(), pv.data_ptr(), pk.shape[2],
                                       pk.stride(0) if pk.shape[0] > 1 else 0, pk.stride(1), pk.stride(2),
                                       _f32_vec(gate, H, keep, f"layers.{i} {key} gate"))
                if pk.shape[0] > 1:
                    self._prompt_rows = min(self._prompt_rows, pk.shape[0])
        keep.append(layers)
        head_mod = model.tok_embeddings if model.output is None else model.output
        self._dense_head = None
        head = _Lin()
        if packed_weight(head_mod) is not None:
            head = _lin(head_mod, keep, "the LM head")
        else:
            self._dense_head = head_mod.weight
        rope = torch.view_as_real(model.rope(k0.shape[2], torch.device("cpu"))).contiguous()
        keep.append(rope)
        self._model = _Model(cfg.dim, H, int(cfg.n_kv_heads), D, cfg.ffn_dim, cfg.n_layers, k0.shape[2],
                             float(cfg.norm_eps), layers, _f32_vec(model.norm.weight, cfg.dim, keep, "norm"), head,
                             rope.data_ptr(), rope.shape[0], k0.stride(1), k0.stride(2))
        self._rows, self._row_stride = k0.shape[0], k0.stride(0)
        self._embed = model.embed
        self.vocab = cfg.vocab_size
        self.dim = cfg.dim

    def __call__(self, tokens: torch.Tensor, rpos: torch.Tensor, wpos: torch.Tensor | None = None,
                 kstart: torch.Tensor | None = None, rows: torch.Tensor | None = None,
                 threads: int | None = None, last_only: bool = False, n_logits: int | None = None) -> torch.Tensor:
        """Logits (B, vocab) of one new token per row — or (1, vocab) of the last row with ``last_only``, or
        (n_logits, vocab) of the last ``n_logits`` rows.

        tokens (B,): the new tokens; rpos (B,): their rotary positions; wpos: where they go in the cache (default
        rpos); kstart: the first cache position each row attends to (default 0); rows: each batch row's cache row
        (default 0..B-1), which also picks its row of per-row prompt keys/values. Every row attends to cache
        positions kstart..wpos, its own new key included. Several rows may share a cache row: a prompt prefilled
        in one call as rows at consecutive positions (each sees the keys of the rows before it; ``last_only``
        then skips the LM head for all but the last). Rows of several cache rows mix freely (the prompts of a
        batch prefilled in one call) as long as the rows that need logits come last. threads: how many threads
        the step uses (default ``torch.get_num_threads()`` of the calling thread); the logits do not depend on it.
        """
        B = tokens.shape[0]
        rpos = rpos.to(torch.int64).contiguous()
        wpos = rpos if wpos is None else wpos.to(torch.int64).contiguous()
        kstart = torch.zeros(B, dtype=torch.int64) if kstart is None else kstart.to(torch.int64).contiguous()
        rows = torch.arange(B, dtype=torch.int64) if rows is None else rows.to(torch.int64).contiguous()
        if rpos.shape != (B,) or wpos.shape != (B,) or kstart.shape != (B,) or rows.shape != (B,):
            raise WeightsFormatError("decode step: positions must be one per batch row")
        if bool(((rows < 0) | (rows >= self._rows)).any()):
            raise WeightsFormatError("decode step: cache row out of range")
        if int(rows.max()) >= self._prompt_rows:
            raise WeightsFormatError("decode step: a cache row has no prompt key/value set")
        off = (rows * self._row_stride).contiguous()
        x = self._embed(tokens.reshape(B, 1)).reshape(B, self.dim).to(torch.float32).contiguous()
        n_out = 1 if last_only else B if n_logits is None else int(n_logits)
        if not 1 <= n_out <= B:
            raise ValueError(f"decode step: n_logits must be in 1..{B}, got {n_logits}")
        out = torch.empty(n_out, self.vocab if self._dense_head is None else self.dim, dtype=torch.float32)
        rc = self._lib.lav2_decode(ctypes.addressof(self._model), B, x.data_ptr(), rpos.data_ptr(), wpos.data_ptr(),
                                   kstart.data_ptr(), off.data_ptr(), rows.data_ptr(), n_out, out.data_ptr(),
                                   max(1, int(threads)) if threads else torch.get_num_threads())
        if rc == -4:
            raise WeightsFormatError("decode step: a position is outside the cache or the rotary table")
        if rc != 0:
            raise WeightsFormatError(f"decode step failed in the block kernels (code {rc})")
        if self._dense_head is not None:
            out = torch.nn.functional.linear(out, self._dense_head)
        return out


def decode_step(model, cache_k: list[torch.Tensor], cache_v: list[torch.Tensor],
                prompt_kv: list[dict[str, tuple[torch.Tensor, torch.Tensor]]] | None = None) -> DecodeStep | None:
    """A :class:`DecodeStep` for ``model`` and these cache buffers, or None when the C path does not cover them
    (the reason is logged at debug level; the caller then uses the torch path)."""
    if not enabled:
        return None
    try:
        return DecodeStep(model, cache_k, cache_v, prompt_kv)
    except Unsupported as e:
        log.debug("decode step in C not used: %s", e)
    except KernelUnavailableError as e:
        log.debug("decode step in C not used: %s", e)
    return None
