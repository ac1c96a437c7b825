"""Class 3: one wall-clock deadline per URL fetch (DNS, trickling servers, redirects included); redirects only to
http(s), at most 5. Run against both fetchers: ``core_model.images`` and the experts' ``tools.images``."""
from __future__ import annotations

import http.server
import socket
import threading
import time

import pytest

from .conftest import png_bytes

TIMEOUT = 2.0
SLACK = 2.0  # scheduling on a loaded 2-core machine; the old code took 30-150 s on these inputs


def _core_open(url, timeout):
    from core_model.images import open_image

    return open_image(url, timeout=timeout)


def _tools_open(url, timeout):
    from tools.images import open_image

    return open_image(url, timeout=timeout)


def _errors():
    from core_model.errors import ImageError
    from tools.base import ExpertInputError

    return {"core_model": ImageError, "tools": ExpertInputError}


OPENERS = {"core_model": _core_open, "tools": _tools_open}


@pytest.fixture(params=sorted(OPENERS))
def opener(request, monkeypatch):
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    return OPENERS[request.param], _errors()[request.param]


class _Trickler:
    """A loopback server that sends a response one byte per second (headers or body), as long as the client
    listens."""

    def __init__(self, trickle_headers: bool):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(4)
        self.port = self.sock.getsockname()[1]
        self.stop = threading.Event()
        self.trickle_headers = trickle_headers
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        self.sock.settimeout(0.2)
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    def _answer(self, conn):
        body = png_bytes()
        head = (f"HTTP/1.1 200 OK\r\nContent-Type: image/png\r\nContent-Length: {len(body)}\r\n\r\n").encode()
        try:
            conn.recv(65536)
            if not self.trickle_headers:
                conn.sendall(head)
            for byte in (head + body if self.trickle_headers else body):
                if self.stop.is_set():
                    break
                conn.sendall(bytes([byte]))
                time.sleep(1.0)
        except OSError:
            pass
        finally:
            conn.close()

    def close(self):
        self.stop.set()
        self.sock.close()


@pytest.mark.parametrize("trickle_headers", [False, True], ids=["body", "headers"])
def test_a_server_trickling_one_byte_per_second_is_cut_at_the_deadline(opener, trickle_headers):
    open_image, error = opener
    server = _Trickler(trickle_headers)
    try:
        start = time.monotonic()
        with pytest.raises(error, match="within"):
            open_image(f"http://127.0.0.1:{server.port}/slow.png", TIMEOUT)
        assert time.monotonic() - start < TIMEOUT + SLACK
    finally:
        server.close()


def test_a_hanging_name_lookup_is_inside_the_deadline(opener, monkeypatch):
    open_image, error = opener
    release = threading.Event()
    real = socket.getaddrinfo

    def slow_resolver(host, *args, **kwargs):
        if host == "slow-dns.test":
            release.wait(60)  # a resolver that does not answer (getaddrinfo has no timeout of its own)
            raise socket.gaierror("no answer")
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", slow_resolver)
    try:
        start = time.monotonic()
        with pytest.raises(error, match="within"):
            open_image("http://slow-dns.test/x.png", TIMEOUT)
        assert time.monotonic() - start < TIMEOUT + SLACK
    finally:
        release.set()


class _Redirector(http.server.BaseHTTPRequestHandler):
    requests: list[str] = []
    target = ""

    def do_GET(self):  # noqa: N802 - http.server API
        type(self).requests.append(self.path)
        if self.path.startswith("/loop"):
            n = int(self.path.split("=")[-1]) if "=" in self.path else 0
            self._redirect(f"/loop?n={n + 1}")
        elif self.path == "/away":
            self._redirect(type(self).target)
        else:
            self.send_error(404)

    def _redirect(self, location):
        self.send_response(302)
        self.send_header("Location", location)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture()
def redirector():
    _Redirector.requests = []
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Redirector)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_redirect_to_ftp_is_refused_without_connecting(opener, redirector):
    open_image, error = opener
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    listener.settimeout(0.5)
    _Redirector.target = f"ftp://127.0.0.1:{listener.getsockname()[1]}/x.png"
    try:
        with pytest.raises(error, match="only http and https"):
            open_image(f"{redirector}/away", TIMEOUT)
        with pytest.raises(socket.timeout):
            listener.accept()  # nobody connected to the ftp:// target
    finally:
        listener.close()


def test_redirects_are_capped(opener, redirector):
    open_image, error = opener
    with pytest.raises(error, match="more than 5 redirects"):
        open_image(f"{redirector}/loop", TIMEOUT)
    assert len(_Redirector.requests) == 6  # the request and five redirects, then stop
