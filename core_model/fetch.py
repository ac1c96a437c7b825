"""HTTP(S) downloads of untrusted URLs under ONE wall-clock deadline.

``urllib``'s ``timeout`` bounds each socket operation, not the request: a server that sends one byte per second
never trips it, and the DNS lookup (``getaddrinfo``) has no timeout at all. Here every fetch gets a deadline that
covers all of it — name resolution, connecting, TLS, the headers, every redirect hop and the body:

* the name is resolved in a daemon thread that is abandoned when the deadline passes;
* a watchdog timer shuts the fetch's sockets down at the deadline, which ends any blocking read at once,
  however the bytes trickle in;
* redirects are followed only to ``http``/``https`` URLs, at most ``max_redirects`` of them;
* the body is capped at ``max_bytes`` while reading, and a declared ``Content-Length`` above it is refused first;
* ``allow_private=False`` (what a server fetching for network clients uses) reaches public internet addresses only:
  every address a name resolves to is checked right before connecting (so a name that changes its answer between
  two lookups cannot slip through), on every redirect hop; loopback, private, link-local (cloud metadata at
  169.254.169.254), shared, multicast and reserved addresses raise :class:`FetchRefused`. Through a proxy from the
  environment the proxy itself may be private; the URL's own host is resolved and checked before the proxy is
  asked (what the proxy then resolves is its business).

Proxies from the environment (``https_proxy`` ...) are honoured, as ``urllib`` does. The ``tools`` package has
the same mechanism in ``tools/fetch.py`` (``tools`` never imports ``core_model``); one test suite runs against
both.
"""
from __future__ import annotations

import http.client
import ipaddress
import socket
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import Any

__all__ = ["ALLOWED_SCHEMES", "MAX_REDIRECTS", "FetchError", "FetchRefused", "FetchTimeout", "Fetched", "fetch",
           "is_public_address"]

ALLOWED_SCHEMES = ("http", "https")
MAX_REDIRECTS = 5
_CHUNK = 64 * 1024


class FetchError(Exception):
    """The URL could not be fetched (the message says why); the caller names the URL."""


class FetchTimeout(FetchError, TimeoutError):
    """The fetch did not finish within its deadline."""


class FetchRefused(FetchError):
    """The URL leads to an address this fetch may not reach (``allow_private=False``): nothing was sent there."""


def is_public_address(address: str) -> bool:
    """Whether an IP address (v4 or v6, an IPv6 zone allowed) is a public internet address: not loopback, private,
    link-local, shared (100.64/10), multicast, unspecified or reserved; IPv4-mapped IPv6 is judged as its IPv4."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


def _check_public(host: str, addresses: list[str]) -> None:
    refused = [a for a in addresses if not is_public_address(a)]
    if refused:
        shown = host if host in refused else f"{host} ({', '.join(sorted(set(refused)))})"
        raise FetchRefused(f"{shown} is not a public internet address (loopback, private, link-local or reserved): "
                           "refused, this fetch may reach public addresses only")


@dataclass
class Fetched:
    data: bytes
    content_type: str  # lower-cased media type without parameters ("" when the server sent none)
    url: str  # after redirects


class _Deadline:
    """The fetch's deadline and the sockets to cut when it passes."""

    def __init__(self, timeout: float):
        self.timeout = float(timeout)
        self.end = time.monotonic() + self.timeout
        self.expired = False
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._timer = threading.Timer(max(self.timeout, 0.0), self._expire)
        self._timer.daemon = True

    def remaining(self) -> float:
        left = self.end - time.monotonic()
        if left <= 0:
            self.expired = True
            raise FetchTimeout(f"did not finish within {self.timeout:g}s")
        return left

    def watch(self, sock: socket.socket) -> None:
        with self._lock:
            self._sockets.append(sock)
            if self.expired:
                _shutdown(sock)

    def _expire(self) -> None:
        with self._lock:
            self.expired = True
            for sock in self._sockets:
                _shutdown(sock)

    def __enter__(self) -> _Deadline:
        self._timer.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._timer.cancel()


def _shutdown(sock: socket.socket) -> None:
    """End every blocking call on ``sock`` now (the plain-socket shutdown also works under TLS)."""
    try:
        socket.socket.shutdown(sock, socket.SHUT_RDWR)
    except OSError:
        pass


def _resolve(host: str, port: int, deadline: _Deadline) -> list[tuple]:
    """``getaddrinfo`` bounded by the deadline: it runs in a daemon thread that is abandoned when it hangs."""
    result: dict[str, Any] = {}

    def work() -> None:
        try:
            result["addrs"] = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except OSError as e:
            result["error"] = e

    worker = threading.Thread(target=work, name=f"lav2-resolve-{host}", daemon=True)
    worker.start()
    worker.join(deadline.remaining())
    if worker.is_alive():
        deadline.expired = True
        raise FetchTimeout(f"the name lookup of {host!r} did not answer within {deadline.timeout:g}s")
    if "error" in result:
        raise result["error"]
    return result["addrs"]


def _connector(deadline: _Deadline, public_only: bool):
    def create_connection(address: tuple[str, int], timeout: Any = None, source_address: Any = None) -> socket.socket:
        host, port = address
        error: OSError | None = None
        resolved = _resolve(host, port, deadline)
        if public_only:  # every address, not just the first: no choosing among a name's answers
            _check_public(host, [info[4][0] for info in resolved])
        for family, kind, proto, _, sockaddr in resolved:
            sock = socket.socket(family, kind, proto)
            deadline.watch(sock)
            try:
                sock.settimeout(deadline.remaining())
                if source_address:
                    sock.bind(source_address)
                sock.connect(sockaddr)
                return sock
            except OSError as e:
                sock.close()
                error = e
                if deadline.expired:
                    break
        raise error or OSError(f"cannot connect to {host}:{port}")

    return create_connection


def _connection_class(base: type, deadline: _Deadline, public_only: bool) -> Any:
    def make(host: str, **kwargs: Any) -> http.client.HTTPConnection:
        conn = base(host, **kwargs)
        # DNS + connect under the deadline, sockets watched, addresses checked when public_only
        conn._create_connection = _connector(deadline, public_only)
        return conn

    return make


def _public_only(req: urllib.request.Request, deadline: _Deadline, allow_private: bool) -> bool:
    """Whether the connection must check its addresses: yes, unless private ones are allowed or it goes to a proxy
    (then the URL's own host is checked here instead, before the proxy is contacted)."""
    if allow_private:
        return False
    if not (req.has_proxy() or getattr(req, "_tunnel_host", None)):
        return True
    target = urllib.parse.urlsplit(req.full_url)
    host = target.hostname or ""
    port = target.port or (443 if target.scheme == "https" else 80)
    _check_public(host, [info[4][0] for info in _resolve(host, port, deadline)])
    return False


class _HTTPHandler(urllib.request.HTTPHandler):
    def __init__(self, deadline: _Deadline, allow_private: bool = True):
        super().__init__()
        self._deadline = deadline
        self._allow_private = allow_private

    def http_open(self, req: urllib.request.Request) -> Any:
        public_only = _public_only(req, self._deadline, self._allow_private)
        return self.do_open(_connection_class(http.client.HTTPConnection, self._deadline, public_only), req)


class _HTTPSHandler(urllib.request.HTTPSHandler):
    def __init__(self, deadline: _Deadline, allow_private: bool = True):
        super().__init__()
        self._deadline = deadline
        self._allow_private = allow_private

    def https_open(self, req: urllib.request.Request) -> Any:
        public_only = _public_only(req, self._deadline, self._allow_private)
        return self.do_open(_connection_class(http.client.HTTPSConnection, self._deadline, public_only), req,
                            context=self._context)


class _Redirects(urllib.request.HTTPRedirectHandler):
    def __init__(self, max_redirects: int):
        super().__init__()
        self.max_redirections = max_redirects
        self.max_repeats = max(1, min(max_redirects, 4))
        self.count = 0

    def redirect_request(self, req: Any, fp: Any, code: int, msg: str, headers: Any, newurl: str) -> Any:
        scheme = urllib.parse.urlsplit(newurl).scheme.lower()
        if scheme not in ALLOWED_SCHEMES:
            raise FetchError(f"redirected (HTTP {code}) to a {scheme or 'scheme-less'}: URL; only http and https "
                             "redirects are followed")
        self.count += 1
        if self.count > self.max_redirections:
            raise FetchError(f"more than {self.max_redirections} redirects")
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def fetch(url: str, *, timeout: float = 10.0, max_bytes: int, max_redirects: int = MAX_REDIRECTS,
          content_type_prefix: str | None = None, headers: dict[str, str] | None = None,
          allow_private: bool = True) -> Fetched:
    """GET ``url`` (http or https) within ``timeout`` seconds wall clock, DNS and redirects included.

    ``content_type_prefix`` (e.g. ``"image/"``): refuse any other media type before reading the body.
    ``allow_private=False``: public internet addresses only (see the module doc; :class:`FetchRefused`).
    Raises :class:`FetchTimeout` past the deadline and :class:`FetchError` for every other failure.
    """
    scheme = urllib.parse.urlsplit(url).scheme.lower()
    if scheme not in ALLOWED_SCHEMES:
        raise FetchError(f"unsupported URL scheme {scheme!r} (only http and https are fetched)")
    with _Deadline(timeout) as deadline:
        redirects = _Redirects(max_redirects)
        opener = urllib.request.OpenerDirector()
        for handler in (urllib.request.ProxyHandler(), urllib.request.UnknownHandler(),
                        _HTTPHandler(deadline, allow_private), _HTTPSHandler(deadline, allow_private),
                        urllib.request.HTTPDefaultErrorHandler(), redirects,
                        urllib.request.HTTPErrorProcessor()):
            opener.add_handler(handler)
        request = urllib.request.Request(url, headers=headers or {})
        try:
            with opener.open(request, timeout=deadline.remaining()) as response:
                ctype = (response.headers.get("Content-Type") or "").split(";")[0].strip().lower()
                if content_type_prefix is not None and not ctype.startswith(content_type_prefix):
                    raise FetchError(f"server sent Content-Type {ctype or 'none'!r}, not {content_type_prefix}*")
                declared = response.headers.get("Content-Length")
                if declared and declared.strip().isdigit() and int(declared) > max_bytes:
                    raise FetchError(f"{int(declared)} bytes exceeds max_bytes={max_bytes}; raise max_bytes if "
                                     "this is expected")
                data = _read_capped(response, max_bytes, deadline)
                final = response.geturl()
        except FetchError:
            raise
        except urllib.error.HTTPError as e:
            if deadline.expired:
                raise FetchTimeout(f"did not finish within {deadline.timeout:g}s") from e
            raise FetchError(f"HTTP {e.code} {e.reason}") from e
        except urllib.error.URLError as e:
            if isinstance(e.reason, FetchError):
                raise e.reason from e
            if deadline.expired:
                raise FetchTimeout(f"did not finish within {deadline.timeout:g}s") from e
            raise FetchError(f"cannot fetch ({e.reason})") from e
        except Exception as e:  # noqa: BLE001 - http.client / ssl / socket failures, or the watchdog's cut
            if deadline.expired:
                raise FetchTimeout(f"did not finish within {deadline.timeout:g}s") from e
            raise FetchError(f"fetch failed ({type(e).__name__}: {e})") from e
        if deadline.expired:  # the watchdog ended the read: what arrived is truncated
            raise FetchTimeout(f"did not finish within {deadline.timeout:g}s")
    return Fetched(data, ctype, final)


def _read_capped(response: Any, max_bytes: int, deadline: _Deadline) -> bytes:
    """At most ``max_bytes`` (fail as soon as one more byte arrives), each read bounded by the deadline."""
    buf = bytearray()
    while True:
        deadline.remaining()
        chunk = response.read1(_CHUNK) if hasattr(response, "read1") else response.read(_CHUNK)
        if not chunk:
            return bytes(buf)
        buf += chunk
        if len(buf) > max_bytes:
            raise FetchError(f"response exceeds max_bytes={max_bytes} (stopped reading); raise max_bytes if this "
                             "is expected")
