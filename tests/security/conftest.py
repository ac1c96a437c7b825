"""The bad-input suite: every input here is built by the test itself (crafted pickles, trickling servers, torn
files, control tokens in content). One module per class of issue 12; see SECURITY.md for the threat model."""
from __future__ import annotations

import dataclasses
import io
import os
from pathlib import Path

import pytest
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]

#: A tiny LLaMA with SmolLM2's real tokenizer (ChatML control tokens), random weights: fast and exact about ids.
TINY_SMOL = dict(name="tiny-smol", vocab_size=49152, dim=32, n_layers=2, n_heads=4, n_kv_heads=2, ffn_dim=64,
                 norm_eps=1e-5, max_seq_len=2048, tie_embeddings=True)


def evil_pickle(path: Path, marker: Path, wrap=None) -> Path:
    """A torch checkpoint whose unpickling writes ``marker`` (``__reduce__`` → ``exec``): code from a weight file."""
    class Payload:
        def __reduce__(self):
            return exec, (f"open({str(marker)!r}, 'w').write('code from a weight file ran')",)

    torch.save(wrap(Payload()) if wrap else Payload(), path)
    return path


def png_bytes(size: tuple[int, int] = (24, 16), colour=(200, 30, 30)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, colour).save(buf, format="PNG")
    return buf.getvalue()


def subprocess_env(**extra: str) -> dict[str, str]:
    """This interpreter's environment with the worktree first on sys.path (so its packages are the ones run)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env.update(extra)
    return env


@pytest.fixture(scope="session")
def smol_tokenizer():
    """SmolLM2-135M-Instruct's tokenizer (from the offline default GGUF's cache or header)."""
    from core_model.loading import resolve_base

    return resolve_base("smollm2-135m").tokenizer


@pytest.fixture(scope="session")
def smol_model(smol_tokenizer):
    """A tiny random model that tokenises exactly like SmolLM2 and renders its ``smollm2`` chat template."""
    from core_model import random_model
    from core_model.config import ModelConfig

    return random_model(ModelConfig(**TINY_SMOL), tokenizer=smol_tokenizer, prompt_style="smollm2")


@pytest.fixture(scope="session")
def tiny_base(tmp_path_factory, smol_tokenizer) -> Path:
    """A base-model directory on disk (this project's dense cache format) that ``load_model`` and ``lav2`` load."""
    from core_model import random_model
    from core_model.config import ModelConfig
    from core_model.loading import write_cache

    cfg = ModelConfig(**TINY_SMOL)
    model = random_model(cfg, tokenizer=smol_tokenizer)
    directory = tmp_path_factory.mktemp("bases") / "tiny-smol"
    write_cache(directory, cfg, {k: v.clone() for k, v in model.llm.state_dict().items()}, smol_tokenizer)
    return directory


@pytest.fixture(scope="session")
def tiny_config():
    from core_model.config import ModelConfig

    return ModelConfig(**TINY_SMOL)


@pytest.fixture()
def adapter_dir(tmp_path, smol_tokenizer, tiny_config) -> Path:
    """A valid adapter (``paper-text`` layout) for ``tiny_base``, saved by the library itself."""
    from core_model import random_model

    model = random_model(tiny_config, "paper-text", tokenizer=smol_tokenizer)
    return model.save_adapter(tmp_path / "adapter")


def replace_config(cfg, **changes):
    return dataclasses.replace(cfg, **changes)
