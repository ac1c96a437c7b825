"""The ``lav2`` command line starts without its heavy libraries: --help imports none of them, and ``ask`` only
what answering needs (torch for the model, langchain_core for the pipeline), never transformers, ultralytics,
open_clip or full LangChain when the question does not call for them."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
HEAVY = ("torch", "numpy", "transformers", "langchain", "langchain_core", "langsmith", "ultralytics", "open_clip",
         "timm", "torchvision", "pytesseract", "PIL", "tokenizers", "safetensors", "gguf", "llama_cpp", "ray",
         "pandas", "pyarrow")


def imported_by(argv: list[str], env: dict | None = None) -> tuple[set[str], subprocess.CompletedProcess]:
    """Top-level packages from HEAVY that ``lav2 ARGV`` imported (run in a fresh interpreter)."""
    code = ("import atexit, json, sys\n"
            f"HEAVY = {HEAVY!r}\n"
            "atexit.register(lambda: sys.__stderr__.write('\\nLAV2-MODULES ' + json.dumps(sorted("
            "{m.split('.')[0] for m in sys.modules} & set(HEAVY))) + '\\n'))\n"
            "from orchestrator.cli import main\n"
            f"sys.exit(main({argv!r}))\n")
    res = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=600,
                         env=env)
    line = [x for x in res.stderr.splitlines() if x.startswith("LAV2-MODULES ")]
    assert line, res.stderr[-2000:]
    return set(json.loads(line[-1].split(" ", 1)[1])), res


@pytest.mark.parametrize("argv", [["--help"], ["ask", "--help"], ["train", "--help"], ["params", "--list"]])
def test_help_and_light_commands_import_no_heavy_library(argv):
    mods, res = imported_by(argv)
    assert res.returncode == 0, res.stderr[-2000:]
    assert mods == set(), f"lav2 {' '.join(argv)} imported {sorted(mods)}"


@pytest.mark.slow
def test_ask_imports_only_what_answering_needs(tmp_path):
    import os

    env = {**os.environ, "LAV2_CACHE_DIR": os.environ.get("LAV2_CACHE_DIR", str(Path.home() / ".cache" / "lav2"))}
    mods, res = imported_by(["ask", str(ROOT / "examples" / "receipt.png"), "What is the total on this receipt?",
                             "--json", "--max-new-tokens", "8"], env)
    assert res.returncode == 0, res.stderr[-2000:]
    assert json.loads(res.stdout)["answer"]
    assert {"torch", "langchain_core"} <= mods  # the model and the pipeline (a LangChain Runnable)
    unwanted = mods & {"transformers", "langchain", "ultralytics", "open_clip", "timm", "torchvision", "llama_cpp",
                       "ray", "pandas", "pyarrow"}  # pandas: pytesseract imports it if installed (Ray brings it)
    assert not unwanted, f"lav2 ask (OCR question) imported {sorted(unwanted)}"
