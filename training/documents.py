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

**Train-only kind** (:data:`TRAIN_ONLY_KINDS`): ``record`` is in no split and never evaluated
(:func:`write_eval_set` refuses it); :func:`train_documents` renders it beside the dev kinds. It is a generic
document meant to teach a reader the skill "find the value the question asks for" rather than a few layouts: a
catalogue of fields (:data:`RECORD_FIELDS`, 240+ across 22 domains — travel, healthcare, banking, retail, HR,
education, events, logistics, motoring, telecom, housing, government, insurance, hotels, sports, media, catering,
manufacturing, legal, IT support, agriculture, veterinary — plus the issuer and its contact details), each with
several labels, a value type and a direct question plus paraphrases; laid out as label/value rows in each style,
two columns, sections, a table asked about by row and column, billed lines with a summary, unlabelled blocks (the
issuer, an address, contacts, a name line, a date line) or a mix (:data:`RECORD_LAYOUTS`), with several values of
one type on a document so that the label decides. It reuses only the generic word lists (names, cities, streets,
name words) plus its own.

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
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, NamedTuple

from PIL import Image, ImageDraw, ImageFilter, ImageFont

log = logging.getLogger(__name__)

__all__ = ["ALL_KINDS", "EVAL_SEEDS", "KINDS", "RECORD_FIELDS", "RECORD_LAYOUTS", "SPLITS", "TRAIN_ONLY_KINDS",
           "TRAIN_SEED_START", "QA", "Document", "answer_in_text", "font", "kinds_of", "render", "source_digest",
           "train_documents", "write_eval_set"]

#: kinds of documents by split — FIXED: dev (tuning and training), test (measuring), holdout (the last check)
SPLITS: dict[str, tuple[str, ...]] = {
    "dev": ("receipt", "menu", "ticket", "product_label", "sign", "form", "book_cover", "utility_bill"),
    "test": ("invoice", "shipping_label", "business_card", "poster"),
    "holdout": ("prescription", "parking_ticket", "library_card"),
}
KINDS = SPLITS  # the name the API sketch of issue 13 uses
ALL_KINDS: tuple[str, ...] = tuple(k for kinds in SPLITS.values() for k in kinds)
#: kinds for training only — in no split, never an evaluation kind: ``record``, a generic document of many domains
TRAIN_ONLY_KINDS: tuple[str, ...] = ("record",)
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


# ============================================================================================ the train-only kind
# ``record``: a generic document for *training* a reader — never in SPLITS, never evaluated. Its breadth (a catalogue
# of fields from many domains, many layouts, several labels and phrasings per field, several values of one type per
# document) is meant to teach "find the value a question asks for" rather than the layouts of a few kinds. Written
# from general knowledge of documents; it reuses only the generic word lists above (names, cities, streets, words).
RECORD_FIRST = ["Amara", "Benedikt", "Chiara", "Dmitri", "Esther", "Farid", "Greta", "Henrik", "Isla", "Jonas",
                "Kaito", "Lena", "Mateo", "Nina", "Otto", "Priya", "Rafael", "Selma", "Theo", "Ursula", "Vera",
                "Wendell", "Ximena", "Yusuf", "Zofia", "Arjun", "Beatriz", "Caspar", "Dalia", "Emil", "Freya",
                "Goran", "Helena", "Idris", "Julia", "Kofi", "Linnea", "Milan", "Noor", "Pablo", "Renata", "Stefan",
                "Tamsin", "Umar", "Valentina", "Wiktor", "Zara", "Anouk"]
RECORD_SURNAMES = ["Achterberg", "Bianchi", "Carvalho", "Dimitriou", "Engstrom", "Fontaine", "Gallagher", "Hartmann",
                   "Ibrahim", "Jovanovic", "Kaminski", "Lombardi", "Marchetti", "Nieminen", "Oyelaran", "Pereira",
                   "Rasmussen", "Schreiber", "Takahashi", "Ulrich", "Vasquez", "Weissman", "Yilmaz", "Zielinski",
                   "Adeyemi", "Bergstrom", "Chowdhury", "Duarte", "Esposito", "Fairbairn", "Gunnarsson", "Iversen",
                   "Kovacs", "Lindgren", "Mwangi", "Nilsen", "Ortega", "Pham", "Rossi", "Sandoval", "Thorne",
                   "Whitaker", "Zamora", "Haugen", "Okonkwo", "Santos", "Molina", "Strand"]
#: distinctive words of organisation names (with NAME_WORDS): the accepted answer for an organisation
RECORD_ORG_WORDS = ["Amberly", "Bayside", "Brightwater", "Clearview", "Driftwood", "Eastgate", "Evergreen",
                    "Fairhaven", "Foxglove", "Granite", "Greystone", "Highfield", "Ironbridge", "Kingfisher",
                    "Lakeside", "Larkspur", "Millbrook", "Oakridge", "Orchid", "Pebblestone", "Quayside", "Riverside",
                    "Rosewood", "Seabright", "Skylark", "Stonegate", "Sunfield", "Tidewater", "Trident", "Westbrook",
                    "Whitestone", "Windmill", "Zenith", "Horizon", "Keystone", "Nimbus", "Osprey", "Pioneer",
                    "Sterling", "Blackthorn", "Goldcrest", "Heathfield", "Ashgrove", "Brookside", "Cobalt", "Larchmont"]
RECORD_CITIES = ["Antwerp", "Bristol", "Brno", "Cardiff", "Coimbra", "Delft", "Dundee", "Geneva", "Gdansk", "Hamburg",
                 "Innsbruck", "Kyoto", "Lille", "Ljubljana", "Lucerne", "Madison", "Nagoya", "Odense", "Padua",
                 "Quebec", "Salzburg", "Tallinn", "Uppsala", "Valencia", "Verona", "Wellington", "Zagreb", "Aberdeen",
                 "Bologna", "Calgary"]
RECORD_STREETS = ["Orchard Close", "Harbour View", "Market Square", "Park Crescent", "Willow Drive", "Foundry Lane",
                  "Bramley Way", "North Parade", "Garden Terrace", "Quarry Road", "Ferry Street", "Linden Avenue"]
_NATIONALITIES = ["Irish", "Portuguese", "Norwegian", "Canadian", "Ghanaian", "Japanese", "Chilean", "Polish",
                  "Austrian", "Kenyan", "Finnish", "Mexican", "Dutch", "Italian"]
_PET_NAMES = ["Biscuit", "Pepper", "Mango", "Luna", "Ziggy", "Nala", "Otis", "Pickle", "Rocco", "Tilly", "Waffle",
              "Dexter", "Poppy", "Miso"]


class _Val(NamedTuple):
    """A value as printed (``text``) and its accepted answers (each printed within ``text``)."""

    text: str
    answers: list[str]


class _Values:
    """The values of one record document: a :class:`_Gen` plus what was used already, so that several values of
    one type on a document (dates, amounts, names, numbers) all differ and each answer points at one place."""

    def __init__(self, g: _Gen, domain: "_Domain"):
        self.g, self.r, self.domain = g, g.r, domain
        self.anchor = dt.date(2023, 1, 1) + dt.timedelta(days=g.r.randint(0, 1300))
        self.seen: set[str] = set()
        self.dates: dict[str, dt.date] = {}
        self.amounts: dict[str, float] = {}
        self.hours: dict[str, int] = {}
        self.site = ""  # the issuer's word in e-mail addresses and websites
        self.address: tuple[str, str, str] = ("", "", "")  # (street, "city postcode", city) of the address field

    def fresh(self, make: Callable[[], str]) -> str:
        """``make()`` until it gives a value not used on this document (case-insensitive; gives up after 60)."""
        for _ in range(60):
            s = make()
            if s.lower() not in self.seen:
                break
        self.seen.add(s.lower())
        return s

    def person(self) -> tuple[str, str]:
        first = self.fresh(lambda: self.r.choice(FIRST + RECORD_FIRST))
        return first, self.fresh(lambda: self.r.choice(SURNAMES + RECORD_SURNAMES))

    def word(self) -> str:
        return self.fresh(lambda: self.r.choice(_org_words()))

    def city(self) -> str:
        return self.fresh(lambda: self.r.choice(CITIES + RECORD_CITIES))


class _Maker(NamedTuple):
    """How a value type is drawn: its ``family`` (person, date, money ...: distractors are chosen by family) and,
    for picked phrases, the ``options``."""

    family: str
    make: Callable[[_Values, str], _Val]
    options: tuple[str, ...] = ()


def _person(title: str = "") -> _Maker:
    """A person: accepted by surname, and by the full name when printed as "First Last"."""
    def make(v: _Values, key: str) -> _Val:
        first, last = v.person()
        pre, x = (f"{title} " if title else ""), v.r.random()
        if x < 0.55:
            return _Val(f"{pre}{first} {last}", [last, f"{first} {last}"])
        if x < 0.7:
            return _Val(f"{last.upper()}, {first}", [last])
        if x < 0.85:
            return _Val(f"{pre}{first[0]}. {last}", [last])
        return _Val(f"{pre}{first} {last.upper()}", [last, f"{first} {last}"])
    return _Maker("person", make)


def _org(*suffixes: str, place: bool = False) -> _Maker:
    """An organisation "<word> <suffix>" (or "<city> <suffix>"), accepted by its distinctive word."""
    def make(v: _Values, key: str) -> _Val:
        word = v.city() if place else v.word()
        text = f"{word} {v.r.choice(suffixes)}"
        return _Val(text.upper() if v.r.random() < 0.25 else text, [word])
    return _Maker("org", make)


def _issuer() -> _Maker:
    """The organisation that issued the document, named like the document's domain."""
    def make(v: _Values, key: str) -> _Val:
        d = v.domain
        val = _org(*d.issuer, place=d.place_issuer).make(v, key)
        v.site = re.sub(r"[^a-z]", "", val.answers[0].lower())
        return val
    return _Maker("org", make)


def _date(lo: int, hi: int, after: str | None = None) -> _Maker:
    """A date ``lo``..``hi`` days after the document's date (or after field ``after``'s date when printed)."""
    def make(v: _Values, key: str) -> _Val:
        base = v.dates.get(after, v.anchor) if after else v.anchor
        for _ in range(60):
            d = base + dt.timedelta(days=v.r.randint(lo, hi))
            text = v.g.fmt_date(d)
            if text.lower() not in v.seen:
                break
        v.seen.add(text.lower())
        v.dates[key] = d
        return _Val(text, [text])
    return _Maker("date", make)


def _time(lo: int = 7, hi: int = 21, after: str | None = None) -> _Maker:
    """A time of day between ``lo`` and ``hi`` o'clock (later than field ``after``'s time when printed)."""
    def make(v: _Values, key: str) -> _Val:
        start = min(hi, max(lo, v.hours[after] + 1)) if after in v.hours else lo
        t = v.fresh(lambda: v.g.time(start, hi))
        hour = int(t.split(":")[0])
        v.hours[key] = hour % 12 + (12 if t.endswith("PM") else 0) if t.endswith(("AM", "PM")) else hour
        return _Val(t, [t])
    return _Maker("time", make)


def _money(lo: float, hi: float, of: str | None = None, share: tuple[float, float] = (0.6, 0.85)) -> _Maker:
    """An amount printed with the document's currency, accepted as the number ('12.50'); with ``of``, a share of
    that field's amount when it is printed (net pay below gross pay)."""
    def make(v: _Values, key: str) -> _Val:
        if of and of in v.amounts:
            value = f"{v.amounts[of] * v.r.uniform(*share):.2f}"
            v.g._used_money.add(value)
        else:
            value = v.g.money(lo, hi)
        v.amounts[key] = float(value)
        return _Val(v.g.cash(value), [value])
    return _Maker("money", make)


def _code(*patterns: str, prefix: str = "") -> _Maker:
    """A code from one of ``patterns`` (see :meth:`_Gen.code`: 'A' letter, '9' digit, '8' digit 2-9) after a
    literal ``prefix``."""
    return _Maker("code", lambda v, key: _Val(c := v.fresh(lambda: prefix + v.g.code(v.r.choice(patterns))), [c]))


def _count(lo: int, hi: int, unit: str = "") -> _Maker:
    """A whole number (with a unit word after it), accepted as the number."""
    def make(v: _Values, key: str) -> _Val:
        n = v.fresh(lambda: str(v.r.randint(lo, hi)))
        return _Val(f"{n} {unit}" if unit else n, [n])
    return _Maker("number", make)


def _qty(lo: float, hi: float, unit: str, decimals: int = 1) -> _Maker:
    """A measured quantity '12.5 kg', accepted as the number."""
    def make(v: _Values, key: str) -> _Val:
        n = v.fresh(lambda: f"{v.r.uniform(lo, hi):.{decimals}f}")
        return _Val(f"{n} {unit}", [n])
    return _Maker("number", make)


def _pct(lo: float, hi: float, decimals: int = 0) -> _Maker:
    def make(v: _Values, key: str) -> _Val:
        n = v.fresh(lambda: f"{v.r.uniform(lo, hi):.{decimals}f}")
        return _Val(f"{n}%", [n])
    return _Maker("percent", make)


def _pick(*options: str) -> _Maker:
    """A short word or phrase (a status, a type, a category), accepted as printed."""
    return _Maker("phrase", lambda v, key: _Val(p := v.fresh(lambda: v.r.choice(options)), [p]), options)


def _city() -> _Maker:
    return _Maker("place", lambda v, key: _Val(c := v.city(), [c]))


def _street() -> _Maker:
    """A street line '12 Mill Lane', accepted as printed."""
    def make(v: _Values, key: str) -> _Val:
        s = v.fresh(lambda: f"{v.r.randint(2, 240)} {v.r.choice(STREETS + RECORD_STREETS)}")
        return _Val(s, [s])
    return _Maker("address", make)


def _address() -> _Maker:
    """The issuer's or holder's address: printed as 'street, city' in a row or as two lines in a block; accepted
    as the street line."""
    def make(v: _Values, key: str) -> _Val:
        street = _street().make(v, key).text
        city = v.city()
        v.address = (street, f"{city} {v.g.code(v.r.choice(['89999', '8999', 'AA8 9AA']))}", city)
        return _Val(f"{street}, {city}", [street])
    return _Maker("address", make)


def _phone() -> _Maker:
    return _Maker("phone", lambda v, key: _Val(p := v.fresh(v.g.phone), [p]))


def _email() -> _Maker:
    def make(v: _Values, key: str) -> _Val:
        site = v.site or v.word().lower()
        box = v.r.choice(["info", "contact", "hello", "office", "bookings", "support", "accounts", "admin"])
        e = f"{box}@{site}{v.r.choice(['.com', '.org', '.net', '.co.uk', '-group.com'])}"
        return _Val(e, [e])
    return _Maker("email", make)


def _website() -> _Maker:
    def make(v: _Values, key: str) -> _Val:
        site = v.site or v.word().lower()
        w = f"{v.r.choice(['www.', 'www.', ''])}{site}{v.r.choice(['.com', '.org', '.net', '.co.uk', '.eu'])}"
        return _Val(w, [w])
    return _Maker("web", make)


def _ip() -> _Maker:
    def make(v: _Values, key: str) -> _Val:
        ip = v.fresh(lambda: v.r.choice([f"10.{v.r.randint(0, 254)}", "192.168", f"172.{v.r.randint(16, 31)}"])
                     + f".{v.r.randint(0, 254)}.{v.r.randint(2, 254)}")
        return _Val(ip, [ip])
    return _Maker("code", make)


def _nights() -> _Maker:
    """Nights of a stay: the days between check-in and check-out when both are printed."""
    def make(v: _Values, key: str) -> _Val:
        if "check_in" in v.dates and "check_out" in v.dates:
            n = str((v.dates["check_out"] - v.dates["check_in"]).days)
            v.seen.add(n)
            return _Val(f"{n} {'night' if n == '1' else 'nights'}", [n])
        return _count(1, 14, "nights").make(v, key)
    return _Maker("number", make)


class _Field(NamedTuple):
    """A field of the catalogue: label variants, its value type, and questions — first the direct one from the
    label, then paraphrases without the label's words. ``{noun}`` is the issuer's noun of the domain."""

    key: str
    domain: str
    labels: tuple[str, ...]
    value: _Maker
    questions: tuple[str, ...]


def _F(key: str, labels: str, value: _Maker, *questions: str) -> _Field:
    """A field; ``labels`` separated by '|'. The domain is filled in by :func:`_D`."""
    return _Field(key, "", tuple(labels.split("|")), value, questions)


class _Domain(NamedTuple):
    """A domain of documents: titles, the issuing organisation (name suffixes, what questions call it), the field
    naming the person the document is about, a big date/time line, billable lines, scheduled things, tables that
    fit, and its fields."""

    name: str
    titles: tuple[str, ...]
    bill_titles: tuple[str, ...]
    issuer: tuple[str, ...]
    noun: str
    subject: str
    when: tuple[str, str] | None
    items: tuple[tuple[str, float, float], ...]
    sessions: tuple[str, ...]
    tables: tuple[str, ...]
    fields: tuple[_Field, ...]
    place_issuer: bool = False


def _D(name: str, *, titles: str, bill_titles: str, issuer: str, noun: str, subject: str,
       when: tuple[str, str] | None = None, items: Sequence[tuple[str, float, float]] = (), sessions: str = "",
       tables: str = "", place_issuer: bool = False, fields: Sequence[_Field]) -> _Domain:
    """A domain; ``titles``, ``bill_titles``, ``issuer``, ``sessions`` and ``tables`` separated by '|'."""
    split = lambda s: tuple(x for x in s.split("|") if x)  # noqa: E731
    return _Domain(name, split(titles), split(bill_titles), split(issuer), noun, subject, when, tuple(items),
                   split(sessions), split(tables), tuple(f._replace(domain=name) for f in fields), place_issuer)


#: fields any record may carry (the issuer, its contact details, a reference and the document's date): printed
#: with labels or as unlabelled blocks (an organisation line, a contact block, an address block, a date line)
_GENERAL_FIELDS: tuple[_Field, ...] = tuple(f._replace(domain="general") for f in (
    _F("issuer", "Issued by|From|Provider|Company", _issuer(),
       "Which {noun} issued this document?", "What is the name of the {noun}?", "Who is this document from?",
       "Which organisation sent this?"),
    _F("issue_date", "Date|Issue date|Date issued|Dated", _date(0, 0),
       "What is the date of this document?", "When was this issued?", "On what day was this document written?"),
    _F("reference", "Reference|Ref.|Our ref.|Reference no.", _code("AA-999999", "999-99999", "AAA/9999/99"),
       "What is the reference number?", "Which reference should be quoted?", "What number identifies this document?"),
    _F("phone", "Phone|Tel|Telephone|Helpline", _phone(),
       "What is the phone number?", "What number can I call?", "How can they be reached by phone?"),
    _F("email", "Email|E-mail|Contact email", _email(),
       "What is the email address?", "Where can I send an email?", "Which email address is given?"),
    _F("website", "Website|Web|Online", _website(),
       "What is the website?", "Which web address is printed?", "Where can I find them online?"),
    _F("address", "Address|Office|Location", _address(),
       "What is the address?", "Where are they located?", "What street address is given?"),
))

_DOMAINS: tuple[_Domain, ...] = (
    _D("travel", titles="BOOKING CONFIRMATION|Travel Itinerary|Journey Details|Coach Reservation|Ferry Booking",
       bill_titles="Fare Summary|Booking Receipt", issuer="Airways|Rail|Ferries|Coaches|Travel|Tours",
       noun="travel company", subject="traveller", when=("travel_date", "departure_time"),
       items=[("Adult fare", 20, 300), ("Child fare", 10, 150), ("Seat reservation", 3, 25), ("Extra bag", 15, 60),
              ("Travel insurance", 8, 45), ("Booking fee", 2, 12), ("Priority boarding", 5, 30)],
       tables="timetable|order|contacts", fields=[
           _F("traveller", "Passenger|Traveller|Passenger name|Lead traveller", _person(),
              "Who is the passenger?", "Who is travelling?", "Whose booking is this?"),
           _F("booking_ref", "Booking reference|Booking ref.|PNR|Reservation code", _code("AAA8A9", "A8A8AA"),
              "What is the booking reference?", "What code confirms this reservation?",
              "Which reference should be quoted to change the trip?"),
           _F("origin", "From|Origin|Departing from|Departure station", _city(),
              "What is the departure city?", "Where does the journey start?",
              "Which city does the traveller leave from?"),
           _F("destination", "To|Destination|Arriving at|Arrival station", _city(),
              "What is the destination?", "Where is the traveller going?", "Which city does the trip end in?"),
           _F("travel_date", "Travel date|Date of travel|Outbound|Departure date", _date(3, 120),
              "What is the travel date?", "When is the trip?", "On which day does the journey take place?"),
           _F("departure_time", "Departs|Departure time|Dep.|Leaves at", _time(5, 22),
              "What is the departure time?", "When does the journey begin?", "At what time does the service leave?"),
           _F("arrival_time", "Arrives|Arrival time|Arr.|Due in", _time(6, 23, after="departure_time"),
              "What is the arrival time?", "When does the traveller get there?", "At what time is arrival expected?"),
           _F("seat", "Seat|Seat no.|Seat number|Reserved seat", _code("98A", "8A", "A98"),
              "What is the seat number?", "Where will the passenger sit?", "Which seat is assigned?"),
           _F("fare", "Fare|Ticket price|Total fare|Price paid", _money(20, 400),
              "What is the fare?", "How much did the trip cost?", "How much was paid for the ticket?"),
           _F("baggage", "Baggage allowance|Luggage|Checked bag|Hold baggage", _count(7, 32, "kg"),
              "What is the baggage allowance?", "How much luggage can be taken?",
              "How many kilograms of baggage are allowed?"),
           _F("service_number", "Service|Service no.|Flight|Train no.", _code("AA 899", "AA899", "9899"),
              "What is the service number?", "Which flight or train is it?", "What number does the service have?"),
           _F("travel_class", "Class|Travel class|Fare class|Cabin", _pick("Economy", "Standard", "First", "Business",
                                                                           "Premium economy"),
              "What is the travel class?", "In which class does the passenger travel?", "What cabin was booked?"),
       ]),
    _D("healthcare", titles="PATIENT VISIT SUMMARY|Appointment Confirmation|Discharge Summary|Patient Record|"
                            "Referral Letter|Clinic Visit Notes",
       bill_titles="Statement of Charges|Patient Account", issuer="Medical Centre|Clinic|Health Centre|Hospital|"
                                                                  "Family Practice",
       noun="clinic", subject="patient", when=("visit_date", "appointment_time"),
       items=[("Consultation", 40, 180), ("Blood test", 15, 60), ("X-ray", 60, 220), ("Physiotherapy session", 35, 90),
              ("Vaccination", 20, 70), ("ECG", 40, 150), ("Dressing change", 10, 35), ("Ultrasound scan", 80, 260)],
       sessions="Blood test|Physiotherapy|Ultrasound scan|Eye test|Hearing test|Nurse review|Dietitian",
       tables="lab|schedule|roster", fields=[
           _F("patient", "Patient|Patient name|Name of patient|PATIENT", _person(),
              "Who is the patient?", "What is the patient's name?", "Which person was seen?"),
           _F("patient_id", "Patient ID|MRN|Hospital no.|Patient number", _code("AA999999", "9999999", "99-999-999"),
              "What is the patient ID?", "Which number identifies the patient?",
              "What is the patient's record number?"),
           _F("date_of_birth", "Date of birth|DOB|Born|Birth date", _date(-30000, -6600),
              "What is the date of birth?", "When was the patient born?", "What is the patient's birthday?"),
           _F("visit_date", "Visit date|Date of visit|Seen on|Appointment date", _date(-20, 0),
              "What is the visit date?", "When was the patient seen?", "On what day did the visit take place?"),
           _F("appointment_time", "Time|Appointment time|Arrive at|Slot", _time(8, 17),
              "What is the appointment time?", "At what time should the patient arrive?",
              "When is the appointment slot?"),
           _F("physician", "Physician|Doctor|Attending|Seen by|Consultant", _person("Dr."),
              "Who is the physician?", "Which doctor saw the patient?", "Who treated the patient?"),
           _F("department", "Department|Specialty|Unit|Service", _pick("Cardiology", "Dermatology", "Orthopaedics",
                                                                       "Neurology", "Radiology", "Paediatrics",
                                                                       "Physiotherapy", "Audiology"),
              "What is the department?", "Which speciality was the visit in?", "Which unit handled the visit?"),
           _F("follow_up", "Follow-up|Next appointment|Review date|Return visit", _date(14, 120, after="visit_date"),
              "When is the follow-up?", "When should the patient come back?",
              "What is the date of the next appointment?"),
           _F("weight", "Weight|Body weight|Wt", _count(45, 110, "kg"),
              "What is the patient's weight?", "How much does the patient weigh?", "How heavy is the patient?"),
           _F("temperature", "Temperature|Temp.|Body temp", _qty(36.1, 38.9, "°C"),
              "What was the temperature?", "What temperature was measured?", "How warm was the patient's body?"),
           _F("room", "Room|Exam room|Ward|Bay", _code("A89", "89", "A-8"),
              "What is the room number?", "Where should the patient go?", "Which room or ward is given?"),
       ]),
    _D("banking", titles="ACCOUNT STATEMENT|Loan Agreement Summary|Payment Confirmation|Transfer Receipt|"
                         "Account Opening Confirmation",
       bill_titles="Schedule of Fees|Account Charges", issuer="Bank|Savings|Credit Union|Building Society|Finance",
       noun="bank", subject="account_holder",
       items=[("Account fee", 2, 15), ("Overdraft interest", 1, 40), ("Card replacement", 5, 20),
              ("International transfer", 3, 30), ("Cash withdrawal fee", 1, 6), ("Arrangement fee", 50, 300)],
       tables="transactions|due", fields=[
           _F("account_holder", "Account holder|Account name|Customer|Name", _person(),
              "Who is the account holder?", "Whose account is this?", "In whose name is the account held?"),
           _F("account_number", "Account number|Account no.|Acct #|ACCOUNT", _code("99999999", "9999 9999",
                                                                                   "99-9999-9999"),
              "What is the account number?", "Which account is this for?", "What number identifies the account?"),
           _F("sort_code", "Sort code|Branch code|Routing no.", _code("99-99-99", "999999999"),
              "What is the sort code?", "Which branch code is given?", "What code identifies the branch?"),
           _F("iban", "IBAN|Int. account no.", _code("AA99 9999 9999 9999 99", "AA99 AAAA 9999 9999 9999"),
              "What is the IBAN?", "What is the international account number?", "Which IBAN should payments go to?"),
           _F("opening_balance", "Opening balance|Balance brought forward|Previous balance|Start balance",
              _money(100, 9000),
              "What is the opening balance?", "How much was in the account at the start?",
              "What was the balance at the beginning of the period?"),
           _F("closing_balance", "Closing balance|Balance carried forward|New balance|End balance", _money(100, 9000),
              "What is the closing balance?", "How much is in the account at the end?",
              "What was the balance at the end of the period?"),
           _F("interest_rate", "Interest rate|Rate|APR|AER", _pct(0.5, 9.9, 2),
              "What is the interest rate?", "What rate of interest applies?",
              "How much interest is charged, in percent?"),
           _F("payment_date", "Payment date|Paid on|Value date|Transfer date", _date(-30, 0),
              "What is the payment date?", "When was the payment made?", "On which day did the money move?"),
           _F("transfer_amount", "Amount|Transfer amount|Amount paid|Sum", _money(20, 3000),
              "What is the transfer amount?", "How much money was sent?", "How much was transferred?"),
           _F("beneficiary", "Beneficiary|Payee|Paid to|Recipient", _person(),
              "Who is the beneficiary?", "Who received the money?", "To whom was the payment made?"),
           _F("loan_term", "Term|Loan term|Duration|Repayment period", _count(12, 360, "months"),
              "What is the loan term?", "How many months does the loan run?", "How long is the loan?"),
           _F("instalment", "Monthly instalment|Monthly payment|Repayment|Instalment", _money(80, 1500),
              "What is the monthly instalment?", "How much is paid each month?", "How much is each repayment?"),
       ]),
    _D("retail", titles="ORDER CONFIRMATION|Order Summary|Returns Form|Delivery Note|Customer Order",
       bill_titles="Order Receipt|Sales Receipt|Your Purchase", issuer="Store|Outlet|Home|Emporium|Stores",
       noun="store", subject="customer",
       items=[("Desk lamp", 15, 80), ("Bath towel set", 12, 45), ("Running shoes", 40, 150), ("Wireless mouse", 10, 50),
              ("Coffee grinder", 25, 120), ("Backpack", 20, 90), ("Phone case", 8, 30), ("Throw blanket", 18, 60)],
       tables="order|stock", fields=[
           _F("customer", "Customer|Bill to|Ordered by|Customer name", _person(),
              "Who is the customer?", "Who placed the order?", "Whose order is this?"),
           _F("order_number", "Order number|Order no.|Order #|ORDER ID", _code("99999999", "AA-999999", "9999-AA99"),
              "What is the order number?", "Which order is this?", "What number identifies the order?"),
           _F("order_date", "Order date|Ordered on|Date of order|Placed", _date(-40, 0),
              "What is the order date?", "When was the order placed?", "On what day was it ordered?"),
           _F("delivery_date", "Delivery date|Estimated delivery|Arrives by|Expected", _date(2, 14, after="order_date"),
              "What is the delivery date?", "When will the order arrive?", "By when should it be delivered?"),
           _F("payment_method", "Payment method|Paid with|Payment|Tender", _pick("Visa", "Mastercard", "PayPal", "Cash",
                                                                                 "Gift card", "Bank transfer"),
              "What is the payment method?", "How was the order paid?", "Which payment type was used?"),
           _F("items_count", "Items|Number of items|Units|Qty", _count(1, 24),
              "What is the number of items?", "How many items were ordered?", "How many things are in the order?"),
           _F("discount_pct", "Discount|Promo|Savings|Member discount", _pct(5, 40),
              "What is the discount?", "What percentage was taken off?", "How big is the discount in percent?"),
           _F("loyalty_points", "Points earned|Loyalty points|Reward points", _count(50, 4800),
              "How many loyalty points were earned?", "How many reward points does this order give?",
              "What is the number of points collected?"),
           _F("store_number", "Store|Store no.|Branch|Shop no.", _code("899", "9899"),
              "What is the store number?", "Which store handled it?", "What number does the branch have?"),
           _F("return_by", "Return by|Returns until|Last return date", _date(14, 60, after="order_date"),
              "What is the return deadline?", "Until when can the items be returned?",
              "By what date must returns be made?"),
       ]),
    _D("employment", titles="PAYSLIP|Employment Contract Summary|Leave Request|Timesheet|Offer of Employment|"
                            "Staff Record",
       bill_titles="Expense Claim|Expenses Summary", issuer="Group|Industries|Services|Holdings|Solutions",
       noun="employer", subject="employee",
       items=[("Train tickets", 20, 180), ("Hotel night", 60, 200), ("Client lunch", 15, 90), ("Taxi", 8, 60),
              ("Conference fee", 80, 600), ("Mileage", 10, 120)],
       sessions="Induction|Safety training|First aid course|Team meeting|Appraisal|Fire drill",
       tables="roster|schedule|contacts", fields=[
           _F("employee", "Employee|Employee name|Staff member|Name", _person(),
              "Who is the employee?", "Which member of staff is this about?", "What is the employee's name?"),
           _F("employee_id", "Employee ID|Staff no.|Payroll number|Emp #", _code("E99999", "999999", "AA-9999"),
              "What is the employee ID?", "What is the staff number?", "Which number identifies the employee?"),
           _F("position", "Position|Job title|Role|Post", _pick("Warehouse Supervisor", "Staff Nurse", "Line Cook",
                                                              "Lab Technician", "Payroll Clerk", "Store Manager",
                                                              "Bus Driver", "Electrician", "Receptionist",
                                                              "Civil Engineer"),
              "What is the position?", "What job does the person do?", "What is the employee's role?"),
           _F("work_department", "Department|Dept.|Team|Division", _pick("Finance", "Operations", "Customer Service",
                                                                         "Maintenance", "Human Resources", "Research",
                                                                         "Logistics", "Marketing"),
              "What is the department?", "Which team does the employee work in?", "What division is the person in?"),
           _F("start_date", "Start date|Date joined|Employed since|Commencement", _date(-3000, 60),
              "What is the start date?", "When did the employee start?", "Since when has the person worked there?"),
           _F("gross_pay", "Gross pay|Gross salary|Total earnings|Gross", _money(1200, 7000),
              "What is the gross pay?", "How much was earned before deductions?",
              "What are the total earnings before tax?"),
           _F("net_pay", "Net pay|Take-home pay|Net amount|Net", _money(900, 5000, of="gross_pay"),
              "What is the net pay?", "How much does the employee take home?", "What is paid out after deductions?"),
           _F("pay_date", "Pay date|Payment date|Paid on", _date(0, 10),
              "What is the pay date?", "When is the salary paid?", "On what day does the money arrive?"),
           _F("hours_worked", "Hours worked|Total hours|Hours", _qty(20, 180, "hours"),
              "What is the number of hours worked?", "How many hours were worked?",
              "How long did the employee work in this period?"),
           _F("manager", "Manager|Line manager|Supervisor|Approved by", _person(),
              "Who is the manager?", "Who supervises the employee?", "Who approved it?"),
           _F("leave_days", "Leave balance|Holiday remaining|Annual leave", _count(2, 30, "days"),
              "What is the leave balance?", "How many days of holiday are left?", "How much annual leave remains?"),
       ]),
    _D("education", titles="STUDENT RECORD|Enrolment Confirmation|Exam Timetable|Transcript|Course Registration|"
                           "Report Card",
       bill_titles="Fee Statement|Tuition Invoice Summary", issuer="College|Academy|University|School|Institute",
       noun="school", subject="student",
       items=[("Tuition fee", 800, 6000), ("Registration fee", 30, 150), ("Lab materials", 20, 120),
              ("Field trip", 15, 200), ("Textbooks", 25, 180), ("Exam fee", 20, 140)],
       sessions="Induction|Statistics lecture|Chemistry lab|Essay tutorial|Final exam|Field trip|Careers talk",
       tables="grades|schedule|due", fields=[
           _F("student", "Student|Student name|Learner|Pupil", _person(),
              "Who is the student?", "Which student is this about?", "What is the student's name?"),
           _F("student_number", "Student number|Student ID|Matric no.|ID", _code("99999999", "A9999999", "99-9999"),
              "What is the student number?", "What ID does the student have?", "Which number identifies the student?"),
           _F("course", "Course|Programme|Degree|Subject", _pick("Applied Mathematics", "Marine Biology",
                                                                "Mechanical Engineering", "Art History",
                                                                "Business Studies", "Computer Science", "Nursing",
                                                                "Modern Languages", "Architecture", "Economics"),
              "What is the course?", "What is the student studying?", "Which programme is the student enrolled in?"),
           _F("module_code", "Module code|Course code|Unit code", _code("AAA999", "AA9999"),
              "What is the module code?", "Which code identifies the module?", "What unit code is given?"),
           _F("grade", "Grade|Classification|Award|Result", _pick("Distinction", "Merit", "Pass", "First class",
                                                                 "Upper second", "Credit", "High distinction"),
              "What is the grade?", "What result did the student get?", "How was the work graded?"),
           _F("mark", "Mark|Score|Final mark|Percentage", _pct(40, 98),
              "What is the mark?", "What score did the student achieve?", "What percentage was scored?"),
           _F("credits", "Credits|Credit points|ECTS", _count(5, 60),
              "How many credits is it worth?", "What is the number of credit points?",
              "How many credits does it carry?"),
           _F("term", "Term|Semester|Session|Period", _pick("Spring term", "Autumn term", "Semester 1", "Semester 2",
                                                          "Summer term", "Winter term"),
              "What is the term?", "In which semester does it take place?", "What teaching period is given?"),
           _F("tutor", "Tutor|Supervisor|Adviser|Lecturer", _person(),
              "Who is the tutor?", "Who teaches or supervises the student?", "Which member of staff is the adviser?"),
           _F("exam_date", "Exam date|Examination|Assessment date", _date(10, 120),
              "What is the exam date?", "When is the exam?", "On what day is the assessment?"),
           _F("exam_room", "Room|Exam room|Venue|Location", _code("A-899", "A899", "Hall 8"),
              "What is the exam room?", "Where is the exam held?", "Which room should the student go to?"),
       ]),
    _D("events", titles="BOOKING CONFIRMATION|Event Registration|Entry Pass|Attendee Badge|Guest List Entry",
       bill_titles="Ticket Order|Order Confirmation", issuer="Arena|Playhouse|Festival|Events|Concert Hall|Stadium",
       noun="venue", subject="attendee", when=("event_date", "start_time"),
       items=[("Standard ticket", 15, 90), ("VIP upgrade", 30, 150), ("Parking pass", 5, 25), ("Programme", 3, 12),
              ("Booking fee", 1.5, 8), ("Cloakroom", 2, 6)],
       sessions="Keynote|Workshop|Panel debate|Networking lunch|Closing show|Meet the artist",
       tables="schedule|order|contacts", fields=[
           _F("attendee", "Attendee|Ticket holder|Guest|Name", _person(),
              "Who is the attendee?", "Whose booking is this?", "Who will attend?"),
           _F("event_name", "Event|Event name|Show|Programme", _org("Festival", "Gala", "Expo", "Symposium",
                                                                   "Showcase", "Open Air"),
              "What is the event?", "Which event is the booking for?", "What is the name of the event?"),
           _F("event_date", "Event date|Date of event|Show date|Date", _date(5, 200),
              "What is the event date?", "When is the event?", "On which day does the event take place?"),
           _F("doors_open", "Doors|Doors open|Entry from|Admission from", _time(16, 19),
              "What time do doors open?", "From when can guests enter?", "When does admission start?"),
           _F("start_time", "Starts|Start time|Show starts|Begins", _time(18, 22, after="doors_open"),
              "What is the start time?", "When does the show begin?", "At what time does it start?"),
           _F("ticket_type", "Ticket type|Admission|Category|Tier", _pick("General admission", "VIP", "Standing",
                                                                          "Balcony", "Early bird", "Family",
                                                                          "Student", "Weekend pass"),
              "What is the ticket type?", "What kind of ticket is it?", "Which admission category was bought?"),
           _F("ticket_count", "Tickets|Quantity|No. of tickets|Admits", _count(1, 8),
              "What is the number of tickets?", "How many tickets were booked?",
              "How many people does the booking admit?"),
           _F("section", "Section|Block|Zone|Area", _code("A9", "A99", "9A"),
              "What is the section?", "Which block is the seat in?", "In which area of the venue is the place?"),
           _F("order_total", "Total paid|Order total|Amount|Total", _money(20, 480),
              "What was the total paid?", "How much did the tickets cost altogether?",
              "How much was paid for the booking?"),
           _F("organiser", "Organiser|Promoter|Presented by|Host", _org("Promotions", "Productions", "Events",
                                                                       "Entertainment"),
              "Who is the organiser?", "Who is putting on the event?", "Which company presents it?"),
       ]),
    _D("logistics", titles="DELIVERY NOTE|Goods Received Note|Consignment Note|Pick List|Dispatch Advice|"
                           "Warehouse Transfer",
       bill_titles="Freight Charges|Carriage Statement", issuer="Logistics|Freight|Haulage|Distribution|Cargo",
       noun="carrier", subject="driver",
       items=[("Pallet freight", 40, 400), ("Fuel surcharge", 5, 80), ("Tail lift", 15, 60),
              ("Storage (week)", 20, 150), ("Customs handling", 25, 120), ("Insurance cover", 5, 50)],
       tables="stock|order|contacts", fields=[
           _F("consignment", "Consignment no.|Tracking number|Shipment ID|Waybill",
              _code("AA999999999AA", "9999 9999 9999", "AA-99999999"),
              "What is the consignment number?", "Which number tracks the shipment?",
              "What code should be used to follow the goods?"),
           _F("dispatch_date", "Dispatched|Dispatch date|Shipped on|Collected", _date(-10, 0),
              "What is the dispatch date?", "When were the goods sent?", "On what day was it shipped?"),
           _F("delivery_due", "Delivery due|ETA|Expected delivery|Due", _date(1, 10, after="dispatch_date"),
              "When is delivery due?", "When should the goods arrive?", "What is the expected arrival date?"),
           _F("gross_weight", "Gross weight|Weight|Total weight|Gross wt", _count(5, 2400, "kg"),
              "What is the gross weight?", "How much does the shipment weigh?", "How heavy is the consignment?"),
           _F("pallets", "Pallets|No. of pallets|Pallet count", _count(1, 26),
              "What is the number of pallets?", "How many pallets are in the shipment?", "What is the pallet count?"),
           _F("cartons", "Cartons|Packages|Pieces|Boxes", _count(27, 140),
              "How many cartons are there?", "How many packages were sent?", "What is the number of pieces?"),
           _F("dock", "Dock|Dock door|Bay|Loading door", _code("D8", "D89", "B-8"),
              "Which dock is it?", "Where should the truck unload?", "Which loading door is assigned?"),
           _F("bin_location", "Bin|Location|Storage location|Slot", _code("A-89-9", "A89-9A", "AA-99-89"),
              "What is the bin location?", "Where is the stock stored?", "Which shelf location is given?"),
           _F("driver", "Driver|Collected by|Haulier contact", _person(),
              "Who is the driver?", "Who collected or drove the goods?", "What is the driver's name?"),
           _F("seal_number", "Seal no.|Seal|Container seal", _code("9999999", "AA999999"),
              "What is the seal number?", "Which seal is on the container?", "What number does the seal carry?"),
           _F("received_by", "Received by|Signed for by|Checked by", _person(),
              "Who received the goods?", "Who signed for the delivery?", "Which person checked the goods in?"),
       ]),
    _D("motoring", titles="VEHICLE SERVICE REPORT|Rental Agreement|Inspection Certificate|Repair Estimate|"
                          "Vehicle Handover|Service History",
       bill_titles="Repair Bill|Service Charges", issuer="Motors|Garage|Auto Centre|Car Hire|Tyres|Autos",
       noun="garage", subject="vehicle_owner",
       items=[("Oil change", 30, 90), ("Brake pads", 45, 180), ("Air filter", 10, 40), ("Wiper blades", 12, 35),
              ("Labour", 50, 400), ("Tyre (each)", 50, 180), ("Inspection fee", 30, 80)],
       tables="order|contacts", fields=[
           _F("vehicle_owner", "Owner|Customer|Hirer|Registered keeper", _person(),
              "Who is the vehicle owner?", "Whose car is it?", "Who is the customer for the vehicle?"),
           _F("registration", "Registration|Reg. no.|Plate|Licence plate", _code("AA99 AAA", "AA-999-AA", "999-AAA"),
              "What is the registration?", "What number plate does the vehicle have?",
              "Which vehicle registration is given?"),
           _F("vin", "VIN|Chassis no.|Vehicle ID", _code("AAA9A99A9AA999999", "AA9AAA99999999999"),
              "What is the VIN?", "What is the chassis number?", "Which identification number does the vehicle have?"),
           _F("odometer", "Mileage|Odometer|Km reading|Reading", _count(8000, 190000, "km"),
              "What is the odometer reading?", "How far has the vehicle been driven?",
              "How many kilometres are on the clock?"),
           _F("service_date", "Service date|Date of service|Serviced on|Work date", _date(-30, 0),
              "What is the service date?", "When was the vehicle serviced?", "On which day was the work done?"),
           _F("next_service", "Next service|Service due|Next inspection", _date(180, 400, after="service_date"),
              "When is the next service?", "When should the vehicle be serviced again?",
              "By what date is the next inspection due?"),
           _F("technician", "Technician|Mechanic|Inspector|Serviced by", _person(),
              "Who is the technician?", "Who worked on the vehicle?", "Which mechanic did the job?"),
           _F("fuel_type", "Fuel|Fuel type|Engine", _pick("Petrol", "Diesel", "Electric", "Hybrid", "LPG"),
              "What is the fuel type?", "What does the vehicle run on?", "Which kind of fuel does it use?"),
           _F("labour_hours", "Labour|Labour hours|Hours", _qty(0.5, 9.5, "h"),
              "How many labour hours were charged?", "How long did the work take?", "What is the labour time?"),
           _F("pickup_city", "Pick-up|Collection point|Pick-up location", _city(),
              "What is the pick-up location?", "Where is the car collected?", "In which town does the rental start?"),
           _F("return_date", "Return date|Return by|Drop-off", _date(1, 21),
              "What is the return date?", "When must the car be returned?", "By what day is the vehicle due back?"),
           _F("daily_rate", "Daily rate|Rate per day|Day rate", _money(19, 140),
              "What is the daily rate?", "How much does it cost per day?", "What is charged for each day?"),
       ]),
    _D("telecom", titles="MONTHLY STATEMENT|Mobile Plan Summary|Meter Reading Card|Service Agreement|Usage Summary|"
                         "Broadband Order",
       bill_titles="Your Bill|Charges This Month", issuer="Telecom|Mobile|Networks|Fibre|Connect|Utilities",
       noun="provider", subject="subscriber_name",
       items=[("Monthly plan", 8, 60), ("Roaming", 2, 40), ("Extra data", 5, 25), ("Handset instalment", 10, 45),
              ("Premium calls", 1, 15), ("Router rental", 3, 9)],
       tables="usage|due", fields=[
           _F("subscriber_name", "Customer|Account holder|Name|Bill payer", _person(),
              "Who is the customer?", "Whose line is this?", "Who pays for this service?"),
           _F("mobile_number", "Mobile number|Your number|Line|Phone number", _phone(),
              "What is the mobile number?", "Which phone line is this for?", "What number is the plan for?"),
           _F("customer_number", "Customer number|Customer ID|Account ref.", _code("99999999", "AA-9999999"),
              "What is the customer number?", "Which customer reference is given?",
              "What number identifies the customer?"),
           _F("plan", "Plan|Tariff|Package|Bundle", _pick("Unlimited Plus", "Essentials 20", "Family Share",
                                                        "Fibre 500", "SIM Only 30", "Basic Talk"),
              "What is the plan?", "Which tariff is the customer on?", "What package was chosen?"),
           _F("data_allowance", "Data allowance|Data|Included data", _count(5, 200, "GB"),
              "What is the data allowance?", "How much data is included?", "How many gigabytes come with the plan?"),
           _F("data_used", "Data used|Usage|Used this month", _qty(0.5, 180, "GB"),
              "How much data was used?", "What is the data usage?", "How many gigabytes were used?"),
           _F("minutes_used", "Minutes used|Call minutes|Talk time", _count(10, 1500, "min"),
              "How many minutes were used?", "How long were the calls in total?", "What is the talk time used?"),
           _F("monthly_charge", "Monthly charge|Monthly fee|Plan price|Per month", _money(8, 95),
              "What is the monthly charge?", "How much does the plan cost each month?", "What is paid per month?"),
           _F("contract_end", "Contract end|Contract ends|Minimum term until|Ends", _date(90, 720),
              "When does the contract end?", "Until when does the contract run?", "What is the contract end date?"),
           _F("meter_reading", "Meter reading|Reading|Current reading", _code("99999", "999999"),
              "What is the meter reading?", "What number does the meter show?", "What is the current reading?"),
           _F("meter_number", "Meter no.|Meter serial|Meter ID", _code("A99A99999", "99999999"),
              "What is the meter number?", "Which meter is it?", "What is the meter's serial?"),
       ]),
    _D("housing", titles="TENANCY AGREEMENT|Rent Statement|Property Listing|Inventory Check|Rental Application|"
                         "Lease Renewal",
       bill_titles="Rent Statement|Statement of Account", issuer="Lettings|Estates|Property|Homes|Housing",
       noun="agency", subject="tenant",
       items=[("Rent", 450, 3000), ("Service charge", 20, 250), ("Parking space", 20, 150), ("Late fee", 10, 60),
              ("Key replacement", 15, 60), ("Cleaning", 40, 200)],
       tables="due|usage|contacts", fields=[
           _F("tenant", "Tenant|Tenant name|Occupant|Lessee", _person(),
              "Who is the tenant?", "Who lives in the property?", "Who is renting the home?"),
           _F("landlord", "Landlord|Owner|Lessor|Property owner", _person(),
              "Who is the landlord?", "Who owns the property?", "Who is the home rented from?"),
           _F("property_address", "Property|Property address|Premises|Unit address", _street(),
              "What is the property address?", "Where is the property?", "Which street address is being rented?"),
           _F("monthly_rent", "Monthly rent|Rent|Rent per month|Rent pcm", _money(450, 3200),
              "What is the monthly rent?", "How much is the rent each month?", "What does it cost to rent per month?"),
           _F("deposit", "Deposit|Security deposit|Bond", _money(450, 5000),
              "What is the deposit?", "How much is the security deposit?", "How much must be paid up front as a bond?"),
           _F("lease_start", "Lease start|Start of tenancy|Commencement|Move-in", _date(-30, 90),
              "When does the lease start?", "When does the tenancy begin?", "What is the move-in date?"),
           _F("lease_end", "Lease end|End of tenancy|Expiry|Term ends", _date(180, 730, after="lease_start"),
              "When does the lease end?", "Until when does the tenancy run?", "What is the end date of the tenancy?"),
           _F("bedrooms", "Bedrooms|Beds|No. of bedrooms", _count(1, 6),
              "What is the number of bedrooms?", "How many bedrooms does the property have?",
              "How many rooms are there to sleep in?"),
           _F("floor_area", "Floor area|Size|Living area", _count(28, 240, "m²"),
              "What is the floor area?", "How big is the property?", "How many square metres is it?"),
           _F("agent", "Agent|Letting agent|Negotiator|Contact", _person(),
              "Who is the agent?", "Which agent handles the letting?", "Who is the contact at the agency?"),
       ]),
    _D("government", titles="PERMIT|Certificate of Registration|Licence Application|Residence Permit|"
                            "Building Permit|Official Receipt",
       bill_titles="Official Receipt|Fees Paid", issuer="City Council|Borough Council|Licensing Office|"
                                                        "Registry Office|County Council",
       noun="office", subject="applicant", place_issuer=True,
       items=[("Application fee", 20, 300), ("Express processing", 30, 120), ("Photo check", 5, 20),
              ("Postage", 3, 15), ("Certified copy", 8, 40)],
       tables="contacts|due", fields=[
           _F("applicant", "Applicant|Holder|Name of applicant|Permit holder", _person(),
              "Who is the applicant?", "Who applied?", "In whose name is it issued?"),
           _F("permit_number", "Permit no.|Licence number|Certificate no.|Permit number",
              _code("AA/9999/99999", "9999-AA-999", "P-9999999"),
              "What is the permit number?", "Which number does the permit have?",
              "What is the licence or certificate number?"),
           _F("id_number", "ID number|Passport no.|National ID|Document no.", _code("A99999999", "AA999999A",
                                                                                   "999-999-999"),
              "What is the ID number?", "Which identity document number is given?",
              "What is the passport or ID number?"),
           _F("nationality", "Nationality|Citizenship|Nationality of holder", _pick(*_NATIONALITIES),
              "What is the nationality?", "What nationality does the holder have?", "What citizenship is stated?"),
           _F("place_of_birth", "Place of birth|Born in|Birthplace", _city(),
              "What is the place of birth?", "Where was the person born?", "In which city was the applicant born?"),
           _F("valid_from", "Valid from|Effective from|Starts", _date(-10, 30),
              "When is it valid from?", "From what date does it apply?", "When does the validity start?"),
           _F("expiry_date", "Expiry date|Expires|Valid until|Valid to", _date(365, 3650, after="valid_from"),
              "What is the expiry date?", "When does it expire?", "Until when is it valid?"),
           _F("fee_paid", "Fee|Fee paid|Application fee|Charge", _money(15, 480),
              "What was the fee?", "How much did the application cost?", "How much was paid in fees?"),
           _F("case_officer", "Case officer|Processed by|Officer|Issuing officer", _person(),
              "Who is the case officer?", "Who processed the application?", "Which officer handled it?"),
           _F("application_date", "Application date|Applied on|Received", _date(-120, -5),
              "What is the application date?", "When was the application made?", "When was it applied for?"),
       ]),
    _D("insurance", titles="POLICY SCHEDULE|Certificate of Insurance|Claim Acknowledgement|Renewal Notice|"
                           "Cover Summary|Claim Form",
       bill_titles="Premium Breakdown|Cost of Cover", issuer="Insurance|Assurance|Mutual|Underwriters|Cover",
       noun="insurer", subject="policyholder",
       items=[("Buildings cover", 90, 600), ("Contents cover", 50, 400), ("Accidental damage", 20, 120),
              ("Legal expenses", 10, 40), ("Breakdown cover", 30, 140), ("Admin fee", 5, 30)],
       tables="due|contacts", fields=[
           _F("policyholder", "Policyholder|Insured|Policy holder|Name insured", _person(),
              "Who is the policyholder?", "Who is insured?", "In whose name is the policy?"),
           _F("policy_number", "Policy number|Policy no.|Policy #|Certificate", _code("AAA-9999999", "99999999-99",
                                                                                     "AA9999999"),
              "What is the policy number?", "Which policy is this?", "What number identifies the policy?"),
           _F("premium", "Premium|Annual premium|Total premium|Cost of cover", _money(90, 2400),
              "What is the premium?", "How much does the insurance cost?", "What is the price of the cover?"),
           _F("excess", "Excess|Deductible|Voluntary excess", _money(50, 1000),
              "What is the excess?", "How much must the insured pay towards a claim?", "What is the deductible?"),
           _F("cover_start", "Cover start|Start date|Effective date|Inception", _date(-20, 30),
              "When does cover start?", "From what date is the insured covered?",
              "What is the start date of the policy?"),
           _F("renewal_date", "Renewal date|Renews|Cover ends|Expiry", _date(365, 365, after="cover_start"),
              "What is the renewal date?", "When does the policy renew?", "When does the cover end?"),
           _F("cover_type", "Cover|Cover type|Level of cover|Plan", _pick("Comprehensive", "Third party",
                                                                          "Contents only", "Buildings", "Travel",
                                                                          "Pet", "Home and contents"),
              "What is the cover type?", "What kind of cover is it?", "Which level of cover was chosen?"),
           _F("claim_number", "Claim number|Claim ref.|Claim no.", _code("CL-999999", "999999-AA", "AA99999"),
              "What is the claim number?", "Which claim is this about?", "What reference does the claim have?"),
           _F("claim_amount", "Claim amount|Amount claimed|Claimed", _money(150, 9000),
              "What is the claim amount?", "How much is being claimed?", "What sum was claimed?"),
           _F("no_claims", "No-claims bonus|NCB|Claim-free years", _count(1, 15, "years"),
              "What is the no-claims bonus?", "How many years without a claim?",
              "For how many years was nothing claimed?"),
           _F("incident_date", "Incident date|Date of loss|Date of incident", _date(-90, -3),
              "What is the incident date?", "When did the incident happen?", "On what day did the loss occur?"),
       ]),
    _D("hospitality", titles="RESERVATION CONFIRMATION|Guest Folio|Registration Card|Booking Summary|"
                             "Check-out Receipt",
       bill_titles="Guest Folio|Final Bill", issuer="Hotel|Inn|Lodge|Resort|Suites|Guesthouse",
       noun="hotel", subject="guest",
       items=[("Room charge", 60, 420), ("Breakfast", 8, 25), ("Minibar", 4, 45), ("Room service", 12, 70),
              ("Spa treatment", 35, 150), ("Parking", 8, 30), ("Late checkout", 15, 60)],
       sessions="Spa treatment|Guided tour|Wine tasting|Airport transfer|Dinner|Yoga on the terrace",
       tables="schedule|order|roster", fields=[
           _F("guest", "Guest|Guest name|Lead guest|Name", _person(),
              "Who is the guest?", "Whose reservation is this?", "Who is staying?"),
           _F("confirmation_number", "Confirmation no.|Reservation number|Booking no.", _code("99999999", "AA99999",
                                                                                              "9999-9999"),
              "What is the confirmation number?", "Which reservation number is given?",
              "What number confirms the stay?"),
           _F("check_in", "Check-in|Arrival|Arrival date", _date(1, 120),
              "What is the check-in date?", "When does the guest arrive?", "On which day does the stay begin?"),
           _F("check_out", "Check-out|Departure|Departure date", _date(1, 14, after="check_in"),
              "What is the check-out date?", "When does the guest leave?", "On which day does the stay end?"),
           _F("nights", "Nights|Length of stay|No. of nights", _nights(),
              "What is the number of nights?", "How many nights is the stay?", "How long is the guest staying?"),
           _F("hotel_room", "Room|Room no.|Room number", _code("899", "89", "8999"),
              "What is the room number?", "Which room is the guest in?", "Where will the guest sleep?"),
           _F("room_type", "Room type|Accommodation|Room category", _pick("Double", "Twin", "Single", "Family suite",
                                                                          "Deluxe king", "Studio"),
              "What is the room type?", "What kind of room was booked?", "Which room category is it?"),
           _F("nightly_rate", "Rate|Nightly rate|Room rate|Per night", _money(60, 420),
              "What is the nightly rate?", "How much does one night cost?", "What is the price per night?"),
           _F("guests_count", "Guests|Adults|Occupancy|Persons", _count(1, 6),
              "What is the number of guests?", "How many people are staying?", "For how many guests is the room?"),
           _F("checkin_time", "Check-in from|Check-in time|Arrival after", _time(13, 16),
              "What is the check-in time?", "From what time can the guest check in?", "When can the room be taken?"),
           _F("meal_plan", "Board|Meal plan|Meals", _pick("Room only", "Bed and breakfast", "Half board",
                                                        "Full board", "All inclusive"),
              "What is the meal plan?", "Which board basis was booked?", "What meals are included?"),
       ]),
    _D("sports", titles="MEMBERSHIP CARD|Membership Renewal|Class Booking|Club Registration|Fixture Card|"
                        "Personal Training Plan",
       bill_titles="Membership Fees|Club Account", issuer="Fitness|Leisure Centre|Athletic Club|Sports Club|Gym|"
                                                           "Tennis Club",
       noun="club", subject="member",
       items=[("Joining fee", 10, 80), ("Monthly membership", 15, 120), ("Personal training", 25, 70),
              ("Court hire", 8, 40), ("Towel hire", 1, 5), ("Locker rental", 3, 15)],
       sessions="Spin|Yoga|Pilates|Aqua aerobics|Boxfit|Circuit training|Rowing|Junior tennis",
       tables="schedule|standings|contacts", fields=[
           _F("member", "Member|Member name|Name|Athlete", _person(),
              "Who is the member?", "Whose membership is this?", "What is the member's name?"),
           _F("membership_number", "Membership no.|Member ID|Card no.", _code("M99999", "9999999", "AA-99999"),
              "What is the membership number?", "What is the member's ID?", "Which number is on the membership?"),
           _F("membership_type", "Membership type|Plan|Category|Tier", _pick("Off-peak", "Full", "Junior", "Senior",
                                                                             "Family", "Student", "Corporate"),
              "What is the membership type?", "Which kind of membership is it?", "What plan is the member on?"),
           _F("club_fee", "Monthly fee|Direct debit|Per month|Dues", _money(12, 120),
              "What is the monthly fee?", "How much is paid each month?", "What are the monthly dues?"),
           _F("membership_renewal", "Renewal|Renews on|Valid until|Expires", _date(30, 365),
              "When does the membership renew?", "Until when is the membership valid?",
              "What is the renewal date of the membership?"),
           _F("coach", "Coach|Trainer|Instructor|Personal trainer", _person(),
              "Who is the coach?", "Who runs the training?", "Which instructor is assigned?"),
           _F("class_name", "Class|Session|Activity", _pick("Spin", "Yoga", "Pilates", "Aqua aerobics", "Boxfit",
                                                          "Circuit training", "Zumba", "Rowing"),
              "What is the class?", "Which activity is booked?", "What session is it for?"),
           _F("class_time", "Time|Class time|Starts at", _time(6, 21),
              "What time is the class?", "When does the session start?", "At what time should the member be there?"),
           _F("locker", "Locker|Locker no.", _count(1, 400),
              "What is the locker number?", "Which locker is assigned?", "Where can the member store their things?"),
           _F("court_number", "Court|Lane|Pitch", _count(1, 12),
              "What is the court number?", "Where will they play?", "Which court or lane is booked?"),
           _F("team", "Team|Club team|Squad", _org("Rovers", "United", "Athletic", "Wanderers", "Harriers", place=True),
              "What is the team?", "Which team does the member play for?", "What squad is the athlete in?"),
       ]),
    _D("media", titles="SUBSCRIPTION CONFIRMATION|Streaming Account Summary|Manuscript Submission|Royalty Statement|"
                       "Press Accreditation|Print Order",
       bill_titles="Subscription Receipt|Print Quote", issuer="Media|Press|Publishing|Magazines|Studios|Records",
       noun="publisher", subject="subscriber",
       items=[("Annual subscription", 20, 180), ("Digital edition", 3, 15), ("Back issue", 4, 12),
              ("Print run", 200, 2500), ("Cover design", 150, 900), ("Proofreading", 80, 600)],
       tables="due|order|contacts", fields=[
           _F("subscriber", "Subscriber|Account holder|Reader|Name", _person(),
              "Who is the subscriber?", "Whose subscription is this?", "Who subscribed?"),
           _F("subscription_id", "Subscription ID|Subscriber no.|Account no.", _code("SUB-999999", "99999999",
                                                                                     "AA9999-99"),
              "What is the subscription ID?", "Which subscriber number is shown?",
              "What number identifies the subscription?"),
           _F("publication", "Publication|Title|Magazine", _org("Monthly", "Weekly", "Review", "Journal", "Quarterly",
                                                              "Times"),
              "What is the publication?", "Which magazine is it?", "What title is being subscribed to?"),
           _F("issues_count", "Issues|Number of issues|Term", _count(4, 52, "issues"),
              "What is the number of issues?", "How many issues does the subscription include?",
              "How many issues will be sent?"),
           _F("subscription_renewal", "Renews|Renewal date|Next billing", _date(30, 365),
              "When does the subscription renew?", "When is the next billing date?", "On what date will it renew?"),
           _F("subscription_price", "Price|Subscription price|Amount|Cost", _money(3, 150),
              "What is the subscription price?", "How much does the subscription cost?", "What is charged for it?"),
           _F("isbn", "ISBN|ISBN-13", _code("9-999-99999-9", "99-9999-999-9", prefix="978-"),
              "What is the ISBN?", "Which ISBN does the book have?", "What is the book's ISBN number?"),
           _F("editor", "Editor|Commissioning editor|Contact editor", _person(),
              "Who is the editor?", "Which editor is responsible?", "Who edits it?"),
           _F("word_count", "Word count|Length|Words", _count(1200, 120000, "words"),
              "What is the word count?", "How many words is it?", "How long is the text in words?"),
           _F("royalty_rate", "Royalty|Royalty rate|Rate", _pct(5, 25),
              "What is the royalty rate?", "What percentage does the author receive?",
              "How much royalty is paid, in percent?"),
       ]),
    _D("catering", titles="TABLE RESERVATION|Catering Order|Function Booking|Event Menu Confirmation|Party Booking|"
                          "Takeaway Order",
       bill_titles="Catering Quote|Function Bill", issuer="Catering|Kitchen|Banqueting|Brasserie|Dining Rooms",
       noun="restaurant", subject="reservation_name", when=("reservation_date", "reservation_time"),
       items=[("Canape selection", 60, 400), ("Main course (per guest)", 15, 45), ("Dessert platter", 30, 150),
              ("Soft drinks", 15, 90), ("Service staff", 80, 500), ("Table linen", 20, 120)],
       tables="order|roster", fields=[
           _F("reservation_name", "Reservation name|Booked by|Name|Host", _person(),
              "Who made the reservation?", "Under whose name is the booking?", "Who booked the table?"),
           _F("party_size", "Party size|Guests|Covers|Number of guests", _count(2, 14),
              "What is the party size?", "How many people are coming?", "How many guests is the table for?"),
           _F("reservation_date", "Date|Reservation date|Booking date|Function date", _date(1, 60),
              "What is the reservation date?", "On what day is the booking?", "For which date is the table reserved?"),
           _F("reservation_time", "Time|Reservation time|Arrival time|Seating", _time(11, 22),
              "What is the reservation time?", "What time is the table booked for?", "When should the party arrive?"),
           _F("table_number", "Table|Table no.", _count(1, 60),
              "What is the table number?", "Which table is reserved?", "Where will the party sit?"),
           _F("menu_package", "Menu|Package|Menu choice", _pick("Set lunch", "Tasting menu", "Buffet", "Canapes",
                                                               "Three-course dinner", "Afternoon tea", "Barbecue"),
              "What is the menu package?", "Which menu was chosen?", "What kind of meal was ordered?"),
           _F("dietary", "Dietary requirements|Allergies|Dietary notes", _pick("Vegetarian", "Vegan", "Gluten free",
                                                                              "Nut allergy", "Halal", "Dairy free"),
              "What are the dietary requirements?", "Does anyone have allergies or diet needs?",
              "What dietary note is given?"),
           _F("catering_deposit", "Deposit|Deposit paid|Advance", _money(50, 800),
              "What is the deposit?", "How much was paid in advance?", "How much deposit was taken?"),
           _F("server", "Server|Waiter|Served by", _person(),
              "Who is the server?", "Who served the table?", "Which waiter is assigned?"),
           _F("per_head", "Price per head|Per person|Cost per guest", _money(15, 95),
              "What is the price per head?", "How much does it cost per person?", "What is charged for each guest?"),
       ]),
    _D("manufacturing", titles="PRODUCTION REPORT|Quality Inspection Record|Work Order|Stock Count Sheet|"
                               "Batch Record|Purchase Order",
       bill_titles="Purchase Order|Parts Quote", issuer="Manufacturing|Components|Engineering|Plastics|Metals",
       noun="manufacturer", subject="operator",
       items=[("Steel bracket", 0.5, 15), ("Hex bolt M8", 0.1, 2), ("Aluminium sheet", 10, 80),
              ("Bearing 6204", 2, 15), ("Hydraulic hose", 8, 60), ("Gasket set", 4, 30)],
       tables="stock|order|roster", fields=[
           _F("part_number", "Part number|Part no.|P/N|Item code", _code("PN-99999", "999-9999-99", "AA-9999-A"),
              "What is the part number?", "Which part is this?", "What code identifies the part?"),
           _F("batch_number", "Batch|Batch no.|Lot|Lot number", _code("B99999", "9999-AA", "AA99-999"),
              "What is the batch number?", "Which batch is it?", "What lot does it belong to?"),
           _F("quantity_produced", "Quantity|Qty produced|Units made|Output", _count(50, 9000, "pcs"),
              "What is the quantity produced?", "How many units were made?", "What was the output?"),
           _F("production_date", "Production date|Manufactured|Made on|Date of manufacture", _date(-30, 0),
              "What is the production date?", "When was it made?", "On what day was the batch produced?"),
           _F("machine", "Machine|Line|Work centre|Press", _code("M-89", "Line 8", "CNC-89"),
              "Which machine is it?", "On which line was it produced?", "What machine was used?"),
           _F("operator", "Operator|Machine operator|Shift lead", _person(),
              "Who is the operator?", "Who ran the machine?", "Which person operated the line?"),
           _F("inspection_result", "Result|Inspection result|QC status|Status", _pick("Pass", "Fail", "Rework",
                                                                                     "Accepted", "Rejected",
                                                                                     "On hold"),
              "What is the inspection result?", "What was the outcome of the quality check?", "What is the QC status?"),
           _F("defects", "Defects|Rejects|Defect count|Scrap", _count(1, 60),
              "How many defects were found?", "How many units were rejected?", "What is the defect count?"),
           _F("supplier", "Supplier|Vendor|Supplied by", _org("Supplies", "Components", "Materials", "Trading",
                                                            "Wholesale"),
              "Who is the supplier?", "Which company supplied it?", "Who is the vendor?"),
           _F("unit_cost", "Unit cost|Cost per unit|Price each", _money(0.2, 85),
              "What is the unit cost?", "How much does one unit cost?", "What is the price of each unit?"),
           _F("reorder_level", "Reorder level|Reorder point|Min stock", _count(10, 500),
              "What is the reorder level?", "At what stock level should it be reordered?",
              "What is the minimum stock before reordering?"),
       ]),
    _D("legal", titles="NOTICE OF HEARING|Case Summary|Engagement Letter|Court Listing|Statement of Fees",
       bill_titles="Statement of Fees|Fee Note", issuer="Legal|Solicitors|Chambers|Attorneys|Law",
       noun="law firm", subject="claimant", when=("hearing_date", "hearing_time"),
       items=[("Initial consultation", 80, 300), ("Drafting documents", 150, 900), ("Court filing fee", 50, 400),
              ("Travel time", 40, 200), ("Photocopying", 5, 40), ("Expert report", 300, 1500)],
       sessions="Mention hearing|Case conference|Trial|Mediation|Witness interview|Final hearing",
       tables="schedule|contacts", fields=[
           _F("case_number", "Case number|Case no.|Claim no.|Docket", _code("AA99A99999", "9999/AA/999",
                                                                             "AA-9999-999"),
              "What is the case number?", "Which case is this?", "What number has the case?"),
           _F("court", "Court|Venue|Hearing at", _org("County Court", "District Court", "Magistrates Court",
                                                      "Tribunal", place=True),
              "Which court is it?", "Where is the hearing held?", "What court is the case in?"),
           _F("hearing_date", "Hearing date|Date of hearing|Listed for", _date(10, 180),
              "What is the hearing date?", "When is the hearing?", "On which day is the case heard?"),
           _F("hearing_time", "Time|Hearing time|Listed at", _time(9, 15),
              "What time is the hearing?", "At what time should the parties attend?", "When does the hearing start?"),
           _F("claimant", "Claimant|Plaintiff|Petitioner", _person(),
              "Who is the claimant?", "Who brought the case?", "Who is the plaintiff?"),
           _F("defendant", "Defendant|Respondent", _person(),
              "Who is the defendant?", "Who is the case against?", "Who is the respondent?"),
           _F("judge", "Judge|Presiding judge|Before", _person("Judge"),
              "Who is the judge?", "Which judge will hear the case?", "Who presides?"),
           _F("solicitor", "Solicitor|Attorney|Counsel|Represented by", _person(),
              "Who is the solicitor?", "Who represents the client?", "Which lawyer is acting?"),
           _F("courtroom", "Courtroom|Court room|Room", _count(1, 30),
              "What is the courtroom?", "Which courtroom is it in?", "In what room is the hearing?"),
           _F("legal_fees", "Fees|Professional fees|Amount due", _money(150, 9000),
              "What are the fees?", "How much are the legal fees?", "How much is owed for the legal work?"),
           _F("hourly_rate", "Hourly rate|Rate per hour|Rate", _money(90, 450),
              "What is the hourly rate?", "How much is charged per hour?", "What does one hour cost?"),
       ]),
    _D("it_support", titles="SERVICE REQUEST|Incident Report|Support Ticket|Change Request|Asset Handover|"
                            "Helpdesk Summary",
       bill_titles="Equipment Order|IT Quote", issuer="IT Services|Systems|Digital|Tech Support|Computing",
       noun="service desk", subject="reported_by",
       items=[("Laptop", 500, 1800), ("Docking station", 80, 250), ("Monitor", 120, 400), ("Software licence", 40, 600),
              ("Support hours", 60, 400), ("Keyboard", 15, 90)],
       tables="tickets|roster|order", fields=[
           _F("ticket_number", "Ticket|Ticket no.|Incident|Request ID", _code("INC9999999", "REQ-999999", "99999"),
              "What is the ticket number?", "Which ticket is this?", "What number does the request have?"),
           _F("reported_by", "Reported by|Requester|Caller|Raised by", _person(),
              "Who reported it?", "Who raised the request?", "Who is the requester?"),
           _F("assigned_to", "Assigned to|Engineer|Owner|Resolver", _person(),
              "Who is it assigned to?", "Which engineer is handling it?", "Who owns the ticket?"),
           _F("priority", "Priority|Severity|Urgency", _pick("Low", "Medium", "High", "Critical", "P1", "P2", "P3"),
              "What is the priority?", "How urgent is the ticket?", "What severity was given?"),
           _F("status", "Status|State|Current status", _pick("Open", "In progress", "Resolved", "Closed", "On hold",
                                                           "Awaiting user"),
              "What is the status?", "Where does the ticket stand?", "What state is the request in?"),
           _F("asset_tag", "Asset tag|Asset no.|Device ID", _code("IT-99999", "AA99999", "NB-9999"),
              "What is the asset tag?", "Which device is affected?", "What asset number is given?"),
           _F("hostname", "Hostname|Computer name|Server", _code("AAA-AA-899", "AAAA899"),
              "What is the hostname?", "Which computer is it about?", "What is the machine's name?"),
           _F("ip_address", "IP address|IP|Host IP", _ip(),
              "What is the IP address?", "Which IP does the machine have?", "What network address is given?"),
           _F("opened", "Opened|Created|Logged on|Date raised", _date(-20, 0),
              "When was the ticket opened?", "When was it reported?", "What date was it logged?"),
           _F("resolved", "Resolved|Closed on|Fixed on", _date(0, 12, after="opened"),
              "When was it resolved?", "When was the problem fixed?", "What is the resolution date?"),
           _F("category", "Category|Type|Area", _pick("Network", "Hardware", "Email", "Printing", "Access",
                                                      "Software", "Password reset"),
              "What is the category?", "What kind of problem is it?", "Which area does it concern?"),
       ]),
    _D("agriculture", titles="HARVEST RECORD|Field Report|Livestock Movement Form|Grain Delivery Ticket|Spray Record|"
                             "Crop Plan",
       bill_titles="Contractor Charges|Input Costs", issuer="Farm|Farms|Growers|Agri|Orchards",
       noun="farm", subject="agronomist",
       items=[("Seed", 100, 900), ("Fertiliser", 200, 1500), ("Spraying", 80, 600), ("Combine hire", 300, 2000),
              ("Haulage", 60, 400), ("Drying", 50, 500)],
       tables="plots|order", fields=[
           _F("field_name", "Field|Plot|Paddock", _pick("North meadow", "Long acre", "Hill paddock", "River field",
                                                        "Top field", "Church field", "Orchard plot"),
              "Which field is it?", "On which plot was the work done?", "What is the name of the field?"),
           _F("crop", "Crop|Variety|Crop type", _pick("Winter wheat", "Barley", "Oilseed rape", "Maize", "Potatoes",
                                                      "Sugar beet", "Oats", "Field beans"),
              "What is the crop?", "What is grown there?", "Which crop is it?"),
           _F("area", "Area|Hectares|Field size", _qty(1.5, 120, "ha"),
              "What is the area?", "How large is the field?", "How many hectares is it?"),
           _F("yield_t", "Yield|Harvested|Tonnage", _qty(2, 600, "t"),
              "What is the yield?", "How much was harvested?", "How many tonnes came in?"),
           _F("harvest_date", "Harvest date|Harvested on|Cut", _date(-60, 0),
              "What is the harvest date?", "When was it harvested?", "On what day was the crop brought in?"),
           _F("planting_date", "Planting date|Sown|Drilled", _date(-250, -120),
              "What is the planting date?", "When was it sown?", "On what day was the crop planted?"),
           _F("moisture", "Moisture|Moisture content|H2O", _pct(9, 24, 1),
              "What is the moisture content?", "How moist is the grain?", "What percentage of moisture was measured?"),
           _F("animal_tag", "Tag|Ear tag|Animal ID", _code("AA 999999 99999", "AA999999"),
              "What is the ear tag?", "Which animal is it?", "What ID does the animal have?"),
           _F("head_count", "Head|Number of animals|Head count|Animals", _count(3, 400),
              "What is the head count?", "How many animals are there?", "How many head of livestock?"),
           _F("agronomist", "Agronomist|Advisor|Recorded by|Farm manager", _person(),
              "Who is the agronomist?", "Who gave the advice?", "Who recorded it?"),
           _F("price_per_tonne", "Price per tonne|Price/t|Rate per tonne", _money(90, 450),
              "What is the price per tonne?", "How much is paid for each tonne?", "What rate per tonne applies?"),
       ]),
    _D("veterinary", titles="VACCINATION RECORD|Pet Health Card|Treatment Summary|Boarding Booking|"
                            "Pet Registration|Grooming Appointment",
       bill_titles="Treatment Costs|Practice Account", issuer="Veterinary Clinic|Vets|Animal Hospital|Pet Care",
       noun="practice", subject="pet_owner",
       items=[("Consultation", 25, 80), ("Vaccination", 20, 70), ("Flea treatment", 8, 30), ("Worming tablets", 6, 25),
              ("Dental check", 30, 120), ("Nail clipping", 5, 20)],
       sessions="Vaccination|Dental check|Weigh-in|Grooming|Nail clipping|Post-op check",
       tables="schedule|lab", fields=[
           _F("pet_name", "Pet|Pet name|Animal", _pick(*_PET_NAMES),
              "What is the pet's name?", "Which animal is this about?", "What is the animal called?"),
           _F("species", "Species|Animal type|Type", _pick("Dog", "Cat", "Rabbit", "Horse", "Guinea pig", "Parrot",
                                                           "Ferret"),
              "What is the species?", "What kind of animal is it?", "What type of pet is it?"),
           _F("breed", "Breed|Breed/type|Breed or type", _pick("Labrador", "Border collie", "Beagle", "Siamese",
                                                               "Maine coon", "Dachshund", "Cocker spaniel"),
              "What is the breed?", "Which breed is the animal?", "What breed is the pet?"),
           _F("pet_owner", "Owner|Owner name|Client|Keeper", _person(),
              "Who is the owner?", "Whose pet is it?", "Who does the animal belong to?"),
           _F("microchip", "Microchip|Chip no.|Microchip number", _code("999999999999999"),
              "What is the microchip number?", "Which chip does the pet have?", "What number is on the microchip?"),
           _F("vaccination_date", "Vaccinated|Vaccination date|Last vaccination", _date(-200, 0),
              "What is the vaccination date?", "When was the pet vaccinated?", "On what date was the last jab?"),
           _F("booster_due", "Booster due|Next vaccination|Due", _date(300, 380, after="vaccination_date"),
              "When is the booster due?", "When is the next vaccination?",
              "By when should the pet come back for a booster?"),
           _F("vet", "Vet|Veterinary surgeon|Seen by|Clinician", _person("Dr."),
              "Who is the vet?", "Which vet treated the pet?", "Who saw the animal?"),
           _F("pet_weight", "Weight|Body weight|Wt", _qty(0.8, 48, "kg"),
              "What is the pet's weight?", "How much does the animal weigh?", "How heavy is the pet?"),
           _F("pet_age", "Age|Pet age", _count(1, 16, "years"),
              "How old is the pet?", "What age is the animal?", "What is the pet's age?"),
       ]),
)
#: every field of the catalogue by key (keys are unique across domains)
RECORD_FIELDS: dict[str, _Field] = {f.key: f for d in _DOMAINS for f in d.fields} | {f.key: f for f in _GENERAL_FIELDS}
assert len(RECORD_FIELDS) == sum(len(d.fields) for d in _DOMAINS) + len(_GENERAL_FIELDS), "duplicate field keys"


@lru_cache(maxsize=1)
def _org_words() -> list[str]:
    """Distinctive words of organisation names: NAME_WORDS and RECORD_ORG_WORDS outside the catalogue's words."""
    words = _catalogue_words()
    return [w for w in NAME_WORDS + RECORD_ORG_WORDS if w.lower() not in words]


def _catalogue_words() -> set[str]:
    """Every word of the catalogue's titles, labels, items, sessions and picked phrases (lower case): organisation
    words, names and places are drawn outside it, so an answer never also matches a label or a title."""
    text = []
    for d in _DOMAINS:
        text += [*d.titles, *d.bill_titles, *d.issuer, *d.sessions, *(n for n, _, _ in d.items)]
    for f in RECORD_FIELDS.values():
        text += [*f.labels, *f.value.options]
    text += [*_ROW_WORDS, *_SUMMARY_WORDS, *STREETS, *RECORD_STREETS]
    return {w.lower() for t in text for w in re.findall(r"[A-Za-z]+", t)}


# -- tables: a header row and 2-5 rows; questions ask for one cell by its row and column ---------------------------
class _Col(NamedTuple):
    """A table column: header variants, the value of row ``i``, questions ('{row}': how the row is named)."""

    headers: tuple[str, ...]
    cell: Callable[[_Values, int], _Val]
    questions: tuple[str, ...]


class _Grid(NamedTuple):
    block: tuple
    fields: dict[str, str]
    cells: list[tuple[str, list[str], list[str]]]  # pool entries (field, questions, answers)


def _the(name: str) -> str:
    """'the desk lamp' for 'Desk lamp' (acronyms and codes keep their case: 'the ECG', 'the hex bolt M8')."""
    words = [w if (w.isupper() and len(w) > 1) or any(c.isdigit() for c in w) else w.lower() for w in name.split()]
    return "the " + " ".join(words)


def _grid(v: _Values, key_headers: Sequence[str], names: Sequence[str], asked: Sequence[str],
          cols: Sequence[_Col]) -> _Grid:
    """A table whose first column names the rows (``names``; ``asked``: how questions name them)."""
    r = v.r
    headers = [r.choice(key_headers)] + [r.choice(c.headers) for c in cols]
    rows, fields, cells = [], {}, []
    for i, (name, ask) in enumerate(zip(names, asked)):
        row = [name]
        for j, c in enumerate(cols):
            val = c.cell(v, i)
            row.append(val.text)
            key = f"cell:{name}:{headers[j + 1]}"
            fields[key] = val.text
            if c.questions:  # a column nobody asks about (units) is context only
                cells.append((key, [q.replace("{row}", ask) for q in c.questions], val.answers))
        rows.append(row)
    first = {2: 0.6, 3: 0.44, 4: 0.36}[len(headers)]
    fractions = [first] + [(1 - first) / len(cols)] * len(cols)
    return _Grid(("table", headers, rows, "l" + "r" * len(cols), fractions), fields, cells)


def _rows(v: _Values, pool: Sequence[str], lo: int = 2, hi: int = 5) -> list[str]:
    return v.r.sample(list(pool), min(len(pool), v.r.randint(lo, hi)))


def _make(m: _Maker) -> Callable[[_Values, int], _Val]:
    return lambda v, i: m.make(v, f"cell{i}")


def _t_order(v: _Values) -> _Grid:
    items = v.r.sample(list(v.domain.items), min(len(v.domain.items), v.r.randint(2, 5)))
    qty = [v.r.randint(1, 9) for _ in items]
    unit = [v.g.money(lo, hi) for _, lo, hi in items]
    total = [f"{q * float(u):.2f}" for q, u in zip(qty, unit)]
    v.g._used_money.update(total)
    return _grid(v, ["Item", "Description", "Product", "Service"], [n for n, _, _ in items],
                 [_the(n) for n, _, _ in items], [
        _Col(("Qty", "Quantity", "Units"), lambda v, i: _Val(str(qty[i]), [str(qty[i])]),
             ("What is the quantity of {row}?", "How many units of {row} are listed?",
              "What quantity is given for {row}?")),
        _Col(("Unit price", "Price", "Rate", "Each"), lambda v, i: _Val(v.g.cash(unit[i]), [unit[i]]),
             ("What is the unit price of {row}?", "How much does one unit of {row} cost?",
              "What is the price each for {row}?")),
        _Col(("Amount", "Total", "Line total"), lambda v, i: _Val(v.g.cash(total[i]), [total[i]]),
             ("What is the line total for {row}?", "How much was charged for {row} in total?",
              "What is the amount for {row}?")),
    ])


def _t_contacts(v: _Values) -> _Grid:
    people = [v.person() for _ in range(v.r.randint(2, 4))]
    names = [f"{a} {b}" for a, b in people]
    roles = v.r.sample(["Manager", "Coordinator", "Assistant", "Director", "Officer", "Advisor", "Supervisor"],
                       len(names))
    return _grid(v, ["Name", "Contact", "Staff"], names, names, [
        _Col(("Role", "Position", "Title"), lambda v, i: _Val(roles[i], [roles[i]]),
             ("What is the role of {row}?", "What does {row} do?", "What position does {row} hold?")),
        _Col(("Phone", "Tel", "Direct line"), _make(_phone()),
             ("What is the phone number of {row}?", "Which number reaches {row}?", "How can {row} be called?")),
    ])


def _t_schedule(v: _Values) -> _Grid:
    names = _rows(v, v.domain.sessions)
    return _grid(v, ["Session", "Appointment", "Activity", "Item"], names, [_the(n) for n in names], [
        _Col(("Date", "Day", "On"), _make(_date(1, 90)),
             ("On what date is {row}?", "Which day is {row} scheduled for?", "What is the date of {row}?")),
        _Col(("Time", "Starts", "At"), _make(_time(8, 20)),
             ("What time does {row} start?", "At what time is {row}?", "What is the start time of {row}?")),
        _Col(("Room", "Location", "Where"), _make(_code("A89", "89", "A-8")),
             ("Where is {row}?", "Which room is {row} in?", "In what location does {row} take place?")),
    ])


def _t_due(v: _Values) -> _Grid:
    names = ["Deposit", "First instalment", "Second instalment", "Third instalment", "Final payment"]
    names = names[:v.r.randint(2, 5)]
    first = v.anchor + dt.timedelta(days=v.r.randint(5, 30))
    step = v.r.choice([7, 14, 30, 31, 90])
    dates = [v.g.fmt_date(first + dt.timedelta(days=step * i)) for i in range(len(names))]
    v.seen.update(d.lower() for d in dates)
    return _grid(v, ["Instalment", "Payment", "Description"], names, [_the(n) for n in names], [
        _Col(("Due date", "Due", "Pay by"), lambda v, i: _Val(dates[i], [dates[i]]),
             ("When is {row} due?", "By what date must {row} be paid?", "What is the due date of {row}?")),
        _Col(("Amount", "Sum", "To pay"), _make(_money(40, 1800)),
             ("How much is {row}?", "What amount is payable for {row}?", "How much has to be paid for {row}?")),
    ])


def _t_transactions(v: _Values) -> _Grid:
    payees = [f"{v.word()} {v.r.choice(['Market', 'Energy', 'Pharmacy', 'Books', 'Garage', 'Cinema', 'Telecom'])}"
              for _ in range(v.r.randint(2, 5))]
    return _grid(v, ["Description", "Payee", "Details"], payees, payees, [
        _Col(("Date", "Posted", "Value date"), _make(_date(-60, 0)),
             ("When was the payment to {row}?", "On what date was {row} paid?",
              "What is the date of the {row} payment?")),
        _Col(("Amount", "Debit", "Paid out"), _make(_money(3, 600)),
             ("How much was paid to {row}?", "What amount went to {row}?", "How much did the {row} payment come to?")),
    ])


def _t_timetable(v: _Values) -> _Grid:
    cities = [v.city() for _ in range(v.r.randint(2, 5))]
    return _grid(v, ["Destination", "To", "Calling at"], cities, cities, [
        _Col(("Departs", "Dep.", "Time"), _make(_time(5, 23)),
             ("When does the service to {row} depart?", "What time is the departure to {row}?",
              "At what time does the {row} service leave?")),
        _Col(("Platform", "Plat.", "Stop", "Gate"), lambda v, i: _Val(p := str(v.r.randint(1, 16)), [p]),
             ("Which platform does the service to {row} leave from?", "What platform is the {row} service on?",
              "Where does the service to {row} depart from?")),
    ])


def _t_grades(v: _Values) -> _Grid:
    names = _rows(v, ["Statistics", "Organic Chemistry", "Academic Writing", "Microeconomics", "Data Structures",
                      "Anatomy", "Ethics", "Spanish II"])
    return _grid(v, ["Module", "Subject", "Course"], names, names, [
        _Col(("Grade", "Result", "Award"), _make(_pick("Distinction", "Merit", "Pass", "Credit", "First",
                                                        "High distinction")),
             ("What grade was given for {row}?", "What result was achieved in {row}?",
              "How did the student do in {row}?")),
        _Col(("Credits", "ECTS", "Points"), _make(_count(5, 40)),
             ("How many credits is {row} worth?", "What credit value does {row} have?",
              "How many credit points come with {row}?")),
    ])


def _t_roster(v: _Values) -> _Grid:
    people = [v.person() for _ in range(v.r.randint(2, 5))]
    names = [f"{a} {b}" for a, b in people]
    return _grid(v, ["Name", "Staff", "Employee"], names, names, [
        _Col(("Shift", "Rota", "Pattern"), lambda v, i: _Val(s := v.r.choice(["Early", "Late", "Night", "Day",
                                                                               "Split", "Weekend"]), [s]),
             ("Which shift is {row} on?", "What shift does {row} work?", "On which rota pattern is {row}?")),
        _Col(("Hours", "Hrs", "Scheduled"), _make(_qty(4, 48, "h")),
             ("How many hours is {row} scheduled for?", "How long does {row} work?", "What are the hours of {row}?")),
    ])


def _t_usage(v: _Values) -> _Grid:
    start, n = v.r.randrange(12), v.r.randint(2, 5)
    months = [MONTHS[(start + i) % 12] for i in range(n)]
    unit = v.r.choice(["kWh", "GB", "m³", "units"])
    return _grid(v, ["Month", "Period", "Billing month"], months, months, [
        _Col(("Usage", "Used", "Consumption"), _make(_count(12, 2400, unit)),
             ("How much was used in {row}?", "What was the usage in {row}?", "What consumption is shown for {row}?")),
        _Col(("Cost", "Charge", "Amount"), _make(_money(8, 400)),
             ("What did {row} cost?", "How much was charged for {row}?", "What is the cost for {row}?")),
    ])


def _t_standings(v: _Values) -> _Grid:
    teams = [f"{v.city()} {v.r.choice(['Rovers', 'United', 'Athletic', 'Wanderers', 'Harriers'])}"
             for _ in range(v.r.randint(2, 5))]
    return _grid(v, ["Team", "Club", "Side"], teams, teams, [
        _Col(("Played", "P", "Games"), lambda v, i: _Val(p := str(v.r.randint(10, 38)), [p]),
             ("How many games has {row} played?", "How many matches did {row} play?",
              "What is the number of games played by {row}?")),
        _Col(("Points", "Pts", "Score"), _make(_count(3, 90)),
             ("How many points does {row} have?", "What is the points total of {row}?",
              "How many points has {row} got in the table?")),
    ])


_LAB = [("Haemoglobin", 110, 175, 0, "g/L"), ("Glucose", 3.5, 9.5, 1, "mmol/L"), ("Cholesterol", 3.0, 7.5, 1, "mmol/L"),
        ("Sodium", 133, 147, 0, "mmol/L"), ("Potassium", 3.3, 5.4, 1, "mmol/L"), ("Vitamin D", 20, 120, 0, "nmol/L"),
        ("Heart rate", 52, 110, 0, "bpm")]


def _t_lab(v: _Values) -> _Grid:
    tests = v.r.sample(_LAB, v.r.randint(2, 5))
    names = [t[0] for t in tests]
    return _grid(v, ["Test", "Measurement", "Analyte"], names, [_the(n) for n in names], [
        _Col(("Result", "Value", "Reading"), lambda v, i: _lab_value(tests[i]).make(v, ""),
             ("What was the result for {row}?", "What value was measured for {row}?", "What is the level of {row}?")),
        _Col(("Unit", "Units"), lambda v, i: _Val(tests[i][4], [tests[i][4]]), ()),
    ])


def _lab_value(test: tuple[str, float, float, int, str]) -> _Maker:
    _, lo, hi, decimals, _ = test
    return _Maker("number", lambda v, key: _Val(n := v.fresh(lambda: f"{v.r.uniform(lo, hi):.{decimals}f}"), [n]))


def _t_tickets(v: _Values) -> _Grid:
    names = _rows(v, ["Printer offline", "VPN drops", "Laptop battery", "Email sync", "Password reset",
                      "Monitor flicker", "Slow Wi-Fi"])
    return _grid(v, ["Issue", "Summary", "Problem"], names, [_the(n) + " issue" for n in names], [
        _Col(("Ticket", "Ref.", "Incident"), _make(_code("INC999999", "REQ-99999")),
             ("What is the ticket number for {row}?", "Which ticket covers {row}?",
              "What number was given to {row}?")),
        _Col(("Status", "State"), lambda v, i: _Val(s := v.r.choice(["Open", "In progress", "Resolved", "Closed",
                                                                     "On hold"]), [s]),
             ("What is the status of {row}?", "How far along is {row}?", "What state is {row} in?")),
    ])


def _t_plots(v: _Values) -> _Grid:
    names = _rows(v, ["Lower pasture", "Long acre", "Hill paddock", "River field", "Top field", "Church field"])
    return _grid(v, ["Field", "Plot", "Parcel"], names, [_the(n) for n in names], [
        _Col(("Crop", "Sown with", "Variety"), _make(_pick("Winter wheat", "Barley", "Oilseed rape", "Maize",
                                                           "Potatoes", "Oats", "Field beans")),
             ("What crop is grown in {row}?", "What was planted in {row}?", "Which crop is in {row}?")),
        _Col(("Area", "Hectares", "Size"), _make(_qty(1.5, 80, "ha")),
             ("How big is {row}?", "What is the area of {row}?", "How many hectares is {row}?")),
    ])


def _t_stock(v: _Values) -> _Grid:
    items = v.r.sample(list(v.domain.items), min(len(v.domain.items), v.r.randint(2, 5)))
    names = [n for n, _, _ in items]
    return _grid(v, ["Item", "Product", "Description"], names, [_the(n) for n in names], [
        _Col(("SKU", "Code", "Item no."), _make(_code("999-999", "AA-9999", "A99999")),
             ("What is the SKU of {row}?", "Which item code does {row} have?", "What code identifies {row}?")),
        _Col(("On hand", "In stock", "Qty"), _make(_count(12, 900)),
             ("How many of {row} are in stock?", "What is the stock level of {row}?",
              "How many units of {row} are on hand?")),
        _Col(("Bin", "Location", "Shelf"), _make(_code("A-89-9", "A89-9A")),
             ("Where is {row} stored?", "Which bin holds {row}?", "What is the location of {row}?")),
    ])


_TABLES: dict[str, Callable[[_Values], _Grid]] = {
    "order": _t_order, "contacts": _t_contacts, "schedule": _t_schedule, "due": _t_due,
    "transactions": _t_transactions, "timetable": _t_timetable, "grades": _t_grades, "roster": _t_roster,
    "usage": _t_usage, "standings": _t_standings, "lab": _t_lab, "tickets": _t_tickets, "plots": _t_plots,
    "stock": _t_stock}
assert all(t in _TABLES for d in _DOMAINS for t in d.tables), "a domain names an unknown table"
assert all(d.sessions for d in _DOMAINS if "schedule" in d.tables), "a schedule table needs sessions"
#: words of the tables' rows (kept out of organisation names, see _catalogue_words)
_ROW_WORDS = ["Deposit", "First instalment", "Second instalment", "Third instalment", "Final payment", "Market",
              "Energy", "Pharmacy", "Books", "Garage", "Cinema", "Telecom", "Rovers", "United", "Athletic",
              "Wanderers", "Harriers", "Printer offline", "VPN drops", "Laptop battery", "Email sync",
              "Password reset", "Monitor flicker", "Slow Wi-Fi", "Lower pasture", "Long acre", "Hill paddock",
              "River field", "Top field", "Church field", "Statistics", "Organic Chemistry", "Academic Writing",
              "Microeconomics", "Data Structures", "Anatomy", "Ethics", "Spanish", *(t[0] for t in _LAB)]


# -- billed lines with a summary: subtotal, discount, tax or service charge, total ---------------------------------
_TOTALS = ["TOTAL", "Total due", "Amount due", "Balance due", "Grand total", "Total payable", "Amount to pay"]
_TAXES = [("VAT", ("How much VAT was added?", "What is the tax amount?", "How much tax is charged?")),
          ("Tax", ("How much was the tax?", "What is the tax amount?", "How much tax is added to the bill?")),
          ("Sales tax", ("How much sales tax was charged?", "What is the tax amount?", "How much tax is added?")),
          ("GST", ("How much GST was charged?", "What is the tax amount?", "How much goods and services tax is due?")),
          ("Service charge", ("What is the service charge?", "How much was added for service?",
                              "How much is the service fee?"))]
_DISCOUNTS = ["Discount", "Less discount", "Loyalty discount", "Promotion"]
_SUBTOTALS = ["Subtotal", "Sub-total", "Net amount", "Total before tax"]
_SUMMARY_WORDS = [*_TOTALS, *(t for t, _ in _TAXES), *_DISCOUNTS, *_SUBTOTALS]


def _bill(v: _Values) -> tuple[list[tuple], dict[str, str], list[tuple[str, list[str], list[str]]]]:
    """Billed lines of the domain (2-5) with amounts, then the summary lines; (blocks, fields, pool)."""
    r, g = v.r, v.g
    items = r.sample(list(v.domain.items), min(len(v.domain.items), r.randint(2, 5)))
    lines = [(n, g.money(lo, hi)) for n, lo, hi in items]
    blocks: list[tuple] = [("item", n, g.cash(p)) for n, p in lines]
    fields = {f"item:{n}": p for n, p in lines}
    pool = [(f"item:{n}", [f"How much was charged for {_the(n)}?", f"What is the price of {_the(n)}?",
                           f"What does {_the(n)} cost?"], [p]) for n, p in r.sample(lines, min(2, len(lines)))]
    subtotal = round(sum(float(p) for _, p in lines), 2)
    total, summary = subtotal, []
    discount = tax = None
    if r.random() < 0.35:
        pct = r.choice([5, 10, 15, 20])
        discount = f"{subtotal * pct / 100:.2f}"
        total -= float(discount)
        summary.append(("discount", f"{r.choice(_DISCOUNTS)} {pct}%", "-" + g.cash(discount), discount,
                        ["How much was the discount?", "How much was taken off?", "What is the discount amount?"]))
    if r.random() < 0.6:
        label, questions = r.choice(_TAXES)
        rate = r.choice([5, 7, 8, 10, 12, 15, 20])
        tax = f"{total * rate / 100:.2f}"
        total += float(tax)
        shown = f"{label} {rate}%" if r.random() < 0.5 else f"{label} ({rate}%)"
        summary.append(("tax", shown, g.cash(tax), tax, list(questions)))
    blocks.append(("rule",))
    if summary:
        sub = f"{subtotal:.2f}"
        label = r.choice(_SUBTOTALS)
        blocks.append(("item", label, g.cash(sub)))
        fields["subtotal"] = sub
        pool.append(("subtotal", [f"What is the {label.lower()}?", "How much do the items come to before tax?",
                                  "What do the lines add up to before any adjustment?"], [sub]))
        for key, label, shown, value, questions in summary:
            blocks.append(("item", label, shown))
            fields[key] = value
            pool.append((key, questions, [value]))
    total_s = f"{total:.2f}"
    label = r.choice(_TOTALS)
    blocks.append(("item", label, g.cash(total_s), True))
    fields["total"] = total_s
    pool.append(("total", [f"What is the {label.lower()}?", "How much has to be paid in total?",
                           "What is the final amount?"], [total_s]))
    g._used_money.update([f"{subtotal:.2f}", total_s] + [x for x in (discount, tax) if x])
    return blocks, fields, pool


# -- the record builder -------------------------------------------------------------------------------------------
#: layouts of a record: label/value rows in each kv style, two columns, sections with headings, a table, billed
#: lines with a summary, unlabelled blocks (organisation, address, contacts, a name line, a date line) and a mix
RECORD_LAYOUTS = ("kv-columns", "kv-inline", "kv-stacked", "kv-right", "two_columns", "sections", "table", "items",
                  "unlabelled", "mixed")
_SECTION_OF = {"person": "party", "org": "party", "date": "when", "time": "when", "money": "money",
               "percent": "money", "phone": "contact", "email": "contact", "web": "contact", "address": "contact"}
_SECTION_TITLES = {"details": ("Details", "Information", "Particulars", "Summary"),
                   "party": ("Personal details", "Parties", "People", "Names"),
                   "when": ("Dates", "Schedule", "Key dates", "Timing"),
                   "money": ("Charges", "Payment", "Amounts", "Financial summary"),
                   "contact": ("Contact", "Contact details", "Get in touch")}
_NOTES = ["Please keep this document for your records.", "Questions? Contact us using the details above.",
          "This document was generated electronically.", "Thank you.", "Page 1 of 1", "Not valid without signature."]


class _RecordBuilder:
    """The printed fields of one record document and its question pool."""

    def __init__(self, v: _Values, style: Style):
        self.v, self.r, self.s = v, v.r, style
        self.values: dict[str, _Val] = {}
        self.fields: dict[str, str] = {}
        self.pool: list[tuple[str, list[str], list[str]]] = []

    def value(self, key: str) -> _Val:
        if key not in self.values:
            self.values[key] = RECORD_FIELDS[key].value.make(self.v, key)
        return self.values[key]

    def ask(self, key: str, printed: str | None = None) -> str:
        """Field ``key`` is printed (as ``printed``, default its value): keep it and its questions. Its text."""
        val = self.value(key)
        if key not in self.fields:
            self.fields[key] = printed or val.text
            self.pool.append((key, [q.replace("{noun}", self.v.domain.noun) for q in RECORD_FIELDS[key].questions],
                              list(val.answers)))
            if key == "address":  # printed with its city
                self.pool.append(("address_city", ["Which city is the address in?", "In which town are they based?",
                                                   "What city is given in the address?"], [self.v.address[2]]))
        return val.text

    def kv(self, key: str) -> tuple:
        """A label/value row of ``key`` with one of its labels."""
        return ("kv", self.r.choice(RECORD_FIELDS[key].labels), self.ask(key))

    def choose(self, lo: int, hi: int, exclude: Iterable[str] = ()) -> list[str]:
        """``lo``..``hi`` fields of the domain, in catalogue order, with 2-3 of one family (several dates, amounts,
        names ...) so that the label decides which is asked for; their values are drawn in catalogue order (dates
        after the date they follow)."""
        r, n = self.r, self.r.randint(lo, hi)
        cands = [f for f in self.v.domain.fields if f.key not in set(exclude)]
        by: dict[str, list[_Field]] = {}
        for f in cands:
            by.setdefault(f.value.family, []).append(f)
        multi = sorted(fam for fam, fs in by.items() if len(fs) >= 2 and fam != "phrase")
        chosen: set[str] = set()
        for fam in r.sample(multi, min(len(multi), r.randint(1, 2))):
            if len(chosen) < n:
                chosen.update(f.key for f in r.sample(by[fam], min(len(by[fam]), r.randint(2, 3))))
        rest = [f.key for f in cands if f.key not in chosen]
        chosen.update(r.sample(rest, max(0, min(len(rest), n - len(chosen)))))
        keys = [f.key for f in cands if f.key in chosen]
        for k in keys:
            self.value(k)
        if r.random() < 0.25:  # the order of rows is a habit of the domain, not a rule
            r.shuffle(keys)
        return keys

    # -- blocks ------------------------------------------------------------------------------------------------
    def head(self, title: str, issuer_p: float = 0.75) -> list[tuple]:
        """The title, with the issuer's name above or below it on most documents (an unlabelled line)."""
        if self.r.random() >= issuer_p:
            return [("head", title), ("gap", 0.4)]
        issuer = self.ask("issuer")
        if self.r.random() < 0.5:
            return [("head", issuer), ("text", title, {"bold": True, "align": self.s.head_align}), ("gap", 0.4)]
        return [("head", title), ("text", issuer, {"align": self.s.head_align}), ("gap", 0.4)]

    def meta(self) -> list[tuple]:
        """A labelled reference and document date on some documents."""
        return [self.kv(k) for k in ("reference", "issue_date") if self.r.random() < 0.45]

    def foot(self, contact_p: float = 0.35) -> list[tuple]:
        """A contact line (phone with a short label, website, e-mail), a note, a barcode — each on some documents."""
        r, out = self.r, []
        if r.random() < contact_p:
            keys = [k for k in ("phone", "website", "email") if r.random() < 0.6] or ["phone"]
            out.append(("gap", 0.5))
            for k in keys:
                text = self.ask(k)
                out.append(("text", f"{r.choice(['Tel', 'Phone', 'Call'])} {text}" if k == "phone" else text,
                            {"size": r.choice(["small", "body"]), "align": "centre"}))
        if r.random() < 0.3:
            out += [("gap", 0.5), ("text", r.choice(_NOTES), {"size": "small", "muted": True, "align": "centre"})]
        if r.random() < 0.15:
            out += [("gap", 0.3), ("bars",)]
        return out

    def contact_block(self, align: str = "left") -> list[tuple]:
        """Phone, e-mail and/or website, one a line, no labels."""
        keys = [k for k in ("phone", "email", "website") if self.r.random() < 0.65] or ["phone"]
        return [("text", self.ask(k), {"align": align}) for k in keys]

    def address_block(self, align: str = "left") -> list[tuple]:
        """The street line and the city line, no label."""
        self.value("address")
        street, city_line, _ = self.v.address
        self.ask("address", f"{street}\n{city_line}")
        return [("text", street, {"align": align}), ("text", city_line, {"align": align})]

    def name_line(self) -> tuple[list[tuple], list[str]]:
        """The person the document is about, on a line of its own (no label)."""
        key = self.v.domain.subject
        return [("text", self.ask(key), {"size": "big", "bold": True, "align": self.r.choice(["left", "centre"])})], \
            [key]

    def when_line(self) -> tuple[list[tuple], list[str]]:
        """A big date line: the domain's date and time ('14 Mar 2025, 19:30') or the document's date."""
        align = self.r.choice(["left", "centre", "right"])
        when = self.v.domain.when
        if when and self.r.random() < 0.7:
            d, t = self.ask(when[0]), self.ask(when[1])
            text = self.r.choice([f"{d}  {t}", f"{d}, {t}", f"{d} at {t}"])
            return [("text", text, {"size": "big", "bold": True, "align": align})], list(when)
        return [("text", self.ask("issue_date"), {"size": "big", "bold": True, "align": align})], ["issue_date"]

    def table(self) -> list[tuple]:
        grid = _TABLES[self.r.choice(self.v.domain.tables)](self.v)
        self.fields.update(grid.fields)
        self.pool += self.r.sample(grid.cells, min(len(grid.cells), self.r.randint(2, 4)))
        return [("gap", 0.4), grid.block, ("gap", 0.4)]

    def bill(self) -> list[tuple]:
        blocks, fields, pool = _bill(self.v)
        self.fields.update(fields)
        self.pool += pool
        return [("gap", 0.4), *blocks]


def _record(g: _Gen) -> _Spec:
    """A generic training document: a domain, a layout, fields of the catalogue (see RECORD_LAYOUTS)."""
    r = g.r
    dom = r.choice(_DOMAINS)
    v = _Values(g, dom)
    layout = r.choice(RECORD_LAYOUTS)
    st = _style(r, width=r.choice([600, 640, 700, 760]))
    if layout.startswith("kv-"):
        st.kv = layout.removeprefix("kv-")
    elif layout == "two_columns":
        st.kv, st.width = r.choice(["stacked", "stacked", "inline"]), r.choice([780, 840, 900])
    elif layout in ("table", "items", "mixed"):
        st.width = max(st.width, 700)
    b = _RecordBuilder(v, st)
    b.value("issuer")  # first: its word names the e-mail and web addresses,
    b.value("issue_date")  # and the document's date is the anchor other dates are drawn around
    title = r.choice(dom.bill_titles if layout == "items" else dom.titles)
    title = title.upper() if r.random() < 0.35 else title
    blocks: list[tuple]
    if layout.startswith("kv-"):
        blocks = b.head(title) + b.meta() + [b.kv(k) for k in b.choose(5, 8)] + b.foot()
    elif layout == "two_columns":
        keys = b.choose(6, 9)
        half = (len(keys) + 1) // 2
        blocks = b.head(title) + b.meta() + [("cols", [b.kv(k) for k in keys[:half]],
                                              [b.kv(k) for k in keys[half:]])] + b.foot()
    elif layout == "sections":
        groups: dict[str, list[str]] = {}
        for k in b.choose(6, 9):
            groups.setdefault(_SECTION_OF.get(RECORD_FIELDS[k].value.family, "details"), []).append(k)
        blocks = b.head(title) + b.meta()
        for sec in [s for s in _SECTION_TITLES if s in groups]:
            heading = r.choice(_SECTION_TITLES[sec])
            blocks += [("text", heading.upper(), {"bold": True}) if r.random() < 0.5 else ("head", heading, 0.75,
                                                                                          "left")]
            blocks += [b.kv(k) for k in groups[sec]] + [("gap", 0.4)]
        blocks += b.foot()
    elif layout == "table":
        blocks = b.head(title) + b.meta() + [b.kv(k) for k in b.choose(1, 3)] + b.table() + b.foot()
    elif layout == "items":
        blocks = b.head(title) + b.meta() + [b.kv(k) for k in b.choose(1, 3)] + b.bill() + b.foot()
    elif layout == "unlabelled":
        blocks = [("head", b.ask("issuer"), 1.1)]
        top = [b.address_block() if r.random() < 0.7 else [], b.contact_block() if r.random() < 0.8 else []]
        if all(top) and r.random() < 0.5:
            blocks.append(("cols", top[0], top[1]))
        else:
            blocks += top[0] + top[1]
        name, named = b.name_line()
        when, dated = b.when_line()
        blocks += [("rule",), ("text", title, {"bold": True, "align": st.head_align}), ("gap", 0.4)]
        blocks += (name + when if r.random() < 0.5 else when + name) + [("gap", 0.5)]
        blocks += [b.kv(k) for k in b.choose(2, 4, exclude=named + dated)] + b.foot(contact_p=0.0)
    else:  # mixed
        issuer = [("text", b.ask("issuer"), {"size": "big", "bold": True})]
        blocks = [("cols", issuer + b.address_block(), b.contact_block("right"))] if r.random() < 0.5 else \
            [("head", b.ask("issuer"))] + b.contact_block(st.head_align)
        blocks += [("rule",), ("text", title, {"bold": True, "align": st.head_align})]
        named: list[str] = []
        if r.random() < 0.6:
            name, named = b.name_line()
            blocks += name
        keys = b.choose(2, 4, exclude=named)
        blocks += [b.kv(k) for k in keys] if r.random() < 0.5 or len(keys) < 3 else \
            [("cols", [b.kv(k) for k in keys[:2]], [b.kv(k) for k in keys[2:]])]
        blocks += (b.table() if r.random() < 0.5 else b.bill()) + b.foot(contact_p=0.0)
    return _Spec(blocks, b.fields, b.pool, st, layout)


_TRAIN_ONLY_BUILDERS = {"record": _record}
assert set(_TRAIN_ONLY_BUILDERS) == set(TRAIN_ONLY_KINDS) and not set(TRAIN_ONLY_KINDS) & set(ALL_KINDS)


# ============================================================================================ rendering
def render(kind: str, seed: int) -> Document:
    """The document of ``kind`` (one of ALL_KINDS or TRAIN_ONLY_KINDS) for ``seed``: image, 2-4 questions with
    their accepted answers, the fields."""
    builder = _BUILDERS.get(kind) or _TRAIN_ONLY_BUILDERS.get(kind)
    if builder is None:
        raise ValueError(f"unknown document kind {kind!r}: use one of {', '.join(ALL_KINDS + TRAIN_ONLY_KINDS)}")
    r = random.Random(f"lav2-documents/{kind}/{int(seed)}")
    spec = builder(_Gen(r))
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
    """``kinds`` as a tuple; ValueError on a kind that is neither in a split nor train-only."""
    kinds = tuple(kinds)
    unknown = [k for k in kinds if k not in _BUILDERS and k not in _TRAIN_ONLY_BUILDERS]
    if unknown:
        raise ValueError(f"unknown document kind(s) {', '.join(unknown)}: use "
                         f"{', '.join(ALL_KINDS + TRAIN_ONLY_KINDS)}")
    return kinds


def write_eval_set(out_dir: str | os.PathLike, split: str = "test", per_kind: int = 3, seed: int = 0,
                   kinds: Sequence[str] | None = None) -> Path:
    """Render ``per_kind`` documents (seeds ``seed`` .. ``seed + per_kind - 1``) of every kind of ``split`` (or
    of ``kinds``) into ``out_dir/images/`` and write ``out_dir/questions.jsonl`` (``id``, ``image`` relative to
    it, ``kind``, ``question``, ``answers``, plus ``split``, ``seed``, ``field``, ``layout``). Returns the JSONL
    path. Seeds must lie in :data:`EVAL_SEEDS`. Train-only kinds (:data:`TRAIN_ONLY_KINDS`) are refused."""
    kinds = _check_kinds(kinds) if kinds else kinds_of(split)
    train_only = [k for k in kinds if k in TRAIN_ONLY_KINDS]
    if train_only:
        raise ValueError(f"{', '.join(train_only)}: a training-only kind, not an evaluation kind — evaluate on the "
                         f"kinds of a split ({', '.join(ALL_KINDS)})")
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
    """Documents for training a reader: dev kinds and train-only kinds (``record``) only, seeds from
    :data:`TRAIN_SEED_START` up (never an eval document). Test and holdout kinds are refused — they measure what
    training did not see."""
    kinds = _check_kinds(kinds)
    banned = [k for k in kinds if k not in SPLITS["dev"] and k not in TRAIN_ONLY_KINDS]
    if banned:
        raise ValueError(f"{', '.join(banned)} are test/holdout kinds: training uses dev kinds and train-only kinds "
                         f"only ({', '.join(SPLITS['dev'] + TRAIN_ONLY_KINDS)})")
    if start < TRAIN_SEED_START:
        raise ValueError(f"training seeds start at {TRAIN_SEED_START} (below are evaluation seeds), got {start}")
    for s in range(start, start + n_per_kind):
        for kind in kinds:
            yield render(kind, s)
