"""OCR expert: the printed text in an image, in reading order, from Tesseract (via pytesseract).

One ``image_to_data`` call gives words with boxes and confidences; lines are rebuilt from Tesseract's own
block → paragraph → line hierarchy (its reading order; columns stay separate). Small text is the main cause of OCR
errors, so when the median word height is below ``small_text_px`` the image is upscaled so words are about
``target_text_px`` tall and recognised again. Tiny images are first upscaled to ``min_height``.

Backend: ``pip install pytesseract`` and the Tesseract binary (Debian: ``apt-get install tesseract-ocr``, extra
languages ``tesseract-ocr-<lang>``, e.g. ``tesseract-ocr-deu``).
"""
from __future__ import annotations

import importlib.util
import logging
import os
import shutil
import signal
import statistics
import subprocess
import sys
import threading
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import BaseModel, Field, PrivateAttr

from .base import ExpertError, ExpertStatus, ExpertTimeout, ExpertTool, ExpertUnavailable
from .images import open_image

if TYPE_CHECKING:
    from PIL import Image

logger = logging.getLogger(__name__)

__all__ = ["OCRInput", "OCRTool", "character_error_rate"]

_INSTALL_HINT = "install it: `apt-get install tesseract-ocr` (Debian/Ubuntu) and `pip install pytesseract`"
_MAX_SCALE = 4.0
_MAX_SCALED_PIXELS = 36_000_000
_BORDER_PX = 12
_LIST_LANGS_MIN_S = 10.0  # `tesseract --list-langs` is bounded by max(timeout, this)
_PSM_SWITCH_CONF = 2.0  # mean-confidence points psm 4 must gain over psm 3 to be preferred


class OCRInput(BaseModel):
    """Input of the OCR expert."""

    image: str = Field(description="Image to read: a file path, a data: URL or an http(s) URL.")


def _import_pytesseract() -> Any:
    """``import pytesseract`` without pandas: pytesseract imports pandas at import time only for
    ``Output.DATAFRAME``, which this tool never asks for, and where pandas is installed (Ray Data brings it) that
    import costs about 0.5 s of every first OCR call (``lav2 ask`` start-up)."""
    if "pytesseract" in sys.modules or "pandas" in sys.modules:
        import pytesseract

        return pytesseract
    with _IMPORT_LOCK:
        sys.modules["pandas"] = None  # type: ignore[assignment]  # `import pandas` -> ModuleNotFoundError
        try:
            import pytesseract
        finally:
            if sys.modules.get("pandas", 0) is None:
                del sys.modules["pandas"]
    return pytesseract


_IMPORT_LOCK = threading.Lock()


class OCRTool(ExpertTool):
    """Reads the printed text in an image with Tesseract."""

    name: str = "ocr"
    description: str = (
        "Reads the printed text visible in the image (signs, documents, receipts, labels, screenshots) "
        "and returns it line by line."
    )
    args_schema: type[BaseModel] = OCRInput
    needs_image: ClassVar[bool] = True

    lang: str = "eng"
    """Tesseract language code(s), e.g. ``"eng"`` or ``"eng+deu"``."""
    timeout: float = 30.0
    """Seconds per Tesseract call (0 disables the limit)."""
    psm: int | None = None
    """Tesseract page segmentation mode. None (auto): 3 (layout analysis, keeps columns apart), but when it
    finds text blocks side by side it also tries 4 (one column of rows, right for receipts and label/value
    lists) and keeps the read with the clearly higher confidence. 6 = one uniform block, 11 = sparse text."""
    oem: int | None = None
    min_height: int = 64
    """Images shorter than this are upscaled to it first."""
    rescale_small_text: bool = True
    small_text_px: int = 16
    """Median word height (px) under which the image is upscaled and read again."""
    target_text_px: int = 36
    min_conf: float = 0.0
    """Words with a Tesseract confidence (0-100) below this are dropped."""
    with_boxes: bool = False
    """Also put line boxes ``[x1,y1,x2,y2]`` into the text for the model (words and boxes are always in ``data``)."""
    tesseract_cmd: str | None = None
    """Path of the tesseract binary if it is not on ``PATH``."""
    omp_threads: int | None = 1
    """OpenMP threads per tesseract process (``OMP_THREAD_LIMIT``; an explicit environment value wins). One is
    about 2.5x faster than tesseract's default on small images and busy CPUs; None leaves tesseract's default."""

    _languages: list[str] | None = PrivateAttr(default=None)

    # ------------------------------------------------------------------------------------------- status
    def status(self) -> ExpertStatus:
        if importlib.util.find_spec("pytesseract") is None:
            return ExpertStatus(False, f"the pytesseract package is not installed: {_INSTALL_HINT}")
        binary = self.tesseract_cmd or "tesseract"
        if shutil.which(binary) is None:
            return ExpertStatus(False, f"the tesseract binary {binary!r} was not found: {_INSTALL_HINT}")
        try:
            missing = self._missing_languages()
        except ExpertError as exc:
            return ExpertStatus(False, str(exc))
        if missing:
            packages = " ".join(f"tesseract-ocr-{code}" for code in missing)
            return ExpertStatus(
                False,
                f"tesseract has no language data for {'+'.join(missing)}: `apt-get install {packages}` "
                f"or choose one of {', '.join(self._languages or [])}",
            )
        return ExpertStatus(True, f"tesseract, lang={self.lang}, psm={self.psm or 'auto'}")

    def _pytesseract(self) -> Any:
        try:
            pytesseract = _import_pytesseract()
        except ImportError as exc:
            raise ExpertUnavailable(f"the pytesseract package is not installed: {_INSTALL_HINT}") from exc
        if self.tesseract_cmd:
            pytesseract.pytesseract.tesseract_cmd = self.tesseract_cmd
        with _ENV_LOCK:
            if not isinstance(pytesseract.pytesseract.environ, _TesseractEnv):
                pytesseract.pytesseract.environ = _TESSERACT_ENV  # pytesseract passes it to Popen(env=...)
        return pytesseract

    def _missing_languages(self) -> list[str]:
        if self._languages is None:
            self._languages = self._list_languages()
        return [code for code in self.lang.split("+") if code and code not in self._languages]

    def _list_languages(self) -> list[str]:
        """``tesseract --list-langs`` within ``max(timeout, 10 s)`` (pytesseract's ``get_languages`` has none: a hung binary
        would hang ``status()`` and every OCR call for good)."""
        pytesseract = self._pytesseract()
        cmd = self.tesseract_cmd or pytesseract.pytesseract.tesseract_cmd
        try:
            proc = subprocess.Popen([cmd, "--list-langs"], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                    stderr=subprocess.STDOUT, start_new_session=os.name == "posix")
        except OSError as exc:
            raise ExpertUnavailable(f"the tesseract binary {cmd!r} was not found: {_INSTALL_HINT}") from exc
        limit = max(self.timeout, _LIST_LANGS_MIN_S)  # a metadata probe: never cut short by a tight OCR timeout
        try:
            out, _ = proc.communicate(timeout=limit)
        except subprocess.TimeoutExpired as exc:
            _kill_tree(proc)
            raise ExpertTimeout(f"`{cmd} --list-langs` did not answer within {limit:g}s: check the tesseract "
                                "installation") from exc
        if proc.returncode not in (0, 1):
            raise ExpertUnavailable(f"`{cmd} --list-langs` failed (exit status {proc.returncode}): reinstall "
                                    "tesseract-ocr")
        text = out.decode("utf-8", errors="replace")
        return sorted(line.strip() for line in text.splitlines()
                      if line.strip() and not line.strip().startswith("List of available languages"))

    # ------------------------------------------------------------------------------------------- running
    def _analyze(self, image: Any, query: str | None) -> tuple[str, Any]:
        pil = open_image(image)
        result = self.read(pil)
        return self._render(result), result

    def read(self, image: Any) -> dict[str, Any]:
        """OCR ``image`` and return ``{"text", "lines", "words", "scale", "mean_conf", "image_size"}``.

        Boxes are in pixels of the original image. Raises :class:`ExpertError` subclasses.
        """
        pil = open_image(image)
        missing = self._missing_languages()
        if missing:
            raise ExpertUnavailable(self.status().reason)
        gray = pil.convert("L")
        psm = self.psm or 3
        scale = max(1.0, self.min_height / gray.height)
        words = self._recognise(gray, scale, psm)
        if self.rescale_small_text and words:
            median_h = statistics.median(w["box"][3] - w["box"][1] for w in words)
            if median_h < self.small_text_px:
                rescale = min(self.target_text_px / max(median_h, 1.0), _MAX_SCALE) * scale
                rescale = min(rescale, (_MAX_SCALED_PIXELS / (gray.width * gray.height)) ** 0.5)
                if rescale > scale * 1.2:
                    logger.debug("small text (median word height %.1f px): reading again at x%.2f", median_h, rescale)
                    again = self._recognise(gray, rescale, psm)
                    if _mean_conf(again) >= _mean_conf(words) - 1.0 or len(again) > len(words):
                        words, scale = again, rescale
        if self.psm is None and _side_by_side_blocks(_group_lines(words)):
            # columns or rows split into blocks (receipts: items | prices): compare with row-wise reading
            rows = self._recognise(gray, scale, 4)
            logger.debug("side-by-side blocks: psm 3 conf %.1f, psm 4 conf %.1f", _mean_conf(words), _mean_conf(rows))
            if _mean_conf(rows) > _mean_conf(words) + _PSM_SWITCH_CONF:
                words, psm = rows, 4
        lines = _group_lines(words)
        return {
            "text": "\n".join(_paragraph_texts(lines)),
            "lines": lines,
            "words": words,
            "scale": round(scale, 3),
            "psm": psm,
            "mean_conf": round(_mean_conf(words), 1),
            "image_size": [pil.width, pil.height],
            "lang": self.lang,
        }

    def _recognise(self, gray: Image.Image, scale: float, psm: int) -> list[dict[str, Any]]:
        from PIL import Image, ImageOps

        pytesseract = self._pytesseract()
        img = gray
        if scale > 1.0:
            img = gray.resize((round(gray.width * scale), round(gray.height * scale)), Image.Resampling.LANCZOS)
        # Tesseract misses text touching the border: pad with the (estimated) background colour
        background = 255 if statistics.mean(gray.resize((16, 16)).getdata()) >= 128 else 0
        img = ImageOps.expand(img, border=_BORDER_PX, fill=background)
        config = f"--psm {psm}" + (f" --oem {self.oem}" if self.oem is not None else "")
        _TESSERACT_ENV.local.omp_threads = self.omp_threads
        try:
            raw = pytesseract.image_to_data(
                img, lang=self.lang, config=config, timeout=self.timeout, output_type=pytesseract.Output.DICT
            )
        except pytesseract.TesseractNotFoundError as exc:
            raise ExpertUnavailable(f"the tesseract binary was not found: {_INSTALL_HINT}") from exc
        except RuntimeError as exc:  # pytesseract signals its timeout with a bare RuntimeError
            if "timeout" in str(exc).lower():
                raise ExpertTimeout(
                    f"tesseract did not finish within {self.timeout:g}s: raise OCRTool(timeout=...) "
                    "or pass a smaller image"
                ) from exc
            raise ExpertError(f"tesseract failed: {exc}") from exc
        except pytesseract.TesseractError as exc:
            raise ExpertError(f"tesseract failed (status {exc.status}): {exc.message}") from exc
        finally:
            _TESSERACT_ENV.local.omp_threads = None
        return self._words(raw, scale)

    def _words(self, raw: dict[str, list[Any]], scale: float) -> list[dict[str, Any]]:
        words = []
        for i, text in enumerate(raw["text"]):
            conf = float(raw["conf"][i])
            text = str(text).strip()
            if not text or conf < 0 or conf < self.min_conf:
                continue
            x, y = raw["left"][i] - _BORDER_PX, raw["top"][i] - _BORDER_PX
            w, h = raw["width"][i], raw["height"][i]
            box = [round(max(x, 0) / scale), round(max(y, 0) / scale), round((x + w) / scale), round((y + h) / scale)]
            words.append(
                {
                    "text": text,
                    "conf": round(conf, 1),
                    "box": box,
                    "line_key": [raw["block_num"][i], raw["par_num"][i], raw["line_num"][i]],
                }
            )
        return words

    def _render(self, result: dict[str, Any]) -> str:
        if not result["words"]:
            return "No text found in the image."
        if not self.with_boxes:
            return result["text"]
        return "\n".join(f"[{','.join(map(str, line['box']))}] {line['text']}" for line in result["lines"])


# --------------------------------------------------------------------------------------------- helpers
class _TesseractEnv(Mapping[str, str]):
    """``os.environ`` (read live) plus ``OMP_THREAD_LIMIT`` for tesseract processes OCRTool starts in this thread.

    pytesseract has no per-call environment, only the module global it hands to ``Popen(env=...)``; this overlay
    is a pass-through for every other caller and thread, so nothing else in the process changes.
    """

    def __init__(self) -> None:
        self.local = threading.local()

    def _extra(self) -> dict[str, str]:
        threads = getattr(self.local, "omp_threads", None)
        if threads is None or "OMP_THREAD_LIMIT" in os.environ:
            return {}
        return {"OMP_THREAD_LIMIT": str(threads)}

    def __getitem__(self, key: str) -> str:
        extra = self._extra()
        return extra[key] if key in extra else os.environ[key]

    def __iter__(self) -> Iterator[str]:
        return iter({**os.environ, **self._extra()})

    def __len__(self) -> int:
        return len({**os.environ, **self._extra()})


_TESSERACT_ENV = _TesseractEnv()
_ENV_LOCK = threading.Lock()


def _kill_tree(proc: subprocess.Popen) -> None:
    """Kill a timed-out child and whatever it started (its own session), then reap it."""
    try:
        if os.name == "posix":
            os.killpg(proc.pid, signal.SIGKILL)
        else:
            proc.kill()
    except OSError:
        pass
    try:
        proc.communicate(timeout=5)
    except (subprocess.TimeoutExpired, OSError, ValueError):
        pass


def _mean_conf(words: list[dict[str, Any]]) -> float:
    return statistics.fmean(w["conf"] for w in words) if words else 0.0


def _group_lines(words: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Words (already in Tesseract's reading order) → lines with text, box, mean confidence and block/paragraph."""
    lines: dict[tuple[int, int, int], dict[str, Any]] = {}
    for word in words:
        key = tuple(word["line_key"])
        line = lines.setdefault(key, {"words": [], "block": key[0], "par": key[1]})
        line["words"].append(word)
    out = []
    for line in lines.values():
        ws = line["words"]
        out.append(
            {
                "text": " ".join(w["text"] for w in ws),
                "box": [
                    min(w["box"][0] for w in ws),
                    min(w["box"][1] for w in ws),
                    max(w["box"][2] for w in ws),
                    max(w["box"][3] for w in ws),
                ],
                "conf": round(_mean_conf(ws), 1),
                "block": line["block"],
                "par": line["par"],
            }
        )
    return out


def _side_by_side_blocks(lines: list[dict[str, Any]]) -> bool:
    """Do two lines of different blocks share a row (vertical overlap > half a line) without overlapping in x?"""
    for i, a in enumerate(lines):
        for b in lines[i + 1 :]:
            if a["block"] == b["block"]:
                continue
            ax1, ay1, ax2, ay2 = a["box"]
            bx1, by1, bx2, by2 = b["box"]
            v_overlap = min(ay2, by2) - max(ay1, by1)
            if v_overlap > 0.5 * min(ay2 - ay1, by2 - by1) and (ax2 <= bx1 or bx2 <= ax1):
                return True
    return False


def _paragraph_texts(lines: list[dict[str, Any]]) -> list[str]:
    """One text line per OCR line; a blank line between blocks so separate regions stay separate."""
    texts: list[str] = []
    previous_block = None
    for line in lines:
        if previous_block is not None and line["block"] != previous_block:
            texts.append("")
        texts.append(line["text"])
        previous_block = line["block"]
    return texts


def character_error_rate(reference: str, hypothesis: str) -> float:
    """Levenshtein distance between the two texts / reference length, after collapsing whitespace per line.

    Blank lines are ignored, so layout spacing does not count as an error; 0.0 is a perfect read.
    """

    def norm(s: str) -> str:
        return "\n".join(" ".join(line.split()) for line in s.splitlines() if line.strip())

    ref, hyp = norm(reference), norm(hypothesis)
    if not ref:
        return 0.0 if not hyp else 1.0
    previous = list(range(len(hyp) + 1))
    for i, rc in enumerate(ref, 1):
        current = [i]
        for j, hc in enumerate(hyp, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (rc != hc)))
        previous = current
    return previous[-1] / len(ref)
