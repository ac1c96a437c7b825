"""The packed matrix products of one SmolLM2 forward, in model order, straight through ``lav2_mm`` — this checkout's
kernels side by side with other builds of the C file (an older commit's, an experiment), interleaved in one process.

    python bench/products.py                                   # this checkout only: 8 and 106 rows, fp32
    python bench/products.py --rows 1,8,106 --activations int8
    git show ee33770:core_model/kernels/gguf_blocks.c > /tmp/old.c
    python bench/products.py --against /tmp/old.c              # A/B: the same products from both builds

Every build is compiled by core_model's own builder (``quant.build_library``: the model's flags); only its
``lav2_mm`` is called, whose arguments have not changed since kernel ABI 3, so older builds back to ABI 3 load
(older ones are refused). The matrices are the offline default's (SmolLM2-135M-Instruct Q4_1, the Q8_0 LM head left out: a prefill needs it for one row only).
Reports ms per forward's products (median and min of --reps interleaved repetitions) and the per-shape split. A
Not a timed test: the numbers move with the machine's load.
"""
from __future__ import annotations

import argparse
import collections
import ctypes
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


MM_SINCE_ABI = 3  # lav2_mm(type, w, N, K, x, M, y, threads, int8) since kernel ABI 3


def load_mm(path: Path) -> ctypes.CDLL:
    """The library at ``path`` with ``lav2_mm`` typed; an ABI older than its current signature is refused."""
    lib = ctypes.CDLL(str(path))
    lib.lav2_abi_version.restype = ctypes.c_int
    if lib.lav2_abi_version() < MM_SINCE_ABI:
        raise SystemExit(f"error: {path}: kernel ABI {lib.lav2_abi_version()}, lav2_mm needs >= {MM_SINCE_ABI}")
    p, i32, i64 = ctypes.c_void_p, ctypes.c_int, ctypes.c_int64
    lib.lav2_mm.argtypes = [i32, p, i64, i64, p, i64, p, i32, i32]
    lib.lav2_mm.restype = i32
    return lib


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--against", action="append", default=[], metavar="FILE.c",
                    help="another build of core_model/kernels/gguf_blocks.c to measure side by side (repeatable)")
    ap.add_argument("--rows", default="8,106", help="activation rows per product (decode batch or prompt length)")
    ap.add_argument("--activations", choices=["fp32", "int8"], default="fp32")
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    try:
        rows = [int(r) for r in args.rows.split(",")]
    except ValueError:
        ap.error(f"--rows must be comma-separated integers, got {args.rows!r}")
    if args.reps < 1 or any(r < 1 for r in rows):
        ap.error("--reps and every --rows value must be positive")
    for f in args.against:
        if not Path(f).is_file():
            ap.error(f"--against {f}: no such file")

    from core_model import KernelUnavailableError, load_model
    from core_model.quant import PackedWeight, build_library

    torch.set_num_threads(args.threads)
    tmp = Path(tempfile.mkdtemp(prefix="lav2-products-"))
    sources = {"this checkout": REPO / "core_model" / "kernels" / "gguf_blocks.c"}
    sources.update({Path(f).name: Path(f) for f in args.against})
    try:
        libs = {name: load_mm(build_library(tmp / f"build{i}", source=src)[0])
                for i, (name, src) in enumerate(sources.items())}
    except KernelUnavailableError as e:
        raise SystemExit(f"error: {e}") from None
    model = load_model("smollm2-135m", device="cpu", dtype="float32")
    mats = [v for mod in model.llm.modules() for v in vars(mod).values()
            if isinstance(v, PackedWeight) and v.shape[0] < model.llm.config.vocab_size]
    act = int(args.activations == "int8")
    print(f"# bench/products.py — {platform.machine()}, {os.cpu_count()} cores, {args.threads} threads, "
          f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; {len(mats)} matrices of SmolLM2-135M "
          f"({', '.join(sorted({m.kind for m in mats}))}), {args.activations} activations, median (min) of {args.reps}")
    for M in rows:
        xs = {k: torch.randn(M, k) for k in {m.shape[1] for m in mats}}
        ys = {m.shape: torch.empty(M, m.shape[0]) for m in mats}
        total = {name: [] for name in libs}
        per = {name: collections.defaultdict(list) for name in libs}
        for _ in range(args.reps):
            for name, lib in libs.items():
                t0 = time.perf_counter()
                for m in mats:
                    n, k = m.shape
                    t1 = time.perf_counter()
                    rc = lib.lav2_mm(m._type, m.blocks.data_ptr(), n, k, xs[k].data_ptr(), M, ys[m.shape].data_ptr(),
                                     args.threads, act)
                    per[name][f"{n}x{k}"].append(time.perf_counter() - t1)
                    if rc:
                        raise SystemExit(f"error: {name}: lav2_mm returned {rc}")
                total[name].append(time.perf_counter() - t0)
        macs = sum(m.shape[0] * m.shape[1] for m in mats) * M
        print(f"\n## {M} rows ({macs / 1e9:.2f} G multiply-adds)\n| build | ms per forward | GMAC/s | per shape: "
              f"ms summed over the forward |\n|---|---:|---:|---|")
        for name in libs:
            med = statistics.median(total[name])
            shapes = ", ".join(f"{s} {statistics.median(v) * 1e3 * len(v) / args.reps:.1f}"
                               for s, v in per[name].items())
            print(f"| {name} | {med * 1e3:.1f} ({min(total[name]) * 1e3:.1f}) | {macs / med / 1e9:.1f} | {shapes} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
