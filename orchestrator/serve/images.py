"""Images sent by network clients: which forms the server opens, and opening them off the event loop.

A request's image may be a ``data:image/...;base64,`` URL, raw base64, or an ``http(s)`` URL (fetched by
``core_model.images.open_image`` with its size cap, pixel cap and timeout, and — unless the server was started
with ``--allow-private-urls`` — only from public internet addresses, on every redirect hop). File paths and
``file://`` URLs name files on the *server*: they are refused unless the server was started with
``--allow-local-files``. Other URL schemes are always refused. Strings are classified here, before ``open_image``
sees them, because ``open_image`` treats any string naming an existing file as that file.
"""
from __future__ import annotations

import asyncio
import base64
import binascii
import re
from typing import Any

from .errors import BadRequest

_SCHEME_RE = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.-]*):")
_BASE64_RE = re.compile(r"^[A-Za-z0-9+/\s]+={0,2}\s*$")
_BASE64URL_RE = re.compile(r"^[A-Za-z0-9_\-\s]+={0,2}\s*$")


def checked_image_source(source: Any, *, allow_local_files: bool, allow_urls: bool,
                         param: str = "image") -> str | bytes:
    """What ``open_image`` may open for this request: the data/http(s) URL itself, decoded base64 bytes, or (with
    ``allow_local_files``) a path. Raises :class:`BadRequest` for anything else."""
    if not isinstance(source, str) or not source.strip():
        raise BadRequest("an image must be a non-empty string: a data URL (data:image/png;base64,...) or an "
                         "http(s) URL", param=param)
    source = source.strip()
    match = _SCHEME_RE.match(source[:40])
    scheme = match.group(1).lower() if match else None
    if scheme == "data":
        return source
    if scheme in ("http", "https"):
        if not allow_urls:
            raise BadRequest("this server does not fetch image URLs (started with --no-image-urls): send the image "
                             "as a data URL", param=param)
        return source
    if scheme == "file":
        if not allow_local_files:
            raise BadRequest("file:// URLs name files on the server and are refused (the server owner can allow "
                             "them with --allow-local-files): send the image as a data URL", param=param,
                             code="local_files_refused")
        return source
    if scheme is not None and len(scheme) > 1:  # "C:\..." is a Windows path, not a scheme
        raise BadRequest(f"unsupported image URL scheme {scheme!r}: use a data URL or an http(s) URL", param=param)
    if allow_local_files:
        return source  # open_image: an existing path, else base64
    compact = "".join(source.split())
    if len(compact) >= 16 and (_BASE64_RE.match(compact) or _BASE64URL_RE.match(compact)):
        try:  # decoded here: the bytes can only ever be an image, never a path
            if _BASE64_RE.match(compact):
                return base64.b64decode(compact + "=" * (-len(compact) % 4), validate=True)
            return base64.urlsafe_b64decode(compact + "=" * (-len(compact) % 4))
        except (binascii.Error, ValueError):
            pass
    raise BadRequest("an image must be a data URL (data:image/png;base64,...), base64 data or an http(s) URL; file "
                     "paths name files on the server and are refused (the server owner can allow them with "
                     "--allow-local-files)", param=param, code="local_files_refused")


async def open_request_image(source: Any, *, allow_local_files: bool, allow_urls: bool,
                             allow_private_urls: bool = False, param: str = "image") -> Any:
    """The request's image as an RGB ``PIL.Image`` (opened in a worker thread: a URL fetch must not block the
    event loop). Unreadable images are a 400 whose message names the input; so is a URL that leads to a non-public
    address unless ``allow_private_urls`` (``code="private_url_refused"``)."""
    from core_model.errors import ImageError
    from core_model.fetch import FetchRefused
    from core_model.images import open_image

    checked = checked_image_source(source, allow_local_files=allow_local_files, allow_urls=allow_urls, param=param)
    try:
        return await asyncio.to_thread(open_image, checked, allow_urls=allow_urls,
                                       allow_private_urls=allow_private_urls)
    except ImageError as e:
        if isinstance(e.__cause__, FetchRefused):
            raise BadRequest(f"cannot use the image: {e} (the server owner can allow such URLs with "
                             "--allow-private-urls)", param=param, code="private_url_refused") from None
        raise BadRequest(f"cannot use the image: {e}", param=param, code="invalid_image") from None
