"""core_model.images: every way an image can be bad, and every input form, on tiny generated files.

No external network: URL tests use a loopback http.server on 127.0.0.1.
"""
from __future__ import annotations

import base64
import http.server
import io
import socket
import struct
import threading
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFile

from core_model.errors import ImageError
from core_model.images import image_digest, load_images, open_image

RED, GREEN, BLUE, WHITE = (255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 255)


def _png_bytes(img: Image.Image, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG", **kw)
    return buf.getvalue()


def _noise(w: int = 64, h: int = 48, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8), "RGB")


def _close(a, b, tol: int = 3) -> bool:
    return all(abs(int(x) - int(y)) <= tol for x, y in zip(a, b))


# ------------------------------------------------------------------------------------------- bad files


def test_truncated_png_raises_and_names_the_path(tmp_path: Path):
    path = tmp_path / "cut.png"
    data = _png_bytes(_noise())
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageError, match="cut.png"):
        open_image(path)


def test_zero_byte_file_raises(tmp_path: Path):
    path = tmp_path / "empty.png"
    path.write_bytes(b"")
    with pytest.raises(ImageError, match=r"empty\.png.*empty input \(0 bytes\)"):
        open_image(str(path))


def test_text_file_named_jpg_raises(tmp_path: Path):
    path = tmp_path / "notes.jpg"
    path.write_text("this is not a JPEG\n" * 10)
    with pytest.raises(ImageError, match=r"notes\.jpg.*not a recognised image format"):
        open_image(path)


def _png_with_header_size(width: int, height: int) -> bytes:
    """A real 8x8 PNG whose IHDR claims ``width`` x ``height`` (CRC fixed, so PIL trusts the header)."""
    data = bytearray(_png_bytes(Image.new("RGB", (8, 8), RED)))
    assert data[12:16] == b"IHDR"
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])) & 0xFFFFFFFF)
    return bytes(data)


def test_huge_png_header_refused_before_any_decoding(tmp_path: Path, monkeypatch):
    path = tmp_path / "bomb.png"
    path.write_bytes(_png_with_header_size(20000, 20000))
    assert path.stat().st_size < 200  # the file is tiny; only its header is huge
    # Switch PIL's own guard off so the test proves OUR header check fires, and spy on decoding.
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", None)
    loads: list[str] = []
    real_load = ImageFile.ImageFile.load
    monkeypatch.setattr(ImageFile.ImageFile, "load", lambda self: loads.append("load") or real_load(self))
    with pytest.raises(ImageError, match=r"bomb\.png.*20000x20000.*exceeds max_pixels"):
        open_image(path)
    assert loads == []  # refused from the header alone: no 1.2 GB pixel buffer was ever requested


def test_huge_png_header_with_pil_guard_still_image_error():
    """With PIL's default limit its DecompressionBombError fires first; it must surface as ImageError."""
    with pytest.raises(ImageError, match=r"<bytes len=\d+>.*(decompression bomb|exceeds max_pixels)"):
        open_image(_png_with_header_size(20000, 20000))


def test_max_pixels_is_ours_not_pils():
    with pytest.raises(ImageError, match="exceeds max_pixels=100"):
        open_image(_png_bytes(_noise(20, 20)), max_pixels=100)


def test_max_bytes_applies_to_files(tmp_path: Path):
    path = tmp_path / "noise.png"
    path.write_bytes(_png_bytes(_noise()))
    with pytest.raises(ImageError, match="exceeds max_bytes=100"):
        open_image(path, max_bytes=100)


def test_missing_file_and_directory(tmp_path: Path):
    with pytest.raises(ImageError, match="nope.png: no such file"):
        open_image(str(tmp_path / "nope.png"))
    with pytest.raises(ImageError, match="is a directory"):
        open_image(tmp_path)


def test_lazily_opened_truncated_pil_image_raises(tmp_path: Path):
    path = tmp_path / "cut.png"
    data = _png_bytes(_noise())
    path.write_bytes(data[: len(data) // 2])
    with Image.open(path) as lazy:  # header fine, pixels missing
        with pytest.raises(ImageError, match="cut.png"):
            open_image(lazy)


# ------------------------------------------------------------------------------------------- pixel modes


def test_palette_with_alpha_composited_on_white():
    pal = Image.new("P", (3, 1))
    pal.putpalette([255, 0, 0, 0, 0, 255, 0, 255, 0] + [0] * (256 * 3 - 9))
    pal.putdata([0, 1, 2])
    # index 0 fully transparent, index 1 opaque, index 2 half transparent (tRNS per-index alpha)
    data = _png_bytes(pal, transparency=bytes([0, 255, 128]))
    assert Image.open(io.BytesIO(data)).mode == "P"
    out = open_image(data)
    assert out.mode == "RGB"
    assert out.getpixel((0, 0)) == WHITE
    assert out.getpixel((1, 0)) == BLUE
    assert _close(out.getpixel((2, 0)), (127, 255, 127), tol=2)


def test_rgba_and_la_composited_on_white():
    rgba = Image.new("RGBA", (2, 1))
    rgba.putdata([(255, 0, 0, 0), (0, 0, 0, 255)])
    out = open_image(_png_bytes(rgba))
    assert out.getpixel((0, 0)) == WHITE and out.getpixel((1, 0)) == (0, 0, 0)
    la = Image.new("LA", (1, 1), (0, 0))
    assert open_image(la).getpixel((0, 0)) == WHITE


def test_cmyk_jpeg_becomes_rgb_with_right_colours(tmp_path: Path):
    path = tmp_path / "cmyk.jpg"
    img = Image.new("RGB", (32, 32), RED)
    img.paste(Image.new("RGB", (16, 32), BLUE), (16, 0))
    img.convert("CMYK").save(path, quality=95)
    assert Image.open(path).mode == "CMYK"
    out = open_image(path)
    assert out.mode == "RGB"
    assert _close(out.getpixel((4, 16)), RED, tol=30)
    assert _close(out.getpixel((28, 16)), BLUE, tol=30)


def test_exif_orientation_6_rotates(tmp_path: Path):
    """Orientation 6 = stored image must be rotated 90 degrees clockwise for display."""
    stored = Image.new("RGB", (40, 20), BLUE)
    stored.paste(Image.new("RGB", (10, 10), RED), (0, 0))  # red block at the stored top-left
    exif = Image.Exif()
    exif[0x0112] = 6
    path = tmp_path / "rotated.jpg"
    stored.save(path, exif=exif, quality=95)
    out = open_image(path)
    assert out.size == (20, 40)  # width and height swapped
    assert _close(out.getpixel((out.width - 3, 2)), RED, tol=40)  # top-left went to top-right
    assert _close(out.getpixel((2, 2)), BLUE, tol=40)
    assert _close(out.getpixel((2, out.height - 3)), BLUE, tol=40)


def test_sixteen_bit_grey_scaled_not_clipped():
    arr = np.array([[0, 32896, 65535]], dtype=np.uint16)
    data = _png_bytes(Image.fromarray(arr))
    assert Image.open(io.BytesIO(data)).mode.startswith("I")
    out = open_image(data)
    assert [out.getpixel((x, 0)) for x in range(3)] == [(0, 0, 0), (128, 128, 128), WHITE]


# ------------------------------------------------------------------------------------------- input forms


def test_bytes_base64_and_data_url_agree():
    img = _noise(16, 12, seed=3)
    raw = _png_bytes(img)
    b64 = base64.b64encode(raw).decode()
    from_bytes = open_image(raw)
    from_bytearray = open_image(bytearray(raw))
    from_b64 = open_image(b64)
    from_url = open_image(f"data:image/png;base64,{b64}")
    assert np.array_equal(np.asarray(from_bytes), np.asarray(img))
    for other in (from_bytearray, from_b64, from_url):
        assert image_digest(other) == image_digest(from_bytes)


def test_bad_base64_message_is_truncated():
    junk = "QUJD" * 5000 + "!"  # looks like base64 up to a bad tail; 20k chars must not flood the message
    with pytest.raises(ImageError) as err:
        open_image(junk)
    assert len(str(err.value)) < 300


def test_data_url_must_be_an_image():
    text = base64.b64encode(b"hello").decode()
    with pytest.raises(ImageError, match="not an image"):
        open_image(f"data:text/plain;base64,{text}")


def test_numpy_inputs():
    hwc = np.zeros((4, 6, 3), dtype=np.uint8)
    hwc[..., 0] = 255
    out = open_image(hwc)
    assert out.size == (6, 4) and out.getpixel((0, 0)) == RED
    grey = open_image(np.full((2, 2), 0.5, dtype=np.float32))
    assert grey.mode == "RGB" and grey.getpixel((1, 1)) == (128, 128, 128)
    rgba = np.zeros((1, 1, 4), dtype=np.uint8)  # fully transparent black -> white
    assert open_image(rgba).getpixel((0, 0)) == WHITE
    with pytest.raises(ImageError, match=r"\[0, 1\]"):
        open_image(np.full((2, 2, 3), 2.0))
    with pytest.raises(ImageError, match="dtype"):
        open_image(np.zeros((2, 2, 3), dtype=np.int64))
    with pytest.raises(ImageError, match="channels"):
        open_image(np.zeros((3, 2, 2), dtype=np.uint8))


def test_pil_input_is_copied_not_aliased():
    src = Image.new("RGB", (2, 2), RED)
    out = open_image(src)
    out.putpixel((0, 0), BLUE)
    assert src.getpixel((0, 0)) == RED


def test_digest_is_content_based(tmp_path: Path):
    a, b = _noise(seed=1), _noise(seed=2)
    path = tmp_path / "a.png"
    a.save(path)
    assert image_digest(open_image(path)) == image_digest(a)
    assert image_digest(a) != image_digest(b)
    assert image_digest(Image.new("RGB", (2, 3))) != image_digest(Image.new("RGB", (3, 2)))


def test_load_images_single_and_many(tmp_path: Path):
    path = tmp_path / "a.png"
    _noise().save(path)
    assert len(load_images(str(path))) == 1
    assert [im.size for im in load_images([path, _png_bytes(_noise(8, 8))])] == [(64, 48), (8, 8)]


def test_unsupported_type_and_scheme():
    with pytest.raises(ImageError, match="unsupported image input"):
        open_image(12345)  # type: ignore[arg-type]
    with pytest.raises(ImageError, match="unsupported URL scheme"):
        open_image("ftp://example.invalid/x.png")


# ------------------------------------------------------------------------------------------- http


class _Handler(http.server.BaseHTTPRequestHandler):
    png = _png_bytes(Image.new("RGB", (5, 4), GREEN))

    def do_GET(self):  # noqa: N802 - http.server API
        route = self.path.split("?")[0]
        if route == "/ok.png":
            self._send(200, "image/png", self.png)
        elif route == "/big.png":  # declares its (too large) size up front
            self._send(200, "image/png", b"\x89PNG" + b"\0" * 5000)
        elif route == "/stream.png":  # no Content-Length: the cap must be enforced while reading
            self.protocol_version = "HTTP/1.0"
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.end_headers()
            for _ in range(50):
                self.wfile.write(b"\0" * 1000)
        elif route == "/hop":  # a redirect to another http URL is still followed
            self.send_response(302)
            self.send_header("Location", "/ok.png")
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif route == "/page":
            self._send(200, "text/html; charset=utf-8", b"<html>not an image</html>")
        else:
            self._send(404, "text/plain", b"missing")

    def _send(self, code: int, ctype: str, body: bytes) -> None:
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):  # keep pytest output clean
        pass


@pytest.fixture()
def server(monkeypatch):
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_url_ok(server: str):
    out = open_image(f"{server}/ok.png")
    assert out.size == (5, 4) and out.getpixel((0, 0)) == GREEN


def test_url_http_redirect_is_followed(server: str):
    assert open_image(f"{server}/hop").size == (5, 4)


def test_url_oversize_declared_and_streamed(server: str):
    with pytest.raises(ImageError, match="exceeds max_bytes=1000"):
        open_image(f"{server}/big.png", max_bytes=1000)
    with pytest.raises(ImageError, match=r"stream\.png.*exceeds max_bytes=1000 \(stopped reading\)"):
        open_image(f"{server}/stream.png", max_bytes=1000)


def test_url_wrong_content_type_and_query_not_leaked(server: str):
    with pytest.raises(ImageError, match="Content-Type 'text/html'") as err:
        open_image(f"{server}/page?token=SECRET123")
    assert "SECRET123" not in str(err.value)


def test_url_http_error_and_disabled(server: str):
    with pytest.raises(ImageError, match="HTTP 404"):
        open_image(f"{server}/missing.png")
    with pytest.raises(ImageError, match="allow_urls=False"):
        open_image(f"{server}/ok.png", allow_urls=False)


def test_url_unreachable_fails_fast(monkeypatch):
    for var in ("http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there now: connection refused, like a dead host
    start = time.monotonic()
    with pytest.raises(ImageError, match="cannot fetch"):
        open_image(f"http://127.0.0.1:{port}/x.png", timeout=2.0)
    assert time.monotonic() - start < 2.0
