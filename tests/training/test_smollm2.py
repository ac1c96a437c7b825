"""End to end on the real offline base (SmolLM2-135M): train a few steps, then the saved adapter loads with
``core_model.load_model(adapter=...)`` and changes the output."""
from __future__ import annotations

import pytest
import torch

from training import load_config
from training.trainer import run

from .conftest import source_overrides


@pytest.mark.slow
def test_adapter_trained_on_smollm2_loads_with_load_model(synth, tmp_path):
    from core_model import load_model
    from core_model.errors import ModelLoadError

    try:
        base = load_model("smollm2-135m", device="cpu", dtype="float32")
    except ModelLoadError as e:
        pytest.skip(f"SmolLM2 not installed: {e}")
    out = tmp_path / "smol"
    cfg = load_config("tiny-cpu", [*source_overrides(synth), "model.base=smollm2-135m", "model.adapter=paper-text",
                                   "model.vision=null", "data.caption_weight=0", "data.prompt_style=null",
                                   "data.synthetic=0", "data.val_examples=0", "data.max_len=96", "train.steps=3",
                                   "train.micro_batch=2", "optim.instruction.lr=1e-2", f"train.out_dir={out}",
                                   "train.progress=false", "train.tensorboard=false", "train.eval_every=0",
                                   "train.sample_every=0", "train.save_every=0"])
    result = run(cfg)
    assert result.steps == 3
    size = (result.adapter / "adapter.safetensors").stat().st_size
    assert 100_000 < size < 20_000_000  # ~2 MB: the adapter, not the 135M base
    tuned = load_model("smollm2-135m", adapter=str(result.adapter), device="cpu", dtype="float32")
    assert tuned.prompt_style == "smollm2"  # the style the adapter was trained with travels in its config
    prompt = tuned.tokenizer.encode("What is the opposite of up?")
    with torch.no_grad():
        a = base.llm(torch.tensor([prompt]))
        b = tuned.llm(torch.tensor([prompt]))
    assert (a - b).abs().max() > 1e-3
