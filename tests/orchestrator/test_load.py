"""orchestrator.load: running CPU-heavy experts are counted, and the engine threads they leave follow the count."""
from __future__ import annotations

import threading

import pytest

from orchestrator import VisualQAPipeline
from orchestrator.load import EXPERT_LOAD, CpuLoad, cpu_heavy

from .conftest import make_image, sleepy_expert


def test_cpu_load_counts_nested_and_failing_tasks_and_gives_engine_threads():
    load = CpuLoad()
    threads = load.engine_threads(2)
    assert threads() == 2
    with load.busy():
        assert load.running == 1 and threads() == 1
        with load.busy():
            assert load.running == 2 and threads() == 1  # never below one thread
    with pytest.raises(RuntimeError):
        with load.busy():
            raise RuntimeError("expert crashed")
    assert load.running == 0 and threads() == 2 and load.peak == 2 and load.total == 3
    assert CpuLoad().engine_threads(4)() == 4
    with pytest.raises(ValueError, match="cores"):
        load.engine_threads(-1)


def test_which_experts_count_as_cpu_heavy():
    from tools import LocalSearchTool, OCRTool

    assert cpu_heavy(OCRTool()) and not cpu_heavy(LocalSearchTool())
    assert cpu_heavy(sleepy_expert("img", 0)) and not cpu_heavy(sleepy_expert("q", 0, needs_image=False))

    class Declared:
        needs_image = True
        cpu_heavy = False

    assert not cpu_heavy(Declared())


def test_the_pipeline_counts_its_image_experts_while_they_run(tiny_model):
    seen: dict[str, int] = {}
    gate = threading.Barrier(2, timeout=5)

    def probe(name, needs_image):
        from tools import expert

        def body(**_):
            gate.wait()  # both experts are inside their call at the same time
            seen[name] = EXPERT_LOAD.running
            gate.wait()
            return f"{name} done"

        if needs_image:
            def run(image) -> str:
                return body(image=image)
        else:
            def run(query) -> str:
                return body(query=query)
        run.__name__ = name
        return expert(run, name=name, description=f"The {name} probe.", register=False)

    before = EXPERT_LOAD.running
    p = VisualQAPipeline(tiny_model, experts=[probe("reader", True), probe("lookup", False)], router="all",
                         max_new_tokens=2)
    r = p.invoke({"image": make_image(0), "question": "What is written here?"})
    assert r.errors == {}
    # the image expert is counted while it runs, the query-only one is not: both saw exactly one running
    assert seen == {"reader": before + 1, "lookup": before + 1}
    assert EXPERT_LOAD.running == before  # and nothing stays counted afterwards


def test_lav2_batch_engine_threads_follow_the_experts(tiny_model, tmp_path, monkeypatch):
    """cmd_batch configures the model's engine with a threads callable over EXPERT_LOAD."""
    import json

    from orchestrator import commands
    from orchestrator.cli import build_parser

    make_image(0).save(tmp_path / "a.png")
    inp = tmp_path / "in.jsonl"
    inp.write_text(json.dumps({"image": "a.png", "question": "What?"}) + "\n")
    args = build_parser().parse_args(["batch", str(inp), "-o", str(tmp_path / "out.jsonl"), "--model",
                                      "random:tiny", "--experts", "none", "--no-progress", "--max-new-tokens", "2"])
    try:
        assert commands.cmd_batch(args) == 0
        threads = tiny_model.engine.config.threads
        assert callable(threads)
        cores = tiny_model.engine.base_threads
        assert threads() == cores
        with EXPERT_LOAD.busy():
            assert threads() == max(1, cores - 1)
    finally:
        tiny_model.configure_engine(threads=None)
