"""Detection expert: which objects are in the image, how many, and where (ultralytics YOLO).

Text for the model: ``"Objects: 4 person, 1 bus. Boxes (x1,y1,x2,y2 px; image 810x1080): person 0.87 [..]; ..."``.

Offline safety. Before ultralytics is first imported this module sets ``YOLO_OFFLINE=1`` (no DNS probe at import,
no analytics), ``YOLO_AUTOINSTALL=0`` (a checkpoint naming a missing module must not make ultralytics pip-install
it) and ``YOLO_CONFIG_DIR`` to a user cache directory, and copies a local TTF font there as ``Arial.ttf`` so
plotting never downloads one (all only if the user has not set them). A bare model name such as ``yolo11n.pt`` that
is not a local file is downloaded into ``<user cache>/lav2/weights`` when the network is up; offline the expert
reports itself unavailable instead of failing inside ultralytics. ultralytics' console messages (its settings
banner on first use ...) go to stderr: stdout belongs to the application (``lav2 ask --json``).

No code from weight files. A ``.pt`` checkpoint is a pickle; ultralytics unpickles it with ``weights_only=False``
unless its safe loader is on. This expert always loads through that safe loader (``weights_only=True`` plus an
allow-list of ultralytics/torch classes, no ``eval`` while building the model), and accepts only ``.pt`` and
``.yaml`` files: other formats ultralytics loads (TorchScript, TensorFlow, ...) can run code. A file you vouch for
— ``DetectionTool(trust_weights=True)``, or listed in ``LAV2_TRUSTED_WEIGHTS`` (paths separated by ``os.pathsep``)
— is loaded the way ultralytics loads it by default.

Backend: ``pip install ultralytics`` (AGPL-3.0) and a weights file.
"""
from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import pickle
import shutil
import sys
import threading
from collections import Counter
from pathlib import Path
from typing import Any, ClassVar

from pydantic import BaseModel, Field, PrivateAttr

from .base import ExpertError, ExpertStatus, ExpertTool, ExpertUnavailable, network_available, user_cache_dir
from .images import open_image

logger = logging.getLogger(__name__)

__all__ = ["DetectionInput", "DetectionTool", "prepare_ultralytics_env"]

_DOWNLOAD_HOST = "github.com"
_INSTALL_HINT = "install it with `pip install ultralytics` (or `pip install llama-adapter-v2[experts]`)"
_ENV_LOCK = threading.Lock()
_LOAD_LOCK = threading.Lock()  # ultralytics' safe-load switch is a module global: one load at a time
TRUST_ENV = "LAV2_TRUSTED_WEIGHTS"
_SAFE_SUFFIXES = (".pt", ".yaml", ".yml")


def is_trusted(path: str | os.PathLike) -> bool:
    """Whether ``LAV2_TRUSTED_WEIGHTS`` lists ``path`` or a directory holding it (same rule as core_model's)."""
    target = Path(path).expanduser().resolve()
    for entry in os.environ.get(TRUST_ENV, "").split(os.pathsep):
        entry = entry.strip()
        if not entry or entry.lower() in ("1", "true", "yes", "on", "all", "*"):
            continue  # a list of paths, not a switch
        trusted = Path(entry).expanduser().resolve()
        if target == trusted or trusted in target.parents:
            return True
    return False


def _send_ultralytics_output_to_stderr() -> None:
    """ultralytics logs to a handler bound to stdout at import time; stdout belongs to the application."""
    for handler in logging.getLogger("ultralytics").handlers:
        if isinstance(handler, logging.StreamHandler) and handler.stream in (sys.stdout, sys.__stdout__):
            handler.setStream(sys.stderr)


def import_ultralytics() -> Any:
    """``import ultralytics`` made offline-safe (:func:`prepare_ultralytics_env`), with its import-time console
    output (the settings banner of a first run) on stderr."""
    prepare_ultralytics_env()
    with contextlib.redirect_stdout(sys.stderr):
        import ultralytics
    _send_ultralytics_output_to_stderr()
    _restore_pil_open()
    return ultralytics


def _restore_pil_open() -> None:
    """Undo ultralytics' process-wide patch of ``PIL.Image.open``.

    ``import ultralytics`` replaces ``PIL.Image.open`` for the whole process with a wrapper that, on any file Pillow
    cannot identify, runs ``check_requirements("pi-heif")`` (a ``pip install`` unless ``YOLO_AUTOINSTALL`` is off)
    and imports it. Every image decoder of the process would then answer an unreadable upload with that — a
    ``ModuleNotFoundError`` instead of a clean "not an image" error, or a package install triggered by untrusted
    input. The detector does not need it (it reads images with OpenCV and ultralytics' own saved copy of the
    original), so Pillow's own ``open`` is put back."""
    from PIL import Image

    patches = sys.modules.get("ultralytics.utils.patches")
    original = getattr(patches, "_image_open", None)
    if original is not None and Image.open is getattr(patches, "image_open", None):
        Image.open = original


def _local_font() -> Path | None:
    candidates = []
    spec = importlib.util.find_spec("matplotlib")
    if spec is not None and spec.submodule_search_locations:
        root = Path(next(iter(spec.submodule_search_locations)))
        candidates.append(root / "mpl-data" / "fonts" / "ttf" / "DejaVuSans.ttf")
    candidates += [
        Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"),
        Path("/usr/share/fonts/TTF/DejaVuSans.ttf"),
        Path("/Library/Fonts/Arial.ttf"),
        Path("C:/Windows/Fonts/arial.ttf"),
    ]
    return next((p for p in candidates if p.is_file()), None)


def prepare_ultralytics_env() -> None:
    """Make ultralytics offline-safe. Effective only before its first import (idempotent, thread-safe)."""
    with _ENV_LOCK:
        if "ultralytics" in sys.modules:
            return
        os.environ.setdefault("YOLO_OFFLINE", "1")
        os.environ.setdefault("YOLO_AUTOINSTALL", "0")
        os.environ.setdefault("ULTRALYTICS_SAFE_LOAD", "1")
        config_root = Path(os.environ.setdefault("YOLO_CONFIG_DIR", str(user_cache_dir() / "ultralytics")))
        settings_dir = config_root / "Ultralytics"  # ultralytics appends this itself
        try:
            settings_dir.mkdir(parents=True, exist_ok=True)
            font = _local_font()
            for name in ("Arial.ttf", "Arial.Unicode.ttf"):
                target = settings_dir / name
                if font is not None and not target.exists():
                    shutil.copyfile(font, target)
        except OSError as exc:  # read-only home: ultralytics falls back to a temp dir on its own
            logger.debug("could not prepare %s: %s", settings_dir, exc)


class DetectionInput(BaseModel):
    """Input of the detection expert."""

    image: str = Field(description="Image to look at: a file path, a data: URL or an http(s) URL.")


class DetectionTool(ExpertTool):
    """Detects objects with a YOLO model: class counts plus the highest-confidence boxes."""

    name: str = "detection"
    description: str = (
        "Lists the objects detected in the image with their counts and pixel boxes, e.g. '3 person, 1 bus'."
    )
    args_schema: type[BaseModel] = DetectionInput
    needs_image: ClassVar[bool] = True

    weights: str = "yolo11n.pt"
    """Path of a YOLO weights file (.pt/.onnx/...), or a release name such as ``yolo11n.pt`` (downloaded online)."""
    conf: float = 0.25
    iou: float = 0.7
    device: str | None = None
    """``"cpu"``, ``"cuda:0"`` ...; None lets ultralytics choose."""
    imgsz: int = 640
    max_boxes: int = 10
    """How many boxes (highest confidence first) are written into the text; all are in ``data``."""
    trust_weights: bool = False
    """Load ``weights`` the way ultralytics does by default (full unpickling, any export format): only for a file
    you trust, since it can run code. Off: only ``.pt`` through ultralytics' safe loader, and ``.yaml``.
    ``LAV2_TRUSTED_WEIGHTS`` can vouch for files too."""

    _model: Any = PrivateAttr(default=None)
    _lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)

    # ------------------------------------------------------------------------------------------- weights
    def _cached_weights(self) -> Path:
        return user_cache_dir() / "weights" / Path(self.weights).name

    def _is_release_name(self) -> bool:
        path = Path(self.weights)
        return path.parent == Path(".") and path.suffix.lower() == ".pt" and not path.exists()

    def _offline_message(self) -> str:
        return (
            f"weights {self.weights!r} not found locally and could not be downloaded (offline?): "
            "pass a local .pt path, e.g. DetectionTool(weights='path/to/best.pt')"
        )

    def _local_weights(self) -> Path | None:
        path = Path(self.weights).expanduser()
        if path.is_file():
            return path
        if self._is_release_name() and self._cached_weights().is_file():
            return self._cached_weights()
        return None

    def status(self) -> ExpertStatus:
        if importlib.util.find_spec("ultralytics") is None:
            return ExpertStatus(False, f"the ultralytics package is not installed: {_INSTALL_HINT}")
        local = self._local_weights()
        if local is not None:
            return ExpertStatus(True, f"YOLO weights {str(local)!r}, conf={self.conf}, iou={self.iou}")
        if Path(self.weights).suffix.lower() in (".yaml", ".yml"):
            return ExpertStatus(True, f"YOLO architecture {self.weights!r} with RANDOM weights (for tests only)")
        if self._is_release_name():
            if network_available(_DOWNLOAD_HOST):
                return ExpertStatus(True, f"{self.weights!r} will be downloaded on first use")
            return ExpertStatus(False, self._offline_message())
        return ExpertStatus(
            False,
            f"weights file {self.weights!r} does not exist: pass the path of a YOLO .pt file "
            "(e.g. runs/detect/train/weights/best.pt) or a release name such as 'yolo11n.pt' when online",
        )

    # ------------------------------------------------------------------------------------------- model
    def _trusted(self, source: str) -> bool:
        return self.trust_weights or (Path(source).exists() and is_trusted(source))

    def _load(self) -> Any:
        if self._model is not None:
            return self._model
        source = self._weights_source()
        trusted = self._trusted(source)
        if not trusted and Path(source).suffix.lower() not in _SAFE_SUFFIXES:
            raise ExpertUnavailable(
                f"weights {source!r}: only .pt checkpoints (read with ultralytics' safe loader) and .yaml "
                "architectures are loaded by default — other formats can run code. If you trust this file, pass "
                f"DetectionTool(trust_weights=True) or list it in {TRUST_ENV}")
        try:
            import_ultralytics()
            from ultralytics import YOLO
            from ultralytics.nn import tasks
        except ImportError as exc:
            raise ExpertUnavailable(f"the ultralytics package is not installed: {_INSTALL_HINT}") from exc
        logger.info("loading YOLO weights %s%s", source, " (trusted: full unpickling)" if trusted else "")
        try:
            with _LOAD_LOCK, contextlib.redirect_stdout(sys.stderr):
                previous, tasks.SAFE_LOAD = tasks.SAFE_LOAD, not trusted
                try:
                    model = YOLO(source)
                finally:
                    tasks.SAFE_LOAD = previous
        except (TypeError, ModuleNotFoundError, pickle.UnpicklingError) as exc:
            refused = isinstance(exc, ModuleNotFoundError) or _refused_global(exc)
            if trusted or not refused:
                raise ExpertUnavailable(f"cannot load YOLO weights {source!r} ({type(exc).__name__}: "
                                        f"{_first_line(exc)}): is it an ultralytics checkpoint?") from exc
            raise ExpertUnavailable(
                f"weights {source!r} were refused by ultralytics' safe loader ({_first_line(exc)}): they hold "
                "objects outside the known ultralytics classes, which could run code. If you trust this file, pass "
                f"DetectionTool(trust_weights=True) or list it in {TRUST_ENV}") from exc
        except (ConnectionError, OSError) as exc:
            if self._is_release_name():
                raise ExpertUnavailable(f"{self._offline_message()} ({exc})") from exc
            raise ExpertUnavailable(f"cannot load YOLO weights {source!r}: {exc}") from exc
        except Exception as exc:  # noqa: BLE001 - ultralytics raises many types for a bad checkpoint
            raise ExpertUnavailable(
                f"cannot load YOLO weights {source!r} ({type(exc).__name__}: {_first_line(exc)}): is it an "
                "ultralytics checkpoint?"
            ) from exc
        self._model = model
        return model

    def _weights_source(self) -> str:
        local = self._local_weights()
        if local is not None:
            return str(local)
        if Path(self.weights).suffix.lower() in (".yaml", ".yml"):
            return self.weights
        if self._is_release_name():
            if not network_available(_DOWNLOAD_HOST):
                raise ExpertUnavailable(self._offline_message())
            target = self._cached_weights()
            target.parent.mkdir(parents=True, exist_ok=True)
            return str(target)  # ultralytics downloads a known release name to exactly this path
        raise ExpertUnavailable(self.status().reason)

    # ------------------------------------------------------------------------------------------- running
    def _analyze(self, image: Any, query: str | None) -> tuple[str, Any]:
        data = self.detect(image)
        return self._render(data), data

    def detect(self, image: Any) -> dict[str, Any]:
        """Run the detector; ``{"counts", "boxes": [{label, class_id, conf, box}], "image_size", "weights"}``."""
        pil = open_image(image)
        with self._lock:
            model = self._load()
            results = model.predict(
                pil, conf=self.conf, iou=self.iou, imgsz=self.imgsz, device=self.device, verbose=False
            )
        result = results[0]
        if result.boxes is None:
            raise ExpertError(
                f"weights {self.weights!r} are a {getattr(model, 'task', '?')} model without boxes: "
                "DetectionTool needs a detection (or segmentation/pose) model"
            )
        names = result.names
        boxes = []
        for xyxy, cls, conf in zip(
            result.boxes.xyxy.tolist(), result.boxes.cls.tolist(), result.boxes.conf.tolist(), strict=True
        ):
            class_id = int(cls)
            boxes.append(
                {
                    "label": str(names.get(class_id, class_id)),
                    "class_id": class_id,
                    "conf": round(float(conf), 3),
                    "box": [round(v) for v in xyxy],
                }
            )
        boxes.sort(key=lambda b: b["conf"], reverse=True)
        counts = Counter(b["label"] for b in boxes)
        return {
            "counts": dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))),
            "boxes": boxes,
            "image_size": [pil.width, pil.height],
            "weights": str(self._local_weights() or self.weights),
            "conf": self.conf,
        }

    def _render(self, data: dict[str, Any]) -> str:
        if not data["boxes"]:
            return f"Objects: none detected (confidence >= {self.conf:g})."
        counts = ", ".join(f"{n} {label}" for label, n in data["counts"].items())
        width, height = data["image_size"]
        shown = data["boxes"][: self.max_boxes]
        listed = "; ".join(f"{b['label']} {b['conf']:.2f} [{','.join(map(str, b['box']))}]" for b in shown)
        more = len(data["boxes"]) - len(shown)
        tail = f"; (+{more} more)" if more > 0 else ""
        return f"Objects: {counts}. Boxes (x1,y1,x2,y2 px; image {width}x{height}): {listed}{tail}."


def _refused_global(exc: BaseException) -> bool:
    """True when torch's weights_only unpickler refused a global somewhere in the exception chain (the file needs
    classes outside the allow-list), False for a file that is simply not a checkpoint."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if "Unsupported global" in str(current) or "not an allowed global" in str(current):
            return True
        current = current.__cause__ or current.__context__
    return False


def _first_line(exc: BaseException) -> str:
    """ultralytics' messages span lines and carry emoji prefixes; one line is enough for a status."""
    for line in str(exc).splitlines():
        line = line.strip().removeprefix("ERROR ❌️").strip()
        if line:
            return line[:300]
    return type(exc).__name__
