"""More time, in a real browser: staff open the round's Deadlines page, make a mistake (no
reason) and are told at the field, then give Cambridgeshire until 17:00 on 12 December; after
the bid deadline Cambridgeshire's officer reads its own deadline and may still work on its bid,
while Bradford's officer is told the deadline has passed and reads nothing of Cambridgeshire's
extension. Every page is axe-checked (no serious or critical violation) and photographed."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
import test_browser as harness
from portal import add_user, serving
from round_walk import BID_CLOSE, BID_DAY, SLUG
from test_browser_partnership import person
from test_extensions import invited

from cbflow.clock import FixedClock
from cbflow.settings import Settings

pytestmark = pytest.mark.browser

browser = harness.browser
check_page = harness.check_page
STAFF = "lead@staff.example"


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(BID_DAY)


@pytest.fixture
def portal(cbflow_env: Settings, clock: FixedClock) -> Iterator[str]:
    with serving(cbflow_env, clock) as url:
        yield url


def test_staff_give_one_council_more_time_and_its_pages_say_so(
    browser: harness.Browser, portal: str, clock: FixedClock
) -> None:
    ids = invited()
    add_user(STAFF, "staff", name="Lee Lead")
    add_user("cat@cambridge.gov.uk", "applicant", council="CAM", name="Cat Cambridge")
    add_user("bea@bradford.gov.uk", "applicant", council="BRD", name="Bea Bradford")

    with person(browser, portal, STAFF) as page:
        page.goto(f"{portal}/staff/rounds/{SLUG}/deadlines")
        check_page(page, "deadlines-staff")
        page.select_option("#who", label="Cambridgeshire: bids")
        page.fill("#closes-day", "12")
        page.fill("#closes-month", "12")
        page.fill("#closes-year", "2011")
        page.fill("#at", "17:00")
        page.click("button:has-text('Give more time')")
        assert page.locator(".govuk-error-summary").is_visible()
        assert "Give the reason for the extension" in page.inner_text(".govuk-error-summary")
        check_page(page, "deadlines-staff-error")
        page.fill("#reason", "Their offices flooded in the storm of 8 December.")
        page.click("button:has-text('Give more time')")
        assert "is saved and applies at once" in page.inner_text(".govuk-notification-banner")
        rows = page.inner_text("table:has-text('Extensions given')")
        assert "Cambridgeshire" in rows and "17:00 on 12 December 2011" in rows
        check_page(page, "deadlines-staff-given")

    clock.set(BID_CLOSE + timedelta(days=1))
    with person(browser, portal, "cat@cambridge.gov.uk") as page:
        page.goto(f"{portal}/applications/{ids['CAM']}/bid")
        note = page.inner_text("[data-extension]")
        assert "Your council has been given more time" in note
        assert "17:00 on 12 December 2011" in note
        assert "The deadline has passed" not in page.inner_text("main")
        check_page(page, "deadlines-council-extended")
    with person(browser, portal, "bea@bradford.gov.uk") as page:
        page.goto(f"{portal}/applications/{ids['BRD']}/bid")
        main = page.inner_text("main")
        assert "The deadline has passed" in main
        assert "12 December" not in main
        check_page(page, "deadlines-council-closed")
