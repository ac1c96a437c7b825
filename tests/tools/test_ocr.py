"""OCR on PIL-rendered text: several fonts and sizes, multi-line, a receipt. Character error rate is reported."""
from __future__ import annotations

import shutil

import pytest

from tools import OCRTool
from tools.ocr import character_error_rate

from .helpers import render_lines, render_receipt, render_two_columns

pytestmark = pytest.mark.skipif(shutil.which("tesseract") is None, reason="tesseract-ocr is not installed")

TEXTS = {
    "DejaVuSans.ttf": ["The quick brown fox jumps over", "the lazy dog near 42 Elm Street.", "Call 555-0199 today!"],
    "DejaVuSerif.ttf": ["Invoice #2024-117", "Due date: 15 March 2025", "Amount payable: $1,284.50"],
    "DejaVuSansMono.ttf": ["def main(argv=None):", "    return run(argv or [])", "# exit code 0 on success"],
    "STIXGeneral.ttf": ["Parameter-efficient visual", "instruction model with", "early fusion of image tokens."],
}
CER_LIMIT = 0.05


@pytest.fixture(scope="module")
def ocr() -> OCRTool:
    tool = OCRTool()
    status = tool.status()
    if not status.ready:
        pytest.skip(str(status))
    return tool


def test_character_error_rate() -> None:
    assert character_error_rate("abc\ndef", "abc\n\n  def ") == 0.0
    assert character_error_rate("abcd", "abxd") == pytest.approx(0.25)
    assert character_error_rate("abcd", "") == 1.0


@pytest.mark.slow
@pytest.mark.parametrize("size", [24, 32, 48])
@pytest.mark.parametrize("font", sorted(TEXTS))
def test_rendered_text_is_read_back(ocr: OCRTool, font: str, size: int) -> None:
    lines = TEXTS[font]
    img, _ = render_lines(lines, font, size)
    result = ocr.run_expert(image=img)
    assert result.error is None
    cer = character_error_rate("\n".join(lines), result.text)
    print(f"CER {font} {size}px: {cer:.4f} (mean conf {result.data['mean_conf']}, {result.seconds:.2f}s)")
    assert cer <= CER_LIMIT, result.text
    # reading order: the three lines come back as three lines, in order
    assert result.data["lines"][0]["text"].split()[0] == lines[0].split()[0]
    assert len(result.data["lines"]) == len(lines)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("font", "size"), [("DejaVuSansMono.ttf", 24), ("DejaVuSans.ttf", 24), ("DejaVuSansMono.ttf", 32)]
)
def test_receipt(ocr: OCRTool, font: str, size: int) -> None:
    img, reference = render_receipt(font, size)
    result = ocr.run_expert(image=img)
    cer = character_error_rate(reference, result.text)
    print(f"CER receipt ({font} {size}px, auto psm -> {result.data['psm']}): {cer:.4f}")
    assert cer <= CER_LIMIT, result.text
    lines = result.text.splitlines()
    assert "TOTAL 24.02" in lines and "Coffee beans 11.90" in lines  # each price stays on its item's row
    assert lines.index("CORNER MARKET") < lines.index("Milk 1L 2.49") < lines.index("Thank you!")


@pytest.mark.slow
def test_receipt_is_misread_by_plain_layout_analysis_which_auto_mode_avoids(ocr: OCRTool) -> None:
    """Why psm=None exists: psm 3 splits the price column off and garbles it; auto mode notices and reads rows."""
    img, reference = render_receipt("DejaVuSansMono.ttf", 24)
    plain = OCRTool(psm=3).run_expert(image=img)
    auto = ocr.run_expert(image=img)
    cer_plain, cer_auto = character_error_rate(reference, plain.text), character_error_rate(reference, auto.text)
    print(f"CER receipt DejaVuSansMono 24px: psm 3 {cer_plain:.4f}, auto {cer_auto:.4f}")
    assert auto.data["psm"] == 4
    assert cer_auto < cer_plain


@pytest.mark.slow
def test_two_columns_stay_apart(ocr: OCRTool) -> None:
    img, reference = render_two_columns()
    result = ocr.run_expert(image=img)
    cer = character_error_rate(reference, result.text)
    print(f"CER two columns (auto psm -> {result.data['psm']}): {cer:.4f}")
    assert result.data["psm"] == 3
    assert cer <= CER_LIMIT, result.text


@pytest.mark.slow
def test_receipt_in_uniform_block_mode_keeps_rows_together(ocr: OCRTool) -> None:
    img, reference = render_receipt("DejaVuSans.ttf", 20)
    result = OCRTool(psm=6).run_expert(image=img)
    cer = character_error_rate(reference, result.text)
    print(f"CER receipt (DejaVuSans 20px, psm 6): {cer:.4f}")
    assert cer <= CER_LIMIT, result.text
    assert "Coffee beans 11.90" in result.text.splitlines()


@pytest.mark.slow
def test_small_text_is_upscaled_before_reading(ocr: OCRTool) -> None:
    lines = TEXTS["DejaVuSans.ttf"]
    img, _ = render_lines(lines, "DejaVuSans.ttf", 12)
    result = ocr.run_expert(image=img)
    cer = character_error_rate("\n".join(lines), result.text)
    print(f"CER DejaVuSans 12px with rescaling (x{result.data['scale']}): {cer:.4f}")
    assert result.data["scale"] > 1.5  # median word height < 16 px triggered a second, upscaled read
    assert cer <= CER_LIMIT, result.text


@pytest.mark.slow
def test_word_and_line_boxes_are_in_original_pixels(ocr: OCRTool) -> None:
    lines = ["First line here", "Second line below"]
    img, tops = render_lines(lines, "DejaVuSans.ttf", 32, spacing=2.0)
    result = OCRTool(with_boxes=True).run_expert(image=img)
    data = result.data
    assert len(data["lines"]) == 2
    for line, top in zip(data["lines"], tops, strict=True):
        x1, y1, x2, y2 = line["box"]
        assert 0 <= x1 < x2 <= img.width and 0 <= y1 < y2 <= img.height
        assert abs(y1 - top) < 32  # the box starts at the line we drew, not at the scaled/padded position
    for word in data["words"]:
        assert word["conf"] > 50 and word["text"]
    first = result.text.splitlines()[0]
    assert first.startswith("[") and first.endswith("First line here")


@pytest.mark.slow
def test_photo_without_text_says_so(ocr: OCRTool) -> None:
    from PIL import Image

    img = Image.linear_gradient("L").resize((320, 240)).convert("RGB")
    assert ocr.run_expert(image=img).text == "No text found in the image."


def test_missing_language_is_reported_with_the_package_to_install() -> None:
    status = OCRTool(lang="eng+zzz").status()
    assert not status.ready
    assert "tesseract-ocr-zzz" in status.reason
    result = OCRTool(lang="zzz").run_expert(image=render_lines(["x"], "DejaVuSans.ttf", 24)[0])
    assert result.error and result.error.startswith("unavailable: tesseract has no language data for zzz")


def test_missing_binary_is_unavailable_not_an_exception() -> None:
    tool = OCRTool(tesseract_cmd="/nonexistent/tesseract")
    assert not tool.status().ready
    assert "apt-get install tesseract-ocr" in tool.status().reason


def test_timeout_gives_a_clear_error(ocr: OCRTool) -> None:
    img, _ = render_lines(TEXTS["DejaVuSans.ttf"] * 8, "DejaVuSans.ttf", 24)
    result = OCRTool(timeout=0.001).run_expert(image=img)
    assert result.error is not None and "did not finish within 0.001s" in result.error


def test_tesseract_runs_with_one_openmp_thread_unless_told_otherwise(
    ocr: OCRTool, tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """OMP_THREAD_LIMIT reaches the tesseract process OCRTool starts, and only that process."""
    log = tmp_path / "env.log"
    wrapper = tmp_path / "tesseract"
    wrapper.write_text(  # logs the variable for recognition runs (not for --list-langs / --version)
        f'#!/bin/sh\ncase "$1" in --*) ;; *) echo "${{OMP_THREAD_LIMIT:-unset}}" >> {log} ;; esac\n'
        f'exec {shutil.which("tesseract")} "$@"\n'
    )
    wrapper.chmod(0o755)
    img, _ = render_lines(["Threads"], "DejaVuSans.ttf", 32)
    assert OCRTool(tesseract_cmd=str(wrapper), rescale_small_text=False).run_expert(image=img).text == "Threads"
    assert OCRTool(tesseract_cmd=str(wrapper), omp_threads=None, rescale_small_text=False).run_expert(image=img).ok
    monkeypatch.setenv("OMP_THREAD_LIMIT", "3")
    assert OCRTool(tesseract_cmd=str(wrapper), rescale_small_text=False).run_expert(image=img).ok
    assert log.read_text().split() == ["1", "unset", "3"]
    import os

    import pytesseract

    assert dict(pytesseract.pytesseract.environ) == dict(os.environ)  # a pass-through outside OCRTool's calls
