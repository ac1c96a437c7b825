"""``lav2 serve``: an OpenAI-compatible HTTP API and a web page for a LLaMA-Adapter V2 model.

FastAPI + uvicorn (the optional extra ``[serve]``). One model is loaded per server; every request goes through
the model's generation engine, so concurrent requests are decoded together in one batch.

Importing this package is cheap: FastAPI, uvicorn and prometheus-client load only when an app is created.

* :class:`ServeConfig` — the server's settings (host, port, API key, limits).
* :func:`create_app` — the ASGI app (``uvicorn.run(create_app(config))``); tests pass a loaded model.
* :func:`serve` — build the app and run it with uvicorn until interrupted.
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .app import create_app
    from .config import ServeConfig
    from .server import serve

_EXPORTS = {"create_app": "app", "ServeConfig": "config", "serve": "server"}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'orchestrator.serve' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value
