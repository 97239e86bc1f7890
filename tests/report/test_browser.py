"""The HTML report in a real headless browser (Debian's chromium driven by selenium).

Opens ``index.html`` from the file system (no server), checks that every image loaded
(``naturalWidth > 0``), that the sections and tables are there, and saves a screenshot.
The CI installs chromium and sets ``COVERTML_REQUIRE_BROWSER=1``, so there the test cannot
be skipped; elsewhere it is skipped when no chromium is installed.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from covertml.report.html import build_report
from covertml.runner import parse_grid, run_grid

GRID = """
name = "browser"
[datasets.digits]
epochs = 3
train_limit = 400
test_limit = 100
[attacks]
lsb = [{bits = 8}, {bits = 16}]
correlation = [{lam = 3.0}]
sign = [{lam = 10.0}]
capacity = [{ratio = 0.5}, {ratio = 1.0}]
[sanitizers]
none = [{}]
lsb-randomize = [{bits = 16}]
"""


def _browser_paths() -> tuple[str, str] | None:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    return (chromium, driver) if chromium and driver else None


@pytest.fixture(scope="module")
def driver():
    paths = _browser_paths()
    if paths is None:
        if os.environ.get("COVERTML_REQUIRE_BROWSER") == "1":
            pytest.fail(
                "chromium/chromedriver not installed (apt-get install chromium chromium-driver)"
            )
        pytest.skip("no chromium installed (apt-get install chromium chromium-driver)")
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = paths[0]
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1280,2000"):
        options.add_argument(arg)
    browser = webdriver.Chrome(service=Service(executable_path=paths[1]), options=options)
    yield browser
    browser.quit()


def test_report_opens_with_every_image_loaded(driver, tmp_path: Path) -> None:
    run_grid(parse_grid(GRID), tmp_path)
    page = build_report(tmp_path)
    driver.get(page.resolve().as_uri())
    images = driver.execute_script(
        "return Array.from(document.images)"
        ".map(i => [i.getAttribute('src'), i.complete, i.naturalWidth])"
    )
    expected = len(list((tmp_path / "figures").glob("*.png"))) + len(
        list((tmp_path / "cells").glob("digits/*/none/seed0/original_vs_recovered.png"))
    )
    # the figures (b plot, m/n plot, weights, heat map) and one grid per unsanitized model
    assert len(images) == expected >= 4 + 6
    broken = [src for src, complete, width in images if not complete or width == 0]
    assert broken == []
    headings = [h.text for h in driver.find_elements("tag name", "h2")]
    for section in (
        "Datasets and baselines",
        "White-box attacks",
        "Black-box attack",
        "Countermeasures",
    ):
        assert section in headings
    table_ids = {t.get_attribute("id") for t in driver.find_elements("tag name", "table")}
    assert {
        "baselines",
        "lsb",
        "correlation",
        "sign",
        "capacity",
        "countermeasures-digits",
    } <= table_ids
    shot = tmp_path / "report.png"
    assert driver.save_screenshot(str(shot)) and shot.stat().st_size > 10_000
    out = os.environ.get("COVERTML_SCREENSHOT_DIR")
    if out:  # keep the screenshot for a look (CI artefact)
        Path(out).mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, Path(out) / "report.png")
