"""The server's settings (what ``lav2 serve``'s flags set). No web framework is imported here."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

#: environment variable read for the API key when ``--api-key`` is not given
API_KEY_ENV = "LAV2_API_KEY"
#: 32 MiB: an image data URL near ``open_image``'s 20 MiB cap is ~27 MiB of base64, plus the JSON around it
DEFAULT_MAX_BODY_BYTES = 32 * 1024 * 1024


@dataclass
class ServeConfig:
    """Settings of one server.

    host, port: where to listen (``127.0.0.1`` by default: only this machine can connect).
    api_key: when set, every API request needs ``Authorization: Bearer <api_key>`` (``/health`` and the page's
        HTML stay open; the page asks for the key).
    allow_local_files: let requests name files on the server (paths, ``file://`` URLs). Off by default: a network
        client must never make the server read its own files.
    allow_image_urls: let the server fetch ``http(s)`` image URLs (size cap and timeout of ``open_image``).
    allow_private_urls: let those URLs lead to loopback, private-network, link-local (cloud metadata) and other
        non-public addresses. Off by default: a network client must not use the server to reach what only the
        server can reach (server-side request forgery).
    max_body_bytes: requests with a larger body are refused with 413 before they are read.
    request_timeout: seconds one request may take (queueing + experts + generation); then it is cancelled.
    max_pending: requests admitted at once (waiting or generating); more are refused with 429 + ``Retry-After``.
        The engine's queue gets the same bound.
    max_batch_size: requests the engine decodes together (``model.configure_engine``); None keeps the model's.
    expert_workers: ``/v1/vqa`` requests running their experts at once (None: no limit).
    default_max_tokens, default_temperature: for requests that do not say (and the length of ``/v1/vqa`` answers).
    model_id: the id ``/v1/models`` lists (``"default"`` is always accepted too); None: derived from the base.
    experts: the default routing policy of ``/v1/vqa`` and the page.
    load: keyword arguments for the model and pipeline (``--model``, ``--adapter``, ... of ``lav2 ask``).
    """

    host: str = "127.0.0.1"
    port: int = 8000
    api_key: str | None = None
    allow_local_files: bool = False
    allow_image_urls: bool = True
    allow_private_urls: bool = False
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    request_timeout: float = 300.0
    max_pending: int = 64
    max_batch_size: int | None = None
    expert_workers: int | None = None
    retry_after: int = 1
    default_max_tokens: int = 256
    default_temperature: float = 0.0
    model_id: str | None = None
    experts: str = "auto"
    load: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        from core_model.errors import ConfigError

        if self.api_key is None:
            self.api_key = os.environ.get(API_KEY_ENV) or None
        if self.max_body_bytes < 1024:
            raise ConfigError(f"max_body_bytes must be at least 1024, got {self.max_body_bytes}")
        if self.request_timeout <= 0:
            raise ConfigError(f"request_timeout must be positive, got {self.request_timeout}")
        for name in ("max_batch_size", "expert_workers"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.max_pending < 1:
            raise ConfigError(f"max_pending must be at least 1, got {self.max_pending}")
