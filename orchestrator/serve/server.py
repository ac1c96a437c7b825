"""Running the app with uvicorn: in the foreground (``lav2 serve``) or on a background thread (tests, notebooks)."""
from __future__ import annotations

import logging
import socket
import threading
import time
from typing import Any

from .config import ServeConfig

log = logging.getLogger("lav2.serve")


def _uvicorn_server(app: Any, config: ServeConfig, log_level: str = "info") -> Any:
    import uvicorn

    uv = uvicorn.Config(app, host=config.host, port=config.port, log_level=log_level, access_log=False,
                        timeout_graceful_shutdown=5, server_header=False, proxy_headers=False,
                        limit_concurrency=None, lifespan="on")
    return uvicorn.Server(uv)


def serve(config: ServeConfig, *, app: Any = None, log_level: str = "info") -> BaseException | None:
    """Serve until interrupted (Ctrl-C / SIGTERM). Returns the model-loading error if the model failed to load (the
    server then stops by itself), else None."""
    from .app import create_app

    app = app or create_app(config)
    server = _uvicorn_server(app, config, log_level)
    host = app.state.host

    def stop_on_failure(error: BaseException) -> None:
        server.should_exit = True

    host.on_failure = stop_on_failure
    try:
        server.run()
    except KeyboardInterrupt:  # uvicorn shuts down gracefully, then re-raises Ctrl-C: stopping is the normal end
        log.info("stopped")
    return host.error


class ServerThread:
    """The app served by uvicorn on a background thread, on a free loopback port unless ``config.port`` is set.

    ``with ServerThread(app) as server: httpx.get(server.url + "/health")``.
    """

    def __init__(self, app: Any, config: ServeConfig | None = None, *, wait_ready: bool = True,
                 timeout: float = 120.0):
        self.app = app
        self.config = config or app.state.config
        self.wait_ready = wait_ready
        self.timeout = timeout
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind((self.config.host, self.config.port if self.config.port else 0))
        self.port = self._sock.getsockname()[1]
        self.url = f"http://{self.config.host}:{self.port}"
        self._server = _uvicorn_server(app, self.config, "warning")
        self._thread = threading.Thread(target=self._run, name="lav2-serve", daemon=True)

    def _run(self) -> None:
        self._server.run(sockets=[self._sock])

    def start(self) -> ServerThread:
        self._thread.start()
        deadline = time.monotonic() + self.timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the server did not start (see the log)")
            time.sleep(0.02)
        if self.wait_ready:
            if not self.app.state.host.ready.wait(max(0.0, deadline - time.monotonic())):
                raise RuntimeError(f"the model did not load: {self.app.state.host.error}")
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=15)
        self._sock.close()

    def __enter__(self) -> ServerThread:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()
