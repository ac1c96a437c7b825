"""Shared fixtures for the training tests: one synthetic data set per session, tiny configs, one CPU thread."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

pytest.importorskip("open_clip")
pytest.importorskip("timm")

from training import load_config  # noqa: E402
from training.synthetic import make_dataset  # noqa: E402


@pytest.fixture(autouse=True)
def _one_thread():
    """The machine's cores are shared: one intra-op thread keeps runs fast and deterministic."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def synth(tmp_path_factory):
    return make_dataset(tmp_path_factory.mktemp("synthetic"), n_images=24, seed=0)


def source_overrides(ds) -> list[str]:
    return [
        f"data.caption=[{{format: coco, path: '{ds.coco}', image_root: '{ds.root / 'images'}'}}]",
        f"data.instruction=[{{format: alpaca, path: '{ds.alpaca}'}}, {{format: sharegpt, path: '{ds.sharegpt}'}}]",
    ]


def tiny_overrides(ds, out_dir: Path, *extra: str) -> list[str]:
    """tiny-cpu on the session's synthetic data, quiet, no periodic eval/samples/checkpoints unless asked."""
    return [*source_overrides(ds), f"train.out_dir={out_dir}", "data.synthetic=0", "data.val_examples=0",
            "train.progress=false", "train.tensorboard=false", "train.eval_every=0", "train.sample_every=0",
            "train.save_every=0", "train.log_every=0", *extra]


@pytest.fixture()
def tiny_cfg(synth, tmp_path):
    def make(*extra: str, out: str = "run"):
        return load_config("tiny-cpu", tiny_overrides(synth, tmp_path / out, *extra))
    return make
