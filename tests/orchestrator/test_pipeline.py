"""VisualQAPipeline: concurrent experts with timeouts, failures recorded, Runnable behaviour, the visual prefix."""
from __future__ import annotations

import asyncio
import time
from operator import itemgetter

import pytest
from langchain_core.runnables import RunnableLambda

from orchestrator import VisualQAPipeline, VQAResult

from .conftest import make_image, png_bytes, sleepy_expert


def squash(text: str) -> str:
    """Random-byte answers: core_model's streamer and generate differ only in U+FFFD/whitespace at the edges."""
    return "".join(ch for ch in text if ch != "\ufffd" and not ch.isspace())


def pipeline(model, experts, **kw):
    kw.setdefault("max_new_tokens", 4)
    return VisualQAPipeline(model, experts=experts, router=kw.pop("router", "all"), **kw)


def test_experts_run_concurrently_and_failures_never_sink_the_answer(tiny_model):
    """Three 0.5 s experts take ≈ 0.5 s, not 1.5 s; one raising and one past the timeout are recorded as errors."""
    experts = [sleepy_expert("slow_a", 0.5, "A says hi"), sleepy_expert("slow_b", 0.5, "B says hi"),
               sleepy_expert("slow_c", 0.5, "C says hi"),
               sleepy_expert("broken", 0.05, raises=RuntimeError("lens cap on")),
               sleepy_expert("stuck", 5.0)]
    p = pipeline(tiny_model, experts, expert_timeout=1.0)
    start = time.perf_counter()
    r = p.invoke({"image": make_image(0), "question": "What is here?"})
    wall = r.timings["experts"]
    assert 0.45 <= wall < 1.4, wall  # ≈ the timeout (the slowest that counted), far below the 6.55 s sum
    assert time.perf_counter() - start < 3.0  # the stuck expert does not hold the answer up
    assert isinstance(r.answer, str)
    assert r.errors == {"broken": "RuntimeError: lens cap on", "stuck": "timed out after 1s"}
    assert r.experts["slow_a"] == "A says hi" and r.experts["broken"] == "error: RuntimeError: lens cap on"
    assert all(r.timings["per_expert"][n] >= 0.45 for n in ("slow_a", "slow_b", "slow_c"))
    assert "A says hi" in r.context and "B says hi" in r.context and "lens cap" not in r.context


def test_three_sleepers_wall_time_is_the_slowest_not_the_sum(tiny_model):
    experts = [sleepy_expert(f"s{i}", 0.5) for i in range(3)]
    r = pipeline(tiny_model, experts).invoke({"image": make_image(0), "question": "x"})
    assert 0.45 <= r.timings["experts"] < 1.0, r.timings
    assert r.errors == {}


def test_unavailable_builtin_expert_is_an_error_not_a_crash(tiny_model):
    from tools import CaptionTool

    r = pipeline(tiny_model, [CaptionTool(), sleepy_expert("ok", 0.0, "fine")]).invoke(
        {"image": make_image(0), "question": "Describe it"})
    assert r.errors["caption"].startswith("unavailable: no caption backend configured")
    assert r.experts["ok"] == "fine"


def test_result_shape_and_json(tiny_model):
    import json

    r = pipeline(tiny_model, [sleepy_expert("ocr", 0.0, "TOTAL 18.55")], router="auto").invoke(
        {"image": png_bytes(make_image(0)), "question": "What is the total?"})
    assert isinstance(r, VQAResult) and isinstance(r, dict)
    for key in ("answer", "question", "image", "experts", "errors", "router", "context", "visual_prefix", "model",
                "usage", "timings"):
        assert key in r
    assert r.router["chosen"] == ["ocr"] and "total" in r.router["reasons"]["ocr"]
    assert r.model["base"] == "random:tiny"
    assert set(r.timings) >= {"route", "experts", "per_expert", "generate", "total"}
    assert "[Text in the image]\nTOTAL 18.55" in r.context
    assert r.answer == r["answer"]
    json.dumps(r.to_dict())


def test_no_vision_weights_is_reported_and_the_answer_still_comes(tiny_model):
    r = pipeline(tiny_model, [sleepy_expert("ocr", 0.0, "EXIT")]).invoke({"image": make_image(0), "question": "x"})
    assert r.visual_prefix == "off (no vision weights configured)"
    assert pipeline(tiny_model, []).invoke("just text").visual_prefix == "not used (no image)"


def test_with_vision_weights_the_image_goes_to_generate(tiny_vision_model, monkeypatch):
    seen = []
    real = tiny_vision_model.generate

    def spy(prompt, images=None, **kw):
        seen.append(images)
        return real(prompt, images=images, **kw)

    monkeypatch.setattr(tiny_vision_model, "generate", spy)
    img = make_image(5)
    r = pipeline(tiny_vision_model, [sleepy_expert("ocr", 0.0, "hello")]).invoke({"image": img, "question": "x"})
    assert r.visual_prefix == "on"
    assert seen[0].tobytes() == img.tobytes()


def test_stream_chunks_add_up_to_the_invoke_result(tiny_model):
    p = pipeline(tiny_model, [sleepy_expert("ocr", 0.0, "TEXT")], max_new_tokens=8)
    request = {"image": make_image(0), "question": "What does it say?"}
    chunks = list(p.stream(request))
    assert "experts" in chunks[0] and "answer" not in chunks[0]
    assert "timings" in chunks[-1]
    total = chunks[0]
    for c in chunks[1:]:
        total = total + c
    assert isinstance(total, VQAResult)
    assert squash(total.answer) == squash(p.invoke(request).answer)
    assert total.experts == {"ocr": "TEXT"}


def test_runnable_batch_ainvoke_and_composition(tiny_model):
    p = pipeline(tiny_model, [sleepy_expert("ocr", 0.0, "T")])
    inputs = [{"image": make_image(i), "question": f"q{i}"} for i in range(3)]
    results = p.batch(inputs, config={"max_concurrency": 2})
    assert [r.question for r in results] == ["q0", "q1", "q2"]
    assert asyncio.run(p.ainvoke(inputs[0])).answer == results[0].answer

    async def collect():
        return [c async for c in p.astream(inputs[0])]

    chunks = asyncio.run(collect())
    assert "experts" in chunks[0] and "timings" in chunks[-1] and len(chunks) > 2
    chain = RunnableLambda(lambda q: {"image": make_image(0), "question": q}) | p | itemgetter("answer")
    assert chain.invoke("q0") == results[0].answer
    assert isinstance(p.invoke((make_image(0), "q0")), VQAResult)  # tuple input


def test_per_call_policy_overrides_the_router(tiny_model):
    p = pipeline(tiny_model, [sleepy_expert("ocr", 0.0, "T"), sleepy_expert("detection", 0.0, "2 person")])
    assert list(p.invoke({"image": make_image(0), "question": "q", "experts": "none"}).experts) == []
    assert list(p.invoke({"image": make_image(0), "question": "q", "experts": ["detection"]}).experts) == ["detection"]


def test_expert_outputs_are_cached_per_image(tiny_model):
    calls = []
    from tools import expert

    @expert(register=False)
    def counter(image) -> str:
        """Counts its calls."""
        calls.append(1)
        return "seen"

    p = pipeline(tiny_model, [counter])
    p.invoke({"image": make_image(0), "question": "a"})
    p.invoke({"image": make_image(0), "question": "b"})
    assert len(calls) == 1
    p.invoke({"image": make_image(1), "question": "a"})
    assert len(calls) == 2


def test_wrappers_and_pipeline_share_the_model(tiny_model):
    from orchestrator import ChatLlamaAdapterV2

    chat = ChatLlamaAdapterV2(model="random:tiny")
    assert VisualQAPipeline(chat, experts=[]).model is chat.llama_model is tiny_model
    assert VisualQAPipeline("random:tiny", experts=[]).model is tiny_model


def test_bad_inputs_raise_clearly(tiny_model):
    from core_model.errors import ImageError

    p = pipeline(tiny_model, [])
    with pytest.raises(ValueError, match="question"):
        p.invoke({"image": make_image(0)})
    with pytest.raises(ImageError):
        p.invoke({"image": "/no/such/file.png", "question": "x"})


def test_default_expert_set_uses_local_detection_weights():
    from orchestrator.experts import default_pipeline_experts, fall_detection_weights

    names = [e.name for e in default_pipeline_experts()]
    assert {"ocr", "detection", "caption", "local_search", "web_search"} <= set(names)
    if fall_detection_weights() is not None:
        detection = next(e for e in default_pipeline_experts() if e.name == "detection")
        assert detection.weights.endswith("best.pt")


def test_contributions_are_what_a_small_model_can_use():
    from tools import ExpertResult

    from orchestrator.experts import PersonDetectionTool, contribution

    detection = ExpertResult("detection", "Objects: 4 person. Boxes ...", {"counts": {"person": 4, "bus": 1}})
    assert contribution(detection) == "4 person, 1 bus"  # counts only, no box coordinates
    nobody = ExpertResult("detection", "Objects: none detected.", {"counts": {}})
    assert contribution(nobody) == "no objects detected"
    assert contribution(nobody, PersonDetectionTool(weights="best.pt")) == "no people detected"
    no_text = ExpertResult("ocr", "No text found in the image.", {"words": [], "text": ""})
    assert contribution(no_text) == ""  # "No text found" made SmolLM2 answer "there are no people"
    assert contribution(ExpertResult("mine", "custom text")) == "custom text"
