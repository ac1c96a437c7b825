"""``lav2 train CONFIG.yaml [key=value ...]`` and ``python -m training`` (the torchrun entry).

    lav2 train training/configs/tiny_cpu.yaml train.steps=20
    torchrun --nproc_per_node 2 -m training training/configs/tiny_cpu.yaml
    lav2 train training/configs/llama65b_bias_scale_norm.yaml --dry-run
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from typing import Sequence

log = logging.getLogger(__name__)


def _add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", help="a YAML recipe (see training/configs/) or a preset name: tiny-cpu, paper-7b, "
                                  "release-7b-pretrain, release-7b-finetune, llama65b-bias-scale-norm")
    p.add_argument("overrides", nargs="*", metavar="key=value",
                   help="dotted overrides, e.g. train.steps=100 optim.caption.lr=5e-4 model.vision=null")
    p.add_argument("--resume", nargs="?", const="latest", default=None, metavar="CHECKPOINT",
                   help="continue from the newest checkpoint in train.out_dir (or from CHECKPOINT)")
    p.add_argument("--out-dir", default=None, help="shortcut for train.out_dir=DIR")
    p.add_argument("--dry-run", action="store_true",
                   help="validate the config and count what each batch type trains on the meta device (no weights, "
                        "no data read)")
    p.add_argument("--print-config", action="store_true", help="print the resolved config as YAML and exit")
    p.add_argument("--json", action="store_true", help="with --dry-run: print JSON")


def add_train_parser(sub: argparse._SubParsersAction) -> None:
    """Register ``train`` on the ``lav2`` command line."""
    p = sub.add_parser("train", help="train Adapter-V2 parameters (paper joint recipe, release two-stage recipe)",
                       description="Train LLaMA-Adapter V2 adapters from a YAML recipe. Caption batches update only "
                                   "the visual group, instruction batches only the instruction group (paper); the "
                                   "release's pretrain/finetune stages are recipes too. Same command under torchrun: "
                                   "torchrun --nproc_per_node N -m training CONFIG.yaml")
    _add_arguments(p)
    p.set_defaults(func=cmd_train)


def _load(args: argparse.Namespace):
    from .config import load_config

    overrides = list(args.overrides)
    if args.out_dir:
        overrides.append(f"train.out_dir={args.out_dir}")
    if args.resume:
        overrides.append(f"train.resume={args.resume}")
    return load_config(args.config, overrides)


def cmd_train(args: argparse.Namespace) -> int:
    from .config import dump_yaml

    cfg = _load(args)
    if args.print_config:
        print(dump_yaml(cfg), end="")
        return 0
    if args.dry_run:
        from .model import dry_run

        report = dry_run(cfg)
        if args.json:
            print(json.dumps(report, indent=1))
        else:
            _print_dry_run(report)
        return 0
    from .trainer import run

    result = run(cfg)
    if int(os.environ.get("RANK", "0")) == 0:
        last = next((h for h in reversed(result.history) if h.get("kind") == "train" and "loss" in h), None)
        msg = f"trained {result.steps} steps"
        if last:
            msg += f"; last loss {last['loss']:.4f} ({last['stream']})"
        if result.val:
            msg += "; " + ", ".join(f"{k} {v:.4f}" for k, v in result.val.items())
        print(msg)
        if result.last_checkpoint:
            print(f"checkpoint: {result.last_checkpoint}")
        if result.adapter:
            print(f"adapter:    {result.adapter}  (load with core_model.load_model(base=..., adapter=...))")
    return 0


def _print_dry_run(r: dict) -> None:
    g = r["groups"]
    print(f"base {r['base']} (shape {r['shape']}), adapter {r['adapter']}, stage {r['stage']}, vision {r['vision']}")
    print(f"parameters: visual {g['visual']:,}  instruction {g['instruction']:,}  frozen {g['frozen']:,}  "
          f"(total {r['total']:,}; CLIP not counted)")
    for s, v in r["streams"].items():
        kinds = ", ".join(f"{k}={n:,}" for k, n in sorted(v["by_kind"].items()))
        print(f"  {s} batches (weight {r['streams_weights'][s]}) update {v['params']:,} parameters in "
              f"{v['tensors']} tensors: {kinds}")
    print(f"trainable in this run: {r['trainable']:,} ({100 * r['trainable'] / max(r['total'], 1):.3f}% of all)")


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m training``: the same command without the ``lav2`` wrapper (what torchrun launches)."""
    parser = argparse.ArgumentParser(prog="python -m training", description="Train LLaMA-Adapter V2 adapters.")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="debug logging")
    _add_arguments(parser)
    args = parser.parse_args(argv)
    rank = int(os.environ.get("RANK", "0"))
    level = logging.DEBUG if args.verbose else (logging.INFO if rank == 0 else logging.WARNING)
    logging.basicConfig(level=level, format=f"%(asctime)s [rank {rank}] %(levelname)s %(name)s: %(message)s")
    from core_model.errors import LAV2Error

    try:
        return cmd_train(args)
    except KeyboardInterrupt:
        print("training: interrupted", file=sys.stderr)
        return 130
    except LAV2Error as e:
        print(f"training: error: {e}", file=sys.stderr)
        return 2
