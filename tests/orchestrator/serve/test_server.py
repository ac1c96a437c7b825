"""``/v1/vqa``, ``/v1/experts``, ``/health``, ``/metrics``, the page's assets, concurrency, and ``lav2 serve`` itself."""
from __future__ import annotations

import concurrent.futures as cf
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from ..conftest import make_image, sleepy_expert
from .conftest import data_url, start

REPO = Path(__file__).resolve().parents[3]
STATIC = REPO / "orchestrator" / "serve" / "static"
ASK_JSON_KEYS = {"answer", "question", "image", "experts", "errors", "router", "context", "visual_prefix", "model",
                 "usage", "timings", "answer_mode"}


@pytest.fixture(scope="module")
def vqa_server(tiny_model):
    from orchestrator.pipeline import VisualQAPipeline

    experts = [sleepy_expert("reader", 0.0, "TOTAL 18.55"), sleepy_expert("counter", 0.0, "2 person"),
               sleepy_expert("broken", 0.0, raises=RuntimeError("lens cap on"))]
    pipeline = VisualQAPipeline(tiny_model, experts=experts, router="all", max_new_tokens=6, extract_from=["reader"])
    server = start(pipeline=pipeline)
    yield server, pipeline
    server.stop()


def test_vqa_returns_the_fields_of_ask_json(vqa_server):
    server, pipeline = vqa_server
    image = make_image(3)
    r = httpx.post(server.url + "/v1/vqa", json={"image": data_url(image), "question": "What is the total?"},
                   timeout=60)
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body) - {"extraction"} == ASK_JSON_KEYS  # extraction: when the answer mode tried it
    direct = pipeline.invoke({"image": image, "question": "What is the total?"})
    assert body["answer"] == direct.answer and body["context"] == direct.context
    assert body["experts"]["reader"] == "TOTAL 18.55" and body["experts"]["broken"].startswith("error: ")
    assert body["errors"] == {"broken": direct.errors["broken"]}
    assert body["router"]["policy"] == "all" and body["router"]["chosen"] == ["reader", "counter", "broken"]
    assert body["image"].startswith("data:image/png;base64,") and len(body["image"]) < 200  # shortened
    assert body["visual_prefix"] == "off (no vision weights configured)"
    assert {"experts", "generate", "total", "per_expert"} <= set(body["timings"])


def test_vqa_answer_mode_per_request(vqa_server):
    server, _ = vqa_server
    ask = {"image": data_url(make_image(1)), "question": "What is the total?"}
    r = httpx.post(server.url + "/v1/vqa", json=ask, timeout=60).json()
    assert r["answer"] == "18.55" and r["answer_mode"] == "extract"  # auto: the printed span
    r = httpx.post(server.url + "/v1/vqa", json={**ask, "answer_mode": "generate"}, timeout=60).json()
    assert r["answer_mode"] == "generate" and "extraction" not in r
    bad = httpx.post(server.url + "/v1/vqa", json={**ask, "answer_mode": "guess"}, timeout=60)
    assert bad.status_code == 400 and "answer_mode" in bad.json()["error"]["message"]


def test_vqa_policy_per_request_and_unknown_experts(vqa_server):
    server, _ = vqa_server
    r = httpx.post(server.url + "/v1/vqa", json={"image": data_url(make_image(0)), "question": "How many?",
                                                 "experts": ["counter"]}, timeout=60).json()
    assert list(r["experts"]) == ["counter"] and r["router"]["policy"] == "explicit"
    r = httpx.post(server.url + "/v1/vqa", json={"image": data_url(make_image(0)), "question": "Hi",
                                                 "experts": "none"}, timeout=60).json()
    assert r["experts"] == {} and r["context"] == ""
    bad = httpx.post(server.url + "/v1/vqa", json={"image": data_url(make_image(0)), "question": "Hi",
                                                   "experts": "ocr,telepathy"}, timeout=60)
    assert bad.status_code == 400 and "telepathy" in bad.json()["error"]["message"]
    refused = httpx.post(server.url + "/v1/vqa", json={"image": "/etc/hosts", "question": "Hi"}, timeout=60)
    assert refused.status_code == 400 and refused.json()["error"]["code"] == "local_files_refused"


def test_vqa_stream_chunks_add_up_to_the_answer(vqa_server):
    server, _ = vqa_server
    ask = {"image": data_url(make_image(3)), "question": "What is the total?"}
    whole = httpx.post(server.url + "/v1/vqa", json=ask, timeout=60).json()
    with httpx.stream("POST", server.url + "/v1/vqa", json={**ask, "stream": True}, timeout=60) as r:
        events = [line[len("data: "):] for line in r.iter_lines() if line]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert "experts" in chunks[0] and "router" in chunks[0]  # experts first, as `lav2 ask --json --stream`
    assert "".join(c.get("answer", "") for c in chunks).strip() == whole["answer"]
    assert "timings" in chunks[-1] and "usage" in chunks[-1]


def test_experts_endpoint_lists_readiness(vqa_server):
    server, _ = vqa_server
    body = httpx.get(server.url + "/v1/experts").json()
    assert [e["name"] for e in body["data"]] == ["reader", "counter", "broken"]
    assert all({"ready", "reason", "needs_image", "description"} <= set(e) for e in body["data"])
    assert body["default_policy"] == "all"


def test_concurrent_requests_are_all_answered_as_if_alone(tiny_server, tiny_model):
    """8 clients at once: every answer equals the same request sent alone (greedy), none lost."""
    questions = [f"Question number {i}?" for i in range(8)]

    def ask(q):
        r = httpx.post(tiny_server.url + "/v1/chat/completions", timeout=120, json={
            "model": "default", "messages": [{"role": "user", "content": q}], "max_tokens": 12})
        return r.status_code, r.json()["choices"][0]["message"]["content"]

    alone = [ask(q) for q in questions]
    before = engine_counts(tiny_server)
    with cf.ThreadPoolExecutor(8) as pool:
        together = list(pool.map(ask, questions))
    after = engine_counts(tiny_server)
    assert together == alone and all(status == 200 for status, _ in together)
    steps, rows = after["steps"] - before["steps"], after["rows_decoded"] - before["rows_decoded"]
    assert rows == 8 * 11  # 12 tokens each: the first comes from the prefill, 11 from decode steps
    assert rows / steps > 2, (rows, steps)  # decoded together: several rows per engine step


def engine_counts(server) -> dict[str, float]:
    text = httpx.get(server.url + "/metrics").text
    return {key: float(re.search(rf"^lav2_engine_{key}_total (\S+)$", text, re.M).group(1))
            for key in ("steps", "rows_decoded", "tokens")}


def test_health_and_metrics(tiny_server):
    health = httpx.get(tiny_server.url + "/health").json()
    assert health["status"] == "ok" and health["model"] == "random:tiny"
    httpx.post(tiny_server.url + "/v1/chat/completions", timeout=60, json={
        "model": "default", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 3})
    r = httpx.get(tiny_server.url + "/metrics")
    assert r.headers["content-type"].startswith("text/plain")
    text = r.text
    for name in ("lav2_requests_total", "lav2_request_duration_seconds_bucket", "lav2_time_to_first_token_seconds",
                 "lav2_prompt_tokens_total", "lav2_completion_tokens_total", "lav2_requests_in_progress",
                 "lav2_model_ready 1.0"):
        assert name in text, name
    done = re.search(r'lav2_requests_total\{endpoint="/v1/chat/completions",status="200"\} (\d+)', text)
    assert done and int(done.group(1)) >= 1
    tokens = float(re.search(r"^lav2_completion_tokens_total (\S+)$", text, re.M).group(1))
    assert tokens >= 3
    threads = float(re.search(r"^lav2_engine_threads (\S+)$", text, re.M).group(1))
    assert threads >= 1  # the engine stepped, with at least one thread


def test_page_and_its_assets_load_nothing_from_elsewhere(tiny_server):
    page = httpx.get(tiny_server.url + "/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "default-src 'self'" in page.headers["content-security-policy"]
    for asset in ("/static/app.js", "/static/style.css"):
        assert httpx.get(tiny_server.url + asset).status_code == 200
    assert httpx.get(tiny_server.url + "/static/example-receipt.png").headers["content-type"] == "image/png"
    for path in STATIC.glob("*.*"):
        if path.suffix not in (".html", ".js", ".css"):
            continue
        text = path.read_text()
        assert not re.search(r"(src|href)\s*=\s*[\"']?(https?:)?//", text), path  # no CDN, no remote asset
        assert not re.search(r"url\(\s*[\"']?(https?:)?//", text), path
        assert "innerHTML" not in text, path  # untrusted text (answers, OCR) is never parsed as HTML
    assert httpx.get(tiny_server.url + "/docs").status_code == 404  # FastAPI's docs page loads a CDN


def test_lav2_serve_help_explains_every_flag():
    from orchestrator.cli import build_parser

    parser = build_parser()
    serve = parser._subparsers._group_actions[0].choices["serve"]
    for action in serve._actions:
        if action.dest != "help":
            assert action.help and len(action.help) > 15, action.dest
    flags = {s for a in serve._actions for s in a.option_strings}
    assert {"--host", "--port", "--api-key", "--allow-local-files", "--max-body-mb", "--request-timeout",
            "--max-pending", "--model", "--adapter", "--vision", "--experts", "--served-model-name"} <= flags


def test_cli_imports_no_web_framework():
    """`lav2 --help` must stay light: FastAPI/uvicorn load only when `lav2 serve` runs."""
    code = ("import sys; from orchestrator.cli import build_parser; build_parser(); "
            "print(sorted(m for m in ('fastapi', 'uvicorn', 'prometheus_client', 'starlette') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "[]", out.stderr


@pytest.mark.slow
def test_lav2_serve_runs_and_stops(tmp_path):
    """The real command: starts, answers on its port (503 first if the model is still loading), stops on SIGINT."""
    import signal
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "LAV2_API_KEY": "k"}
    proc = subprocess.Popen([sys.executable, "-m", "orchestrator.cli", "serve", "--model", "random:tiny",
                             "--port", str(port), "--served-model-name", "tiny"], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        status = None
        while time.monotonic() < deadline:
            try:
                status = httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).json()["status"]
                if status == "ok":
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        assert status == "ok"
        client = httpx.Client(base_url=f"http://127.0.0.1:{port}", headers={"Authorization": "Bearer k"})
        assert client.get("/v1/models").json()["data"][0]["id"] == "tiny"
        assert client.post("/v1/chat/completions", json={"model": "tiny", "max_tokens": 2, "messages": [
            {"role": "user", "content": "hi"}]}).status_code == 200
    finally:
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "API key required" in err and "Traceback" not in err


def test_lav2_serve_reports_a_bad_model_in_one_line():
    out = subprocess.run([sys.executable, "-m", "orchestrator.cli", "serve", "--model", "/no/such/model",
                          "--port", "0"], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 2
    last = out.stderr.strip().splitlines()[-1]
    assert last.startswith("lav2 serve: error: ") and "Traceback" not in out.stderr
