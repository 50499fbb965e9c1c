"""Browser fixtures of the dashboard tests: one headless Chromium per test module, handed to each
test with its console emptied, and its last screen kept as artifacts/browser/<test>.png."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from e2e.browser import console_errors, open_chromium
from e2e.dashboard import ARTIFACTS

if TYPE_CHECKING:
    from selenium.webdriver.remote.webdriver import WebDriver


@pytest.fixture(scope="module")
def chromium(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebDriver]:
    """One Chromium for a module's tests: starting one costs a second or two each time."""
    with open_chromium(tmp_path_factory.mktemp("chromium-profile")) as driver:
        yield driver


@pytest.fixture
def browser(chromium: WebDriver, request: pytest.FixtureRequest) -> Iterator[WebDriver]:
    """The module's Chromium on a blank page at desktop size, its console read empty."""
    chromium.get("about:blank")
    console_errors(chromium)  # what earlier tests left behind is theirs
    try:
        yield chromium
    finally:
        (ARTIFACTS / "browser").mkdir(parents=True, exist_ok=True)
        chromium.save_screenshot(str(ARTIFACTS / "browser" / f"{request.node.name}.png"))
        chromium.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
        chromium.get("about:blank")  # closes the page's sockets before the next test


@pytest.fixture
def own_browser(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[WebDriver]:
    """A Chromium of the test's own. For a CDP touch pinch: after one, this headless Chromium
    delivers no touch event to any page loaded later (seen with chromium 156), so a shared one
    would fail the next test that touches."""
    with open_chromium(tmp_path / "chromium-profile") as driver:
        try:
            yield driver
        finally:
            (ARTIFACTS / "browser").mkdir(parents=True, exist_ok=True)
            driver.save_screenshot(str(ARTIFACTS / "browser" / f"{request.node.name}.png"))
