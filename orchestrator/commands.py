"""``lav2 ask``, ``lav2 chat``, ``lav2 batch`` and ``lav2 eval`` (registered by ``orchestrator.cli``)."""
from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any, TextIO

log = logging.getLogger("lav2")

#: lav2 batch's default --max-batch-size (bench/batch.py: rows/min levels off beyond it on a 2-core CPU)
DEFAULT_BATCH_SIZE = 8

_EXPERTS_HELP = ("which experts to consult: auto (keyword rules on the question, default), all, none, model (the "
                 "language model judges each expert), or a comma-separated list such as ocr,detection")


def add_parsers(sub: argparse._SubParsersAction) -> None:
    """Register ask, chat, batch, eval and reader-data on the ``lav2`` parser."""
    p = sub.add_parser("ask", help="answer a question about an image with expert tools",
                       description="Routes the question to expert tools (OCR, detection, caption, search), runs "
                                   "them concurrently and lets the model answer with their observations as context.")
    p.add_argument("image", help="image: path, http(s) URL or data URL")
    p.add_argument("question", help="the question about the image")
    p.add_argument("--json", action="store_true",
                   help="print one JSON object: answer, experts, errors, router, model, visual_prefix, timings")
    p.add_argument("--stream", action="store_true", help="print the answer as it is generated "
                                                          "(with --json: one JSON object per chunk)")
    _pipeline_args(p)
    p.set_defaults(func=cmd_ask)

    p = sub.add_parser("chat", help="multi-turn chat about an image (switch images with /image)",
                       description="Interactive chat. Commands: /image PATH (switch image), /image none, "
                                   "/experts POLICY, /reset (forget the conversation), /quit. Reads stdin, so "
                                   "questions can be piped in.")
    p.add_argument("--image", default=None, help="image to start with")
    p.add_argument("--history-turns", type=int, default=None,
                   help="earlier question/answer pairs the model sees (default: 4; 0 for models under 1B "
                        "parameters such as SmolLM2-135M, which answer worse with earlier turns in the prompt)")
    _pipeline_args(p)
    p.set_defaults(func=cmd_chat)

    p = sub.add_parser("batch", help="answer many (image, question) rows; resumable JSONL output",
                       description="Input: a .jsonl (one {\"image\", \"question\"[, \"id\"]} per line), .csv or .parquet file "
                                   "(columns image, question[, id]), or a folder of images with --question. Output: "
                                   "one JSON line per row, written durably as rows finish; --resume skips rows "
                                   "already written (safe after a crash or kill -9).")
    p.add_argument("input", help="JSONL or CSV file, or a folder of images")
    p.add_argument("-o", "--output", default=None, help="output JSONL (default: <input name>.answers.jsonl)")
    p.add_argument("-q", "--question", action="append", default=[],
                   help="question to ask about every image (folders; repeatable; rows without a question in files)")
    p.add_argument("--resume", action="store_true", help="continue an interrupted run: skip rows already written")
    p.add_argument("--overwrite", action="store_true", help="start over, deleting an existing output")
    p.add_argument("--max-batch-size", type=int, default=DEFAULT_BATCH_SIZE, metavar="N",
                   help=f"rows the model decodes together in one step (continuous batching; default "
                        f"{DEFAULT_BATCH_SIZE}; 1 = one generation at a time)")
    p.add_argument("--expert-workers", type=int, default=None, metavar="N",
                   help="rows running their experts at once, ahead of generation (default: the number of CPU "
                        "cores)")
    p.add_argument("-j", "--concurrency", type=int, default=None,
                   help="rows in flight at once (default: --max-batch-size + 2 x --expert-workers, so the batch "
                        "stays full while upcoming rows run their experts)")
    p.add_argument("--shard", default=None, metavar="I/N",
                   help="process only shard I of N (rows I, I+N, I+2N, ... of the input; I counts from 0): run "
                        "N processes or machines with shards 0/N .. N-1/N and separate outputs to split an input")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    g = p.add_argument_group("Ray (many machines; pip install 'llama-adapter-v2[ray]')")
    g.add_argument("--ray", nargs="?", const="local", default=None, metavar="ADDRESS",
                   help="run the rows on a Ray actor pool, one pipeline and model per actor: no ADDRESS = "
                        "$RAY_ADDRESS or a new local instance; 'auto' = the cluster of this node; or "
                        "ray://HOST:10001. Images must be reachable from every node")
    g.add_argument("--ray-actors", type=int, default=1, metavar="N", help="actors (model copies; default 1)")
    g.add_argument("--ray-cpus", type=float, default=1, metavar="C",
                   help="CPUs Ray reserves per actor (default 1; torch then uses as many threads)")
    g.add_argument("--ray-block", type=int, default=16, metavar="ROWS",
                   help="rows sent to an actor at a time (default 16)")
    _pipeline_args(p)
    p.set_defaults(func=cmd_batch)

    p = sub.add_parser("eval", help="visual-QA accuracy per document kind, with experts (per answer mode) and "
                                    "without",
                       description="Asks every question of an eval set once per variant — with experts (routed by "
                                   "--experts) in each --modes answer mode, and with no experts (the baseline) — and "
                                   "prints a table per kind x variant. Sets: the shipped examples/eval (default), a "
                                   "generated split of rendered documents (--split/--kinds), or your own JSONL "
                                   "(--data).")
    s = p.add_argument_group("which questions")
    s.add_argument("--split", choices=["dev", "test", "holdout", "all"], default=None,
                   help="generate rendered documents of this split's kinds (dev: receipt, menu, ticket, "
                        "product_label, sign, form, book_cover, utility_bill; test: invoice, shipping_label, "
                        "business_card, poster; holdout: prescription, parking_ticket, library_card)")
    s.add_argument("--kinds", default=None, metavar="A,B",
                   help="generate only these kinds (comma-separated; with --split, kinds of that split)")
    s.add_argument("--per-kind", type=int, default=3, metavar="N", help="documents per kind (default 3)")
    s.add_argument("--seed", type=int, default=0, metavar="S",
                   help="first document seed (default 0; seeds S..S+N-1, within 0..999 — training uses 10000+)")
    s.add_argument("--docs-dir", default=None, metavar="DIR",
                   help="write the generated documents here (default: a directory in the lav2 cache)")
    s.add_argument("--data", default=None, metavar="DIR_OR_JSONL",
                   help="your own set: a JSONL of {image, question, answers[, id, kind]} per line (image paths "
                        "relative to the file) or a directory with questions.jsonl")
    s.add_argument("--set", dest="eval_set", default=None, help=argparse.SUPPRESS)  # the old name of --data
    s.add_argument("--limit", type=int, default=None, help="only the first N questions")
    p.add_argument("--modes", default=None, metavar="M,N",
                   help="answer modes to measure with experts, comma-separated from generate, extract, auto "
                        "(sent as the pipeline input's answer_mode; default: the pipeline's own mode only)")
    p.add_argument("--compare-adapter", action="store_true",
                   help="also ask every experts variant of the model without its adapter (e.g. --adapter reader), "
                        "as <variant>/no-adapter: the adapter's effect in the same run")
    p.add_argument("--html", default=None, metavar="FILE",
                   help="also write a self-contained HTML report (thumbnails, questions, expert context, every "
                        "variant's answer, right/wrong)")
    p.add_argument("--json", action="store_true", help="print the full report as JSON")
    p.add_argument("--details", action="store_true", help="print every answer")
    _pipeline_args(p, default_tokens=48)
    p.set_defaults(func=cmd_eval)

    from .reader import add_parser as add_reader_parser

    add_reader_parser(sub)


def _pipeline_args(p: argparse.ArgumentParser, default_tokens: int = 64) -> None:
    g = p.add_argument_group("model and experts")
    g.add_argument("--model", default="smollm2-135m",
                   help="base model: preset, HF/Meta directory or .gguf (default smollm2-135m; random:tiny is an "
                        "instant random model for dry runs)")
    g.add_argument("--adapter", default="auto",
                   help="auto (default): the adapter shipped as --model's default (none today); reader: the reader "
                        "adapter trained for smollm2-135m on OCR'd documents (better answers in --answer-mode "
                        "generate); none: the base model alone; or an adapter directory, official .pth, or adapter "
                        "preset")
    g.add_argument("--vision", default=None, help="CLIP for the visual prefix: open_clip MODEL:PRETRAINED or a "
                                                  "local checkpoint")
    g.add_argument("--device", default="auto", help="cpu, cuda, mps or auto (default)")
    g.add_argument("--dtype", default="auto", help="float32, bfloat16, float16 or auto (default)")
    g.add_argument("--weights", default="auto", choices=["auto", "dense", "packed"],
                   help="base weights in memory: auto (default) keeps a GGUF's quantised blocks (Q4_0/Q4_1/Q8_0/"
                        "Q4_K/Q6_K) on the CPU (same values, several times faster decode; builds a small C kernel "
                        "once), dense dequantises to --dtype, packed insists on the blocks")
    g.add_argument("--activations", default=None, choices=["fp32", "int8"],
                   help="activations of the packed products: fp32 (default; LAV2_ACTIVATIONS sets another default) "
                        "uses the GGUF's exact weight values; int8 (opt-in, packed Q4_0/Q4_1/Q8_0 only) quantises "
                        "activations per 32 values and uses integer dot products (AVX-512 VNNI) — faster batches "
                        "(lav2 serve, lav2 batch), slightly different answers (accuracy: docs/batching.md)")
    g.add_argument("--threads", type=_threads_arg, default=None, metavar="N",
                   help="CPU threads of the model (its products and decode steps; default: every core torch sees, "
                        "or $OMP_NUM_THREADS). lav2 batch and lav2 serve give it N minus the experts running at "
                        "the moment, at least 1; the experts' own processes (Tesseract) are not counted in N")
    g.add_argument("--experts", default="auto", help=_EXPERTS_HELP)
    g.add_argument("--expert-timeout", type=float, default=30.0, help="seconds per expert (default 30)")
    g.add_argument("--answer-mode", default="auto", choices=["auto", "extract", "generate"],
                   help="how answers are made: auto (default) extracts the printed span for short factual "
                        "questions — an amount, date, time, code, name ... — and generates otherwise; extract "
                        "always answers with a span of the OCR text when there is one; generate lets the model "
                        "write every answer")
    g.add_argument("--detection-weights", default=None,
                   help="YOLO weights for the detection expert (default: LAV2_DETECTION_WEIGHTS, a cached "
                        "yolo11n.pt, or the bundled person detector)")
    g.add_argument("--max-new-tokens", type=int, default=default_tokens,
                   help=f"answer length limit (default {default_tokens})")
    g.add_argument("--temperature", type=float, default=0.0, help="0 = greedy (default)")
    g.add_argument("--system", default=None, help="system prompt (default: the prompt style's)")


def _threads_arg(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number of threads, got {text!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {n}")
    return n


def apply_threads(args: argparse.Namespace) -> None:
    """--threads: torch's thread count for this process, set before the model and its engine exist (the
    engine's count, fixed or following the experts, is taken from it)."""
    n = getattr(args, "threads", None)
    if n:
        import torch

        torch.set_num_threads(n)


def model_kwargs(args: argparse.Namespace) -> dict[str, Any] | None:
    """The load_model arguments of --weights / --activations that differ from the defaults (None: none)."""
    kwargs: dict[str, Any] = {}
    if args.weights != "auto":
        kwargs["weights"] = args.weights
    if getattr(args, "activations", None):
        kwargs["activations"] = args.activations
    return kwargs or None


def build_pipeline(args: argparse.Namespace, **extra: Any) -> Any:
    from .experts import default_pipeline_experts
    from .pipeline import VisualQAPipeline

    apply_threads(args)
    experts = default_pipeline_experts()
    if args.detection_weights:
        from tools import DetectionTool

        experts = [DetectionTool(weights=args.detection_weights) if e.name == "detection" else e for e in experts]
    return VisualQAPipeline(args.model, adapter=args.adapter, vision=args.vision, device=args.device,
                            dtype=args.dtype, experts=experts, router=args.experts,
                            expert_timeout=args.expert_timeout, max_new_tokens=args.max_new_tokens,
                            temperature=args.temperature, system=args.system,
                            answer_mode=getattr(args, "answer_mode", "auto"),
                            model_kwargs=model_kwargs(args), **extra)


# ------------------------------------------------------------------------------------------------ ask
def cmd_ask(args: argparse.Namespace) -> int:
    pipeline = build_pipeline(args)
    request = {"image": args.image, "question": args.question}
    out = sys.stdout
    if args.json:
        # stdout carries only the JSON: whatever a library prints while the pipeline runs goes to stderr
        import contextlib

        chunks = pipeline.stream(request) if args.stream else None
        with contextlib.redirect_stdout(sys.stderr):
            if chunks is None:
                result = pipeline.invoke(request)
            else:
                for chunk in chunks:
                    out.write(json.dumps(chunk.to_dict(), ensure_ascii=False, default=str) + "\n")
                    out.flush()
                return 0
        out.write(json.dumps(result.to_dict(), ensure_ascii=False, indent=2, default=str) + "\n")
        return 0
    if not args.stream:
        result = pipeline.invoke(request)
        print_experts(result, out)
        out.write(f"answer: {result.answer}\n")
        return 0
    answer_started = False
    for chunk in pipeline.stream(request):
        if "experts" in chunk:
            print_experts(chunk, out)
        if chunk.get("answer"):
            if not answer_started:
                out.write("answer: ")
                answer_started = True
            out.write(chunk["answer"])
            out.flush()
    out.write("\n")
    return 0


def print_experts(result: Any, out: TextIO) -> None:
    """The router's choice and each expert's contribution (or error), indented, for people."""
    router = result.get("router") or {}
    chosen = router.get("chosen") or []
    out.write(f"experts ({router.get('policy', '?')}): {', '.join(chosen) if chosen else 'none'}\n")
    reasons = router.get("reasons") or {}
    seconds = (result.get("timings") or {}).get("per_expert") or {}
    for name, text in (result.get("experts") or {}).items():
        took = f", {seconds[name]:.2f}s" if name in seconds else ""
        out.write(f"  [{name}] {reasons.get(name, '')}{took}\n")
        for line in str(text).splitlines() or [""]:
            if line.strip():
                out.write(f"    {line}\n")
    out.write(f"visual prefix: {result.get('visual_prefix', '?')}\n")


# ------------------------------------------------------------------------------------------------ chat
_CHAT_HELP = "commands: /image PATH | /image none | /experts POLICY | /reset | /quit"


def cmd_chat(args: argparse.Namespace, stdin: TextIO | None = None, out: TextIO | None = None) -> int:
    from core_model.errors import LAV2Error

    stdin, out = stdin or sys.stdin, out or sys.stdout
    interactive = stdin.isatty()
    pipeline = build_pipeline(args)
    image, policy, history = args.image, args.experts, []
    turns = args.history_turns if args.history_turns is not None else _default_history_turns(pipeline.model)
    out.write(f"lav2 chat — {_CHAT_HELP}\n")
    if turns == 0:
        out.write("(each question is answered on its own: --history-turns N lets the model see earlier turns)\n")
    if image:
        out.write(f"image: {image}\n")
    while True:
        if interactive:
            out.write("you> ")
            out.flush()
        line = stdin.readline()
        if not line:
            break
        text = line.strip()
        if not text:
            continue
        if text.startswith("/"):
            command, _, rest = text.partition(" ")
            rest = rest.strip()
            if command in ("/quit", "/exit"):
                break
            if command == "/image":
                image = None if rest.lower() in ("", "none", "off") else rest
                history = []  # earlier answers were about the old image
                out.write(f"image: {image or 'none'} (conversation reset)\n")
            elif command == "/experts":
                policy = rest or "auto"
                out.write(f"experts: {policy}\n")
            elif command == "/reset":
                history = []
                out.write("conversation reset\n")
            else:
                out.write(f"unknown command {command}; {_CHAT_HELP}\n")
            continue
        request = {"image": image, "question": text, "experts": policy,
                   "history": (history[len(history) - 2 * turns:] if turns else None) or None}
        try:
            answer = ""
            out.write("lav2> ")
            for chunk in pipeline.stream(request):
                if chunk.get("answer"):
                    answer += chunk["answer"]
                    out.write(chunk["answer"])
                    out.flush()
                if chunk.get("errors"):
                    log.info("expert errors: %s", chunk["errors"])
            out.write("\n")
        except (LAV2Error, ValueError, OSError) as e:  # a bad image path must not end the session
            out.write(f"error: {e}\n")
            continue
        history += [{"role": "user", "content": text}, {"role": "assistant", "content": answer}]
    return 0


def _default_history_turns(model: Any) -> int:
    """4, or 0 for models under 1B parameters: measured on SmolLM2-135M, one earlier turn in the prompt turned a
    right answer about the same receipt ("Maple Corner Market") into an invented one."""
    llm = getattr(model, "llm", None)
    if llm is None:
        return 4
    return 0 if llm.num_params() < 1_000_000_000 else 4


# ------------------------------------------------------------------------------------------------ batch
def cmd_batch(args: argparse.Namespace) -> int:
    import os

    from .batch import BatchInputError, read_rows, run_batch, shard_rows

    for flag in ("max_batch_size", "expert_workers", "concurrency"):
        value = getattr(args, flag)
        if value is not None and value < 1:
            raise BatchInputError(f"--{flag.replace('_', '-')} must be >= 1, got {value}")
    rows = shard_rows(read_rows(args.input, args.question), args.shard)
    output = args.output or f"{Path(args.input).name.rsplit('.', 1)[0] or 'batch'}.answers.jsonl"
    workers = args.expert_workers or os.cpu_count() or 2
    concurrency = args.concurrency or args.max_batch_size + 2 * workers
    if args.ray is None:
        pipeline = build_pipeline(args, expert_workers=workers)
        configure = getattr(pipeline.model, "configure_engine", None)
        if configure is not None:
            configure(max_batch_size=args.max_batch_size, threads=_engine_threads())

    def answer(row: Any) -> dict[str, Any]:
        r = pipeline.invoke({"image": row.image, "question": row.question})
        return {"answer": r.answer, "experts": r.experts, "errors": r.errors, "router": r.router["chosen"],
                "visual_prefix": r.visual_prefix, "timings": r.timings}

    bulk = _ray_bulk(args, workers) if args.ray is not None else None
    try:
        summary = run_batch(rows, None if bulk else answer, output, resume=args.resume, overwrite=args.overwrite,
                            concurrency=concurrency, progress=not args.no_progress, bulk=bulk)
    except KeyboardInterrupt:
        print(f"lav2 batch: interrupted; finished rows are in {output}: rerun with --resume to continue",
              file=sys.stderr)
        return 130
    print(f"{output}: {summary.written} row(s) written, {summary.skipped} already done, "
          f"{summary.failed} failed (see their 'error'), {summary.total} in the input", file=sys.stderr)
    return 1 if summary.failed else 0


def _engine_threads() -> Any:
    """The engine's thread count beside experts: the cores their running calls leave (orchestrator.load)."""
    import torch

    from .load import EXPERT_LOAD

    return EXPERT_LOAD.engine_threads(torch.get_num_threads())


def _ray_bulk(args: argparse.Namespace, workers: int) -> Any:
    """The rows go to a Ray actor pool (orchestrator.ray_batch); each actor builds the pipeline of these flags."""
    from .batch import BatchInputError
    from .ray_batch import ray_answers

    if args.detection_weights:
        raise BatchInputError("--detection-weights is not supported with --ray yet: set LAV2_DETECTION_WEIGHTS on "
                              "every node instead")
    pipeline = {"model": args.model, "adapter": args.adapter, "vision": args.vision, "device": args.device,
                "dtype": args.dtype, "router": args.experts, "expert_timeout": args.expert_timeout,
                "max_new_tokens": args.max_new_tokens, "temperature": args.temperature, "system": args.system,
                "answer_mode": args.answer_mode, "model_kwargs": model_kwargs(args)}

    def bulk(todo: list) -> Any:
        return ray_answers(todo, address=None if args.ray == "local" else args.ray, num_actors=args.ray_actors,
                           batch_size=args.ray_block, cpus_per_actor=args.ray_cpus,
                           max_batch_size=args.max_batch_size, expert_workers=workers, **pipeline)

    return bulk


# ------------------------------------------------------------------------------------------------ eval
def cmd_eval(args: argparse.Namespace) -> int:
    from .errors import EvalError
    from .evaluation import DEFAULT_EVAL_SET, evaluate, failures, format_report, generated_eval_set, \
        load_eval_set, variants_for, write_html

    data = args.data or args.eval_set
    kinds = [k.strip() for k in args.kinds.split(",") if k.strip()] if args.kinds else None
    modes = [m.strip() for m in args.modes.split(",") if m.strip()] if args.modes else None
    generated = args.split is not None or kinds is not None
    if data and generated:
        raise EvalError("use either --data (your own set) or --split/--kinds (generated documents), not both")
    if args.docs_dir and not generated:
        raise EvalError("--docs-dir is where --split/--kinds documents are generated: add --split or --kinds")
    if args.per_kind < 1:
        raise EvalError(f"--per-kind must be at least 1, got {args.per_kind}")
    if args.experts != "none" or modes:
        variants_for(args.experts, modes)  # bad modes or policy: fail before loading anything
    if generated:
        path = generated_eval_set(args.split, kinds=kinds, per_kind=args.per_kind, seed=args.seed,
                                  out_dir=args.docs_dir)
        source = (f"{args.split or 'kinds'} ({','.join(kinds) if kinds else 'all kinds'}), {args.per_kind}/kind "
                  f"from seed {args.seed}: {path}")
    else:
        path = Path(data) if data else DEFAULT_EVAL_SET
        source = str(path)
    items = load_eval_set(path, args.limit)
    pipeline = build_pipeline(args)
    twin = None
    if args.compare_adapter:
        from .evaluation import without_adapter

        if pipeline._load_args.get("adapter") is None:
            raise EvalError(f"--compare-adapter: {args.model} runs without an adapter here (--adapter "
                            f"{args.adapter}), there is nothing to compare")
        twin = without_adapter(pipeline)
    report = evaluate(pipeline, items, policy=args.experts, modes=modes, source=source, no_adapter=twin)
    if args.html:
        out = write_html(report, args.html)
        print(f"wrote {out}", file=sys.stderr)
    if args.json:
        print(json.dumps(report.to_dict(), ensure_ascii=False, indent=2))
    else:
        print(format_report(report, verbose=args.details))
    if report.n and report.failed == report.n:
        first = failures(report)[0][1]
        print(f"lav2 eval: error: every question failed, nothing was measured (first: {first})", file=sys.stderr)
        return 1
    return 0
