"""Visual-QA accuracy of the pipeline with experts vs. without, on the set in ``examples/eval``.

The set (rendered by ``examples/render_examples.py``): receipts (total, shop name), signs, forms with known text,
and people counting on the photos that ship with ultralytics. A prediction is correct when one of the accepted
answers occurs in it as a whole word or number (``18.55`` matches "The total is 18.55." but not "118.55").
"""
from __future__ import annotations

import json
import re
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .batch import resolve_package_asset

DEFAULT_EVAL_SET = Path(__file__).resolve().parent.parent / "examples" / "eval" / "questions.jsonl"


@dataclass
class EvalItem:
    id: str
    image: str
    question: str
    answers: list[str]
    kind: str = ""


@dataclass
class EvalReport:
    with_experts: float
    without_experts: float
    n: int
    by_kind: dict[str, dict[str, float]] = field(default_factory=dict)
    rows: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0
    model: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def load_eval_set(path: str | Path = DEFAULT_EVAL_SET, limit: int | None = None) -> list[EvalItem]:
    path = Path(path)
    items = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            if not line.strip():
                continue
            r = json.loads(line)
            image = r["image"]
            if image.startswith("ultralytics:"):
                image = resolve_package_asset(image)
            elif not Path(image).is_absolute():
                image = str(path.parent / image)
            items.append(EvalItem(r["id"], image, r["question"], list(r["answers"]), r.get("kind", "")))
    return items[:limit] if limit else items


def is_correct(prediction: str, answers: Sequence[str]) -> bool:
    """Any accepted answer occurs in ``prediction`` as a whole word/number (case-insensitive)."""
    text = prediction.lower()
    for answer in answers:
        a = re.escape(answer.lower().strip())
        if re.search(rf"(?<![\w.]){a}(?![\w]|\.\d)", text):
            return True
    return False


def evaluate(pipeline: Any, items: Sequence[EvalItem], *, policy: str = "auto",
             progress: bool = True) -> EvalReport:
    """Ask every question twice — experts routed by ``policy``, and no experts — and score both."""
    from tqdm import tqdm

    start = time.perf_counter()
    rows = []
    for item in tqdm(items, desc="lav2 eval", unit="q", disable=not progress, dynamic_ncols=True):
        with_e = pipeline.invoke({"image": item.image, "question": item.question, "experts": policy})
        without = pipeline.invoke({"image": item.image, "question": item.question, "experts": "none"})
        rows.append({"id": item.id, "kind": item.kind, "question": item.question, "answers": item.answers,
                     "with_experts": with_e.answer, "with_correct": is_correct(with_e.answer, item.answers),
                     "experts_used": list(with_e.experts), "expert_errors": with_e.errors,
                     "without_experts": without.answer, "without_correct": is_correct(without.answer, item.answers)})
    n = len(rows)
    by_kind: dict[str, dict[str, float]] = {}
    for kind in sorted({r["kind"] for r in rows}):
        sub = [r for r in rows if r["kind"] == kind]
        by_kind[kind] = {"n": len(sub), "with_experts": _acc(sub, "with_correct"),
                         "without_experts": _acc(sub, "without_correct")}
    return EvalReport(_acc(rows, "with_correct"), _acc(rows, "without_correct"), n, by_kind, rows,
                      round(time.perf_counter() - start, 1), str(pipeline.describe_model().get("base", "")))


def _acc(rows: Sequence[dict[str, Any]], key: str) -> float:
    return round(sum(bool(r[key]) for r in rows) / len(rows), 4) if rows else 0.0


def format_report(report: EvalReport, *, verbose: bool = False) -> str:
    lines = []
    if verbose:
        for r in report.rows:
            lines.append(f"{r['id']:<20} {'✓' if r['with_correct'] else '✗'} with: {r['with_experts']!r}")
            lines.append(f"{'':<20} {'✓' if r['without_correct'] else '✗'} without: {r['without_experts']!r}")
    lines.append(f"{'kind':<10}{'n':>4}{'with experts':>15}{'without':>10}")
    for kind, k in report.by_kind.items():
        lines.append(f"{kind:<10}{int(k['n']):>4}{k['with_experts']:>15.0%}{k['without_experts']:>10.0%}")
    correct_with = round(report.with_experts * report.n)
    correct_without = round(report.without_experts * report.n)
    lines.append(f"accuracy with experts:    {report.with_experts:.1%} ({correct_with}/{report.n})")
    lines.append(f"accuracy without experts: {report.without_experts:.1%} ({correct_without}/{report.n})")
    lines.append(f"model {report.model}, {report.seconds:.0f}s")
    return "\n".join(lines)
