"""Assessors and published models in a real browser. An assessor: the list of their work, the
scoring page, a draft saved and come back to, a submission with errors, the read-only page
after it, a conflict that nobody is free to take, and the disagreements sent to moderation. A
council: the published models, one model's page and a document, and adopting it. Every page is
axe-checked, runs under the CSP without a console error and is photographed into
test-artifacts/."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import timedelta

import pytest
from playwright.sync_api import Locator, Page, expect
from portal import serving
from round_walk import (
    ASSESS_DAY,
    PUBLISH_DAY,
    SECOND_WAVE,
    SLUG,
    email_of,
    score_everything,
    to_assessment,
    to_publication,
)
from test_browser import browser, check_page, page, portal, sign_in_by_link  # noqa: F401

from cbflow import stages
from cbflow.clock import FixedClock
from cbflow.db import session_scope
from cbflow.models import User
from cbflow.settings import Settings

pytestmark = pytest.mark.browser


def score(on: Page, criterion: str, value: str, reason: str) -> None:
    on.get_by_role("group", name=f"Your score for {criterion}").get_by_label(value).check()
    on.get_by_label(f"Why you gave this score for {criterion}").fill(reason)


def go(on: Page, target: Locator) -> None:
    """Click a link or button and wait for the page it leads to."""
    with on.expect_navigation():
        target.click()


def test_assessor_scores_an_application(portal: str, page: Page) -> None:  # noqa: F811
    ids = to_assessment(assessors=3)
    ann = email_of("Ann Archer")
    sign_in_by_link(page, portal, ann)

    go(page, page.get_by_role("link", name="Your assessments"))
    assert page.get_by_role("heading", level=1).inner_text() == "Your assessments"
    expect(page.get_by_role("row", name="Birmingham").get_by_text("Not started")).to_be_visible()
    check_page(page, "assess-list")

    go(page, page.get_by_role("link", name="Birmingham"))
    assert page.get_by_role("heading", level=1).inner_text() == "Birmingham"
    assert page.get_by_text("Markdown guidance shown to assessors").is_visible()
    check_page(page, "assess-score")
    score(page, "Drive and ambition", "3 – Good", "A clear ambition for families.")
    go(page, page.get_by_role("button", name="Save and come back later"))
    assert (
        "Your scores for Birmingham have been saved"
        in page.locator(".govuk-notification-banner").inner_text()
    )
    expect(page.get_by_role("row", name="Birmingham").get_by_text("In progress")).to_be_visible()
    check_page(page, "assess-list-in-progress")

    go(page, page.get_by_role("link", name="Birmingham"))
    assert (
        page.get_by_role("group", name="Your score for Drive and ambition")
        .get_by_label("3 – Good")
        .is_checked()
    )
    go(page, page.get_by_role("button", name="Submit scores"))
    summary = page.locator(".govuk-error-summary")
    assert "Select a score for Partnership working" in summary.inner_text()
    assert "Drive and ambition" not in summary.inner_text()
    page.wait_for_function("document.activeElement.classList.contains('govuk-error-summary')")
    assert page.title().startswith("Error: ")
    check_page(page, "assess-score-errors")
    summary.get_by_role(
        "link", name="Enter why you gave your score for Partnership working"
    ).click()
    assert page.evaluate("document.activeElement.id") == "justification-partnership"

    score(page, "Partnership working", "2 – Adequate", "Two partners; no pooled health budget.")
    score(page, "Outcomes replicable in other areas", "4 – Strong", "Others could follow it.")
    go(page, page.get_by_role("button", name="Submit scores"))
    assert (
        "You have submitted your scores for Birmingham"
        in page.locator(".govuk-notification-banner").inner_text()
    )
    assert page.get_by_role("button", name="Submit scores").count() == 0
    assert page.get_by_text("Two partners; no pooled health budget.").is_visible()
    check_page(page, "assess-submitted")

    # a conflict with Bolton: every assessor is already on it, so nobody can take it over
    page.goto(f"{portal}/assess/{ids['BOL']}")
    go(page, page.get_by_role("link", name="Declare a conflict of interest with Bolton"))
    check_page(page, "assess-conflict")
    page.get_by_label("Why do you have a conflict of interest?").fill("I used to work there.")
    go(page, page.get_by_role("button", name="Declare a conflict of interest"))
    assert "No other assessor is free" in page.locator(".govuk-error-summary").inner_text()
    check_page(page, "assess-conflict-nobody-free")

    # the others score; Bolton's partnership scores are far apart and go to moderation
    score_everything(skip=frozenset({(ids["BIR"], ann)}))
    stages.open_moderation(SLUG, now=ASSESS_DAY)
    page.goto(f"{portal}/assess")
    go(page, page.get_by_role("link", name="Bolton, Whole-place community budgets"))
    assert page.get_by_role("heading", level=1).inner_text() == "Disagreements sent to moderation"
    assert page.get_by_role("row", name="Assessor 1 (you)").is_visible()
    assert page.get_by_role("row", name="Assessor 3").is_visible()
    check_page(page, "assess-moderation")


@pytest.fixture
def portal_at_publication(cbflow_env: Settings) -> Iterator[str]:
    """The portal with its clock on the day the model is published."""
    with serving(cbflow_env, FixedClock(PUBLISH_DAY)) as url:
        yield url


def test_council_reads_and_adopts_a_published_model(
    portal_at_publication: str,
    page: Page,  # noqa: F811
) -> None:
    url = portal_at_publication
    model_id = to_publication()
    stages.launch(SECOND_WAVE, "second-wave.yaml", now=PUBLISH_DAY - timedelta(days=20))
    with session_scope() as session:
        session.add(
            User(email="lead@dev.gov.uk", name="Lee Devon", role="applicant", council_code="DEV")
        )
    sign_in_by_link(page, url, "lead@dev.gov.uk")

    go(page, page.get_by_role("link", name="Models to adopt"))
    assert page.get_by_role("heading", level=1).inner_text() == "Models to adopt"
    check_page(page, "models")
    go(page, page.get_by_role("link", name="Birmingham"))
    assert page.get_by_role("heading", level=1).inner_text() == "Birmingham's model"
    expect(page.get_by_role("cell", name="Primary care trust").first).to_be_visible()
    check_page(page, "model")
    # the model's own pack (never the place's receipts or letters)
    with page.expect_download() as download:
        page.get_by_role("link", name=re.compile("Replication pack")).click()
    assert download.value.suggested_filename.endswith(".pdf")

    # only the programme's second wave takes an adoption: the model's own round closed long ago,
    # and an application there could never be submitted, so it is not offered
    expect(page.get_by_label("Whole-place community budgets", exact=True)).to_have_count(0)
    expect(page.get_by_text("Whole-place community budgets, second wave").first).to_be_visible()
    go(page, page.get_by_role("button", name="Adopt this model"))
    assert re.search(r"/applications/\d+/(eoi|bid)$", page.url)
    assert page.get_by_text("Whole-place community budgets, second wave").first.is_visible()
    check_page(page, "model-adopted")
    page.goto(f"{url}/models/{model_id}")
    assert page.get_by_text("Your council has adopted this model").is_visible()

    # staff follow the model's adoptions from the implementation page
    page.context.clear_cookies()
    with session_scope() as session:
        session.add(User(email="sam@staff.example", name="Sam Staff", role="staff"))
    sign_in_by_link(page, url, "sam@staff.example")
    page.goto(f"{url}/staff/rounds/{SLUG}/implementation")
    go(page, page.get_by_role("link", name="Birmingham's model: its versions, who adopted them"))
    assert page.get_by_role("heading", level=1).inner_text() == "Birmingham's model: who adopted it"
    # version 1 came at the decisions, version 2 at completion: Devon adopted the latest
    devon = page.get_by_role("row").filter(has=page.get_by_role("cell", name="Devon", exact=True))
    expect(devon.get_by_role("cell", name="Version 2", exact=True)).to_be_visible()
    check_page(page, "model-lineage")
