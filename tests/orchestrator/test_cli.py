"""lav2 ask / chat / eval wiring (tiny random model, so answers are noise; the shapes are what is tested)."""
from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import pytest

from orchestrator.cli import build_parser, main

REPO = Path(__file__).resolve().parents[2]
RECEIPT = str(REPO / "examples" / "receipt.png")
FAST = ["--model", "random:tiny", "--max-new-tokens", "4"]


def test_subcommands_are_registered():
    parser = build_parser()
    choices = parser._subparsers._group_actions[0].choices
    assert {"ask", "chat", "batch", "eval", "params", "convert"} <= set(choices)


def test_ask_json_has_the_documented_shape(capsys):
    assert main(["ask", RECEIPT, "What is the total?", "--json", "--experts", "none", *FAST]) == 0
    out = json.loads(capsys.readouterr().out)
    assert isinstance(out["answer"], str)
    assert out["experts"] == {} and out["router"]["policy"] == "none"
    assert out["model"]["base"] == "random:tiny"
    assert {"route", "experts", "generate", "total"} <= set(out["timings"])
    assert out["visual_prefix"] == "off (no vision weights configured)"


@pytest.mark.skipif(shutil.which("tesseract") is None, reason="needs the tesseract binary")
def test_ask_with_ocr_shows_the_experts_text(capsys):
    assert main(["ask", RECEIPT, "What is the total?", *FAST]) == 0
    out = capsys.readouterr().out
    assert "experts (auto): ocr" in out and "TOTAL | 18.55" in out and "answer:" in out
    assert main(["ask", RECEIPT, "What is the total?", "--json", "--experts", "ocr,caption", *FAST]) == 0
    result = json.loads(capsys.readouterr().out)
    assert "TOTAL | 18.55" in result["experts"]["ocr"]
    assert result["experts"]["caption"].startswith("error: unavailable")
    assert result["errors"]["caption"].startswith("unavailable")


def test_ask_stream_json_lines(capsys):
    assert main(["ask", RECEIPT, "hi", "--json", "--stream", "--experts", "none", *FAST]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert "experts" in lines[0] and "timings" in lines[-1]


def test_weights_option_reaches_the_loader(capsys, monkeypatch):
    """--weights goes to load_model; packed on a model that has no GGUF blocks is one clear error line."""
    assert main(["ask", RECEIPT, "hi", "--experts", "none", "--weights", "packed", *FAST]) == 2
    err = capsys.readouterr().err
    assert err.startswith("lav2 ask: error: random:tiny is built with dense weights") and err.count("\n") == 1
    seen = {}

    def fake_get_model(base, adapter=None, vision=None, device="auto", dtype="auto", **kwargs):
        seen.update(kwargs)
        raise RuntimeError("stop here")

    monkeypatch.setattr("orchestrator.pipeline.get_model", fake_get_model)
    with pytest.raises(RuntimeError, match="stop here"):
        main(["ask", RECEIPT, "hi", "--experts", "none", "--weights", "dense", "--model", "smollm2-135m"])
    assert seen == {"weights": "dense"}


def test_activations_option_reaches_the_loader(capsys, monkeypatch):
    """--activations int8 goes to load_model (serve and batch share these flags); a dense model refuses it in one
    clear line; an unknown value is an argparse error."""
    assert main(["ask", RECEIPT, "hi", "--experts", "none", "--activations", "int8", *FAST]) == 2
    err = capsys.readouterr().err
    assert err.startswith("lav2 ask: error: random:tiny is built with dense weights; activations='int8'")
    assert err.count("\n") == 1
    with pytest.raises(SystemExit):
        build_parser().parse_args(["batch", "in.jsonl", "--activations", "int4"])
    for cmd in (["serve"], ["batch", "in.jsonl"]):
        assert build_parser().parse_args([*cmd, "--activations", "int8"]).activations == "int8"
    seen = {}

    def fake_get_model(base, adapter=None, vision=None, device="auto", dtype="auto", **kwargs):
        seen.update(kwargs)
        raise RuntimeError("stop here")

    monkeypatch.setattr("orchestrator.pipeline.get_model", fake_get_model)
    with pytest.raises(RuntimeError, match="stop here"):
        main(["ask", RECEIPT, "hi", "--experts", "none", "--activations", "int8", "--model", "smollm2-135m"])
    assert seen == {"activations": "int8"}


def test_unknown_expert_is_one_clear_line(capsys):
    assert main(["ask", RECEIPT, "hi", "--experts", "telepathy", *FAST]) == 2
    err = capsys.readouterr().err
    assert err.startswith("lav2 ask: error: unknown expert(s) ['telepathy']") and err.count("\n") == 1


def test_chat_session_switches_images(monkeypatch, capsys):
    script = io.StringIO(f"hello\n/image {RECEIPT}\nwhat is the total?\n/image /no/such.png\nstill there?\n"
                         "/image none\n/experts none\nbye\n/quit\n")
    monkeypatch.setattr("sys.stdin", script)
    assert main(["chat", "--experts", "none", *FAST]) == 0
    out = capsys.readouterr().out
    assert out.count("lav2> ") == 4
    assert f"image: {RECEIPT} (conversation reset)" in out
    assert "error:" in out  # the missing image is reported, the session goes on
    assert "image: none" in out and "experts: none" in out


def test_eval_prints_both_accuracies(tmp_path, capsys):
    from PIL import Image

    Image.new("RGB", (64, 32), "white").save(tmp_path / "blank.png")
    (tmp_path / "q.jsonl").write_text(json.dumps({"id": "a", "image": "blank.png", "question": "What is it?",
                                                  "answers": ["nothing"], "kind": "demo"}) + "\n")
    assert main(["eval", "--set", str(tmp_path / "q.jsonl"), "--experts", "none", *FAST]) == 0
    out = capsys.readouterr().out
    assert "accuracy with experts:" in out and "accuracy without experts:" in out


def test_eval_scoring_is_whole_word():
    from orchestrator.evaluation import is_correct

    assert is_correct("The total on this receipt is 18.55.", ["18.55"])
    assert not is_correct("It is 118.55", ["18.55"]) and not is_correct("18.556", ["18.55"])
    assert is_correct("There are 4 people.", ["4", "four"]) and not is_correct("14 people", ["4"])
    assert is_correct("90g", ["90"]) and is_correct("Net wt 90 g", ["90"]) and not is_correct("900 g", ["90"])
    assert not is_correct("90.5", ["90"]) and not is_correct("90,5 kg", ["90"])
    assert is_correct('The sign says "EMERGENCY EXIT"', ["exit"]) and not is_correct("exiting", ["exit"])


def test_chat_history_turns(monkeypatch, capsys):
    from orchestrator.pipeline import VisualQAPipeline, VQAResult

    seen = []

    def fake_stream(self, request, config=None, **kwargs):
        seen.append(request)
        yield VQAResult(answer=f"answer {len(seen)}")

    monkeypatch.setattr(VisualQAPipeline, "stream", fake_stream)
    monkeypatch.setattr("sys.stdin", io.StringIO("one\ntwo\nthree\n/reset\nfour\n"))
    assert main(["chat", "--history-turns", "1", *FAST]) == 0
    assert seen[0]["history"] is None
    assert seen[2]["history"] == [{"role": "user", "content": "two"}, {"role": "assistant", "content": "answer 2"}]
    assert seen[3]["history"] is None  # after /reset
    seen.clear()
    monkeypatch.setattr("sys.stdin", io.StringIO("one\ntwo\n"))
    assert main(["chat", *FAST]) == 0  # a tiny model: each question on its own by default
    assert seen[1]["history"] is None
    assert "answered on its own" in capsys.readouterr().out


def test_threads_option_sets_the_model_threads(capsys, monkeypatch):
    """--threads N: torch's count for the process, set before the model and its engine exist, so the engine
    decodes at N threads; 0 or a non-number is an argparse error."""
    import torch

    from orchestrator import _model_cache

    engines = []
    real = _model_cache.get_model

    def spy(*args, **kwargs):
        model = real(*args, **kwargs)
        engines.append(model)
        return model

    import orchestrator.pipeline as pipeline_module

    monkeypatch.setattr(pipeline_module, "get_model", spy)
    before = torch.get_num_threads()
    saved = dict(_model_cache._models)  # the session's shared models (fixtures hold them): put back after
    _model_cache._models.clear()  # a model of its own: its engine is made under --threads
    try:
        assert main(["ask", RECEIPT, "hi", "--json", "--experts", "none", "--threads", "1", *FAST]) == 0
        assert torch.get_num_threads() == 1
        engine = engines[-1].engine
        assert engine.base_threads == 1
        assert engine.counters["steps_at_1_threads"] > 0 and "steps_at_2_threads" not in engine.counters
    finally:
        torch.set_num_threads(before)
        with _model_cache._lock:
            _model_cache._models.clear()
            _model_cache._models.update(saved)
    capsys.readouterr()
    for bad in ("0", "two"):
        with pytest.raises(SystemExit) as exit_info:
            main(["ask", RECEIPT, "hi", "--experts", "none", "--threads", bad, *FAST])
        assert exit_info.value.code == 2
        assert "argument --threads: must be" in capsys.readouterr().err
