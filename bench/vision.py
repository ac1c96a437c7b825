"""Vision-side latency: CLIP encoder + visual prefix per image, uncached vs cached.

ViT-B/32-sized CLIP with RANDOM weights (open_clip "ViT-B-32" config; no CLIP weights exist offline — the
arithmetic, hence the time, is the same as with real weights). Prefixes: the release's (8 ViT blocks, 10 queries)
and the paper's linear one (20 tokens), projecting to ``--llm-dim`` (576 = SmolLM2-135M, the offline default).

    .venv/bin/python bench/vision.py [--repeats 7] [--batches 1 8] [--llm-dim 576]

Prints one table: median milliseconds per batch and per image over ``--repeats`` timed runs (after warm-up).
"""
from __future__ import annotations

import argparse
import logging
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core_model.vision import (  # noqa: E402
    CLIPVisionEncoder,
    VisionTower,
    VisualPrefixConfig,
    build_visual_prefix,
)


def timed_ms(fn: Callable[[], object], repeats: int, warmup: int = 2,
             setup: Callable[[], None] | None = None) -> tuple[float, float]:
    """(median, min) wall time of ``fn`` in ms; ``setup`` runs untimed before every call (e.g. clearing the cache).

    The min is reported too because the 2 cores are shared: it is the least disturbed run.
    """
    times = []
    for i in range(warmup + repeats):
        if setup is not None:
            setup()
        start = time.perf_counter()
        fn()
        elapsed = (time.perf_counter() - start) * 1000
        if i >= warmup:
            times.append(elapsed)
    return statistics.median(times), min(times)


def photos(n: int, size: tuple[int, int], seed: int = 0) -> list[Image.Image]:
    """Distinct photo-sized RGB images (so each one is its own cache entry)."""
    rng = np.random.default_rng(seed)
    return [Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8), "RGB") for _ in range(n)]


Row = tuple[str, int, tuple[float, float]]


def run(batches: list[int], repeats: int, llm_dim: int, image_size: tuple[int, int]) -> list[Row]:
    torch.manual_seed(0)
    encoder = CLIPVisionEncoder.from_config("ViT-B-32")
    tower = VisionTower(encoder, cache_size=max(batches) * 2)
    release = build_visual_prefix(VisualPrefixConfig(kind="release", clip_dim=encoder.embed_dim, llm_dim=llm_dim,
                                                     num_tokens=10)).eval()
    linear = build_visual_prefix(VisualPrefixConfig.paper(clip_dim=encoder.embed_dim, llm_dim=llm_dim)).eval()
    rows: list[Row] = []
    for b in batches:
        images = photos(b, image_size, seed=b)
        pixels = encoder.preprocess(images)
        tokens = encoder(pixels)
        with torch.no_grad():
            rows += [
                ("preprocess (resize+normalise)", b, timed_ms(lambda: encoder.preprocess(images), repeats)),
                ("CLIP ViT-B/32 forward", b, timed_ms(lambda: encoder(pixels), repeats)),
                ("release prefix (8 blocks)", b, timed_ms(lambda: release(tokens), repeats)),
                ("linear prefix (paper)", b, timed_ms(lambda: linear(tokens), repeats)),
                ("tower.encode, cold (miss)", b, timed_ms(lambda: tower.encode(images), repeats,
                                                           setup=tower.cache.clear)),
                ("tower.encode, cached (hit)", b, timed_ms(lambda: tower.encode(images), repeats)),
                ("END-TO-END cold + release prefix", b, timed_ms(lambda: release(tower.encode(images)), repeats,
                                                                  setup=tower.cache.clear)),
                ("END-TO-END cached + release prefix", b, timed_ms(lambda: release(tower.encode(images)), repeats)),
            ]
    return rows


def table(rows: list[Row]) -> str:
    lines = ["| path | batch | median ms / batch | median ms / image | min ms / image |",
             "|---|---:|---:|---:|---:|"]
    lines += [f"| {name} | {b} | {med:.1f} | {med / b:.1f} | {low / b:.1f} |" for name, b, (med, low) in rows]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--llm-dim", type=int, default=576)
    parser.add_argument("--image-size", type=int, nargs=2, default=[640, 480], metavar=("W", "H"))
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    rows = run(args.batches, args.repeats, args.llm_dim, tuple(args.image_size))
    cpu = platform.processor() or platform.machine()
    w, h = args.image_size
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {cpu}, fp32 CPU; images {w}x{h}; "
          f"llm_dim {args.llm_dim}; median and min of {args.repeats} runs")
    print(table(rows))


if __name__ == "__main__":
    main()
