"""``lav2 tools`` and ``lav2 index``: list / run experts and build the local search index.

The orchestrator's ``lav2`` CLI calls :func:`add_tools_parser` and :func:`add_index_parser` on its argparse
subparsers and dispatches to ``args.func(args)``; ``python -m tools.cli tools|index ...`` works on its own.

Examples::

    lav2 tools                                # every expert with its status (ready / unavailable: why, how to fix)
    lav2 tools --json
    lav2 tools --import my_experts            # also experts that module registers (@expert, as_expert)
    lav2 tools ocr --image receipt.png        # run one expert
    lav2 index ~/notes ~/papers               # build the local search index
    lav2 tools local_search --query "adapter early fusion"
"""
from __future__ import annotations

import argparse
import importlib
import json
import logging
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:  # the parsers must be cheap to add: LangChain loads only when a command runs
    from .base import ExpertStatus, ExpertTool

logger = logging.getLogger(__name__)

__all__ = ["add_index_parser", "add_tools_parser", "cmd_index", "cmd_tools", "main"]


# --------------------------------------------------------------------------------------------- parsers
def add_tools_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``tools`` to an argparse subparsers object; sets ``func=cmd_tools``."""
    parser = subparsers.add_parser(
        "tools",
        help="list the experts and their status, or run one",
        description="Without NAME: list every expert (built-in, entry-point plugins, registered) with its status. "
        "With NAME: run that expert on --image and/or --query.",
    )
    parser.add_argument("name", nargs="?", help="expert to run (omit to list all)")
    parser.add_argument("--image", help="image path, data: URL or http(s) URL for the expert")
    parser.add_argument("--query", help="question or search words for the expert")
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")
    parser.add_argument(
        "--import",
        dest="import_modules",
        action="append",
        default=[],
        metavar="MODULE",
        help="import MODULE first so the experts it defines (@expert / as_expert) are included; repeatable",
    )
    parser.add_argument("--no-plugins", action="store_true", help="skip experts from the lav2.experts entry points")
    parser.set_defaults(func=cmd_tools)
    return parser


def add_index_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``index`` to an argparse subparsers object; sets ``func=cmd_index``."""
    parser = subparsers.add_parser(
        "index",
        help="index your documents (.txt, .md, .jsonl) for the local_search expert",
        description="Split .txt/.md/.jsonl files into passages and store them in a SQLite FTS5 index (BM25) that "
        "the local_search expert reads. JSONL: one object per line with the text in --text-field.",
    )
    parser.add_argument("paths", nargs="+", metavar="DIR", help="directories and/or files to index")
    parser.add_argument("--index", dest="index_path", help="index file (default: $LAV2_INDEX or the user data dir)")
    parser.add_argument("--append", action="store_true", help="add to the existing index instead of rebuilding it")
    parser.add_argument("--chunk-chars", type=int, default=1000, help="passage size in characters (default 1000)")
    parser.add_argument("--overlap-chars", type=int, default=150, help="overlap of split paragraphs (default 150)")
    parser.add_argument("--text-field", default="text", help="JSONL field holding the text (default: text)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")
    parser.set_defaults(func=cmd_index)
    return parser


# --------------------------------------------------------------------------------------------- commands
def cmd_tools(args: argparse.Namespace, out: TextIO | None = None) -> int:
    """List experts with their status, or run one. Returns the exit code."""
    from .base import ExpertError
    from .registry import all_experts, expert_source, get_expert

    out = out or sys.stdout
    try:
        for module in getattr(args, "import_modules", None) or []:
            _import(module)
        experts = all_experts(plugins=not getattr(args, "no_plugins", False))
        if args.name:
            return _run_one(get_expert(args.name, experts), args, out)
    except ExpertError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    statuses = _statuses(experts)
    if args.json:
        rows = [
            {
                "name": t.name,
                "ready": s.ready,
                "status": "ready" if s.ready else "unavailable",
                "reason": s.reason,
                "input": _input_kind(t),
                "source": expert_source(t),
                "description": t.description,
            }
            for t, s in zip(experts, statuses, strict=True)
        ]
        json.dump(rows, out, indent=2, ensure_ascii=False)
        out.write("\n")
        return 0
    width = max((len(t.name) for t in experts), default=4)
    for tool, status in zip(experts, statuses, strict=True):
        label = "ready" if status.ready else "unavailable"
        out.write(f"{tool.name:<{width}}  {label:<11}  {_input_kind(tool):<5}  {expert_source(tool)}\n")
        if status.reason:
            out.write(f"{'':<{width}}  {status.reason}\n")
    ready = sum(s.ready for s in statuses)
    out.write(f"{ready} of {len(experts)} experts ready\n")
    return 0


def cmd_index(args: argparse.Namespace, out: TextIO | None = None) -> int:
    """Build (or extend) the local search index. Returns the exit code."""
    from .base import ExpertError
    from .search import build_index

    out = out or sys.stdout
    try:
        stats = build_index(
            args.paths,
            args.index_path,
            chunk_chars=args.chunk_chars,
            overlap_chars=args.overlap_chars,
            text_field=args.text_field,
            append=args.append,
        )
    except ExpertError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        json.dump(
            {
                "index": str(stats.index_path),
                "files": stats.files,
                "passages": stats.passages,
                "skipped": [{"path": p, "reason": r} for p, r in stats.skipped],
                "seconds": round(stats.seconds, 3),
            },
            out,
            indent=2,
        )
        out.write("\n")
    else:
        out.write(stats.summary() + "\n")
        for path, reason in stats.skipped:
            out.write(f"  skipped {path}: {reason}\n")
    return 0


# --------------------------------------------------------------------------------------------- helpers
def _import(module: str) -> None:
    from .base import ExpertError

    if str(Path.cwd()) not in sys.path:  # `--import my_experts` should find a module in the current directory
        sys.path.insert(0, str(Path.cwd()))
    try:
        importlib.import_module(module)
    except Exception as exc:  # noqa: BLE001 - user plugin module: report, do not crash with a traceback
        raise ExpertError(f"cannot import expert module {module!r}: {type(exc).__name__}: {exc}") from exc


def _statuses(experts: list[ExpertTool]) -> list[ExpertStatus]:
    from .base import ExpertStatus

    def safe(tool: ExpertTool) -> ExpertStatus:
        try:
            return tool.status()
        except Exception as exc:  # noqa: BLE001 - a broken status() is itself a status
            return ExpertStatus(False, f"status() failed: {type(exc).__name__}: {exc}")

    if not experts:
        return []
    with ThreadPoolExecutor(max_workers=min(4, len(experts)), thread_name_prefix="lav2-status") as pool:
        return list(pool.map(safe, experts))


def _input_kind(tool: ExpertTool) -> str:
    return "image" if tool.needs_image else "query" if getattr(tool, "needs_query", False) else "any"


def _run_one(tool: ExpertTool, args: argparse.Namespace, out: TextIO) -> int:
    result = tool.run_expert(image=args.image, query=args.query)
    if args.json:
        json.dump(result.to_dict(), out, indent=2, ensure_ascii=False, default=str)
        out.write("\n")
    elif result.error is None:
        out.write(result.text + "\n")
    else:
        print(f"error: {tool.name}: {result.error}", file=sys.stderr)
    return 0 if result.error is None else 1


def main(argv: list[str] | None = None) -> int:
    """Stand-alone entry: ``python -m tools.cli tools|index ...``."""
    parser = argparse.ArgumentParser(prog="python -m tools.cli", description="LLaMA-Adapter V2 expert tools")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging (-v info, -vv debug)")
    subparsers = parser.add_subparsers(dest="command", required=True)
    add_tools_parser(subparsers)
    add_index_parser(subparsers)
    args = parser.parse_args(argv)
    level = logging.WARNING if args.verbose == 0 else logging.INFO if args.verbose == 1 else logging.DEBUG
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
