"""A real headless Chromium for the browser tests (``@pytest.mark.browser``), and what every page must pass.

Debian's ``chromium`` and ``chromium-driver`` through selenium; one driver per session. Screenshots go to
``tests/artefacts/browser/`` (gitignored), one per page visited, for a person to look at after a run.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

ARTEFACTS = Path(__file__).parent / "artefacts" / "browser"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
WIDTH, HEIGHT = 1366, 900  # a laptop screen: no page may scroll sideways at this width
#: hosts tomtoolkit 3.1's own templates load from (Alpine.js in tom_common/base.html, Aladin Lite and JS9 on the
#: target page, plotly's world map on the observation list): the test machine is offline, so the browser is told
#: to block them, and their failures (and the errors that name them) are the only console errors allowed.
#: tom-mma's pages load nothing from outside the TOM.
TOMTOOLKIT_CDNS = ("cdn.jsdelivr.net", "aladin.u-strasbg.fr", "aladin.cds.unistra.fr", "cdn.lco.global", "cdn.plot.ly")


@pytest.fixture(scope="session")
def driver():
    """One headless Chromium for the session, logging the console."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    if not Path(CHROMIUM).exists() or not Path(CHROMEDRIVER).exists():
        pytest.skip("chromium and chromium-driver are not installed")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                f"--window-size={WIDTH},{HEIGHT}", "--lang=en-GB"):  # fmt: skip
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    browser = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    browser.set_page_load_timeout(60)
    browser.execute_cdp_cmd("Network.enable", {})
    browser.execute_cdp_cmd("Network.setBlockedURLs", {"urls": [f"*://{host}/*" for host in TOMTOOLKIT_CDNS]})
    ARTEFACTS.mkdir(parents=True, exist_ok=True)
    yield browser
    browser.quit()


def severe_console_entries(driver) -> list[str]:
    """The console's SEVERE entries since the last call (reading the log empties it).

    Failures to load from :data:`TOMTOOLKIT_CDNS` are left out (blocked on purpose, see there).
    """
    return [
        e["message"]
        for e in driver.get_log("browser")
        if e.get("level") == "SEVERE" and not any(f"//{host}/" in e["message"] for host in TOMTOOLKIT_CDNS)
    ]


def horizontal_overflow(driver) -> int:
    """Pixels the page is wider than the window (0: no sideways scrolling)."""
    return driver.execute_script("return document.documentElement.scrollWidth - document.documentElement.clientWidth")


def screenshot(driver, name: str) -> Path:
    """Save a full-height screenshot of the page as ``tests/artefacts/browser/<name>.png``."""
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(WIDTH, max(HEIGHT, min(height + 150, 6000)))
    path = ARTEFACTS / f"{name}.png"
    driver.save_screenshot(str(path))
    driver.set_window_size(WIDTH, HEIGHT)
    return path
