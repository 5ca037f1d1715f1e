"""Support on offer in a real browser, each person in their own: Birmingham's officer, its place
implementing, sees the offers open to it, asks for one without saying what for (and is told),
then with a sentence; the Local Government Association's officer accepts it in the provider's
workspace; Birmingham sees it accepted with the provider's contact; staff see the matrix with
Bolton as a gap. Every page is axe-checked (no serious or critical violation) and
photographed."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import test_browser as harness
from conftest import london
from playwright.sync_api import Browser
from portal import add_user, serving
from support_walk import PROVIDERS, add_providers, to_implementation
from test_browser_partnership import click, person

from cbflow.clock import FixedClock
from cbflow.settings import Settings

pytestmark = pytest.mark.browser

browser = harness.browser
check_page = harness.check_page

NOW = london(2012, 5, 14, 10, 0)
OFFICER = "bids@birmingham.example"
LGA = PROVIDERS["Local Government Association"]
STAFF = "lead@staff.example"
PEER_REVIEW = "A peer review by officers of a place that pooled its budgets."


@pytest.fixture
def portal(cbflow_env: Settings) -> Iterator[str]:
    to_implementation()
    add_providers()
    add_user(OFFICER, "applicant", council="BIR", name="Bea Brown")
    add_user(STAFF, "staff", name="Sam Staff")
    with serving(cbflow_env, FixedClock(NOW)) as url:
        yield url


def test_a_council_asks_for_support_and_the_provider_accepts_it(
    browser: Browser, portal: str
) -> None:
    with person(browser, portal, OFFICER) as page:
        page.goto(f"{portal}/applications")
        page.get_by_role("heading", name="Support on offer").wait_for()
        check_page(page, "support-1-council-offers")
        card = page.locator(".govuk-summary-card", has_text=PEER_REVIEW)
        card.get_by_role("button", name="Ask for this support").click()
        page.wait_for_load_state()
        assert page.get_by_text("Say what you want the support for").first.is_visible()
        check_page(page, "support-2-council-says-what-for")
        page.get_by_label("What do you want it for?").fill(
            "To review the governance of our pooled budget before it goes live."
        )
        click(page, "Ask for this support")
        assert "/applications#support-" in page.url
        row = page.locator("tr", has_text="Local Government Association")
        assert "Requested: waiting for the provider" in row.inner_text()
        check_page(page, "support-3-council-asked")

    with person(browser, portal, LGA) as page:
        page.goto(f"{portal}/support")
        request = page.locator(".govuk-summary-card", has_text="review the governance")
        assert "0 of 2" in request.inner_text()
        check_page(page, "support-4-provider-requests")
        request.get_by_role("button", name="Accept").click()
        page.wait_for_load_state()
        request = page.locator(".govuk-summary-card", has_text="review the governance")
        assert "Accepted" in request.inner_text() and "1 of 2" in request.inner_text()
        check_page(page, "support-5-provider-accepted")

    with person(browser, portal, OFFICER) as page:
        page.goto(f"{portal}/applications")
        row = page.locator("tr", has_text="Local Government Association")
        assert "Accepted" in row.inner_text()
        assert "peers@lga.example.gov.uk" in row.inner_text()

    with person(browser, portal, STAFF) as page:
        page.goto(f"{portal}/staff/rounds/whole-place-2011/support")
        gaps = page.locator(".govuk-summary-list__row", has_text="(gaps)")
        assert gaps.locator("dd").inner_text().strip() == "1"
        assert page.locator("tr", has_text="Bolton").get_by_text("Gap").is_visible()
        check_page(page, "support-6-staff-matrix")
