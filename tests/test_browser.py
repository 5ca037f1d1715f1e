"""The portal in a real browser: Debian's Chromium driven by Playwright against the portal served
by uvicorn. Every page is checked with axe-core (no serious or critical violations), runs its
GOV.UK Frontend JavaScript under the Content-Security-Policy without a single console error, and
is photographed into test-artifacts/ for people to look at."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from conftest import ROOT, example_text
from playwright.sync_api import Browser, ConsoleMessage, Page, Response, sync_playwright
from portal import serving
from sqlmodel import select

from cbflow import stages
from cbflow.clock import FixedClock
from cbflow.db import session_scope
from cbflow.models import OutboxMessage, User
from cbflow.settings import Settings

pytestmark = pytest.mark.browser

CHROMIUM = Path("/usr/bin/chromium")
# headless as root on a machine whose only network is the package registries
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
AXE = ROOT / "node_modules" / "axe-core" / "axe.min.js"
ARTIFACTS = ROOT / "test-artifacts"
DURING_EOI = datetime(2011, 11, 1, 10, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        pytest.fail("Chromium is not installed: run ./dev setup (it installs Debian's chromium)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        yield browser
        browser.close()


@pytest.fixture
def portal(cbflow_env: Settings) -> Iterator[str]:
    """The portal on a free port, in a thread of this process, against the test's database,
    with its clock stopped during the expression-of-interest window of the example rounds."""
    with serving(cbflow_env, FixedClock(DURING_EOI)) as url:
        yield url


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    # axe is injected as an init script: it runs outside the page's CSP, which stays enforced
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.add_init_script(path=str(AXE))
    page = context.new_page()
    problems: list[str] = []

    def on_console(message: ConsoleMessage) -> None:
        # a page answered with 400 (a form with errors) is logged as a failed load: the
        # responses are checked below, so only the page's own errors count here
        if message.type == "error" and not message.text.startswith("Failed to load resource"):
            problems.append(message.text)

    def on_response(response: Response) -> None:
        if response.request.resource_type != "document" and response.status >= 400:
            problems.append(f"{response.status} for {response.url}")

    page.on("console", on_console)
    page.on("pageerror", lambda error: problems.append(str(error)))
    page.on("response", on_response)
    yield page
    context.close()
    assert problems == [], "the browser reported errors (a CSP violation, a failing script)"


def serious_violations(page: Page) -> list[dict[str, Any]]:
    result = page.evaluate("async () => await axe.run(document)")
    return [
        {
            "id": v["id"],
            "impact": v["impact"],
            "help": v["help"],
            "nodes": [n["html"][:200] for n in v["nodes"]],
        }
        for v in result["violations"]
        if v["impact"] in ("serious", "critical")
    ]


def check_page(page: Page, name: str) -> None:
    """Accessible, GOV.UK Frontend's JavaScript running, and a screenshot."""
    assert page.evaluate("document.body.classList.contains('govuk-frontend-supported')")
    assert serious_violations(page) == []
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def test_home_page_lists_rounds_and_is_accessible(portal: str, page: Page) -> None:
    stages.launch(example_text(), "round.yaml", now=datetime(2011, 10, 17, 9, tzinfo=UTC))

    page.goto(portal)

    assert page.title() == "Funding rounds – cbflow – GOV.UK"
    assert page.get_by_role("heading", level=1).inner_text() == "Funding rounds"
    row = page.get_by_role("row", name="Whole-place community budgets")
    assert "12:00 on 10 November 2011 (GMT)" in row.inner_text()
    check_page(page, "home")


def test_sign_in_page_is_accessible_and_shows_a_focused_error_summary(
    portal: str, page: Page
) -> None:
    page.goto(f"{portal}/sign-in")
    check_page(page, "sign-in")

    page.get_by_role("button", name="Email me a link").click()

    page.wait_for_load_state()
    summary = page.locator(".govuk-error-summary")
    assert summary.is_visible()
    assert "Enter your email address" in summary.inner_text()
    page.wait_for_function("document.activeElement.classList.contains('govuk-error-summary')")
    assert page.title() == "Error: Sign in – cbflow – GOV.UK"
    check_page(page, "sign-in-error")
    summary.get_by_role("link", name="Enter your email address").click()
    assert page.evaluate("document.activeElement.id") == "email"


def test_skip_link_is_the_first_thing_keyboard_users_reach(portal: str, page: Page) -> None:
    page.goto(portal)

    page.keyboard.press("Tab")

    focused = page.evaluate("document.activeElement.textContent.trim()")
    assert focused == "Skip to main content"


def test_administrator_signs_in_by_link_reads_the_outbox_and_signs_out(
    portal: str, page: Page
) -> None:
    with session_scope() as session:
        session.add(User(email="ada@cbflow.example", name="Ada Admin", role="admin"))
    page.goto(f"{portal}/sign-in")
    page.get_by_label("Sign in").fill("ada@cbflow.example")
    page.get_by_role("button", name="Email me a link").click()
    page.wait_for_load_state()
    assert page.get_by_role("heading", level=1).inner_text() == "Check your email"
    check_page(page, "check-your-email")
    with session_scope() as session:
        mail = session.exec(select(OutboxMessage)).one()
    link = re.search(r"http://\S+/sign-in/\S+", mail.body)
    assert link is not None

    page.goto(link.group(0))
    check_page(page, "sign-in-confirm")
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_load_state()
    assert page.get_by_text("Ada Admin").is_visible()
    check_page(page, "home-signed-in")
    page.goto(f"{portal}/admin/outbox")
    assert page.get_by_role("heading", name="Your link to sign in to cbflow").is_visible()
    check_page(page, "admin-outbox")
    page.get_by_role("button", name="Sign out").click()
    page.wait_for_load_state()

    assert page.get_by_role("heading", level=1).inner_text() == "You have signed out"
    assert page.get_by_role("link", name="Sign in").first.is_visible()
    check_page(page, "signed-out")


def sign_in_by_link(page: Page, portal: str, email: str) -> None:
    page.goto(f"{portal}/sign-in")
    page.get_by_label("Sign in").fill(email)
    page.get_by_role("button", name="Email me a link").click()
    page.wait_for_load_state()
    with session_scope() as session:
        mail = session.exec(select(OutboxMessage).where(OutboxMessage.to == email)).one()
    link = re.search(r"http://\S+/sign-in/\S+", mail.body)
    assert link is not None
    page.goto(link.group(0))
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_load_state()


def save_and_continue(page: Page) -> None:
    page.get_by_role("button", name="Save and continue").last.click()
    page.wait_for_load_state()


def test_council_fills_in_and_submits_an_expression_of_interest(portal: str, page: Page) -> None:
    source = (ROOT / "prospectus" / "whole-place-2011.yaml").read_text(encoding="utf-8")
    stages.launch(source, "whole-place-2011.yaml", now=datetime(2011, 10, 17, 9, tzinfo=UTC))
    with session_scope() as session:
        session.add(
            User(email="pat@essex.gov.uk", name="Pat Jones", role="applicant", council_code="ESS")
        )
    sign_in_by_link(page, portal, "pat@essex.gov.uk")

    page.goto(f"{portal}/applications")
    check_page(page, "applications")
    page.get_by_role("button", name="Start an expression of interest").click()
    page.wait_for_load_state()
    assert page.get_by_role("heading", level=1).inner_text() == "Expression of interest"
    check_page(page, "eoi-task-list")

    page.get_by_role("link", name="Your place").click()
    page.get_by_label("Lead council").select_option(label="Essex")
    page.get_by_label("Name of the place").fill("Essex")
    page.get_by_role("button", name="Add another row").click()
    page.wait_for_load_state()
    page.get_by_role("button", name="Add another row").click()
    page.wait_for_load_state()
    for row, (organisation, sector) in enumerate(
        [
            ("Essex Police", "Police"),
            ("NHS North Essex", "Health"),
            ("Jobcentre Plus", "Jobcentre Plus"),
        ]
    ):
        page.locator(f"#partners-{row}-organisation").fill(organisation)
        page.locator(f"#partners-{row}-sector").select_option(sector)
    check_page(page, "eoi-section-table")
    save_and_continue(page)

    page.get_by_label("What is your ambition for your place?").fill("Ambition " * 501)
    page.get_by_label("Housing").check()
    page.get_by_label("Estimated annual public spending in scope").fill("1,250,000")
    page.get_by_role("group", name=re.compile("Total Place")).get_by_label("No").check()
    save_and_continue(page)
    summary = page.locator(".govuk-error-summary")
    assert "must be 500 words or fewer" in summary.inner_text()
    check_page(page, "eoi-section-error")
    page.get_by_label("What is your ambition for your place?").fill("Joined up " * 60)
    save_and_continue(page)

    page.get_by_label("How will you lead and resource the work over the next year?").fill(
        "A programme board chaired by the leader of the council."
    )
    save_and_continue(page)

    page.get_by_label("Contact name").fill("Pat Jones")
    page.get_by_label("Contact e-mail address").fill("pat@essex.gov.uk")
    page.get_by_role("group", name=re.compile("chief executive")).get_by_label("Yes").check()
    page.get_by_label("Day").fill("3")
    page.get_by_label("Month").fill("11")
    page.get_by_label("Year").fill("2011")
    check_page(page, "eoi-section-contact")
    save_and_continue(page)

    assert (
        page.get_by_role("heading", level=1).inner_text() == "Check your answers before submitting"
    )
    check_page(page, "eoi-check-answers")
    page.get_by_label(re.compile("I confirm")).check()
    page.get_by_role("button", name="Submit").click()
    page.wait_for_load_state()

    assert "Expression of interest submitted" in page.locator(".govuk-panel").inner_text()
    assert "whole-place-2011/ESS" in page.locator(".govuk-panel").inner_text()
    assert "Your receipt is being prepared" in page.locator("main").inner_text()
    check_page(page, "eoi-submitted")
    stages.issue_receipts("whole-place-2011", now=DURING_EOI)  # the flow run's work
    page.reload()
    check_page(page, "eoi-submitted-receipt")
    with page.expect_download() as download:
        page.get_by_role("link", name="Download your receipt (PDF)").click()
    assert download.value.suggested_filename.endswith(".pdf")
