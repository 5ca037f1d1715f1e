"""In a real browser, with axe-core: a place's officer publishes version 2 of its model at a
milestone from its implementation pages (a first try with nothing written is refused with an
error summary), and the council that adopted version 1 is told on its application's page and
reads the new version."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from playwright.sync_api import Page, expect
from portal import add_user, serving
from round_walk import SLUG, START_DAY, to_decisions
from sqlmodel import col, select
from test_browser import browser, check_page  # noqa: F401
from test_browser import page as page
from test_model_versions import AFTER_MET, AUTUMN_WAVE, CHANGES, WAVE, meet_milestone

from cbflow import stages
from cbflow.clock import FixedClock
from cbflow.db import session_scope
from cbflow.models import OutboxMessage, PublishedModel
from cbflow.services import replication, rounds
from cbflow.settings import Settings

pytestmark = pytest.mark.browser


def sign_in_by_link(page: Page, portal: str, email: str, besides: int | None = None) -> None:
    """As test_browser's, with the newest message to the address other than `besides`."""
    page.goto(f"{portal}/sign-in")
    page.get_by_label("Sign in").fill(email)
    page.get_by_role("button", name="Email me a link").click()
    page.wait_for_load_state()
    with session_scope() as session:
        mail = session.exec(
            select(OutboxMessage)
            .where(OutboxMessage.to == email, OutboxMessage.id != besides)
            .order_by(col(OutboxMessage.id).desc())
        ).first()
    assert mail is not None
    link = re.search(r"http://\S+/sign-in/\S+", mail.body)
    assert link is not None
    page.goto(link.group(0))
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_load_state()


@pytest.fixture
def portal(cbflow_env: Settings) -> Iterator[str]:
    """Birmingham implementing with its milestone met; Devon adopted version 1 of its model."""
    ids = to_decisions()
    stages.start_implementation(SLUG, now=START_DAY)
    stages.launch(AUTUMN_WAVE, "autumn-wave.yaml", now=START_DAY)
    with session_scope() as session:
        first = session.exec(
            select(PublishedModel).where(PublishedModel.application_id == ids["BIR"])
        ).one()
        assert first.id is not None
        replication.adopt_model(
            session,
            model_id=first.id,
            council_code="DEV",
            actor="lead@dev.gov.uk",
            now=START_DAY,
            into=rounds.get_round(session, WAVE),
        )
    meet_milestone(ids["BIR"])
    add_user("lead@bir.gov.uk", "applicant", council="BIR", name="Bea Birmingham")
    add_user("lead@dev.gov.uk", "applicant", council="DEV", name="Dee Devon")
    with serving(cbflow_env, FixedClock(AFTER_MET)) as url:
        yield url


def test_a_place_publishes_a_version_and_its_adopter_is_told(portal: str, page: Page) -> None:
    sign_in_by_link(page, portal, "lead@bir.gov.uk")
    page.get_by_role("link", name="Your applications").first.click()
    page.get_by_role("link", name="Whole-place community budgets").first.click()
    page.get_by_role("link", name="Publish a new version of your model").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Your model")
    check_page(page, "model-version-form")

    page.get_by_role("button", name="Publish this version").click()
    expect(page.get_by_role("heading", name="There is a problem")).to_be_visible()
    expect(page.get_by_role("link", name="Select a milestone you have met")).to_be_visible()
    check_page(page, "model-version-errors")

    page.get_by_label("Operational plan agreed").check()
    page.get_by_label("What changed since the last version").fill(CHANGES)
    page.get_by_role("button", name="Publish this version").click()
    expect(page.get_by_text("Version 2 of your model is published.")).to_be_visible()
    expect(page.get_by_role("cell", name=CHANGES)).to_be_visible()
    check_page(page, "model-version-published")
    page.get_by_role("button", name="Sign out").click()

    # Devon's outbox holds the e-mail telling it of version 2, beside its sign-in link
    with session_scope() as session:
        told = session.exec(
            select(OutboxMessage).where(OutboxMessage.to == "lead@dev.gov.uk")
        ).one()
    assert told.subject == "Birmingham's model: version 2 has been published"
    sign_in_by_link(page, portal, "lead@dev.gov.uk", told.id)
    page.get_by_role("link", name="Your applications").first.click()
    page.get_by_role("link", name="Whole-place community budgets, second wave").first.click()
    expect(
        page.get_by_text("Version 2 has been published since you adopted version 1")
    ).to_be_visible()
    check_page(page, "model-version-adopter-told")
    page.get_by_role("link", name="Read version 2 of the model").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Birmingham's model")
    expect(page.get_by_role("cell", name=CHANGES)).to_be_visible()
    check_page(page, "model-version-model-page")
