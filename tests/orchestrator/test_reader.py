"""The reader adapter's training set (`lav2 reader-data`) and the shipped adapter (`--adapter reader`)."""
from __future__ import annotations

import json
import shutil

import pytest

from core_model.errors import ModelLoadError
from orchestrator._model_cache import DEFAULT_MODEL, READER_ADAPTER, resolve_adapter
from orchestrator.cli import main
from orchestrator.reader import build_reader_set, general_questions, printed_answer

needs_tesseract = pytest.mark.skipif(shutil.which("tesseract") is None, reason="needs the tesseract binary")


@pytest.mark.parametrize("answer, text, want", [
    ("Horvath", "by | Anna Horvath", "Anna Horvath"),
    ("Copper", "COPPER\nApple Juice", "COPPER"),
    ("Malmo", "Flight to Malmo", "Malmo"),
    ("3.40", "Price; €3.40", "€3.40"),
    ("750", "Volume: 750 ml", "750 ml"),
    ("17:20", "Doors: 17:20 | Show 18:00", "17:20"),
    ("18.55", "TOTAL | 118.55\nCASH | 18.55", "18.55"),  # whole numbers only: not inside 118.55
    ("Hazel", "Published by | HAZEL HOUSE", "HAZEL HOUSE"),
    ("Porto", "Lisbon", None),
])
def test_printed_answer_is_the_span_as_printed(answer, text, want):
    assert printed_answer(answer, text) == want


def test_general_questions_are_varied_and_reproducible():
    qs = general_questions(60, seed=3)
    assert len(qs) == len(set(qs)) == 60 and qs == general_questions(60, seed=3)
    assert any("capital" in q for q in qs) and any("plus" in q or "times" in q for q in qs)


@needs_tesseract
def test_reader_set_is_the_pipelines_own_prompts(tmp_path):
    """Documents of dev kinds only, user turns rendered by the pipeline (checked inside), targets printed in the
    context, general replies from the model itself; a second run writes the same file."""
    from orchestrator.pipeline import VisualQAPipeline

    pipe = VisualQAPipeline("random:tiny", adapter=None, max_new_tokens=6)
    stats = build_reader_set(tmp_path / "a", docs_per_kind=1, general=4, open_doc_share=0.25,
                             kinds=["receipt", "sign"], pipeline=pipe, progress=False)
    records = json.loads((tmp_path / "a" / "reader.json").read_text())
    docs = [r for r in records if "/open" not in r["id"] and not r["id"].startswith("chat/")]
    assert stats.documents == 2 and stats.document_questions == len(docs) >= 3
    for r in docs:
        kind = r["id"].split("/")[0]
        assert kind in ("receipt", "sign")
        user, target = r["messages"][0]["content"], r["messages"][1]["content"]
        assert user.startswith("Context:\n[Text in the image]") and "Answer briefly." in user
        assert target.lower() in user.lower()  # the answer as printed in the OCR text it is trained on
    # random:tiny replies are noise and may run to max_new_tokens: those are counted, never kept
    assert stats.general_chat + stats.general_documents + stats.skipped_truncated == 4
    manifest = json.loads((tmp_path / "a" / "manifest.json").read_text())
    assert manifest["records"] == len(records) and manifest["seed_start"] >= 10_000
    assert manifest["record_documents"] == 0  # generic records only on request


def test_reader_data_refuses_test_kinds_in_one_line(tmp_path, capsys):
    assert main(["reader-data", str(tmp_path), "--kinds", "invoice", "--docs-per-kind", "1"]) == 2
    err = capsys.readouterr().err
    assert "error:" in err and "invoice" in err and len(err.strip().splitlines()) == 1


def test_adapter_names_auto_is_the_base_and_reader_is_the_shipped_adapter():
    """`auto` loads no adapter (the reader measured worse in the default answer mode, bench/RESULTS.md); `reader` is
    the shipped adapter, which is in the repo and small."""
    assert resolve_adapter("random:tiny", "auto") is None
    assert resolve_adapter(DEFAULT_MODEL, "auto") is None
    assert resolve_adapter(DEFAULT_MODEL, None) is None and resolve_adapter(DEFAULT_MODEL, "none") is None
    assert resolve_adapter(DEFAULT_MODEL, "paper") == "paper"
    assert resolve_adapter(DEFAULT_MODEL, "reader") == str(READER_ADAPTER)
    with pytest.raises(ModelLoadError, match="trained for smollm2-135m"):
        resolve_adapter("random:tiny", "reader")
    weights = READER_ADAPTER / "adapter.safetensors"
    assert weights.is_file() and weights.stat().st_size < 10 * 2**20


def _fixed_ocr(image=None):
    """Reads the text printed in the image."""
    return ("CORNER MARKET\n12 Elm Street\nApples | 3.20\nBread | 2.45\nMilk | 1.10\nSUBTOTAL | 6.75\nTAX | 0.54\n"
            "TOTAL | 7.29\nThank you!")


def test_shipped_reader_adapter_answers_with_the_printed_span_and_keeps_chat():
    """The reader adapter loads by name everywhere a model is loaded (`get_model`, pipelines, --adapter reader),
    changes the model (trained gates), writes answers as printed when it generates, and still chats."""
    pytest.importorskip("gguf")
    from PIL import Image

    from orchestrator import VisualQAPipeline, get_model

    reader = get_model(DEFAULT_MODEL, "reader")
    base = get_model(DEFAULT_MODEL)
    assert reader is not base
    ocr = _fixed_ocr
    ocr.__name__ = "ocr"
    image = Image.new("RGB", (32, 32), "white")
    pipeline = VisualQAPipeline(reader, experts=[ocr], router=["ocr"], answer_mode="generate")
    answers = {q: pipeline.invoke({"image": image, "question": q})["answer"]
               for q in ("What is the total?", "How much did the bread cost?", "How much was the tax?",
                         "What is the name of the shop?")}
    assert answers == {"What is the total?": "7.29", "How much did the bread cost?": "2.45",
                       "How much was the tax?": "0.54", "What is the name of the shop?": "CORNER MARKET"}
    chat = VisualQAPipeline(reader, experts=[])
    prompt, stop = chat.build_prompt("What is the capital of France?", "")
    assert "Paris" in reader.generate(prompt, max_new_tokens=24, temperature=0.0, stop=stop).text
    prompt_b, _ = VisualQAPipeline(base, experts=[]).build_prompt("What is the total?", "TOTAL | 7.29")
    assert reader.generate(prompt_b, max_new_tokens=12, temperature=0.0, stop=stop).text != \
        base.generate(prompt_b, max_new_tokens=12, temperature=0.0, stop=stop).text


@needs_tesseract
def test_reader_data_adds_generic_records_through_the_same_path(tmp_path, monkeypatch, capsys):
    """`--records N` renders N train-only `record` documents besides the dev kinds and prompts them exactly like
    the dev documents (context from the experts, answer as printed); the CLI runs on random:tiny here."""
    import orchestrator.pipeline as pipeline_module

    real = pipeline_module.VisualQAPipeline
    monkeypatch.setattr(pipeline_module, "VisualQAPipeline",
                        lambda *a, **kw: real("random:tiny", adapter=None, max_new_tokens=6))
    out = tmp_path / "r"
    assert main(["reader-data", str(out), "--records", "1", "--docs-per-kind", "1", "--kinds", "sign",
                 "--general", "0"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["documents"] == 2 and printed["general_chat"] == 0
    records = json.loads((out / "reader.json").read_text())
    kinds = {r["id"].split("/")[0] for r in records}
    assert kinds <= {"sign", "record"} and "record" in kinds, kinds
    for r in records:
        user, target = r["messages"][0]["content"], r["messages"][1]["content"]
        assert user.startswith("Context:\n[Text in the image]") and "Answer briefly." in user
        assert target.lower() in user.lower()
        assert int(r["id"].split("/")[1]) >= 10_000
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["record_documents"] == 1 and manifest["kinds"] == ["sign"]
    assert manifest["records"] == len(records) == printed["document_questions"]


def test_reader_data_refuses_record_as_a_dev_kind_and_empty_sets(tmp_path, capsys):
    assert main(["reader-data", str(tmp_path), "--kinds", "record", "--docs-per-kind", "1"]) == 2
    err = capsys.readouterr().err
    assert "record" in err and "--records" in err and len(err.strip().splitlines()) == 1
    assert main(["reader-data", str(tmp_path), "--docs-per-kind", "0"]) == 2
    assert "--records" in capsys.readouterr().err
    with pytest.raises(ValueError, match="not dev kinds"):  # records never open the door to a test kind
        build_reader_set(tmp_path, docs_per_kind=0, records=1, kinds=["invoice"])
