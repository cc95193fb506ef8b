"""Events that reach a page while it fetches its new stage are applied once it is in.

After a phase change each page fetches the new phase's stage. Here Bo's fetch is held
(Playwright's routing): the server renders the stage at once, before Ann's note
exists, and Bo's page gets that response only after the note's event has reached it.
The event must not be lost (the old stage has no place for the note, the fetched one
was rendered without it) nor raise an htmx error; the page applies it once the new
stage is in (static/js/live.js, `refreshStage`).
"""

from __future__ import annotations

import json
import urllib.request
from typing import Any

from playwright.sync_api import APIResponse, Browser, Page, Route, expect
from websockets.sync.client import connect

from tests.browser.conftest import FACILITATOR, ConsoleWatch, LiveServer

REFLECT = 4  # the reflect phase of the default definition's first core function
PHONE = {"width": 390, "height": 844}


def _post(url: str, body: dict[str, Any], token: str | None = None) -> dict[str, Any]:
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(url, json.dumps(body).encode(), headers, method="POST")
    with urllib.request.urlopen(request, timeout=10) as response:
        result: dict[str, Any] = json.loads(response.read())
    return result


def _join(browser: Browser, server: LiveServer, code: str, name: str) -> tuple[Page, ConsoleWatch]:
    page = browser.new_context(viewport=PHONE).new_page()  # type: ignore[arg-type]
    watch = ConsoleWatch(page, name)
    page.goto(f"{server.base}/join/{code}")
    page.fill("#display_name", name)
    page.click("button:has-text('Join')")
    expect(page.locator("#connection")).to_have_attribute("data-state", "open")
    return page, watch


def test_an_event_during_a_stage_fetch_is_applied_after_it(
    server: LiveServer, browser: Browser
) -> None:
    token = _post(
        f"{server.base}/api/auth/token", {"email": FACILITATOR[0], "password": FACILITATOR[1]}
    )["access_token"]
    workshop = _post(
        f"{server.base}/api/workshops",
        {"definition": "dhs-cx-maturity", "title": "Held stage"},
        token,
    )
    ann, ann_watch = _join(browser, server, workshop["join_code"], "Ann")
    bo, bo_watch = _join(browser, server, workshop["join_code"], "Bo")
    ws_url = f"{server.base.replace('http://', 'ws://')}/ws/workshops/{workshop['id']}"
    with connect(f"{ws_url}?token={token}") as facilitator:

        def command(type_: str, **fields: Any) -> None:
            facilitator.send(json.dumps({"type": type_, "cid": type_, **fields}))
            while True:
                reply = json.loads(facilitator.recv(timeout=10))
                if reply.get("cid") == type_ and reply["type"] in ("ack", "error"):
                    assert reply["type"] == "ack", reply
                    return

        command("workshop.start")
        expect(bo.locator(".stage")).to_have_attribute("data-phase-kind", "sort")

        held: list[tuple[Route, APIResponse]] = []

        def hold(route: Route) -> None:
            held.append((route, route.fetch()))  # rendered now, answered later

        stage_url = bo.locator("body").get_attribute("data-stage-url")
        assert stage_url
        bo.route(f"**{stage_url}*", hold)
        command("phase.goto", index=REFLECT)
        expect(ann.locator(".stage")).to_have_attribute("data-phase-kind", "reflect")
        for _ in range(100):
            if held:
                break
            bo.wait_for_timeout(50)
        assert held, "Bo's page did not fetch its stage"

        ann.fill("#new-note-now", "Written while Bo's stage was on its way")
        ann.locator("form.add-note").nth(0).locator("button").click()
        expect(ann.locator(".note", has_text="Written while")).to_be_visible()
        # The note's event reaches Bo's page, whose stage is still the sort phase's.
        bo.wait_for_timeout(500)
        expect(bo.locator(".stage")).to_have_attribute("data-phase-kind", "sort")
        route, response = held[0]
        route.fulfill(response=response)

        expect(bo.locator(".stage")).to_have_attribute("data-phase-kind", "reflect")
        expect(bo.locator(".note", has_text="Written while")).to_have_count(1)
    assert not ann_watch.errors and not bo_watch.errors, (ann_watch.errors, bo_watch.errors)
    ann.close()
    bo.close()
