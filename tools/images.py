"""A small image opener for experts: path / file URL / data-URL / http(s) URL / bytes / PIL / array → RGB PIL.

Deliberately minimal (tools never import core_model, which has the project-wide opener). It refuses images above a
pixel cap *before* decoding them (decompression bombs), applies the EXIF orientation, and flattens transparency on
white so text on transparent PNGs stays readable for OCR. Pillow is imported lazily.
"""
from __future__ import annotations

import base64
import binascii
import io
import os
import urllib.parse
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING, Any, Union

from .base import ExpertInputError

if TYPE_CHECKING:
    from PIL import Image

ImageInput = Union[str, os.PathLike, bytes, bytearray, "Image.Image", Any]

DEFAULT_MAX_PIXELS = 50_000_000
DEFAULT_MAX_BYTES = 50 * 1024 * 1024
URL_TIMEOUT_S = 10.0

__all__ = ["DEFAULT_MAX_PIXELS", "ImageInput", "describe_image_input", "open_image"]


def describe_image_input(src: object) -> str:
    """A short, log-safe name for an image input (never dumps a whole data-URL)."""
    if isinstance(src, (bytes, bytearray)):
        return f"<{len(src)} bytes>"
    if isinstance(src, str):
        return src[:40] + "…" if src.startswith("data:") or len(src) > 120 else src
    if isinstance(src, os.PathLike):
        return os.fspath(src)
    return f"<{type(src).__name__}>"


def open_image(
    src: ImageInput,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    allow_urls: bool = True,
    timeout: float = URL_TIMEOUT_S,
    max_bytes: int = DEFAULT_MAX_BYTES,
    allow_private_urls: bool = True,
) -> Image.Image:
    """Open ``src`` as an RGB ``PIL.Image``; raise :class:`ExpertInputError` naming the input when impossible.
    ``allow_private_urls=False``: an http(s) URL may lead to public internet addresses only (:mod:`tools.fetch`)."""
    from PIL import Image

    if isinstance(src, Image.Image):
        return _to_rgb(_check_size(src, max_pixels, src), Image)
    if _is_array(src):
        return _check_size(_from_array(src, Image), max_pixels, src)
    if isinstance(src, (bytes, bytearray)):
        return _decode(bytes(src), src, max_pixels, Image)
    if isinstance(src, os.PathLike):
        src = os.fspath(src)
    if not isinstance(src, str):
        raise ExpertInputError(
            f"cannot open image of type {type(src).__name__}: pass a path, URL, data-URL, bytes or PIL image"
        )
    text = src.strip()
    if text.startswith("data:"):
        return _decode(_data_url_bytes(text), src, max_pixels, Image)
    scheme = urllib.parse.urlsplit(text).scheme.lower()
    if scheme in ("http", "https"):
        if not allow_urls:
            raise ExpertInputError(f"image URL {describe_image_input(src)!r} refused: URLs are disabled here")
        return _decode(_download(text, timeout, max_bytes, allow_private_urls), src, max_pixels, Image)
    if scheme == "file":
        text = urllib.request.url2pathname(urllib.parse.urlsplit(text).path)
    path = Path(text).expanduser()
    if not path.is_file():
        raise ExpertInputError(f"image file not found: {describe_image_input(src)!r}")
    size = path.stat().st_size
    if size > max_bytes:
        raise ExpertInputError(f"image file {str(path)!r} is {size} bytes, above the {max_bytes}-byte cap")
    return _decode(path.read_bytes(), src, max_pixels, Image)


# --------------------------------------------------------------------------------------------- helpers
def _check_size(img: Image.Image, max_pixels: int, src: object) -> Image.Image:
    width, height = img.size
    if width * height > max_pixels:
        raise ExpertInputError(
            f"image {describe_image_input(src)!r} is {width}x{height} = {width * height} pixels, above the cap of "
            f"{max_pixels}: downscale it or raise max_pixels"
        )
    if width == 0 or height == 0:
        raise ExpertInputError(f"image {describe_image_input(src)!r} is empty ({width}x{height})")
    return img


def _decode(data: bytes, src: object, max_pixels: int, Image: Any) -> Image.Image:
    from PIL import ImageOps, UnidentifiedImageError

    try:
        img = Image.open(io.BytesIO(data))  # lazy: reads the header only, so the size check precedes decoding
        _check_size(img, max_pixels, src)
        img.load()
    except ExpertInputError:
        raise
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as exc:
        raise ExpertInputError(f"cannot decode image {describe_image_input(src)!r}: {exc}") from exc
    except Exception as exc:  # noqa: BLE001 - Image.open may be patched by other libraries (ultralytics: HEIF)
        raise ExpertInputError(
            f"cannot decode image {describe_image_input(src)!r}: {type(exc).__name__}: {exc}"
        ) from exc
    img = ImageOps.exif_transpose(img)
    return _to_rgb(img, Image)


def _to_rgb(img: Image.Image, Image: Any) -> Image.Image:
    if img.mode == "RGB":
        return img
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return img.convert("RGB")


def _is_array(obj: object) -> bool:
    return hasattr(obj, "__array_interface__") and not isinstance(obj, (bytes, bytearray, str))


def _from_array(arr: Any, Image: Any) -> Image.Image:
    import numpy as np

    a = np.asarray(arr)
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[:, :, 0]
    if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[2] not in (3, 4)):
        raise ExpertInputError(f"image array has shape {a.shape}: expected HxW, HxWx3 (RGB) or HxWx4 (RGBA)")
    if a.dtype != np.uint8:
        if np.issubdtype(a.dtype, np.floating) and a.size and float(np.nanmax(a)) <= 1.0:
            a = a * 255.0
        a = np.clip(np.nan_to_num(a), 0, 255).astype(np.uint8)
    return _to_rgb(Image.fromarray(np.ascontiguousarray(a)), Image)


def _data_url_bytes(url: str) -> bytes:
    header, sep, payload = url.partition(",")
    if not sep:
        raise ExpertInputError("malformed data-URL: no ',' between header and payload")
    try:
        if header.endswith(";base64"):
            return base64.b64decode(payload, validate=False)
        return urllib.parse.unquote_to_bytes(payload)
    except (binascii.Error, ValueError) as exc:
        raise ExpertInputError(f"malformed data-URL payload: {exc}") from exc


def _download(url: str, timeout: float, max_bytes: int, allow_private: bool = True) -> bytes:
    """One wall-clock deadline for the whole download (DNS and redirects included; see :mod:`tools.fetch`)."""
    from .fetch import FetchError, FetchRefused, FetchTimeout, fetch

    name = describe_image_input(urllib.parse.urlunsplit(urllib.parse.urlsplit(url)._replace(query="", fragment="")))
    try:
        return fetch(url, timeout=timeout, max_bytes=max_bytes, headers={"User-Agent": "lav2-tools/0.1"},
                     allow_private=allow_private).data
    except FetchRefused as exc:
        raise ExpertInputError(f"image URL {name!r}: {exc}") from exc
    except FetchTimeout as exc:
        raise ExpertInputError(f"image URL {name!r}: download did not finish within {timeout:g}s") from exc
    except FetchError as exc:
        raise ExpertInputError(f"cannot download image {name!r} (offline?): {exc}") from exc
