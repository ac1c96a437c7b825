"""Visual-QA accuracy of the default pipeline with experts vs. without (same run), on examples/eval.

    python bench/vqa.py                      # SmolLM2-135M + Tesseract + the bundled person detector
    python bench/vqa.py --policies auto model --details

Prints a Markdown table (one row per routing policy, plus "none") ready for bench/RESULTS.md. Equivalent to
`lav2 eval`, which prints the same two accuracies for one policy.
"""
from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--policies", nargs="+", default=["auto"], help="routing policies to compare with none")
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--max-new-tokens", type=int, default=48)
    parser.add_argument("--details", action="store_true", help="print every answer")
    args = parser.parse_args()

    import torch

    from orchestrator import VisualQAPipeline
    from orchestrator.evaluation import is_correct, load_eval_set

    items = load_eval_set(limit=args.limit)
    pipeline = VisualQAPipeline(args.model, max_new_tokens=args.max_new_tokens)
    pipeline.model  # load before timing
    rows = []
    for policy in [*args.policies, "none"]:
        correct, latencies, by_kind = 0, [], {}
        for item in items:
            start = time.perf_counter()
            result = pipeline.invoke({"image": item.image, "question": item.question, "experts": policy})
            latencies.append(time.perf_counter() - start)
            ok = is_correct(result.answer, item.answers)
            correct += ok
            k = by_kind.setdefault(item.kind, [0, 0])
            k[0] += ok
            k[1] += 1
            if args.details:
                print(f"{policy:>6} {'✓' if ok else '✗'} {item.id:<18} {result.router['chosen']} {result.answer!r}")
        rows.append((policy, correct, len(items), statistics.median(latencies), by_kind))

    kinds = sorted(rows[0][4])
    print(f"\n`python bench/vqa.py --policies {' '.join(args.policies)}` — {time.strftime('%Y-%m-%d')}, "
          f"{platform.processor() or platform.machine()}, torch {torch.__version__}, model {args.model}, "
          f"greedy, max {args.max_new_tokens} new tokens, {len(items)} questions\n")
    print("| experts (router policy) | accuracy | " + " | ".join(kinds) + " | median s / question |")
    print("|---|---:|" + "---:|" * len(kinds) + "---:|")
    for policy, correct, n, median, by_kind in rows:
        cells = " | ".join(f"{by_kind[k][0]}/{by_kind[k][1]}" for k in kinds)
        print(f"| {policy} | {correct / n:.1%} ({correct}/{n}) | {cells} | {median:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
