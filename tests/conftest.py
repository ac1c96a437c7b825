"""Shared test settings: no network, a private cache dir, small thread count."""
from __future__ import annotations

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("YOLO_OFFLINE", "1")


def pytest_collection_modifyitems(config, items):
    if os.environ.get("LAV2_NETWORK_TESTS") == "1":
        return
    skip = pytest.mark.skip(reason="needs the internet: opt in with LAV2_NETWORK_TESTS=1")
    for item in items:
        if "network" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def smollm2():
    """The real offline default model (SmolLM2-135M-Instruct), loaded once per session."""
    from core_model import load_model

    return load_model("smollm2-135m", device="cpu", dtype="float32")


@pytest.fixture(scope="session")
def smollm2_dense():
    """The same model with its weights dequantised to float32 (``weights="dense"``); ``smollm2`` keeps the GGUF's
    Q4_1/Q8_0 blocks (the default on the CPU)."""
    from core_model import load_model

    return load_model("smollm2-135m", device="cpu", dtype="float32", weights="dense")
