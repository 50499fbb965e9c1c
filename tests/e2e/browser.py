"""Headless Chromium for the browser tests: Debian's `chromium` + `chromium-driver`, via Selenium.

Missing pieces fail the test with the command that installs them; they never skip it, so CI
cannot turn green by not running the browser.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from selenium.webdriver.remote.webdriver import WebDriver

CHROMIUM = os.environ.get("TICKPIPE_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("TICKPIPE_CHROMEDRIVER", "/usr/bin/chromedriver")
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-dev-shm-usage",  # small /dev/shm in containers crashes tabs
)


def require_browser() -> None:
    """Fails (not skips), naming the install command, when Chromium, its driver or Selenium
    is missing."""
    missing = [path for path in (CHROMIUM, CHROMEDRIVER) if shutil.which(path) is None]
    if missing:
        pytest.fail(
            f"browser tests need {' and '.join(missing)}: "
            "apt-get install -y chromium chromium-driver",
            pytrace=False,
        )
    try:
        import selenium  # noqa: F401
    except ImportError:
        pytest.fail("browser tests need Selenium: pip install selenium", pytrace=False)


@contextmanager
def open_chromium(
    profile_dir: Path, width: int = 1366, height: int = 860, scale: float = 1.0
) -> Iterator[WebDriver]:
    """A fresh headless Chromium (own profile) driven by the system chromedriver; always quit.

    `scale` is the device pixel ratio (2 = a HiDPI screen)."""
    require_browser()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile_dir}")
    options.add_argument(f"--window-size={width},{height}")
    options.add_argument(f"--force-device-scale-factor={scale}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    # Both paths given: Selenium Manager never runs, so nothing is downloaded.
    service = Service(executable_path=CHROMEDRIVER, log_output=os.devnull)
    driver = webdriver.Chrome(service=service, options=options)
    try:
        yield driver
    finally:
        try:
            driver.quit()
        finally:
            service.stop()  # idempotent; kills chromedriver even if quit() failed


def console_errors(driver: WebDriver) -> list[str]:
    """The page's console errors (uncaught exceptions, failed loads) since the last call."""
    return [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"]


def emulate_phone(driver: WebDriver, width: int = 390, height: int = 844) -> None:
    """A phone-sized viewport (headless windows cannot be narrower than 500 px)."""
    driver.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {"width": width, "height": height, "deviceScaleFactor": 3, "mobile": True},
    )
