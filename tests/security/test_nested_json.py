"""JSON nested deeper than Python's parser recurses ("[[[[...]]]]" in a few hundred kilobytes) is a clear, typed
error at every place that parses JSON from outside — a batch input or output file, an eval set, training data, a
checkpoint's config, a tokenizer's config, a local search corpus, a tool call's arguments — never a RecursionError
traceback (it was one at each)."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from .conftest import subprocess_env
from .test_control_tokens import all_markers_tokenizer  # noqa: F401 - a fixture used below

DEEP = "[" * 100_000 + "]" * 100_000


def _cli(*args: str, cwd) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "orchestrator.cli", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=300, env=subprocess_env())


@pytest.mark.parametrize("command", ["batch", "eval"])
def test_cli_input_files_nested_too_deeply_are_one_line(tmp_path, command):
    from PIL import Image

    Image.new("RGB", (8, 8)).save(tmp_path / "a.png")
    data = tmp_path / "in.jsonl"
    data.write_text('{"image": "a.png", "question": "Q?", "answers": ["x"]}\n'
                    '{"image": "a.png", "question": ' + DEEP + ', "answers": ["x"]}\n')
    args = ["batch", str(data), "-o", str(tmp_path / "out.jsonl")] if command == "batch" else \
        ["eval", "--data", str(data)]
    proc = _cli(*args, "--model", "random:tiny", cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr and "in.jsonl:2" in proc.stderr and "nested too deeply" in proc.stderr


def test_a_batch_output_file_nested_too_deeply_is_refused(tmp_path):
    from orchestrator.batch import read_done
    from orchestrator.errors import BatchInputError

    out = tmp_path / "out.jsonl"
    out.write_text(DEEP + "\n" + json.dumps({"id": "r1", "answer": "x"}) + "\n")
    with pytest.raises(BatchInputError, match="not JSON"):
        read_done(out)


def test_training_data_nested_too_deeply(tmp_path):
    from training.data import _load_json_records
    from training.errors import DataError

    (tmp_path / "d.jsonl").write_text('{"instruction": "hi", "output": "ho"}\n' + DEEP + "\n")
    (tmp_path / "d.json").write_text(DEEP)
    with pytest.raises(DataError, match=r"line 2 .*nested too deeply"):
        _load_json_records(tmp_path / "d.jsonl")
    with pytest.raises(DataError, match="nested too deeply"):
        _load_json_records(tmp_path / "d.json")


def test_checkpoint_and_tokenizer_configs_nested_too_deeply(tmp_path, all_markers_tokenizer):
    from core_model.errors import ModelLoadError
    from core_model.safe_load import read_json
    from core_model.tokenizer import HFTokenizer

    (tmp_path / "config.json").write_text(DEEP)
    with pytest.raises(ModelLoadError, match="nested too deeply"):
        read_json(tmp_path / "config.json")
    all_markers_tokenizer.save(tmp_path)
    (tmp_path / "tokenizer_config.json").write_text(DEEP)
    with pytest.raises(ModelLoadError, match="nested too deeply"):
        HFTokenizer.from_dir(tmp_path)


def test_a_search_corpus_line_nested_too_deeply_is_skipped(tmp_path):
    from tools.search import build_index

    corpus = tmp_path / "c.jsonl"
    corpus.write_text(json.dumps({"text": "The harbour opens at nine."}) + "\n" + DEEP + "\n")
    stats = build_index(corpus, tmp_path / "index.sqlite")
    assert stats.passages == 1


def test_tool_call_arguments_nested_too_deeply_are_an_invalid_call():
    from orchestrator.chat_models import parse_tool_calls

    reply = '<tool_call>{"name": "search", "arguments": ' + "[" * 5000 + "]" * 5000 + "}</tool_call>"
    content, calls, invalid = parse_tool_calls(reply, ["search"])
    assert calls == [] and len(invalid) == 1 and "nested too deeply" in invalid[0]["error"]
    quoted = '<tool_call>{"name": "search", "arguments": ' + json.dumps("[" * 5000 + "]" * 5000) + "}</tool_call>"
    _, calls, invalid = parse_tool_calls(quoted, ["search"])
    assert calls == [] and "nested too deeply" in invalid[0]["error"]


def test_a_training_config_nested_too_deeply_is_one_line(tmp_path):
    (tmp_path / "deep.yaml").write_text(DEEP)
    proc = _cli("train", str(tmp_path / "deep.yaml"), cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr and "nested too deeply" in proc.stderr
