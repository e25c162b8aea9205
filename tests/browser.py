"""A real headless Chromium for tests: Debian's ``chromium`` driven by its ``chromium-driver``
through Selenium. The driver's path is given, so Selenium Manager downloads nothing.

Every wait is bounded; every page the browser shows can be kept (``pages``) for checks that
run over all of them (no secret on any page). ``shot`` saves a screenshot; with
``UPDATE_SCREENSHOTS=1`` it also refreshes the README's copy under docs/console/.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from selenium import webdriver
from selenium.common.exceptions import (
    StaleElementReferenceException,
    TimeoutException,
    WebDriverException,
)
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.ui import WebDriverWait

from tests.peers.harness import REPO

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
SCREENSHOTS = REPO / "docs" / "console"
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--hide-scrollbars")
WAIT = 15.0  # seconds, for anything the page should show


class Browser:
    def __init__(self, shots_dir: Path, width: int = 1280, height: int = 900) -> None:
        self.profile = Path(tempfile.mkdtemp(prefix="chromium-"))
        self.shots_dir = shots_dir
        options = webdriver.ChromeOptions()
        options.binary_location = CHROMIUM
        for flag in FLAGS:
            options.add_argument(flag)
        options.add_argument(f"--user-data-dir={self.profile}")
        options.add_argument(f"--window-size={width},{height}")
        self.driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER),
                                       options=options)
        self.driver.set_page_load_timeout(30)
        self.driver.set_script_timeout(15)
        self.pages: list[str] = []  # the HTML of every page visited, for secret checks

    def get(self, url: str) -> None:
        self.driver.get(url)
        self.keep()

    def keep(self) -> str:
        html = self.driver.page_source
        self.pages.append(html)
        return html

    def find(self, css: str) -> WebElement:
        return self.driver.find_element(By.CSS_SELECTOR, css)

    def all(self, css: str) -> list[WebElement]:
        return self.driver.find_elements(By.CSS_SELECTOR, css)

    def text(self, css: str = "main") -> str:
        return self.find(css).text

    def submitted(self, form: WebElement, timeout: float = WAIT) -> None:
        """Wait until the page that held ``form`` has been replaced by the answer to it."""
        def gone() -> bool:
            try:
                form.is_enabled()  # raises once the element's page is gone
            except WebDriverException:  # stale, or "does not belong to the document"
                return True
            return False

        self.until(gone, "the form's answer", timeout)

    def until(self, check: Callable[[], Any], what: str, timeout: float = WAIT) -> Any:
        def attempt(_: object) -> Any:
            try:
                return check()
            except StaleElementReferenceException:  # a live region was just replaced
                return False

        try:
            return WebDriverWait(self.driver, timeout, poll_frequency=0.1).until(attempt)
        except TimeoutException:
            page = self.driver.find_element(By.TAG_NAME, "body").text[:1500]
            raise AssertionError(f"timed out after {timeout}s waiting for {what}; page "
                                 f"text: {page}") from None

    def until_text(self, css: str, wanted: str, timeout: float = WAIT) -> str:
        return self.until(lambda: wanted in self.find(css).text and self.find(css).text,
                          f"{wanted!r} in {css}", timeout)

    def js(self, script: str, *args: Any) -> Any:
        return self.driver.execute_script(script, *args)

    def fetch(self, path: str, method: str = "GET", form: dict[str, str] | None = None
              ) -> tuple[int, str]:
        """An HTTP request from the page, with its cookies (as a script on it could)."""
        result = self.driver.execute_async_script(
            """const [path, method, form, done] = arguments;
               const init = {method, credentials: "same-origin", redirect: "manual"};
               if (form) init.body = new URLSearchParams(form);
               fetch(path, init).then(async r => done([r.status, await r.text()]))
                                .catch(e => done([0, String(e)]));""", path, method, form)
        status, body = result
        self.pages.append(body)
        return int(status), str(body)

    def shot(self, name: str, max_height: int = 1800) -> Path:
        """The whole page (up to ``max_height`` pixels), from the top."""
        width, height = self.js("window.scrollTo(0, 0); return [window.innerWidth, "
                                "document.documentElement.scrollHeight];")
        self.driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {
            "width": width, "height": min(int(height), max_height), "deviceScaleFactor": 1,
            "mobile": width < 500})
        path = self.shots_dir / f"{name}.png"
        self.shots_dir.mkdir(parents=True, exist_ok=True)
        try:
            self.driver.save_screenshot(str(path))
        finally:
            self.driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
        if os.environ.get("UPDATE_SCREENSHOTS") == "1":
            SCREENSHOTS.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, SCREENSHOTS / path.name)
        return path

    def close(self) -> None:
        try:
            self.driver.quit()
        finally:
            shutil.rmtree(self.profile, ignore_errors=True)
