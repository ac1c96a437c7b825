"""Live servers for the ``lav2 serve`` tests: uvicorn on a free loopback port, in a background thread."""
from __future__ import annotations

import base64
import io

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")


def data_url(img) -> str:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def start(config=None, **app_kwargs):
    from orchestrator.serve.app import create_app
    from orchestrator.serve.config import ServeConfig
    from orchestrator.serve.server import ServerThread

    config = config or ServeConfig(port=0)
    return ServerThread(create_app(config, **app_kwargs), config).start()


@pytest.fixture(scope="module")
def tiny_server(tiny_model):
    """A server on the shared ``random:tiny`` model (answers are noise; the protocol is what is tested)."""
    server = start(model=tiny_model)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def openai_client(tiny_server):
    openai = pytest.importorskip("openai")
    return openai.OpenAI(base_url=tiny_server.url + "/v1", api_key="unused", max_retries=0, timeout=60)
