"""The web page in a real headless Chromium (Debian's chromium + chromium-driver, driven by selenium): upload the
example receipt, ask for the total, read the answer the real offline default model gives (SmolLM2 + OCR)."""
from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("chromium") is None or shutil.which("chromedriver") is None,
                       reason="needs Debian's chromium and chromium-driver (make install installs them)"),
    pytest.mark.skipif(shutil.which("tesseract") is None, reason="needs the tesseract binary"),
]

RECEIPT = Path(__file__).resolve().parents[3] / "examples" / "receipt.png"
#: offline, and nothing of the browser's own phoning home
CHROMIUM_FLAGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-dev-shm-usage", "--window-size=1280,1000"]


@pytest.fixture(scope="module")
def real_server(smollm2):
    from orchestrator.experts import default_pipeline_experts
    from orchestrator.pipeline import VisualQAPipeline

    from .conftest import start

    server = start(pipeline=VisualQAPipeline(smollm2, experts=default_pipeline_experts()))
    yield server
    server.stop()


@pytest.fixture()
def browser():
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium")
    profile = tempfile.mkdtemp(prefix="lav2-chromium-")
    for flag in [*CHROMIUM_FLAGS, f"--user-data-dir={profile}"]:
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)
    yield driver
    driver.quit()
    shutil.rmtree(profile, ignore_errors=True)


def test_page_answers_the_receipt_total(real_server, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(real_server.url + "/")
    WebDriverWait(browser, 60).until(lambda d: d.find_element(By.ID, "ask").is_enabled())
    assert browser.find_element(By.ID, "model-chip").text == "smollm2-135m"
    browser.find_element(By.ID, "file").send_keys(str(RECEIPT))
    WebDriverWait(browser, 10).until(lambda d: d.find_element(By.ID, "preview").get_attribute("src"))
    browser.find_element(By.ID, "question").send_keys("What is the total on this receipt?")
    browser.find_element(By.ID, "ask").click()
    WebDriverWait(browser, 300).until(
        lambda d: d.find_element(By.ID, "status").get_attribute("data-state") in ("done", "error"))
    answer = browser.find_element(By.ID, "answer").text
    assert browser.find_element(By.ID, "status").get_attribute("data-state") == "done", answer
    assert "18.55" in answer
    ocr = browser.find_element(By.CSS_SELECTOR, '.card[data-expert="ocr"] pre').text
    assert "TOTAL | 18.55" in ocr  # the expert's contribution is shown
    assert "no vision weights" in browser.find_element(By.ID, "visual-note").text
    errors = [e for e in browser.get_log("browser") if e.get("level") == "SEVERE"]
    assert not errors, errors  # no script errors, no blocked (external) asset
