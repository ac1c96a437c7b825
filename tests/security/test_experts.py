"""Class 6: experts cannot take the process down — a hung expert cannot keep it from exiting (library and CLI),
tesseract calls are bounded, SystemExit does not sink the answer, and ``None`` contributes nothing."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from .conftest import png_bytes, subprocess_env


def _fake_tesseract(directory: Path) -> tuple[Path, Path]:
    """A ``tesseract`` that never answers (it records its pid so the test can clean up)."""
    directory.mkdir(parents=True, exist_ok=True)
    pids = directory / "pids"
    script = directory / "tesseract"
    script.write_text(f"#!/bin/sh\necho $$ >> {pids}\nexec sleep 300\n")
    script.chmod(0o755)
    return script, pids


def _kill_recorded(pids: Path) -> None:
    if not pids.exists():
        return
    for line in pids.read_text().split():
        try:
            os.kill(int(line), signal.SIGKILL)
        except (ProcessLookupError, ValueError):
            pass


def test_a_hung_expert_does_not_keep_the_process_alive(tmp_path):
    script = textwrap.dedent("""
        import json, threading
        from core_model import random_model
        from orchestrator import VisualQAPipeline
        from tools import expert

        @expert(name="hangs", register=False)
        def hangs(image) -> str:
            '''Never answers.'''
            threading.Event().wait()

        qa = VisualQAPipeline(random_model("tiny"), experts=[hangs], router=["hangs"], expert_timeout=0.5,
                              max_new_tokens=2)
        result = qa.invoke({"image": bytes.fromhex(%r), "question": "what is this?"})
        print(json.dumps(result.errors))
    """) % png_bytes().hex()
    start = time.monotonic()
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                          env=subprocess_env())
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "timed out" in json.loads(proc.stdout.strip().splitlines()[-1])["hangs"]
    assert time.monotonic() - start < 60


@pytest.mark.slow
def test_lav2_ask_exits_although_tesseract_hangs(tmp_path):
    """The CLI answers and exits: the OCR expert's thread, stuck in tesseract, is abandoned after its timeout."""
    fake, pids = _fake_tesseract(tmp_path / "bin")
    image = tmp_path / "sign.png"
    image.write_bytes(png_bytes())
    env = subprocess_env(PATH=f"{fake.parent}{os.pathsep}{os.environ.get('PATH', '')}",
                         LAV2_CACHE_DIR=str(tmp_path / "cache"))
    try:
        proc = subprocess.run([sys.executable, "-m", "orchestrator.cli", "ask", str(image), "what does the sign say",
                               "--experts", "ocr", "--expert-timeout", "1", "--model", "random:tiny",
                               "--max-new-tokens", "2", "--json"],
                              capture_output=True, text=True, timeout=90, env=env, cwd=tmp_path)
    finally:
        _kill_recorded(pids)
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout)
    assert "timed out" in result["errors"]["ocr"]


def test_tesseract_list_langs_is_bounded(tmp_path, monkeypatch):
    import pytesseract

    from tools import OCRTool
    from tools import ocr as ocr_module

    monkeypatch.setattr(ocr_module, "_LIST_LANGS_MIN_S", 1.0)
    # OCRTool(tesseract_cmd=...) sets pytesseract's module-global command: put the real one back afterwards
    monkeypatch.setattr(pytesseract.pytesseract, "tesseract_cmd", pytesseract.pytesseract.tesseract_cmd)
    fake, pids = _fake_tesseract(tmp_path / "bin")
    tool = OCRTool(tesseract_cmd=str(fake), timeout=1.0)
    box: dict = {}
    worker = threading.Thread(target=lambda: box.setdefault("status", tool.status()), daemon=True)
    try:
        worker.start()
        worker.join(20)
    finally:
        _kill_recorded(pids)
    assert not worker.is_alive(), "OCRTool.status() hung on `tesseract --list-langs`"
    assert not box["status"].ready and "did not answer within" in box["status"].reason


def test_system_exit_from_an_expert_does_not_sink_the_answer():
    from core_model import random_model
    from orchestrator import VisualQAPipeline
    from tools import ExpertTool

    class Quitter(ExpertTool):
        name: str = "quitter"
        description: str = "Calls sys.exit."
        needs_image = True

        def run_expert(self, image=None, query=None):  # outside tools' contract: it raises
            raise SystemExit(3)

    from tools import expert

    @expert(name="exits", register=False)
    def exits(image) -> str:
        """Calls sys.exit inside a library."""
        sys.exit("library gave up")

    qa = VisualQAPipeline(random_model("tiny"), experts=[Quitter(), exits], router=["quitter", "exits"],
                          max_new_tokens=2)
    result = qa.invoke({"image": png_bytes(), "question": "what is this?"})
    assert isinstance(result.answer, str)
    assert "SystemExit" in result.errors["quitter"] and "SystemExit" in result.errors["exits"]


def test_an_expert_returning_none_contributes_nothing():
    from core_model import random_model
    from orchestrator import VisualQAPipeline
    from tools import expert

    @expert(name="silent", register=False)
    def silent(image) -> str:
        """Has nothing to say."""
        return None

    result = silent.run_expert(image=png_bytes())
    assert result.error is None and result.text == ""
    qa = VisualQAPipeline(random_model("tiny"), experts=[silent], router=["silent"], max_new_tokens=2)
    out = qa.invoke({"image": png_bytes(), "question": "what is this?"})
    assert out.experts["silent"] == "" and "None" not in out.context


def test_the_detection_expert_leaves_pil_open_alone_so_a_bad_image_is_still_an_image_error():
    """`import ultralytics` patches `PIL.Image.open` for the whole process: an unidentifiable file then made it try
    to install and import pi-heif, so `open_image(garbage)` raised ModuleNotFoundError (not ImageError) in any
    process where the detection expert had run — a server, `lav2 batch`. The expert puts Pillow's own open back."""
    pytest.importorskip("ultralytics")
    from PIL import Image

    from core_model import ImageError
    from core_model.images import open_image
    from tools.detection import import_ultralytics

    import_ultralytics()
    import ultralytics.utils.patches as patches

    assert Image.open is not patches.image_open and Image.open is patches._image_open
    with pytest.raises(ImageError, match="not a recognised image format"):
        open_image(b"this is not an image at all" * 4)
