"""Fixtures for the expert tools: private cache/data dirs, offline mode, a guard against real network access."""
from __future__ import annotations

import ipaddress
import os
import socket
from collections.abc import Iterator

import pytest

@pytest.fixture(scope="session", autouse=True)
def _private_dirs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Keep caches, the ultralytics config and the default index out of the user's home."""
    root = tmp_path_factory.mktemp("lav2-tools")
    saved = {k: os.environ.get(k) for k in ("LAV2_CACHE_DIR", "LAV2_DATA_DIR", "YOLO_CONFIG_DIR", "HF_HOME")}
    os.environ["LAV2_CACHE_DIR"] = str(root / "cache")
    os.environ["LAV2_DATA_DIR"] = str(root / "data")
    os.environ.setdefault("YOLO_CONFIG_DIR", str(root / "cache" / "ultralytics"))
    os.environ["HF_HOME"] = str(root / "hf")
    yield
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture(autouse=True)
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """Experts never probe the internet in tests (tests that need "online" patch ``network_available``)."""
    monkeypatch.setenv("LAV2_OFFLINE", "1")
    monkeypatch.delenv("LAV2_INDEX", raising=False)
    for key in ("NO_PROXY", "no_proxy"):
        monkeypatch.setenv(key, "127.0.0.1,localhost")
    from tools import base

    base._NET_CACHE.clear()


def _is_loopback(host: object) -> bool:
    if not isinstance(host, str):
        return True  # AF_UNIX paths and the like
    if host in ("localhost", ""):
        return True
    try:
        return ipaddress.ip_address(host.split("%")[0]).is_loopback
    except ValueError:
        return False


class NetworkAttempts(list):
    """Every (function, address) Python code tried to reach outside the machine."""


@pytest.fixture(autouse=True)
def no_network(monkeypatch: pytest.MonkeyPatch) -> NetworkAttempts:
    """Fail any non-loopback DNS lookup or connect from Python code, and record it."""
    attempts = NetworkAttempts()
    real_connect, real_connect_ex = socket.socket.connect, socket.socket.connect_ex
    real_getaddrinfo = socket.getaddrinfo

    def guarded_getaddrinfo(host, *args, **kwargs):
        if not _is_loopback(host.decode() if isinstance(host, bytes) else host):
            attempts.append(("getaddrinfo", host))
            raise socket.gaierror(socket.EAI_NONAME, f"network disabled in tests: {host}")
        return real_getaddrinfo(host, *args, **kwargs)

    def guarded_connect(self, address):
        host = address[0] if isinstance(address, tuple) else address
        if not _is_loopback(host):
            attempts.append(("connect", address))
            raise OSError(f"network disabled in tests: {address}")
        return real_connect(self, address)

    def guarded_connect_ex(self, address):
        host = address[0] if isinstance(address, tuple) else address
        if not _is_loopback(host):
            attempts.append(("connect_ex", address))
            return 101  # ENETUNREACH
        return real_connect_ex(self, address)

    monkeypatch.setattr(socket, "getaddrinfo", guarded_getaddrinfo)
    monkeypatch.setattr(socket.socket, "connect", guarded_connect)
    monkeypatch.setattr(socket.socket, "connect_ex", guarded_connect_ex)
    return attempts
