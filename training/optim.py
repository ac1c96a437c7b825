"""One AdamW per batch type over exactly the parameters that batch type updates, and its warmup + cosine
schedule. Separate optimizers make the paper's disjointness explicit: a caption step calls only the caption
optimizer, which does not even hold the instruction parameters (and vice versa). Optimizer state therefore exists
only for trainable parameters, created lazily at each optimizer's first step.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import torch
from torch import nn

from .config import GroupOptim, OptimSection

log = logging.getLogger(__name__)

#: kinds that never get weight decay: decay pulls towards 0, but a scale/norm's identity value is 1 and a
#: zero-init gate or bias should only move when the data says so.
NO_DECAY_KINDS = {"bias", "scale", "norm", "prompt_gate", "visual_gate", "new_gate"}


def scaled_lr(g: GroupOptim, o: OptimSection, effective_batch: int) -> float:
    """``lr`` as configured, or ``lr * effective_batch / base_batch`` with ``lr_scaling: linear``."""
    return g.lr * effective_batch / o.base_batch if o.lr_scaling == "linear" else g.lr


def make_optimizer(named: list[tuple[str, str, nn.Parameter]], g: GroupOptim, lr: float) -> torch.optim.AdamW:
    """AdamW over ``(name, kind, param)`` with two param groups: decayed (matrices, prompts, LoRA, projections)
    and not decayed (biases, scales, norms, gates, any 1-d tensor)."""
    decay = [p for n, k, p in named if k not in NO_DECAY_KINDS and p.ndim >= 2]
    no_decay = [p for n, k, p in named if not (k not in NO_DECAY_KINDS and p.ndim >= 2)]
    groups = [{"params": decay, "weight_decay": g.weight_decay, "base_lr": lr},
              {"params": no_decay, "weight_decay": 0.0, "base_lr": lr}]
    groups = [grp for grp in groups if grp["params"]]
    # foreach=False: the same arithmetic for any parameter count, so runs with different layouts stay comparable
    return torch.optim.AdamW(groups, lr=lr, betas=(g.betas[0], g.betas[1]), eps=g.eps, foreach=False)


@dataclass
class WarmupCosine:
    """Linear warmup over ``warmup`` updates, then cosine from 1 to ``min_ratio`` at ``total`` (or constant).

    Counts this optimizer's own updates, so a group trained on every third step still gets its full warmup.
    """

    total: int
    warmup: int = 0
    min_ratio: float = 0.0
    kind: str = "cosine"
    updates: int = 0

    def factor(self, update: int | None = None) -> float:
        u = self.updates if update is None else update
        if self.warmup > 0 and u < self.warmup:
            return (u + 1) / self.warmup
        if self.kind == "constant":
            return 1.0
        span = max(self.total - self.warmup, 1)
        progress = min(max(u - self.warmup, 0) / span, 1.0)
        return self.min_ratio + (1 - self.min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

    def apply(self, opt: torch.optim.Optimizer) -> float:
        """Set the lr of every param group for the coming update; returns the factor."""
        f = self.factor()
        for grp in opt.param_groups:
            grp["lr"] = grp["base_lr"] * f
        return f

    def step(self) -> None:
        self.updates += 1

    def state_dict(self) -> dict[str, float | int | str]:
        return {"total": self.total, "warmup": self.warmup, "min_ratio": self.min_ratio, "kind": self.kind,
                "updates": self.updates}

    def load_state_dict(self, state: dict) -> None:
        self.updates = int(state["updates"])
        if int(state["total"]) != self.total or int(state["warmup"]) != self.warmup:
            log.warning("schedule changed since the checkpoint (total %s->%s, warmup %s->%s): continuing with the "
                        "new one at update %d", state["total"], self.total, state["warmup"], self.warmup,
                        self.updates)
