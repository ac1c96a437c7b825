"""Extraction rules alone, fast: how often `orchestrator.extract.extract_answer` picks the printed answer from the
pipeline's own OCR of rendered documents — the loop for developing the rules (issue 13).

    python bench/extraction.py                                      # record documents, seeds 20000..20099
    python bench/extraction.py --kinds record --seeds 20200:20400 -v   # every miss with its top candidates
    python bench/extraction.py --kinds receipt,menu,ticket,product_label,sign,form,book_cover,utility_bill \\
        --seeds 500:525

The OCR text (the default `OCRTool`, as the pipeline reads it) is cached per document under the lav2 cache
(`eval-ocr/<kind>-<seed>-<hash of documents.py and tools/ocr.py>.json`), so after the first run a few hundred
documents take seconds. No language model: the label rules decide (the pipeline adds the model's log-probabilities
at weight 0.15, and generates when extraction declines), so these numbers are a lower bound of `auto` mode.

Develop on `dev` kinds and on the train-only `record` kind (any seeds outside the reader's training seeds,
10000..10599); never on the `test` or `holdout` kinds — the script refuses them unless `--count-only` is given,
which prints the total and nothing about single questions.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import sys
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def _ocr_cache(tool: object, kind: str, seed: int, digest: str) -> dict:
    from core_model.loading import cache_dir
    from orchestrator.pipeline import contribution
    from training.documents import render

    path = cache_dir() / "eval-ocr" / f"{kind}-{seed}-{digest}.json"
    if path.exists():
        return json.loads(path.read_text())
    doc = render(kind, seed)
    result = tool.run_expert(image=doc.image, query="")
    entry = {"text": contribution(result, tool) or "", "layout": doc.layout,
             "questions": [[q.question, list(q.answers)] for q in doc.questions]}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(entry))
    return entry


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kinds", default="record", help="comma-separated document kinds (default: record)")
    parser.add_argument("--seeds", default="20000:20100", help="START:STOP (default 20000:20100)")
    parser.add_argument("-v", "--verbose", action="store_true", help="print every miss whose answer OCR did read")
    parser.add_argument("--count-only", action="store_true", help="allow test/holdout kinds: totals only")
    args = parser.parse_args()

    from tqdm import tqdm

    from orchestrator.evaluation import is_correct
    from orchestrator.extract import extract_answer
    from prompts import sanitize_expert_text
    from training import documents

    kinds = [k.strip() for k in args.kinds.split(",") if k.strip()]
    unknown = [k for k in kinds if k not in documents.ALL_KINDS + documents.TRAIN_ONLY_KINDS]
    if unknown:
        parser.error(f"unknown kind(s) {', '.join(unknown)}")
    sealed = [k for k in kinds if k in documents.kinds_of("test") + documents.kinds_of("holdout")]
    if sealed and (args.verbose or not args.count_only):
        parser.error(f"{', '.join(sealed)}: test/holdout kinds are measured, not studied — add --count-only "
                     "(and no -v) to count them")
    try:
        start, stop = (int(x) for x in args.seeds.split(":"))
    except ValueError:
        parser.error("--seeds must be START:STOP, e.g. 20000:20100")
    from tools import OCRTool, ocr

    # the documents' and the OCR's source: a changed generator or reader is never served from a stale cache
    digest = documents.source_digest() + hashlib.sha256(Path(ocr.__file__).read_bytes()).hexdigest()[:10]
    tool = OCRTool()

    jobs = [(k, s) for k in kinds for s in range(start, stop)]
    with ThreadPoolExecutor(2) as pool:  # Tesseract runs in its own process: two at a time on two cores
        docs = list(tqdm(pool.map(lambda job: (job, _ocr_cache(tool, *job, digest)), jobs), total=len(jobs),
                         desc="OCR (cached)", unit="doc", dynamic_ncols=True))
    asked = right = declined = readable = 0
    misses: Counter[str] = Counter()
    for (kind, seed), doc in docs:
        text = sanitize_expert_text(doc["text"])
        for question, answers in doc["questions"]:
            asked += 1
            result = extract_answer(question, text, require_type=True)
            good = result.answer is not None and is_correct(result.answer, answers)
            right += good
            declined += result.answer is None
            present = is_correct(text, answers)
            readable += present
            if not good and present:
                misses[str(result.answer_type)] += 1
                if args.verbose:
                    print(f"{kind}-{seed} [{doc['layout']}] {question} | accepted {answers} | got "
                          f"{result.answer!r} ({result.answer_type}; {result.reason})")
                    for c in result.candidates[:3]:
                        print(f"    {c.text!r} {c.kind} label={c.label!r} label_score={c.label_score:.2f} "
                              f"score={c.score:.2f}")
    print(f"{','.join(kinds)} seeds {start}..{stop - 1}: {right}/{asked} = {right / max(asked, 1):.1%} right; "
          f"{declined} declined (auto mode generates those); the answer is in the OCR text for {readable}")
    if not args.count_only or not sealed:
        print("misses with the answer read, by question type: "
              + ", ".join(f"{t} {n}" for t, n in misses.most_common()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
