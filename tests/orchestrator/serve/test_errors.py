"""Every refusal is OpenAI's error JSON with the right status (400, 401, 404, 413, 429, 503, 504, 500), as the
official client understands it; never a stack trace."""
from __future__ import annotations

import re
import threading
import time

import httpx
import pytest

from ..conftest import make_image, png_bytes
from .conftest import data_url, start

openai = pytest.importorskip("openai")

CHAT = "/v1/chat/completions"
HELLO = [{"role": "user", "content": "hi"}]


def error_of(response: httpx.Response, status: int) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"message", "type", "param", "code"}
    assert body["error"]["message"] and "Traceback" not in response.text
    return body["error"]


def post(server, path: str, body=None, **kwargs) -> httpx.Response:
    return httpx.post(server.url + path, json=body, timeout=60, **kwargs)


def chat(server, **fields) -> httpx.Response:
    return post(server, CHAT, {"model": "default", "messages": HELLO, "max_tokens": 2, **fields})


# ------------------------------------------------------------------------------------------------ 400
@pytest.mark.parametrize("fields, param, words", [
    ({"n": 2}, "n", "n=2 is not supported"),
    ({"response_format": {"type": "json_object"}}, "response_format", "'json_object' is not supported"),
    ({"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {}}}}, "response_format",
     "not supported"),
    ({"logprobs": True}, "logprobs", "logprobs"),
    ({"presence_penalty": 0.5}, "presence_penalty", "not supported"),
    ({"temperature": -1}, "temperature", "greater than or equal"),
    ({"max_tokens": 0}, "max_tokens", "greater than or equal"),
    ({"messages": []}, "messages", "at least 1"),
    ({"messages": [{"role": "wizard", "content": "hi"}]}, "messages[0].role", "not supported"),
    ({"messages": [{"role": "user", "content": [{"type": "input_audio", "input_audio": {}}]}]},
     "messages[0].content[0]", "'input_audio' is not supported"),
    ({"tool_choice": "required"}, "tool_choice", "needs tools"),
    ({"seed": 2**64}, "seed", "less than or equal"),  # torch's seed range: was a 500
    ({"seed": -(2**63) - 1}, "seed", "greater than or equal"),
])
def test_unsupported_or_malformed_requests_are_a_clear_400(tiny_server, fields, param, words):
    err = error_of(chat(tiny_server, **fields), 400)
    assert err["type"] == "invalid_request_error" and err["param"] == param and words in err["message"]


def test_body_that_is_not_json(tiny_server):
    r = httpx.post(tiny_server.url + CHAT, content=b"{nope", headers={"content-type": "application/json"})
    assert "not valid JSON" in error_of(r, 400)["message"]


def test_json_nested_past_the_parser_is_a_400(tiny_server):
    """100,000 nested arrays fit in a small body but exhaust the JSON parser's recursion: was a 500."""
    body = b'{"model": "default", "messages": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    for path in (CHAT, "/v1/completions", "/v1/vqa"):
        r = httpx.post(tiny_server.url + path, content=body, headers={"content-type": "application/json"})
        assert "nested too deeply" in error_of(r, 400)["message"]
    assert chat(tiny_server).status_code == 200  # the server is fine afterwards


def test_tool_call_arguments_nested_past_the_parser_are_a_400(tiny_server):
    deep = "[" * 100_000 + "]" * 100_000
    messages = [{"role": "user", "content": "hi"},
                {"role": "assistant", "content": None,
                 "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": deep}}]},
                {"role": "tool", "tool_call_id": "c1", "content": "ok"}]
    err = error_of(chat(tiny_server, messages=messages), 400)
    assert "nested too deeply" in err["message"] and err["param"].startswith("messages[1]")


def test_extreme_seeds_in_range_are_accepted(tiny_server):
    for seed in (2**64 - 1, -(2**63), 0):
        assert chat(tiny_server, seed=seed, temperature=1.0).status_code == 200
    r = post(tiny_server, "/v1/completions", {"model": "default", "prompt": "hi", "max_tokens": 2, "seed": 2**70})
    assert error_of(r, 400)["param"] == "seed"


def test_the_official_client_raises_bad_request(openai_client):
    with pytest.raises(openai.BadRequestError, match="n=3 is not supported"):
        openai_client.chat.completions.create(model="default", messages=HELLO, n=3)


def test_prompt_longer_than_the_context(tiny_server, tiny_model):
    long = "x" * (tiny_model.config.max_seq_len + 10)
    err = error_of(post(tiny_server, CHAT, {"model": "default", "messages": [{"role": "user", "content": long}]}),
                   400)
    assert err["code"] == "context_length_exceeded" and "exceeds the model's context" in err["message"]


def image_chat(server, url):
    return chat(server, messages=[{"role": "user", "content": [{"type": "text", "text": "?"},
                                                               {"type": "image_url", "image_url": {"url": url}}]}])


def test_images_a_network_client_may_not_send(tiny_server, tmp_path):
    """File paths and file:// URLs would read the server's own files; other schemes are never fetched."""
    secret = tmp_path / "secret.png"
    make_image(0).save(secret)
    for url in (str(secret), secret.as_uri(), "/etc/passwd", "~/.ssh/id_rsa"):
        err = error_of(image_chat(tiny_server, url), 400)
        assert err["code"] == "local_files_refused" and "--allow-local-files" in err["message"]
    for url in ("ftp://127.0.0.1/x.png", "gopher://127.0.0.1/x", "javascript:alert(1)"):
        assert "unsupported image URL scheme" in error_of(image_chat(tiny_server, url), 400)["message"]
    err = error_of(image_chat(tiny_server, "data:image/png;base64,AAAAAAAAAAAAAAAAAAAA"), 400)
    assert err["code"] == "invalid_image" and "not a recognised image format" in err["message"]
    assert error_of(image_chat(tiny_server, "data:text/html;base64,PGgxPg=="), 400)["code"] == "invalid_image"


def test_local_files_only_with_the_flag(tiny_model, tmp_path):
    from orchestrator.serve.config import ServeConfig

    path = tmp_path / "ok.png"
    make_image(0).save(path)
    server = start(ServeConfig(port=0, allow_local_files=True), model=tiny_model)
    try:
        assert image_chat(server, str(path)).status_code == 200
        assert image_chat(server, path.as_uri()).status_code == 200
    finally:
        server.stop()


def test_http_image_urls_are_fetched_unless_refused(tiny_server, tiny_model):
    """An http(s) image URL is fetched under open_image's rules (here from a loopback server)."""
    import http.server

    png = png_bytes(make_image(4))

    class Images(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - http.server's name
            self.send_response(200 if self.path == "/a.png" else 404)
            self.send_header("Content-Type", "image/png" if self.path == "/a.png" else "text/plain")
            self.end_headers()
            self.wfile.write(png if self.path == "/a.png" else b"missing")

        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Images)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{httpd.server_address[1]}"
    from orchestrator.serve.config import ServeConfig

    no_urls = start(ServeConfig(port=0, allow_image_urls=False), model=tiny_model)
    private = start(ServeConfig(port=0, allow_private_urls=True), model=tiny_model)
    try:
        assert image_chat(private, base + "/a.png").status_code == 200
        assert "HTTP 404" in error_of(image_chat(private, base + "/b.png"), 400)["message"]
        assert "--no-image-urls" in error_of(image_chat(no_urls, base + "/a.png"), 400)["message"]
    finally:
        no_urls.stop()
        private.stop()
        httpd.shutdown()


def test_image_urls_cannot_reach_the_servers_own_network(tiny_server):
    """SSRF: by default a client's image URL may lead to public addresses only — not the server's loopback (its own
    API, a database), the local network or the cloud metadata service; the loopback server here is never asked."""
    import http.server

    hits = []

    class Recorder(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - http.server's name
            hits.append(self.path)
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.end_headers()
            self.wfile.write(png_bytes(make_image(4)))

        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        for url in (f"http://127.0.0.1:{httpd.server_address[1]}/a.png", f"http://localhost:{httpd.server_address[1]}/",
                    "http://169.254.169.254/latest/meta-data/", "http://10.0.0.1/x.png", "http://[::1]:9/x.png"):
            err = error_of(image_chat(tiny_server, url), 400)
            assert "not a public internet address" in err["message"] and "--allow-private-urls" in err["message"]
            assert err["code"] == "private_url_refused"
            vqa = error_of(post(tiny_server, "/v1/vqa", {"image": url, "question": "What is it?"}), 400)
            assert vqa["code"] == "private_url_refused"
        assert hits == []
    finally:
        httpd.shutdown()


# ------------------------------------------------------------------------------------------------ 401
def test_api_key_is_required_when_set(tiny_model):
    from orchestrator.serve.config import ServeConfig

    server = start(ServeConfig(port=0, api_key="s3cret"), model=tiny_model)
    try:
        err = error_of(httpx.get(server.url + "/v1/models"), 401)
        assert err["type"] == "authentication_error" and err["code"] == "invalid_api_key"
        error_of(httpx.get(server.url + "/v1/models", headers={"Authorization": "Bearer nope"}), 401)
        error_of(httpx.get(server.url + "/metrics", headers={"Authorization": "Basic s3cret"}), 401)
        error_of(chat(server), 401)
        assert httpx.get(server.url + "/v1/models", headers={"Authorization": "Bearer s3cret"}).status_code == 200
        assert httpx.get(server.url + "/health").status_code == 200  # probes need no key
        assert httpx.get(server.url + "/").status_code == 200  # the page asks for the key itself
        with pytest.raises(openai.AuthenticationError):
            openai.OpenAI(base_url=server.url + "/v1", api_key="wrong", max_retries=0).models.list()
        good = openai.OpenAI(base_url=server.url + "/v1", api_key="s3cret", max_retries=0)
        assert good.chat.completions.create(model="default", messages=HELLO, max_tokens=2).choices
    finally:
        server.stop()


def test_api_key_from_the_environment(monkeypatch):
    from orchestrator.serve.config import ServeConfig

    monkeypatch.setenv("LAV2_API_KEY", "from-env")
    assert ServeConfig().api_key == "from-env"
    assert ServeConfig(api_key="flag").api_key == "flag"
    assert ServeConfig().host == "127.0.0.1"  # never every interface unless asked


# ------------------------------------------------------------------------------------------------ 404
def test_unknown_model_and_endpoint(tiny_server, openai_client):
    err = error_of(chat(tiny_server, model="gpt-4o"), 404)
    assert err["code"] == "model_not_found" and "'random:tiny'" in err["message"]
    with pytest.raises(openai.NotFoundError):
        openai_client.chat.completions.create(model="gpt-4o", messages=HELLO)
    assert error_of(httpx.get(tiny_server.url + "/v1/models/gpt-4o"), 404)["code"] == "model_not_found"
    assert error_of(httpx.get(tiny_server.url + "/v1/nothing"), 404)["code"] == "not_found"
    assert error_of(httpx.get(tiny_server.url + CHAT), 405)["code"] == "method_not_allowed"


# ------------------------------------------------------------------------------------------------ 413
def test_body_too_large(tiny_model):
    from orchestrator.serve.config import ServeConfig

    server = start(ServeConfig(port=0, max_body_bytes=4096), model=tiny_model)
    try:
        big = {"model": "default", "messages": [{"role": "user", "content": "x" * 5000}]}
        err = error_of(post(server, CHAT, big), 413)  # refused from Content-Length, before reading
        assert err["code"] == "request_too_large" and "4096 bytes" in err["message"]

        def chunked():  # no Content-Length: counted while it is read
            yield b'{"model": "default", "messages": [{"role": "user", "content": "'
            for _ in range(10):
                yield b"x" * 1000
            yield b'"}]}'

        r = httpx.post(server.url + CHAT, content=chunked(), headers={"content-type": "application/json"})
        assert error_of(r, 413)["code"] == "request_too_large"
        assert chat(server).status_code == 200  # small requests still work
        with pytest.raises(openai.APIStatusError) as info:
            openai.OpenAI(base_url=server.url + "/v1", api_key="x", max_retries=0).chat.completions.create(
                model="default", messages=big["messages"])
        assert info.value.status_code == 413
    finally:
        server.stop()


# ------------------------------------------------------------------------------------------------ 429
def _busy(model) -> bool:
    engine = getattr(model, "engine", None)
    if engine is not None and hasattr(engine, "stats"):
        stats = engine.stats()
        return bool(stats.get("active") or stats.get("queue_depth"))
    return model._lock.locked()


def test_full_server_says_429_with_retry_after_and_a_disconnect_frees_the_place(tiny_model):
    from orchestrator.serve.config import ServeConfig

    server = start(ServeConfig(port=0, max_pending=1, retry_after=3), model=tiny_model)
    try:
        with httpx.Client(timeout=60) as client:
            with client.stream("POST", server.url + CHAT, json={
                    "model": "default", "messages": HELLO, "max_tokens": 3000, "stream": True}) as long:
                lines = long.iter_lines()
                assert next(lines).startswith("data: ")  # generating now
                refused = chat(server)
                err = error_of(refused, 429)
                assert refused.headers["Retry-After"] == "3" and err["type"] == "rate_limit_error"
                with pytest.raises(openai.RateLimitError):
                    openai.OpenAI(base_url=server.url + "/v1", api_key="x", max_retries=0).chat.completions.create(
                        model="default", messages=HELLO, max_tokens=2)
            # the client hung up mid-stream: its generation is cancelled and its place freed
        deadline = time.monotonic() + 10
        while (_busy(tiny_model) or httpx.get(server.url + "/health").json()["requests_in_progress"]) \
                and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _busy(tiny_model)
        assert chat(server).status_code == 200
        metrics = httpx.get(server.url + "/metrics").text
        assert "lav2_requests_rejected_total 2.0" in metrics
        assert 'lav2_requests_total{endpoint="/v1/chat/completions",status="429"} 2.0' in metrics
        cancelled = re.search(r'^lav2_engine_finished_total\{reason="cancelled"\} (\S+)$', metrics, re.M)
        assert cancelled and float(cancelled.group(1)) >= 1  # the engine dropped the abandoned request
    finally:
        server.stop()


# ------------------------------------------------------------------------------------------------ 503
def test_503_while_the_model_loads_then_ready(tiny_model):
    from orchestrator.pipeline import VisualQAPipeline
    from orchestrator.serve.app import create_app
    from orchestrator.serve.config import ServeConfig
    from orchestrator.serve.server import ServerThread

    release = threading.Event()

    def slow_loader():
        release.wait(30)
        return VisualQAPipeline(tiny_model, experts=[])

    config = ServeConfig(port=0, model_id="random:tiny")
    server = ServerThread(create_app(config, loader=slow_loader), config, wait_ready=False).start()
    try:
        health = httpx.get(server.url + "/health")
        assert health.status_code == 503 and health.json() == {"status": "loading"} and health.headers["Retry-After"]
        err = error_of(chat(server), 503)
        assert err["code"] == "model_loading" and "still loading" in err["message"]
        with pytest.raises(openai.InternalServerError):
            openai.OpenAI(base_url=server.url + "/v1", api_key="x", max_retries=0).chat.completions.create(
                model="default", messages=HELLO)
        release.set()
        assert server.app.state.host.ready.wait(10)
        assert httpx.get(server.url + "/health").json()["status"] == "ok"
        assert chat(server).status_code == 200
    finally:
        release.set()
        server.stop()


def test_a_model_that_fails_to_load_is_reported_not_raised():
    from core_model.errors import ModelLoadError
    from orchestrator.serve.app import create_app
    from orchestrator.serve.config import ServeConfig
    from orchestrator.serve.server import ServerThread

    def broken():
        raise ModelLoadError("no such model directory: /nowhere")

    config = ServeConfig(port=0, model_id="x")
    server = ServerThread(create_app(config, loader=broken), config, wait_ready=False).start()
    try:
        deadline = time.monotonic() + 10
        while server.app.state.host.error is None and time.monotonic() < deadline:
            time.sleep(0.02)
        health = httpx.get(server.url + "/health")
        assert health.status_code == 503 and health.json()["status"] == "error"
        err = error_of(chat(server, model="x"), 503)
        assert err["code"] == "model_load_failed" and "/nowhere" in err["message"]
    finally:
        server.stop()


# ------------------------------------------------------------------------------------------------ 504
def _wait_idle(model, seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while _busy(model) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _busy(model), "the cancelled generation is still running"


def test_request_timeout_cancels(tiny_model):
    from orchestrator.serve.config import ServeConfig

    server = start(ServeConfig(port=0, request_timeout=1.0), model=tiny_model)
    try:
        started = time.monotonic()
        err = error_of(chat(server, max_tokens=3000), 504)  # 3000 tokens take far longer than 1 s
        assert err["type"] == "timeout" and time.monotonic() - started < 10
        _wait_idle(tiny_model)
        with httpx.stream("POST", server.url + CHAT, timeout=60, json={
                "model": "default", "messages": HELLO, "max_tokens": 3000, "stream": True}) as r:
            events = [line for line in r.iter_lines() if line]
        assert r.status_code == 200 and events[-1] == "data: [DONE]"
        assert '"type": "timeout"' in events[-2]  # the stream had begun: an error event, then the end
        _wait_idle(tiny_model)
    finally:
        server.stop()


# ------------------------------------------------------------------------------------------------ 500
def test_internal_errors_never_show_a_stack_trace(tiny_server, monkeypatch, caplog):
    from orchestrator import ChatLlamaAdapterV2

    def boom(self, *args, **kwargs):
        raise RuntimeError("secret internal detail")

    monkeypatch.setattr(ChatLlamaAdapterV2, "_prepare", boom)
    r = chat(tiny_server)
    err = error_of(r, 500)
    assert err["type"] == "server_error" and "secret internal detail" not in r.text
    assert "server's log" in err["message"]
