"""The ``lav2`` command line. Each subcommand lives beside the code it drives; this module only wires them.

Library errors (``LAV2Error`` and the tools' errors) become one clear line on stderr and exit code 2.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
from typing import Callable, Sequence

log = logging.getLogger("lav2")


# ------------------------------------------------------------------------------------------------ params
def add_params_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("params", help="count trainable parameters per group for a preset (no weights needed)",
                       description="Builds the model on the meta device (no memory, no weights) and counts the "
                                   "parameters of the visual, instruction and frozen groups, by kind.")
    p.add_argument("--model", default="llama-7b", help="model preset (default: llama-7b); see --list")
    p.add_argument("--adapter", default=None,
                   help="adapter preset (default: the paper's layouts side by side: paper, chat65b, release-bias)")
    p.add_argument("--list", action="store_true", help="list model and adapter presets and exit")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=cmd_params)


def _count(model_name: str, adapter_name: str) -> dict:
    import torch

    from core_model import Transformer, adapter_preset, model_preset
    from core_model.groups import count_by_kind, count_params

    cfg = model_preset(model_name)
    acfg = adapter_preset(adapter_name, cfg)
    with torch.device("meta"):
        model = Transformer(cfg, acfg)
        if acfg.fusion != "none":  # the visual prefix belongs to the visual group too (CLIP ViT-L/14 tokens)
            from core_model.vision import VisualPrefixConfig, build_visual_prefix

            vcfg = (VisualPrefixConfig.paper(768, cfg.dim, acfg.visual_tokens) if acfg.fusion == "early"
                    else VisualPrefixConfig.release_7b(cfg.dim))
            model.add_module("visual_prefix", build_visual_prefix(vcfg))
    groups = count_params(model)
    return {"model": model_name, "adapter": adapter_name, "groups": groups, "kinds": count_by_kind(model),
            "trainable": groups["visual"] + groups["instruction"], "total": sum(groups.values())}


PAPER_FIGURE = ("paper §4.1: bias + scale + norm on LLaMA-65B ≈ 14M parameters "
                "(the chat65b layout: `lav2 params --model llama-65b --adapter chat65b`)")


def cmd_params(args: argparse.Namespace) -> int:
    from core_model.config import ADAPTER_PRESETS, MODEL_PRESETS

    if args.list:
        print("models:  ", ", ".join(MODEL_PRESETS))
        print("adapters:", ", ".join(ADAPTER_PRESETS))
        return 0
    adapters = [args.adapter] if args.adapter else ["paper", "chat65b", "release-bias"]
    rows = [_count(args.model, a) for a in adapters]
    if args.json:
        print(json.dumps(rows, indent=1))
        return 0
    print(f"model {args.model}: {rows[0]['groups']['frozen'] / 1e6:,.1f}M frozen base parameters "
          "(CLIP itself is frozen and not counted; visual = prefix + visual gates)")
    print(f"{'adapter':<18}{'visual':>12}{'instruction':>14}{'trainable':>12}{'% of base':>11}  by kind")
    for r in rows:
        kinds = ", ".join(f"{k}={v / 1e6:.2f}M" if v >= 1e5 else f"{k}={v:,}" for k, v in sorted(r["kinds"].items()))
        pct = 100 * r["trainable"] / (r["total"] - r["trainable"])
        print(f"{r['adapter']:<18}{r['groups']['visual']:>12,}{r['groups']['instruction']:>14,}"
              f"{r['trainable']:>12,}{pct:>10.3f}%  {kinds}")
    print(f"for comparison — {PAPER_FIGURE}")
    return 0


# ------------------------------------------------------------------------------------------------ convert
def add_convert_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("convert", help="convert an official LLaMA-Adapter V2 .pth into this project's format",
                       description="Reads an official checkpoint (BIAS-7B, LORA-BIAS-7B, CAPTION-7B, "
                                   "LORA-BIAS-7B-v21, or chat65b) with weights_only=True and writes "
                                   "adapter.safetensors + adapter_config.json.")
    p.add_argument("checkpoint", help="official .pth file")
    p.add_argument("output", help="output directory")
    p.add_argument("--base", default="llama-7b",
                   help="base model the adapter belongs to: a preset (llama-7b) or a model directory "
                        "(only its config is read)")
    p.set_defaults(func=cmd_convert)


def _base_config(base: str):
    from core_model.config import MODEL_PRESETS, model_preset

    if base in MODEL_PRESETS:
        return model_preset(base)
    from core_model.loading import resolve_base

    return resolve_base(base).config


def cmd_convert(args: argparse.Namespace) -> int:
    from core_model.checkpoints import convert_official, save_adapter

    ckpt = convert_official(args.checkpoint, _base_config(args.base))
    out = save_adapter(args.output, ckpt)
    n = sum(t.numel() for t in ckpt.state.values())
    a = ckpt.adapter
    print(f"wrote {out} ({n / 1e6:.2f}M parameters; linear={a.linear}, prompts={a.prompt_layers}x{a.prompt_len}, "
          f"lora_rank={a.lora_rank}, fusion={a.fusion}, visual prefix={'yes' if ckpt.vision_prefix else 'no'})")
    return 0


# ------------------------------------------------------------------------------------------------ main
def _optional(module: str, name: str) -> Callable[[argparse._SubParsersAction], None] | None:
    """Subcommands of other packages register themselves when their package is present."""
    import importlib

    try:
        mod = importlib.import_module(module)
    except ImportError as e:
        if e.name and module.startswith(e.name):
            return None
        raise
    return getattr(mod, name, None)


REGISTRARS: list[tuple[str, str]] = [
    ("orchestrator.commands", "add_parsers"),  # ask, chat, batch, eval
    ("orchestrator.serve.cli", "add_serve_parser"),  # serve (FastAPI/uvicorn imported only when it runs)
    ("tools.cli", "add_tools_parser"),
    ("tools.cli", "add_index_parser"),
    ("training.cli", "add_train_parser"),
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lav2", description="LLaMA-Adapter V2: visual question answering with expert tools, training, "
                                 "and checkpoint utilities.")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging (-vv for debug)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    add_params_parser(sub)
    add_convert_parser(sub)
    for module, name in REGISTRARS:
        fn = _optional(module, name)
        if fn is not None:
            fn(sub)
    return parser


def _known_errors() -> tuple[type[BaseException], ...]:
    errors: list[type[BaseException]] = []
    from core_model.errors import LAV2Error

    errors.append(LAV2Error)
    for module, name in (("tools.base", "ToolError"), ("prompts", "PromptError")):
        cls = None
        try:
            cls = getattr(__import__(module, fromlist=[name]), name, None)
        except ImportError:
            pass
        if isinstance(cls, type):
            errors.append(cls)
    return tuple(errors)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    # long-running commands report progress through logging; the others stay quiet unless asked
    base_level = logging.INFO if args.command in ("train", "index") else logging.WARNING
    level = max(logging.DEBUG, base_level - 10 * min(args.verbose, 2))
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("lav2: interrupted", file=sys.stderr)
        return 130
    except _known_errors() as e:
        print(f"lav2 {args.command}: error: {_one_line(e)}", file=sys.stderr)
        return 2
    except (FileNotFoundError, PermissionError, IsADirectoryError) as e:
        print(f"lav2 {args.command}: error: {_one_line(e)}", file=sys.stderr)
        return 2


def _one_line(error: BaseException) -> str:
    """The error as one line (messages of third-party libraries quoted inside ours may span several)."""
    return " ".join(str(error).split()) or type(error).__name__


if __name__ == "__main__":
    sys.exit(main())
