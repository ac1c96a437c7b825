"""Decode and prefill throughput of core_model vs transformers' generate on the same SmolLM2 weights.

All run greedy, batch 1, the same prompt, compute dtype and thread count, in one process, alternating runs; the
reported figure is the median over --reps repetitions. Decode tokens/s is measured as
(N - 1) / (t(N new tokens) - t(1 new token)), so prefill and per-call overhead cancel out; prefill tokens/s is
prompt_tokens / t(1 new token). Also reports the default model's load time cold (no cache) and warm.

core_model runs twice: with the GGUF's Q4_1/Q8_0 blocks kept in memory (``weights="packed"``, the default on the
CPU: the same weight values, float32 arithmetic, the block kernels of core_model/kernels) and with the weights
dequantised to --dtype (``weights="dense"``, what transformers holds). The packed row exists for float32 only.

On CUDA (``--device cuda``, what bench/gpu_check.sh runs) only the dense row exists (packed blocks are a CPU
format); the default dtype there is bfloat16, and every timing synchronises the device.

    python bench/decode.py [--new-tokens 64] [--reps 5] [--threads N] [--dtype float32|bfloat16|float16]
                           [--device cpu|cuda]
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


def hf_runner(hf, ids, device="cpu"):
    x = torch.tensor([ids], device=device)

    def run(n: int) -> int:
        with torch.inference_mode():
            out = hf.generate(x, max_new_tokens=n, min_new_tokens=n, do_sample=False, pad_token_id=2)
        return out.shape[1] - x.shape[1]

    return run


def _sync() -> None:
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()


def timed(fn, n):
    _sync()
    t0 = time.perf_counter()
    got = fn(n)
    _sync()
    dt = time.perf_counter() - t0
    assert got == n, (got, n)
    return dt


def load_times(weights: str) -> tuple[float, float]:
    code = ("import time,os;t=time.perf_counter();import core_model;"
            f"core_model.load_model('smollm2-135m',device='cpu',dtype='float32',weights='{weights}');"
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
    ap.add_argument("--dtype", default=None, choices=["float32", "bfloat16", "float16"],
                    help="weights and compute dtype of BOTH implementations (default float32 on the CPU, "
                         "bfloat16 on CUDA)")
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"], help="where both run (default cpu)")
    ap.add_argument("--skip-load", action="store_true", help="skip the cold/warm load-time measurement")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.device == "cuda" and not torch.cuda.is_available():
        sys.exit("bench/decode.py --device cuda: no CUDA device (torch.cuda.is_available() is False)")
    args.dtype = args.dtype or ("bfloat16" if args.device == "cuda" else "float32")

    import transformers

    from core_model import load_model
    from core_model.loading import default_gguf_path

    dtype = getattr(torch, args.dtype)
    models = {}
    dev = args.device
    if dtype == torch.float32 and dev == "cpu":
        models["core_model packed"] = load_model("smollm2-135m", device="cpu", dtype=dtype, weights="packed")
    models["core_model dense"] = load_model("smollm2-135m", device=dev, dtype=dtype, weights="dense")
    path = default_gguf_path()
    hf = transformers.AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name,
                                                           dtype=dtype).to(dev).eval()
    runners = {}
    for name, model in models.items():
        runners[name], n_prompt = ours_runner(model)
    runners["transformers"] = hf_runner(hf, next(iter(models.values())).tokenizer.encode(PROMPT), dev)
    for fn in runners.values():  # warm-up (allocator, kernels)
        timed(fn, 4)
    rows = {name: {"pre": [], "dec": []} for name in runners}
    N = args.new_tokens
    for _ in range(args.reps):
        for name, fn in runners.items():
            t1 = timed(fn, 1)
            tn = timed(fn, N)
            rows[name]["pre"].append(n_prompt / t1)
            rows[name]["dec"].append((N - 1) / (tn - t1))
    med = {k: {m: statistics.median(v) for m, v in r.items()} for k, r in rows.items()}
    where = torch.cuda.get_device_name() if dev == "cuda" else f"threads {args.threads}"
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
          f"transformers {transformers.__version__}, {dev} ({where}), {args.dtype}, batch 1, greedy")
    print(f"prompt {n_prompt} tokens, {N} new tokens, median of {args.reps} reps")
    print(f"{'':20}{'prefill tok/s':>15}{'decode tok/s':>15}")
    for k, r in med.items():
        print(f"{k:20}{r['pre']:>15.1f}{r['dec']:>15.1f}")
    ref = med["transformers"]
    for k in models:
        print(f"ratio {k} / transformers: prefill {med[k]['pre'] / ref['pre']:.2f}x, "
              f"decode {med[k]['dec'] / ref['dec']:.2f}x")
    if not args.skip_load and dev == "cpu":
        for weights in ("packed", "dense"):
            cold, warm = load_times(weights)
            print(f"default model load, weights={weights} (fresh process incl. imports): cold {cold:.2f}s "
                  f"(empty cache: {'build the C kernels, ' if weights == 'packed' else ''}read the GGUF, write "
                  f"the cache), warm {warm:.2f}s (cached safetensors)")


if __name__ == "__main__":
    main()
