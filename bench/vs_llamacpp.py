"""Decode and prefill throughput of core_model vs llama.cpp (llama-cpp-python) on the same GGUF file.

Both run the same SmolLM2-135M-Instruct Q4_1 GGUF (the offline default; --gguf for another), batch 1, greedy,
the same prompt token ids (the 54-token ChatML prompt of bench/decode.py), the same thread count, in one process,
alternating implementations and thread counts inside every repetition; each figure is the median over --reps.
As in bench/decode.py, decode tok/s = (N - 1) / (t(N new tokens) - t(1 new token)), so prefill and per-call
overhead cancel out, and prefill tok/s = prompt tokens / t(1 new token).

* core_model: ``generate_tokens`` on the packed model (``weights="packed"``, fp32 activations; the decode step in
  C, core_model/fastpath.py). ``--torch-path`` adds a row with the C step off (LAV2_C_DECODE=0 semantics).
* llama.cpp: ``Llama.reset(); Llama.eval(prompt)`` then ``eval([token])`` per step, greedy by argmax of the
  returned logits (the Python binding's cost per step is in its figure as the torch/ctypes cost is in ours).
  Also printed: llama.cpp's own timer (``llama_perf_context``: decode time inside the C library only), the
  stricter yardstick.
* agreement: the first --new-tokens greedy tokens of both (llama.cpp quantises activations to 8 bits, so they
  may part after a while; ours equal transformers', tests/core_model/test_smollm2.py).

llama-cpp-python is an optional bench dependency (the ``bench`` extra), compiled from source by pip, ~10 minutes
on two cores:  CMAKE_ARGS="-DGGML_NATIVE=ON" pip install 'llama-cpp-python>=0.3,<0.4'
Or, without installing it, with the llama.cpp libraries built once for bench/serve.py's ``--llama-server`` too
(the sdist vendors llama.cpp; its one dependency missing here is ``diskcache``)::

    pip download --no-binary :all: --no-deps 'llama-cpp-python>=0.3,<0.4' && tar xzf llama_cpp_python-*.tar.gz
    cd llama_cpp_python-*/vendor/llama.cpp
    cmake -B build -G Ninja -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=ON -DLLAMA_CURL=OFF
    cmake --build build --target llama-server -j2                     # ~7 minutes on two cores
    PYTHONPATH=<sdist dir> LLAMA_CPP_LIB_PATH=<sdist dir>/vendor/llama.cpp/build/bin python bench/vs_llamacpp.py

    python bench/vs_llamacpp.py [--threads 1 2] [--reps 5] [--new-tokens 64] [--torch-path] [--gguf PATH]
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout without installing

from bench.decode import PROMPT  # noqa: E402


_PROBE = """
import sys, llama_cpp, llama_cpp.llama_cpp as L
llm = llama_cpp.Llama(model_path=sys.argv[1], n_threads=1, n_ctx=64, verbose=False)
llm.eval([1, 2, 3, 4]); llm.eval([5])
"""


def extra_bufts_work(path: Path) -> bool:
    """Whether llama.cpp runs with its extra buffer types (AMX / repacked weights), tried in a child process:
    on some AMX CPUs its AMX matrix product crashes (seen: a segfault in ggml_backend_amx_mul_mat)."""
    res = subprocess.run([sys.executable, "-c", _PROBE, str(path)], capture_output=True, timeout=300)
    return res.returncode == 0


def new_llama(path: Path, threads: int, extra_bufts: bool):
    import llama_cpp
    import llama_cpp.llama_cpp as L

    default = L.llama_model_default_params

    def params():
        p = default()
        p.use_extra_bufts = extra_bufts
        return p

    L.llama_model_default_params = params  # Llama() takes no such argument; it reads these defaults
    try:
        return llama_cpp.Llama(model_path=str(path), n_threads=threads, n_threads_batch=threads, n_ctx=512,
                               n_batch=512, verbose=False)
    finally:
        L.llama_model_default_params = default


def ours_runner(model, ids: list[int], c_step: bool):
    from core_model import fastpath
    from core_model.generation import SamplingParams, generate_tokens

    def run(n: int, threads: int) -> list[int]:
        torch.set_num_threads(threads)
        fastpath.enabled = c_step
        try:
            return [int(t[0]) for t in generate_tokens(model.llm, [ids], SamplingParams(max_new_tokens=n),
                                                        eos_ids=frozenset())]
        finally:
            fastpath.enabled = True

    return run


def llama_runner(llamas: dict, ids: list[int]):
    import llama_cpp

    perf = {t: [] for t in llamas}
    vocab = next(iter(llamas.values())).n_vocab()

    def run(n: int, threads: int) -> list[int]:
        llm = llamas[threads]
        llm.reset()
        llama_cpp.llama_perf_context_reset(llm.ctx)
        llm.eval(ids)
        out = []
        for i in range(n):  # the binding keeps no logits unless logits_all: read the last row from the context
            tok = int(np.argmax(np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(llm.ctx, -1), shape=(vocab,))))
            out.append(tok)
            if i < n - 1:
                llm.eval([tok])
        p = llama_cpp.llama_perf_context(llm.ctx)
        perf[threads].append((p.n_eval, p.t_eval_ms / 1e3, p.n_p_eval, p.t_p_eval_ms / 1e3))
        return out

    return run, perf


def timed(fn, n: int, threads: int) -> tuple[float, list[int]]:
    t0 = time.perf_counter()
    got = fn(n, threads)
    dt = time.perf_counter() - t0
    assert len(got) == n, (len(got), n)
    return dt, got


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="thread counts to compare (default 1 2)")
    ap.add_argument("--new-tokens", type=int, default=64)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--torch-path", action="store_true", help="also time core_model with the C decode step off")
    ap.add_argument("--llama-extra-bufts", choices=["auto", "on", "off"], default="auto",
                    help="llama.cpp's extra buffer types (AMX, repacked weights): auto = on unless a probe "
                         "crashes (default)")
    ap.add_argument("--gguf", default=None, help="GGUF file (default: the offline SmolLM2-135M-Instruct Q4_1)")
    args = ap.parse_args()
    try:
        import llama_cpp
    except ImportError:
        sys.exit("bench/vs_llamacpp.py needs llama-cpp-python (the optional 'bench' extra; a ~10 minute source "
                 "build): CMAKE_ARGS=\"-DGGML_NATIVE=ON\" pip install 'llama-cpp-python>=0.3,<0.4'")

    from core_model import load_model
    from core_model.loading import default_gguf_path

    path = Path(args.gguf) if args.gguf else default_gguf_path()
    model = load_model(str(path), device="cpu", dtype="float32", weights="packed")
    ids = model.tokenizer.encode(PROMPT)
    extra = {"on": True, "off": False}.get(args.llama_extra_bufts)
    note = ""
    if extra is None:
        extra = extra_bufts_work(path)
        if not extra:
            note = ("note: llama.cpp crashed with its extra buffer types (AMX / repacked weights) on this CPU; "
                    "measured with use_extra_bufts=False")
    llamas = {t: new_llama(path, t, extra) for t in args.threads}
    runners = {"core_model": ours_runner(model, ids, True)}
    if args.torch_path:
        runners["core_model (torch path)"] = ours_runner(model, ids, False)
    runners["llama.cpp"], perf = llama_runner(llamas, ids)
    N = args.new_tokens
    for t in args.threads:  # warm-up: kernels, allocator, page cache
        for fn in runners.values():
            timed(fn, 4, t)
    for v in perf.values():
        v.clear()
    rows = {(name, t): {"pre": [], "dec": []} for t in args.threads for name in runners}
    tokens = {}
    started = time.perf_counter()
    for rep in range(args.reps):
        for t in args.threads:
            for name, fn in runners.items():
                t1, _ = timed(fn, 1, t)
                tn, toks = timed(fn, N, t)
                rows[name, t]["pre"].append(len(ids) / t1)
                rows[name, t]["dec"].append((N - 1) / (tn - t1))
                tokens[name] = toks
    elapsed = time.perf_counter() - started
    med = {k: {m: statistics.median(v) for m, v in r.items()} for k, r in rows.items()}
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, {platform.processor() or ''} torch "
          f"{torch.__version__}, llama-cpp-python {llama_cpp.__version__}; load average "
          f"{' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    print(f"{path.name}: prompt {len(ids)} tokens, {N} new tokens, batch 1, greedy, median of {args.reps} "
          f"interleaved reps ({elapsed:.0f} s)")
    print(f"{'':26}{'threads':>8}{'prefill tok/s':>15}{'decode tok/s':>15}")
    for (name, t), r in sorted(med.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        print(f"{name:26}{t:>8}{r['pre']:>15.1f}{r['dec']:>15.1f}")
    for t in args.threads:
        p = perf[t]
        # every run of N tokens logged (n_eval = N - 1 decode steps); the 1-token runs have n_eval 0
        dec = [n / s for n, s, _, _ in p if n > 0 and s > 0]
        pre = [n / s for _, _, n, s in p if s > 0]
        inner = f"llama.cpp's own timer ({t} threads): prefill {statistics.median(pre):.1f}, decode " \
                f"{statistics.median(dec):.1f} tok/s" if dec and pre else ""
        ours, ref = med["core_model", t], med["llama.cpp", t]
        print(f"ratio core_model / llama.cpp, {t} thread{'s' if t > 1 else ''}: decode {ours['dec'] / ref['dec']:.2f}x"
              f", prefill {ours['pre'] / ref['pre']:.2f}x" + (f"   [{inner}; decode vs it "
                                                               f"{ours['dec'] / statistics.median(dec):.2f}x]"
                                                               if inner else ""))
    a, b = tokens["core_model"], tokens["llama.cpp"]
    same = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), len(a))
    print(f"greedy tokens: the first {same} of {N} are identical in both")
    print(f"llama.cpp extra buffer types: {'on' if extra else 'off'}")
    if note:
        print(note)


if __name__ == "__main__":
    main()
