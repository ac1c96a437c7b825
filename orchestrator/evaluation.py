"""Visual-QA accuracy of the pipeline per document kind, with experts (per answer mode) and without, in one run.

Sets:

* the shipped one, ``examples/eval/questions.jsonl`` (rendered by ``examples/render_examples.py``): receipts,
  signs, forms, and people counting on the photos that ship with ultralytics — the default;
* generated ones, :func:`generated_eval_set`: documents of ``training.documents`` by split (``dev``, ``test``,
  ``holdout``, ``all``) or kinds, ``per_kind`` documents each from a seed;
* a user's own JSONL (:func:`load_eval_set`): one ``{"image", "question", "answers"[, "id", "kind"]}`` per line,
  image paths relative to the file.

A prediction is correct when one of the accepted answers occurs in it as a whole word or number (``18.55``
matches "The total is 18.55." but not "118.55"). :func:`evaluate` asks every question once per *variant*: with
experts (routed by ``policy``) in each answer mode asked for, and with no experts — the baseline.
"""
from __future__ import annotations

import base64
import html
import io
import json
import logging
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .batch import resolve_package_asset
from .errors import EvalDataError, EvalError

log = logging.getLogger(__name__)

DEFAULT_EVAL_SET = Path(__file__).resolve().parent.parent / "examples" / "eval" / "questions.jsonl"
#: the pipeline's answer modes (input key ``answer_mode``)
ANSWER_MODES = ("generate", "extract", "auto")
BASELINE = "none"


@dataclass
class EvalItem:
    id: str
    image: str
    question: str
    answers: list[str]
    kind: str = ""
    split: str = ""


@dataclass
class EvalReport:
    """Accuracies of one run. ``with_experts``/``without_experts``: the first experts variant and the baseline;
    ``accuracy``: every variant; ``by_kind``: kind -> ``{"n", "split", "with_experts", "without_experts",
    <variant>: accuracy}``; ``rows``: one per question with every variant's answer."""

    with_experts: float
    without_experts: float
    n: int
    by_kind: dict[str, dict[str, Any]] = field(default_factory=dict)
    rows: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0
    model: str = ""
    variants: list[str] = field(default_factory=list)
    accuracy: dict[str, float] = field(default_factory=dict)
    policy: str = "auto"
    source: str = ""
    failed: int = 0
    """Questions that could not be asked (an unreadable image, a URL that failed, ...): counted wrong, their
    error in every variant's ``error``."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# ============================================================================================ sets
def load_eval_set(path: str | Path = DEFAULT_EVAL_SET, limit: int | None = None) -> list[EvalItem]:
    """The questions of a JSONL file, or of ``questions.jsonl`` (or the only ``*.jsonl``) in a directory.

    Each line: ``image`` (path relative to the file, absolute path, URL, or ``ultralytics:assets/...``),
    ``question``, ``answers`` (a list of accepted answers; ``answer``, one string, also works), optional ``id``,
    ``kind``, ``split``. Raises :class:`EvalDataError` naming the file and line of the first bad row.
    """
    path = _jsonl_of(Path(path).expanduser())
    items: list[EvalItem] = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            items.append(_item(path, n, line))
    if not items:
        raise EvalDataError(f"{path}: no questions (expected one JSON object per line with image, question, "
                            f"answers)")
    ids = [it.id for it in items]
    if len(set(ids)) != len(ids):
        dup = next(i for i in ids if ids.count(i) > 1)
        raise EvalDataError(f"{path}: id {dup!r} is used by more than one row (ids must be unique)")
    return items[:limit] if limit else items


def _jsonl_of(path: Path) -> Path:
    if path.is_dir():
        if (path / "questions.jsonl").is_file():
            return path / "questions.jsonl"
        found = sorted(path.glob("*.jsonl"))
        if len(found) == 1:
            return found[0]
        raise EvalDataError(f"{path}: no questions.jsonl in this directory"
                            + (f" and {len(found)} other .jsonl files; name one" if found else ""))
    if not path.is_file():
        raise EvalDataError(f"{path}: no such file or directory (expected a JSONL file of image/question/answers "
                            f"or a directory with questions.jsonl)")
    return path


def _item(path: Path, n: int, line: str) -> EvalItem:
    where = f"{path}:{n}"
    try:
        r = json.loads(line)
    except json.JSONDecodeError as e:
        raise EvalDataError(f"{where}: not valid JSON ({e.msg} at column {e.colno})") from None
    except RecursionError:
        raise EvalDataError(f"{where}: not valid JSON (nested too deeply)") from None
    if not isinstance(r, dict):
        raise EvalDataError(f"{where}: expected a JSON object with image, question, answers, got "
                            f"{type(r).__name__}")
    image, question = r.get("image"), r.get("question")
    if not isinstance(image, str) or not image.strip():
        raise EvalDataError(f"{where}: needs 'image' (a path relative to the file, an absolute path or a URL)")
    if not isinstance(question, str) or not question.strip():
        raise EvalDataError(f"{where}: needs a non-empty 'question'")
    answers = r.get("answers", [r["answer"]] if "answer" in r else None)
    if isinstance(answers, str):
        answers = [answers]
    if not isinstance(answers, list) or not answers or not all(isinstance(a, (str, int, float)) and str(a).strip()
                                                               for a in answers):
        raise EvalDataError(f"{where}: needs 'answers', a non-empty list of accepted answers (or 'answer', one "
                            f"string)")
    if image.startswith("ultralytics:"):
        try:
            image = resolve_package_asset(image)
        except Exception as e:  # noqa: BLE001 - any failure to find the asset is a data problem here
            raise EvalDataError(f"{where}: {image}: {e}") from None
    elif not re.match(r"^(https?|data):", image):
        p = Path(image).expanduser()
        p = p if p.is_absolute() else path.parent / p
        if not p.is_file():
            raise EvalDataError(f"{where}: image {image!r} not found (looked for {p})")
        image = str(p)
    return EvalItem(str(r.get("id") or f"row-{n}"), image, question, [str(a) for a in answers],
                    str(r.get("kind") or ""), str(r.get("split") or ""))


def generated_eval_set(split: str | None = "test", *, kinds: Sequence[str] | None = None, per_kind: int = 3,
                       seed: int = 0, out_dir: str | Path | None = None) -> Path:
    """Render a set of ``training.documents`` (the kinds of ``split``, or ``kinds`` — within ``split`` if both are
    given; ``per_kind`` documents from
    ``seed``) into ``out_dir`` — default: a directory under the lav2 cache named by the arguments and the
    generator's source hash — and return its ``questions.jsonl``."""
    from training import documents

    try:
        chosen = tuple(kinds) if kinds else documents.kinds_of(split or "test")
        if kinds and split:
            outside = [k for k in chosen if k in documents.ALL_KINDS and k not in documents.kinds_of(split)]
            if outside:
                raise EvalError(f"{', '.join(outside)} not in the {split} split "
                                f"({', '.join(documents.kinds_of(split))}): drop --split to choose kinds of any split")
        if out_dir is None:
            from core_model.loading import cache_dir

            name = f"{split or 'kinds'}-{'+'.join(chosen) if kinds else 'all-kinds'}-n{per_kind}-s{seed}"
            out_dir = cache_dir() / "eval-sets" / f"{name}-{documents.source_digest()}"
        return documents.write_eval_set(out_dir, split=split or "all", per_kind=per_kind, seed=seed,
                                        kinds=chosen)
    except ValueError as e:
        raise EvalError(str(e)) from None


# ============================================================================================ scoring
def is_correct(prediction: str, answers: Sequence[str]) -> bool:
    """Any accepted answer occurs in ``prediction`` as a whole word/number (case-insensitive). A number may carry
    a unit ("90" is in "90g" and "90 g", not in "900" or "90.5")."""
    text = prediction.lower()
    for answer in answers:
        raw = answer.lower().strip()
        a = re.escape(raw)
        after = r"(?![\d]|[.,]\d)" if re.fullmatch(r"[\d.,:/-]*\d", raw) else r"(?![\w]|\.\d)"
        if re.search(rf"(?<![\w.]){a}{after}", text):
            return True
    return False


@dataclass(frozen=True)
class Variant:
    """One way of asking: ``name`` in tables, the routing ``policy`` and the ``answer_mode`` (None: the
    pipeline's default; the key is then not sent)."""

    name: str
    policy: str
    answer_mode: str | None = None
    #: False: asked of the pipeline without its adapter (``lav2 eval --compare-adapter``)
    adapter: bool = True

    def input(self, item: EvalItem) -> dict[str, Any]:
        payload: dict[str, Any] = {"image": item.image, "question": item.question, "experts": self.policy}
        if self.answer_mode is not None:
            payload["answer_mode"] = self.answer_mode
        return payload


def variants_for(policy: str = "auto", modes: Sequence[str] | None = None) -> list[Variant]:
    """``experts`` (or ``experts:<mode>`` per mode) and the no-experts baseline ``none`` (in ``generate`` mode
    when modes are given: with no expert text there is nothing to extract)."""
    modes = list(modes or [])
    bad = [m for m in modes if m not in ANSWER_MODES]
    if bad:
        raise EvalError(f"unknown answer mode(s) {', '.join(bad)}: use {', '.join(ANSWER_MODES)}")
    if len(set(modes)) != len(modes):
        raise EvalError(f"answer modes listed twice: {','.join(modes)}")
    if policy == BASELINE:
        raise EvalError("--experts none is the baseline every run includes: choose a policy that consults experts "
                        "(auto, all, model, or a list)")
    experts = ([Variant(f"experts:{m}", policy, m) for m in modes] if modes else [Variant("experts", policy)])
    return [*experts, Variant(BASELINE, BASELINE, "generate" if modes else None)]


def without_adapter(pipeline: Any) -> Any:
    """A copy of a ``VisualQAPipeline`` whose model is the same base without an adapter; it shares the experts
    and their cache with ``pipeline`` (OCR runs once per image for both)."""
    import copy

    twin = copy.copy(pipeline)
    twin._model = None
    twin._load_args = {**pipeline._load_args, "adapter": None}
    return twin


def evaluate(pipeline: Any, items: Sequence[EvalItem], *, policy: str = "auto", modes: Sequence[str] | None = None,
             progress: bool = True, source: str = "", no_adapter: Any = None) -> EvalReport:
    """Ask every question once per variant (:func:`variants_for`) and score the answers.

    ``pipeline`` is anything with ``invoke(dict) -> result`` (``answer``, ``experts``, ``errors``, ``context``,
    ``router``); a ``VisualQAPipeline`` caches each image's expert output, so OCR runs once per image however many
    questions and modes ask about it. ``no_adapter``: the same pipeline without its adapter (:func:`without_adapter`)
    — every experts variant is then asked of it too, as ``<variant>/no-adapter``.
    """
    from tqdm import tqdm

    variants = variants_for(policy, modes) if not (policy == BASELINE and not modes) else \
        [Variant("experts", BASELINE), Variant(BASELINE, BASELINE)]  # the old `--experts none`: both are baselines
    if no_adapter is not None:
        twins = [Variant(f"{v.name}/no-adapter", v.policy, v.answer_mode, adapter=False)
                 for v in variants if v.name != BASELINE]
        variants = [*variants[:-1], *twins, variants[-1]]
    start = time.perf_counter()
    rows = []
    for item in tqdm(items, desc="lav2 eval", unit="q", disable=not progress, dynamic_ncols=True):
        answers: dict[str, dict[str, Any]] = {}
        for v in variants:
            t0 = time.perf_counter()
            try:
                result = (pipeline if v.adapter else no_adapter).invoke(v.input(item))
            except Exception as exc:  # noqa: BLE001 - one bad question (unreadable image ...) is recorded
                error = f"{type(exc).__name__}: {exc}"
                log.warning("%s (%s): %s", item.id, v.name, error)
                answers[v.name] = {"answer": "", "correct": False, "experts": [], "errors": {}, "context": "",
                                   "answer_mode": v.answer_mode, "seconds": round(time.perf_counter() - t0, 3),
                                   "error": error}
                continue
            answer = str(_get(result, "answer", ""))
            answers[v.name] = {"answer": answer, "correct": is_correct(answer, item.answers),
                               "experts": list(_get(result, "experts", {}) or {}),
                               "errors": dict(_get(result, "errors", {}) or {}),
                               "context": str(_get(result, "context", "") or ""),
                               "answer_mode": _get(result, "answer_mode", v.answer_mode),
                               "seconds": round(time.perf_counter() - t0, 3), "error": None}
        first, base = answers[variants[0].name], answers[BASELINE]
        rows.append({"id": item.id, "kind": item.kind, "split": item.split, "image": item.image,
                     "question": item.question, "answers": item.answers,
                     "with_experts": first["answer"], "with_correct": first["correct"],
                     "experts_used": first["experts"], "expert_errors": first["errors"], "context": first["context"],
                     "without_experts": base["answer"], "without_correct": base["correct"], "variants": answers})
    names = [v.name for v in variants]
    by_kind: dict[str, dict[str, Any]] = {}
    for kind in _kind_order(rows):
        sub = [r for r in rows if r["kind"] == kind]
        by_kind[kind] = {"n": len(sub), "split": sub[0]["split"], "with_experts": _acc(sub, names[0]),
                         "without_experts": _acc(sub, BASELINE), **{v: _acc(sub, v) for v in names}}
    describe = getattr(pipeline, "describe_model", None)
    model = str(describe().get("base", "")) if callable(describe) else type(pipeline).__name__
    failed = sum(1 for r in rows if any(a.get("error") for a in r["variants"].values()))
    return EvalReport(_acc(rows, names[0]), _acc(rows, BASELINE), len(rows), by_kind, rows,
                      round(time.perf_counter() - start, 1), model, names, {v: _acc(rows, v) for v in names},
                      policy, source, failed)


def failures(report: EvalReport) -> list[tuple[str, str]]:
    """``(id, first error)`` of every question that could not be asked."""
    out = []
    for r in report.rows:
        error = next((a["error"] for a in r["variants"].values() if a.get("error")), None)
        if error:
            out.append((r["id"], error))
    return out


def _get(result: Any, key: str, default: Any) -> Any:
    if isinstance(result, Mapping):
        return result.get(key, default)
    return getattr(result, key, default)


def _kind_order(rows: Sequence[dict[str, Any]]) -> list[str]:
    """Kinds by split (dev, test, holdout, then others) and first appearance."""
    order = {"dev": 0, "test": 1, "holdout": 2}
    first: dict[str, tuple[int, int]] = {}
    for i, r in enumerate(rows):
        first.setdefault(r["kind"], (order.get(r["split"], 3), i))
    return sorted(first, key=first.__getitem__)


def _acc(rows: Sequence[dict[str, Any]], variant: str) -> float:
    return round(sum(bool(r["variants"][variant]["correct"]) for r in rows) / len(rows), 4) if rows else 0.0


def _count(rows: Sequence[dict[str, Any]], variant: str) -> int:
    return sum(bool(r["variants"][variant]["correct"]) for r in rows)


# ============================================================================================ reports
def _label(variant: str) -> str:
    if variant == BASELINE:
        return "accuracy without experts"
    return "accuracy with experts" + (f", {variant.split(':', 1)[1]}" if ":" in variant else "")


def format_report(report: EvalReport, *, verbose: bool = False) -> str:
    """A table per kind x variant (accuracy and right/asked), split subtotals, the total, one line per variant."""
    variants = report.variants or ["experts", BASELINE]
    rows = report.rows
    lines = []
    if verbose:
        for r in rows:
            for v in variants:
                a = r["variants"][v]
                lines.append(f"{r['id'] if v == variants[0] else '':<28} {'✓' if a['correct'] else '✗'} {v}: "
                             f"{a['answer']!r}")
    heads = [v if v != BASELINE else "no experts" for v in variants]
    widths = [max(len(h), 12) + 2 for h in heads]
    kind_w = max([10, *(len(k or "-") + 2 for k in report.by_kind)])
    lines.append(f"{'kind':<{kind_w}}{'split':<9}{'n':>4}" + "".join(f"{h:>{w}}" for h, w in zip(heads, widths)))

    def line(name: str, split: str, sub: Sequence[dict[str, Any]]) -> str:
        cells = "".join(f"{f'{_count(sub, v) / len(sub):.0%} ({_count(sub, v)}/{len(sub)})':>{w}}"
                        for v, w in zip(variants, widths))
        return f"{name:<{kind_w}}{split:<9}{len(sub):>4}" + cells

    splits_seen = []
    for kind in report.by_kind:
        sub = [r for r in rows if r["kind"] == kind]
        split = sub[0]["split"] if sub else ""
        if split not in splits_seen:
            splits_seen.append(split)
        lines.append(line(kind or "-", split or "-", sub))
    if len([s for s in splits_seen if s]) > 1:
        for split in splits_seen:
            sub = [r for r in rows if r["split"] == split]
            lines.append(line(f"[{split or '-'}]", split or "-", sub))
    if rows:
        lines.append(line("all", "", rows))
    for v in variants:
        lines.append(f"{_label(v) + ':':<40} {report.accuracy.get(v, 0.0):.1%} ({_count(rows, v)}/{report.n})")
    lines.append(f"model {report.model}, experts {report.policy}, {report.seconds:.0f}s"
                 + (f", set {report.source}" if report.source else ""))
    failed = failures(report)
    if failed:
        lines.append(f"{len(failed)} of {report.n} questions failed (counted wrong): "
                     + "; ".join(f"{i}: {e}" for i, e in failed[:3]) + ("; ..." if len(failed) > 3 else ""))
    return "\n".join(lines)


_CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:24px;color:#222}
table{border-collapse:collapse;margin:8px 0 24px}
th,td{border:1px solid #ddd;padding:4px 8px;vertical-align:top;text-align:left}
th{background:#f4f4f4}
td.num{text-align:right;font-variant-numeric:tabular-nums}
.ok{background:#e3f6e3}.bad{background:#fbe3e3}
.doc{display:flex;gap:16px;border-top:2px solid #ccc;padding:12px 0}
.doc img{max-width:320px;height:auto;border:1px solid #ccc}
pre{white-space:pre-wrap;margin:0;font-size:12px;max-width:520px}
.muted{color:#777}
"""


def write_html(report: EvalReport, path: str | Path, *, thumb_px: int = 320) -> Path:
    """A self-contained HTML page: the per-kind summary, then every document (thumbnail as a data URL) with its
    questions, accepted answers, expert context and each variant's answer coloured right/wrong."""
    esc = html.escape
    variants = report.variants or ["experts", BASELINE]
    parts = ["<!doctype html><html><head><meta charset='utf-8'><title>lav2 eval</title>",
             f"<style>{_CSS}</style></head><body>",
             f"<h1>lav2 eval</h1><p>model <b>{esc(report.model)}</b>, experts <b>{esc(report.policy)}</b>, "
             f"{report.n} questions, {report.seconds:.0f}s" + (f", set {esc(report.source)}" if report.source else "")
             + (f", <b>{report.failed} failed</b> (counted wrong)" if report.failed else "") + "</p>",
             "<h2>Accuracy per kind</h2><table><tr><th>kind</th><th>split</th><th>n</th>"
             + "".join(f"<th>{esc(v)}</th>" for v in variants) + "</tr>"]
    for kind, k in report.by_kind.items():
        sub = [r for r in report.rows if r["kind"] == kind]
        parts.append(f"<tr><td>{esc(kind or '-')}</td><td>{esc(k.get('split') or '-')}</td>"
                     f"<td class='num'>{k['n']}</td>"
                     + "".join(f"<td class='num'>{k[v]:.0%} ({_count(sub, v)}/{len(sub)})</td>" for v in variants)
                     + "</tr>")
    parts.append(f"<tr><th>all</th><th></th><th class='num'>{report.n}</th>"
                 + "".join(f"<th class='num'>{report.accuracy.get(v, 0):.1%} ({_count(report.rows, v)}/{report.n})"
                           f"</th>" for v in variants) + "</tr></table><h2>Questions</h2>")
    by_image: dict[str, list[dict[str, Any]]] = {}
    for r in report.rows:
        by_image.setdefault(r["image"], []).append(r)
    for image, rows in by_image.items():
        first = rows[0]
        parts.append(f"<div class='doc'><div><img alt='{esc(Path(image).name)}' src='{_thumbnail(image, thumb_px)}'>"
                     f"<div class='muted'>{esc(first['kind'] or '-')} · {esc(Path(image).name)}</div></div><div>")
        parts.append("<table><tr><th>question</th><th>accepted</th>"
                     + "".join(f"<th>{esc(v)}</th>" for v in variants) + "</tr>")
        for r in rows:
            cells = "".join(f"<td class='{'ok' if r['variants'][v]['correct'] else 'bad'}'>"
                            + (f"<span class='muted'>failed: {esc(r['variants'][v]['error'])}</span>"
                               if r["variants"][v].get("error") else esc(r["variants"][v]["answer"]))
                            + "</td>" for v in variants)
            used = ", ".join(r.get("experts_used") or []) or "none"
            errors = "; ".join(f"{k}: {e}" for k, e in (r.get("expert_errors") or {}).items())
            parts.append(f"<tr><td>{esc(r['question'])}<div class='muted'>{esc(r['id'])}</div>"
                         f"<details><summary>expert context ({esc(used)})</summary>"
                         f"<pre>{esc(r.get('context') or '') or '(empty)'}</pre>"
                         + (f"<div class='muted'>errors: {esc(errors)}</div>" if errors else "")
                         + f"</details></td><td>{esc(' | '.join(r['answers']))}</td>{cells}</tr>")
        parts.append("</table></div></div>")
    parts.append("</body></html>")
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(parts), encoding="utf-8")
    return out


def _thumbnail(image: str, px: int) -> str:
    """A JPEG data URL of at most ``px`` x ``px``, or an empty image if the file cannot be read."""
    from core_model.errors import ImageError
    from core_model.images import open_image

    if re.match(r"^(https?|data):", image):
        return ""
    try:  # open_image: the size and pixel caps of every image input (a decompression bomb is refused, not drawn)
        im = open_image(image, allow_urls=False)
        im.thumbnail((px, px))
        buf = io.BytesIO()
        im.save(buf, format="JPEG", quality=80)
        return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")
    except (ImageError, OSError) as e:
        log.warning("no thumbnail for %s: %s", image, e)
        return ""
