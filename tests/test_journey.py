"""One round from launch to replication through the portal's pages alone, in a real browser.

An administrator adds the people; programme staff launch the round from its prospectus file; a
council fills in and submits its expression of interest (with a table) and its bid (with a table
and an upload); staff run the closing of each window, confirm the shortlist and assign
assessors; three assessors score; staff moderate the disagreement, finalise, try a what-if and
release the decisions; implementation starts and the council makes its first return; the round
completes, staff publish the place's model and another council adopts it. Staff actions start
flow runs on a real Prefect server, executed by the flow runner `cbflow serve` starts, and each
page follows its run. Every page is checked with axe-core (no serious or critical violation) and
photographed into test-artifacts/journey-*.png.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import edit, example_text, london
from playwright.sync_api import Locator, Page, expect
from portal import add_user, serving
from round_walk import SECOND_WAVE
from sqlmodel import col, select
from test_browser import browser, serious_violations  # noqa: F401
from test_browser import page as page

from cbflow.clock import FixedClock
from cbflow.db import session_scope
from cbflow.models import Application, OutboxMessage, PublishedModel
from cbflow.settings import Settings

pytestmark = [pytest.mark.browser, pytest.mark.slow]

ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
# the format example, with an upload in the bid
PROSPECTUS = edit(
    example_text(),
    (
        "              max: 1500000\n              required: true\n",
        "              max: 1500000\n              required: true\n"
        "            - id: delivery_plan\n              label: Delivery plan\n"
        "              hint: Your plan for the first year, as a PDF\n"
        "              type: file\n              accept: [pdf]\n              max_mb: 5\n",
    ),
)
PDF = b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"
ASSESSORS = [("Ann Archer", "ann"), ("Ben Baxter", "ben"), ("Cat Cooper", "cat")]
# each assessor's score for (ambition, partnership, replicability): partnership 2 apart
SCORES = {"ann": ("3", "2", "3"), "ben": ("3", "4", "3"), "cat": ("4", "4", "3")}
CRITERIA = ("Drive and ambition", "Partnership working", "Outcomes replicable in other areas")
SCALE = {"2": "2 – Adequate", "3": "3 – Good", "4": "4 – Strong"}


class Journey:
    """The browser, the portal's address and its clock, and a numbered photograph per page."""

    def __init__(self, page: Page, url: str, clock: FixedClock) -> None:
        self.page, self.url, self.clock = page, url, clock
        page.set_default_timeout(15000)
        self.shots = 0

    def check(self, name: str) -> None:
        assert serious_violations(self.page) == [], f"axe on {name} ({self.page.url})"
        self.shots += 1
        ARTIFACTS.mkdir(exist_ok=True)
        self.page.screenshot(
            path=str(ARTIFACTS / f"journey-{self.shots:02d}-{name}.png"), full_page=True
        )

    def go(self, target: Locator) -> None:
        with self.page.expect_navigation():
            target.click()

    def visit(self, path: str) -> None:
        self.page.goto(f"{self.url}{path}")

    def sign_in(self, email: str) -> None:
        self.visit("/sign-in")
        self.page.get_by_label("Sign in").fill(email)
        self.go(self.page.get_by_role("button", name="Email me a link"))
        with session_scope() as session:
            body = session.exec(
                select(OutboxMessage.body)
                .where(OutboxMessage.to == email)
                .order_by(col(OutboxMessage.id).desc())
            ).first()
        assert body is not None
        link = re.search(r"http://\S+/sign-in/[\w-]+", body)
        assert link is not None
        self.page.goto(link.group(0))
        self.go(self.page.get_by_role("button", name="Sign in"))

    def sign_out(self) -> None:
        self.go(self.page.get_by_role("button", name="Sign out"))

    def button(self, name: str) -> None:
        self.go(self.page.get_by_role("button", name=name, exact=True))

    def link(self, name: str | re.Pattern[str]) -> None:
        exact = isinstance(name, str)
        self.go(self.page.get_by_role("link", name=name, exact=exact).first)

    def wait_for_run(self, name: str) -> None:
        """On a run's page: reload until the flow run has finished, then check it did."""
        assert "/staff/runs/" in self.page.url, self.page.url
        deadline = time.monotonic() + 120
        while self.page.locator('#run-status[data-run-final="yes"]').count() == 0:
            assert time.monotonic() < deadline, f"the run of {name} did not finish"
            time.sleep(0.5)
            self.page.reload()
        expect(self.page.locator("#run-status")).to_contain_text("The flow run has finished")
        self.check(f"run-{name}")


@pytest.fixture
def journey(flow_runner: Settings, page: Page) -> Iterator[Journey]:
    """The portal in a thread, with a clock the journey moves through the round's dates, its
    staff actions run by a real Prefect server and flow runner."""
    clock = FixedClock(london(2011, 10, 17, 9, 0))
    # the clock is in 2011: scheduled deadline runs would fall due at once in real time, so
    # staff run each deadline from the round's page
    with serving(flow_runner, clock, schedule_deadlines=False) as url:
        yield Journey(page, url, clock)


def test_one_round_from_launch_to_replication_through_the_pages(
    journey: Journey, tmp_path: Path
) -> None:
    j, page = journey, journey.page
    slug = "whole-place-2011"
    add_user("admin@cbflow.example", "admin", name="Ada Admin")

    # an administrator adds everyone else
    j.sign_in("admin@cbflow.example")
    j.link("People")
    j.check("people")
    people = [
        ("Sam Staff", "sam@staff.example", "Programme staff", ""),
        *[(name, f"{short}@assessors.example", "Assessor", "") for name, short in ASSESSORS],
        ("Pat Jones", "pat@essex.example", "Council applicant", "ESS"),
        ("Kim Lee", "kim@kent.example", "Council applicant", "KEN"),
    ]
    for name, email, role, council in people:
        page.get_by_label("Full name").fill(name)
        page.get_by_label("Email address").fill(email)
        page.get_by_label(role, exact=True).check()
        page.get_by_label("Council code").fill(council)
        j.button("Add the person")
        expect(page.get_by_role("cell", name=email)).to_be_visible()
    j.sign_out()

    # staff launch the round from its file
    j.sign_in("sam@staff.example")
    j.link("Funding rounds")
    j.check("staff-rounds")
    j.button("Launch a round")
    j.check("launch")
    plan = tmp_path / "whole-place-2011.yaml"
    plan.write_text(PROSPECTUS, encoding="utf-8")
    page.get_by_label("Prospectus file").set_input_files(str(plan))
    j.button("Check and launch")
    j.wait_for_run("launch")
    j.link("Go to Whole-place community budgets")
    j.check("round-overview")
    j.sign_out()

    # a council sends its expression of interest
    j.clock.set(london(2011, 11, 1, 10, 0))
    j.sign_in("pat@essex.example")
    j.link("Your applications")
    j.check("applications")
    j.button("Start an expression of interest")
    j.check("eoi-task-list")
    j.link("Your place")
    page.get_by_label("Lead council").select_option(label="Essex")
    j.button("Add another row")
    page.locator("#partners-0-organisation").fill("Essex Police")
    page.locator("#partners-0-role").fill("Community safety")
    page.locator("#partners-1-organisation").fill("NHS North Essex")
    page.get_by_label("What is your ambition for your place?").fill(
        "One public service for every family in Essex, budgets pooled around them."
    )
    j.check("eoi-section")
    page.get_by_role("button", name="Save and continue").last.click()
    page.wait_for_load_state()
    expect(page.get_by_role("heading", level=1)).to_have_text(
        "Check your answers before submitting"
    )
    j.check("eoi-check")
    page.get_by_label(re.compile("I confirm")).check()
    j.button("Submit")
    expect(page.locator(".govuk-panel")).to_contain_text(f"{slug}/ESS")
    j.check("eoi-submitted")
    j.sign_out()

    # the window closes: staff run the sift and confirm the shortlist
    j.clock.set(london(2011, 11, 11, 9, 0))
    j.sign_in("sam@staff.example")
    j.visit(f"/staff/rounds/{slug}")
    j.button("Run now: Close expressions of interest and sift")
    j.wait_for_run("close-eoi")
    j.visit(f"/staff/rounds/{slug}/sift")
    expect(page.get_by_label(re.compile("Essex"))).to_be_checked()
    j.check("sift")
    j.button("Confirm the shortlist and issue invitations")
    j.wait_for_run("invite")
    j.visit(f"/staff/rounds/{slug}/applications")
    expect(page.get_by_role("row", name=re.compile("Essex"))).to_contain_text("Invited to bid")
    j.check("dashboard")
    j.sign_out()

    # the council's bid, with a table and an upload
    j.clock.set(london(2011, 11, 25, 10, 0))
    j.sign_in("pat@essex.example")
    j.link("Your applications")
    j.link("Whole-place community budgets")
    j.check("bid-task-list")
    j.link("Pooled budget")
    page.locator("#pooled_budget-0-organisation").fill("Essex County Council")
    page.locator("#pooled_budget-0-year").select_option("2012-13")
    page.locator("#pooled_budget-0-amount_gbp").fill("2,500,000")
    page.get_by_label("Support requested from government").fill("900000")
    page.get_by_label("Delivery plan").set_input_files(
        files=[{"name": "delivery-plan.pdf", "mimeType": "application/pdf", "buffer": PDF}]
    )
    j.check("bid-section")
    page.get_by_role("button", name="Save and continue").last.click()
    page.wait_for_load_state()
    j.check("bid-check")
    expect(page.get_by_text("delivery-plan.pdf")).to_be_visible()
    page.get_by_label(re.compile("I confirm")).check()
    j.button("Submit")
    expect(page.locator(".govuk-panel")).to_contain_text("Bid submitted")
    j.check("bid-submitted")
    j.sign_out()

    # bids close; staff assign the assessors
    j.clock.set(london(2011, 12, 10, 9, 0))
    j.sign_in("sam@staff.example")
    j.visit(f"/staff/rounds/{slug}")
    j.button("Run now: Close bids")
    j.wait_for_run("close-bids")
    j.visit(f"/staff/rounds/{slug}/assessment")
    j.check("assessment-before")
    j.button("Assign assessors")
    j.wait_for_run("assign")
    j.sign_out()

    # three assessors score, with their reasons
    j.clock.set(london(2011, 12, 12, 10, 0))
    for name, short in ASSESSORS:
        j.sign_in(f"{short}@assessors.example")
        j.link("Your assessments")
        j.check(f"assess-list-{short}")
        j.link(re.compile("^Essex"))
        for criterion, value in zip(CRITERIA, SCORES[short], strict=True):
            group = page.get_by_role("group", name=f"Your score for {criterion}")
            group.get_by_label(SCALE[value], exact=True).check()
            page.get_by_label(f"Why you gave this score for {criterion}").fill(
                f"{name} weighed the evidence on {criterion.lower()}."
            )
        j.check(f"assess-score-{short}")
        j.button("Submit scores")
        j.check(f"assess-submitted-{short}")
        j.sign_out()

    # staff open moderation, moderate, finalise, try a what-if and release the decisions
    j.sign_in("sam@staff.example")
    j.visit(f"/staff/rounds/{slug}/assessment")
    j.button("Open moderation")
    j.wait_for_run("moderation")
    j.visit(f"/staff/rounds/{slug}/assessment")
    expect(page.get_by_text("The assessors' scores differ by 2")).to_be_visible()
    page.get_by_role("group", name="Moderated score").get_by_label(SCALE["4"]).check()
    page.get_by_label("Reason for the moderated score").fill("The panel agreed: strong partners.")
    j.check("moderation")
    j.button("Record the moderated score")
    j.button("Finalise the assessment")
    j.wait_for_run("finalise")
    j.visit(f"/staff/rounds/{slug}/selection")
    page.get_by_label("Budget in pounds").fill("100000")
    j.button("Show what would change")
    expect(page.locator("#changes")).to_contain_text("Essex")
    j.check("what-if")
    page.get_by_label("I have checked the decisions and want to release them").check()
    j.button("Release the decisions")
    j.wait_for_run("decide")
    j.visit(f"/staff/rounds/{slug}/selection")
    expect(page.get_by_role("row", name=re.compile("Essex"))).to_contain_text("Selected")
    j.check("decisions")
    j.visit(f"/staff/rounds/{slug}/implementation")
    j.button("Start implementation")
    j.wait_for_run("start-implementation")
    j.sign_out()

    # the selected council makes its first return
    j.clock.set(london(2012, 7, 5, 9, 0))
    j.sign_in("pat@essex.example")
    j.link("Your applications")
    j.link("Whole-place community budgets")
    j.check("returns-page")
    make_first_return(j)
    j.sign_out()

    # the round completes; staff publish the model
    j.clock.set(london(2013, 4, 2, 9, 0))
    j.sign_in("sam@staff.example")
    j.visit(f"/staff/rounds/{slug}/implementation")
    j.check("returns")
    j.visit(f"/staff/rounds/{slug}")
    j.button("Run now: Complete the round")
    j.wait_for_run("complete")
    j.visit(f"/staff/rounds/{slug}/implementation")
    j.button("Publish as a model")
    j.wait_for_run("publish")
    # the programme's second wave, whose expressions of interest are open: the first round's
    # windows closed long ago, and a model is adopted only into a round that is open
    j.link("Funding rounds")
    j.button("Launch a round")
    wave = tmp_path / "whole-place-2013.yaml"
    wave.write_text(SECOND_WAVE, encoding="utf-8")
    page.get_by_label("Prospectus file").set_input_files(str(wave))
    j.button("Check and launch")
    j.wait_for_run("launch")
    j.sign_out()

    # another council adopts the model
    j.sign_in("kim@kent.example")
    j.link("Models to adopt")
    j.check("models")
    j.link(re.compile("Essex"))
    j.check("model")
    j.button("Adopt this model")
    j.check("adopted")
    with session_scope() as session:
        model = session.exec(
            select(PublishedModel).order_by(col(PublishedModel.version).desc())
        ).first()
        adopted = session.exec(select(Application).where(Application.council_code == "KEN")).one()
        assert model is not None and model.version == 2  # version 1 was the plan as selected
        assert adopted.adopted_from_model_id == model.id
        assert adopted.reference.startswith("whole-place-2013/")
        assert adopted.bid_answers["pooled_budget"][0]["organisation"] == "Essex County Council"
    assert j.shots >= 30


def make_first_return(j: Journey) -> None:
    """The council's first quarterly return, from its returns page."""
    page = j.page
    expect(page.get_by_role("heading", level=1)).to_have_text("Implementation returns")
    j.link(re.compile("for period 1$"))
    page.get_by_label("Families attached this period").fill("40")
    page.get_by_label("Families turned around this period").fill("6")
    page.get_by_label("What happened this period").fill("Forty families met their key worker.")
    j.check("return-form")
    j.button("Continue")
    j.check("return-check")
    j.button("Submit return")
    j.check("return-submitted")
