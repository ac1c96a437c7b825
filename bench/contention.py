"""The batching engine's decode when another process competes for the cores (as Tesseract experts do inside
`lav2 batch` and the server), side by side in one run.

    python bench/contention.py [--threads 2] [--batch 8] [--tokens 32] [--reps 3]
    OMP_WAIT_POLICY=PASSIVE python bench/contention.py     # OpenMP threads sleep instead of spinning at barriers

For each setting, B prompts decoded together for N new tokens (median of --reps runs, tokens/s summed over the
batch): engine threads = --threads or 1, with or without one busy competing process (a Python busy loop,
the stand-in for one Tesseract), and ``follow`` — ``lav2 batch``'s engine, max(1, --threads - running experts)
before every step, with the busy process counted as one running expert (orchestrator.load). The decode step
splits every product statically over its threads and meets at five barriers per layer, so a thread that loses
its core stalls the others at each barrier.
"""
from __future__ import annotations

import argparse
import contextlib
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--tokens", type=int, default=32)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--model", default="smollm2-135m")
    args = ap.parse_args()

    import torch

    from orchestrator import get_model

    model = get_model(args.model)
    prompts = [f"<|im_start|>user\nTell me fact number {i} about the sea.<|im_end|>\n<|im_start|>assistant\n"
               for i in range(args.batch)]
    model.generate(prompts[:2], max_new_tokens=4)  # warm-up: kernels built, pages touched

    from orchestrator.load import EXPERT_LOAD

    def run(threads: int | str, hog: bool) -> float:
        # "follow": lav2 batch's engine, max(1, cores - running experts), with the busy process counted as one
        model.configure_engine(max_batch_size=args.batch, threads=EXPERT_LOAD.engine_threads(args.threads)
                               if threads == "follow" else threads)
        model.generate(prompts[:1], max_new_tokens=2)
        busy = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if hog else None
        try:
            with EXPERT_LOAD.busy() if hog else contextlib.nullcontext():
                times, tokens = [], 0
                for _ in range(args.reps):
                    t0 = time.perf_counter()
                    outs = model.generate(prompts, max_new_tokens=args.tokens)
                    times.append(time.perf_counter() - t0)
                    tokens = sum(o.completion_tokens for o in outs)
                return tokens / statistics.median(times)
        finally:
            if busy is not None:
                busy.kill()
                busy.wait()

    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, batch {args.batch}, "
          f"{args.tokens} new tokens, OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', '(default)')}, "
          f"{time.strftime('%Y-%m-%d %H:%M')}\n")
    print(f"| threads | competing process | tok/s |\n|---|---|---:|")
    for threads, hog in [(args.threads, False), (args.threads, True), (1, True), (1, False), ("follow", False),
                         ("follow", True)]:
        print(f"| {threads} | {'one busy process' if hog else 'none'} | {run(threads, hog):.0f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
