"""An amendment in real browsers: staff upload a revised prospectus that extends the bid deadline,
read what it changes, confirm it with a reason, and the amend-prospectus flow (a real Prefect
server and flow runner) publishes it; a council invited to bid then sees the new deadline and the
list of changes on its bid's pages, and anyone sees every change on the round's public page.
Every page is axe-checked (no serious or critical violation) and photographed."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

import pytest
import round_walk
import test_browser as harness
import test_browser_applicant as applicant_pages
from conftest import edit, london
from playwright.sync_api import Browser, Page
from portal import add_user, serving

from cbflow import stages
from cbflow.clock import FixedClock
from cbflow.db import session_scope
from cbflow.services import amendments, rounds
from cbflow.settings import Settings

pytestmark = [pytest.mark.browser, pytest.mark.slow]

browser = harness.browser
check_page = harness.check_page

SLUG = round_walk.SLUG
NOW = london(2011, 11, 25, 10, 0)  # the invited councils are writing their bids
STAFF = "lead@staff.example"
OFFICER = "officer@birmingham.example"
LATER_BIDS = (
    "bid:        {opens: 2011-11-21, closes: 2011-12-09}",
    "bid:        {opens: 2011-11-21, closes: 2012-01-11}",
)
NEW_DEADLINE = "Bids close: was the end of 9 December 2011, now the end of 11 January 2012"


@pytest.fixture
def portal(flow_runner: Settings) -> Iterator[str]:
    # the clock is in 2011: deadline runs scheduled now would all fall due at once
    with serving(flow_runner, FixedClock(NOW), schedule_deadlines=False) as url:
        yield url


@contextmanager
def person(browser: Browser, portal: str, email: str) -> Iterator[Page]:
    """A browser of their own, signed in by the link mailed to them."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.add_init_script(path=str(harness.AXE))
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    try:
        applicant_pages.sign_in(page, portal, email)
        yield page
    finally:
        context.close()
    assert errors == []


def click(page: Page, name: str, role: str = "button") -> None:
    page.get_by_role(role, name=name).first.click()  # type: ignore[arg-type]
    page.wait_for_load_state()


def wait_for_run(page: Page, timeout: float = 120) -> None:
    """Reload the run's page until it says the run has finished."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if page.locator('[data-run-final="yes"]').count():
            return
        time.sleep(0.5)
        page.reload()
        page.wait_for_load_state()
    raise AssertionError(f"the run did not finish within {timeout:.0f} s: {page.content()}")


def test_staff_extend_the_bid_deadline_and_a_council_sees_the_new_date_and_the_changes(
    browser: Browser, portal: str, tmp_path: Path
) -> None:
    source = round_walk.SOURCE
    stages.launch(source, f"{SLUG}.yaml", now=round_walk.LAUNCH_AT)
    for n, council in enumerate(round_walk.COUNCILS):
        round_walk.submit_eoi(
            SLUG, council, round_walk.EOI_DAY + timedelta(minutes=n), "Pool budgets."
        )
    stages.close_eoi(SLUG, now=round_walk.EOI_CLOSE)
    stages.invite_to_bid(SLUG, now=round_walk.INVITE_DAY)
    add_user(STAFF, "staff", name="Programme lead")
    add_user(OFFICER, "applicant", council="BIR", name="Birmingham bids team")
    revised = tmp_path / f"{SLUG}-v2.yaml"
    revised.write_text(
        edit(
            source,
            LATER_BIDS,
            ("guidance: Markdown guidance shown to assessors", "guidance: What the place does"),
        ),
        encoding="utf-8",
    )

    with person(browser, portal, STAFF) as page:
        page.goto(f"{portal}/staff/rounds/{SLUG}")
        click(page, "Publish an amendment", "link")
        check_page(page, "amendment-1-upload")
        page.set_input_files("#prospectus", str(revised))
        click(page, "Check the file")
        changes = page.locator("[data-changes] li").all_inner_texts()
        assert changes == [NEW_DEADLINE, "Criterion ‘Drive and ambition’ reworded"]
        check_page(page, "amendment-2-checked")
        click(page, "Publish version 2")  # no reason given: asked for one, nothing published
        assert "Give the reason for the amendment" in page.content()
        check_page(page, "amendment-3-no-reason")
        page.get_by_label("Why the prospectus is amended").fill(
            "Councils asked for more time over the Christmas holiday."
        )
        click(page, "Publish version 2")
        wait_for_run(page)
        assert "The flow run has finished" in page.content()
        page.goto(f"{portal}/staff/rounds/{SLUG}")
        versions = page.locator("[data-versions] tbody tr").all_inner_texts()
        assert versions[0].startswith("2 (in force)")
        assert "Councils asked for more time" in versions[0] and NEW_DEADLINE in versions[0]
        assert "Prospectus, version 2 (PDF)" in versions[0]
        assert "Bids close" in page.content() and "00:00 on 12 January 2012" in page.content()
        check_page(page, "amendment-4-round")

    with session_scope() as session:
        round_ = rounds.get_round(session, SLUG)
        assert round_.prospectus_version == 2
        assert amendments.versions_of(session, round_)[1].published_by == STAFF

    with person(browser, portal, OFFICER) as page:
        page.goto(f"{portal}/applications")
        click(page, "Whole-place community budgets", "link")
        text = page.content()
        assert "Submit by the end of 11 January 2012." in text
        banner = page.locator("[data-amendment]")
        assert "The prospectus was amended on 25 November 2011: what changed" in (
            banner.inner_text()
        )
        assert banner.locator("li").all_inner_texts() == [
            NEW_DEADLINE,
            "Criterion ‘Drive and ambition’ reworded",
        ]
        check_page(page, "amendment-5-council-bid")
        click(page, "Every change to the prospectus", "link")
        assert NEW_DEADLINE in page.locator("[data-changes]").inner_text()
        timetable = page.locator("[data-timetable]").inner_text()
        assert "the end of 11 January 2012" in timetable
        check_page(page, "amendment-6-public-changes")
