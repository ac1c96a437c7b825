"""The equivalences of the CPU tests, run on every device there is: the CPU always, CUDA when present.

Each check is one function taking the device, so the CUDA run (``pytest -m cuda``, or ``bench/gpu_check.sh``)
executes exactly the code the CPU run exercises on every ``make test``. Without a GPU the ``cuda`` cases skip with
the reason. Tolerances: float32 as on the CPU tests; bf16/fp16 against transformers at the same dtype.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from core_model import random_model

from .test_positions import perturb_adapters

HAS_CUDA = torch.cuda.is_available()
NO_CUDA = "no CUDA device (torch.cuda.is_available() is False): run bench/gpu_check.sh on a machine with a GPU"
DEVICES = ["cpu", pytest.param("cuda", marks=[pytest.mark.cuda, pytest.mark.skipif(not HAS_CUDA, reason=NO_CUDA)])]
#: (dtype, max |logit difference| / max |logit|, share of positions whose top-1 token must agree)
HALF = {torch.float32: (1e-4, 1.0), torch.bfloat16: (4e-2, 0.9), torch.float16: (1e-2, 0.95)}


@pytest.fixture(autouse=True)
def _exact_matmul():
    """No TF32 on CUDA: float32 stays float32, as on the CPU."""
    before = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = before


def _dtypes(device: str) -> list[torch.dtype]:
    return [torch.float32, torch.bfloat16, torch.float16] if device == "cuda" else [torch.float32]


# ------------------------------------------------------------------------------------------------ real weights
@pytest.mark.slow
@pytest.mark.parametrize("device", DEVICES)
def test_smollm2_logits_and_greedy_tokens_match_transformers(device):
    transformers = pytest.importorskip("transformers")
    from core_model import load_model
    from core_model.loading import default_gguf_path

    path = default_gguf_path()
    ids = load_model("smollm2-135m", device="cpu", weights="dense").tokenizer.encode(
        "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n")
    x = torch.tensor([ids], device=device)
    for dtype in _dtypes(device):
        tol, agree = HALF[dtype]
        ours = load_model("smollm2-135m", device=device, dtype=dtype, weights="dense")
        hf = transformers.AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name,
                                                               dtype=dtype).to(device).eval()
        with torch.inference_mode():
            a, b = ours.llm(x).float(), hf(x).logits.float()
        assert float((a - b).abs().max()) <= tol * float(b.abs().max()), (dtype, float((a - b).abs().max()))
        assert float((a.argmax(-1) == b.argmax(-1)).float().mean()) >= agree, dtype
        if dtype == torch.float32:
            got = ours.generate("<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>"
                                "assistant\n", max_new_tokens=12).token_ids
            with torch.inference_mode():
                out = hf.generate(x, max_new_tokens=12, do_sample=False, pad_token_id=2,
                                  eos_token_id=sorted(ours.tokenizer.eos_ids))
            theirs = [t for t in out[0, len(ids):].tolist() if t not in ours.tokenizer.eos_ids]
            assert got[:len(theirs)] == theirs
        del ours, hf


# ------------------------------------------------------------------------------------------------ tiny models
def _adapted(device: str, preset: str, dtype=torch.float32):
    model = random_model("tiny", preset, seed=1)
    perturb_adapters(model.llm, seed=2)
    model.llm.to(device=device, dtype=dtype)
    if model.visual_prefix is not None:
        model.visual_prefix.to(device=device, dtype=dtype)
    return model


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("preset", ["paper", "release-lora-bias"])
def test_kv_cache_decode_equals_recompute(device, preset):
    model = _adapted(device, preset)
    llm = model.llm
    acfg = llm.adapter_config
    visual = None
    if acfg.fusion != "none":
        visual = torch.randn(1, acfg.visual_tokens, llm.config.dim, generator=torch.Generator().manual_seed(4))
        visual = visual.to(device)
    tokens = torch.randint(3, 200, (1, 20), generator=torch.Generator().manual_seed(5)).to(device)
    with torch.inference_mode():
        full = llm(tokens, visual)
        cache = llm.new_cache(1, 20)
        steps = [llm(tokens[:, :12], visual, cache=cache)]
        for t in range(12, 20):
            steps.append(llm(tokens[:, t:t + 1], visual, start=t, cache=cache))
    torch.testing.assert_close(torch.cat(steps, dim=1), full, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("preset", ["paper", "release-lora-bias", "chat65b"])
def test_batched_generation_with_adapters_equals_single(device, preset):
    model = _adapted(device, preset)
    acfg = model.llm.adapter_config
    prompts = ["a longer prompt with several words", "hi", "medium prompt"]
    visual = None
    if acfg.fusion != "none":
        visual = torch.randn(3, acfg.visual_tokens, model.llm.config.dim,
                             generator=torch.Generator().manual_seed(6)).to(device)
    from core_model.generation import SamplingParams, generate_tokens

    ids = model._prompt_ids(prompts)

    def run(batch, vis):
        return torch.stack(list(generate_tokens(model.llm, batch, SamplingParams(max_new_tokens=8),
                                                visual=vis)), dim=1).tolist()

    together = run(ids, visual)
    alone = [run([p], None if visual is None else visual[i:i + 1])[0] for i, p in enumerate(ids)]
    assert together == alone


@pytest.mark.parametrize("device", DEVICES)
def test_vision_prefix_forward_matches_the_cpu(device):
    pytest.importorskip("open_clip")
    from core_model.vision import VisualPrefixConfig, build_visual_prefix

    torch.manual_seed(0)
    prefix = build_visual_prefix(VisualPrefixConfig.tiny(clip_dim=16, llm_dim=32)).eval()
    with torch.no_grad():
        for p in prefix.parameters():
            p.add_(0.01 * torch.randn_like(p))
    feats = torch.randn(2, 17, 16, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        ref = prefix(feats)
        got = prefix.to(device)(feats.to(device)).cpu()
    torch.testing.assert_close(got, ref, rtol=1e-4, atol=1e-4)
    assert got.shape[0] == 2 and got.shape[-1] == 32


# ------------------------------------------------------------------------------------------------ the script
@pytest.mark.slow
def test_gpu_check_script_runs_and_reports(tmp_path):
    """bench/gpu_check.sh's path without install: on a machine without a GPU it reports the skips and exits 0."""
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHON_BIN": sys.executable, "GPU_CHECK_LOG": str(tmp_path / "log"),
           "GPU_CHECK_TEST_SECONDS": "300", "GPU_CHECK_BENCH_SECONDS": "300"}
    res = subprocess.run(["bash", str(root / "bench" / "gpu_check.sh"), "--no-install"], cwd=root, env=env,
                         capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    summary = res.stdout.split("== summary", 1)[1]
    if HAS_CUDA:
        assert "result: OK" in summary and "ratio core_model dense / transformers" in summary
    else:
        assert "skipped" in summary and NO_CUDA in summary and "nothing was checked on a GPU" in summary
