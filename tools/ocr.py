"""OCR expert: the printed text in an image, in reading order, from Tesseract (via pytesseract).

One ``image_to_data`` call gives words with boxes and confidences. The text for the model has one of two layouts:

* ``layout="rows"`` (default): visual rows rebuilt from the word boxes across Tesseract's blocks, because on
  receipts and label/value documents Tesseract often puts labels and values in different blocks, so "TOTAL" and
  "18.55" would end up lines apart. Words whose vertical centres (corrected for the text slope estimated from
  Tesseract's lines, up to 5 degrees) are within half a text height share a row; words are in x order, and a gap
  wider than two median character widths of the row separates cells, joined with :data:`CELL_SEPARATOR`
  (``" | "``)::

      MAPLE CORNER MARKET
      Coffee beans | 12.50
      TOTAL | 18.55

  Two columns of running text (a vertical gutter shared by consecutive rows, 3+ rows with 3+ words a row on
  each side) are read column by column; each such region is separated by a blank line. A column of values
  (prices, form entries) stays on its labels' rows. Dot leaders ("Wood glue ........ 7.33") and a frame around
  the page are erased from the image before reading (``erase_leaders``, ``erase_rules``). Words under 40%
  confidence are left out (leaders read as "eee", barcodes, grain), and text Tesseract's layout analysis lost is
  read again region by region (psm 6): the band of a tall doubtful word that swallowed lines, and text-sized ink
  no word covers.
* ``layout="lines"``: lines from Tesseract's own block → paragraph → line hierarchy (its reading order), a blank
  line between blocks.

``data["rows"]`` has, per row, ``text``, ``cells`` (``text``, ``box``), ``box``, ``height`` (median word height,
px: headings are taller), ``conf`` and ``region``; ``data["lines"]`` and ``data["words"]`` are always there.

Small text is the main cause of OCR errors, so when the median word height is below ``small_text_px`` the image is
upscaled so words are about ``target_text_px`` tall and recognised again. Tiny images are first upscaled to
``min_height``. Grain defeats Tesseract's binarisation (often not one word is found): when the mean confidence is under
``retry_conf`` a 2x upscaled, median-filtered copy is read too (``denoise``). A page rotated by 1-5 degrees (the
slope of the words) is also read rotated straight (``deskew``; boxes are mapped back). Each candidate read is kept
only if it recognises more text with confidence; these optional re-reads are skipped when they would take the call
past ``max_seconds``.

Backend: ``pip install pytesseract`` and the Tesseract binary (Debian: ``apt-get install tesseract-ocr``, extra
languages ``tesseract-ocr-<lang>``, e.g. ``tesseract-ocr-deu``).
"""
from __future__ import annotations

import importlib.util
import logging
import math
import os
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import BaseModel, Field, PrivateAttr

from .base import ExpertError, ExpertStatus, ExpertTimeout, ExpertTool, ExpertUnavailable
from .images import open_image

if TYPE_CHECKING:
    from PIL import Image

logger = logging.getLogger(__name__)

__all__ = ["CELL_SEPARATOR", "OCRInput", "OCRTool", "character_error_rate"]

_INSTALL_HINT = "install it: `apt-get install tesseract-ocr` (Debian/Ubuntu) and `pip install pytesseract`"
_MAX_SCALE = 4.0
_MAX_SCALED_PIXELS = 36_000_000
_BORDER_PX = 12
_LIST_LANGS_MIN_S = 10.0  # `tesseract --list-langs` is bounded by max(timeout, this)
_PSM_SWITCH_CONF = 2.0  # mean-confidence points psm 4 must gain over psm 3 to be preferred
CELL_SEPARATOR = " | "
"""Between the cells of a row in the ``rows`` layout (a wide horizontal gap: label | value, item | price)."""
_ROW_TOLERANCE = 0.5  # word centres within this fraction of the (larger) text height share a row
_CELL_GAP_CHARS = 2.0  # a gap wider than this many median character widths starts a new cell
_MAX_SKEW_DEG = 5.0  # the rows layout corrects slopes up to this angle
_COLUMN_MIN_ROWS = 3  # a text column has at least this many rows ...
_COLUMN_MIN_WORDS = 3  # ... of (median) at least this many words: running text, not a column of values
_DENOISE_SCALE = 2.0  # the denoised read is at least this much upscaled ...
_DENOISE_MEDIAN = 5  # ... and median-filtered with this window (px of the upscaled image)
_DENOISE_MAX_PIXELS = 4_000_000  # ... unless that makes more pixels than this (then less upscaled)
_GRAIN_MIN = 9.0  # when nothing was read, the denoised read is tried only on images at least this grainy
_DESKEW_MIN_DEG = 1.0  # slopes under this are left to Tesseract
_QUALITY_MIN_CONF = 50.0  # words counted by _quality
_DOUBTFUL_HEIGHT = 1.8  # a doubtful word this many median word heights tall has swallowed text: re-read its band
_MAX_RECOVERED = 3  # at most this many such bands per image
_INK_CONTRAST = 80  # grey levels from the background that count as ink when looking for text nothing read
_MAX_UNREAD_INK = 0.15  # more uncovered ink than this share of the page: a photo or grain, no recovery
_LEADER_CONTRAST = 60  # grey levels from the background that count as ink when looking for dot leaders
_RULE_MIN_SHARE = 0.25  # a rule runs at least this share of the page's width (height)
_UNREAD_MIN_H, _UNREAD_MAX_H = 0.6, 3.0  # uncovered ink bands this many median text heights tall may be text
_ROWS_MIN_CONF = 40.0  # the rows layout leaves out words under this confidence (bench: all 38 such were garbage)


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
    layout: Literal["rows", "lines"] = "rows"
    """How the text is laid out for the model. ``rows``: visual rows rebuilt from the word boxes across
    Tesseract's blocks (corrected for a slight slope), words left to right, cells separated by wide gaps joined
    with ``" | "`` ("TOTAL | 18.55"); two-column running text is read column by column. ``lines``: Tesseract's
    own lines in its block order, a blank line between blocks."""
    cell_separator: str = CELL_SEPARATOR
    """Joins the cells of a row in the ``rows`` layout (text and ``data["rows"][i]["text"]``); ``cells`` always
    hold them apart. ``" "`` gives the rows without visible cells."""
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
    erase_leaders: bool = True
    """Erase dot leaders ("Wood glue ........ 7.33") before reading: runs of evenly spaced small dots on a text line's
    baseline. Tesseract reads them as "eee", "oo..." or drops the line's price altogether; without them the label
    and its value are two words on one row. Decimal points, commas and rules are never runs of dots and stay."""
    erase_rules: bool = True
    """Erase a frame before reading: long thin lines (a quarter of the page long, at most a fortieth as thick) along
    the page's outer tenth, and vertical rules anywhere. Tesseract takes a frame's sides for text blocks and drops
    the column of prices beside them. Horizontal rules inside the page stay: they help its layout analysis."""
    denoise: bool = True
    """When the mean word confidence is below ``retry_conf`` (grain, speckle: often no word is found at all),
    also read a 2x upscaled, 5x5 median-filtered copy and keep the read with the higher quality
    (sum of confidence x characters over the words at least 50% confident)."""
    deskew: bool = True
    """When the words' slope is 1-5 degrees, also read the image rotated straight and keep the better read
    (boxes are mapped back to the original image)."""
    retry_conf: float = 90.0
    """Mean confidence (0-100) under which the denoised read is tried."""
    max_seconds: float = 3.0
    """Optional re-reads (denoise, deskew) are skipped when, estimated from the first read, they would take the
    whole call past this many seconds (0: no bound). Each Tesseract run is still bounded by ``timeout``."""
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
        """OCR ``image`` and return ``{"text", "layout", "rows", "lines", "words", "scale", "psm", "mean_conf",
        "image_size", "lang"}``.

        Boxes are in pixels of the original image. Raises :class:`ExpertError` subclasses.
        """
        pil = open_image(image)
        missing = self._missing_languages()
        if missing:
            raise ExpertUnavailable(self.status().reason)
        gray = pil.convert("L")
        started = time.perf_counter()
        leaders = rules = 0
        if self.erase_rules:
            gray, rules = _erase_rules(gray)
        if self.erase_leaders:
            gray, leaders = _erase_leaders(gray)
        if leaders or rules:
            logger.debug("erased %d runs of leader dots and %d pixels of rules before reading", leaders, rules)
        first_scale = max(1.0, self.min_height / gray.height)
        psm = self.psm or 3
        words = self._recognise(gray, first_scale, psm)
        first_read = time.perf_counter() - started

        def affordable(scale: float, factor: float = 1.0) -> bool:  # a read at `scale` costs ~ its pixels
            return self._affordable(started, first_read, factor * (scale / first_scale) ** 2)

        read = _Read(words, first_scale, psm)
        self._layout_checks(gray, read, affordable)
        if (self.denoise and _mean_conf(read.words) < self.retry_conf
                and (_quality(read.words) > 0 or _grain(gray) >= _GRAIN_MIN)):
            # grain defeats Tesseract's binarisation (often no word at all): a 2x upscaled, median-filtered read;
            # when nothing at all was read, only if the image is grainy (not a photo without text)
            pixels = gray.width * gray.height
            dscale = max(read.scale, min(_DENOISE_SCALE, (_DENOISE_MAX_PIXELS / pixels) ** 0.5))
            if dscale * dscale * pixels <= _MAX_SCALED_PIXELS and affordable(dscale):
                again = self._recognise(gray, dscale, read.psm, median=_DENOISE_MEDIAN)
                logger.debug("low confidence %.1f: median-filtered read at x%.2f, quality %.1f -> %.1f",
                             _mean_conf(read.words), dscale, _quality(read.words), _quality(again))
                if _quality(again) > _quality(read.words):
                    read = _Read(again, dscale, read.psm, _DENOISE_MEDIAN)
                    self._layout_checks(gray, read, affordable)
        if self.deskew and read.words:
            angle = math.degrees(math.atan(_estimate_skew(read.words)))
            if abs(angle) >= _DESKEW_MIN_DEG and affordable(read.scale, 1.1):
                background = 255 if statistics.mean(gray.resize((16, 16)).getdata()) >= 128 else 0
                rotated = gray.rotate(angle, resample=_bicubic(), expand=True, fillcolor=background)
                if self.erase_rules:  # straight now, a frame's sides are axis-aligned
                    rotated, straightened = _erase_rules(rotated)
                    rules += straightened
                if self.erase_leaders:  # and a leader's dots share one band
                    rotated, straightened = _erase_leaders(rotated)
                    leaders += straightened
                again = self._recognise(rotated, read.scale, read.psm, median=read.median)
                logger.debug("text slope %.2f deg: deskewed read, quality %.1f -> %.1f", angle, _quality(read.words),
                             _quality(again))
                if _quality(again) > _quality(read.words):
                    read.words, read.rotation = _rotate_words(again, -angle, rotated.size, gray.size), angle
        if self.layout == "rows" and read.words:
            self._recover_doubtful_regions(gray, read, affordable)
            self._recover_unread_ink(gray, read, affordable)
        words, scale, psm = read.words, read.scale, read.psm
        lines = _group_lines(words)
        rows = _build_rows(words)
        if self.cell_separator != CELL_SEPARATOR:
            for row in rows:
                row["text"] = self.cell_separator.join(cell["text"] for cell in row["cells"])
        text = "\n".join(_region_texts(rows, "region") if self.layout == "rows" else _region_texts(lines, "block"))
        return {
            "text": text,
            "layout": self.layout,
            "rows": rows,
            "lines": lines,
            "words": words,
            "scale": round(scale, 3),
            "psm": psm,
            "median_filter": read.median,
            "rotation": round(read.rotation, 2),
            "leaders_erased": leaders,
            "rule_pixels_erased": rules,
            "seconds": round(time.perf_counter() - started, 3),
            "mean_conf": round(_mean_conf(words), 1),
            "image_size": [pil.width, pil.height],
            "lang": self.lang,
        }

    def _layout_checks(self, gray: Image.Image, read: _Read, affordable: Callable[[float], bool]) -> None:
        """Small text → an upscaled re-read; blocks side by side (psm auto) → a row-wise (psm 4) re-read. Each is
        kept when it reads at least as confidently; each is skipped when ``max_seconds`` would not allow it."""
        words = read.words
        if self.rescale_small_text and words:
            median_h = statistics.median(w["box"][3] - w["box"][1] for w in words)
            if median_h < self.small_text_px:
                rescale = min(self.target_text_px / max(median_h, 1.0), _MAX_SCALE) * read.scale
                rescale = min(rescale, (_MAX_SCALED_PIXELS / (gray.width * gray.height)) ** 0.5)
                if rescale > read.scale * 1.2 and affordable(rescale):
                    logger.debug("small text (median word height %.1f px): reading again at x%.2f", median_h, rescale)
                    again = self._recognise(gray, rescale, read.psm, median=read.median)
                    if _mean_conf(again) >= _mean_conf(words) - 1.0 or len(again) > len(words):
                        read.words, read.scale = again, rescale
        if (self.psm is None and read.psm != 4 and _side_by_side_blocks(_group_lines(read.words))
                and affordable(read.scale)):
            # columns or rows split into blocks (receipts: items | prices): compare with row-wise reading
            rows = self._recognise(gray, read.scale, 4, median=read.median)
            logger.debug("side-by-side blocks: psm 3 conf %.1f, psm 4 conf %.1f", _mean_conf(read.words),
                         _mean_conf(rows))
            if _mean_conf(rows) > _mean_conf(read.words) + _PSM_SWITCH_CONF:
                read.words, read.psm = rows, 4

    def _recover_doubtful_regions(self, gray: Image.Image, read: _Read, affordable: Callable[..., bool]) -> None:
        """Tesseract sometimes swallows text lines into one tall, doubtful "word" (a barcode and the row above it,
        two staggered lines of a side column): each such word's band — from the nearest confident word on its left
        to the nearest on its right — is read again as one block (psm 6), and its confident words that overlap no
        confident word already read replace it. At most _MAX_RECOVERED regions, within ``max_seconds``."""
        words = read.words
        median_h = statistics.median(_height(w["box"]) for w in words)
        doubtful = [w for w in words if w["conf"] < _ROWS_MIN_CONF and _height(w["box"]) > _DOUBTFUL_HEIGHT * median_h]
        doubtful.sort(key=lambda w: -(w["box"][2] - w["box"][0]) * _height(w["box"]))
        confident = [w for w in words if w["conf"] >= _ROWS_MIN_CONF]
        done: list[list[int]] = []
        for n, word in enumerate(doubtful):
            if len(done) >= _MAX_RECOVERED:
                break
            if any(_overlap(word["box"], r) > 0.5 * _area(word["box"]) for r in done):
                continue  # inside a band already read again (a barcode Tesseract cut into several "words")
            x1, y1, x2, y2 = word["box"]
            band = [w for w in confident if y1 <= _centre(w["box"])[1] <= y2]
            left = max((w["box"][2] for w in band if w["box"][2] <= x1), default=0)
            right = min((w["box"][0] for w in band if w["box"][0] >= x2), default=gray.width)
            pad = round(median_h / 2)
            region = (left, max(0, y1 - pad), right, min(gray.height, y2 + pad))
            area = (region[2] - region[0]) * (region[3] - region[1])
            if area <= 0 or not affordable(read.scale, max(0.25, area / (gray.width * gray.height))):
                break
            done.append(list(region))
            found = self._recognise(gray.crop(region), read.scale, 6, median=read.median)
            new = _new_words(found, region, confident, -1 - n)
            logger.debug("doubtful word %r at %s: re-read of band %s found %s", word["text"], word["box"], region,
                         [w["text"] for w in new])
            if new:
                read.words = [w for w in read.words if w is not word] + new
                confident += new

    def _recover_unread_ink(self, gray: Image.Image, read: _Read, affordable: Callable[..., bool]) -> None:
        """Tesseract's layout analysis sometimes drops a text region without a trace (a price next to a barcode, a
        block beside another): ink no read word covers, in text-sized patches, is read again region by region
        (psm 6) and its confident words are added. Skipped on photos and grain (much uncovered ink)."""
        confident = [w for w in read.words if w["conf"] >= _ROWS_MIN_CONF]
        if len(confident) < 2:
            return
        median_h = statistics.median(_height(w["box"]) for w in confident)
        for region in _unread_ink_regions(gray, confident, median_h)[:_MAX_RECOVERED]:
            area = (region[2] - region[0]) * (region[3] - region[1])
            if not affordable(read.scale, max(0.25, area / (gray.width * gray.height))):
                break
            found = self._recognise(gray.crop(region), read.scale, 6, median=read.median)
            new = _new_words(found, region, confident, -100 - len(confident))
            logger.debug("unread ink at %s: re-read found %s", region, [w["text"] for w in new])
            read.words = read.words + new
            confident += new

    def _affordable(self, started: float, first_read: float, relative_cost: float) -> bool:
        """May an optional re-read costing about ``relative_cost`` first reads (``first_read`` seconds) start
        without the whole call exceeding ``max_seconds``? 0 disables the bound."""
        if not self.max_seconds:
            return True
        elapsed = time.perf_counter() - started
        ok = elapsed + first_read * relative_cost <= self.max_seconds
        if not ok:
            logger.debug("optional re-read skipped: %.2fs spent, ~%.2fs more > max_seconds=%g", elapsed,
                         first_read * relative_cost, self.max_seconds)
        return ok

    def _recognise(self, gray: Image.Image, scale: float, psm: int, median: int = 0) -> list[dict[str, Any]]:
        from PIL import Image, ImageFilter, ImageOps

        pytesseract = self._pytesseract()
        img = gray
        if scale > 1.0:
            img = gray.resize((round(gray.width * scale), round(gray.height * scale)), Image.Resampling.LANCZOS)
        if median:
            img = img.filter(ImageFilter.MedianFilter(median))
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
        units = result["rows"] if self.layout == "rows" else result["lines"]
        return "\n".join(f"[{','.join(map(str, unit['box']))}] {unit['text']}" for unit in units)


# --------------------------------------------------------------------------------------------- helpers
@dataclass
class _Read:
    """One candidate reading of the image and how it was made."""

    words: list[dict[str, Any]]
    scale: float
    psm: int
    median: int = 0
    rotation: float = 0.0


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


def _quality(words: list[dict[str, Any]]) -> float:
    """How much text a read recognised with some confidence: sum of conf/100 x characters over the words at least
    _QUALITY_MIN_CONF confident. Unlike the mean confidence, a read with three sure words does not beat one with
    twenty almost sure ones, and many garbage words from grain do not count."""
    return sum(w["conf"] / 100 * len(w["text"]) for w in words if w["conf"] >= _QUALITY_MIN_CONF)


def _grain(gray: Image.Image) -> float:
    """Mean absolute difference (grey levels) between the image and its 3x3 median: ~1 on clean renders and
    scans, ~1-8 on photos, 10+ on grainy images."""
    import numpy as np
    from PIL import ImageFilter

    a = np.asarray(gray, dtype=np.int16)
    return float(np.abs(a - np.asarray(gray.filter(ImageFilter.MedianFilter(3)), dtype=np.int16)).mean())


def _bicubic() -> Any:
    from PIL import Image

    return Image.Resampling.BICUBIC


def _rotate_words(words: list[dict[str, Any]], angle: float, size: tuple[int, int],
                  to_size: tuple[int, int]) -> list[dict[str, Any]]:
    """Boxes read on an image ``size`` that is the original (``to_size``) rotated about its centre with
    ``expand=True`` → boxes in the original: each box centre is rotated by ``angle`` degrees (counter-clockwise
    on screen, as ``Image.rotate``), the box keeps its width and height."""
    rad = math.radians(angle)
    cos, sin = math.cos(rad), math.sin(rad)
    cx, cy = size[0] / 2, size[1] / 2
    ox, oy = to_size[0] / 2, to_size[1] / 2
    out = []
    for word in words:
        x1, y1, x2, y2 = word["box"]
        dx, dy = (x1 + x2) / 2 - cx, (y1 + y2) / 2 - cy
        # y grows downwards: a counter-clockwise turn on screen is (x, y) -> (x cos + y sin, -x sin + y cos)
        nx, ny = ox + dx * cos + dy * sin, oy - dx * sin + dy * cos
        w, h = x2 - x1, y2 - y1
        box = [round(nx - w / 2), round(ny - h / 2), round(nx + w / 2), round(ny + h / 2)]
        box = [max(0, min(box[0], to_size[0])), max(0, min(box[1], to_size[1])),
               max(0, min(box[2], to_size[0])), max(0, min(box[3], to_size[1]))]
        out.append({**word, "box": box})
    return out


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


def _region_texts(items: list[dict[str, Any]], key: str) -> list[str]:
    """One text line per item (an OCR line or a row); a blank line where ``item[key]`` changes (Tesseract's block,
    or the column of a two-column page), so separate regions stay separate."""
    texts: list[str] = []
    previous = None
    for item in items:
        if previous is not None and item[key] != previous:
            texts.append("")
        texts.append(item["text"])
        previous = item[key]
    return texts



# --------------------------------------------------------------------------------------------- rows layout
def _centre(box: list[int]) -> tuple[float, float]:
    return (box[0] + box[2]) / 2, (box[1] + box[3]) / 2


def _height(box: list[int]) -> int:
    return max(box[3] - box[1], 1)


def _new_words(found: list[dict[str, Any]], region: tuple[int, ...], confident: list[dict[str, Any]],
               block: int) -> list[dict[str, Any]]:
    """Words read on the crop ``region`` → original pixels; kept when confident, with a letter or digit, and not
    overlapping a confident word already read. ``block`` becomes their Tesseract block number."""
    new = []
    for w in found:
        x1, y1, x2, y2 = w["box"]
        box = [x1 + region[0], y1 + region[1], x2 + region[0], y2 + region[1]]
        if (w["conf"] >= _QUALITY_MIN_CONF and any(ch.isalnum() for ch in w["text"])
                and not any(_overlap(box, c["box"]) > 0.3 * _area(box) for c in confident)):
            new.append({**w, "box": box, "line_key": [block, *w["line_key"][1:]]})
    return new


def _unread_ink_regions(gray: Image.Image, words: list[dict[str, Any]], median_h: float) -> list[tuple[int, ...]]:
    """Boxes (original pixels, padded) of text-sized ink patches no word box covers, largest first; none when
    more than _MAX_UNREAD_INK of the page is uncovered ink (a photo, a textured or grainy background)."""
    import numpy as np
    from PIL import ImageFilter

    cell = max(2, round(median_h / 4))
    small = gray.filter(ImageFilter.MedianFilter(3)) if median_h >= 8 else gray
    a = np.asarray(small, dtype=np.int16)
    background = int(np.median(a))
    ink = np.abs(a - background) > _INK_CONTRAST
    rows, cols = a.shape[0] // cell, a.shape[1] // cell
    if rows < 2 or cols < 2:
        return []
    grid = ink[: rows * cell, : cols * cell].reshape(rows, cell, cols, cell).mean(axis=(1, 3)) > 0.04
    pad = max(1, round(median_h / 3))
    for w in words:
        x1, y1, x2, y2 = w["box"]
        top, left = max(0, (y1 - pad) // cell), max(0, (x1 - pad) // cell)
        grid[top: (y2 + pad) // cell + 1, left: (x2 + pad) // cell + 1] = False
    grid[:, :1] = grid[:, -1:] = False  # page borders
    grid[:1, :] = grid[-1:, :] = False
    if grid.mean() > _MAX_UNREAD_INK:
        return []
    # frames, rules and barcodes: cell columns / rows mostly uncovered ink are lines, not dropped words
    grid[:, grid.mean(axis=0) > 0.5] = False
    grid[grid.mean(axis=1) > 0.5, :] = False
    # bands of consecutive cell rows with uncovered ink, then runs along x split at gaps > 2 text heights
    regions = []
    active = np.flatnonzero(grid.any(axis=1))
    bands: list[list[int]] = []
    for r in active:
        if bands and r - bands[-1][-1] <= 1:
            bands[-1].append(r)
        else:
            bands.append([r])
    gap_cells = max(2, round(2 * median_h / cell))
    for band in bands:
        top, bottom = band[0] * cell, (band[-1] + 1) * cell
        height = bottom - top
        if not _UNREAD_MIN_H * median_h <= height <= _UNREAD_MAX_H * median_h:
            continue  # rules, underlines, specks; pictures, vertical lines
        xs = np.flatnonzero(grid[band[0]: band[-1] + 1].any(axis=0))
        runs: list[list[int]] = [[xs[0], xs[0]]]
        for x in xs[1:]:
            if x - runs[-1][1] <= gap_cells:
                runs[-1][1] = x
            else:
                runs.append([x, x])
        for x1, x2 in runs:
            left, right = x1 * cell, (x2 + 1) * cell
            if right - left < 0.6 * median_h:
                continue
            margin = round(median_h / 2)
            regions.append((max(0, left - margin), max(0, top - margin), min(gray.width, right + margin),
                            min(gray.height, bottom + margin)))
    regions.sort(key=lambda b: -(b[2] - b[0]) * (b[3] - b[1]))
    return [tuple(int(v) for v in r) for r in regions]


def _area(box: list[int]) -> int:
    return max(box[2] - box[0], 0) * max(box[3] - box[1], 0)


def _overlap(a: list[int], b: list[int]) -> int:
    return max(min(a[2], b[2]) - max(a[0], b[0]), 0) * max(min(a[3], b[3]) - max(a[1], b[1]), 0)


def _union(boxes: list[list[int]]) -> list[int]:
    return [min(b[0] for b in boxes), min(b[1] for b in boxes), max(b[2] for b in boxes), max(b[3] for b in boxes)]


def _estimate_skew(words: list[dict[str, Any]]) -> float:
    """Text slope dy/dx (positive: rows go down to the right) from the words of each Tesseract line.

    Per line with at least two words spread over more than three word heights, the median of the pairwise slopes
    of the word centres (Theil-Sen, robust to a descender or a punctuation mark); the median over the lines, each
    line counted once per word. Clamped to ±_MAX_SKEW_DEG (a larger slope is not a slight rotation).
    """
    by_line: dict[tuple[int, ...], list[tuple[float, float]]] = {}
    for word in words:
        by_line.setdefault(tuple(word.get("line_key") or ()), []).append(_centre(word["box"]))
    slopes: list[float] = []
    median_h = statistics.median(_height(w["box"]) for w in words) if words else 1
    for key, centres in by_line.items():
        if not key or len(centres) < 2 or max(c[0] for c in centres) - min(c[0] for c in centres) < 3 * median_h:
            continue
        pairwise = [(b[1] - a[1]) / (b[0] - a[0]) for i, a in enumerate(centres) for b in centres[i + 1 :]
                    if abs(b[0] - a[0]) >= median_h]
        if pairwise:
            slopes.extend([statistics.median(pairwise)] * len(centres))
    if not slopes:
        return 0.0
    limit = math.tan(math.radians(_MAX_SKEW_DEG))
    return max(-limit, min(limit, statistics.median(slopes)))


def _group_rows(words: list[dict[str, Any]], slope: float) -> list[list[dict[str, Any]]]:
    """Words → visual rows across Tesseract's blocks: vertical centres (corrected for ``slope``) within half a row
    height of the row's mean centre share a row. Rows come back top to bottom, words left to right."""
    def level(w: dict[str, Any]) -> float:
        x, y = _centre(w["box"])
        return y - slope * x

    rows: list[dict[str, Any]] = []  # {"words", "level" (mean), "heights"}
    for word in sorted(words, key=level):
        y, h = level(word), _height(word["box"])
        best, best_d = None, None
        for row in rows[-6:]:  # words are sorted by level: only the last few rows can still match
            row_h = statistics.median(row["heights"])
            d = abs(y - row["level"])
            if d <= _ROW_TOLERANCE * max(row_h, h) and (best_d is None or d < best_d):
                best, best_d = row, d
        if best is None:
            rows.append({"words": [word], "level": y, "heights": [h]})
        else:
            best["words"].append(word)
            best["heights"].append(h)
            best["level"] += (y - best["level"]) / len(best["words"])
    rows.sort(key=lambda r: r["level"])
    return [sorted(r["words"], key=lambda w: (w["box"][0], w["box"][1])) for r in rows]


def _char_width(words: list[dict[str, Any]]) -> float:
    return statistics.median((w["box"][2] - w["box"][0]) / max(len(w["text"]), 1) for w in words)


def _make_row(words: list[dict[str, Any]]) -> dict[str, Any]:
    """One visual row: words split into cells where the gap exceeds _CELL_GAP_CHARS median character widths."""
    gap_limit = _CELL_GAP_CHARS * _char_width(words)
    cells: list[list[dict[str, Any]]] = [[words[0]]]
    for prev, word in zip(words, words[1:]):
        if word["box"][0] - prev["box"][2] > gap_limit:
            cells.append([word])
        else:
            cells[-1].append(word)
    cell_dicts = [{"text": " ".join(w["text"] for w in c), "box": _union([w["box"] for w in c])} for c in cells]
    return {
        "text": CELL_SEPARATOR.join(c["text"] for c in cell_dicts),
        "cells": cell_dicts,
        "box": _union([w["box"] for w in words]),
        "height": round(statistics.median(_height(w["box"]) for w in words), 1),
        "conf": round(_mean_conf(words), 1),
        "_words": words,
        "_gap": gap_limit,
    }


def _split_row(row: dict[str, Any], x: float) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    left = [w for w in row["_words"] if _centre(w["box"])[0] < x]
    right = [w for w in row["_words"] if _centre(w["box"])[0] >= x]
    return (_make_row(left) if left else None), (_make_row(right) if right else None)


def _words_per_side(rows: list[dict[str, Any]], x: float) -> tuple[list[int], list[int]]:
    left, right = [], []
    for row in rows:
        n_left = sum(1 for w in row["_words"] if w["box"][2] <= x)
        n_right = len(row["_words"]) - n_left
        if n_left:
            left.append(n_left)
        if n_right:
            right.append(n_right)
    return left, right


def _clear_of(row: dict[str, Any], x: float) -> bool:
    """No word of ``row`` comes within half its cell gap of the vertical line at ``x``."""
    margin = row["_gap"] / 2
    return all(w["box"][2] <= x - margin or w["box"][0] >= x + margin for w in row["_words"])


def _find_gutter(rows: list[dict[str, Any]]) -> tuple[int, int, float] | None:
    """The longest run of consecutive rows ``[start, end)`` that a vertical gutter at ``x`` splits into two columns
    of running text, or None.

    Candidate gutters are the middles of the wide gaps inside rows (and between consecutive rows that sit side by
    side). A run qualifies when no word comes within half a gap limit of ``x``, at least _COLUMN_MIN_ROWS rows have
    text on each side, and both sides read like running text (median _COLUMN_MIN_WORDS+ words per row) — so a
    receipt's price column or a form's values (one or two words a row) stay on their label's row.
    """
    if len(rows) < _COLUMN_MIN_ROWS:
        return None
    candidates: set[float] = set()
    for row in rows:
        for a, b in zip(row["cells"], row["cells"][1:]):
            candidates.add((a["box"][2] + b["box"][0]) / 2)
    for a, b in zip(rows, rows[1:]):
        if a["box"][2] + a["_gap"] < b["box"][0] or b["box"][2] + b["_gap"] < a["box"][0]:
            candidates.add((min(a["box"][2], b["box"][2]) + max(a["box"][0], b["box"][0])) / 2)
    best: tuple[int, int, float] | None = None
    for x in sorted(candidates):
        start = 0
        while start < len(rows):
            end = start
            while end < len(rows) and _clear_of(rows[end], x):
                end += 1
            if end > start:
                left, right = _words_per_side(rows[start:end], x)
                if (len(left) >= _COLUMN_MIN_ROWS and len(right) >= _COLUMN_MIN_ROWS
                        and statistics.median(left) >= _COLUMN_MIN_WORDS
                        and statistics.median(right) >= _COLUMN_MIN_WORDS
                        and (best is None or end - start > best[1] - best[0])):
                    best = (start, end, x)
            start = end + 1
    return best


def _layout_rows(rows: list[dict[str, Any]], depth: int = 0) -> list[list[dict[str, Any]]]:
    """Rows → regions in reading order: a two-column stretch is read left column first, then the right one
    (recursively, so three columns work too); everything else row by row."""
    found = _find_gutter(rows) if depth < 3 else None
    if found is None:
        return [rows] if rows else []
    start, end, x = found
    lefts, rights = [], []
    for row in rows[start:end]:
        left, right = _split_row(row, x)
        if left:
            lefts.append(left)
        if right:
            rights.append(right)
    return [*_layout_rows(rows[:start], depth + 1), *_layout_rows(lefts, depth + 1),
            *_layout_rows(rights, depth + 1), *_layout_rows(rows[end:], depth + 1)]


def _build_rows(words: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Words (any reading order) → visual rows in reading order, each with text, cells, box, height, conf and
    ``region`` (rows of one region are read together; a two-column stretch gives one region per column).
    Words under _ROWS_MIN_CONF (40%) confidence, and those without a letter or digit under 50%, are left out."""
    # what Tesseract itself doubts is mostly not text: leader dots read as "eee", barcodes as "HULK", grain; and
    # lone marks with no letter or digit under 50% are rules and specks
    words = [w for w in words if w["conf"] >= _ROWS_MIN_CONF
             and (w["conf"] >= _QUALITY_MIN_CONF or any(ch.isalnum() for ch in w["text"]))]
    if not words:
        return []
    slope = _estimate_skew(words)
    rows = [_make_row(ws) for ws in _group_rows(words, slope)]
    out = []
    for region, region_rows in enumerate(_layout_rows(rows)):
        for row in region_rows:
            out.append({k: v for k, v in row.items() if not k.startswith("_")} | {"region": region})
    return out


def _ink(a: Any) -> tuple[int, Any]:
    """The page's background grey level (the median) and the mask of pixels at least _LEADER_CONTRAST away from it
    (dark on light or light on dark)."""
    import numpy as np

    background = int(np.median(a))
    return background, (a < background - _LEADER_CONTRAST) if background >= 128 else (a > background + _LEADER_CONTRAST)


def _erase_leaders(gray: Image.Image) -> tuple[Image.Image, int]:
    """``gray`` with its dot leaders painted over with the background, and how many runs were erased.

    Text lines are the bands of pixel rows with ink. In a band of height h, a leader is a stretch at least 2h wide
    whose ink lies only in the band's lower half, made of at least five blobs that are each small (at most 0.35h
    wide and tall) and evenly spaced (gaps within 60% of their mean): the signature of dots set along a
    baseline. Letters, digits, a price's point or comma (one blob), dashes (mid-height) and rules (one long blob)
    never match; columns that are mostly ink (a frame, a vertical rule) are ignored so they do not join the lines.
    On a page rotated by a few degrees the lines' bands merge and nothing is erased here; the deskewed re-read
    erases them on the straightened image. Pure numpy: a few milliseconds on a receipt."""
    import numpy as np
    from PIL import Image as PILImage

    a = np.asarray(gray, dtype=np.int16)
    if a.ndim != 2 or a.size == 0:
        return gray, 0
    background, ink = _ink(a)
    # a frame or a vertical rule would join every line into one band: such columns do not count
    ink = ink & ~(ink.mean(axis=0) > 0.5)[None, :]
    out = None
    erased = 0
    ink_rows = np.flatnonzero(ink.any(axis=1))
    if ink_rows.size == 0:
        return gray, 0
    breaks = np.flatnonzero(np.diff(ink_rows) > 1)
    for y0, y1 in zip(np.r_[ink_rows[0], ink_rows[breaks + 1]], np.r_[ink_rows[breaks], ink_rows[-1]] + 1):
        h = int(y1 - y0)
        if h < 6:
            continue
        band = ink[y0:y1]
        has = band.any(axis=0)
        top = np.where(has, band.argmax(axis=0), h)
        bottom = np.where(has, h - 1 - band[::-1].argmax(axis=0), -1)
        low = top >= h // 2
        for x0, x1 in _runs(low):
            if x1 - x0 < 2 * h:
                continue
            blobs = _runs(has[x0:x1])
            # a blob joined to the ink beyond the stretch is the foot of a glyph (the bar of a "4"), not a dot
            if blobs and blobs[-1][1] == x1 - x0 and x1 < len(has) and has[x1]:
                blobs.pop()
            if blobs and blobs[0][0] == 0 and x0 > 0 and has[x0 - 1]:
                blobs.pop(0)
            if len(blobs) < 5:
                continue
            widths = np.array([b - a_ for a_, b in blobs])
            heights = np.array([bottom[x0 + a_:x0 + b].max() - top[x0 + a_:x0 + b].min() + 1 for a_, b in blobs])
            gaps = np.array([blobs[i + 1][0] - blobs[i][1] for i in range(len(blobs) - 1)])
            if (widths.max() > max(2, 0.35 * h) or heights.max() > max(2, 0.35 * h)
                    or widths.max() > 2 * max(float(np.median(widths)), 1.0)
                    or gaps.std() > 0.6 * max(gaps.mean(), 1.0)):
                continue
            if out is None:
                out = a.copy()
            # the whole strip the dots sit in, their anti-aliased edges too (a faint residue still reads as dots)
            xs, xe = x0 + blobs[0][0], x0 + blobs[-1][1]
            ys = y0 + max(0, int(top[xs:xe][has[xs:xe]].min()) - 1)
            ye = y0 + min(h, int(bottom[xs:xe][has[xs:xe]].max()) + 2)
            out[ys:ye, xs:xe] = background
            erased += 1
    if out is None:
        return gray, 0
    return PILImage.fromarray(out.clip(0, 255).astype(np.uint8)), erased


def _erase_rules(gray: Image.Image) -> tuple[Image.Image, int]:
    """``gray`` with its frame — long thin lines along its edges, and vertical rules — painted over with the
    background, and how many pixels were painted. Horizontal rules inside the page stay (Tesseract reads a receipt
    better with the line above its total: measured).

    A horizontal (vertical) rule is ink in runs at least a quarter of the page wide (tall) and at most a fortieth as
    thick: a letter's stroke is never that long for its width (a tall "I" is 6-8 times as high as wide). Tesseract
    takes a frame's sides for text blocks and then drops the column of prices beside them; it reads a rule as a row
    of dashes. Only axis-aligned lines: a rotated page's lines go in its deskewed re-read."""
    import numpy as np
    from PIL import Image as PILImage

    a = np.asarray(gray, dtype=np.int16)
    if a.ndim != 2 or min(a.shape) < 16:
        return gray, 0
    background, ink = _ink(a)

    def lines(axis: int, length: int) -> Any:  # long runs along axis that are thin across it
        along = _run_lengths(ink, axis) >= _RULE_MIN_SHARE * length
        return along, along & (_run_lengths(along, 1 - axis) <= max(2, _RULE_MIN_SHARE * length / 10))

    height = ink.shape[0]
    _, horizontal = lines(1, ink.shape[1])
    long_vertical, vertical = lines(0, height)
    # a rule between a receipt's items and its total helps Tesseract's layout analysis: horizontal lines stay
    # unless they are a frame's top or bottom (in the page's outer tenth); vertical ones always go
    margin = max(2, height // 10)
    horizontal[margin:height - margin] &= long_vertical[margin:height - margin]
    rule = horizontal | vertical
    n = int(rule.sum())
    if not n:
        return gray, 0
    # the rule's anti-aliased edges, one pixel around it
    edge = rule.copy()
    edge[1:] |= rule[:-1]
    edge[:-1] |= rule[1:]
    edge[:, 1:] |= rule[:, :-1]
    edge[:, :-1] |= rule[:, 1:]
    out = a.copy()
    out[edge] = background
    return PILImage.fromarray(out.clip(0, 255).astype(np.uint8)), n


def _run_lengths(mask: Any, axis: int) -> Any:
    """For every True pixel of a 2-D mask, the length of its run of True along ``axis`` (0: columns, 1: rows);
    0 elsewhere."""
    import numpy as np

    m = np.asarray(mask, dtype=bool)
    if axis == 0:
        return _run_lengths(m.T, 1).T
    rows, width = m.shape
    padded = np.zeros((rows, width + 2), dtype=bool)
    padded[:, 1:-1] = m
    flat = padded.ravel()  # the padding ends every run within its row
    change = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    lengths = change[1::2] - change[::2]
    out = np.zeros(flat.shape, dtype=np.int32)
    out[flat] = np.repeat(lengths, lengths)  # the runs' pixels, in order, each given its run's length
    return out.reshape(rows, width + 2)[:, 1:-1]


def _runs(mask: Any) -> list[tuple[int, int]]:
    """``[start, stop)`` of every run of True in a 1-D boolean array."""
    import numpy as np

    padded = np.concatenate(([False], np.asarray(mask, dtype=bool), [False]))
    edges = np.flatnonzero(padded[1:] != padded[:-1])
    return list(zip(edges[::2].tolist(), edges[1::2].tolist()))


def character_error_rate(reference: str, hypothesis: str) -> float:
    """Levenshtein distance between the two texts / reference length, after collapsing whitespace per line.

    Blank lines and the ``rows`` layout's cell separators (:data:`CELL_SEPARATOR`) are ignored, so layout does not
    count as an error; 0.0 is a perfect read.
    """

    def norm(s: str) -> str:
        s = s.replace(CELL_SEPARATOR, " ")
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
