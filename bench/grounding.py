"""Which grounding levers help: the default pipeline with one lever taken out at a time, side by side, on a
generated split of rendered documents (issue 13).

    python bench/grounding.py                         # test kinds, 5 documents per kind (seeds 0..4)
    python bench/grounding.py --split dev --per-kind 3 --seed 20
    python bench/grounding.py --split holdout --levers full,generate,none

Levers (each row is the default pipeline except for what it names):

* ``full``      — the default: layout-aware OCR (``layout="rows"``), the reader joins every image question
                  (``ExpertRouter(reader="ocr")``), ``answer_mode="auto"``, the model with ``--adapter`` (default
                  ``auto``: the base's default adapter — none for smollm2-135m);
* ``no-adapter``— the same without any adapter (differs from ``full`` only with ``--adapter``);
* ``reader``    — the default pipeline with the shipped reader adapter (``adapter="reader"``, smollm2-135m);
* ``reader-generate`` — the reader adapter writing every answer (``answer_mode="generate"``);
* ``generate``  — the model writes every answer (``answer_mode="generate"``): no extraction;
* ``lines``     — Tesseract's own lines (``OCRTool(layout="lines")``) instead of visual rows;
* ``no-reader`` — routing by keywords only (``ExpertRouter(reader=None)``): OCR only when a keyword names it;
* ``none``      — no experts at all.

Every lever runs on the same questions in one process (OCR is cached per pipeline, so each pipeline reads each
image once). Prints a Markdown table per kind and the totals, ready for bench/RESULTS.md. Tune nothing on the
test or holdout kinds: this script only counts.
"""
from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

LEVERS = ("full", "no-adapter", "reader", "reader-generate", "generate", "lines", "no-reader", "none")


def build(lever: str, model: object) -> tuple[object, dict]:
    from orchestrator import VisualQAPipeline
    from orchestrator.experts import default_pipeline_experts
    from orchestrator.router import ExpertRouter
    from tools import OCRTool

    experts = default_pipeline_experts()
    if lever == "lines":
        experts = [OCRTool(layout="lines") if e.name == "ocr" else e for e in experts]
    router = ExpertRouter("auto", reader=None) if lever == "no-reader" else "auto"
    mode = "generate" if lever in ("generate", "none", "reader-generate") else "auto"
    pipeline = VisualQAPipeline(model, experts=experts, router=router, answer_mode=mode)
    return pipeline, ({"experts": "none"} if lever == "none" else {})


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--split", default="test", choices=["dev", "test", "holdout"])
    parser.add_argument("--per-kind", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--levers", default=",".join(LEVERS), help=f"comma-separated from {', '.join(LEVERS)}")
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--adapter", default="auto", help="the default pipeline's adapter (auto: the one shipped "
                                                          "for --model; none)")
    args = parser.parse_args()
    levers = [x.strip() for x in args.levers.split(",") if x.strip()]
    bad = [x for x in levers if x not in LEVERS]
    if bad:
        parser.error(f"unknown lever(s) {', '.join(bad)}: choose from {', '.join(LEVERS)}")

    from tqdm import tqdm

    from orchestrator import get_model
    from orchestrator._model_cache import resolve_adapter
    from orchestrator.evaluation import generated_eval_set, is_correct, load_eval_set

    items = load_eval_set(generated_eval_set(args.split, per_kind=args.per_kind, seed=args.seed))
    adapter = resolve_adapter(args.model, args.adapter)
    model = get_model(args.model, adapter)
    bare = get_model(args.model) if "no-adapter" in levers else None
    reader = get_model(args.model, "reader") if {"reader", "reader-generate"} & set(levers) else None
    pipelines = {}
    for lever in levers:
        chosen = bare if lever == "no-adapter" else reader if lever.startswith("reader") else model
        pipelines[lever] = build("full" if lever in ("no-adapter", "reader") else lever, chosen)
    right: dict[str, dict[str, int]] = {lever: {} for lever in levers}
    seconds = {lever: 0.0 for lever in levers}
    kinds: dict[str, int] = {}
    for item in tqdm(items, desc="bench/grounding", unit="q", dynamic_ncols=True):
        kinds[item.kind] = kinds.get(item.kind, 0) + 1
        for lever, (pipeline, extra) in pipelines.items():
            t0 = time.perf_counter()
            answer = pipeline.invoke({"image": item.image, "question": item.question, **extra}).answer
            seconds[lever] += time.perf_counter() - t0
            right[lever][item.kind] = right[lever].get(item.kind, 0) + is_correct(answer, item.answers)
    n = len(items)
    print(f"\n{args.split} kinds, {args.per_kind} documents per kind from seed {args.seed}, {n} questions; "
          f"{args.model} + adapter {adapter}; {platform.processor() or platform.machine()}; {time.strftime('%Y-%m-%d')}\n")
    print("| lever | " + " | ".join(kinds) + " | all | s/question |")
    print("|---|" + "---:|" * (len(kinds) + 2))
    for lever in levers:
        cells = [f"{right[lever].get(k, 0)}/{kinds[k]}" for k in kinds]
        total = sum(right[lever].values())
        print(f"| {lever} | " + " | ".join(cells) + f" | **{total / n:.1%}** ({total}/{n}) | "
              f"{seconds[lever] / n:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
