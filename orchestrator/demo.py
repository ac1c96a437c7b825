"""``make demo``: ``lav2 ask`` on the receipt shipped in ``examples/``, fully offline (SmolLM2-135M + Tesseract).

Prints what each expert contributed and the answer, then checks the answer against the receipt's known total.
Exit code 0 when the answer is correct.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
RECEIPT = REPO / "examples" / "receipt.png"
QUESTION = "What is the total on this receipt?"
EXPECTED = "18.55"  # examples/render_examples.py: DEMO_RECEIPT["total"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m orchestrator.demo", description=__doc__)
    parser.add_argument("--model", default="smollm2-135m", help="base model (default smollm2-135m)")
    parser.add_argument("--stream", action="store_true", help="stream the answer")
    args = parser.parse_args(argv)

    import logging

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    from core_model.errors import LAV2Error

    from .commands import print_experts
    from .evaluation import is_correct
    from .pipeline import VisualQAPipeline

    if not RECEIPT.is_file():
        print(f"demo image {RECEIPT} is missing: run `python examples/render_examples.py` in the repository",
              file=sys.stderr)
        return 2
    rel = RECEIPT.relative_to(REPO)
    print(f"$ lav2 ask {rel} {QUESTION!r}")
    print(f"(offline default: {args.model} + Tesseract OCR; loading the model ...)", flush=True)
    start = time.perf_counter()
    try:
        pipeline = VisualQAPipeline(args.model)
        result = None
        for chunk in pipeline.stream({"image": str(RECEIPT), "question": QUESTION}):
            result = chunk if result is None else result + chunk
            if "experts" in chunk:
                print_experts(chunk, sys.stdout)
                print("answer: ", end="", flush=True)
            if chunk.get("answer"):
                print(chunk["answer"], end="", flush=True)
        print()
    except LAV2Error as e:
        print(f"demo: error: {e}", file=sys.stderr)
        return 2
    assert result is not None
    errors = result.get("errors") or {}
    if "ocr" in errors:
        print(f"the OCR expert failed ({errors['ocr']}): install Tesseract (`apt-get install tesseract-ocr`)",
              file=sys.stderr)
    ok = is_correct(result.answer, [EXPECTED])
    t = result.timings
    print(f"({t['experts']:.1f}s experts, {t.get('extract', 0.0) + t['generate']:.1f}s answer, {time.perf_counter() - start:.1f}s total)")
    print(f"{'correct' if ok else 'WRONG'}: the receipt's total is {EXPECTED}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
