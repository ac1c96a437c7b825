"""Class 7: a run killed mid-write leaves a torn last line in metrics.jsonl; ``--resume`` must still work."""
from __future__ import annotations

import json

import pytest

pytest.importorskip("open_clip")
pytest.importorskip("timm")


@pytest.mark.slow
def test_resume_after_a_torn_metrics_line(tmp_path):
    import torch

    from tests.training.conftest import tiny_overrides
    from training import load_config, run
    from training.synthetic import make_dataset

    data = make_dataset(tmp_path / "data", n_images=8, seed=0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        first = run(load_config("tiny-cpu", tiny_overrides(data, tmp_path / "run", "train.steps=4",
                                                           "train.stop_at=2")))
        metrics = tmp_path / "run" / "metrics.jsonl"
        with metrics.open("a") as f:
            f.write('{"kind": "train", "step": 3, "loss": 2.7')  # kill -9 while writing step 3
        second = run(load_config("tiny-cpu", tiny_overrides(data, tmp_path / "run", "train.steps=4",
                                                            "train.resume=latest")))
    finally:
        torch.set_num_threads(threads)
    assert first.steps == 2 and second.steps == 4
    steps = [json.loads(line)["step"] for line in metrics.read_text().splitlines()]
    assert steps == [1, 2, 3, 4]
