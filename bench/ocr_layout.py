"""OCR layout quality and time: character error rate and "label and value on one line" rate per OCRTool setting.

Documents (each with its reference text and its label/value pairs):

* ``examples`` — examples/receipt.png and the eval images in examples/eval/images (references rebuilt from the
  data in examples/render_examples.py);
* ``generated`` — documents rendered here with a fixed seed: receipts (prices right-aligned), forms (values at a
  column), label/value cards (values right-aligned), signs and two-column pages, in DejaVu Sans/Serif/Mono at
  16-30 px, on light tinted paper; a share rotated by up to 3 degrees and a share with Gaussian grain;

A pair counts as kept when one output line contains both the label and the value (cell separators removed).
CER is :func:`tools.ocr.character_error_rate` against the reference (reading order matters, blank lines and
cell separators do not). Time is the wall time of ``OCRTool.read`` per document (one OpenMP thread).

* ``docs-dev`` (``--docs PER_KIND``) — the dev kinds of training/documents.py (never its test or holdout kinds),
  seeds 0..PER_KIND-1; also "answer in text": how many of their questions have an accepted answer in the OCR text.

    python bench/ocr_layout.py [--n 40] [--seed 0] [--configs lines-plain,rows] [--docs 5 [--documents PATH]]
                               [--json] [--show NAME]
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
from PIL import Image, ImageDraw, ImageFont  # noqa: E402

from tools.ocr import CELL_SEPARATOR, OCRTool, character_error_rate  # noqa: E402

CONFIGS: dict[str, dict[str, Any]] = {
    "lines-plain": {"layout": "lines", "deskew": False, "denoise": False},  # the OCR before the rows layout
    "rows-plain": {"layout": "rows", "deskew": False, "denoise": False},
    "rows-deskew": {"layout": "rows", "deskew": True, "denoise": False},
    "rows-denoise": {"layout": "rows", "deskew": False, "denoise": True},
    "rows-leaders": {"erase_leaders": False},  # the defaults but dot leaders left for Tesseract to read
    "rows": {},  # the defaults: rows + deskew + denoise + dot leaders erased
    "rows-psm11": {"psm": 11},  # sparse text: no reading order from Tesseract, the rows layout makes one
    "rows-psm6": {"psm": 6},
    "lines": {"layout": "lines"},
}

FONTS = ["DejaVuSans.ttf", "DejaVuSerif.ttf", "DejaVuSansMono.ttf", "DejaVuSans-Bold.ttf"]
SHOPS = ["MAPLE MARKET", "SUNRISE BAKERY", "CITY HARDWARE", "BLUE DOOR CAFE", "NORTH STAR PHARMACY", "OAK BOOKS"]
ITEMS = ["Coffee beans", "Oat milk", "Croissant", "Sparkling water", "Butter", "Rice 2kg", "Olive oil", "Tea",
         "Notebook", "Pencils x10", "Apples 1kg", "Hammer", "Tape", "Batteries AA", "Shampoo", "Bread"]
FIELDS = [("Name", ["Alice Moreau", "Tom Baker", "Priya Shah", "Jonas Berg"]), ("City", ["Dublin", "Lyon", "Porto"]),
          ("Member ID", ["58213", "A-1177", "90412"]), ("Date", ["2024-05-17", "12 March 2025", "03/11/2024"]),
          ("Seat", ["14C", "2A", "31F"]), ("Gate", ["B22", "A7", "C14"]), ("Flight", ["BA 117", "LH 402"]),
          ("Phone", ["555-0199", "+44 20 7946 0018"]), ("Email", ["info@oak.example", "jo@mail.example"]),
          ("Reference", ["QX-7731", "REF 20931"]), ("Room", ["204", "1.17"]), ("Due", ["15 March 2025", "Friday"])]
PROSE = ("The adapter injects visual tokens into the first few layers of the model while instruction prompts live "
         "in the last layers and bias and scale tuning unlocks every linear layer with few extra parameters so the "
         "adapted model starts identical to the base one and learns quickly from a small set of examples that "
         "cover many kinds of documents rendered in several fonts sizes and colours").split()


def ttf(name: str) -> str:
    spec = importlib.util.find_spec("matplotlib")
    candidates = []
    if spec is not None and spec.submodule_search_locations:
        candidates.append(Path(next(iter(spec.submodule_search_locations))) / "mpl-data" / "fonts" / "ttf" / name)
    candidates.append(Path("/usr/share/fonts/truetype/dejavu") / name)
    for path in candidates:
        if path.is_file():
            return str(path)
    raise SystemExit(f"font {name} not found (install matplotlib or fonts-dejavu)")


# --------------------------------------------------------------------------------------------- documents
def _page(rng: random.Random, width: int, height: int) -> Image.Image:
    tint = tuple(rng.randint(236, 255) for _ in range(3))
    return Image.new("RGB", (width, height), tint)


def _ink(rng: random.Random) -> tuple[int, int, int]:
    return tuple(rng.randint(0, 60) for _ in range(3))


def _degrade(img: Image.Image, rng: random.Random, angle: float, sigma: float) -> Image.Image:
    if angle:
        img = img.rotate(angle, resample=Image.Resampling.BICUBIC, expand=True, fillcolor=img.getpixel((0, 0)))
    if sigma:
        pixels = np.asarray(img, dtype=np.float32)
        noise = np.random.default_rng(rng.randrange(2**32)).normal(0.0, sigma, pixels.shape[:2])[..., None]
        img = Image.fromarray(np.clip(pixels + noise, 0, 255).astype(np.uint8))
    return img


def label_value_doc(rng: random.Random, kind: str) -> tuple[Image.Image, str, list[tuple[str, str]]]:
    """receipt: items with right-aligned prices and a TOTAL; form: 'Label:' values at a column; card: values
    right-aligned after a title."""
    font = rng.choice(FONTS)
    size = rng.randint(16, 30)
    face = ImageFont.truetype(ttf(font), size)
    big = ImageFont.truetype(ttf(font), int(size * 1.35))
    if kind == "receipt":
        items = rng.sample(ITEMS, rng.randint(3, 7))
        prices = [f"{rng.randint(1, 30)}.{rng.randint(0, 99):02d}" for _ in items]
        total = f"{sum(float(p) for p in prices):.2f}"
        pairs = [*zip(items, prices, strict=True), ("TOTAL", total)]
        title = rng.choice(SHOPS)
    else:
        fields = rng.sample(FIELDS, rng.randint(3, 6))
        pairs = [(f"{label}:" if kind == "form" else label, rng.choice(values)) for label, values in fields]
        title = "REGISTRATION FORM" if kind == "form" else rng.choice(["BOARDING PASS", "MEMBER CARD", "ORDER"])
    step = int(size * rng.uniform(1.5, 2.0))
    label_w = max(face.getlength(label) for label, _ in pairs)
    value_w = max(face.getlength(value) for _, value in pairs)
    margin = size * 1.5
    width = int(max(margin * 2 + label_w + value_w + size * rng.uniform(3, 14), big.getlength(title) + 2 * margin))
    img = _page(rng, width, int(step * (len(pairs) + 2) + 3 * size))
    draw = ImageDraw.Draw(img)
    ink = _ink(rng)
    y = size * 1.5
    draw.text(((width - draw.textlength(title, font=big)) / 2, y), title, font=big, fill=ink)
    y += 2 * step
    value_x = margin + label_w + size * rng.uniform(2, 6)
    for label, value in pairs:
        draw.text((margin, y), label, font=face, fill=ink)
        x = value_x if kind == "form" else width - margin - draw.textlength(value, font=face)
        draw.text((x, y), value, font=face, fill=ink)
        y += step
    reference = "\n".join([title, *(f"{label} {value}" for label, value in pairs)])
    return img, reference, pairs


def sign_doc(rng: random.Random) -> tuple[Image.Image, str, list[tuple[str, str]]]:
    lines = rng.choice([["PLATFORM 7", "Trains to Oxford"], ["EMERGENCY EXIT", "Keep clear"], ["SPEED LIMIT", "30"],
                        ["OPEN DAILY", "9 AM - 6 PM"], ["NO PARKING", "Mon - Fri 8-18"], ["WET FLOOR", "Caution"]])
    font = rng.choice(["DejaVuSans-Bold.ttf", "DejaVuSans.ttf", "DejaVuSerif.ttf"])
    width, height = rng.randint(480, 720), rng.randint(240, 320)
    dark = rng.random() < 0.5
    bg = tuple(rng.randint(10, 90) for _ in range(3)) if dark else tuple(rng.randint(200, 250) for _ in range(3))
    img = Image.new("RGB", (width, height), bg)
    draw = ImageDraw.Draw(img)
    y = height * 0.22
    for text, size in zip(lines, [rng.randint(44, 64), rng.randint(26, 40)], strict=True):
        face = ImageFont.truetype(ttf(font), size)
        while draw.textlength(text, font=face) > width * 0.85:
            size -= 2
            face = ImageFont.truetype(ttf(font), size)
        draw.text(((width - draw.textlength(text, font=face)) / 2, y), text, font=face,
                  fill="white" if dark else (10, 10, 10))
        y += size * 1.7
    return img, "\n".join(lines), []


def columns_doc(rng: random.Random) -> tuple[Image.Image, str, list[tuple[str, str]]]:
    """A title across two columns of running text (left column first in the reference)."""
    font = rng.choice(["DejaVuSerif.ttf", "DejaVuSans.ttf"])
    size = rng.randint(16, 24)
    face = ImageFont.truetype(ttf(font), size)
    col_w = size * rng.randint(14, 18)
    gutter = int(size * rng.uniform(1.5, 3.0))

    def wrap(words: list[str]) -> list[str]:
        lines, cur = [], ""
        for w in words:
            nxt = f"{cur} {w}".strip()
            if face.getlength(nxt) > col_w and cur:
                lines.append(cur)
                cur = w
            else:
                cur = nxt
        return [*lines, cur] if cur else lines

    start = rng.randrange(0, 20)
    n = rng.randint(25, 40)
    left, right = wrap(PROSE[start:start + n]), wrap(PROSE[start + n:start + 2 * n])
    step = int(size * 1.5)
    margin = size
    title = rng.choice(["Adapters at a glance", "Notes on visual instruction tuning", "Release notes"])
    width = margin * 2 + col_w * 2 + gutter
    img = _page(rng, width, margin * 4 + step * (max(len(left), len(right)) + 2))
    draw = ImageDraw.Draw(img)
    ink = _ink(rng)
    draw.text(((width - draw.textlength(title, font=face)) / 2, margin), title, font=face, fill=ink)
    for i, line in enumerate(left):
        draw.text((margin, margin + step * (i + 2)), line, font=face, fill=ink)
    for i, line in enumerate(right):
        draw.text((margin + col_w + gutter, margin + step * (i + 2)), line, font=face, fill=ink)
    return img, "\n".join([title, *left, *right]), []


def generated(n: int, seed: int) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    kinds = ["receipt", "form", "card", "sign", "columns"]
    docs = []
    for i in range(n):
        kind = kinds[i % len(kinds)]
        if kind == "sign":
            img, ref, pairs = sign_doc(rng)
        elif kind == "columns":
            img, ref, pairs = columns_doc(rng)
        else:
            img, ref, pairs = label_value_doc(rng, kind)
        roll = rng.random()
        angle = rng.choice([-1, 1]) * rng.uniform(1.0, 3.0) if roll < 0.35 else 0.0
        sigma = rng.choice([20.0, 35.0, 50.0]) if 0.35 <= roll < 0.6 else 0.0
        img = _degrade(img, rng, angle, sigma)
        tags = [kind] + (["rotated"] if angle else []) + (["grainy"] if sigma else []) or [kind]
        docs.append({"name": f"gen-{i:03d}-{kind}", "image": img, "reference": ref, "pairs": pairs,
                     "tags": tags if (angle or sigma) else [kind, "clean"]})
    return docs


def examples() -> list[dict[str, Any]]:
    spec = importlib.util.spec_from_file_location("render_examples", REPO / "examples" / "render_examples.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)  # type: ignore[union-attr]

    def receipt(r: dict) -> tuple[str, list[tuple[str, str]]]:
        pairs = [*r["items"], ("TOTAL", r["total"])]
        return "\n".join([r["shop"], r["address"], r["date"], *(f"{a} {b}" for a, b in pairs), "THANK YOU!"]), pairs

    docs = []
    ref, pairs = receipt(mod.DEMO_RECEIPT)
    docs.append({"name": "receipt.png", "image": REPO / "examples" / "receipt.png", "reference": ref, "pairs": pairs})
    images = REPO / "examples" / "eval" / "images"
    for i, r in enumerate(mod.EVAL_RECEIPTS, 1):
        ref, pairs = receipt(r)
        docs.append({"name": f"receipt_{i}.png", "image": images / f"receipt_{i}.png", "reference": ref,
                     "pairs": pairs})
    for name, lines, _question, _answers in mod.SIGNS:
        docs.append({"name": name, "image": images / name, "reference": "\n".join(lines), "pairs": []})
    for name, fields, _question, _answers in mod.FORMS:
        pairs = [(f"{label}:", value) for label, value in fields]
        docs.append({"name": name, "image": images / name, "pairs": pairs,
                     "reference": "\n".join(["REGISTRATION FORM", *(f"{a} {b}" for a, b in pairs)])})
    for d in docs:
        d["tags"] = ["examples"]
    return docs


def _documents_module(path: str | None) -> Any:
    if path:
        spec = importlib.util.spec_from_file_location("lav2_documents", path)
        if spec is None or spec.loader is None:
            raise SystemExit(f"--documents {path}: not a Python file")
        mod = importlib.util.module_from_spec(spec)
        sys.modules["lav2_documents"] = mod  # dataclasses look their module up while the class is created
        spec.loader.exec_module(mod)
        return mod
    try:
        from training import documents
    except ImportError as exc:
        raise SystemExit(f"--docs: training/documents.py is not importable ({exc}); pass --documents PATH") from exc
    return documents


def docs_dev(per_kind: int, path: str | None) -> list[dict[str, Any]]:
    """Dev-kind documents of training/documents.py (never its test or holdout kinds), seeds 0..per_kind-1.

    The reference and the pairs come from the builder's blocks (the same seeded builder ``render`` runs): "item"
    and side-by-side "kv" blocks are label/value pairs (stacked ones are not: the label is above its value),
    table rows are rows, "cols" are read left then right. Questions are scored with ``answer_in_text``.
    """
    import random as _random

    mod = _documents_module(path)
    docs = []
    for kind in mod.kinds_of("dev"):
        assert kind in mod.SPLITS["dev"]
        for seed in range(per_kind):
            doc = mod.render(kind, seed)
            spec = mod._BUILDERS[kind](mod._Gen(_random.Random(f"lav2-documents/{kind}/{int(seed)}")))
            lines: list[str] = []
            pairs: list[tuple[str, str]] = []

            def walk(blocks: list[tuple], style: Any = spec.style, lines: list = lines, pairs: list = pairs) -> None:
                for b in blocks:
                    if b[0] in ("head", "text"):
                        lines.append(b[1])
                    elif b[0] == "item":
                        lines.append(f"{b[1]} {b[2]}")
                        pairs.append((b[1], b[2]))
                    elif b[0] == "kv":
                        if style.kv == "stacked":
                            lines.extend([b[1].upper(), b[2]])
                        else:
                            label = b[1] if style.kv == "right" else f"{b[1]}:"
                            lines.append(f"{label} {b[2]}")
                            pairs.append((label, b[2]))
                    elif b[0] == "cols":
                        walk(b[1])
                        walk(b[2])
                    elif b[0] == "table":
                        lines.append(" ".join(b[1]))
                        for cells in b[2]:
                            lines.append(" ".join(cells))
                            if len(cells) >= 2:
                                pairs.append((cells[0], cells[-1]))

            walk(spec.blocks)
            docs.append({"name": f"{kind}-{seed}", "image": doc.image, "reference": "\n".join(lines),
                         "pairs": pairs, "questions": [(q.question, q.answers) for q in doc.questions],
                         "answer_in_text": mod.answer_in_text,
                         "tags": [kind, *(e.split()[0] for e in doc.effects)] or [kind]})
    return docs


# --------------------------------------------------------------------------------------------- scoring
def pairs_kept(text: str, pairs: list[tuple[str, str]]) -> int:
    lines = [line.replace(CELL_SEPARATOR, " ") for line in text.splitlines()]
    return sum(any(label in line and value in line for line in lines) for label, value in pairs)


def evaluate(docs: list[dict[str, Any]], config: dict[str, Any]) -> list[dict[str, Any]]:
    tool = OCRTool(**config)
    out = []
    for doc in docs:
        image = doc["image"] if isinstance(doc["image"], Image.Image) else Image.open(doc["image"])
        start = time.perf_counter()
        result = tool.read(image)
        seconds = time.perf_counter() - start
        text = result["text"] if result["words"] else ""
        questions = doc.get("questions", [])
        found = sum(doc["answer_in_text"](answers, text) for _, answers in questions) if questions else 0
        out.append({"name": doc["name"], "tags": doc["tags"], "cer": character_error_rate(doc["reference"], text),
                    "pairs": len(doc["pairs"]), "kept": pairs_kept(text, doc["pairs"]), "seconds": seconds,
                    "questions": len(questions), "answers_found": found, "text": text,
                    **{k: result.get(k) for k in ("psm", "scale", "median_filter", "rotation", "mean_conf")}})
    return out


def summarise(rows: list[dict[str, Any]]) -> dict[str, Any]:
    pairs = sum(r["pairs"] for r in rows)
    return {"docs": len(rows), "cer_mean": statistics.fmean(r["cer"] for r in rows),
            "cer_median": statistics.median(r["cer"] for r in rows),
            "pairs_kept": sum(r["kept"] for r in rows), "pairs": pairs,
            "pair_rate": sum(r["kept"] for r in rows) / pairs if pairs else float("nan"),
            "questions": sum(r["questions"] for r in rows), "answers_found": sum(r["answers_found"] for r in rows),
            "seconds_mean": statistics.fmean(r["seconds"] for r in rows),
            "seconds_max": max(r["seconds"] for r in rows)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=40, help="generated documents (default 40)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--configs", default=",".join(CONFIGS), help=f"comma-separated, from {', '.join(CONFIGS)}")
    parser.add_argument("--docs", type=int, default=0, metavar="PER_KIND",
                        help="also PER_KIND documents of each dev kind of training/documents.py")
    parser.add_argument("--documents", default=None, metavar="PATH",
                        help="load training/documents.py from PATH (e.g. another worktree) for --docs")
    parser.add_argument("--json", action="store_true", help="print per-document results as JSON")
    parser.add_argument("--show", default="", help="print the OCR text of documents whose name contains this")
    args = parser.parse_args()
    unknown = [c for c in args.configs.split(",") if c not in CONFIGS]
    if unknown:
        parser.error(f"unknown config(s) {', '.join(unknown)}: choose from {', '.join(CONFIGS)}")
    sets = {"examples": examples(), "generated": generated(args.n, args.seed)}
    if args.docs:
        sets["docs-dev"] = docs_dev(args.docs, args.documents)
    results: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for name in args.configs.split(","):
        results[name] = {set_name: evaluate(docs, CONFIGS[name]) for set_name, docs in sets.items()}
    if args.json:
        print(json.dumps(results, indent=1, default=str))
        return 0
    print("| config | set | docs | CER mean | CER median | label+value on one line | answer in text | s/doc mean "
          "| s/doc max |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for name, per_set in results.items():
        for set_name, rows in per_set.items():
            groups = {set_name: rows}
            if set_name == "generated":
                for tag in ("clean", "rotated", "grainy", "columns"):
                    groups[f"  {tag}"] = [r for r in rows if tag in r["tags"]]
            if set_name == "docs-dev":
                for tag in dict.fromkeys(r["tags"][0] for r in rows):
                    groups[f"  {tag}"] = [r for r in rows if r["tags"][0] == tag]
                for tag in ("rotate", "noise", "blur"):
                    groups[f"  ({tag})"] = [r for r in rows if tag in r["tags"][1:]]
            for label, group in groups.items():
                if not group:
                    continue
                s = summarise(group)
                rate = f"{s['pairs_kept']}/{s['pairs']} ({100 * s['pair_rate']:.0f}%)" if s["pairs"] else "-"
                found = f"{s['answers_found']}/{s['questions']}" if s["questions"] else "-"
                print(f"| {name} | {label} | {s['docs']} | {s['cer_mean']:.3f} | {s['cer_median']:.3f} | {rate} | "
                      f"{found} | {s['seconds_mean']:.2f} | {s['seconds_max']:.2f} |")
    if args.show:
        for name, per_set in results.items():
            for rows in per_set.values():
                for r in rows:
                    if args.show in r["name"]:
                        print(f"--- {name} {r['name']} CER {r['cer']:.3f} kept {r['kept']}/{r['pairs']}\n{r['text']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
