"""Optimiser pieces: lr scaling by effective batch, warmup + cosine on each optimizer's own updates, no weight
decay on biases / scales / norms / gates."""
from __future__ import annotations

import math

import pytest
import torch

from training.config import GroupOptim, OptimSection
from training.optim import WarmupCosine, make_optimizer, scaled_lr


def test_linear_lr_scaling_by_effective_batch():
    o = OptimSection(lr_scaling="linear", base_batch=256)
    assert scaled_lr(GroupOptim(lr=9e-3), o, 32) == pytest.approx(9e-3 * 32 / 256)
    assert scaled_lr(GroupOptim(lr=9e-3), OptimSection(), 32) == 9e-3


def test_warmup_then_cosine_to_the_floor():
    s = WarmupCosine(total=10, warmup=2, min_ratio=0.1)
    f = [s.factor(u) for u in range(12)]
    assert f[0] == 0.5 and f[1] == 1.0 and f[2] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(f[2:], f[3:]))
    assert f[10] == pytest.approx(0.1) and f[11] == pytest.approx(0.1)
    assert f[6] == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 4 / 8)))
    assert WarmupCosine(total=10, kind="constant").factor(7) == 1.0


def test_decay_only_on_matrices_and_prompts():
    w, b, s, gate, prompt = (torch.nn.Parameter(torch.ones(4, 4)), torch.nn.Parameter(torch.zeros(4)),
                             torch.nn.Parameter(torch.ones(4)), torch.nn.Parameter(torch.zeros(1, 2, 1, 1)),
                             torch.nn.Parameter(torch.ones(3, 4)))
    opt = make_optimizer([("w", "visual_proj", w), ("b", "bias", b), ("s", "scale", s), ("g", "prompt_gate", gate),
                          ("p", "prompt", prompt)], GroupOptim(lr=0.1, weight_decay=0.5), 0.1)
    decayed = {id(p) for g in opt.param_groups if g["weight_decay"] > 0 for p in g["params"]}
    assert decayed == {id(w), id(prompt)}
    for p in (w, b, s, gate, prompt):
        p.grad = torch.zeros_like(p)
    opt.step()
    assert torch.equal(s, torch.ones(4)) and torch.equal(b, torch.zeros(4))  # a scale is not pulled towards 0
    assert (w < 1).all()
