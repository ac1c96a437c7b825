"""The one place that opens images for the whole project.

Every image that reaches the model (CLI paths, LangChain content blocks, HTTP URLs, arrays from other
libraries) goes through :func:`open_image`, so the safety checks live here once:

* **size limits before decoding** — the pixel count is read from the header (``Image.open`` is lazy) and
  checked against ``max_pixels`` before any pixel buffer is allocated; the byte count is capped while reading
  (``max_bytes``), including while streaming an HTTP response;
* **typed errors that name the input** — every failure is an :class:`~core_model.errors.ImageError` whose
  message says which input failed (the path, ``<bytes len=N>``, the URL without its query, or a shortened
  base64 string) and, where useful, what to do;
* **truncation is an error** — unless the host application switched on PIL's process-global
  ``ImageFile.LOAD_TRUNCATED_IMAGES``, which makes PIL pad truncated files silently (we do not touch globals);
* **one canonical pixel format** — EXIF orientation applied, then RGB; transparency is composited on white
  (what a person sees in a viewer), CMYK / 16-bit / grey / palette converted. The release read images with
  cv2 and fed BGR to CLIP; here the model always receives RGB.

:func:`image_digest` hashes decoded pixels so the vision feature cache is keyed by content, not by path.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import io
import logging
import os
import re
import threading
import urllib.parse
import urllib.request
import warnings
from pathlib import Path
from typing import Iterable, Union

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import ImageError

log = logging.getLogger(__name__)

#: 40 MP: larger than any phone camera, far below what would exhaust memory once decoded (~120 MB RGB).
DEFAULT_MAX_PIXELS = 40_000_000
#: 20 MiB of encoded data: a generous JPEG/PNG; also bounds what a URL may make us download.
DEFAULT_MAX_BYTES = 20 * 1024 * 1024
#: Transparent pixels become this colour (viewers show transparency on white; black would invent edges).
BACKGROUND_RGB = (255, 255, 255)

ImageSource = Union[str, os.PathLike, bytes, bytearray, memoryview, Image.Image, np.ndarray]

_BASE64_RE = re.compile(r"^[A-Za-z0-9+/_\-\s]+={0,2}\s*$")
_DATA_URL_RE = re.compile(r"^data:(?P<mime>[\w.+-]+/[\w.+-]+)?(?P<params>(;[\w.+-]+=[^;,]*)*)(?P<b64>;base64)?,",
                          re.IGNORECASE)
# ``warnings.catch_warnings`` swaps the process-wide filter list; serialise our (short, header-only) use of it
# so two threads opening images concurrently cannot restore each other's filters out of order.
_WARNINGS_LOCK = threading.Lock()


# --------------------------------------------------------------------------------------------- public API


def open_image(
    source: ImageSource,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_bytes: int = DEFAULT_MAX_BYTES,
    timeout: float = 10.0,
    allow_urls: bool = True,
    allow_private_urls: bool = True,
) -> Image.Image:
    """Open any supported image input as a fully loaded RGB ``PIL.Image``.

    Accepted sources: a file path (``str`` or ``PathLike``, ``~`` expanded, ``file://`` URLs), raw encoded
    ``bytes``/``bytearray``/``memoryview``, a base64 string, a ``data:image/...;base64,`` URL, an http(s) URL
    (only if ``allow_urls``), a ``PIL.Image``, or a numpy array (HW or HWC with 1/3/4 channels, ``uint8`` or
    float in [0, 1]). ``allow_private_urls=False`` (for URLs that come from network clients: ``lav2 serve``):
    a URL may lead only to public internet addresses — not loopback, the local network or cloud metadata — on
    every redirect hop (:mod:`core_model.fetch`).

    Raises:
        ImageError: the input is missing, too large, truncated, not an image, or could not be fetched. The
            message names the input.
    """
    if isinstance(source, Image.Image):
        name = _describe_pil(source)
        _check_pixel_count(source.size, name, max_pixels)
        _load(source, name)  # a caller's lazily opened image may still be truncated
        return _finish(source, name, max_pixels)
    if isinstance(source, np.ndarray):
        return _finish(_from_array(source), f"<ndarray shape={tuple(source.shape)} dtype={source.dtype}>",
                       max_pixels)
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        return _decode(data, f"<bytes len={len(data)}>", max_pixels=max_pixels, max_bytes=max_bytes)
    if isinstance(source, os.PathLike):
        return _open_path(Path(source), max_pixels=max_pixels, max_bytes=max_bytes)
    if isinstance(source, str):
        return _open_string(source, max_pixels=max_pixels, max_bytes=max_bytes, timeout=timeout,
                            allow_urls=allow_urls, allow_private_urls=allow_private_urls)
    raise ImageError(f"unsupported image input of type {type(source).__name__}: pass a path, URL, base64 "
                     "string, bytes, PIL.Image or numpy array")


def load_images(sources: ImageSource | Iterable[ImageSource], **kwargs) -> list[Image.Image]:
    """Open several images with :func:`open_image` (same keyword options); a single source is a list of one."""
    if isinstance(sources, (str, bytes, bytearray, memoryview, os.PathLike, Image.Image, np.ndarray)):
        sources = [sources]
    return [open_image(s, **kwargs) for s in sources]


def image_digest(img: Image.Image) -> str:
    """SHA-256 of the decoded RGB pixels (plus mode and size), as hex.

    Keys the vision feature cache by *content*: the same picture read from a path, from bytes or from a data URL
    hashes the same, while two different files at one path do not.
    """
    rgb = img if img.mode == "RGB" else img.convert("RGB")
    h = hashlib.sha256()
    h.update(f"RGB:{rgb.width}x{rgb.height}:".encode())
    h.update(rgb.tobytes())
    return h.hexdigest()


# ------------------------------------------------------------------------------------------ source kinds


def _open_string(source: str, *, max_pixels: int, max_bytes: int, timeout: float, allow_urls: bool,
                 allow_private_urls: bool = True) -> Image.Image:
    """Dispatch a string: data URL, http(s) URL, file URL, existing path, then base64 as the last resort."""
    head = source[:16].lower()
    if head.startswith("data:"):
        return _open_data_url(source, max_pixels=max_pixels, max_bytes=max_bytes)
    if head.startswith(("http://", "https://")):
        if not allow_urls:
            raise ImageError(f"{_describe_url(source)}: URLs are disabled here (allow_urls=False); "
                             "download the image and pass a local path")
        return _open_url(source, max_pixels=max_pixels, max_bytes=max_bytes, timeout=timeout,
                         allow_private=allow_private_urls)
    if head.startswith("file://"):
        return _open_path(Path(urllib.request.url2pathname(urllib.parse.urlparse(source).path)),
                          max_pixels=max_pixels, max_bytes=max_bytes)
    if re.match(r"^[a-z][a-z0-9+.-]*://", head):
        raise ImageError(f"{_describe_url(source)}: unsupported URL scheme (use http, https, file or data)")
    path = Path(source).expanduser()
    if os.path.exists(path):  # False (no exception) for names too long to be paths, e.g. base64 payloads
        return _open_path(path, max_pixels=max_pixels, max_bytes=max_bytes)
    if len(source) >= 16 and _BASE64_RE.match(source):
        return _open_base64(source, max_pixels=max_pixels, max_bytes=max_bytes)
    raise ImageError(f"{_shorten(source)}: no such file (and not a URL, data URL or base64 image)")


def _open_path(path: Path, *, max_pixels: int, max_bytes: int) -> Image.Image:
    name = str(path)
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise ImageError(f"{name}: no such file") from None
    except OSError as e:
        raise ImageError(f"{name}: cannot read ({e.strerror or e})") from e
    if path.is_dir():
        raise ImageError(f"{name}: is a directory, not an image file")
    _check_byte_count(size, name, max_bytes)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise ImageError(f"{name}: cannot read ({e.strerror or e})") from e
    return _decode(data, name, max_pixels=max_pixels, max_bytes=max_bytes)


def _open_base64(text: str, *, max_pixels: int, max_bytes: int, name: str | None = None) -> Image.Image:
    name = name or f"<base64 {_shorten(text, 24)}>"
    compact = "".join(text.split())
    # 4 base64 chars encode 3 bytes: refuse oversize payloads before decoding them.
    _check_byte_count(len(compact) * 3 // 4, name, max_bytes)
    try:
        if "-" in compact or "_" in compact:
            data = base64.urlsafe_b64decode(compact + "=" * (-len(compact) % 4))
        else:
            data = base64.b64decode(compact + "=" * (-len(compact) % 4), validate=True)
    except (binascii.Error, ValueError) as e:
        raise ImageError(f"{name}: invalid base64 ({e})") from e
    return _decode(data, name, max_pixels=max_pixels, max_bytes=max_bytes)


def _open_data_url(url: str, *, max_pixels: int, max_bytes: int) -> Image.Image:
    name = f"<data URL {_shorten(url, 40)}>"
    m = _DATA_URL_RE.match(url)
    if m is None:
        raise ImageError(f"{name}: malformed data URL (expected data:image/<type>;base64,<data>)")
    mime = (m.group("mime") or "text/plain").lower()
    if not mime.startswith("image/"):
        raise ImageError(f"{name}: media type {mime!r} is not an image")
    payload = url[m.end():]
    if m.group("b64"):
        return _open_base64(payload, max_pixels=max_pixels, max_bytes=max_bytes, name=name)
    data = urllib.parse.unquote_to_bytes(payload)  # RFC 2397 allows percent-encoded raw bytes
    return _decode(data, name, max_pixels=max_pixels, max_bytes=max_bytes)


def _open_url(url: str, *, max_pixels: int, max_bytes: int, timeout: float, allow_private: bool = True
              ) -> Image.Image:
    """Fetch under one wall-clock deadline (DNS, redirects and body included; only http(s) redirects), an
    ``image/*`` content type and the byte cap (see :mod:`core_model.fetch`)."""
    from .fetch import FetchError, FetchRefused, FetchTimeout, fetch

    name = _describe_url(url)
    try:
        got = fetch(url, timeout=timeout, max_bytes=max_bytes, content_type_prefix="image/",
                    headers={"User-Agent": "llama-adapter-v2/0.1 (+core_model.images)", "Accept": "image/*"},
                    allow_private=allow_private)
    except FetchRefused as e:
        raise ImageError(f"{name}: {e}") from e
    except FetchTimeout as e:
        raise ImageError(f"{name}: download did not finish within {timeout:g}s ({e})") from e
    except FetchError as e:
        raise ImageError(f"{name}: {e}; if this machine is offline, download the image elsewhere and pass a local "
                         "path") from e
    return _decode(got.data, name, max_pixels=max_pixels, max_bytes=max_bytes)


def _from_array(arr: np.ndarray) -> Image.Image:
    """HW / HWC arrays, uint8 as is, floats must be in [0, 1] (the usual convention of image libraries)."""
    name = f"<ndarray shape={tuple(arr.shape)} dtype={arr.dtype}>"
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if not (arr.ndim == 2 or (arr.ndim == 3 and arr.shape[2] in (3, 4))):
        raise ImageError(f"{name}: expected an HW or HWC array with 1, 3 or 4 channels (channels last)")
    if arr.size == 0:
        raise ImageError(f"{name}: empty array")
    if arr.dtype == np.uint8:
        pass
    elif np.issubdtype(arr.dtype, np.floating):
        if not np.isfinite(arr).all() or arr.min() < 0.0 or arr.max() > 1.0:
            raise ImageError(f"{name}: float arrays must hold values in [0, 1]")
        arr = np.round(arr * 255.0).astype(np.uint8)
    else:
        raise ImageError(f"{name}: unsupported dtype (use uint8, or float in [0, 1])")
    mode = "L" if arr.ndim == 2 else ("RGB" if arr.shape[2] == 3 else "RGBA")
    return Image.fromarray(np.ascontiguousarray(arr), mode=mode)


# ----------------------------------------------------------------------------------------- decode & fix


def _decode(data: bytes, name: str, *, max_pixels: int, max_bytes: int) -> Image.Image:
    """Header first (size check, no pixel allocation), then decode, then orientation and RGB conversion."""
    if not data:
        raise ImageError(f"{name}: empty input (0 bytes)")
    _check_byte_count(len(data), name, max_bytes)
    img = _open_header(data, name)
    _check_pixel_count(img.size, name, max_pixels)
    _load(img, name)
    return _finish(img, name, max_pixels)


def _load(img: Image.Image, name: str) -> None:
    """Decode the pixels, turning PIL's many failure types into one ImageError that names the input."""
    try:
        img.load()
    except Image.DecompressionBombError as e:
        raise ImageError(f"{name}: refused as a decompression bomb ({e})") from e
    except (OSError, SyntaxError, ValueError, EOFError) as e:  # truncated / corrupt streams
        raise ImageError(f"{name}: corrupt or truncated image data ({e})") from e


def _open_header(data: bytes, name: str) -> Image.Image:
    """``Image.open`` parses only the header; PIL's own bomb warning becomes an error here."""
    with _WARNINGS_LOCK, warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            return Image.open(io.BytesIO(data))
        except UnidentifiedImageError:
            raise ImageError(f"{name}: not a recognised image format") from None
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
            raise ImageError(f"{name}: refused as a decompression bomb ({e})") from None
        except (OSError, SyntaxError, ValueError, EOFError) as e:
            raise ImageError(f"{name}: corrupt image header ({e})") from e


def _finish(img: Image.Image, name: str, max_pixels: int) -> Image.Image:
    """Apply EXIF orientation and convert to RGB; the result never aliases the caller's image."""
    _check_pixel_count(img.size, name, max_pixels)
    try:
        oriented = ImageOps.exif_transpose(img)
    except Exception as e:  # malformed EXIF must not make an otherwise fine picture unusable
        log.warning("%s: ignoring unreadable EXIF orientation (%s)", name, e)
        oriented = img
    rgb = _to_rgb(oriented if oriented is not None else img, name)
    return rgb.copy() if rgb is img else rgb


def _to_rgb(img: Image.Image, name: str) -> Image.Image:
    """Convert every PIL mode we may meet to RGB, compositing transparency on white."""
    mode = img.mode
    if mode == "RGB":
        return img
    if mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in img.info:
        rgba = img.convert("RGBA")
        background = Image.new("RGB", rgba.size, BACKGROUND_RGB)
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    if mode.startswith("I;16") or mode in ("I", "F"):
        return _high_depth_to_rgb(img)
    try:
        return img.convert("RGB")  # P, L, 1, CMYK (Adobe inversion handled by PIL's JPEG plugin), YCbCr, ...
    except (ValueError, OSError) as e:
        raise ImageError(f"{name}: cannot convert image mode {mode!r} to RGB ({e})") from e


def _high_depth_to_rgb(img: Image.Image) -> Image.Image:
    """16-bit / int / float grey to 8-bit: PIL's own convert clips at 255 and would turn most pixels white."""
    arr = np.asarray(img).astype(np.float64)
    if img.mode == "F":
        scale = 255.0 if arr.size and arr.max() <= 1.0 else 1.0
    elif img.mode.startswith("I;16") or (arr.size and arr.max() > 255):
        scale = 255.0 / 65535.0
    else:
        scale = 1.0
    grey = np.clip(np.round(arr * scale), 0, 255).astype(np.uint8)
    return Image.fromarray(grey, mode="L").convert("RGB")


# ------------------------------------------------------------------------------------------- checks & names


def _check_pixel_count(size: tuple[int, int], name: str, max_pixels: int) -> None:
    width, height = size
    if width <= 0 or height <= 0:
        raise ImageError(f"{name}: image has no pixels ({width}x{height})")
    if width * height > max_pixels:
        raise ImageError(f"{name}: {width}x{height} = {width * height} pixels exceeds max_pixels={max_pixels} "
                         "(refused before decoding); downscale it or raise max_pixels")


def _check_byte_count(n: int, name: str, max_bytes: int) -> None:
    if n > max_bytes:
        raise ImageError(f"{name}: {n} bytes exceeds max_bytes={max_bytes}; raise max_bytes if this image is "
                         "expected")


def _shorten(text: str, keep: int = 80) -> str:
    """Long strings (base64 payloads) would flood logs and error messages."""
    return text if len(text) <= keep else f"{text[:keep]}... ({len(text)} chars)"


def _describe_url(url: str) -> str:
    """The URL without query or fragment: signed URLs carry credentials there."""
    parts = urllib.parse.urlsplit(url)
    bare = urllib.parse.urlunsplit((parts.scheme, parts.netloc.rsplit("@", 1)[-1], parts.path, "", ""))
    return _shorten(bare + ("?..." if parts.query else ""), 200)


def _describe_pil(img: Image.Image) -> str:
    filename = getattr(img, "filename", "") or ""
    return filename or f"<PIL.Image mode={img.mode} size={img.width}x{img.height}>"

