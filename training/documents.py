"""Rendered documents with question/answer pairs whose answers are printed on the image.

    from training.documents import SPLITS, render, write_eval_set
    doc = render("invoice", 7)          # Document: image (PIL), questions [(question, answers, field)], fields
    write_eval_set("/tmp/eval-test", split="test", per_kind=3)   # PNGs + questions.jsonl for `lav2 eval --data`

Fifteen kinds of documents (receipts, invoices, tickets, labels, cards, signs ...), each with several layouts
(label/value columns, right-aligned prices, dotted leaders, centred headings, two columns, tables), three font
families at several sizes, ink and paper colours, and on some seeds a slight rotation (at most 2 degrees), mild
noise or blur. Content (names, items, prices, dates, codes, addresses) comes from the word lists below, drawn by a
``random.Random`` seeded with ``(kind, seed)``: the same ``(kind, seed)`` gives the same image bytes and the same
questions on a given machine (the bytes depend on the fonts found, see :func:`font`).

**The split is by kind and fixed** (:data:`SPLITS`): ``dev`` kinds may be used to tune prompts, rules and to train
(:func:`train_documents`); ``test`` kinds are for measuring only; ``holdout`` kinds are looked at rarely, as the
last check that nothing was tuned to the test kinds. Never move a kind to make numbers look better.

**Seeds:** evaluation sets use seeds in :data:`EVAL_SEEDS` (0..999); training data uses seeds from
:data:`TRAIN_SEED_START` (10 000) up, and only dev kinds, so a trained reader never saw an evaluated document.

Every answer is printed on the image exactly as accepted (numbers as digits, names as the surname or the full
name), so a perfect OCR makes every question answerable; :func:`answer_in_text` is the same whole-word match as
``lav2 eval`` uses to score answers. Fonts, in order: DejaVu from matplotlib, DejaVu from the system, then Pillow's
built-in scalable font (Pillow >= 10.1), as in ``examples/render_examples.py``.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import importlib.util
import io
import json
import logging
import os
import random
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, NamedTuple

from PIL import Image, ImageDraw, ImageFilter, ImageFont

log = logging.getLogger(__name__)

__all__ = ["ALL_KINDS", "EVAL_SEEDS", "KINDS", "SPLITS", "TRAIN_SEED_START", "QA", "Document", "answer_in_text",
           "font", "kinds_of", "render", "source_digest", "train_documents", "write_eval_set"]

#: kinds of documents by split — FIXED: dev (tuning and training), test (measuring), holdout (the last check)
SPLITS: dict[str, tuple[str, ...]] = {
    "dev": ("receipt", "menu", "ticket", "product_label", "sign", "form", "book_cover", "utility_bill"),
    "test": ("invoice", "shipping_label", "business_card", "poster"),
    "holdout": ("prescription", "parking_ticket", "library_card"),
}
KINDS = SPLITS  # the name the API sketch of issue 13 uses
ALL_KINDS: tuple[str, ...] = tuple(k for kinds in SPLITS.values() for k in kinds)
#: seeds of evaluation sets; training data starts at TRAIN_SEED_START, so the two never overlap
EVAL_SEEDS = range(0, 1000)
TRAIN_SEED_START = 10_000


class QA(NamedTuple):
    """One question about a document: accepted answers (each printed on the image) and the field it asks for."""

    question: str
    answers: list[str]
    field: str


@dataclass
class Document:
    """A rendered document: ``image``, 2-4 ``questions``, the ``fields`` it was filled with, every string drawn
    (``text``, in drawing order), the ``layout`` used and the ``effects`` applied after drawing."""

    kind: str
    seed: int
    image: Image.Image
    questions: list[QA]
    fields: dict[str, str]
    text: list[str] = field(default_factory=list)
    layout: str = ""
    effects: tuple[str, ...] = ()  # e.g. ("rotate -1.32", "blur 0.61", "noise 6.0")

    def png_bytes(self) -> bytes:
        buf = io.BytesIO()
        self.image.save(buf, format="PNG", optimize=True)
        return buf.getvalue()


def kinds_of(split: str) -> tuple[str, ...]:
    """The kinds of ``split`` (``dev``, ``test``, ``holdout`` or ``all``)."""
    if split == "all":
        return ALL_KINDS
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}: use one of {', '.join([*SPLITS, 'all'])}")
    return SPLITS[split]


def answer_in_text(answers: Sequence[str], text: str) -> bool:
    """Any of ``answers`` occurs in ``text`` as a whole word or number, case-insensitively (``18.55`` is in
    "TOTAL $18.55" but not in "118.55" or "18.556") — the rule ``lav2 eval`` scores with."""
    low = text.lower()
    for answer in answers:
        a = re.escape(answer.lower().strip())
        if a and re.search(rf"(?<![\w.]){a}(?![\w]|\.\d)", low):
            return True
    return False


# ============================================================================================ word lists
FIRST = ["Alice", "Tom", "Maria", "James", "Sofia", "Daniel", "Hannah", "Omar", "Lucia", "Peter", "Grace", "Victor",
         "Elena", "Samuel", "Nadia", "Oscar", "Ruth", "Felix", "Ingrid", "Marcus", "Leila", "George", "Irene", "Hugo",
         "Clara", "Ivan", "Rosa", "Liam", "Yara", "Bruno", "Agnes", "Tobias"]
SURNAMES = ["Moreau", "Lindqvist", "Okafor", "Castillo", "Novak", "Fischer", "Tanaka", "Walsh", "Petrov", "Haddad",
            "Romano", "Kowalski", "Jensen", "Dubois", "Mendes", "Larsen", "Keller", "Osei", "Brennan", "Varga",
            "Nakamura", "Sullivan", "Ferreira", "Holm", "Quinn", "Whitfield", "Abara", "Delgado", "Horvath",
            "Eriksen", "Mbeki", "Costa"]
CITIES = ["Lyon", "Dublin", "Porto", "Oslo", "Leeds", "Ghent", "Bergen", "Turin", "Krakow", "Austin", "Denver",
          "Halifax", "Perth", "Seville", "Utrecht", "Galway", "Tampere", "Bilbao", "Graz", "Malmo", "Aarhus", "Cork",
          "Nantes", "Boise"]
STREETS = ["Mill Lane", "Elm Road", "Station Road", "Kings Avenue", "Church Street", "Bridge Road", "Queens Way",
           "Victoria Street", "High Street", "Abbey Road", "Canal Walk", "Castle Hill", "Tanner Row", "Dock Street"]
NAME_WORDS = ["Sunrise", "Maple", "Cedar", "Bluebell", "Copper", "Willow", "Falcon", "Silver", "Juniper", "Meadow",
              "Pinewood", "Aurora", "Bramble", "Lantern", "Kestrel", "Hazel", "Marigold", "Northwind", "Redwood",
              "Saffron", "Thistle", "Harvest", "Beacon", "Summit"]
SHOP_TYPES = {
    "grocery": (["Market", "Grocery", "Foods"],
                [("Coffee beans", 7, 15), ("Oat milk", 1.5, 4), ("Croissant", 1.2, 3.5), ("Sourdough loaf", 3, 6),
                 ("Apples 1kg", 2, 4.5), ("Rice 2kg", 3.5, 7), ("Olive oil", 5, 12), ("Butter", 2, 4),
                 ("Eggs x12", 3, 5.5), ("Cheddar", 3, 7), ("Tomatoes", 1.5, 4), ("Pasta", 0.9, 3),
                 ("Orange juice", 2.5, 5), ("Dark chocolate", 1.5, 4), ("Green tea", 2.5, 6), ("Honey", 4, 9),
                 ("Yoghurt", 0.9, 3), ("Bananas", 0.9, 2.5)]),
    "hardware": (["Hardware", "Tools", "DIY"],
                 [("Hammer", 9, 25), ("Nails 200", 2, 5), ("Duct tape", 2, 6), ("Screwdriver", 4, 12),
                  ("Paint brush", 3, 9), ("Sandpaper", 1.5, 5), ("Light bulb", 2, 8), ("Wood glue", 3, 8),
                  ("Tape measure", 5, 14), ("Padlock", 6, 18), ("Work gloves", 4, 12), ("Cable ties", 1.5, 5)]),
    "cafe": (["Cafe", "Coffee House", "Bakery"],
             [("Espresso", 1.8, 3.2), ("Cappuccino", 2.6, 4.2), ("Flat white", 2.8, 4.4), ("Latte", 2.8, 4.5),
              ("Cinnamon roll", 2.2, 3.8), ("Blueberry muffin", 2, 3.6), ("Bagel", 2.5, 5), ("Hot chocolate", 2.5, 4),
              ("Carrot cake", 3, 5), ("Iced tea", 2, 3.5), ("Scone", 1.8, 3.2), ("Toastie", 4, 7)]),
    "pharmacy": (["Pharmacy", "Chemist"],
                 [("Toothpaste", 2, 5), ("Sunscreen", 6, 15), ("Plasters", 2, 5), ("Shampoo", 3, 9),
                  ("Vitamin C", 4, 10), ("Hand cream", 3, 8), ("Cough syrup", 5, 11), ("Tissues", 1, 3),
                  ("Lip balm", 1.5, 4), ("Ibuprofen", 2, 5)]),
}
DISHES = {
    "Starters": [("Tomato soup", 4, 8), ("Garlic bread", 3, 6), ("Bruschetta", 5, 9), ("Calamari", 7, 11),
                 ("Spring rolls", 5, 8), ("Hummus plate", 5, 9)],
    "Mains": [("Margherita pizza", 9, 14), ("Fish and chips", 12, 17), ("Mushroom risotto", 11, 16),
              ("Beef burger", 11, 16), ("Chicken curry", 10, 15), ("Lasagne", 11, 15), ("Veggie tacos", 9, 13),
              ("Grilled salmon", 15, 22), ("Pad thai", 10, 14)],
    "Desserts": [("Apple pie", 4, 7), ("Tiramisu", 5, 8), ("Cheesecake", 5, 8), ("Chocolate mousse", 5, 8),
                 ("Ice cream", 3, 6)],
    "Drinks": [("Lemonade", 2, 4), ("Sparkling water", 1.5, 3), ("House wine", 5, 8), ("Iced coffee", 3, 5),
               ("Mango lassi", 3, 5)],
}
RESTAURANT_TYPES = ["Kitchen", "Bistro", "Trattoria", "Diner", "Grill", "Canteen"]
PRODUCTS = [("Organic Honey", "g", 250, 500), ("Peanut Butter", "g", 300, 500), ("Rolled Oats", "g", 500, 1000),
            ("Green Tea", "g", 50, 100), ("Strawberry Jam", "g", 300, 450), ("Olive Oil", "ml", 500, 1000),
            ("Tomato Passata", "g", 500, 700), ("Basmati Rice", "g", 500, 2000), ("Dark Roast Coffee", "g", 200, 500),
            ("Sea Salt", "g", 250, 500), ("Apple Juice", "ml", 750, 1000), ("Granola", "g", 350, 750)]
BOOK_ADJ = ["Silent", "Hidden", "Last", "Winter", "Broken", "Golden", "Distant", "Quiet", "Burning", "Forgotten",
            "Northern", "Painted", "Paper", "Salt", "Glass", "Midnight"]
BOOK_NOUN = ["Harbour", "Garden", "Orchard", "Lighthouse", "Archive", "Cartographer", "River", "Station", "Kingdom",
             "Letters", "Island", "Clockmaker", "Tide", "Atlas", "Forest", "Bridge"]
PUBLISHER_TYPES = ["Press", "Books", "Publishing", "House"]
UTILITY_TYPES = ["Energy", "Water", "Power", "Gas & Electric", "Broadband"]
COMPANY_TYPES = ["Consulting", "Design", "Logistics", "Studio", "Labs", "Analytics", "Supplies", "Partners"]
JOB_TITLES = ["Sales Manager", "Software Engineer", "Art Director", "Account Executive", "Project Manager",
              "Data Analyst", "Head of Marketing", "Operations Lead", "Architect", "Product Designer"]
SERVICES = [("Web design", 300, 1200), ("Consulting hours", 80, 150), ("Logo package", 200, 600),
            ("Printing", 40, 250), ("Hosting (annual)", 60, 240), ("Photography", 150, 700), ("Copywriting", 90, 400),
            ("Catering", 120, 900), ("Delivery", 15, 60), ("Office chairs", 90, 260), ("Training session", 150, 500),
            ("Translation", 60, 300)]
EVENTS = ["Jazz Night", "Spring Fair", "Book Swap", "Film Club", "Charity Run", "Craft Market", "Board Game Night",
          "Poetry Slam", "Salsa Class", "Vinyl Fair", "Quiz Night", "Open Studios", "Food Festival", "Choir Concert"]
VENUE_TYPES = ["Hall", "Theatre", "Arts Centre", "Community Centre", "Gallery", "Pavilion"]
DRUGS = [("Amoxicillin", [250, 500]), ("Ibuprofen", [200, 400]), ("Metformin", [500, 850]), ("Lisinopril", [10, 20]),
         ("Atorvastatin", [20, 40]), ("Omeprazole", [20, 40]), ("Sertraline", [50, 100]), ("Cetirizine", [10]),
         ("Prednisolone", [5, 25]), ("Azithromycin", [250, 500])]
VIOLATIONS = ["Expired meter", "No parking zone", "Loading bay", "Permit holders only", "Double parked",
              "Blocking driveway", "Bus lane"]
CAR_MAKES = ["Toyota", "Ford", "Volvo", "Renault", "Honda", "Skoda", "Mazda", "Fiat"]
CAR_COLOURS = ["Blue", "Red", "Silver", "Black", "White", "Green", "Grey"]
MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
          "November", "December"]
CURRENCIES = [("$", ""), ("", " EUR"), ("£", ""), ("€", ""), ("", "")]
_LETTERS = "ABCDEFGHJKLMNPRTUVWXYZ"  # no I, O, Q, S: codes stay readable (not confused with 1, 0, 5)


# ============================================================================================ fonts
def _font_candidates(family: str, bold: bool) -> list[Path]:
    base = {"sans": "DejaVuSans", "serif": "DejaVuSerif", "mono": "DejaVuSansMono"}[family]
    name = base + ("-Bold" if bold else "") + ".ttf"
    found = []
    spec = importlib.util.find_spec("matplotlib")
    if spec is not None and spec.submodule_search_locations:
        found.append(Path(next(iter(spec.submodule_search_locations))) / "mpl-data" / "fonts" / "ttf" / name)
    found.append(Path("/usr/share/fonts/truetype/dejavu") / name)
    return found


@lru_cache(maxsize=256)
def font(size: int, family: str = "sans", bold: bool = False) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    """DejaVu ``family`` (sans, serif, mono) at ``size`` px: matplotlib's copy, the system's, or Pillow's own."""
    for path in _font_candidates(family, bold):
        if path.is_file():
            return ImageFont.truetype(str(path), size)
    return ImageFont.load_default(size=size)  # scalable built-in font in Pillow >= 10.1


# ============================================================================================ random content
class _Gen:
    """Random content from the word lists, all drawn from one seeded ``random.Random``."""

    def __init__(self, rng: random.Random):
        self.r = rng
        self.currency = rng.choice(CURRENCIES)
        self.date_format = rng.randrange(4)
        self._used_money: set[str] = set()

    def person(self) -> tuple[str, str]:
        return self.r.choice(FIRST), self.r.choice(SURNAMES)

    def people(self, n: int) -> list[tuple[str, str]]:
        surnames = self.r.sample(SURNAMES, n)
        return [(self.r.choice(FIRST), s) for s in surnames]

    def word(self) -> str:
        return self.r.choice(NAME_WORDS)

    def money(self, lo: float, hi: float) -> str:
        """A price as '12.50', different from every other price of the document."""
        for _ in range(100):
            value = f"{self.r.uniform(lo, hi):.2f}"
            if value not in self._used_money:
                break
        self._used_money.add(value)
        return value

    def cash(self, value: str) -> str:
        pre, post = self.currency
        return f"{pre}{value}{post}"

    def date(self, start: dt.date | None = None, days: tuple[int, int] = (0, 1200)) -> tuple[dt.date, str]:
        start = start or dt.date(2023, 1, 1)
        d = start + dt.timedelta(days=self.r.randint(*days))
        return d, self.fmt_date(d)

    def fmt_date(self, d: dt.date) -> str:
        return [f"{d:%Y-%m-%d}", f"{d:%d/%m/%Y}", f"{MONTHS[d.month - 1]} {d.day}, {d.year}",
                f"{d.day} {MONTHS[d.month - 1][:3]} {d.year}"][self.date_format]

    def time(self, lo: int = 6, hi: int = 22, twelve: bool | None = None) -> str:
        h, m = self.r.randint(lo, hi), self.r.choice([0, 5, 10, 15, 20, 25, 30, 35, 40, 45, 50, 55])
        if twelve if twelve is not None else self.r.random() < 0.3:
            return f"{(h - 1) % 12 + 1}:{m:02d} {'AM' if h < 12 else 'PM'}"
        return f"{h:02d}:{m:02d}"

    def code(self, pattern: str) -> str:
        """'A' a letter, '9' a digit, '8' a digit 2-9, anything else itself."""
        out = []
        for c in pattern:
            out.append(self.r.choice(_LETTERS) if c == "A" else str(self.r.randint(0, 9)) if c == "9"
                       else str(self.r.randint(2, 9)) if c == "8" else c)
        return "".join(out)

    def address(self) -> tuple[str, str, str]:
        """(street line, city line, city)."""
        city = self.r.choice(CITIES)
        street = f"{self.r.randint(2, 240)} {self.r.choice(STREETS)}"
        return street, f"{city} {self.code('89999')}", city

    def phone(self) -> str:
        return self.r.choice([self.code("899-899-9999"), self.code("(899) 899-9999"), self.code("+44 899 899 9999")])


# ============================================================================================ layout engine
@dataclass
class Style:
    family: str = "sans"
    body: int = 24
    head: int = 32
    small: int = 18
    ink: tuple[int, int, int] = (20, 20, 20)
    accent: tuple[int, int, int] = (20, 20, 20)
    label_ink: tuple[int, int, int] = (90, 90, 90)
    paper: tuple[int, int, int] = (255, 255, 255)
    width: int = 620
    margin: int = 36
    head_align: str = "centre"  # centre | left
    kv: str = "columns"  # columns | inline | stacked | right
    items: str = "right"  # right | leader
    border: int = 0
    spacing: float = 1.45


# blocks: ("head", text, scale) ("text", text, opts) ("kv", label, value) ("item", name, price, bold)
#         ("rule",) ("gap", lines) ("cols", left blocks, right blocks) ("table", headers, rows, aligns, fractions)
#         ("bars",) a barcode-like strip


class _Canvas:
    def __init__(self, style: Style, rng: random.Random):
        self.s = style
        self.r = rng
        self.img = Image.new("RGB", (style.width, 4000), style.paper)
        self.draw = ImageDraw.Draw(self.img)
        self.text: list[str] = []

    def f(self, size: int, bold: bool = False, family: str | None = None):
        return font(size, family or self.s.family, bold)

    def put(self, x: float, y: float, text: str, fnt, fill) -> None:
        self.draw.text((x, y), text, fill=fill, font=fnt)
        self.text.append(text)

    def fit(self, text: str, size: int, bold: bool, width: float, family: str | None = None):
        """The font of ``size`` or smaller so that ``text`` fits ``width``."""
        fnt = self.f(size, bold, family)
        while self.draw.textlength(text, font=fnt) > width and size > 12:
            size -= 1
            fnt = self.f(size, bold, family)
        return fnt, size

    def blocks(self, blocks: Iterable[tuple], x0: float, x1: float, y: float) -> float:
        s = self.s
        line = lambda size: int(size * s.spacing)  # noqa: E731
        for b in blocks:
            kind = b[0]
            if kind == "head":
                text, scale = b[1], (b[2] if len(b) > 2 else 1.0)
                align = b[3] if len(b) > 3 else s.head_align
                fnt, size = self.fit(text, int(s.head * scale), True, x1 - x0)
                w = self.draw.textlength(text, font=fnt)
                x = (x0 + x1 - w) / 2 if align == "centre" else x1 - w if align == "right" else x0
                self.put(x, y, text, fnt, s.accent)
                y += line(size)
            elif kind == "text":
                text, opts = b[1], (b[2] if len(b) > 2 else {})
                size = {"body": s.body, "small": s.small, "big": int(s.body * 1.3)}[opts.get("size", "body")]
                fnt, size = self.fit(text, size, opts.get("bold", False), x1 - x0)
                w = self.draw.textlength(text, font=fnt)
                align = opts.get("align", "left")
                x = (x0 + x1 - w) / 2 if align == "centre" else x1 - w if align == "right" else x0
                self.put(x, y, text, fnt, s.label_ink if opts.get("muted") else s.ink)
                y += line(size)
            elif kind == "kv":
                y = self._kv(b[1], b[2], x0, x1, y, bold=len(b) > 3 and b[3])
            elif kind == "item":
                name, price, bold = b[1], b[2], len(b) > 3 and b[3]
                fnt = self.f(s.body, bold)
                pw = self.draw.textlength(price, font=fnt)
                nfnt, _ = self.fit(name, s.body, bold, x1 - x0 - pw - 24)
                self.put(x0, y, name, nfnt, s.ink)
                if s.items == "leader":
                    start = x0 + self.draw.textlength(name, font=nfnt) + 10
                    dots = "." * max(0, int((x1 - pw - 14 - start) / max(1, self.draw.textlength(".", font=fnt))))
                    if dots:
                        self.draw.text((start, y), dots, fill=s.label_ink, font=fnt)
                self.put(x1 - pw, y, price, fnt, s.ink)
                y += line(s.body)
            elif kind == "rule":
                y += s.body // 4
                self.draw.line((x0, y, x1, y), fill=s.ink, width=2)
                y += s.body // 2
            elif kind == "gap":
                y += int(s.body * (b[1] if len(b) > 1 else 0.6))
            elif kind == "cols":
                mid = (x0 + x1) / 2
                gap = 16
                y = max(self.blocks(b[1], x0, mid - gap, y), self.blocks(b[2], mid + gap, x1, y))
            elif kind == "table":
                y = self._table(b[1], b[2], b[3], b[4], x0, x1, y)
            elif kind == "bars":
                h = int(s.body * 1.8)
                x = x0
                while x < x0 + (x1 - x0) * 0.7:
                    w = self.r.choice([2, 2, 3, 4, 6])
                    self.draw.rectangle((x, y, x + w - 1, y + h), fill=s.ink)
                    x += w + self.r.choice([2, 3, 4, 5])
                y += h + s.body // 2
            else:  # pragma: no cover - a programming error in a kind's builder
                raise ValueError(f"unknown block {kind!r}")
        return y

    def _kv(self, label: str, value: str, x0: float, x1: float, y: float, *, bold: bool = False) -> float:
        s = self.s
        line = int(s.body * s.spacing)
        if s.kv == "inline":
            lf = self.f(s.body, False)
            lab = f"{label}: "
            lw = self.draw.textlength(lab, font=lf)
            vf, _ = self.fit(value, s.body, bold, x1 - x0 - lw)
            self.draw.text((x0, y), lab, fill=s.label_ink, font=lf)
            self.put(x0 + lw, y, value, vf, s.ink)
            self.text[-1] = lab + value
            return y + line
        if s.kv == "stacked":
            self.put(x0, y, label.upper(), self.f(s.small, False), s.label_ink)
            y += int(s.small * 1.25)
            vf, size = self.fit(value, s.body, bold, x1 - x0)
            self.put(x0, y, value, vf, s.ink)
            return y + int(size * s.spacing) + 4
        lf = self.f(s.body if s.kv == "right" else s.small + 2, False)
        self.put(x0, y + (0 if s.kv == "right" else 2), label + ("" if s.kv == "right" else ":"), lf, s.label_ink)
        if s.kv == "right":
            lw = self.draw.textlength(label, font=lf) + 24
            vf, _ = self.fit(value, s.body, bold, x1 - x0 - lw)
            self.put(x1 - self.draw.textlength(value, font=vf), y, value, vf, s.ink)
        else:  # columns: values start at a fixed column
            col = max(x0 + (x1 - x0) * 0.38, x0 + self.draw.textlength(label + ":", font=lf) + 14)
            vf, _ = self.fit(value, s.body, bold, x1 - col)
            self.put(col, y, value, vf, s.ink)
        return y + line

    def _table(self, headers: Sequence[str], rows: Sequence[Sequence[str]], aligns: str, fractions: Sequence[float],
               x0: float, x1: float, y: float) -> float:
        s = self.s
        line = int(s.body * s.spacing)
        edges = [x0]
        for fr in fractions:
            edges.append(edges[-1] + (x1 - x0) * fr)
        edges[-1] = x1

        def row(cells: Sequence[str], fnt, fill) -> None:
            for i, cell in enumerate(cells):
                a, b = edges[i] + (0 if i == 0 else 8), edges[i + 1] - 8
                cf, _ = self.fit(cell, fnt.size, False, b - a)
                w = self.draw.textlength(cell, font=cf)
                self.put(b - w if aligns[i] == "r" else a, y, cell, cf, fill)

        row(headers, self.f(s.small + 2, True), s.label_ink)
        y += int((s.small + 2) * s.spacing)
        self.draw.line((x0, y - 4, x1, y - 4), fill=s.label_ink, width=1)
        for cells in rows:
            row(cells, self.f(s.body), s.ink)
            y += line
        return y

    def finish(self, y: float) -> Image.Image:
        s = self.s
        h = int(y + s.margin)
        img = self.img.crop((0, 0, s.width, h))
        if s.border:
            ImageDraw.Draw(img).rectangle((6, 6, s.width - 7, h - 7), outline=s.accent, width=s.border)
        return img


def _style(r: random.Random, **over: Any) -> Style:
    """A random style; keyword arguments fix some of its fields."""
    family = r.choice(["sans", "sans", "serif", "mono"])
    body = r.choice([20, 22, 24, 26, 28])
    ink = r.choice([(20, 20, 20), (15, 15, 60), (40, 30, 20), (10, 50, 40)])
    paper = r.choice([(255, 255, 255), (255, 255, 255), (250, 246, 236), (242, 244, 247), (255, 251, 230)])
    st = Style(family=family, body=body, head=int(body * r.uniform(1.25, 1.6)), small=max(15, int(body * 0.75)),
               ink=ink, accent=r.choice([ink, (150, 20, 30), (20, 60, 140), (10, 90, 60)]),
               label_ink=r.choice([(90, 90, 90), (70, 70, 90), (100, 80, 60)]), paper=paper,
               width=r.choice([560, 600, 640, 700]), margin=r.choice([28, 36, 44]),
               head_align=r.choice(["centre", "left"]), kv=r.choice(["columns", "inline", "stacked", "right"]),
               items=r.choice(["right", "right", "leader"]), border=r.choice([0, 0, 0, 3]),
               spacing=r.uniform(1.35, 1.6))
    for k, v in over.items():
        setattr(st, k, v)
    return st


# ============================================================================================ the kinds
class _Spec(NamedTuple):
    blocks: list[tuple]
    fields: dict[str, str]
    pool: list[tuple[str, list[str], list[str]]]  # (field, question templates, answers)
    style: Style
    layout: str


def _receipt(g: _Gen) -> _Spec:
    r = g.r
    kind = r.choice(list(SHOP_TYPES))
    types, catalogue = SHOP_TYPES[kind]
    shop_word = g.word()
    shop = f"{shop_word} {r.choice(types)}".upper()
    street, city_line, _ = g.address()
    d, date = g.date()
    time = g.time(7, 21, twelve=False)
    items = [(n, g.money(lo, hi)) for n, lo, hi in r.sample(catalogue, r.randint(3, 6))]
    total = f"{sum(float(p) for _, p in items):.2f}"
    layout = r.choice(["classic", "leader", "left"])
    st = _style(r, items="leader" if layout == "leader" else "right",
                head_align="left" if layout == "left" else "centre", family=r.choice(["mono", "mono", "sans"]))
    blocks: list[tuple] = [("head", shop), ("text", street, {"align": st.head_align}),
                           ("text", f"{date} {time}", {"align": st.head_align}), ("gap",)]
    blocks += [("item", n, p) for n, p in items]
    blocks += [("rule",), ("item", "TOTAL", g.cash(total), True)]
    fields = {"shop": shop, "address": street, "date": date, "time": time, "total": total}
    pool = [("total", ["What is the total?", "What is the total on this receipt?", "How much was the total?",
                       "How much did it all cost?", "What was the total amount paid?"], [total]),
            ("shop", ["What is the name of the shop?", "Which shop is this receipt from?", "Where was this bought?"],
             [shop_word]),
            ("date", ["What is the date on the receipt?", "When was this purchase made?"], [date])]
    name, price = r.choice(items)
    fields[f"item:{name}"] = price
    low = name.lower()
    pool.append((f"item:{name}", [f"How much did the {low} cost?", f"What was the price of the {low}?",
                                  f"How much was the {low}?"], [price]))
    if r.random() < 0.5:
        paid = f"{(int(float(total)) // 5 + 1) * 5:.2f}"
        change = f"{float(paid) - float(total):.2f}"
        blocks += [("item", "CASH", paid), ("item", "CHANGE", change)]
        fields["change"] = change
        pool.append(("change", ["How much change was given?", "What was the change?"], [change]))
    blocks += [("gap",), ("text", r.choice(["THANK YOU!", "Thank you for shopping with us", "See you soon"]),
                          {"align": "centre"})]
    return _Spec(blocks, fields, pool, st, layout)


def _menu(g: _Gen) -> _Spec:
    r = g.r
    word = g.word()
    name = f"{word} {r.choice(RESTAURANT_TYPES)}"
    sections = r.sample(list(DISHES), r.randint(2, 3))
    menu = {sec: [(n, g.money(lo, hi)) for n, lo, hi in r.sample(DISHES[sec], r.randint(2, 4))] for sec in sections}
    opens, closes = f"{r.randint(10, 12)}:00", f"{r.randint(21, 23)}:{r.choice(['00', '30'])}"
    phone = g.phone()
    layout = r.choice(["single", "leader", "two_columns"])
    st = _style(r, items="leader" if layout == "leader" else "right", kv="inline",
                width=r.choice([760, 820]) if layout == "two_columns" else r.choice([560, 620, 680]))

    def section(sec: str) -> list[tuple]:
        return [("text", sec.upper(), {"bold": True}), *[("item", n, p) for n, p in menu[sec]], ("gap", 0.4)]

    blocks: list[tuple] = [("head", name.upper(), 1.2, "centre"), ("text", "MENU", {"align": "centre", "muted": True}),
                           ("gap",)]
    if layout == "two_columns":
        half = (len(sections) + 1) // 2
        blocks.append(("cols", [b for s in sections[:half] for b in section(s)],
                       [b for s in sections[half:] for b in section(s)]))
    else:
        blocks += [b for s in sections for b in section(s)]
    blocks += [("rule",), ("text", f"Open daily {opens} - {closes}", {"align": "centre", "size": "small"}),
               ("text", f"Tel {phone}", {"align": "centre", "size": "small"})]
    dish, price = r.choice([x for sec in sections for x in menu[sec]])
    fields = {"restaurant": name, "closes": closes, "opens": opens, "phone": phone, f"dish:{dish}": price}
    pool = [(f"dish:{dish}", [f"How much is the {dish.lower()}?", f"What does the {dish.lower()} cost?",
                              f"What is the price of the {dish.lower()}?"], [price]),
            ("restaurant", ["What is the name of the restaurant?", "Which restaurant is this menu from?"], [word]),
            ("closes", ["What time does the restaurant close?", "When does it close?"], [closes]),
            ("phone", ["What is the phone number?", "What number can I call?"], [phone])]
    return _Spec(blocks, fields, pool, st, layout)


def _ticket(g: _Gen) -> _Spec:
    r = g.r
    first, last = g.person()
    _, date = g.date()
    layout = r.choice(["train", "flight", "concert"])
    st = _style(r, border=r.choice([0, 3, 4]))
    if layout == "train":
        a, b = r.sample(CITIES, 2)
        dep, coach, seat = g.time(6, 21, twelve=False), r.choice("ABCDEFGH"), str(r.randint(1, 80))
        number = g.code("99999999")
        blocks = [("head", r.choice(["RAIL TICKET", "TRAIN TICKET", "STANDARD CLASS"])),
                  ("cols", [("kv", "From", a)], [("kv", "To", b)]),
                  ("kv", "Date", date), ("kv", "Departs", dep),
                  ("cols", [("kv", "Coach", coach)], [("kv", "Seat", seat)]),
                  ("kv", "Passenger", f"{first} {last}"), ("kv", "Ticket no", number)]
        fields = {"from": a, "to": b, "departs": dep, "coach": coach, "seat": seat, "passenger": last, "number": number,
                  "date": date}
        pool = [("to", ["Where is the train going?", "What is the destination?", "Which city is the ticket to?"], [b]),
                ("from", ["Where does the journey start?", "Which city does the train leave from?"], [a]),
                ("departs", ["What time does the train depart?", "When does it leave?"], [dep]),
                ("seat", ["What seat number is it?", "Which seat is reserved?"], [seat]),
                ("passenger", ["Who is the passenger?", "Whose ticket is this?"], [last]),
                ("number", ["What is the ticket number?"], [number])]
    elif layout == "flight":
        a, b = r.sample(CITIES, 2)
        flight = g.code("AA 899")
        gate, seat = g.code("A8"), f"{r.randint(2, 38)}{r.choice('ABCDEF')}"
        boarding = g.time(5, 22, twelve=False)
        blocks = [("head", "BOARDING PASS"), ("kv", "Passenger", f"{last.upper()}/{first.upper()}"),
                  ("cols", [("kv", "From", a), ("kv", "Flight", flight)], [("kv", "To", b), ("kv", "Date", date)]),
                  ("cols", [("kv", "Gate", gate), ("kv", "Seat", seat)], [("kv", "Boarding", boarding)]), ("bars",)]
        fields = {"from": a, "to": b, "flight": flight, "gate": gate, "seat": seat, "boarding": boarding,
                  "passenger": last, "date": date}
        pool = [("gate", ["Which gate?", "What is the gate number?", "Which gate does the flight leave from?"], [gate]),
                ("seat", ["What seat is it?", "What is the seat number?"], [seat]),
                ("to", ["Where is the flight going?", "What is the destination?"], [b]),
                ("flight", ["What is the flight number?"], [flight]),
                ("boarding", ["What time is boarding?", "When does boarding start?"], [boarding]),
                ("passenger", ["Who is the passenger?", "What is the passenger's name?"], [last])]
    else:
        event = f"{g.word()} {r.choice(['Live', 'in Concert', 'Tour', 'Festival'])}"
        venue = f"{g.word()} {r.choice(VENUE_TYPES)}"
        doors, row, seat = g.time(17, 21), r.choice("ABCDEFGHJKLM"), str(r.randint(1, 40))
        price = g.money(15, 90)
        blocks = [("head", event.upper()), ("text", venue, {"align": st.head_align}), ("gap", 0.4),
                  ("kv", "Date", date), ("kv", "Doors", doors),
                  ("cols", [("kv", "Row", row)], [("kv", "Seat", seat)]), ("kv", "Price", g.cash(price)), ("bars",)]
        fields = {"event": event, "venue": venue, "doors": doors, "row": row, "seat": seat, "price": price,
                  "date": date}
        pool = [("seat", ["What seat number is it?", "Which seat?"], [seat]),
                ("doors", ["What time do the doors open?", "When do doors open?"], [doors]),
                ("venue", ["Where is the concert?", "What is the venue?"], [venue.split()[0]]),
                ("price", ["How much did the ticket cost?", "What is the ticket price?"], [price]),
                ("date", ["When is the concert?", "What is the date of the event?"], [date])]
    return _Spec(blocks, fields, pool, st, layout)


def _product_label(g: _Gen) -> _Spec:
    r = g.r
    brand = g.word()
    product, unit, lo, hi = r.choice(PRODUCTS)
    amount = str(r.randrange(lo, hi + 1, 50 if hi > 200 else 10))
    price = g.money(1.5, 14)
    _, best = g.date(dt.date(2025, 1, 1), (0, 900))
    lot = g.code("L8999")
    layout = r.choice(["centred", "left", "panel"])
    st = _style(r, head_align="left" if layout == "left" else "centre", kv=r.choice(["inline", "right", "columns"]),
                border=3 if layout == "panel" else r.choice([0, 3]), width=r.choice([520, 580, 640]))
    blocks: list[tuple] = [("head", brand.upper(), 1.1), ("text", product, {"size": "big", "bold": True,
                                                                            "align": st.head_align}),
                           ("gap", 0.5), ("kv", "Net wt" if unit == "g" else "Volume", f"{amount} {unit}"),
                           ("kv", "Best before", best), ("kv", "Lot", lot), ("kv", "Price", g.cash(price), True)]
    if layout == "panel":
        blocks.append(("bars",))
    fields = {"brand": brand, "product": product, "amount": amount, "best_before": best, "lot": lot, "price": price}
    pool = [("price", ["What is the price?", "How much does it cost?", "How much is this?"], [price]),
            ("amount", ["How much does it weigh?" if unit == "g" else "How much does it contain?",
                        "What is the net weight?" if unit == "g" else "What is the volume?"], [amount]),
            ("best_before", ["When does it expire?", "What is the best before date?", "Until when is it good?"],
             [best]),
            ("brand", ["What is the brand?", "Which brand makes this?"], [brand]),
            ("lot", ["What is the lot number?"], [lot])]
    return _Spec(blocks, fields, pool, st, layout)


def _sign(g: _Gen) -> _Spec:
    r = g.r
    layout = r.choice(["platform", "speed", "hours", "room", "gate", "level"])
    plate = r.choice([(24, 92, 60), (20, 50, 130), (150, 25, 30), (30, 30, 30), (90, 55, 25)])
    st = _style(r, paper=plate, ink=(255, 255, 255), accent=(255, 255, 255), label_ink=(235, 235, 235),
                family=r.choice(["sans", "sans", "serif"]), body=r.choice([34, 38, 42]), head_align="centre",
                border=6, width=r.choice([600, 640, 700]), margin=48)
    st.head = int(st.body * 1.6)
    if layout == "platform":
        n, city = str(r.randint(1, 16)), r.choice(CITIES)
        lines, fields = [f"PLATFORM {n}", f"Trains to {city}"], {"platform": n, "city": city}
        pool = [("platform", ["Which platform number is on the sign?", "What platform is this?"], [n]),
                ("city", ["Where do the trains go?", "Which city do the trains from here go to?"], [city])]
    elif layout == "speed":
        st.paper, st.ink, st.accent, st.label_ink = (255, 255, 255), (20, 20, 20), (200, 20, 20), (60, 60, 60)
        n = str(r.choice([20, 30, 40, 50, 60, 70, 80]))
        zone = r.choice(["School zone", "Residential area", "Roadworks ahead", "Town centre"])
        lines, fields = ["SPEED LIMIT", n, zone], {"limit": n, "zone": zone}
        pool = [("limit", ["What is the speed limit on this sign?", "How fast may you drive here?"], [n]),
                ("zone", ["What area is the sign for?", "What kind of zone is it?"], [zone.split()[0]])]
    elif layout == "hours":
        o, c = r.randint(6, 10), r.randint(4, 9)
        days = r.choice(["OPEN DAILY", "MON - FRI", "OPEN EVERY DAY"])
        lines = [days, f"{o} AM - {c} PM", f"{g.word()} {r.choice(['Library', 'Pool', 'Museum', 'Gym'])}"]
        fields = {"opens": f"{o} AM", "closes": f"{c} PM", "place": lines[2]}
        pool = [("opens", ["At what time does it open?", "When does it open?"], [f"{o} AM"]),
                ("closes", ["What time does it close?", "When does it close?"], [f"{c} PM"]),
                ("place", ["What place is the sign for?", "Which building has these hours?"], [lines[2].split()[0]])]
    elif layout == "room":
        n, who = str(r.randint(100, 499)), g.person()
        purpose = r.choice(["Meeting room", "Lecture hall", "Staff only", "Quiet study"])
        lines = [f"ROOM {n}", purpose, f"Dr. {who[1]}"]
        fields = {"room": n, "purpose": purpose, "person": who[1]}
        pool = [("room", ["What room number is this?", "Which room is it?"], [n]),
                ("person", ["Whose name is on the sign?", "Who is named on the door?"], [who[1]]),
                ("purpose", ["What is the room used for?"], [purpose])]
    elif layout == "gate":
        gate = g.code("A8")
        dest = r.choice(CITIES)
        dep = g.time(5, 23, twelve=False)
        lines = [f"GATE {gate}", f"Flight to {dest}", f"Departs {dep}"]
        fields = {"gate": gate, "city": dest, "departs": dep}
        pool = [("gate", ["What gate is shown on the sign?", "Which gate is this?"], [gate]),
                ("city", ["Where is the flight going?", "What is the destination?"], [dest]),
                ("departs", ["What time does it depart?", "When does the flight leave?"], [dep])]
    else:
        n = str(r.randint(1, 9))
        what = r.choice(["Car park", "Restaurant", "Offices", "Toilets", "Lifts"])
        lines = [f"LEVEL {n}", what, r.choice(["Exit", "Stairs", "Way out"]) + " ->"]
        fields = {"level": n, "what": what}
        pool = [("level", ["Which level is this?", "What floor number is on the sign?"], [n]),
                ("what", ["What is on this level?", "What does the sign point to?"], [what])]
    blocks: list[tuple] = [("gap", 0.2), ("head", lines[0])] + [("text", ln, {"align": "centre", "size": "big"})
                                                               for ln in lines[1:]]
    return _Spec(blocks, fields, pool, st, layout)


def _form(g: _Gen) -> _Spec:
    r = g.r
    first, last = g.person()
    _, dob = g.date(dt.date(1950, 1, 1), (0, 20000))
    street, city_line, city = g.address()
    member = g.code("899999")
    phone = g.phone()
    email = f"{first.lower()}.{last.lower()}@{r.choice(['mail', 'post', 'inbox'])}.com"
    title = r.choice(["REGISTRATION FORM", "MEMBERSHIP APPLICATION", "VISITOR FORM", "ENROLMENT FORM"])
    layout = r.choice(["columns", "stacked", "two_columns", "inline"])
    st = _style(r, kv="stacked" if layout == "two_columns" else layout if layout != "two_columns" else "columns",
                width=r.choice([680, 740]), head_align=r.choice(["left", "centre"]))
    pairs = [("Name", f"{first} {last}"), ("Date of birth", dob), ("City", city), ("Member ID", member),
             ("Phone", phone), ("Email", email)]
    pairs = pairs[:3] + r.sample(pairs[3:], r.randint(1, 3))
    blocks: list[tuple] = [("head", title), ("gap", 0.5)]
    if layout == "two_columns":
        half = (len(pairs) + 1) // 2
        blocks.append(("cols", [("kv", k, v) for k, v in pairs[:half]], [("kv", k, v) for k, v in pairs[half:]]))
    else:
        blocks += [("kv", k, v) for k, v in pairs]
    blocks += [("gap",), ("text", "Signature: ____________________", {"size": "small", "muted": True})]
    fields = {k.lower().replace(" ", "_"): v for k, v in pairs}
    questions = {"name": (["What is the name written on the form?", "Who filled in this form?",
                           "What is the applicant's surname?"], [last]),
                 "date_of_birth": (["What is the date of birth?", "When was the person born?"], [dob]),
                 "city": (["Which city is written on the form?", "What city does the person live in?"], [city]),
                 "member_id": (["What is the member ID?", "What is the membership number?"], [member]),
                 "phone": (["What is the phone number on the form?"], [phone]),
                 "email": (["What is the email address?"], [email])}
    pool = [(k, *questions[k]) for k in fields]
    return _Spec(blocks, fields, pool, st, layout)


def _book_cover(g: _Gen) -> _Spec:
    r = g.r
    adj, noun = r.choice(BOOK_ADJ), r.choice(BOOK_NOUN)
    title = r.choice([f"The {adj} {noun}", f"{adj} {noun}", f"The {noun} of {r.choice(CITIES)}"])
    core = title.removeprefix("The ")
    first, last = g.person()
    author = f"{first} {last}"
    publisher = f"{g.word()} {r.choice(PUBLISHER_TYPES)}"
    tag = r.choice(["A NOVEL", "STORIES", "A MYSTERY", "Second edition", "The bestselling debut"])
    layout = r.choice(["title_top", "author_top", "left"])
    cover = r.choice([(20, 40, 80), (120, 30, 40), (30, 80, 60), (235, 225, 200), (245, 245, 240), (60, 40, 90)])
    dark = sum(cover) < 400
    ink = (250, 250, 245) if dark else (30, 25, 20)
    accent = ink if r.random() < 0.5 else ((250, 210, 90) if dark else (150, 30, 30))
    st = _style(r, paper=cover, ink=ink, accent=accent,
                label_ink=ink, head_align="left" if layout == "left" else "centre", width=r.choice([460, 500, 540]),
                family=r.choice(["serif", "serif", "sans"]), body=r.choice([24, 26, 28]), margin=40)
    st.head = int(st.body * 1.7)
    align = st.head_align
    t = [("gap", 1.0), ("head", title.upper() if r.random() < 0.5 else title), ("text", tag, {"align": align,
                                                                                               "size": "small"})]
    a = [("gap", 1.0), ("text", author, {"align": align, "size": "big", "bold": True})]
    blocks = (t + a if layout != "author_top" else a + t) + [("gap", 2.0), ("text", publisher,
                                                                           {"align": align, "size": "small"})]
    fields = {"title": title, "author": author, "publisher": publisher}
    pool = [("author", ["Who wrote this book?", "Who is the author?", "Who is the author of this book?"], [last]),
            ("title", ["What is the title of the book?", "What is this book called?"], [core]),
            ("publisher", ["Who published this book?", "Which publisher is on the cover?"],
             [publisher.split()[0]])]
    return _Spec(blocks, fields, pool, st, layout)


def _utility_bill(g: _Gen) -> _Spec:
    r = g.r
    word = g.word()
    company = f"{word} {r.choice(UTILITY_TYPES)}"
    first, last = g.person()
    street, city_line, _ = g.address()
    account = g.code("9999-9999-99")
    start, _ = g.date(dt.date(2024, 1, 1), (0, 600))
    end = start + dt.timedelta(days=r.choice([29, 30, 90]))
    due = end + dt.timedelta(days=r.choice([14, 21, 28]))
    previous = g.money(20, 150)
    charges = g.money(25, 180)
    amount = charges
    layout = r.choice(["statement", "two_columns", "summary_table"])
    st = _style(r, width=r.choice([680, 740]), kv="right" if layout != "two_columns" else "stacked")
    period = f"{g.fmt_date(start)} - {g.fmt_date(end)}"
    due_s = g.fmt_date(due)
    blocks: list[tuple] = [("head", company.upper()), ("text", "Your bill", {"align": st.head_align, "muted": True}),
                           ("gap", 0.5)]
    customer = [("text", f"{first} {last}", {"bold": True}), ("text", street), ("text", city_line)]
    meta = [("kv", "Account number", account), ("kv", "Billing period", period)]
    if layout == "two_columns":
        blocks.append(("cols", customer, meta))
    else:
        blocks += customer + [("gap", 0.5)] + meta
    blocks += [("rule",)]
    if layout == "summary_table":
        blocks.append(("table", ["Description", "Amount"],
                       [["Previous balance", g.cash(previous)], ["Payment received", "-" + g.cash(previous)],
                        ["New charges", g.cash(charges)]], "lr", [0.65, 0.35]))
    else:
        blocks += [("item", "Previous balance", previous), ("item", "Payment received", "-" + previous),
                   ("item", "New charges", charges)]
    blocks += [("rule",), ("item", "AMOUNT DUE", g.cash(amount), True), ("kv", "Due date", due_s, True)]
    fields = {"company": company, "customer": f"{first} {last}", "account": account, "period": period,
              "amount_due": amount, "due_date": due_s}
    pool = [("amount_due", ["How much is due?", "What is the amount due?", "How much do I have to pay?"], [amount]),
            ("due_date", ["When is it due?", "What is the due date?", "By when must the bill be paid?"], [due_s]),
            ("account", ["What is the account number?"], [account]),
            ("customer", ["Who is the customer?", "Whose bill is this?"], [last]),
            ("company", ["Which company sent this bill?", "Who is the supplier?"], [word])]
    return _Spec(blocks, fields, pool, st, layout)


def _invoice(g: _Gen) -> _Spec:
    r = g.r
    seller_word = g.word()
    seller = f"{seller_word} {r.choice(COMPANY_TYPES)}"
    first, last = g.person()
    client_word = r.choice([w for w in NAME_WORDS if w != seller_word])
    client = f"{client_word} {r.choice(COMPANY_TYPES)}"
    number = f"INV-{r.randint(2023, 2026)}-{g.code('9999')}"
    d, date = g.date(dt.date(2023, 1, 1), (0, 1000))
    due = g.fmt_date(d + dt.timedelta(days=r.choice([14, 30, 45])))
    lines = []
    for name, lo, hi in r.sample(SERVICES, r.randint(2, 4)):
        qty = r.choice([1, 1, 2, 3, 4, 5])
        unit = g.money(lo / qty if qty > 1 else lo, hi / qty if qty > 1 else hi)
        amount = f"{qty * float(unit):.2f}"
        g._used_money.add(amount)
        lines.append((name, str(qty), unit, amount))
    subtotal = sum(float(a) for *_, a in lines)
    rate = r.choice([5, 7, 8, 10, 12, 15, 20])
    discount = round(subtotal * r.choice([0.05, 0.1, 0.15]), 2) if r.random() < 0.6 else 0.0
    tax = round((subtotal - discount) * rate / 100, 2)
    tip = round(subtotal * r.choice([0.1, 0.15, 0.18]), 2) if r.random() < 0.35 else 0.0
    total = round(subtotal - discount + tax + tip, 2)
    s = {k: f"{v:.2f}" for k, v in [("subtotal", subtotal), ("discount", discount), ("tax", tax), ("tip", tip),
                                    ("total", total)]}
    layout = r.choice(["table", "two_column_header", "simple"])
    st = _style(r, width=r.choice([760, 820]), kv=r.choice(["columns", "inline", "right"]),
                head_align=r.choice(["left", "centre"]))
    blocks: list[tuple] = []
    head = [("head", "INVOICE", 1.2), ("text", seller, {"bold": True}), ("text", g.address()[0], {"muted": True})]
    meta = [("kv", "Invoice no", number), ("kv", "Date", date), ("kv", "Due date", due)]
    bill = [("text", "Bill to:", {"muted": True, "size": "small"}), ("text", f"{first} {last}", {"bold": True}),
            ("text", client)]
    if layout == "two_column_header":
        blocks += [("cols", head + [("gap", 0.4)] + bill, [("gap", 1.0)] + meta), ("gap", 0.6)]
    else:
        blocks += head + [("gap", 0.4)] + meta + [("gap", 0.4)] + bill + [("gap", 0.6)]
    if layout == "simple":
        blocks += [("item", f"{q} x {n}" if q != "1" else n, a) for n, q, _, a in lines]
    else:
        blocks.append(("table", ["Description", "Qty", "Unit price", "Amount"], [list(x) for x in lines], "lrrr",
                       [0.46, 0.12, 0.21, 0.21]))
    blocks.append(("rule",))
    totals: list[tuple] = [("item", "Subtotal", s["subtotal"])]
    if discount:
        totals.append(("item", "Discount", "-" + s["discount"]))
    totals.append(("item", f"Tax ({rate}%)", s["tax"]))
    if tip:
        totals.append(("item", "Tip", s["tip"]))
    totals.append(("item", "TOTAL", g.cash(s["total"]), True))
    blocks += [("cols", [], totals)] if r.random() < 0.5 else totals
    fields = {"seller": seller, "customer": f"{first} {last}", "client": client, "number": number, "date": date,
              "due_date": due, "tax_rate": f"{rate}%", **{k: v for k, v in s.items() if float(v) or k == "tax"}}
    pool = [("total", ["What is the total?", "What is the invoice total?", "How much is owed in total?",
                       "What is the total amount due?"], [s["total"]]),
            ("tax", ["How much was the tax?", "What is the tax amount?", "How much tax was charged?"], [s["tax"]]),
            ("subtotal", ["What is the subtotal?", "What was the subtotal before tax?"], [s["subtotal"]]),
            ("number", ["What is the invoice number?"], [number]),
            ("due_date", ["When is it due?", "When is the payment due?", "What is the due date?"], [due]),
            ("customer", ["Who is the invoice addressed to?", "Who is billed?"], [last])]
    if discount:
        pool.append(("discount", ["How much was the discount?", "What discount was given?"], [s["discount"]]))
    if tip:
        pool.append(("tip", ["How much was the tip?", "What was the tip?"], [s["tip"]]))
    return _Spec(blocks, fields, pool, st, layout)


def _shipping_label(g: _Gen) -> _Spec:
    r = g.r
    (sf, sl), (tf, tl) = g.people(2)
    s_street, s_city_line, s_city = g.address()
    t_street, t_city_line, t_city = g.address()
    while t_city == s_city:
        t_street, t_city_line, t_city = g.address()
    tracking = g.code(r.choice(["1Z8AA8889999999999", "AA999999999AA", "9999 9999 9999"])).replace(" ", "")
    weight = f"{r.uniform(0.2, 24):.1f}"
    service = r.choice(["EXPRESS", "PRIORITY", "STANDARD", "NEXT DAY", "ECONOMY"])
    layout = r.choice(["stacked", "two_columns", "boxed"])
    st = _style(r, kv="inline", border=4 if layout == "boxed" else r.choice([0, 3]), width=r.choice([640, 700, 760]),
                family=r.choice(["sans", "mono"]), head_align="left")
    sender = [("text", "FROM:", {"muted": True, "size": "small"}), ("text", f"{sf} {sl}"), ("text", s_street),
              ("text", s_city_line)]
    recip = [("text", "SHIP TO:", {"muted": True, "size": "small"}),
             ("text", f"{tf} {tl}", {"size": "big", "bold": True}),
             ("text", t_street, {"size": "big"}), ("text", t_city_line, {"size": "big"})]
    blocks: list[tuple] = [("head", service), ("gap", 0.3)]
    if layout == "two_columns":
        blocks += [("cols", sender, recip)]
    else:
        blocks += sender + [("rule",)] + recip
    blocks += [("rule",), ("cols", [("kv", "Weight", f"{weight} kg")], [("kv", "Service", service.title())]),
               ("bars",), ("kv", "Tracking", tracking)]
    fields = {"sender": f"{sf} {sl}", "recipient": f"{tf} {tl}", "to_city": t_city, "from_city": s_city,
              "tracking": tracking, "weight": weight, "service": service}
    pool = [("sender", ["Who is the sender?", "Who sent this package?"], [sl]),
            ("recipient", ["Who is the package addressed to?", "Who is the recipient?"], [tl]),
            ("tracking", ["What is the tracking number?"], [tracking]),
            ("weight", ["How much does the package weigh?", "What is the weight of the parcel?"], [weight]),
            ("to_city", ["Which city is it going to?", "Where is the package being shipped?"], [t_city]),
            ("from_city", ["Which city was it sent from?"], [s_city])]
    return _Spec(blocks, fields, pool, st, layout)


def _business_card(g: _Gen) -> _Spec:
    r = g.r
    first, last = g.person()
    word = g.word()
    company = f"{word} {r.choice(COMPANY_TYPES)}"
    title = r.choice(JOB_TITLES)
    phone = g.phone()
    domain = word.lower() + r.choice([".com", ".io", ".co"])
    email = f"{first[0].lower()}.{last.lower()}@{domain}"
    website = f"www.{domain}"
    layout = r.choice(["left", "centred", "two_columns"])
    st = _style(r, width=r.choice([680, 720]), head_align="centre" if layout == "centred" else "left",
                border=r.choice([0, 2]), margin=40)
    align = st.head_align
    who = [("head", f"{first} {last}"), ("text", title, {"muted": True, "align": align})]
    firm = [("text", company.upper(), {"bold": True, "align": align})]
    contact = [("text", phone, {"align": align}), ("text", email, {"align": align}),
               ("text", website, {"align": align, "size": "small"})]
    if layout == "two_columns":
        blocks = [("cols", who + [("gap", 0.5)] + firm, [("gap", 0.4)] + contact)]
    else:
        blocks = [("gap", 0.3)] + firm + [("gap", 0.5)] + who + [("gap", 0.6)] + contact
    fields = {"name": f"{first} {last}", "title": title, "company": company, "phone": phone, "email": email,
              "website": website}
    pool = [("name", ["What is the person's name?", "Whose business card is this?", "What is the name on the card?"],
             [last]),
            ("phone", ["What is the phone number?", "What number is on the card?"], [phone]),
            ("email", ["What is the email address?", "What is their email?"], [email]),
            ("company", ["Which company does this person work for?", "What is the company name?"], [word]),
            ("title", ["What is their job title?", "What is this person's position?"], [title])]
    return _Spec(blocks, fields, pool, st, layout)


def _poster(g: _Gen) -> _Spec:
    r = g.r
    event = r.choice(EVENTS)
    venue_word = g.word()
    venue = f"{venue_word} {r.choice(VENUE_TYPES)}"
    street, _, _ = g.address()
    _, date = g.date(dt.date(2024, 1, 1), (0, 900))
    start = g.time(10, 21)
    free = r.random() < 0.25
    price = g.money(4, 30)
    layout = r.choice(["centred", "left", "banner"])
    bg = r.choice([(255, 255, 255), (250, 235, 200), (25, 35, 70), (120, 20, 50), (230, 245, 235)])
    dark = sum(bg) < 400
    ink = (250, 250, 250) if dark else (25, 25, 25)
    st = _style(r, paper=bg, ink=ink, label_ink=ink, accent=(255, 200, 60) if dark else r.choice([ink, (170, 30, 30)]),
                head_align="left" if layout == "left" else "centre", body=r.choice([26, 28, 30]),
                width=r.choice([560, 600, 640]), margin=44, kv=r.choice(["inline", "stacked"]))
    st.head = int(st.body * 1.9)
    align = st.head_align
    blocks: list[tuple] = [("gap", 0.5), ("head", event.upper())]
    if layout == "banner":
        blocks.append(("rule",))
    blocks += [("text", r.choice(["All welcome", "Join us!", "Bring a friend", "Family friendly"]),
                {"align": align, "size": "small"}), ("gap", 0.8),
               ("text", date, {"align": align, "size": "big", "bold": True}),
               ("text", f"Starts {start}", {"align": align}), ("gap", 0.4),
               ("text", venue, {"align": align, "bold": True}), ("text", street, {"align": align, "size": "small"}),
               ("gap", 0.8), ("text", "Free entry" if free else f"Tickets {g.cash(price)}", {"align": align})]
    fields = {"event": event, "venue": venue, "date": date, "start": start, **({} if free else {"price": price})}
    pool = [("date", ["When is the event?", "What date is the event?", "On what day does it take place?"], [date]),
            ("start", ["What time does it start?", "When does it begin?"], [start]),
            ("venue", ["Where is it held?", "Where is the event?", "What is the venue?"], [venue_word]),
            ("event", ["What is the event called?", "What event is the poster for?"], [event])]
    if not free:
        pool.append(("price", ["How much are the tickets?", "How much does a ticket cost?"], [price]))
    return _Spec(blocks, fields, pool, st, layout)


def _prescription(g: _Gen) -> _Spec:
    r = g.r
    (pf, pl), (df, dl) = g.people(2)
    clinic = f"{g.word()} {r.choice(['Medical Centre', 'Health Clinic', 'Family Practice'])}"
    drug, doses = r.choice(DRUGS)
    dose = str(r.choice(doses))
    times = r.choice(["once", "twice", "3 times"])
    qty = str(r.choice([14, 21, 28, 30, 56, 60]))
    refills = str(r.randint(0, 5))
    rx = g.code("RX 8999999").replace(" ", "")
    _, date = g.date(dt.date(2024, 1, 1), (0, 800))
    _, dob = g.date(dt.date(1940, 1, 1), (0, 25000))
    layout = r.choice(["form", "pad", "two_columns"])
    st = _style(r, width=r.choice([660, 720]), kv=r.choice(["columns", "inline", "right"]) if layout != "two_columns"
                else "stacked")
    blocks: list[tuple] = [("head", clinic.upper()), ("text", f"Dr. {df} {dl}", {"align": st.head_align}),
                           ("rule",)]
    patient = [("kv", "Patient", f"{pf} {pl}"), ("kv", "DOB", dob)]
    meta = [("kv", "Rx no", rx), ("kv", "Date", date)]
    blocks += [("cols", patient, meta)] if layout == "two_columns" else patient + meta
    blocks += [("gap", 0.4), ("text", "Rx", {"bold": True, "size": "big"}),
               ("text", f"{drug} {dose} mg", {"bold": True}),
               ("text", f"Take 1 {r.choice(['tablet', 'capsule'])} {times} daily"),
               ("kv", "Quantity", qty), ("kv", "Refills", refills)]
    if layout == "pad":
        blocks += [("gap", 0.8), ("text", f"Signed: Dr. {dl}", {"size": "small", "muted": True})]
    fields = {"patient": f"{pf} {pl}", "doctor": f"{df} {dl}", "drug": drug, "dose": dose, "quantity": qty,
              "refills": refills, "rx": rx, "date": date, "clinic": clinic}
    pool = [("patient", ["Who is the patient?", "Who is this prescription for?"], [pl]),
            ("doctor", ["Who prescribed the medication?", "Which doctor signed it?"], [dl]),
            ("drug", ["What medication is prescribed?", "Which drug is it?"], [drug]),
            ("dose", ["What is the dose in mg?", "How many milligrams per dose?"], [dose]),
            ("refills", ["How many refills are allowed?"], [refills]),
            ("rx", ["What is the prescription number?"], [rx])]
    return _Spec(blocks, fields, pool, st, layout)


def _parking_ticket(g: _Gen) -> _Spec:
    r = g.r
    city = r.choice(CITIES)
    number = g.code("PCN 89999999").replace(" ", "")
    plate = g.code(r.choice(["AA99 AAA", "8AAA999", "AAA 9999"]))
    street = r.choice(STREETS)
    _, date = g.date(dt.date(2024, 1, 1), (0, 800))
    time = g.time(7, 21, twelve=False)
    violation = r.choice(VIOLATIONS)
    fine = f"{r.choice([25, 30, 35, 40, 45, 50, 60, 65, 70, 80, 90, 120])}.00"
    officer = g.code("8999")
    layout = r.choice(["notice", "two_columns", "compact"])
    st = _style(r, width=r.choice([620, 680, 720]), accent=r.choice([(170, 20, 20), (20, 20, 20)]),
                kv=r.choice(["columns", "right", "inline"]) if layout != "two_columns" else "stacked",
                border=r.choice([0, 3]))
    blocks: list[tuple] = [("head", r.choice(["PARKING TICKET", "PENALTY CHARGE NOTICE", "PARKING CITATION"])),
                           ("text", f"City of {city}", {"align": st.head_align, "muted": True}), ("gap", 0.4)]
    left = [("kv", "Notice no", number), ("kv", "Date", date), ("kv", "Time", time)]
    right = [("kv", "Vehicle", f"{r.choice(CAR_COLOURS)} {r.choice(CAR_MAKES)}"), ("kv", "Plate", plate),
             ("kv", "Location", street)]
    blocks += [("cols", left, right)] if layout == "two_columns" else left + right
    blocks += [("kv", "Violation", violation), ("rule",), ("item", "FINE", g.cash(fine), True)]
    if layout != "compact":
        blocks += [("kv", "Officer", officer), ("text", "Pay within 28 days", {"size": "small", "muted": True})]
    fields = {"number": number, "plate": plate, "location": street, "date": date, "time": time,
              "violation": violation, "fine": fine, "city": city}
    pool = [("fine", ["How much is the fine?", "What is the penalty amount?", "How much do I have to pay?"], [fine]),
            ("plate", ["What is the licence plate number?", "What is the vehicle's registration?"], [plate]),
            ("location", ["Where was the car parked?", "On which street was the ticket issued?"], [street]),
            ("date", ["When was the ticket issued?", "On what date was the ticket written?"], [date]),
            ("time", ["At what time was the ticket issued?"], [time]),
            ("violation", ["What was the violation?", "Why was the ticket issued?"], [violation])]
    return _Spec(blocks, fields, pool, st, layout)


def _library_card(g: _Gen) -> _Spec:
    r = g.r
    first, last = g.person()
    city = r.choice(CITIES)
    library = f"{city} {r.choice(['Public Library', 'City Library', 'Libraries'])}"
    card = g.code(r.choice(["99999999", "L-9999999", "2999 9999 9999"])).replace(" ", "")
    _, expires = g.date(dt.date(2025, 6, 1), (0, 1500))
    branch = r.choice(STREETS).split()[0]
    layout = r.choice(["card", "two_columns", "stacked"])
    st = _style(r, width=r.choice([640, 700]), border=r.choice([2, 3]), margin=40,
                kv="stacked" if layout == "stacked" else r.choice(["columns", "inline"]),
                paper=r.choice([(255, 255, 255), (230, 240, 250), (250, 240, 225)]))
    blocks: list[tuple] = [("head", library.upper()), ("text", "LIBRARY CARD", {"align": st.head_align, "muted": True}),
                           ("gap", 0.4)]
    info = [("kv", "Name", f"{first} {last}"), ("kv", "Card no", card)]
    more = [("kv", "Valid until", expires), ("kv", "Branch", branch)]
    blocks += [("cols", info, more)] if layout == "two_columns" else info + more
    blocks += [("bars",)]
    fields = {"name": f"{first} {last}", "card": card, "expires": expires, "branch": branch, "library": library}
    pool = [("name", ["Whose card is this?", "Who is the card holder?"], [last]),
            ("card", ["What is the card number?"], [card]),
            ("expires", ["When does the card expire?", "Until when is the card valid?"], [expires]),
            ("library", ["Which library issued this card?", "Which city's library is it?"], [city])]
    return _Spec(blocks, fields, pool, st, layout)


_BUILDERS = {"receipt": _receipt, "menu": _menu, "ticket": _ticket, "product_label": _product_label, "sign": _sign,
             "form": _form, "book_cover": _book_cover, "utility_bill": _utility_bill, "invoice": _invoice,
             "shipping_label": _shipping_label, "business_card": _business_card, "poster": _poster,
             "prescription": _prescription, "parking_ticket": _parking_ticket, "library_card": _library_card}
assert set(_BUILDERS) == set(ALL_KINDS)


# ============================================================================================ rendering
def render(kind: str, seed: int) -> Document:
    """The document of ``kind`` for ``seed``: image, 2-4 questions with their accepted answers, the fields."""
    if kind not in _BUILDERS:
        raise ValueError(f"unknown document kind {kind!r}: use one of {', '.join(ALL_KINDS)}")
    r = random.Random(f"lav2-documents/{kind}/{int(seed)}")
    spec = _BUILDERS[kind](_Gen(r))
    canvas = _Canvas(spec.style, r)
    y = canvas.blocks(spec.blocks, spec.style.margin, spec.style.width - spec.style.margin, spec.style.margin)
    image, effects = _degrade(canvas.finish(y), r, spec.style.paper)
    drawn = "\n".join(canvas.text)
    missing = [p[0] for p in spec.pool if not all(answer_in_text([a], drawn) for a in p[2])]
    if missing:  # a programming error in a builder: never ask for what is not printed
        raise RuntimeError(f"{kind} seed {seed}: the answers of {missing} are not printed on the document")
    chosen = r.sample(spec.pool, min(len(spec.pool), r.randint(2, 4)))
    questions = [QA(r.choice(templates), list(answers), name) for name, templates, answers in chosen]
    return Document(kind, int(seed), image, questions, dict(spec.fields), canvas.text, spec.layout, effects)


def _degrade(img: Image.Image, r: random.Random,
             paper: tuple[int, int, int]) -> tuple[Image.Image, tuple[str, ...]]:
    """On some seeds: a rotation of at most 2 degrees, mild Gaussian blur, mild pixel noise."""
    effects = []
    if r.random() < 0.5:
        angle = r.uniform(-2.0, 2.0)
        img = img.rotate(angle, resample=Image.Resampling.BICUBIC, expand=True, fillcolor=paper)
        effects.append(f"rotate {angle:.2f}")
    if r.random() < 0.25:
        radius = r.uniform(0.4, 0.9)
        img = img.filter(ImageFilter.GaussianBlur(radius))
        effects.append(f"blur {radius:.2f}")
    if r.random() < 0.3:
        import numpy as np

        rng = np.random.default_rng(r.getrandbits(32))
        sigma = r.uniform(4, 10)
        a = np.asarray(img, dtype=np.int16)
        a = a + rng.normal(0, sigma, a.shape[:2])[..., None].astype(np.int16)
        img = Image.fromarray(np.clip(a, 0, 255).astype(np.uint8), "RGB")
        effects.append(f"noise {sigma:.1f}")
    return img, tuple(effects)


def source_digest() -> str:
    """A short hash of this module's source: part of cached eval-set names, so a changed generator regenerates."""
    return hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:10]


def _check_kinds(kinds: Iterable[str]) -> tuple[str, ...]:
    kinds = tuple(kinds)
    unknown = [k for k in kinds if k not in _BUILDERS]
    if unknown:
        raise ValueError(f"unknown document kind(s) {', '.join(unknown)}: use {', '.join(ALL_KINDS)}")
    return kinds


def write_eval_set(out_dir: str | os.PathLike, split: str = "test", per_kind: int = 3, seed: int = 0,
                   kinds: Sequence[str] | None = None) -> Path:
    """Render ``per_kind`` documents (seeds ``seed`` .. ``seed + per_kind - 1``) of every kind of ``split`` (or
    of ``kinds``) into ``out_dir/images/`` and write ``out_dir/questions.jsonl`` (``id``, ``image`` relative to
    it, ``kind``, ``question``, ``answers``, plus ``split``, ``seed``, ``field``, ``layout``). Returns the JSONL
    path. Seeds must lie in :data:`EVAL_SEEDS`."""
    kinds = _check_kinds(kinds) if kinds else kinds_of(split)
    if per_kind < 1:
        raise ValueError(f"per_kind must be >= 1, got {per_kind}")
    if seed < EVAL_SEEDS.start or seed + per_kind > EVAL_SEEDS.stop:
        raise ValueError(f"eval seeds must lie in {EVAL_SEEDS.start}..{EVAL_SEEDS.stop - 1} (training uses "
                         f"{TRAIN_SEED_START} and up), got {seed}..{seed + per_kind - 1}")
    out = Path(out_dir)
    (out / "images").mkdir(parents=True, exist_ok=True)
    split_of = {k: s for s, ks in SPLITS.items() for k in ks}
    rows = []
    for kind in kinds:
        for s in range(seed, seed + per_kind):
            doc = render(kind, s)
            name = f"images/{kind}_{s}.png"
            _write_atomic(out / name, doc.png_bytes())
            for qa in doc.questions:  # fields are unique within a document
                rows.append({"id": f"{kind}-{s}-{qa.field}", "image": name, "kind": kind, "question": qa.question,
                             "answers": qa.answers, "split": split_of[kind], "seed": s, "field": qa.field,
                             "layout": doc.layout})
    path = out / "questions.jsonl"
    _write_atomic(path, "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows).encode("utf-8"))
    log.info("wrote %d questions on %d documents to %s", len(rows), len(kinds) * per_kind, path)
    return path


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def train_documents(n_per_kind: int, kinds: Sequence[str] = SPLITS["dev"],
                    start: int = TRAIN_SEED_START) -> Iterator[Document]:
    """Documents for training a reader: dev kinds only, seeds from :data:`TRAIN_SEED_START` up (never an eval
    document). Test and holdout kinds are refused — they measure what training did not see."""
    kinds = _check_kinds(kinds)
    banned = [k for k in kinds if k not in SPLITS["dev"]]
    if banned:
        raise ValueError(f"{', '.join(banned)} are test/holdout kinds: training uses dev kinds only "
                         f"({', '.join(SPLITS['dev'])})")
    if start < TRAIN_SEED_START:
        raise ValueError(f"training seeds start at {TRAIN_SEED_START} (below are evaluation seeds), got {start}")
    for s in range(start, start + n_per_kind):
        for kind in kinds:
            yield render(kind, s)
