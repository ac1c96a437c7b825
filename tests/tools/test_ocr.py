"""OCR on PIL-rendered text: several fonts and sizes, multi-line, a receipt. Character error rate is reported."""
from __future__ import annotations

import math
import shutil

import pytest

from tools import OCRTool
from tools.ocr import CELL_SEPARATOR, _build_rows, character_error_rate

from .helpers import (
    LEADER_RECEIPT,
    add_grain,
    render_label_values,
    render_leader_receipt,
    render_lines,
    render_receipt,
    render_ticket_with_barcode,
    render_two_columns,
    ultralytics_asset,
)

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
    assert "TOTAL | 24.02" in lines and "Coffee beans | 11.90" in lines  # each price stays on its item's row
    assert lines.index("CORNER MARKET") < lines.index("Milk 1L | 2.49") < lines.index("Thank you!")


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
    assert "Coffee beans | 11.90" in result.text.splitlines()


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


# --------------------------------------------------------------------------------------------- rows layout
ITEMS = [("Coffee beans", "12.50"), ("Oat milk", "3.25"), ("Croissant", "2.80"), ("Sparkling water", "1.95"),
         ("Butter", "4.10"), ("SUBTOTAL", "24.60"), ("TAX", "1.97"), ("TOTAL", "26.57")]
BOARDING = [("Passenger", "Alice Moreau"), ("Flight", "BA 117"), ("Seat", "14C"), ("Gate", "B22"),
            ("Boarding", "10:45")]


def _pairs_on_one_line(text: str, pairs: list[tuple[str, str]]) -> int:
    lines = text.splitlines()
    return sum(any(line.startswith(label) and line.endswith(value) for line in lines) for label, value in pairs)


@pytest.mark.slow
def test_wide_receipt_keeps_each_price_on_its_row(ocr: OCRTool) -> None:
    """Prices far right: Tesseract's layout analysis puts them in a block of their own (old output: all the
    items, then all the prices); the rows layout puts each back beside its item, in a cell of its own."""
    img, reference = render_label_values(ITEMS, title="MAPLE MARKET", width=900)
    result = ocr.run_expert(image=img)
    lines = result.text.splitlines()
    assert "TOTAL | 26.57" in lines and "Coffee beans | 12.50" in lines, result.text
    assert _pairs_on_one_line(result.text, ITEMS) == len(ITEMS)
    assert lines[0] == "MAPLE MARKET" and lines.index("SUBTOTAL | 24.60") < lines.index("TOTAL | 26.57")
    assert character_error_rate(reference, result.text) <= CER_LIMIT
    row = result.data["rows"][lines.index("TOTAL | 26.57")]
    assert [c["text"] for c in row["cells"]] == ["TOTAL", "26.57"]
    assert row["cells"][1]["box"][0] > img.width * 0.8 and 18 <= row["height"] <= 30  # original pixels
    # the old layout, still available, loses the pairing on this image
    old = OCRTool(layout="lines").run_expert(image=img)
    assert _pairs_on_one_line(old.text, ITEMS) < len(ITEMS)


@pytest.mark.slow
def test_form_keeps_label_and_distant_value_together(ocr: OCRTool) -> None:
    img, reference = render_label_values(BOARDING, title="BOARDING PASS", width=1000, value_x=700)
    result = ocr.run_expert(image=img)
    assert "Seat | 14C" in result.text.splitlines() and "Passenger | Alice Moreau" in result.text.splitlines()
    assert _pairs_on_one_line(result.text, BOARDING) == len(BOARDING), result.text
    assert character_error_rate(reference, result.text) <= CER_LIMIT


@pytest.mark.slow
@pytest.mark.parametrize("angle", [2.0, -2.5])
def test_slightly_rotated_receipt_keeps_rows(ocr: OCRTool, angle: float) -> None:
    """Rotated by 2-2.5 degrees, a row's right end is ~15-20 px higher or lower than its left: more than half a
    text height, so rows are grouped along the estimated slope, not by raw y."""
    img, reference = render_label_values(ITEMS, title="MAPLE MARKET", width=800, angle=angle)
    result = ocr.run_expert(image=img)
    assert _pairs_on_one_line(result.text, ITEMS) == len(ITEMS), result.text
    assert character_error_rate(reference, result.text) <= CER_LIMIT, result.text


@pytest.mark.slow
def test_two_column_page_under_a_title_reads_column_by_column(ocr: OCRTool) -> None:
    img, reference = render_two_columns(title="Adapters at a glance")
    result = ocr.run_expert(image=img)
    lines = [line for line in result.text.splitlines() if line]
    assert lines[0] == "Adapters at a glance"
    assert lines[1].startswith("The adapter") and lines[5] == "in the last layers.", result.text
    assert lines[6].startswith("Bias and scale") and lines[-1] == "identical to the base."
    assert CELL_SEPARATOR not in result.text
    assert character_error_rate(reference, result.text) <= CER_LIMIT
    regions = [row["region"] for row in result.data["rows"]]
    assert regions == sorted(regions) and len(set(regions)) == 3  # title, left column, right column


def _word(text: str, x: int, y: int, h: int = 20, line: tuple[int, int, int] = (1, 1, 1)) -> dict:
    return {"text": text, "conf": 95.0, "box": [x, y, x + 12 * len(text), y + h], "line_key": list(line)}


def test_rows_are_rebuilt_across_blocks_from_word_boxes() -> None:
    """No tesseract needed: Tesseract's reading order (items block, then prices block) → one row per item."""
    words = [_word("Milk", 20, 100, line=(1, 1, 1)), _word("Bread", 20, 140, line=(1, 1, 2)),
             _word("TOTAL", 20, 180, line=(1, 1, 3)),
             _word("2.49", 500, 101, line=(2, 1, 1)), _word("3.10", 500, 139, line=(2, 1, 2)),
             _word("5.59", 500, 182, line=(2, 1, 3))]
    rows = _build_rows(words)
    assert [r["text"] for r in rows] == ["Milk | 2.49", "Bread | 3.10", "TOTAL | 5.59"]
    assert rows[2]["cells"][1] == {"text": "5.59", "box": [500, 182, 548, 202]}
    assert rows[2]["box"] == [20, 180, 548, 202] and rows[2]["height"] == 20


def test_rows_follow_a_slope_and_close_words_share_a_cell() -> None:
    slope = math.tan(math.radians(3))  # 3 degrees: ~26 px drop over 500 px, more than a 20 px text height
    words = []
    for i, (label, value) in enumerate([("Seat number", "14C"), ("Gate", "B22"), ("Flight", "BA117")]):
        y = 100 + 40 * i
        words.append(_word(label.split()[0], 20, y, line=(1, 1, i)))
        if " " in label:
            words.append(_word(label.split()[1], 20 + 12 * 5, round(y + slope * 60), line=(1, 1, i)))
        words.append(_word(value, 520, round(y + slope * 500), line=(1, 1, i)))
    assert [r["text"] for r in _build_rows(words)] == ["Seat number | 14C", "Gate | B22", "Flight | BA117"]


# --------------------------------------------------------------------------------------------- deskew, denoise
@pytest.mark.slow
@pytest.mark.parametrize("sigma", [50, 60])
def test_grainy_receipt_is_read_through_a_median_filtered_upscaled_copy(ocr: OCRTool, sigma: float) -> None:
    img, reference = render_label_values(ITEMS, title="MAPLE MARKET", width=700, size=22)
    grainy = add_grain(img, sigma, seed=1)
    plain = OCRTool(denoise=False).run_expert(image=grainy)
    result = ocr.run_expert(image=grainy)
    cer_plain, cer = character_error_rate(reference, plain.text), character_error_rate(reference, result.text)
    print(f"CER grainy receipt sigma {sigma}: plain {cer_plain:.3f}, denoised {cer:.3f} ({result.seconds:.2f}s)")
    assert cer_plain > 0.5  # the grain defeats Tesseract's binarisation: (almost) nothing is read
    assert result.data["median_filter"] == 5 and result.data["scale"] >= 2.0
    assert cer <= CER_LIMIT, result.text
    assert "TOTAL | 26.57" in result.text.splitlines()


@pytest.mark.slow
def test_optional_rereads_respect_max_seconds(ocr: OCRTool) -> None:
    img, _ = render_label_values(ITEMS, title="MAPLE MARKET", width=700, size=22)
    result = OCRTool(max_seconds=0.01).run_expert(image=add_grain(img, 50, seed=1))
    assert result.ok and result.data["median_filter"] == 0  # the first read alone already took longer


@pytest.mark.slow
def test_rotated_page_is_deskewed_and_boxes_stay_in_original_pixels(ocr: OCRTool) -> None:
    img, reference = render_label_values(ITEMS, title="MAPLE MARKET", width=800, angle=3.0)
    result = ocr.run_expert(image=img)
    assert -3.5 < result.data["rotation"] < -2.0  # rotated straight by the slope estimated from the words
    assert character_error_rate(reference, result.text) <= CER_LIMIT
    total = result.data["rows"][-1]
    assert total["text"] == "TOTAL | 26.57"
    label, value = (cell["box"] for cell in total["cells"])
    assert value[1] < label[1] - 20  # as drawn: rotated counter-clockwise, the right end of the row is higher
    assert all(0 <= v <= max(img.size) for v in label + value)


@pytest.mark.slow
def test_text_dropped_by_layout_analysis_is_recovered_from_unread_ink(ocr: OCRTool) -> None:
    img, pairs = render_ticket_with_barcode()
    old = OCRTool(layout="lines").run_expert(image=img)
    assert "26.28" not in old.text  # Tesseract drops the price beside the barcode, not even a doubtful word
    result = ocr.run_expert(image=img)
    assert "Price | 26.28" in result.text.splitlines(), result.text
    assert _pairs_on_one_line(result.text, pairs) == len(pairs)
    assert not any(ch.isalpha() for ch in result.text.splitlines()[-1].replace("Price", ""))  # no barcode garbage


@pytest.mark.slow
def test_photo_without_text_costs_no_denoised_read(ocr: OCRTool) -> None:
    result = ocr.run_expert(image=ultralytics_asset("bus.jpg"))
    assert result.data["median_filter"] == 0 and result.data["scale"] == 1.0  # nothing read, not grainy: one read


@pytest.mark.slow
def test_cell_separator_is_configurable_and_cells_stay_structured(ocr: OCRTool) -> None:
    img, _ = render_label_values(BOARDING, title="BOARDING PASS", width=1000, value_x=700)
    result = OCRTool(cell_separator=" ").run_expert(image=img)
    assert "Seat 14C" in result.text.splitlines() and CELL_SEPARATOR not in result.text
    seat = next(row for row in result.data["rows"] if row["text"] == "Seat 14C")
    assert [cell["text"] for cell in seat["cells"]] == ["Seat", "14C"]


def test_dot_leaders_are_erased_so_every_item_keeps_its_price(ocr: OCRTool) -> None:
    """"Wood glue ........ 7.33": Tesseract read the leaders into the words ("WO0d QlUC") or dropped the item; with
    the leaders erased first, every item and its price come back on one row."""
    img = render_leader_receipt()
    result = ocr.run_expert(image=img)
    priced = sum(price is not None for _, price in LEADER_RECEIPT)
    assert result.error is None and result.data["leaders_erased"] == priced  # one run of dots per priced row
    rows = result.text.splitlines()
    for label, price in LEADER_RECEIPT:
        assert (label if price is None else f"{label} | {price}") in rows, result.text


def test_leader_erasing_leaves_points_dashes_rules_and_text_alone() -> None:
    from PIL import Image, ImageDraw, ImageFont

    from tools.ocr import _erase_leaders

    from .helpers import ttf

    face = ImageFont.truetype(str(ttf("DejaVuSans.ttf")), 24)
    img = Image.new("L", (700, 320), 250)
    draw = ImageDraw.Draw(img)
    for i, line in enumerate(["Total: 4.16   Tax: 0.52, due 1.2.2025", "- - - - - - - - - - - - - - - - -",
                              "Name: ______________________", "a, b, c, d, e, f, g, h ... and so on",
                              "ooo ooo ooo ooo ooo ooo ooo"]):
        draw.text((20, 15 + 48 * i), line, font=face, fill=20)
    out, erased = _erase_leaders(img)
    assert erased == 0 and out.tobytes() == img.tobytes()
    draw.text((20, 15 + 48 * 5), "Soup " + "." * 40 + " 4.50", font=face, fill=20)
    out, erased = _erase_leaders(img)
    assert erased == 1 and out.tobytes() != img.tobytes()
    # only the dots went: the label and the price are untouched (the bar of the "4" is no dot)
    changed = [x for x in range(img.width) if any(img.getpixel((x, y)) != out.getpixel((x, y))
                                                  for y in range(img.height))]
    label_end = 20 + face.getlength("Soup ")
    price_start = 20 + face.getlength("Soup " + "." * 40 + " ")
    assert label_end <= min(changed) and max(changed) < price_start


def test_a_frame_around_the_page_does_not_hide_the_leaders() -> None:
    """A border's vertical sides have ink on every pixel row: they must not join all lines into one band."""
    from PIL import ImageDraw

    from tools.ocr import _erase_leaders

    img = render_leader_receipt().convert("L")
    ImageDraw.Draw(img).rectangle((4, 4, img.width - 5, img.height - 5), outline=30, width=3)
    assert _erase_leaders(img)[1] == sum(price is not None for _, price in LEADER_RECEIPT)


def test_a_frame_around_a_receipt_no_longer_costs_its_prices(ocr: OCRTool) -> None:
    """Tesseract took a frame's sides for text blocks and dropped the right-aligned prices beside them; the frame is
    erased first (a long thin line), so every item keeps its price. The erasing leaves the text alone."""
    from PIL import ImageDraw

    from tools.ocr import _erase_rules

    img, reference = render_receipt("DejaVuSans.ttf", 24)
    ImageDraw.Draw(img).rectangle((6, 6, img.width - 7, img.height - 7), outline=(120, 20, 20), width=3)
    result = ocr.run_expert(image=img)
    assert result.data["rule_pixels_erased"] > 0
    assert "TOTAL | 24.02" in result.text.splitlines() and "Coffee beans | 11.90" in result.text.splitlines()
    plain, _ = render_receipt("DejaVuSans.ttf", 24)
    out, erased = _erase_rules(plain.convert("L"))
    assert erased == 0 and out.tobytes() == plain.convert("L").tobytes()  # no rule: nothing changes


def test_a_frame_goes_but_tall_letters_and_inner_rules_stay() -> None:
    from PIL import Image, ImageDraw, ImageFont

    from tools.ocr import _erase_rules

    from .helpers import ttf

    img = Image.new("L", (400, 300), 245)
    draw = ImageDraw.Draw(img)
    draw.text((20, 10), "IIL 1", font=ImageFont.truetype(str(ttf("DejaVuSans-Bold.ttf")), 110), fill=10)
    before = img.copy()
    out, erased = _erase_rules(img)
    assert erased == 0 and out.tobytes() == before.tobytes()  # strokes 8x as tall as wide are letters
    draw.line((10, 200, 390, 200), fill=10, width=2)  # a rule across the page: it stays (it helps Tesseract)
    draw.line((5, 4, 395, 4), fill=10, width=3)  # a frame's top and side go
    draw.line((395, 5, 395, 295), fill=10, width=3)
    out, erased = _erase_rules(img)
    assert erased > 0
    assert out.getpixel((200, 200)) == 10 and out.getpixel((200, 4)) == 245 and out.getpixel((395, 150)) == 245
    assert out.crop((0, 10, 390, 190)).tobytes() == before.crop((0, 10, 390, 190)).tobytes()
