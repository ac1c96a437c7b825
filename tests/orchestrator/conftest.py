"""Fixtures for the orchestrator tests: tiny random models (text-only and with a tiny CLIP), fast fake experts."""
from __future__ import annotations

import dataclasses
import io
import time
from typing import Any

import numpy as np
import pytest
from PIL import Image

TINY_CLIP = {
    "embed_dim": 16,
    "vision_cfg": {"image_size": 32, "patch_size": 8, "width": 32, "layers": 2, "head_width": 16},
    "text_cfg": {"context_length": 8, "vocab_size": 64, "width": 16, "heads": 2, "layers": 1},
}


def make_image(seed: int = 0, size: tuple[int, int] = (40, 30)) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8), "RGB")


def png_bytes(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture(scope="session")
def tiny_model():
    """The shared ``random:tiny`` model (byte tokenizer, plain prompt style, no vision)."""
    from orchestrator import get_model

    return get_model("random:tiny")


@pytest.fixture(scope="session")
def tiny_vision_model():
    """A tiny random model with a tiny CLIP tower and an early-fusion visual prefix whose gates are open,
    so the image changes the output."""
    import torch

    from core_model import AdapterConfig, random_model
    from core_model.config import model_preset
    from core_model.vision import CLIPVisionEncoder, VisionTower, VisualPrefixConfig, build_visual_prefix

    cfg = dataclasses.replace(model_preset("tiny"), dim=32, n_heads=4, n_kv_heads=2, ffn_dim=64, n_layers=3,
                              max_seq_len=4096)
    acfg = AdapterConfig(linear="bias_scale", train_norms=True, prompt_layers=2, prompt_len=3, fusion="early",
                         early_layers=1, visual_tokens=4)
    torch.manual_seed(0)
    tower = VisionTower(CLIPVisionEncoder.from_config(TINY_CLIP, seed=0))
    model = random_model(cfg, acfg, seed=0, visual_prefix=build_visual_prefix(VisualPrefixConfig.paper(16, 32, 4)),
                         vision=tower)
    with torch.no_grad():
        for name, p in model.llm.named_parameters():
            if name.endswith("gate") and not name.endswith("new_gate"):
                p.fill_(2.0)
        for p in model.visual_prefix.parameters():
            if p.dim() >= 2:
                p.normal_(0, 0.5)
    return model


def sleepy_expert(name: str, seconds: float, text: str | None = None, *, needs_image: bool = True,
                  raises: BaseException | None = None) -> Any:
    """A custom expert (through tools' documented ``@expert`` decorator) that sleeps, then answers or raises."""
    from tools import expert

    def body(image=None, query=None) -> str:
        time.sleep(seconds)
        if raises is not None:
            raise raises
        return text if text is not None else f"{name} saw it"

    body.__name__ = name
    if needs_image:
        def run(image) -> str:
            return body(image=image)
    else:
        def run(query) -> str:
            return body(query=query)
    run.__name__ = name
    return expert(run, name=name, description=f"The {name} test expert.", register=False)

