"""Headless Chromium for the explorer's page tests (Debian's chromium and chromedriver, driven
by selenium): ``chrome(tmp_path)`` starts one, ``requests_made(driver)`` lists the URLs the page
asked for, from the browser's own network log."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from conftest import require

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"


def chrome(tmp_path: Path) -> Any:
    """A headless Chromium (1400x1000) logging every network event; the caller quits it."""
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        require(False, "the browser tests need selenium: pip install selenium")
    require(
        Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists() or bool(shutil.which("chromium")),
        "the browser tests need Debian's chromium and chromium-driver: apt install chromium "
        "chromium-driver",
    )
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--window-size=1400,1000",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--disable-extensions",
        "--disable-background-networking",
        "--disable-component-update",
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
    ):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"performance": "ALL", "browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    driver.get("about:blank")  # the browser's own start-up pages out of the network log
    requests_made(driver)
    return driver


def requests_made(driver: Any) -> list[str]:
    """The URLs of every request the page made since the last call (``Network.requestWillBeSent``
    in the performance log)."""
    urls = []
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message.get("method") == "Network.requestWillBeSent":
            urls.append(message["params"]["request"]["url"])
    return urls


def wait_ready(driver: Any, timeout: float = 10) -> None:
    """Until the page says it is interactive (``body[data-ready="1"]``)."""
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, timeout).until(
        lambda d: d.execute_script("return document.body.dataset.ready === '1'")
    )


def console_errors(driver: Any) -> list[str]:
    """The page's console errors (a script that threw, a CSP violation)."""
    return [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"]
