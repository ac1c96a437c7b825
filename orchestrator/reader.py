"""The reader adapter's training set: documents OCR'd and prompted exactly as the pipeline does at inference.

Issue 13's fourth lever is a *reader adapter*: the paper's instruction group (bias + scale, norms, late prompts;
:mod:`core_model` preset ``paper-text``) trained by ``lav2 train`` so the small default model reads expert text
well — the answer it writes (``generate``) and the log-probabilities it gives candidate spans (``extract``,
``auto``) both come from that model. This module writes the data such a run trains on:

* **document questions** — :func:`training.documents.train_documents` renders documents of the *dev* kinds only
  (seeds from 10000: never an evaluation document, never a test/holdout kind) with several layouts, fonts,
  colours, slight rotation and noise; each goes through the pipeline's own router and experts (Tesseract, the
  ``rows`` layout) and :meth:`VisualQAPipeline.build_prompt`, so the user turn is byte for byte what the model
  sees when answering; the target is the answer as printed. A question whose answer the OCR lost is left out (it
  would teach the model to invent).
* **generic records** (``records=N``, ``--records N``; default 0) — N documents of the train-only kind ``record``
  in addition: fields from a catalogue of many domains (travel, healthcare, banking, HR, logistics, legal, IT ...)
  in many layouts (label/value rows, two columns, sections, tables, billed lines, unlabelled blocks) with varied
  question phrasings, so the reader learns to find the value a question asks for rather than the dev kinds'
  layouts. They go through exactly the same path as the dev-kind documents (OCR, prompt, printed answer,
  questions the OCR lost left out); never a test/holdout kind, never an evaluation seed.
* **general instructions** — plain-chat questions (facts, arithmetic, short instructions) and open questions
  about the same documents, answered by the *base model itself* (greedy, no adapter): training on its own replies
  keeps plain chat where it was while the document questions move the reader.

Output: ``<out>/reader.json`` (OpenAI-style ``messages`` records, the format ``lav2 train`` reads as
``format: sharegpt``) and ``<out>/manifest.json`` (counts, seeds, timings). See ``training/configs/
smollm2_reader.yaml`` and the README section "The reader adapter".

    lav2 reader-data runs/reader/data --docs-per-kind 120 --general 360
    lav2 reader-data runs/reader/data --docs-per-kind 120 --records 960 --general 360   # + generic records
"""
from __future__ import annotations

import argparse
import json
import logging
import random
import re
import time
from collections.abc import Sequence
from itertools import chain
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

# -- general instructions (answered by the base model itself) ----------------------------------------------
_COUNTRIES = ["France", "Italy", "Spain", "Germany", "Japan", "Canada", "Egypt", "Brazil", "India", "Kenya",
              "Norway", "Peru", "Greece", "Poland", "Chile", "Ireland", "Portugal", "Sweden", "Mexico", "Turkey",
              "Austria", "Australia", "China", "Argentina", "Cuba", "Finland", "Hungary", "Thailand", "Vietnam",
              "Morocco"]
_THINGS = ["the sun", "the ocean", "a forest", "a library", "a bicycle", "the moon", "a volcano", "a river",
           "winter", "a city at night", "a garden", "a train station", "coffee", "a lighthouse", "the desert",
           "a thunderstorm", "a bakery", "the mountains", "a museum", "a harbour"]
_WORDS = ["happy", "cold", "fast", "bright", "quiet", "strong", "early", "small", "easy", "full", "old", "wet"]
_CATEGORIES = ["fruits", "colours", "animals that live in the sea", "musical instruments", "vegetables",
               "planets", "sports played with a ball", "kitchen tools", "birds", "tools for writing"]
_TOPICS = ["photosynthesis", "gravity", "a rainbow", "democracy", "a computer", "recycling", "the internet",
           "vaccination", "an earthquake", "inflation", "the water cycle", "a calendar"]
_TASKS = ["Write a short greeting for a birthday card.", "Give me a tip for sleeping better.",
          "Write a haiku about autumn.", "Suggest a name for a pet cat.", "Write one sentence to thank a teacher.",
          "Give me a tip for learning a new language.", "Write a short slogan for a bakery.",
          "Suggest a healthy breakfast.", "Write a polite reply declining an invitation.",
          "Give me two ideas for a rainy afternoon.", "Write a short motivational sentence.",
          "Tell me a fun fact about octopuses.", "Write a short message to wish someone good luck.",
          "Give me a simple recipe idea with eggs.", "Write a title for a story about a lost key."]
_OPEN_DOC_QUESTIONS = ["What kind of document is this?", "What is this image about?",
                       "Summarize what this document says.", "What is written on this image?",
                       "Describe this document in one sentence."]


def general_questions(n: int, seed: int = 0) -> list[str]:
    """``n`` varied plain-chat questions (facts, arithmetic, definitions, short instructions), reproducible."""
    rng = random.Random(seed)
    makers = [
        lambda: f"What is the capital of {rng.choice(_COUNTRIES)}?",
        lambda: f"What is {rng.randint(2, 60)} plus {rng.randint(2, 60)}?",
        lambda: f"What is {rng.randint(2, 12)} times {rng.randint(2, 12)}?",
        lambda: f"What is {rng.randint(30, 99)} minus {rng.randint(1, 29)}?",
        lambda: f"What is the opposite of \"{rng.choice(_WORDS)}\"?",
        lambda: f"Name three {rng.choice(_CATEGORIES)}.",
        lambda: f"Write one sentence about {rng.choice(_THINGS)}.",
        lambda: f"Explain {rng.choice(_TOPICS)} in one sentence.",
        lambda: rng.choice(_TASKS),
    ]
    seen: set[str] = set()
    out: list[str] = []
    for _ in range(n * 50):
        if len(out) >= n:
            break
        q = rng.choice(makers)()
        if q not in seen:
            seen.add(q)
            out.append(q)
    return out


# -- the set ------------------------------------------------------------------------------------------------
@dataclass
class ReaderSetStats:
    documents: int = 0
    document_questions: int = 0
    skipped_not_read: int = 0
    general_chat: int = 0
    general_documents: int = 0
    skipped_truncated: int = 0
    seconds: dict[str, float] = field(default_factory=dict)


def printed_answer(answer: str, text: str) -> str | None:
    """The answer as the experts printed it, or None when the text does not hold it (case-insensitive, whole
    words). Values with digits keep an adjacent currency sign or unit (``"€3.40"``, ``"750 ml"``); names grow over
    the capitalised words next to them within their cell (``"Horvath"`` in ``"by Anna Horvath"`` gives ``"Anna
    Horvath"``, ``"Copper"`` gives ``"COPPER"``), never over a ``Label:`` or a lower-case word."""
    pat = re.compile(r"(?<![\w.])" + re.escape(answer.strip()) + r"(?!\w)", re.IGNORECASE)
    for line in text.splitlines():
        for cell in line.split(" | "):
            m = pat.search(cell)
            if not m:
                continue
            s, e = m.span()
            if any(ch.isdigit() for ch in answer):
                pre = re.search(r"[€$£]\s?$", cell[:s])
                post = re.match(r"\s?(?:ml|l|g|kg|km/h|mph|km|cm|mm|EUR|USD|GBP|CHF|%)(?!\w)", cell[e:], re.I)
                return cell[(pre.start() if pre else s):(e + post.end() if post else e)]
            words = cell.split()
            # word indexes of the match, then grow over neighbouring capitalised words
            starts, pos = [], 0
            for w in words:
                pos = cell.index(w, pos)
                starts.append((pos, pos + len(w)))
                pos += len(w)
            first = next(i for i, (a, b) in enumerate(starts) if b > s)
            last = max(i for i, (a, b) in enumerate(starts) if a < e)

            def name_word(w: str) -> bool:
                return w[:1].isupper() and not w.endswith(":") and w.lower() not in _NOT_NAME

            while first > 0 and name_word(words[first - 1]):
                first -= 1
            while last + 1 < len(words) and name_word(words[last + 1]):
                last += 1
            return " ".join(words[first:last + 1]).strip(" ,;")
    return None


_NOT_NAME = {"by", "from", "to", "the", "tel", "phone", "flight", "gate", "platform", "zone", "author", "publisher",
             "edition", "novel", "a", "an", "and", "of"}


def _record(user: str, answer: str, source: str) -> dict[str, Any]:
    return {"id": source, "messages": [{"role": "user", "content": user}, {"role": "assistant", "content": answer}]}


def prompt_parts(pipeline: Any, image: Any, question: str) -> tuple[str, Any, dict[str, str], list[str]]:
    """``(user turn, full prompt, expert texts, stop strings)`` for ``question`` about ``image`` — the pipeline's own routing,
    experts, context and prompt. Raises ``RuntimeError`` if the user turn rendered in the model's prompt style
    differs from :meth:`VisualQAPipeline.build_prompt` (training would then see another prompt than inference)."""
    from prompts import get_style, question_with_context

    decision = pipeline.router.route(question, pipeline.experts, has_image=image is not None, model=pipeline.model,
                                     prompt_style=pipeline.prompt_style, policy=None)
    outcomes = pipeline.run_experts(decision.chosen, image, question) if decision.chosen else {}
    contributed = {n: o["text"] for n, o in outcomes.items() if o["error"] is None and o["text"]}
    context = pipeline.format_context(contributed)
    prompt, stop = pipeline.build_prompt(question, context)
    asked = f"{question.strip()} {pipeline.answer_hint}".strip() if pipeline.answer_hint else question.strip()
    user = question_with_context(asked, context or None)
    style = get_style(pipeline.prompt_style or pipeline.model.prompt_style)
    if str(style.format(user, system=pipeline.system)) != str(prompt):
        raise RuntimeError("the reader set's user turn does not render to the pipeline's prompt; the prompt style "
                           "or build_prompt changed — update orchestrator/reader.py")
    return user, prompt, contributed, stop


def build_reader_set(out_dir: str | Path, *, docs_per_kind: int = 120, general: int = 360,
                     open_doc_share: float = 0.3, kinds: Sequence[str] | None = None, seed: int = 0,
                     pipeline: Any = None, progress: bool = True, records: int = 0) -> ReaderSetStats:
    """Write ``reader.json`` + ``manifest.json`` into ``out_dir`` (see the module docstring).

    ``docs_per_kind`` training documents of each dev kind (``kinds``: a subset of them); ``records`` documents of
    the train-only generic kind ``record`` in addition (same seeds block, same pipeline path); ``general``
    self-answered instructions, ``open_doc_share`` of them open questions about the rendered documents (the rest
    plain chat).
    ``pipeline``: the :class:`VisualQAPipeline` whose experts and prompts are mimicked (default: the offline
    default *without* the reader adapter — the targets of the general share are the base model's replies).
    """
    from tqdm import tqdm

    from training.documents import SPLITS, TRAIN_ONLY_KINDS, TRAIN_SEED_START, answer_in_text, train_documents

    from .pipeline import VisualQAPipeline

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    kinds = tuple(kinds or SPLITS["dev"])
    bad = [k for k in kinds if k not in SPLITS["dev"]]
    if bad:  # before any model is loaded or document rendered
        hint = "; train-only kinds come with --records N" if set(bad) & set(TRAIN_ONLY_KINDS) else ""
        raise ValueError(f"{', '.join(bad)}: not dev kinds — the reader trains on dev kinds only "
                         f"({', '.join(SPLITS['dev'])}); test and holdout kinds measure what training did not see"
                         + hint)
    if docs_per_kind < 0 or records < 0:
        raise ValueError(f"docs_per_kind and records must be >= 0, got {docs_per_kind} and {records}")
    if pipeline is None:
        pipeline = VisualQAPipeline(adapter=None)
    stats = ReaderSetStats()
    rows: list[dict[str, Any]] = []  # the reader.json records
    rng = random.Random(seed)
    n_open = int(round(general * open_doc_share))
    open_docs: list[tuple[Any, str, str]] = []  # (image, question, source) answered by the base model below

    t0 = time.perf_counter()
    start = TRAIN_SEED_START + seed * 100_000
    n_docs = docs_per_kind * len(kinds) + records
    docs = chain(train_documents(docs_per_kind, kinds, start=start),
                 train_documents(records, TRAIN_ONLY_KINDS, start=start))
    bar = tqdm(docs, total=n_docs, desc="documents (OCR)", unit="doc", disable=not progress)
    for doc in bar:
        stats.documents += 1
        for j, qa in enumerate(doc.questions):
            user, _, contributed, _ = prompt_parts(pipeline, doc.image, qa.question)
            read = "\n".join(contributed.values())
            target = next((t for t in (printed_answer(a, read) for a in qa.answers) if t), None) \
                if answer_in_text(qa.answers, read) else None
            if target is None:
                stats.skipped_not_read += 1
                continue
            rows.append(_record(user, target, f"{doc.kind}/{doc.seed}/{j}/{qa.field}"))
            stats.document_questions += 1
        if len(open_docs) < n_open and rng.random() < max(0.05, 2.0 * n_open / max(1, n_docs)):
            open_docs.append((doc.image, rng.choice(_OPEN_DOC_QUESTIONS), f"{doc.kind}/{doc.seed}/open"))
        pipeline._cache.clear()  # one document's OCR is reused by its questions, never across documents
    stats.seconds["documents"] = round(time.perf_counter() - t0, 1)

    t1 = time.perf_counter()
    jobs = [(None, q, f"chat/{i}") for i, q in enumerate(general_questions(general - len(open_docs), seed))]
    jobs += open_docs
    max_new = pipeline.max_new_tokens
    for image, question, source in tqdm(jobs, desc="general (base model answers)", unit="q", disable=not progress):
        user, prompt, _, stop = prompt_parts(pipeline, image, question)
        completion = pipeline.model.generate(prompt, max_new_tokens=max_new, temperature=0.0, stop=stop)
        reply = completion.text.strip()
        if completion.completion_tokens >= max_new or not reply:
            stats.skipped_truncated += 1  # a reply cut at max_new_tokens would teach stopping mid-sentence
            continue
        rows.append(_record(user, reply, source))
        if image is None:
            stats.general_chat += 1
        else:
            stats.general_documents += 1
        pipeline._cache.clear()
    stats.seconds["general"] = round(time.perf_counter() - t1, 1)

    random.Random(seed + 1).shuffle(rows)
    (out / "reader.json").write_text(json.dumps(rows, indent=0, ensure_ascii=False))
    manifest = {"records": len(rows), "kinds": list(kinds), "docs_per_kind": docs_per_kind,
                "record_documents": records, "seed_start": start, "general_requested": general,
                "model": pipeline.describe_model(), "stats": stats.__dict__}
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1))
    log.info("reader set: %d records in %s", len(rows), out / "reader.json")
    return stats


# -- CLI --------------------------------------------------------------------------------------------------
def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("reader-data", help="write the reader adapter's training set (rendered dev-kind documents "
                                           "and optional generic records, OCR'd and prompted as the pipeline does)",
                       description="Render training documents of the dev kinds (never test/holdout kinds, never "
                                   "evaluation seeds), run the pipeline's router and experts on each, and write "
                                   "OUT/reader.json (messages records for `lav2 train`, format sharegpt) with the "
                                   "printed answers as targets, plus general instructions answered by the base "
                                   "model itself so plain chat is kept. --records N adds N generic 'record' "
                                   "documents (a train-only kind of many domains and layouts) through the same "
                                   "path. Then: lav2 train training/configs/smollm2_reader.yaml")
    p.add_argument("out", help="output directory (reader.json, manifest.json)")
    p.add_argument("--docs-per-kind", type=int, default=120, help="documents per dev kind (default 120; ~3 "
                   "questions each, ~0.5 s of OCR per document; 0 with --records for generic records only)")
    p.add_argument("--records", type=int, default=0, metavar="N",
                   help="N generic 'record' documents in addition (a train-only kind: fields of many domains in "
                        "many layouts, to teach finding the asked value in any document; same OCR and prompts as "
                        "the dev kinds; default 0)")
    p.add_argument("--general", type=int, default=360, help="self-answered general instructions (default 360)")
    p.add_argument("--open-share", type=float, default=0.3,
                   help="share of the general instructions that are open questions about a document (default 0.3)")
    p.add_argument("--kinds", default=None, help="comma-separated dev kinds (default: all dev kinds)")
    p.add_argument("--seed", type=int, default=0, help="seed block (documents from 10000 + seed*100000)")
    p.set_defaults(func=cmd_reader_data)


def cmd_reader_data(args: argparse.Namespace) -> int:
    from .errors import ReaderDataError

    if args.docs_per_kind < 0 or args.records < 0 or args.docs_per_kind + args.records < 1 or args.general < 0 \
            or not 0.0 <= args.open_share <= 1.0:
        raise ReaderDataError("--docs-per-kind and --records must be >= 0 (one of them >= 1), --general >= 0 and "
                              "--open-share in [0, 1]")
    kinds = [k.strip() for k in args.kinds.split(",") if k.strip()] if args.kinds else None
    try:
        stats = build_reader_set(args.out, docs_per_kind=args.docs_per_kind, general=args.general,
                                 open_doc_share=args.open_share, kinds=kinds, seed=args.seed,
                                 records=args.records)
    except ValueError as e:  # a test/holdout or unknown kind
        raise ReaderDataError(str(e)) from None
    print(json.dumps({"out": str(Path(args.out) / "reader.json"), **stats.__dict__}, indent=1))
    return 0
