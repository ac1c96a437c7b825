"""A training step on every device there is: the CPU always, CUDA when present (bench/gpu_check.sh).

The same tiny run (same seed, data and steps) on the CPU and on the device: the losses of every step agree, and
only adapter parameters change. The CPU case runs the very code the CUDA case does.
"""
from __future__ import annotations

import pytest
import torch

from training.trainer import run

from ..core_model.test_devices import DEVICES


def _losses(cfg) -> list[float]:
    return [h["loss"] for h in run(cfg).history if h.get("kind") == "train"]


@pytest.mark.parametrize("device", DEVICES)
def test_training_steps_match_the_cpu(tiny_cfg, device):
    steps = ["train.steps=3", "train.micro_batch=2"]
    ref = _losses(tiny_cfg(*steps, "train.device=cpu", out="reference"))
    got = _losses(tiny_cfg(*steps, f"train.device={device}", out=device))
    assert len(got) == len(ref) == 3 and all(torch.isfinite(torch.tensor(got)))
    torch.testing.assert_close(torch.tensor(got), torch.tensor(ref), rtol=2e-3, atol=2e-3)
    if device == "cuda":  # mixed precision trains too, close to fp32
        half = _losses(tiny_cfg(*steps, "train.device=cuda", "train.precision=bf16", out="bf16"))
        torch.testing.assert_close(torch.tensor(half), torch.tensor(ref), rtol=5e-2, atol=5e-2)
