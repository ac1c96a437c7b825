"""Training cost of Adapter-V2 vs full fine-tuning on the same base (SmolLM2-135M by default), side by side.

For each mode, in a fresh subprocess (so peak memory is that mode's alone): load the base in float32, make the
mode's parameters trainable, then time forward + backward + AdamW step on the same random token batch
(``--batch`` x ``--seq``, loss on every position, the training package's loss). Reported: median step time over
``--steps`` measured steps after ``--warmup`` steps, peak memory during training (CUDA: max allocated; CPU: peak
RSS after resetting the high-water mark once the model is loaded, and its increase over the loaded model), and the
trainable parameter count.

Modes: ``adapter`` (the ``paper-text`` preset: bias + scale on every linear, norms, late prompts — the
instruction group), ``adapter-ckpt`` (the same with gradient checkpointing), ``full`` (every base parameter).

    python bench/train.py [--base smollm2-135m] [--batch 4] [--seq 256] [--steps 5] [--modes adapter,full]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _rss_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def _reset_peak_rss() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM (Linux >= 4.0)
        return True
    except OSError:
        return False


def measure(mode: str, base: str, batch: int, seq: int, steps: int, warmup: int, device: str) -> dict:
    import torch
    import torch.nn.functional as F

    from core_model import load_model
    from core_model.groups import set_trainable
    from training.model import enable_gradient_checkpointing

    dev = torch.device(device)
    t0 = time.perf_counter()
    model = load_model(base, adapter="none" if mode == "full" else "paper-text", device=dev, dtype="float32")
    load_s = time.perf_counter() - t0
    llm = model.llm
    if mode == "full":
        llm.requires_grad_(True)
    else:
        set_trainable(llm, groups={"instruction"})
    if mode == "adapter-ckpt":
        enable_gradient_checkpointing(llm)
    params = [p for p in llm.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-5, weight_decay=0.0)
    g = torch.Generator().manual_seed(0)
    tokens = torch.randint(0, model.config.vocab_size, (batch, seq + 1), generator=g).to(dev)
    inputs, targets = tokens[:, :-1], tokens[:, 1:]

    def step() -> float:
        logits = llm(inputs)
        loss = F.cross_entropy(logits.float().flatten(0, 1), targets.flatten())
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        return float(loss)

    if dev.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base_mem = torch.cuda.memory_allocated()
    else:
        _reset_peak_rss()
        base_mem = _rss_kib("VmRSS") * 1024
    times = []
    for i in range(warmup + steps):
        s = time.perf_counter()
        step()
        if dev.type == "cuda":
            torch.cuda.synchronize()
        if i >= warmup:
            times.append(time.perf_counter() - s)
    peak = torch.cuda.max_memory_allocated() if dev.type == "cuda" else _rss_kib("VmHWM") * 1024
    total = sum(p.numel() for p in llm.parameters())
    return {"mode": mode, "trainable": sum(p.numel() for p in params), "total": total,
            "step_s_median": statistics.median(times), "step_s_min": min(times), "step_s_max": max(times),
            "peak_mib": peak / 2 ** 20, "loaded_mib": base_mem / 2 ** 20,
            "train_extra_mib": (peak - base_mem) / 2 ** 20,
            "tokens_per_s": batch * seq / statistics.median(times), "load_s": load_s,
            "memory": "cuda max_memory_allocated" if dev.type == "cuda" else "peak RSS (VmHWM)"}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--base", default="smollm2-135m")
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--seq", type=int, default=256)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--modes", default="adapter,adapter-ckpt,full")
    ap.add_argument("--device", default="cuda" if _cuda() else "cpu")
    ap.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: torch's default)")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--_one", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args._one:
        import torch

        if args.threads:
            torch.set_num_threads(args.threads)
        print(json.dumps(measure(args._one, args.base, args.batch, args.seq, args.steps, args.warmup, args.device)))
        return 0
    rows = []
    for mode in args.modes.split(","):
        cmd = [sys.executable, __file__, "--_one", mode, "--base", args.base, "--batch", str(args.batch), "--seq",
               str(args.seq), "--steps", str(args.steps), "--warmup", str(args.warmup), "--device", args.device,
               "--threads", str(args.threads)]
        out = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT,
                             env={**os.environ, "PYTHONPATH": str(ROOT)})
        if out.returncode != 0:
            sys.stderr.write(out.stderr)
            return out.returncode
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    if args.json:
        print(json.dumps(rows, indent=1))
        return 0
    import torch

    print(f"base {args.base}, batch {args.batch} x seq {args.seq}, float32, {args.device}, torch {torch.__version__}, "
          f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, threads "
          f"{args.threads or torch.get_num_threads()}; median of {args.steps} steps after {args.warmup} warmup")
    full = next((r for r in rows if r["mode"] == "full"), None)
    print("| mode | trainable params | % of base | step s (median) | min-max s | tokens/s | peak MiB | "
          "training extra MiB |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        rel = f" ({r['step_s_median'] / full['step_s_median']:.2f}x)" if full and r is not full else ""
        print(f"| {r['mode']} | {r['trainable']:,} | {100 * r['trainable'] / r['total']:.2f}% | "
              f"{r['step_s_median']:.2f}{rel} | {r['step_s_min']:.2f}-{r['step_s_max']:.2f} | "
              f"{r['tokens_per_s']:.0f} | {r['peak_mib']:.0f} | {r['train_extra_mib']:.0f} |")
    return 0


def _cuda() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except ImportError:
        return False


if __name__ == "__main__":
    sys.exit(main())
