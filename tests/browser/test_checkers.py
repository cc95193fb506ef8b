"""The checks the browser tests rely on can fail: axe-core and the console watch see problems."""

from __future__ import annotations

from playwright.sync_api import Browser

from tests.browser.conftest import ConsoleWatch, LiveServer, axe_violations


def test_axe_reports_a_known_violation(browser: Browser) -> None:
    page = browser.new_page()
    page.set_content('<html lang="en"><body><main><img src="a.png"><input></main></body></html>')
    ids = {v["id"] for v in axe_violations(page)}
    assert {"image-alt", "label"} <= ids
    page.close()


def test_console_watch_sees_a_csp_violation(server: LiveServer, browser: Browser) -> None:
    page = browser.new_page()
    watch = ConsoleWatch(page, "csp")
    page.goto(f"{server.base}/signin")
    page.evaluate("document.body.setAttribute('style', 'color: red')")
    page.wait_for_timeout(200)
    assert any("Content Security Policy" in e for e in watch.errors), watch.errors
    page.close()
