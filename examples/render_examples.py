"""Render the example images the repo ships: the demo receipt and the visual-QA evaluation set.

    python examples/render_examples.py            # rewrites examples/receipt.png and examples/eval/

The PNGs and ``examples/eval/questions.jsonl`` are committed, so the demo and the eval never depend on the fonts
of the machine they run on; this script only documents (and reproduces) how they were made. Fonts, in order:
DejaVu from matplotlib (a pip dependency of the experts extra), DejaVu from the system, then Pillow's built-in
scalable font (Pillow >= 10.1).

The eval set (``questions.jsonl``: ``id``, ``image``, ``question``, ``answers``, ``kind``) has questions whose answer
is printed in the image (receipts, signs, forms: OCR helps) and two counting questions on photos that ship inside
ultralytics (``bus.jpg``: 4 people, ``zidane.jpg``: 2; detection helps). Photo paths are written as
``ultralytics:assets/bus.jpg`` and resolved at run time, so no third-party photo is copied into the repo.
"""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

HERE = Path(__file__).resolve().parent
EVAL_DIR = HERE / "eval"

# The demo: question "What is the total on this receipt?" -> 18.55
DEMO_RECEIPT = {
    "shop": "MAPLE CORNER MARKET",
    "address": "12 Harbour Street",
    "date": "2024-05-17 10:42",
    "items": [("Coffee beans", "12.50"), ("Oat milk", "3.25"), ("Croissant", "2.80")],
    "total": "18.55",
}

EVAL_RECEIPTS = [
    {"shop": "SUNRISE BAKERY", "address": "4 Mill Lane", "date": "2024-03-02 08:15",
     "items": [("Sourdough loaf", "4.20"), ("Cinnamon roll", "2.75"), ("Tea", "1.90")], "total": "8.85"},
    {"shop": "GREEN LEAF GROCERY", "address": "88 Elm Road", "date": "2024-06-21 17:03",
     "items": [("Apples 1kg", "3.40"), ("Rice 2kg", "5.99"), ("Olive oil", "7.45")], "total": "16.84"},
    {"shop": "CITY HARDWARE", "address": "230 Main Street", "date": "2024-01-09 12:30",
     "items": [("Hammer", "14.99"), ("Nails 200", "3.49"), ("Tape", "2.10")], "total": "20.58"},
]

SIGNS = [
    # (file, lines, question, answers)
    ("sign_platform.png", ["PLATFORM 7", "Trains to Oxford"], "Which platform number is on the sign?", ["7"]),
    ("sign_exit.png", ["EMERGENCY EXIT", "Keep clear"], "What does the sign say?", ["exit"]),
    ("sign_speed.png", ["SPEED LIMIT", "30"], "What is the speed limit on this sign?", ["30"]),
    ("sign_open.png", ["OPEN DAILY", "9 AM - 6 PM"], "At what time does it open?", ["9"]),
]

FORMS = [
    ("form_name.png", [("Name", "Alice Moreau"), ("Date of birth", "1990-04-12"), ("City", "Lyon")],
     "What is the name written on the form?", ["alice"]),
    ("form_city.png", [("Name", "Tom Baker"), ("Member ID", "58213"), ("City", "Dublin")],
     "Which city is written on the form?", ["dublin"]),
]

PHOTOS = [
    ("bus", "ultralytics:assets/bus.jpg", "How many people are in this picture?", ["4", "four"]),
    ("zidane", "ultralytics:assets/zidane.jpg", "How many people are in this picture?", ["2", "two"]),
]


# --------------------------------------------------------------------------------------------- fonts
def _font_candidates(mono: bool, bold: bool) -> list[Path]:
    name = "DejaVuSans" + ("Mono" if mono else "") + ("-Bold" if bold else "") + ".ttf"
    found = []
    spec = importlib.util.find_spec("matplotlib")
    if spec is not None and spec.submodule_search_locations:
        found.append(Path(next(iter(spec.submodule_search_locations))) / "mpl-data" / "fonts" / "ttf" / name)
    found.append(Path("/usr/share/fonts/truetype/dejavu") / name)
    return found


def font(size: int, *, mono: bool = False, bold: bool = False) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    for path in _font_candidates(mono, bold):
        if path.is_file():
            return ImageFont.truetype(str(path), size)
    return ImageFont.load_default(size=size)  # scalable built-in font in Pillow >= 10.1


# --------------------------------------------------------------------------------------------- drawing
def render_receipt(receipt: dict, path: Path) -> None:
    """A till receipt: shop, address, date, three items with prices right-aligned, a bold TOTAL."""
    width, margin, line = 520, 36, 38
    rows = 6 + len(receipt["items"]) + 3
    img = Image.new("RGB", (width, margin * 2 + rows * line), "white")
    draw = ImageDraw.Draw(img)
    body, head = font(24, mono=True), font(28, mono=True, bold=True)
    y = margin

    def centred(text: str, f) -> None:
        nonlocal y
        w = draw.textlength(text, font=f)
        draw.text(((width - w) / 2, y), text, fill="black", font=f)
        y += line

    def row(left: str, right: str, f) -> None:
        nonlocal y
        draw.text((margin, y), left, fill="black", font=f)
        draw.text((width - margin - draw.textlength(right, font=f), y), right, fill="black", font=f)
        y += line

    centred(receipt["shop"], head)
    centred(receipt["address"], body)
    centred(receipt["date"], body)
    y += line // 2
    for item, price in receipt["items"]:
        row(item, price, body)
    y += line // 4
    draw.line((margin, y, width - margin, y), fill="black", width=2)
    y += line // 2
    row("TOTAL", receipt["total"], head)
    y += line // 2
    centred("THANK YOU!", body)
    img.save(path, optimize=True)


def render_sign(lines: list[str], path: Path) -> None:
    """A sign: big bold first line, smaller second line, on a coloured plate with a border."""
    width, height, margin = 640, 300, 60
    img = Image.new("RGB", (width, height), (24, 92, 60))
    draw = ImageDraw.Draw(img)
    draw.rectangle((14, 14, width - 15, height - 15), outline="white", width=6)
    y = 70
    for text, (size, bold) in zip(lines, [(64, True), (40, False)], strict=False):
        f = font(size, bold=bold)
        while draw.textlength(text, font=f) > width - 2 * margin and size > 12:  # shrink to fit the plate
            size -= 2
            f = font(size, bold=bold)
        draw.text(((width - draw.textlength(text, font=f)) / 2, y), text, fill="white", font=f)
        y += 100
    img.save(path, optimize=True)


def render_form(fields: list[tuple[str, str]], path: Path) -> None:
    """A filled-in form: a title and label / value rows with underlines."""
    img = Image.new("RGB", (700, 120 + 70 * len(fields)), "white")
    draw = ImageDraw.Draw(img)
    draw.text((40, 30), "REGISTRATION FORM", fill="black", font=font(34, bold=True))
    y = 110
    for label, value in fields:
        draw.text((40, y), f"{label}:", fill="black", font=font(26))
        draw.text((300, y), value, fill=(10, 10, 120), font=font(28))
        draw.line((300, y + 38, 660, y + 38), fill=(120, 120, 120), width=1)
        y += 70
    img.save(path, optimize=True)


# --------------------------------------------------------------------------------------------- the set
def build_eval_set() -> list[dict]:
    images = EVAL_DIR / "images"
    images.mkdir(parents=True, exist_ok=True)
    rows: list[dict] = [{"id": "demo-total", "image": "../receipt.png", "kind": "receipt",
                         "question": "What is the total on this receipt?", "answers": [DEMO_RECEIPT["total"]]}]
    for i, receipt in enumerate(EVAL_RECEIPTS, 1):
        name = f"receipt_{i}.png"
        render_receipt(receipt, images / name)
        rows.append({"id": f"receipt-{i}-total", "image": f"images/{name}", "kind": "receipt",
                     "question": "What is the total on this receipt?", "answers": [receipt["total"]]})
        rows.append({"id": f"receipt-{i}-shop", "image": f"images/{name}", "kind": "receipt",
                     "question": "What is the name of the shop?", "answers": [receipt["shop"].split()[0].lower()]})
        item, price = receipt["items"][1]
        rows.append({"id": f"receipt-{i}-item", "image": f"images/{name}", "kind": "receipt",
                     "question": f"How much did the {item.lower()} cost?", "answers": [price]})
    for name, lines, question, answers in SIGNS:
        render_sign(lines, images / name)
        rows.append({"id": name.removesuffix(".png").replace("_", "-"), "image": f"images/{name}", "kind": "sign",
                     "question": question, "answers": answers})
    for name, fields, question, answers in FORMS:
        render_form(fields, images / name)
        rows.append({"id": name.removesuffix(".png").replace("_", "-"), "image": f"images/{name}", "kind": "form",
                     "question": question, "answers": answers})
    for key, image, question, answers in PHOTOS:
        rows.append({"id": f"count-{key}", "image": image, "kind": "count", "question": question,
                     "answers": answers})
    with open(EVAL_DIR / "questions.jsonl", "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")
    return rows


def main() -> None:
    render_receipt(DEMO_RECEIPT, HERE / "receipt.png")
    rows = build_eval_set()
    print(f"wrote {HERE / 'receipt.png'} and {len(rows)} eval questions in {EVAL_DIR}")


if __name__ == "__main__":
    main()
