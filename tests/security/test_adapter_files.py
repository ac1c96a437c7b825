"""Classes 4 and 5: adapter files are validated (dtype, finiteness, names and shapes against the base) before
anything is loaded or written, and every broken input is one line on stderr with exit status 2 — never a
traceback."""
from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from core_model import CheckpointMismatchError, ModelLoadError, load_model

from .conftest import evil_pickle, png_bytes


def _tamper(adapter, change) -> None:
    path = adapter / "adapter.safetensors"
    state = load_file(str(path))
    change(state)
    save_file(state, str(path))


def _first_float(state):
    return next(k for k, v in state.items() if v.is_floating_point() and v.numel() > 1)


BROKEN_TENSORS = {
    "int dtype": lambda s: s.update({(k := _first_float(s)): s[k].to(torch.int64)}),
    "bool dtype": lambda s: s.update({(k := _first_float(s)): s[k] > 0}),
    "nan": lambda s: s[_first_float(s)].view(-1).__setitem__(0, float("nan")),
    "inf": lambda s: s[_first_float(s)].view(-1).__setitem__(-1, float("inf")),
    "wrong shape": lambda s: s.update({(k := _first_float(s)): torch.zeros(*s[k].shape[:-1], s[k].shape[-1] + 1)}),
}


@pytest.mark.parametrize("broken", sorted(BROKEN_TENSORS))
def test_broken_adapter_tensors_are_refused_before_the_base_is_loaded(broken, adapter_dir, tiny_base, monkeypatch):
    import core_model.api as api

    _tamper(adapter_dir, BROKEN_TENSORS[broken])

    def must_not_build(*args, **kwargs):
        raise AssertionError("the base model was built although the adapter is invalid")

    monkeypatch.setattr(api, "build_model", must_not_build)
    with pytest.raises(CheckpointMismatchError) as err:
        load_model(tiny_base, adapter=str(adapter_dir), device="cpu", dtype="float32")
    assert "\n" not in str(err.value)


def _official_chat65b(path, dim: int, n_layers: int, ffn: int = 64, kv: int = 16):
    """An official chat65b-layout .pth (bias + input scale on all 7 linears, norms) for a base of width ``dim``."""
    state = {}
    linears = {"attention.wq": (dim, dim), "attention.wk": (dim, kv), "attention.wv": (dim, kv),
               "attention.wo": (dim, dim), "feed_forward.w1": (dim, ffn), "feed_forward.w2": (ffn, dim),
               "feed_forward.w3": (dim, ffn)}
    for i in range(n_layers):
        for name, (fan_in, fan_out) in linears.items():
            state[f"layers.{i}.{name}_bias"] = torch.zeros(fan_out)
            state[f"layers.{i}.{name}_scale"] = torch.ones(fan_in)
        state[f"layers.{i}.attention_norm.weight"] = torch.ones(dim)
        state[f"layers.{i}.ffn_norm.weight"] = torch.ones(dim)
    state["norm.weight"] = torch.ones(dim)
    torch.save({"model": state, "config": {}}, path)
    return path


def test_lav2_convert_refuses_an_adapter_that_does_not_fit_the_base(tmp_path, tiny_base, capsys):
    from orchestrator.cli import main

    checkpoint = _official_chat65b(tmp_path / "chat65b.pth", dim=48, n_layers=2)  # the base has dim 32
    out = tmp_path / "converted"
    assert main(["convert", str(checkpoint), str(out), "--base", str(tiny_base)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "error:" in err and "(48,) vs (32,)" in err
    assert not out.exists()  # nothing was written
    fits = _official_chat65b(tmp_path / "fits.pth", dim=32, n_layers=2)
    assert main(["convert", str(fits), str(out), "--base", str(tiny_base)]) == 0


# --------------------------------------------------------------------------------------------- one-line errors
def _ask(tmp_path, *extra: str) -> list[str]:
    image = tmp_path / "x.png"
    image.write_bytes(png_bytes())
    return ["ask", str(image), "what is this?", "--experts", "none", "--max-new-tokens", "2", *extra]


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("lav2 ask: error: ") and "Traceback" not in err, err
    return lines[0]


BROKEN_ADAPTER_DIRS = {
    "invalid JSON": lambda d: (d / "adapter_config.json").write_text("{\"format\": \"lav2-adapter\", "),
    "missing key": lambda d: (d / "adapter_config.json").write_text(json.dumps({"format": "lav2-adapter",
                                                                                 "version": 1})),
    "wrong value": lambda d: (d / "adapter_config.json").write_text(json.dumps(
        {"format": "lav2-adapter", "version": 1, "adapter": {"prompt_layers": "many"}})),
    "truncated weights": lambda d: (d / "adapter.safetensors").write_bytes(
        (d / "adapter.safetensors").read_bytes()[:100]),
}


@pytest.mark.parametrize("broken", sorted(BROKEN_ADAPTER_DIRS))
def test_broken_adapter_directory_is_one_line(broken, adapter_dir, tiny_base, tmp_path, capsys):
    from orchestrator.cli import main

    BROKEN_ADAPTER_DIRS[broken](adapter_dir)
    assert main(_ask(tmp_path, "--model", str(tiny_base), "--adapter", str(adapter_dir))) == 2
    assert str(adapter_dir) in _one_error_line(capsys)


def test_refused_pickle_in_a_base_directory_is_one_line(tmp_path, tiny_base, capsys):
    from orchestrator.cli import main

    base = tmp_path / "hf-base"
    base.mkdir()
    (base / "config.json").write_text(json.dumps({
        "model_type": "llama", "vocab_size": 49152, "hidden_size": 32, "num_hidden_layers": 2,
        "num_attention_heads": 4, "num_key_value_heads": 2, "intermediate_size": 64}))
    (base / "tokenizer.json").write_bytes((tiny_base / "tokenizer.json").read_bytes())
    marker = tmp_path / "PWNED"
    evil_pickle(base / "pytorch_model.bin", marker, wrap=lambda p: {"lm_head.weight": p})
    assert main(_ask(tmp_path, "--model", str(base))) == 2
    assert "LAV2_TRUSTED_WEIGHTS" in _one_error_line(capsys) and not marker.exists()


@pytest.mark.parametrize("broken", ["invalid JSON", "truncated weights"])
def test_broken_base_directory_is_one_line(broken, tiny_base, tmp_path, capsys):
    import shutil

    from orchestrator.cli import main

    base = tmp_path / "base"
    shutil.copytree(tiny_base, base)
    if broken == "invalid JSON":
        (base / "lav2_model.json").write_text("{not json")
    else:
        (base / "model.safetensors").write_bytes((base / "model.safetensors").read_bytes()[:1000])
    assert main(_ask(tmp_path, "--model", str(base))) == 2
    assert str(base) in _one_error_line(capsys)


def test_official_adapter_that_is_not_a_tensor_file(tmp_path, tiny_config):
    from core_model.checkpoints import convert_official

    path = tmp_path / "odd.pth"
    torch.save({"model": {"layers.0.attention.wq_bias": [1, 2, 3]}}, path)
    with pytest.raises(ModelLoadError) as err:
        convert_official(path, tiny_config)
    assert "\n" not in str(err.value)
