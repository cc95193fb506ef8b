"""One facilitator and three participants run a whole core function in real browsers.

Join, sort cards, reveal, level vote with a second round, notes with a drag and a
keyboard move, dot votes, record the level, summary. A participant reloads mid-way
and keeps their votes. axe-core checks every page and state; console errors (a CSP
violation included) fail the test; screenshots go to test-artifacts/browser/.
"""

from __future__ import annotations

from playwright.sync_api import Browser, Page, expect

from tests.browser.conftest import FACILITATOR, ConsoleWatch, LiveServer, axe_violations, snap

PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 900}


class Checks:
    def __init__(self) -> None:
        self.watches: list[ConsoleWatch] = []
        self.axe: dict[str, list[dict[str, object]]] = {}

    def page(self, browser: Browser, name: str, viewport: dict[str, int]) -> Page:
        page = browser.new_context(viewport=viewport).new_page()  # type: ignore[arg-type]
        page.set_default_timeout(10_000)
        self.watches.append(ConsoleWatch(page, name))
        return page

    def axe_check(self, page: Page, state: str) -> None:
        found = axe_violations(page)
        if found:
            self.axe[state] = found

    def assert_clean(self) -> None:
        errors = {w.name: w.errors for w in self.watches if w.errors}
        assert not errors, f"console errors: {errors}"
        assert not self.axe, f"axe-core violations: {self.axe}"


def _connected(page: Page) -> None:
    expect(page.locator("#connection")).to_have_attribute("data-state", "open")


def test_one_core_function_end_to_end(server: LiveServer, browser: Browser) -> None:
    checks = Checks()
    fac = checks.page(browser, "facilitator", DESKTOP)
    fac.goto(f"{server.base}/")
    checks.axe_check(fac, "landing")
    fac.goto(f"{server.base}/signin")
    checks.axe_check(fac, "signin")
    fac.fill("#email", FACILITATOR[0])
    fac.fill("#password", FACILITATOR[1])
    fac.click("button[type=submit]")
    expect(fac.locator("h1")).to_have_text("Your workshops")
    # Only the chosen definition's core functions are offered.
    dhs = fac.locator("fieldset[data-definition=dhs-cx-maturity]")
    other = fac.locator("fieldset[data-definition=govcx-four-level]")
    expect(dhs).to_be_visible()
    expect(other).to_be_hidden()
    fac.select_option("#definition", "govcx-four-level")
    expect(dhs).to_be_hidden()
    expect(other).to_be_visible()
    fac.select_option("#definition", "dhs-cx-maturity")
    fac.fill("#title", "Passport Services CX maturity")
    fac.click("text=Create workshop")
    code = fac.locator("table tbody tr").first.locator("code").first.inner_text()
    checks.axe_check(fac, "dashboard")
    snap(fac, "01-dashboard")

    people: list[Page] = []
    for name in ("Ann", "Bo", "Cy"):
        page = checks.page(browser, name, PHONE)
        page.goto(f"{server.base}/join/{code}")
        if not people:
            checks.axe_check(page, "join")
        page.fill("#display_name", name)
        page.fill("#organisation", "Passport Services")
        page.click("button:has-text('Join')")
        _connected(page)
        people.append(page)
    ann, bo, cy = people
    checks.axe_check(ann, "lobby")
    workshop_id = ann.url.rsplit("/", 1)[1]

    fac.goto(f"{server.base}/console/{workshop_id}")
    _connected(fac)
    expect(fac.locator("#participants li")).to_have_count(3)
    # Someone joins by mistake: they appear live, and removing them takes a confirmation.
    dee = checks.page(browser, "Dee", PHONE)
    dee.goto(f"{server.base}/join/{code}")
    dee.fill("#display_name", "Dee")
    dee.click("button:has-text('Join')")
    _connected(dee)
    dee_row = fac.locator("#participants li", has_text="Dee")
    dee_row.locator("summary").click()
    checks.axe_check(fac, "console-lobby")
    dee_row.locator("button:has-text('Yes, remove Dee')").click()
    expect(dee.locator("#connection")).to_have_attribute("data-state", "removed")
    expect(dee.locator("#connection")).to_have_text("You were removed from this workshop")
    dee.wait_for_timeout(1500)  # no reconnect attempt turns it back into "Reconnecting…"
    expect(dee.locator("#connection")).to_have_attribute("data-state", "removed")
    expect(fac.locator("#participants li")).to_have_count(3)
    dee.close()
    # The room's screen opens the console's projector link: no facilitator sign-in there.
    fac.locator("summary", has_text="Projector link").click()
    link = fac.locator("code.share-link").inner_text()
    projector = checks.page(browser, "projector", DESKTOP)
    projector.goto(link)
    expect(projector).to_have_url(f"{server.base}/projector/{workshop_id}")
    _connected(projector)
    expect(projector.locator(".room-who")).to_have_text("Projector view")

    # Sort: everyone marks every card; Cy disagrees on all of them.
    fac.click("text=Start the workshop")
    for page, choice in zip(people, ("do", "do", "dont"), strict=True):
        expect(page.locator(".stage")).to_have_attribute("data-phase-kind", "sort")
        radios = page.locator(f"input[type=radio][value={choice}]")
        for i in range(radios.count()):
            radios.nth(i).check()
    cards = ann.locator("li.practice")
    last_card = cards.nth(cards.count() - 1).get_attribute("id")
    assert last_card
    expect(fac.locator(f"#progress-{last_card}")).to_have_text("3 voted")
    checks.axe_check(ann, "sort")
    checks.axe_check(fac, "console-sort")
    snap(ann, "02-participant-sort-phone")
    snap(fac, "03-console-sort")
    # The projector shows progress, never choices, before the reveal.
    expect(projector.locator("table.results")).to_have_count(0)
    expect(projector.locator("input[type=radio]")).to_have_count(0)

    # Bo reloads mid-way and keeps identity and votes.
    bo.reload()
    _connected(bo)
    expect(bo.locator("input[type=radio][value=do]:checked")).to_have_count(cards.count())
    expect(bo.locator(".room-who")).to_have_text("You are Bo")

    # Reveal and discuss: contested cards first; settle one.
    fac.click("text=Reveal the card votes")
    expect(ann.locator("table.results")).to_be_visible()
    expect(projector.locator("table.results")).to_be_visible()
    fac.click("button:has-text('Next phase')")
    expect(fac.locator(".stage")).to_have_attribute("data-phase-kind", "discuss")
    first_row = fac.locator("table.results tbody tr").first
    first_row.locator("button:has-text('Next step')").click()
    expect(first_row).to_contain_text("Settled: next step")
    first_row.locator("button:has-text('Show everyone')").click()
    expect(ann.locator(".spotlight-notice")).to_be_visible()
    expect(ann.locator("tr.spotlit")).to_have_count(1)
    checks.axe_check(ann, "discuss-spotlight")
    fac.click("text=Stop showing")
    expect(ann.locator(".spotlight-notice")).to_have_count(0)
    checks.axe_check(fac, "console-discuss")
    checks.axe_check(ann, "discuss")
    snap(fac, "04-console-discuss")

    # Level vote, two rounds.
    fac.click("button:has-text('Next phase')")
    for i, page in enumerate(people):
        expect(page.locator(".stage")).to_have_attribute("data-phase-kind", "level_vote")
        page.locator("input[name=level]").nth(i).check()
    expect(fac.locator(".progress", has_text="voted in round 1")).to_have_text("3 voted in round 1")
    checks.axe_check(ann, "level-vote")
    fac.click("text=Reveal round 1")
    expect(ann.locator("text=Round 1: the spread")).to_be_visible()
    expect(fac.locator("text=Low agreement")).to_be_visible()
    checks.axe_check(fac, "console-level-revealed")
    snap(fac, "05-console-level-round-1")
    fac.click("text=Open round 2")
    for page in people:
        expect(page.locator("text=Round 2.")).to_be_visible()
        page.locator("input[name=level]").nth(1).check()
    expect(fac.locator(".progress", has_text="voted in round 2")).to_have_text("3 voted in round 2")
    cy.reload()
    _connected(cy)
    expect(cy.locator("input[name=level]:checked")).to_have_value("1")
    fac.click("text=Reveal round 2")
    expect(fac.locator("text=Round 2: the spread")).to_be_visible()
    fac.select_option("#record-level", "1")
    fac.fill("#record-note", "Agreed after round 2: reporting is regular, not yet journey-wide")
    fac.click("text=Record the level")
    expect(fac.locator("#decision-level-measurement")).to_contain_text("Established")

    # Reflect: notes, a keyboard move between areas, a pointer drag.
    fac.click("button:has-text('Next phase')")
    expect(ann.locator(".stage")).to_have_attribute("data-phase-kind", "reflect")
    ann.fill("#new-note-how", "Publish a quarterly <b>CX</b> scorecard")
    ann.locator("form.add-note").nth(2).locator("button").click()
    bo.fill("#new-note-now", "Survey data sits in three tools")
    bo.locator("form.add-note").nth(0).locator("button").click()
    cy.fill("#new-note-how", "Name an owner for every complaint theme")
    cy.locator("form.add-note").nth(2).locator("button").click()
    scorecard = fac.locator(".note", has_text="Publish a quarterly <b>CX</b> scorecard")
    expect(scorecard).to_be_visible()  # the markup arrives as text, not as HTML
    expect(fac.locator(".note", has_text="Name an owner")).to_be_visible()
    survey = fac.locator(".note", has_text="Survey data sits in three tools")
    survey.focus()
    fac.keyboard.press("Shift+ArrowRight")
    expect(ann.locator("#area-notes-measurement-hope .note")).to_have_text(
        __import__("re").compile("Survey data sits in three tools")
    )
    box = scorecard.bounding_box()
    assert box
    before = scorecard.get_attribute("data-x")
    fac.mouse.move(box["x"] + 12, box["y"] + 12)
    fac.mouse.down()
    fac.mouse.move(box["x"] + 80, box["y"] + 120, steps=6)
    fac.mouse.up()
    ann_note = ann.locator(".note", has_text="scorecard")
    expect(ann_note).not_to_have_attribute("data-x", before or "")
    checks.axe_check(fac, "console-board")
    checks.axe_check(ann, "board")
    snap(fac, "06-console-board")
    snap(ann, "07-participant-board-phone")
    ann.goto(f"{server.base}/w/{workshop_id}/outline")
    _connected(ann)
    expect(ann.locator(".board.outline")).to_be_visible()
    checks.axe_check(ann, "outline")
    snap(ann, "08-outline")
    ann.goto(f"{server.base}/w/{workshop_id}")
    _connected(ann)

    # Prioritise: dots within the budget.
    fac.click("button:has-text('Next phase')")
    for page in people:
        expect(page.locator(".stage")).to_have_attribute("data-phase-kind", "prioritise")
        page.locator(".note", has_text="scorecard").locator(".dot-add").click()
    expect(ann.locator("#dots-left")).to_contain_text("2")
    expect(fac.locator(".note", has_text="scorecard").locator(".dots")).to_have_text("3 dots")
    checks.axe_check(ann, "prioritise")
    snap(ann, "09-participant-dots")

    # Summary.
    fac.click("summary:has-text('Agenda: step')")  # jump straight to the last step
    fac.locator(".phase-rail button", has_text="Summary").click()
    expect(ann.locator(".stage")).to_have_attribute("data-phase-kind", "summary")
    expect(ann.locator("text=Where the room landed")).to_be_visible()
    expect(ann.locator("tr", has_text="Measurement")).to_contain_text("Established")
    checks.axe_check(ann, "summary")
    checks.axe_check(projector, "projector-summary")
    snap(fac, "10-console-summary")
    snap(projector, "11-projector-summary")

    # The facilitator's summary page: radar chart and the four downloads.
    fac.click("text=Summary and exports")
    expect(fac.locator("svg").first).to_be_visible()
    checks.axe_check(fac, "summary-exports")
    snap(fac, "12-summary-exports")
    sizes = {}
    for label, suffix in (
        ("PDF report", ".pdf"),
        ("Markdown report", ".md"),
        ("CSV tables (zip)", ".zip"),
        ("JSON data", ".json"),
    ):
        with fac.expect_download() as info:
            fac.click(f"a:has-text('{label}')")
        download = info.value
        assert download.suggested_filename.endswith(suffix), download.suggested_filename
        path = download.path()
        sizes[suffix] = path.stat().st_size
        if suffix == ".md":
            text = path.read_text(encoding="utf-8")
            assert "Established" in text and "quarterly" in text
    assert all(size > 200 for size in sizes.values()), sizes
    fac.click("text=Compare with other workshops")
    checks.axe_check(fac, "compare")
    snap(fac, "13-compare")
    checks.assert_clean()
