"""Tiny llama-architecture GGUF files written here with gguf-py (the same writer llama.cpp's converters use)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from core_model.config import ModelConfig

SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
MERGES = ["h e", "l l", "he ll"]

#: the block type of each matrix in :func:`write_tiny_gguf` (norms are F32); ``wv`` stays F16 so a packed load
#: has one dense matrix too, the way F16/BF16 and other unsupported tensors of real files stay dense.
LAYOUT = {"attn_q": "Q4_1", "attn_k": "Q4_1", "attn_v": "F16", "attn_output": "Q4_0",
          "ffn_gate": "Q4_1", "ffn_up": "Q8_0", "ffn_down": "Q4_0"}

TINY = ModelConfig("tiny-gguf", vocab_size=320, dim=64, n_layers=2, n_heads=4, n_kv_heads=2, ffn_dim=128,
                   norm_eps=1e-5, rope_theta=10000.0, max_seq_len=256)
#: K-quants need rows of 256: the layout of a Q4_K_M file (Q4_K matrices, Q6_K for some, Q6_K head)
TINY_K = ModelConfig("tiny-gguf-k", vocab_size=320, dim=256, n_layers=2, n_heads=4, n_kv_heads=2, ffn_dim=512,
                     norm_eps=1e-5, rope_theta=10000.0, max_seq_len=256)
LAYOUT_K = {"attn_q": "Q4_K", "attn_k": "Q4_K", "attn_v": "Q6_K", "attn_output": "Q4_K", "ffn_gate": "Q4_K",
            "ffn_up": "Q4_K", "ffn_down": "Q6_K", "token_embd": "Q6_K", "output": "Q6_K"}


#: where the fp16 super-block scales sit in K-quant blocks. gguf-py cannot quantise to K-quants, so their test
#: data is random bytes with finite, small scales (every byte pattern of the rest is a valid block).
_K_SCALES = {"Q4_K": (0, 2), "Q6_K": (208,)}
_K_RANGE = {"Q4_K": 63 * 15, "Q6_K": 127 * 32}  # largest |sub-block scale x quant|: weights stay near ``scale``


def random_blocks(kind: str, n: int, k: int, rng: np.random.Generator, scale: float) -> np.ndarray:
    """An (n, k) matrix in GGUF ``kind`` blocks (uint8, one row of blocks per matrix row)."""
    from gguf import GGMLQuantizationType
    from gguf.quants import quantize

    if kind not in _K_SCALES:
        return quantize((scale * rng.standard_normal((n, k))).astype(np.float32), GGMLQuantizationType[kind])
    from core_model.quant import BLOCK_TYPES

    _, per_block, nbytes = BLOCK_TYPES[kind]
    blocks = rng.integers(0, 256, (n, k // per_block, nbytes), dtype=np.uint8)
    for at in _K_SCALES[kind]:
        d = (scale / _K_RANGE[kind] * rng.uniform(0.5, 1.5, (n, k // per_block))).astype(np.float16)
        blocks[:, :, at:at + 2] = d.view(np.uint8).reshape(n, k // per_block, 2)
    return blocks.reshape(n, -1)


def _vocab(size: int) -> tuple[list[str], list[int]]:
    from tokenizers import pre_tokenizers

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())  # byte-level BPE: one token per byte
    merged = [m.replace(" ", "") for m in MERGES]
    tokens = SPECIALS + alphabet + merged
    n_extra = size - len(tokens)
    tokens += [f"<extra_{i}>" for i in range(n_extra)]
    types = [3] * len(SPECIALS) + [1] * (len(alphabet) + len(merged)) + [4] * n_extra
    return tokens, types


def write_tiny_gguf(path: Path, cfg: ModelConfig = TINY, *, tied: bool = True, seed: int = 0,
                    layout: dict[str, str] | None = None) -> Path:
    """A random-weight GGUF of ``cfg`` whose matrices are quantised per ``layout`` (default :data:`LAYOUT`)."""
    from gguf import GGMLQuantizationType, GGUFWriter

    layout = {"token_embd": "Q8_0", "output": "Q4_1", **LAYOUT, **(layout or {})}
    rng = np.random.default_rng(seed)
    w = GGUFWriter(str(path), "llama")
    w.add_context_length(cfg.max_seq_len)
    w.add_embedding_length(cfg.dim)
    w.add_block_count(cfg.n_layers)
    w.add_feed_forward_length(cfg.ffn_dim)
    w.add_head_count(cfg.n_heads)
    w.add_head_count_kv(int(cfg.n_kv_heads))  # type: ignore[arg-type]
    w.add_layer_norm_rms_eps(cfg.norm_eps)
    w.add_rope_freq_base(cfg.rope_theta)
    tokens, types = _vocab(cfg.vocab_size)
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("default")
    w.add_token_list(tokens)
    w.add_token_types(types)
    w.add_token_merges(MERGES)
    w.add_bos_token_id(0)
    w.add_eos_token_id(2)
    w.add_pad_token_id(0)

    def add(name: str, shape: tuple[int, ...], kind: str, scale: float = 0.08) -> None:
        if kind == "F32":
            w.add_tensor(name, (1.0 + 0.1 * rng.standard_normal(shape)).astype(np.float32))
            return
        if kind == "F16":
            w.add_tensor(name, (scale * rng.standard_normal(shape)).astype(np.float16))
            return
        w.add_tensor(name, random_blocks(kind, shape[0], shape[1], rng, scale), raw_dtype=GGMLQuantizationType[kind])

    kv = cfg.kv_dim
    add("token_embd.weight", (cfg.vocab_size, cfg.dim), layout["token_embd"], scale=0.5)
    for i in range(cfg.n_layers):
        shapes = {"attn_q": (cfg.dim, cfg.dim), "attn_k": (kv, cfg.dim), "attn_v": (kv, cfg.dim),
                  "attn_output": (cfg.dim, cfg.dim), "ffn_gate": (cfg.ffn_dim, cfg.dim),
                  "ffn_up": (cfg.ffn_dim, cfg.dim), "ffn_down": (cfg.dim, cfg.ffn_dim)}
        for part, shape in shapes.items():
            add(f"blk.{i}.{part}.weight", shape, layout[part])
        add(f"blk.{i}.attn_norm.weight", (cfg.dim,), "F32")
        add(f"blk.{i}.ffn_norm.weight", (cfg.dim,), "F32")
    add("output_norm.weight", (cfg.dim,), "F32")
    if not tied:
        add("output.weight", (cfg.vocab_size, cfg.dim), layout["output"], scale=0.5)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path
