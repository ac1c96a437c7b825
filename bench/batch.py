"""Continuous batching measured side by side in one run, on the offline default (SmolLM2-135M, packed GGUF).

1. **Decode throughput at batch 1/2/4/8/16** through the engine: B identical requests at once, tokens/s summed over
   the batch, as (B x (N - 1)) / (t(N new tokens) - t(1 new token)) so prefill cancels out; median of --reps
   interleaved repetitions.
2. **`lav2 batch` over --docs rendered documents** (receipts, signs, forms; OCR + a short answer) with
   ``--max-batch-size 1`` vs the default, the same pipeline code (experts run ahead in both), rows/min of the run
   (model loaded before the clock starts, expert cache off); checks that the greedy answers are identical. Each
   with the engine's threads fixed and following the experts' CPU load (``--engine-threads``).
3. **--arrivals requests arriving at random times** (exponential gaps, mean --gap seconds): p50/p95 latency from
   arrival to answer with the engine (batch 8) vs one request at a time (batch 1), same arrival schedule.

   2b. (part ``cost``) where a row's core-seconds go: OCR alone per document, then the model and pipeline alone
   (every expert output cached) at both batch sizes — the arithmetic of what rows/min 2 cores allow.

    python bench/batch.py [--reps 3] [--docs 64] [--arrivals 16] [--threads N] [--quick]
    python bench/batch.py --skip batch,arrivals --activations fp32,int8   # decode table, both activation formats
"""
from __future__ import annotations

import argparse
import collections
import importlib.util
import json
import os
import platform
import random
import resource
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

PROMPT = ("<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"
          "<|im_start|>user\nWrite a short story about a red bus that drives through a rainy city at night, "
          "and the people who ride it.<|im_end|>\n<|im_start|>assistant\n")
QUESTIONS = ["Tell me one fact about the moon.", "What is 12 plus 30?", "Name a colour of the rainbow.",
             "What is the capital of Italy?", "Write a greeting for a birthday card.", "How many legs has a spider?",
             "Give me a word that rhymes with cat.", "What do bees make?"]


def decode_throughput(models: dict, sizes: list[int], new_tokens: int, reps: int) -> dict[tuple[str, int], float]:
    """{(setting, batch): tok/s} for every model of {setting: model}, the settings interleaved in every rep."""
    samples: dict[tuple[str, int], list[float]] = {(a, b): [] for a in models for b in sizes}
    runs = {a: _decode_runner(m) for a, m in models.items()}
    for run in runs.values():
        for b in sizes:  # warm-up: kernels, cache widths
            run(b, 2)
    for _ in range(reps):
        for a, run in runs.items():
            for b in sizes:
                dt = run(b, new_tokens) - run(b, 1)
                samples[a, b].append(b * (new_tokens - 1) / dt)
    return {k: statistics.median(v) for k, v in samples.items()}


def _decode_runner(model):
    ids = model._prompt_ids([PROMPT])[0]

    def run(b: int, n: int) -> float:
        model.configure_engine(max_batch_size=b)
        engine = model.engine
        t0 = time.perf_counter()
        handles = [engine.submit(ids, max_new_tokens=n, ignore_eos=True) for _ in range(b)]
        for h in handles:
            assert h.result().completion_tokens == n
        return time.perf_counter() - t0

    return run


def render_documents(out: Path, n: int, seed: int = 0) -> Path:
    """``n`` documents with one question each whose answer is printed on them; returns the JSONL input."""
    spec = importlib.util.spec_from_file_location("render_examples", REPO / "examples" / "render_examples.py")
    render = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(render)
    rng = random.Random(seed)
    shops = ["NORTH STAR DELI", "BLUE DOOR CAFE", "PINE HILL PHARMACY", "RIVERSIDE BOOKS", "OAK TREE MARKET"]
    goods = ["Bread", "Milk", "Coffee", "Notebook", "Soap", "Apples", "Tea", "Pens", "Rice", "Cheese"]
    names = ["Maria Lopez", "Ken Ito", "Sara Novak", "Omar Haddad", "Lena Berg", "Paul Dupont"]
    cities = ["Porto", "Graz", "Leeds", "Turin", "Bergen", "Lille"]
    rows = []
    for i in range(n):
        path = out / f"doc_{i:03d}.png"
        kind = i % 3
        if kind == 0:
            items = [(g, f"{rng.randint(1, 20)}.{rng.randint(0, 99):02d}") for g in rng.sample(goods, 3)]
            total = f"{sum(float(p) for _, p in items):.2f}"
            render.render_receipt({"shop": rng.choice(shops), "address": f"{rng.randint(1, 99)} Station Road",
                                   "date": f"2024-0{rng.randint(1, 9)}-1{rng.randint(0, 9)} 1{rng.randint(0, 9)}:30",
                                   "items": items, "total": total}, path)
            rows.append({"id": f"doc{i}", "image": path.name, "question": "What is the total on this receipt?",
                         "answers": [total]})
        elif kind == 1:
            number = str(rng.randint(2, 40))
            render.render_sign([f"PLATFORM {number}", f"Trains to {rng.choice(cities)}"], path)
            rows.append({"id": f"doc{i}", "image": path.name, "question": "Which platform number is on the sign?",
                         "answers": [number]})
        else:
            name, city = rng.choice(names), rng.choice(cities)
            render.render_form([("Name", name), ("Member ID", str(rng.randint(10000, 99999))), ("City", city)], path)
            rows.append({"id": f"doc{i}", "image": path.name, "question": "Which city is written on the form?",
                         "answers": [city]})
    inp = out / "docs.jsonl"
    inp.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return inp


def batch_rows_per_minute(model, inp: Path, settings: list[tuple[int, str]], reps: int, workers: int,
                          answer_mode: str = "generate") -> dict[tuple[int, str], dict]:
    """rows/min of run_batch per (max batch size, engine threads) setting, interleaved over ``reps``.

    Engine threads ``fixed``: torch's count, whatever runs beside the engine; ``follow``: ``lav2 batch``'s default,
    max(1, cores - CPU-heavy experts running) before every step (orchestrator.load)."""
    from orchestrator.batch import read_rows, run_batch
    from orchestrator.experts import default_pipeline_experts
    from orchestrator.load import EXPERT_LOAD
    from orchestrator.pipeline import VisualQAPipeline

    rows = read_rows(inp)
    truth = {r.id: r.extra.get("answers", []) for r in rows}
    cores = torch.get_num_threads()
    out: dict[tuple[int, str], dict] = {s: {"rpm": [], "answers": None, "steps": {}} for s in settings}
    for rep in range(reps):
        for b, threads in settings:
            pipeline = VisualQAPipeline(model, experts=default_pipeline_experts(), cache_experts=False,
                                        expert_workers=workers, answer_mode=answer_mode)
            engine = model.configure_engine(max_batch_size=b, threads=EXPERT_LOAD.engine_threads(cores)
                                            if threads == "follow" else cores)
            answers: dict[str, str] = {}
            chosen: collections.Counter = collections.Counter()

            def answer(row):
                r = pipeline.invoke({"image": row.image, "question": row.question})
                answers[row.id] = r.answer
                chosen.update(r.router["chosen"])
                return {"answer": r.answer}

            target = Path(tempfile.mkdtemp()) / "answers.jsonl"
            cpu0 = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
            t0 = time.perf_counter()
            run_batch(rows, answer, target, concurrency=b + 2 * workers, progress=False)
            dt = time.perf_counter() - t0
            cpu1 = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
            own, kids = ((c1.ru_utime + c1.ru_stime - c0.ru_utime - c0.ru_stime) / len(rows)
                         for c0, c1 in zip(cpu0, cpu1))
            res = out[(b, threads)]
            res.setdefault("own", []).append(own)
            res.setdefault("children", []).append(kids)
            res["chosen"] = dict(chosen)
            res["rpm"].append(60 * len(rows) / dt)
            res["answers"] = answers
            res["correct"] = sum(any(a.lower() in (answers[i] or "").lower() for a in truth[i]) for i in truth)
            res["steps"] = {k[len("steps_at_"):-len("_threads")]: v for k, v in engine.counters.items()
                            if k.startswith("steps_at_")}
            res["prefill"] = {k[len("prefill_tokens_at_"):-len("_threads")]: v for k, v in engine.counters.items()
                              if k.startswith("prefill_tokens_at_")}
            print(f"  rep {rep + 1}: --max-batch-size {b:>2}, engine threads {threads:>6}: "
                  f"{60 * len(rows) / dt:6.1f} rows/min ({dt:.1f}s, {res['correct']}/{len(rows)} correct, "
                  f"core-s/row {own:.3f} in this process + {kids:.3f} in child processes (Tesseract), decode steps "
                  f"by thread count {res['steps']}, prefill tokens by thread count {res['prefill']}, experts "
                  f"{res['chosen']})", flush=True)
    return out


def cost_per_row(model, inp: Path, big: int, workers: int, answer_mode: str = "generate") -> dict:
    """Where the core-seconds of a row go: OCR alone (each document once, one at a time: Tesseract's CPU time as
    child processes), then the same rows again with every expert output cached (the model and the pipeline only)
    at --max-batch-size 1 and ``big``: rows/min and core-seconds per row without any OCR cost."""
    from orchestrator.batch import read_rows, run_batch
    from orchestrator.experts import default_pipeline_experts
    from orchestrator.load import EXPERT_LOAD
    from orchestrator.pipeline import VisualQAPipeline

    rows = read_rows(inp)
    cores = torch.get_num_threads()
    pipeline = VisualQAPipeline(model, experts=default_pipeline_experts(), cache_experts=True,
                                expert_workers=workers, answer_mode=answer_mode)
    ocr_wall, ocr_cpu = [], []
    for row in rows:
        c0, t0 = resource.getrusage(resource.RUSAGE_CHILDREN), time.perf_counter()
        pipeline.run_experts(["ocr"], _open(row.image), row.question)
        c1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        ocr_wall.append(time.perf_counter() - t0)
        ocr_cpu.append(c1.ru_utime + c1.ru_stime - c0.ru_utime - c0.ru_stime)
    out = {"ocr_wall": statistics.median(ocr_wall), "ocr_cpu": statistics.mean(ocr_cpu)}
    answer = lambda row: {"answer": pipeline.invoke({"image": _open(row.image), "question": row.question}).answer}
    # warm: every expert the router picks is cached from here on (OCR above; others, if any, in this pass)
    run_batch(rows, answer, Path(tempfile.mkdtemp()) / "warm.jsonl", concurrency=big + 2 * workers, progress=False)
    for b in (1, big):
        model.configure_engine(max_batch_size=b, threads=EXPERT_LOAD.engine_threads(cores))
        c0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
        run_batch(rows, answer, Path(tempfile.mkdtemp()) / "a.jsonl", concurrency=b + 2 * workers, progress=False)
        c1, dt = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter() - t0
        out[b] = {"rpm": 60 * len(rows) / dt,
                  "cpu": (c1.ru_utime + c1.ru_stime - c0.ru_utime - c0.ru_stime) / len(rows)}
    return out


_IMAGES: dict[str, object] = {}


def _open(path: str):
    """One PIL image per path, so the pipeline's expert cache (keyed by the image's digest) hits."""
    if path not in _IMAGES:
        from core_model.images import open_image

        _IMAGES[path] = open_image(path)
    return _IMAGES[path]


def arrival_latencies(model, n: int, gap: float, batch: int, seed: int) -> list[float]:
    from prompts import get_style

    style = get_style(model.prompt_style)
    rng = random.Random(seed)
    arrivals = list(itertools_accumulate(rng.expovariate(1 / gap) for _ in range(n)))
    model.configure_engine(max_batch_size=batch)
    engine = model.engine
    latencies = [0.0] * n
    t0 = time.perf_counter()

    def client(i: int) -> None:
        delay = arrivals[i] - (time.perf_counter() - t0)
        if delay > 0:
            time.sleep(delay)
        start = time.perf_counter()
        engine.submit(style.format(QUESTIONS[i % len(QUESTIONS)]), max_new_tokens=32,
                      stop=list(style.stop)).result()
        latencies[i] = time.perf_counter() - start

    threads = [threading.Thread(target=client, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return latencies


def itertools_accumulate(values):
    total = 0.0
    for v in values:
        total += v
        yield total


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(round(q * (len(s) - 1))))]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reps", type=int, default=3, help="interleaved repetitions (median; default 3)")
    ap.add_argument("--new-tokens", type=int, default=64, help="decode tokens per request in part 1 (default 64)")
    ap.add_argument("--docs", type=int, default=64, help="rendered documents in part 2 (default 64)")
    ap.add_argument("--batch-size", type=int, default=None,
                    help="the batched setting of parts 2 and 3 (default: lav2 batch's default)")
    ap.add_argument("--arrivals", type=int, default=16, help="requests in part 3 (default 16)")
    ap.add_argument("--gap", type=float, default=0.25, help="mean seconds between arrivals in part 3")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: all cores)")
    ap.add_argument("--expert-workers", type=int, default=None, help="rows running experts at once (default: cores)")
    ap.add_argument("--answer-mode", default="generate", choices=["generate", "extract", "auto"],
                    help="answer mode of the lav2 batch part (default generate: what the engine batches is decode; "
                         "extraction answers with one scoring forward per row and no decode, see docs/grounding.md)")
    ap.add_argument("--engine-threads", default="fixed,follow",
                    help="engine thread policies of part 2, comma-separated: fixed (torch's count) and/or follow "
                         "(max(1, cores - running experts), lav2 batch's default); default both, side by side")
    ap.add_argument("--quick", action="store_true", help="1 rep, 16 docs, 8 arrivals (a smoke run)")
    ap.add_argument("--skip", default="", help="comma-separated parts to skip: decode,batch,cost,arrivals")
    ap.add_argument("--activations", default="fp32",
                    help="comma-separated activation formats of the packed products (fp32, int8: load_model("
                         "activations=...)); part 1 interleaves them, parts 2 and 3 run once per format")
    args = ap.parse_args()
    settings = [a.strip() for a in args.activations.split(",") if a.strip()]
    if not settings or any(a not in ("fp32", "int8") for a in settings):
        ap.error(f"--activations: a comma-separated list of fp32/int8, got {args.activations!r}")
    if args.quick:
        args.reps, args.docs, args.arrivals = 1, 16, 8
    if args.threads:
        torch.set_num_threads(args.threads)
    from core_model import load_model
    from orchestrator.commands import DEFAULT_BATCH_SIZE

    big = args.batch_size or DEFAULT_BATCH_SIZE
    workers = args.expert_workers or os.cpu_count() or 2
    skip = set(filter(None, args.skip.split(",")))
    print(f"# bench/batch.py — {platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch "
          f"{torch.__version__}, {torch.get_num_threads()} threads, {time.strftime('%Y-%m-%d')}")
    models = {a: load_model("smollm2-135m", device="cpu", dtype="float32", activations=a) for a in settings}
    for a, model in models.items():
        print(f"model: {model.describe()['base']} ({model.describe()['weights']}), {a} activations")

    if "decode" not in skip:
        sizes = [1, 2, 4, 8, 16]
        tput = decode_throughput(models, sizes, args.new_tokens, args.reps)
        print("\n## 1. decode tokens/s (summed over the batch), engine, median of", args.reps)
        print("| batch | " + " | ".join(f"{a} tok/s | {a} vs batch 1" for a in settings) + " |")
        print("|---:|" + "---:|---:|" * len(settings))
        for b in sizes:
            print(f"| {b} | " + " | ".join(f"{tput[a, b]:.0f} | {tput[a, b] / tput[a, 1]:.2f}x" for a in settings)
                  + " |")
    for act, model in models.items():
        if len(models) > 1 and not {"batch", "arrivals"} <= skip:
            print(f"\n### {act} activations")
        _rows_and_arrivals(args, model, skip, big, workers)
    return 0


def _rows_and_arrivals(args, model, skip: set, big: int, workers: int) -> None:
    if "batch" not in skip:
        with tempfile.TemporaryDirectory() as tmp:
            inp = render_documents(Path(tmp), args.docs)
            print(f"\n## 2. lav2 batch over {args.docs} rendered documents (OCR + short answer), {workers} expert "
                  f"workers", flush=True)
            policies = [p for p in args.engine_threads.split(",") if p]
            settings = [(b, p) for p in policies for b in (1, big)]
            res = batch_rows_per_minute(model, inp, settings, args.reps, workers, args.answer_mode)
        rpm = {k: statistics.median(v["rpm"]) for k, v in res.items()}
        base = rpm[settings[0]]
        print(f"| --max-batch-size | engine threads | rows/min (median) | vs {settings[0][0]}/{settings[0][1]} "
              f"| core-s/row: process | children (OCR) | correct |\n|---:|---|---:|---:|---:|---:|---:|")
        for k in settings:
            print(f"| {k[0]} | {k[1]} | {rpm[k]:.1f} | {rpm[k] / base:.2f}x | {statistics.median(res[k]['own']):.3f} "
                  f"| {statistics.median(res[k]['children']):.3f} | {res[k]['correct']}/{args.docs} |")
        for p in policies:
            print(f"engine threads {p}: --max-batch-size {big} vs 1: {rpm[(big, p)] / rpm[(1, p)]:.2f}x rows/min")
        same = all(res[k]["answers"] == res[settings[0]]["answers"] for k in settings)
        print(f"answers identical in every setting: {same}")

    if "cost" not in skip:
        with tempfile.TemporaryDirectory() as tmp:
            inp = render_documents(Path(tmp), args.docs)
            c = cost_per_row(model, inp, big, workers, args.answer_mode)
        print(f"\n## 2b. core-seconds per row ({args.docs} documents, {os.cpu_count()} cores)")
        print(f"OCR alone, one document at a time: {c['ocr_cpu']:.3f} core-s/document (Tesseract), "
              f"median wall {c['ocr_wall']:.3f} s")
        print("| --max-batch-size | rows/min, experts cached (model + pipeline only) | core-s/row |\n|---:|---:|---:|")
        for b in (1, big):
            print(f"| {b} | {c[b]['rpm']:.1f} | {c[b]['cpu']:.3f} |")
        cores = os.cpu_count() or 1
        for b in (1, big):
            print(f"ceiling at --max-batch-size {b} with OCR: {cores} cores x 60 / ({c['ocr_cpu']:.3f} + "
                  f"{c[b]['cpu']:.3f}) = {60 * cores / (c['ocr_cpu'] + c[b]['cpu']):.1f} rows/min")
        print(f"model-only ratio {big} vs 1: {c[big]['rpm'] / c[1]['rpm']:.2f}x")

    if "arrivals" not in skip:
        print(f"\n## 3. {args.arrivals} requests at random times (mean gap {args.gap}s), latency arrival -> answer")
        rows = []
        for rep in range(args.reps):
            for b in (1, big):
                lat = arrival_latencies(model, args.arrivals, args.gap, b, seed=rep)
                rows.append((b, pct(lat, 0.5), pct(lat, 0.95)))
        print("| engine batch | p50 s | p95 s |\n|---:|---:|---:|")
        for b in (1, big):
            p50 = statistics.median(r[1] for r in rows if r[0] == b)
            p95 = statistics.median(r[2] for r in rows if r[0] == b)
            print(f"| {b}{' (serial)' if b == 1 else ''} | {p50:.2f} | {p95:.2f} |")


if __name__ == "__main__":
    sys.exit(main())
