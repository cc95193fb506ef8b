"""Browser tests: a real server process, Debian's Chromium driven by Playwright.

Run as their own pytest pass (`make browser-test`): Playwright's sync API runs its
own event loop, which must not share a process with the pytest-asyncio tests.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from playwright.sync_api import Browser, ConsoleMessage, Error, Page, expect, sync_playwright

from tests.net import free_port, uvicorn_command

# Waiting, not timing: a loaded CI machine may take longer than Playwright's 5 s default
# for a live update to reach another browser. Nothing here asserts how long it took.
expect.set_options(timeout=15_000)

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts" / "browser"
AXE = next((ROOT / "tests" / "vendor").glob("axe-core-*.min.js"))
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
FACILITATOR = ("lead@agency.gov", "a long test password")
# The machine's network is closed: without these Chromium tries to reach Google.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
]


@dataclass
class LiveServer:
    base: str
    env: dict[str, str]


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    db = tmp_path_factory.mktemp("browser") / "browser.db"
    env = {
        **os.environ,
        "ENVIRONMENT": "test",
        "DATABASE_URL": f"sqlite+aiosqlite:///{db}",
        "SECRET_KEY": "browser-test-secret-" + "x" * 32,
        "PUBLIC_URL": base,
    }
    env.pop("REDIS_URL", None)
    run = {"cwd": ROOT, "env": env, "check": True, "capture_output": True, "timeout": 120}
    subprocess.run([sys.executable, "-m", "app", "migrate"], **run)  # type: ignore[call-overload]
    subprocess.run(  # type: ignore[call-overload]
        [
            sys.executable,
            "-m",
            "app",
            "create-facilitator",
            FACILITATOR[0],
            "--password",
            FACILITATOR[1],
            "--name",
            "Lead Facilitator",
        ],
        **run,
    )
    log = open(tmp_path_factory.mktemp("logs") / "server.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen(
        uvicorn_command(port, log_level="info"),
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    for _ in range(300):
        try:
            with urllib.request.urlopen(f"{base}/healthz", timeout=1):
                break
        except OSError:
            time.sleep(0.1)
    else:
        proc.kill()
        raise AssertionError("server did not start")
    yield LiveServer(base, env)
    proc.terminate()
    proc.wait(10)
    log.close()


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    if not Path(CHROMIUM).exists():
        message = f"Chromium not found at {CHROMIUM} (apt-get install chromium)"
        if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture(scope="session", autouse=True)
def artifacts() -> Path:
    shutil.rmtree(ARTIFACTS, ignore_errors=True)
    ARTIFACTS.mkdir(parents=True)
    return ARTIFACTS


class ConsoleWatch:
    """Collects console errors (a CSP violation shows up here) for a page."""

    def __init__(self, page: Page, name: str) -> None:
        self.name = name
        self.errors: list[str] = []
        page.on("console", self._console)
        page.on("pageerror", self._page_error)

    def _console(self, message: ConsoleMessage) -> None:
        if message.type == "error":
            self.errors.append(message.text)

    def _page_error(self, error: Error) -> None:
        self.errors.append(str(error))


def axe_violations(page: Page) -> list[dict[str, object]]:
    """Run axe-core (WCAG 2.0/2.1 A and AA rules) in the page; return the violations."""
    if not page.evaluate("typeof window.axe !== 'undefined'"):
        page.evaluate(AXE.read_text(encoding="utf-8"))
    result = page.evaluate(
        """async () => {
            const r = await axe.run(document, {runOnly: {type: 'tag',
              values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa']}});
            return r.violations.map(v => ({id: v.id, impact: v.impact, help: v.help,
              nodes: v.nodes.map(n => n.target.join(' ')).slice(0, 5)}));
        }"""
    )
    return list(result)


def snap(page: Page, name: str) -> None:
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)
