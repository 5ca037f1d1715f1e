"""Replication in minutes, measured in a real browser: a council officer adopts a published model
through the rolling route, from the model's page to a submitted adoption, and the same browser
builds an application from scratch (the round's expression of interest, then its bid). Both
count the fields typed, the characters and the seconds, and estimate the typing time at a
stated human rate; the adoption's must be under ten minutes and below the path from scratch.
Each page is axe-checked (no serious or critical violations)."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta

import pytest
import test_browser as harness
from conftest import edit, london
from playwright.sync_api import Locator, Page, expect
from portal import add_user, serving
from round_walk import PUBLISH_DAY, SECOND_WAVE, SOURCE, to_publication
from sqlmodel import select
from test_browser_applicant import add_applicant, sign_in

from cbflow import stages
from cbflow.clock import FixedClock
from cbflow.db import session_scope
from cbflow.models import Application, PublishedModel
from cbflow.settings import Settings

pytestmark = pytest.mark.browser

browser = harness.browser
page = harness.page
check_page = harness.check_page

ROUTE = edit(
    SOURCE,
    (
        "carry_over: [partners, pooled_budget]",
        "carry_over: [partners, pooled_budget]\n    route: open\n"
        "    opens: 2013-04-01\n    closes: 2013-09-30",
    ),
)
# a person typing steadily: 40 words a minute (200 characters, at five to a word), and five
# seconds to find each field, read its label and move on (a choice is one such move)
CHARS_PER_MINUTE = 200
SECONDS_PER_FIELD = 5
TARGET_MINUTES = 10

CHANGES = (
    "Devon is a county of small towns rather than one city, so we will run the family "
    "intervention teams from three market towns with the district councils, not from one "
    "central hub, and share one case management system with the police and the NHS trust. "
    "We keep the model's pooled budget and its partners, scaled to our size."
)
PARTNERS = "Devon and Cornwall Police; Royal Devon NHS Trust; Jobcentre Plus; the districts."
AMBITION = (
    "We want every family in Essex with multiple problems to have one plan and one key worker, "
    "paid for by one pooled budget across the council, the police, health and Jobcentre Plus. "
    "Within two years we aim to work with 1,200 families, turn around at least half of them, "
    "and cut the cost of reactive services by a fifth. We will measure school attendance, "
    "offending and work, and publish what we learn so that other places can follow us. The "
    "county and the districts will share staff and premises, and the voluntary sector will "
    "run the outreach in each town, with a single team managing the cases and the data."
)


@dataclass
class Typing:
    """What a person typed and chose in the browser, and for how long the journey ran."""

    fields: int = 0
    characters: int = 0
    began: float = field(default_factory=time.monotonic)
    seconds: float = 0.0

    def fill(self, target: Locator, text: str) -> None:
        target.fill(text)
        self.fields += 1
        self.characters += len(text)

    def choose(self, target: Locator, option: str | None = None) -> None:
        if option is None:
            target.check()
        else:
            target.select_option(option)
        self.fields += 1

    def pause(self) -> None:
        """Time not spent on the journey (the stages run between the EOI and the bid)."""
        self.seconds += time.monotonic() - self.began

    def resume(self) -> None:
        self.began = time.monotonic()

    def stop(self) -> None:
        self.pause()

    @property
    def estimated_minutes(self) -> float:
        return (self.characters / CHARS_PER_MINUTE) + self.fields * SECONDS_PER_FIELD / 60

    def line(self, what: str) -> str:
        return (
            f"{what}: {self.fields} fields typed, {self.characters:,} characters, "
            f"{self.seconds:.1f} s in the browser, typing estimated at "
            f"{self.estimated_minutes:.1f} minutes ({CHARS_PER_MINUTE} characters a minute "
            f"and {SECONDS_PER_FIELD} s a field)"
        )


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(PUBLISH_DAY + timedelta(hours=1))


@pytest.fixture
def portal(cbflow_env: Settings, clock: FixedClock) -> Iterator[str]:
    with serving(cbflow_env, clock) as url:
        yield url


def submit_checked(page: Page) -> None:
    """On "check your answers": confirm and submit."""
    declaration = page.get_by_label(re.compile("I confirm"))
    if declaration.count():
        declaration.check()
    page.get_by_role("button", name="Submit").click()
    page.wait_for_load_state()


def adopt_through_the_route(page: Page, portal: str, model_id: int) -> Typing:
    typing = Typing()
    page.goto(f"{portal}/models/{model_id}")
    check_page(page, "route-model-page")
    page.get_by_role("button", name="Adopt through the rolling route").click()
    page.wait_for_url("**/adoptions/*")
    check_page(page, "route-light-form")
    # the model's answers are there already: the partners and the pooled budget
    assert page.locator("#partners-0-organisation").input_value() == "Primary care trust"
    typing.fill(page.get_by_label("What you will change from the model"), CHANGES)
    # saved in the background as it is typed
    expect(page.get_by_role("status")).to_contain_text("Saved at", timeout=10_000)
    typing.fill(page.get_by_label("Your partners"), PARTNERS)
    typing.choose(page.get_by_label("Ready within three months"))
    page.get_by_role("button", name="Submit for approval").click()
    page.wait_for_load_state()
    typing.stop()
    assert "Adoption waiting for approval" in page.locator("main").inner_text()
    check_page(page, "route-submitted")
    return typing


def apply_from_scratch(page: Page, portal: str, clock: FixedClock) -> Typing:
    typing = Typing()
    page.goto(f"{portal}/applications")
    page.get_by_role("button", name="Start an expression of interest").click()
    page.wait_for_load_state()
    page.get_by_role("link", name="Your place").click()
    page.wait_for_load_state()
    typing.choose(page.get_by_label("Lead council"), "ESS")
    page.get_by_role("button", name="Add another row").click()
    page.wait_for_load_state()
    for row, (organisation, role) in enumerate(
        [("Essex Police", "Community safety"), ("NHS North Essex", "Health")]
    ):
        typing.fill(page.locator(f"#partners-{row}-organisation"), organisation)
        typing.fill(page.locator(f"#partners-{row}-role"), role)
    typing.fill(page.get_by_label("What is your ambition for your place?"), AMBITION)
    check_page(page, "scratch-eoi-section")
    page.get_by_role("button", name="Save and continue").last.click()
    page.wait_for_load_state()
    submit_checked(page)
    assert "Expression of interest submitted" in page.locator(".govuk-panel").inner_text()

    typing.pause()  # the round moves on: the EOI closes and Essex is invited to bid
    stages.close_eoi("whole-place-2013", now=london(2013, 5, 1, 9, 0))
    stages.invite_to_bid("whole-place-2013", now=london(2013, 5, 20, 9, 0))
    clock.set(london(2013, 5, 21, 10, 0))
    sign_in(page, portal)
    with session_scope() as session:
        application = session.exec(
            select(Application).where(Application.council_code == "ESS")
        ).one()
    typing.resume()

    page.goto(f"{portal}/applications/{application.id}/bid")
    page.get_by_role("link", name="Pooled budget").click()
    page.wait_for_load_state()
    page.get_by_role("button", name="Add another row").click()
    page.wait_for_load_state()
    for row, (organisation, year, amount) in enumerate(
        [("Essex Police", "2013-14", "250,000"), ("NHS North Essex", "2013-14", "400,000")]
    ):
        typing.fill(page.locator(f"#pooled_budget-{row}-organisation"), organisation)
        typing.choose(page.locator(f"#pooled_budget-{row}-year"), year)
        typing.fill(page.locator(f"#pooled_budget-{row}-amount_gbp"), amount)
    typing.fill(page.get_by_label("Support requested from government"), "1,200,000")
    check_page(page, "scratch-bid-section")
    page.get_by_role("button", name="Save and continue").last.click()
    page.wait_for_load_state()
    submit_checked(page)
    typing.stop()
    assert "Bid submitted" in page.locator(".govuk-panel").inner_text()
    return typing


def test_adopting_through_the_route_takes_minutes_against_applying_from_scratch(
    portal: str, page: Page, clock: FixedClock
) -> None:
    model_id = to_publication(ROUTE)
    stages.launch(SECOND_WAVE, "whole-place-2013.yaml", now=london(2013, 3, 18, 9, 0))
    add_applicant("officer@devon.gov.uk", "DEV", "Sam Ward")
    add_applicant("pat@essex.gov.uk", "ESS", "Pat Jones")
    sign_in(page, portal, "officer@devon.gov.uk")

    adoption = adopt_through_the_route(page, portal, model_id)

    sign_in(page, portal, "pat@essex.gov.uk")
    scratch = apply_from_scratch(page, portal, clock)

    print()
    print(adoption.line("Adopting through the rolling route"))
    print(scratch.line("Applying from scratch (expression of interest and bid)"))
    with session_scope() as session:
        adopted = session.exec(select(Application).where(Application.route == "adoption")).one()
        model = session.get(PublishedModel, model_id)
        assert model is not None
    assert adopted.state == "adoption_submitted"
    assert set(adopted.eoi_changes) == {
        "adoption_changes",
        "adoption_partners",
        "adoption_readiness",
    }
    # the model's answers were submitted as they came, valid as the light form asks them
    assert {k: adopted.eoi_answers[k] for k in model.bundle["answers"]} == model.bundle["answers"]
    assert adoption.fields == 3
    assert adoption.estimated_minutes < TARGET_MINUTES
    assert adoption.estimated_minutes < scratch.estimated_minutes
    assert adoption.fields < scratch.fields

    # staff approve it on the round's Adoptions page: Devon's implementation starts today (21
    # May 2013), its plan due 213 days later, as Birmingham's was after 1 April 2012
    add_user("officer@dclg.gov.uk", "staff", name="Lee Staff")
    sign_in(page, portal, "officer@dclg.gov.uk")
    page.goto(f"{portal}/staff/rounds/whole-place-2011")
    page.get_by_role("link", name="Adoptions").click()
    page.wait_for_load_state()
    check_page(page, "route-staff-adoptions")
    page.get_by_role("button", name="Return it to Devon").click()
    page.wait_for_load_state()
    assert (
        "Enter the reason you are returning it" in page.locator(".govuk-error-summary").inner_text()
    )
    check_page(page, "route-staff-adoptions-error")
    page.get_by_role("button", name="Approve Devon's adoption").click()
    page.wait_for_load_state()
    assert "Implementing" in page.locator("main").inner_text()
    sign_in(page, portal, "officer@devon.gov.uk")
    page.goto(f"{portal}/adoptions/{adopted.id}")
    assert "Operational plan agreed: due 20 December 2013" in page.locator("main").inner_text()
    check_page(page, "route-approved")
