"""A clarification request in a real browser: an assessor asks Birmingham about its requested
support from the scoring page; the council finds the request on its task list, changes that one
answer and explains; the assessor reads both versions side by side and scores. Every page is
axe-checked (no serious or critical violation), runs under the CSP without a console error and
is photographed into test-artifacts/."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, Locator, Page, expect
from portal import add_user, serving
from round_walk import ASSESS_DAY, email_of, to_assessment
from test_browser import AXE, browser, check_page, page, sign_in_by_link  # noqa: F401

from cbflow.clock import FixedClock
from cbflow.settings import Settings

pytestmark = pytest.mark.browser


def go(on: Page, target: Locator) -> None:
    """Click a link or button and wait for the page it leads to."""
    with on.expect_navigation():
        target.click()


@pytest.fixture
def portal_assessing(cbflow_env: Settings) -> Iterator[str]:
    """The portal with its clock on the first day of assessment."""
    with serving(cbflow_env, FixedClock(ASSESS_DAY)) as url:
        yield url


@pytest.fixture
def council_page(browser: Browser) -> Iterator[Page]:  # noqa: F811
    """A second person's browser: the council's officer."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.add_init_script(path=str(AXE))
    yield context.new_page()
    context.close()


def test_an_assessor_asks_the_council_answers_and_the_assessor_scores(
    portal_assessing: str,
    page: Page,  # noqa: F811
    council_page: Page,
) -> None:
    portal = portal_assessing
    ids = to_assessment(assessors=3)
    add_user("bids@birmingham.example", "applicant", council="BIR", name="Bea Bids")
    sign_in_by_link(page, portal, email_of("Ann Archer"))
    sign_in_by_link(council_page, portal, "bids@birmingham.example")

    # the assessor asks, from the scoring page
    page.goto(f"{portal}/assess/{ids['BIR']}")
    go(page, page.get_by_role("link", name="Ask the council for clarification"))
    check_page(page, "clarify-ask")
    go(page, page.get_by_role("button", name="Ask the council"))
    assert (
        "Select the questions you are asking about"
        in page.locator(".govuk-error-summary").inner_text()
    )
    assert page.title().startswith("Error: ")
    check_page(page, "clarify-ask-errors")
    page.get_by_label("Support requested from government").check()
    page.get_by_label("Your question").fill("Please confirm the support you request.")
    page.get_by_role("textbox", name="Day").fill("15")
    page.get_by_role("textbox", name="Month").fill("12")
    page.get_by_role("textbox", name="Year").fill("2011")
    go(page, page.get_by_role("button", name="Ask the council"))
    banner = page.locator(".govuk-notification-banner").inner_text()
    assert "could not be scheduled" in banner  # no Prefect server beside this portal
    expect(
        page.get_by_text("Clarification requested: the council has not answered")
    ).to_be_visible()
    check_page(page, "clarify-score-waiting")

    # the council: the request on its task list, the question beside the answer
    on = council_page
    on.goto(f"{portal}/applications/{ids['BIR']}/bid")
    check_page(on, "clarify-task-list")
    go(on, on.get_by_role("link", name="Answer the clarification request"))
    assert on.get_by_role("heading", level=1).inner_text() == "Clarification request"
    expect(on.get_by_text("Please confirm the support you request.")).to_be_visible()
    check_page(on, "clarify-council")
    go(on, on.get_by_role("button", name="Submit your reply"))
    assert "Explain what you changed and why" in on.locator(".govuk-error-summary").inner_text()
    check_page(on, "clarify-council-errors")
    on.get_by_label("Support requested from government").fill("1,200,000")
    on.get_by_label("What you changed and why").fill(
        "We counted the police authority's second year twice."
    )
    go(on, on.get_by_role("button", name="Submit your reply"))
    assert "Your reply has been sent" in on.locator(".govuk-notification-banner").inner_text()
    check_page(on, "clarify-council-sent")

    # the assessor: both versions side by side, then scores
    page.goto(f"{portal}/assess/{ids['BIR']}")
    table = page.get_by_role("table", name="The answers as submitted and as changed")
    expect(table).to_be_visible()
    row = table.get_by_role("row", name="Support requested from government")
    expect(row.get_by_text("£1,500,000.00")).to_be_visible()
    expect(row.get_by_text("£1,200,000.00")).to_be_visible()
    expect(page.get_by_text("We counted the police authority's second year twice.")).to_be_visible()
    check_page(page, "clarify-score-answered")
    for criterion, reason in (
        ("Drive and ambition", "A clear ambition for families."),
        ("Partnership working", "Two partners, budget now clear."),
        ("Outcomes replicable in other areas", "Others could follow it."),
    ):
        page.get_by_role("group", name=f"Your score for {criterion}").get_by_label(
            "3 – Good"
        ).check()
        page.get_by_label(f"Why you gave this score for {criterion}").fill(reason)
    go(page, page.get_by_role("button", name="Submit scores"))
    assert (
        "You have submitted your scores for Birmingham"
        in page.locator(".govuk-notification-banner").inner_text()
    )
    check_page(page, "clarify-scored")
