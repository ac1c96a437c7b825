"""Server-side request forgery: a fetch made for a network client (``allow_private=False``, what `lav2 serve` uses)
reaches public internet addresses only — not loopback, private, link-local (cloud metadata), shared or reserved
ones, whether named directly, through a name that resolves there, or through a redirect. Run against both
fetchers (``core_model.fetch`` and the experts' ``tools.fetch``); a local caller (``allow_private=True``, the
default) still reaches a loopback server."""
from __future__ import annotations

import http.server
import importlib
import threading

import pytest

from .conftest import png_bytes

MODULES = ("core_model.fetch", "tools.fetch")
PROXY_VARS = ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY", "no_proxy",
              "NO_PROXY")


@pytest.fixture(params=MODULES)
def fetchmod(request, monkeypatch):
    for var in PROXY_VARS:
        monkeypatch.delenv(var, raising=False)
    return importlib.import_module(request.param)


class _Images(http.server.BaseHTTPRequestHandler):
    hits: list[str] = []
    location = ""

    def do_GET(self):  # noqa: N802 - http.server's name
        _Images.hits.append(f"{self.headers.get('Host')}{self.path}")
        if self.path.startswith("/away"):
            self.send_response(302)
            self.send_header("Location", _Images.location)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        body = png_bytes()
        self.send_response(200)
        self.send_header("Content-Type", "image/png")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def _serve(host: str) -> http.server.ThreadingHTTPServer:
    httpd = http.server.ThreadingHTTPServer((host, 0), _Images)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return httpd


@pytest.fixture()
def loopback():
    _Images.hits = []
    httpd = _serve("127.0.0.1")
    yield httpd.server_address[1]
    httpd.shutdown()
    httpd.server_close()


@pytest.mark.parametrize("address, public", [
    ("8.8.8.8", True), ("93.184.216.34", True), ("2606:4700:4700::1111", True),
    ("127.0.0.1", False), ("127.8.9.10", False), ("10.1.2.3", False), ("172.16.0.1", False),
    ("192.168.1.1", False), ("169.254.169.254", False), ("100.64.0.1", False), ("0.0.0.0", False),
    ("224.0.0.1", False), ("255.255.255.255", False), ("::1", False), ("::", False), ("fe80::1", False),
    ("fe80::1%2", False), ("fc00::1", False), ("::ffff:127.0.0.1", False), ("::ffff:10.0.0.1", False),
    ("::ffff:8.8.8.8", True), ("ff02::1", False),
])
def test_which_addresses_are_public(fetchmod, address, public):
    assert fetchmod.is_public_address(address) is public


def test_loopback_is_refused_without_a_request_and_allowed_by_default(fetchmod, loopback):
    for host in ("127.0.0.1", "localhost"):
        with pytest.raises(fetchmod.FetchRefused, match="not a public internet address"):
            fetchmod.fetch(f"http://{host}:{loopback}/a.png", max_bytes=1 << 20, timeout=5, allow_private=False)
    assert _Images.hits == []  # refused before connecting
    got = fetchmod.fetch(f"http://127.0.0.1:{loopback}/a.png", max_bytes=1 << 20, timeout=5)
    assert got.data == png_bytes()


def test_a_redirect_to_a_private_address_is_refused(fetchmod, loopback, monkeypatch):
    """127.0.0.1 stands in for a public host (the test has no other); its redirect to 127.0.0.2 — private — is
    not followed: the server there is never contacted."""
    inner = _serve("127.0.0.2")
    try:
        monkeypatch.setattr(fetchmod, "is_public_address", lambda a: a == "127.0.0.1")
        _Images.location = f"http://127.0.0.2:{inner.server_address[1]}/a.png"
        with pytest.raises(fetchmod.FetchRefused, match="127.0.0.2"):
            fetchmod.fetch(f"http://127.0.0.1:{loopback}/away", max_bytes=1 << 20, timeout=5, allow_private=False)
        assert [h.split("/", 1)[1] for h in _Images.hits] == ["away"]  # the public hop only
        _Images.location = f"http://127.0.0.1:{loopback}/a.png"  # a redirect that stays public is followed
        got = fetchmod.fetch(f"http://127.0.0.1:{loopback}/away", max_bytes=1 << 20, timeout=5, allow_private=False)
        assert got.data == png_bytes()
    finally:
        inner.shutdown()
        inner.server_close()


def test_through_a_proxy_the_target_is_checked_not_the_proxy(fetchmod, loopback, monkeypatch):
    """With an environment proxy (often a private address itself) the proxy is reached; the URL's own host must be
    public: a public IP literal goes through, a private one is refused before the proxy is asked."""
    monkeypatch.setenv("http_proxy", f"http://127.0.0.1:{loopback}")
    got = fetchmod.fetch("http://93.184.216.34/a.png", max_bytes=1 << 20, timeout=5, allow_private=False)
    assert got.data == png_bytes() and _Images.hits == ["93.184.216.34http://93.184.216.34/a.png"]  # via the proxy
    with pytest.raises(fetchmod.FetchRefused, match="10.0.0.7"):
        fetchmod.fetch("http://10.0.0.7/a.png", max_bytes=1 << 20, timeout=5, allow_private=False)
    assert len(_Images.hits) == 1


def test_open_image_passes_the_choice_on(loopback, monkeypatch):
    from core_model.errors import ImageError
    from core_model.images import open_image

    for var in PROXY_VARS:
        monkeypatch.delenv(var, raising=False)
    url = f"http://127.0.0.1:{loopback}/a.png"
    assert open_image(url).size == (24, 16)  # local callers: loopback allowed
    with pytest.raises(ImageError, match="not a public internet address") as info:
        open_image(url, allow_private_urls=False)
    assert "offline" not in str(info.value)  # a refusal, not a network failure


def test_the_experts_open_image_passes_the_choice_on(loopback, monkeypatch):
    from tools.base import ExpertInputError
    from tools.images import open_image

    for var in PROXY_VARS:
        monkeypatch.delenv(var, raising=False)
    url = f"http://127.0.0.1:{loopback}/a.png"
    assert open_image(url).size == (24, 16)
    with pytest.raises(ExpertInputError, match="not a public internet address"):
        open_image(url, allow_private_urls=False)
