"""Errors in OpenAI's JSON shape, with the right HTTP status; never a stack trace in a response.

``{"error": {"message": ..., "type": ..., "param": ..., "code": ...}}`` — what the official ``openai`` client turns
into ``BadRequestError``, ``AuthenticationError``, ``NotFoundError``, ``RateLimitError``, ...
"""
from __future__ import annotations

from typing import Any

from ..errors import OrchestratorError


class APIError(OrchestratorError):
    """An error a request gets back: HTTP ``status``, OpenAI error ``type`` and ``code``, the ``param`` at fault."""

    status: int = 400
    type: str = "invalid_request_error"

    def __init__(self, message: str, *, status: int | None = None, type: str | None = None, code: str | None = None,
                 param: str | None = None, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.message = message
        if status is not None:
            self.status = status
        if type is not None:
            self.type = type
        self.code = code
        self.param = param
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return error_body(self.message, self.type, self.code, self.param)


class BadRequest(APIError):
    """400: the request cannot be served as written (the message says what to change)."""


class Unauthorized(APIError):
    status, type = 401, "authentication_error"


class NotFound(APIError):
    status = 404


class PayloadTooLarge(APIError):
    status = 413


class TooManyRequests(APIError):
    """429: the server's queue is full; ``Retry-After`` says when to try again."""

    status, type = 429, "rate_limit_error"

    def __init__(self, message: str, retry_after: int = 1, **kwargs: Any):
        super().__init__(message, code=kwargs.pop("code", "queue_full"),
                         headers={"Retry-After": str(max(1, int(retry_after)))}, **kwargs)


class ServiceUnavailable(APIError):
    status, type = 503, "service_unavailable"

    def __init__(self, message: str, retry_after: int = 2, **kwargs: Any):
        super().__init__(message, headers={"Retry-After": str(max(1, int(retry_after)))}, **kwargs)


class Timeout(APIError):
    status, type = 504, "timeout"


def error_body(message: str, type: str = "invalid_request_error", code: str | None = None,
               param: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": type, "param": param, "code": code}}
