"""The `lav2 eval` harness: variants per answer mode and the no-experts baseline, tables, --data errors, HTML."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from orchestrator.cli import main
from orchestrator.evaluation import (EvalItem, evaluate, format_report, generated_eval_set, load_eval_set,
                                     variants_for, write_html)

FAST = ["--model", "random:tiny", "--max-new-tokens", "4"]


class FakePipeline:
    """Answers from a key: with experts, `extract` is always right, `generate` (and no mode) right on even items,
    `auto` right except on kind 'poster'; without experts always wrong. Records every input."""

    def __init__(self, key: dict[tuple[str, str], list[str]]):
        self.key = key
        self.inputs: list[dict] = []

    def describe_model(self):
        return {"base": "fake"}

    def invoke(self, payload):
        self.inputs.append(dict(payload))
        answers = self.key[(payload["image"], payload["question"])]
        index = sorted(self.key).index((payload["image"], payload["question"]))
        mode = payload.get("answer_mode")
        right = payload["experts"] != "none" and (
            mode == "extract" or (mode in (None, "generate") and index % 2 == 0)
            or (mode == "auto" and "poster" not in payload["image"]))
        answer = f"It says {answers[0]}." if right else "I cannot tell."
        return {"answer": answer, "experts": {"ocr": "text"} if payload["experts"] != "none" else {},
                "errors": {}, "context": "Text in the image:\nTOTAL 18.55" if payload["experts"] != "none" else ""}


def _items(tmp_path: Path) -> list[EvalItem]:
    Image.new("RGB", (80, 40), "white").save(tmp_path / "invoice.png")
    Image.new("RGB", (80, 40), "white").save(tmp_path / "poster.png")
    inv, pos = str(tmp_path / "invoice.png"), str(tmp_path / "poster.png")
    return [EvalItem("i1", inv, "What is the total?", ["18.55"], "invoice", "test"),
            EvalItem("i2", inv, "How much was the tax?", ["1.20"], "invoice", "test"),
            EvalItem("i3", inv, "Who is billed?", ["Moreau"], "invoice", "test"),
            EvalItem("i4", inv, "When is it due?", ["2024-05-01"], "invoice", "test"),
            EvalItem("p1", pos, "Where is it held?", ["Maple"], "poster", "holdout"),
            EvalItem("p2", pos, "When is the event?", ["May 3, 2025"], "poster", "holdout")]


def _fake(items):
    return FakePipeline({(it.image, it.question): it.answers for it in items})


def test_variants_and_numbers_per_kind(tmp_path):
    items = _items(tmp_path)
    fake = _fake(items)
    report = evaluate(fake, items, modes=["generate", "extract", "auto"], progress=False)
    assert report.variants == ["experts:generate", "experts:extract", "experts:auto", "none"]
    assert len(fake.inputs) == 4 * len(items)
    modes_sent = [(p["experts"], p.get("answer_mode")) for p in fake.inputs[:4]]
    assert modes_sent == [("auto", "generate"), ("auto", "extract"), ("auto", "auto"), ("none", "generate")]
    # sorted keys: invoice questions (by text) then poster questions; generate is right on even sort indices
    order = sorted((it.image, it.question) for it in items)
    gen_right = {k for i, k in enumerate(order) if i % 2 == 0}
    inv = [it for it in items if it.kind == "invoice"]
    expect_gen_inv = sum((it.image, it.question) in gen_right for it in inv) / len(inv)
    assert report.by_kind["invoice"]["experts:generate"] == round(expect_gen_inv, 4)
    assert report.by_kind["invoice"]["experts:extract"] == 1.0 and report.by_kind["poster"]["experts:extract"] == 1.0
    assert report.by_kind["invoice"]["experts:auto"] == 1.0 and report.by_kind["poster"]["experts:auto"] == 0.0
    assert report.accuracy["experts:auto"] == round(4 / 6, 4)
    assert report.accuracy["none"] == 0.0 and report.without_experts == 0.0
    assert report.with_experts == report.accuracy["experts:generate"]
    assert report.by_kind["poster"]["split"] == "holdout" and report.by_kind["invoice"]["n"] == 4

    text = format_report(report)
    lines = {ln.split()[0]: ln for ln in text.splitlines() if ln.strip()}
    assert "100% (4/4)" in lines["invoice"] and "0% (0/2)" in lines["poster"]
    assert lines["poster"].split()[1] == "holdout"
    assert "[test]" in lines and "[holdout]" in lines  # subtotals when the set spans splits
    assert "67% (4/6)" in lines["all"]
    assert "accuracy with experts, auto:" in text and "66.7% (4/6)" in text
    assert "accuracy without experts:" in text and "0.0% (0/6)" in text
    assert json.loads(json.dumps(report.to_dict()))["rows"][0]["variants"]["experts:extract"]["correct"] is True


def test_without_modes_the_old_report_stays(tmp_path):
    items = _items(tmp_path)
    fake = _fake(items)
    report = evaluate(fake, items, progress=False)
    assert report.variants == ["experts", "none"]
    assert all("answer_mode" not in p for p in fake.inputs)  # the pipeline's own default mode
    row = report.rows[0]
    assert {"with_experts", "with_correct", "without_experts", "without_correct", "experts_used"} <= set(row)
    text = format_report(report)
    assert "accuracy with experts:" in text and "accuracy without experts:" in text


def test_bad_modes_and_policies_are_refused():
    with pytest.raises(ValueError, match="unknown answer mode"):
        variants_for("auto", ["generate", "guess"])
    with pytest.raises(ValueError, match="baseline"):
        variants_for("none", ["generate"])


def test_html_report_has_the_summary_and_every_row(tmp_path):
    items = _items(tmp_path)
    report = evaluate(_fake(items), items, modes=["generate", "extract"], progress=False, source="unit")
    page = write_html(report, tmp_path / "out" / "report.html").read_text()
    assert page.startswith("<!doctype html>") and "Accuracy per kind" in page
    assert page.count("data:image/jpeg;base64,") == 2  # one thumbnail per document, not per question
    for it in items:
        assert it.question in page and it.id in page
    assert page.count("class='ok'") == sum(r["variants"][v]["correct"] for r in report.rows
                                           for v in report.variants)
    assert page.count("class='bad'") == sum(not r["variants"][v]["correct"] for r in report.rows
                                            for v in report.variants)
    assert "TOTAL 18.55" in page and "&lt;" not in "TOTAL 18.55"
    assert "http" not in page.split("<body>")[1].split("data:image")[0]  # self-contained: no external resources


@pytest.mark.parametrize("content, message", [
    ('{"image": "a.png", "question": "Q?", "answers": ["x"]}\n{not json\n', "q.jsonl:2: not valid JSON"),
    ('{"image": "a.png", "question": "Q?"}\n', "q.jsonl:1: needs 'answers'"),
    ('{"image": "a.png", "answers": ["x"]}\n', "q.jsonl:1: needs a non-empty 'question'"),
    ('{"image": "missing.png", "question": "Q?", "answers": ["x"]}\n', "q.jsonl:1: image 'missing.png' not found"),
    ('["a.png", "Q?"]\n', "q.jsonl:1: expected a JSON object"),
    ("\n\n", "no questions"),
])
def test_data_errors_are_one_line(tmp_path, capsys, content, message):
    Image.new("RGB", (8, 8)).save(tmp_path / "a.png")
    (tmp_path / "q.jsonl").write_text(content)
    assert main(["eval", "--data", str(tmp_path / "q.jsonl"), *FAST]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("lav2 eval: error:") and message in err and "\n" not in err


def test_data_directory_and_option_conflicts(tmp_path, capsys):
    assert main(["eval", "--data", str(tmp_path / "nowhere"), *FAST]) == 2
    assert "no such file or directory" in capsys.readouterr().err
    assert main(["eval", "--data", str(tmp_path), *FAST]) == 2
    assert "no questions.jsonl" in capsys.readouterr().err
    assert main(["eval", "--data", str(tmp_path), "--split", "test", *FAST]) == 2
    assert "not both" in capsys.readouterr().err
    assert main(["eval", "--split", "test", "--modes", "generate,fast", *FAST]) == 2
    assert "unknown answer mode" in capsys.readouterr().err
    assert main(["eval", "--kinds", "invoice,passport", *FAST]) == 2
    assert "passport" in capsys.readouterr().err
    assert main(["eval", "--split", "test", "--kinds", "invoice,receipt", *FAST]) == 2
    assert "receipt not in the test split" in capsys.readouterr().err
    assert main(["eval", "--split", "dev", "--seed", "999", "--per-kind", "2", *FAST]) == 2
    assert "eval seeds" in capsys.readouterr().err
    # a directory with a questions.jsonl, a single answer as a string, relative image paths
    Image.new("RGB", (8, 8)).save(tmp_path / "a.png")
    (tmp_path / "questions.jsonl").write_text(json.dumps({"image": "a.png", "question": "Q?", "answer": "x"}) + "\n")
    items = load_eval_set(tmp_path)
    assert items[0].answers == ["x"] and items[0].image == str(tmp_path / "a.png") and items[0].id == "row-1"


def test_cli_split_generates_and_scores_with_modes(tmp_path, monkeypatch, capsys):
    """--kinds/--per-kind/--docs-dir generate the documents; --modes sends answer_mode; numbers reach the table."""
    import orchestrator.commands as commands

    docs = tmp_path / "docs"
    fakes = []

    def fake_build(args):
        rows = [json.loads(line) for line in (docs / "questions.jsonl").read_text().splitlines()]
        fakes.append(FakePipeline({(str(docs / r["image"]), r["question"]): r["answers"] for r in rows}))
        return fakes[-1]

    monkeypatch.setattr(commands, "build_pipeline", fake_build)
    html = tmp_path / "r.html"
    assert main(["eval", "--kinds", "poster,sign", "--per-kind", "2", "--seed", "5", "--docs-dir", str(docs),
                 "--modes", "extract,auto", "--html", str(html), *FAST]) == 0
    out = capsys.readouterr().out
    rows = [json.loads(line) for line in (docs / "questions.jsonl").read_text().splitlines()]
    assert {r["seed"] for r in rows} == {5, 6} and {r["kind"] for r in rows} == {"poster", "sign"}
    n_poster = sum(r["kind"] == "poster" for r in rows)
    n_sign = len(rows) - n_poster
    lines = {ln.split()[0]: ln for ln in out.splitlines() if ln.strip()}
    # extract always right; auto wrong on posters only; no experts never right
    assert lines["poster"].split()[2:] == [str(n_poster), "100%", f"({n_poster}/{n_poster})", "0%",
                                           f"(0/{n_poster})", "0%", f"(0/{n_poster})"]
    assert f"100% ({n_sign}/{n_sign})" in lines["sign"] and lines["sign"].split()[1] == "dev"
    assert {p.get("answer_mode") for p in fakes[0].inputs} == {"extract", "auto", "generate"}
    assert html.is_file() and "Accuracy per kind" in html.read_text()


def test_cli_default_set_is_the_shipped_one(monkeypatch, capsys):
    import orchestrator.commands as commands

    seen = []

    class Echo(FakePipeline):
        def invoke(self, payload):
            seen.append(payload)
            return {"answer": "nothing", "experts": {}, "errors": {}, "context": ""}

    monkeypatch.setattr(commands, "build_pipeline", lambda args: Echo({}))
    assert main(["eval", "--limit", "2", "--json", *FAST]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["source"].endswith("examples/eval/questions.jsonl") and report["n"] == 2
    assert report["rows"][0]["id"] == "demo-total" and len(seen) == 4


def test_generated_set_is_cached_by_arguments(tmp_path, monkeypatch):
    monkeypatch.setenv("LAV2_CACHE_DIR", str(tmp_path))
    a = generated_eval_set("holdout", per_kind=1)
    b = generated_eval_set(None, kinds=["sign"], per_kind=1, seed=2)
    assert a.parent != b.parent and a.parent.parent == tmp_path / "eval-sets"
    assert {it.kind for it in load_eval_set(a)} == {"prescription", "parking_ticket", "library_card"}
    assert {it.split for it in load_eval_set(b)} == {"dev"}


def test_compare_adapter_asks_the_twin_for_every_experts_variant(tmp_path):
    """`lav2 eval --compare-adapter`: each experts variant is asked of the pipeline without its adapter too, in the
    same run, and scored on its own answers."""
    items = _items(tmp_path)
    fake = _fake(items)

    class NoAdapter(FakePipeline):
        def invoke(self, payload):
            out = super().invoke(payload)
            if payload.get("answer_mode") == "auto" and "Who" in payload["question"]:
                out["answer"] = "I cannot tell."  # the adapter is what gets this one right
            return out

    twin = NoAdapter(fake.key)
    report = evaluate(fake, items, modes=["extract", "auto"], progress=False, no_adapter=twin)
    assert report.variants == ["experts:extract", "experts:auto", "experts:extract/no-adapter",
                               "experts:auto/no-adapter", "none"]
    assert len(fake.inputs) == 3 * len(items) and len(twin.inputs) == 2 * len(items)
    assert report.accuracy["experts:auto"] == round(4 / 6, 4)
    assert report.accuracy["experts:auto/no-adapter"] == round(3 / 6, 4)
    assert report.accuracy["experts:extract/no-adapter"] == 1.0
    assert "auto/no-adapter" in format_report(report)


def test_without_adapter_shares_the_expert_cache():
    from orchestrator.evaluation import without_adapter
    from orchestrator.pipeline import VisualQAPipeline

    pipe = VisualQAPipeline("random:tiny", adapter="paper-text")
    twin = without_adapter(pipe)
    assert twin._cache is pipe._cache and twin.experts is pipe.experts
    assert pipe._load_args["adapter"] == "paper-text" and twin._load_args["adapter"] is None
    assert twin.model is not pipe.model


def test_a_question_that_fails_is_counted_and_the_run_goes_on(tmp_path, capsys):
    """One unreadable image in a long run is recorded as a failed question (wrong, with its error, in the table,
    the JSON and the HTML page), as `lav2 batch` records a failed row — it does not end the evaluation."""
    from core_model.errors import ImageError

    items = _items(tmp_path)
    (tmp_path / "broken.png").write_bytes(b"not an image")
    items.append(EvalItem("b1", str(tmp_path / "broken.png"), "What is the total?", ["18.55"], "invoice", "test"))

    class Failing(FakePipeline):
        def invoke(self, payload):
            if payload["image"].endswith("broken.png"):
                raise ImageError(f"{payload['image']}: not a recognised image format")
            return super().invoke(payload)

    report = evaluate(Failing({(it.image, it.question): it.answers for it in items[:-1]}), items,
                      modes=["extract"], progress=False)
    assert report.n == 7 and report.failed == 1
    row = report.rows[-1]
    assert row["id"] == "b1" and not row["with_correct"]
    assert all(v["error"] == "ImageError: " + str(tmp_path / "broken.png") + ": not a recognised image format"
               and not v["correct"] for v in row["variants"].values())
    assert report.accuracy["experts:extract"] == round(6 / 7, 4)  # the failed question counts as wrong
    text = format_report(report)
    assert "1 of 7 questions failed" in text and "not a recognised image format" in text
    page = write_html(report, tmp_path / "r.html").read_text()
    assert "not a recognised image format" in page
    assert json.loads(json.dumps(report.to_dict()))["failed"] == 1


def test_cli_eval_reports_failed_questions_and_fails_when_all_do(tmp_path, capsys):
    Image.new("RGB", (8, 8)).save(tmp_path / "a.png")
    (tmp_path / "bad.png").write_bytes(b"\x89PNG but not really")
    (tmp_path / "q.jsonl").write_text(
        '{"image": "bad.png", "question": "What is the total?", "answers": ["1"]}\n')
    assert main(["eval", "--data", str(tmp_path / "q.jsonl"), "--experts", "none", *FAST]) == 1
    err = capsys.readouterr()
    assert "every question failed" in err.err and "bad.png" in err.err and "Traceback" not in err.err


def test_html_thumbnail_of_a_hostile_image_is_left_out(tmp_path, monkeypatch):
    """The report draws thumbnails through open_image's caps: an image over the pixel limit (a decompression bomb)
    gets no thumbnail instead of crashing the report (PIL's DecompressionBombError is no OSError)."""
    import core_model.images as images

    items = _items(tmp_path)
    report = evaluate(_fake(items), items, progress=False)
    monkeypatch.setattr(images, "DEFAULT_MAX_PIXELS", 100)  # 80x40 = 3200 pixels: "too large" here
    monkeypatch.setattr(images.open_image, "__kwdefaults__", {**images.open_image.__kwdefaults__, "max_pixels": 100})
    page = write_html(report, tmp_path / "r.html").read_text()
    assert "data:image/jpeg;base64," not in page and all(it.question in page for it in items)
