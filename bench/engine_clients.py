"""The serve benchmark's load without HTTP: 32 chat requests from 8 concurrent in-process clients vs the same 32
one after another, straight on the engine (what `lav2 serve` runs them on). The gap between this ratio and
bench/serve.py's is what the HTTP side costs on a 2-core machine (event loop, clients, JSON beside the decode).

    python bench/engine_clients.py [--activations fp32,int8] [--reps 2] [--max-tokens 64]
"""
from __future__ import annotations

import argparse
import concurrent.futures as cf
import os
import platform
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from serve import TOPICS  # noqa: E402  (bench/serve.py: the same 32 prompts)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--activations", default="fp32,int8")
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--requests", type=int, default=32)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--max-tokens", type=int, default=64)
    args = ap.parse_args()
    from core_model import load_model

    print(f"# bench/engine_clients.py — {platform.machine()}, {os.cpu_count()} cores, "
          f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    print("| activations | sequential tok/s | concurrent tok/s | ratio |\n|---|---:|---:|---:|")
    for act in args.activations.split(","):
        model = load_model("smollm2-135m", device="cpu", dtype="float32", activations=act)
        model.configure_engine(max_batch_size=8)
        prompts = [model._prompt_ids([f"<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained "
                                      f"by Hugging Face<|im_end|>\n<|im_start|>user\nWrite two sentences about "
                                      f"{TOPICS[i % len(TOPICS)]}.<|im_end|>\n<|im_start|>assistant\n"])[0]
                   for i in range(args.requests)]
        engine = model.engine

        def one(i: int) -> int:
            return engine.submit(prompts[i], max_new_tokens=args.max_tokens).result().completion_tokens

        one(0)
        seq, conc = [], []
        for _ in range(args.reps):
            t0 = time.perf_counter()
            n = sum(one(i) for i in range(args.requests))
            seq.append(n / (time.perf_counter() - t0))
            t0 = time.perf_counter()
            with cf.ThreadPoolExecutor(args.clients) as ex:
                n = sum(ex.map(one, range(args.requests)))
            conc.append(n / (time.perf_counter() - t0))
        s, c = statistics.median(seq), statistics.median(conc)
        print(f"| {act} | {s:.1f} | {c:.1f} | {c / s:.2f}x |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
