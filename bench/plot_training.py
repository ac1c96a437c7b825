"""Plot a training run's loss curve from its ``metrics.jsonl`` (what ``lav2 train`` writes into ``train.out_dir``).

    python bench/plot_training.py runs/reader/metrics.jsonl docs/reader-loss.png [--title "..."] [--smooth 10]

Training loss per step (raw, faint, and a running mean over ``--smooth`` steps) and the validation loss at every
evaluation, one line per batch type (``instruction``, ``caption``). Needs matplotlib.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def read(path: Path) -> tuple[dict[str, list[tuple[int, float]]], dict[str, list[tuple[int, float]]]]:
    train: dict[str, list[tuple[int, float]]] = {}
    val: dict[str, list[tuple[int, float]]] = {}
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as e:
            raise SystemExit(f"{path}:{n}: not JSON ({e.msg})") from None
        if rec.get("kind") == "train" and not rec.get("skipped") and "loss" in rec:
            train.setdefault(rec["stream"], []).append((rec["step"], float(rec["loss"])))
        elif rec.get("kind") == "eval":
            for k, v in rec.items():
                if k.startswith("val/") and k.endswith("loss"):
                    val.setdefault(k[4:].removesuffix("_loss") or "val", []).append((rec["step"], float(v)))
    return train, val


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("metrics", type=Path, help="metrics.jsonl of a run")
    p.add_argument("out", type=Path, help="the PNG to write")
    p.add_argument("--title", default=None)
    p.add_argument("--smooth", type=int, default=10, help="running-mean window in steps (default 10)")
    args = p.parse_args()
    if not args.metrics.is_file():
        p.error(f"{args.metrics} does not exist")
    train, val = read(args.metrics)
    if not train:
        p.error(f"{args.metrics} has no training steps")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 4.2), dpi=110)
    for i, (stream, pts) in enumerate(sorted(train.items())):
        colour = f"C{i}"
        steps, losses = zip(*pts)
        ax.plot(steps, losses, color=colour, alpha=0.25, linewidth=0.8)
        w = max(1, args.smooth)
        mean = [sum(losses[max(0, j - w + 1):j + 1]) / len(losses[max(0, j - w + 1):j + 1]) for j in range(len(losses))]
        ax.plot(steps, mean, color=colour, linewidth=2, label=f"{stream} (train, mean of {w})")
        if stream in val:
            vs, vl = zip(*val[stream])
            ax.plot(vs, vl, "o--", color=colour, linewidth=1.2, markersize=5, label=f"{stream} (validation)")
    for stream, pts in val.items():
        if stream not in train:
            vs, vl = zip(*pts)
            ax.plot(vs, vl, "o--", linewidth=1.2, markersize=5, label=f"{stream} (validation)")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("loss per target token")
    ax.set_title(args.title or args.metrics.parent.name)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
