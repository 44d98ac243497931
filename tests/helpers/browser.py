"""A page loaded in real headless Chromium (Debian's chromium and chromium-driver, which
scripts/setup installs): the nightly report tests, unit and real, share it."""

from __future__ import annotations

import shutil
from pathlib import Path


def have_chromium() -> bool:
    """Whether headless Chromium can be driven here (chromium and chromedriver on PATH)."""
    return bool(shutil.which("chromium") and shutil.which("chromedriver"))


def open_in_chromium(page: Path, png: Path, width: int = 1300, height: int = 1800) -> tuple[list, Path]:
    """Load ``page`` in headless Chromium via chromedriver: (severe console messages, screenshot).
    The verdict table must be displayed; ``open_in_chromium.plots`` is how many plots the page
    drew, ``.shown`` how many are displayed (a closed ``<details>`` hides its plots)."""
    from selenium import webdriver  # optional test dependency (the `test` extra): only when a browser test runs
    from selenium.webdriver.chrome.service import Service
    opts = webdriver.ChromeOptions()
    opts.binary_location = shutil.which("chromium") or "/usr/bin/chromium"
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
              f"--window-size={width},{height}"):
        opts.add_argument(a)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=opts)
    try:
        driver.get(page.resolve().as_uri())
        assert driver.find_element("id", "verdicts").is_displayed()
        svgs = driver.find_elements("css selector", "svg.plot")
        plots, shown = len(svgs), sum(e.is_displayed() for e in svgs)
        errors = [e for e in driver.get_log("browser") if e.get("level") == "SEVERE"]
        driver.save_screenshot(str(png))
    finally:
        driver.quit()
    open_in_chromium.plots = plots  # type: ignore[attr-defined]
    open_in_chromium.shown = shown  # type: ignore[attr-defined]
    return errors, png
