"""Decode and prefill throughput of core_model vs transformers' generate on the same SmolLM2 weights.

Both run greedy, batch 1, the same prompt, dtype and thread count, in one process, alternating runs; the
reported figure is the median over --reps repetitions. Decode tokens/s is measured as
(N - 1) / (t(N new tokens) - t(1 new token)), so prefill and per-call overhead cancel out; prefill tokens/s is
prompt_tokens / t(1 new token). Also reports the default model's load time cold (no cache) and warm.

    python bench/decode.py [--new-tokens 64] [--reps 5] [--threads N]
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time

import torch

PROMPT = ("<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"
          "<|im_start|>user\nWrite a short story about a red bus that drives through a rainy city at night, "
          "and the people who ride it.<|im_end|>\n<|im_start|>assistant\n")


def ours_runner(model):
    from core_model.generation import SamplingParams, generate_tokens

    ids = model.tokenizer.encode(PROMPT)

    def run(n: int) -> int:
        steps = 0
        for _ in generate_tokens(model.llm, [ids], SamplingParams(max_new_tokens=n), eos_ids=frozenset()):
            steps += 1
        return steps

    return run, len(ids)


def hf_runner(hf, ids):
    x = torch.tensor([ids])

    def run(n: int) -> int:
        with torch.inference_mode():
            out = hf.generate(x, max_new_tokens=n, min_new_tokens=n, do_sample=False, pad_token_id=2)
        return out.shape[1] - x.shape[1]

    return run


def timed(fn, n):
    t0 = time.perf_counter()
    got = fn(n)
    dt = time.perf_counter() - t0
    assert got == n, (got, n)
    return dt


def load_times() -> tuple[float, float]:
    code = ("import time,os;t=time.perf_counter();import core_model;"
            "core_model.load_model('smollm2-135m',device='cpu',dtype='float32');"
            "print(time.perf_counter()-t)")
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "LAV2_CACHE_DIR": cache}
        cold = float(subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                                    check=True).stdout.strip().splitlines()[-1])
        warm = float(subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                                    check=True).stdout.strip().splitlines()[-1])
    return cold, warm


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--new-tokens", type=int, default=64)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"],
                    help="weights and compute dtype of BOTH implementations (default float32)")
    ap.add_argument("--skip-load", action="store_true", help="skip the cold/warm load-time measurement")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    import transformers

    from core_model import load_model
    from core_model.loading import default_gguf_path

    dtype = getattr(torch, args.dtype)
    model = load_model("smollm2-135m", device="cpu", dtype=dtype)
    path = default_gguf_path()
    hf = transformers.AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name,
                                                           dtype=dtype).eval()
    ours, n_prompt = ours_runner(model)
    theirs = hf_runner(hf, model.tokenizer.encode(PROMPT))
    for fn in (ours, theirs):  # warm-up (allocator, kernels)
        timed(fn, 4)
    rows = {"core_model": {"pre": [], "dec": []}, "transformers": {"pre": [], "dec": []}}
    N = args.new_tokens
    for _ in range(args.reps):
        for name, fn in (("core_model", ours), ("transformers", theirs)):
            t1 = timed(fn, 1)
            tn = timed(fn, N)
            rows[name]["pre"].append(n_prompt / t1)
            rows[name]["dec"].append((N - 1) / (tn - t1))
    med = {k: {m: statistics.median(v) for m, v in r.items()} for k, r in rows.items()}
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
          f"transformers {transformers.__version__}, threads {args.threads}, {args.dtype}, batch 1, greedy")
    print(f"prompt {n_prompt} tokens, {N} new tokens, median of {args.reps} reps")
    print(f"{'':14}{'prefill tok/s':>15}{'decode tok/s':>15}")
    for k, r in med.items():
        print(f"{k:14}{r['pre']:>15.1f}{r['dec']:>15.1f}")
    print(f"ratio core_model / transformers: prefill {med['core_model']['pre'] / med['transformers']['pre']:.2f}x, "
          f"decode {med['core_model']['dec'] / med['transformers']['dec']:.2f}x")
    if not args.skip_load:
        cold, warm = load_times()
        print(f"default model load (fresh process incl. imports): cold {cold:.2f}s (dequantise GGUF + write cache), "
              f"warm {warm:.2f}s (cached safetensors)")


if __name__ == "__main__":
    main()
