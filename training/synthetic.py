"""A synthetic multimodal data set for tests and demos: coloured shapes drawn with PIL, captions that say what
was drawn, language-only instructions, multi-turn conversations and image questions, in the real file formats
(COCO captions JSON, the release's TSV, Alpaca JSON, ShareGPT JSON, LLaVA JSON).

Everything is a deterministic function of ``seed``, so tests can regenerate the same files.
"""
from __future__ import annotations

import json
import logging
import random
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageDraw

log = logging.getLogger(__name__)

COLOURS = {"red": (220, 30, 30), "green": (30, 170, 60), "blue": (40, 70, 220), "yellow": (240, 210, 40),
           "purple": (140, 50, 170), "orange": (245, 140, 20), "white": (250, 250, 250), "black": (15, 15, 15)}
SHAPES = ("circle", "square", "triangle")

_OPPOSITES = [("up", "down"), ("hot", "cold"), ("big", "small"), ("day", "night"), ("left", "right"),
              ("open", "closed"), ("fast", "slow"), ("old", "new")]
_WORDS = ["cat", "dog", "sun", "map", "tree", "bird", "fish", "lamp", "rose", "ship"]


@dataclass(frozen=True)
class SyntheticDataset:
    """Paths of the generated files."""

    root: Path
    images: list[Path]
    coco: Path  # COCO captions annotation JSON
    tsv: Path  # release TSV: image path <TAB> caption
    alpaca: Path  # Alpaca instructions
    sharegpt: Path  # multi-turn conversations
    llava: Path  # conversations about the images


def draw_shape(shape: str, colour: str, background: str, size: int = 64, rng: random.Random | None = None
               ) -> Image.Image:
    """One RGB image: a ``colour`` ``shape`` on a ``background``-coloured square, slightly jittered."""
    rng = rng or random.Random(0)
    img = Image.new("RGB", (size, size), COLOURS[background])
    d = ImageDraw.Draw(img)
    r = size * rng.uniform(0.25, 0.38)
    cx, cy = size / 2 + rng.uniform(-size, size) * 0.08, size / 2 + rng.uniform(-size, size) * 0.08
    fill = COLOURS[colour]
    if shape == "circle":
        d.ellipse([cx - r, cy - r, cx + r, cy + r], fill=fill)
    elif shape == "square":
        d.rectangle([cx - r, cy - r, cx + r, cy + r], fill=fill)
    elif shape == "triangle":
        d.polygon([(cx, cy - r), (cx - r, cy + r), (cx + r, cy + r)], fill=fill)
    else:
        raise ValueError(f"unknown shape {shape!r}; choose one of {SHAPES}")
    return img


def caption_for(shape: str, colour: str, background: str) -> str:
    return f"a {colour} {shape} on a {background} background"


def _instructions(rng: random.Random, n: int) -> list[dict[str, str]]:
    out = []
    for i in range(n):
        kind = i % 4
        if kind == 0:
            a, b = rng.choice(_OPPOSITES)
            out.append({"instruction": f"What is the opposite of {a}?", "input": "", "output": b})
        elif kind == 1:
            w = rng.choice(_WORDS)
            out.append({"instruction": "Spell the word backwards.", "input": w, "output": w[::-1]})
        elif kind == 2:
            shape, sides = rng.choice([("triangle", "three"), ("square", "four"), ("circle", "no")])
            out.append({"instruction": f"How many corners does a {shape} have?", "input": "", "output": sides})
        else:
            x, y = rng.randint(1, 9), rng.randint(1, 9)
            out.append({"instruction": f"What is {x} plus {y}?", "input": "", "output": str(x + y)})
    return out


def make_dataset(out_dir: str | Path, n_images: int = 32, *, image_size: int = 64, seed: int = 0,
                 n_instructions: int | None = None, n_conversations: int | None = None) -> SyntheticDataset:
    """Draw ``n_images`` images and write every file format the readers accept; returns their paths."""
    root = Path(out_dir)
    (root / "images").mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    colours = list(COLOURS)
    images, coco_images, annotations, tsv_lines, llava = [], [], [], ["url\tcaption"], []
    for i in range(n_images):
        shape = SHAPES[i % len(SHAPES)]
        colour = rng.choice(colours)
        background = rng.choice([c for c in colours if c != colour])
        path = root / "images" / f"{i:05d}.png"
        draw_shape(shape, colour, background, image_size, rng).save(path)
        images.append(path)
        caption = caption_for(shape, colour, background)
        coco_images.append({"id": i, "file_name": path.name, "width": image_size, "height": image_size})
        annotations.append({"id": i, "image_id": i, "caption": caption})
        tsv_lines.append(f"images/{path.name}\t{caption}")
        llava.append({"id": f"syn-{i}", "image": path.name, "conversations": [
            {"from": "human", "value": "<image>\nWhat shape is in the image?"},
            {"from": "gpt", "value": f"A {shape}."},
            {"from": "human", "value": "What colour is it?"},
            {"from": "gpt", "value": f"It is {colour}."}]})
    instructions = _instructions(rng, n_instructions if n_instructions is not None else max(n_images, 8))
    conversations = []
    for i in range(n_conversations if n_conversations is not None else max(n_images // 2, 4)):
        a, b = instructions[(2 * i) % len(instructions)], instructions[(2 * i + 1) % len(instructions)]
        conversations.append({"id": f"conv-{i}", "conversations": [
            {"from": "human", "value": (a["instruction"] + " " + a["input"]).strip()},
            {"from": "gpt", "value": a["output"]},
            {"from": "human", "value": (b["instruction"] + " " + b["input"]).strip()},
            {"from": "gpt", "value": b["output"]}]})
    coco = root / "captions_coco.json"
    coco.write_text(json.dumps({"images": coco_images, "annotations": annotations}, indent=1))
    tsv = root / "captions.tsv"
    tsv.write_text("\n".join(tsv_lines) + "\n")
    alpaca = root / "alpaca.json"
    alpaca.write_text(json.dumps(instructions, indent=1))
    sharegpt = root / "sharegpt.json"
    sharegpt.write_text(json.dumps(conversations, indent=1))
    llava_path = root / "llava.json"
    llava_path.write_text(json.dumps(llava, indent=1))
    log.info("synthetic data set: %d images, %d instructions, %d conversations in %s", n_images, len(instructions),
             len(conversations), root)
    return SyntheticDataset(root, images, coco, tsv, alpaca, sharegpt, llava_path)
