"""A council's pages in a real browser, beyond the forms themselves: answers saved in the
background as they are typed, and the warning before a session times out. Each page is
axe-checked and photographed, as in test_browser."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
import test_browser as harness
import test_returns_portal as returns_tests
from conftest import ROOT
from playwright.sync_api import Page, expect
from portal import serving
from sqlmodel import col, select

from cbflow import stages
from cbflow.clock import FixedClock
from cbflow.db import session_scope
from cbflow.models import Application, OutboxMessage, User
from cbflow.services import applications
from cbflow.settings import Settings

pytestmark = pytest.mark.browser

# the browser, the page (with its console and axe checks) and the portal on a fixed clock
browser = harness.browser
page = harness.page
portal = harness.portal
check_page = harness.check_page
round_refs = returns_tests.round_refs  # a round driven by its stage events to implementation

LAUNCHED = datetime(2011, 10, 17, 9, tzinfo=UTC)
DURING_EOI = datetime(2011, 11, 1, 10, 0, tzinfo=UTC)
IDLE_MINUTES = 0.15  # nine seconds: the warning shows after four and a half
AMBITION = "What is your ambition for your place?"


class RunningClock:
    """Time that passes as it does for the browser, from a moment in the EOI window."""

    def __init__(self, start: datetime) -> None:
        self.start = start
        self.began = time.monotonic()

    def __call__(self) -> datetime:
        from datetime import timedelta

        return self.start + timedelta(seconds=time.monotonic() - self.began)


serve = serving


@pytest.fixture
def quick_timeout_portal(cbflow_env: Settings) -> Iterator[str]:
    """The portal with a clock that runs and sessions that time out after nine idle seconds."""
    settings = cbflow_env.model_copy(update={"session_idle_minutes": IDLE_MINUTES})
    with serve(settings, RunningClock(DURING_EOI)) as url:
        yield url


def add_applicant(
    email: str = "pat@essex.gov.uk", council: str = "ESS", name: str = "Pat Jones"
) -> None:
    with session_scope() as session:
        session.add(User(email=email, name=name, role="applicant", council_code=council))


def sign_in(page: Page, portal: str, email: str = "pat@essex.gov.uk") -> None:
    """Ask for a link and follow the newest one the outbox holds for the address."""
    page.goto(f"{portal}/sign-in")
    page.get_by_label("Sign in").fill(email)
    page.get_by_role("button", name="Email me a link").click()
    page.wait_for_load_state()
    with session_scope() as session:
        body = session.exec(
            select(OutboxMessage.body)
            .where(OutboxMessage.to == email)
            .order_by(col(OutboxMessage.id).desc())
        ).first()
    assert body is not None
    link = re.search(r"http://\S+/sign-in/\S+", body)
    assert link is not None
    page.goto(link.group(0))
    page.get_by_role("button", name="Sign in").click()
    # wait for the page signing in leads to: going elsewhere before it has loaded can leave the
    # browser with the cookie of a request it gave up, and a CSRF token that no longer matches
    page.wait_for_url(lambda url: "/sign-in" not in url)
    page.wait_for_load_state()


def stored_ambition() -> str | None:
    with session_scope() as session:
        answers = session.exec(select(Application)).one().eoi_answers
    return answers.get("ambition")


def test_typed_answers_are_saved_in_the_background(portal: str, page: Page) -> None:
    source = (ROOT / "tests" / "data" / "format-example.yaml").read_text(encoding="utf-8")
    stages.launch(source, "round.yaml", now=LAUNCHED)
    add_applicant()
    sign_in(page, portal)
    page.goto(f"{portal}/applications")
    page.get_by_role("button", name="Start an expression of interest").click()
    page.wait_for_url("**/eoi")
    page.get_by_role("link", name="Your place").click()
    page.wait_for_load_state()
    status = page.get_by_role("status")

    page.get_by_label(AMBITION).fill("Typed, and never saved with the button.")

    expect(status).to_have_text("Saved at 10:00", timeout=10_000)
    assert stored_ambition() == "Typed, and never saved with the button."
    check_page(page, "eoi-section-autosaved")
    page.reload()
    assert page.get_by_label(AMBITION).input_value() == "Typed, and never saved with the button."

    # leaving the page at once, before the pause, saves too
    page.get_by_label(AMBITION).fill("Changed just before leaving.")
    page.get_by_role("link", name="Back to the task list").last.click()
    page.wait_for_load_state()
    deadline = time.monotonic() + 10
    while stored_ambition() != "Changed just before leaving." and time.monotonic() < deadline:
        time.sleep(0.1)
    assert stored_ambition() == "Changed just before leaving."


def test_time_out_warning_offers_to_stay_signed_in_then_signs_out(
    quick_timeout_portal: str,
    page: Page,
) -> None:
    portal_url = quick_timeout_portal
    add_applicant()
    sign_in(page, portal_url)
    page.goto(f"{portal_url}/applications")
    dialog = page.get_by_role("alertdialog", name="You’re about to be signed out")

    expect(dialog).to_be_visible(timeout=15_000)
    assert "we will sign you out in" in dialog.inner_text()
    assert page.evaluate("document.activeElement.textContent") == "Stay signed in"
    check_page(page, "session-timeout-warning")
    dialog.get_by_role("button", name="Stay signed in").click()
    expect(dialog).to_be_hidden()

    # the keep-alive counted: the session outlives the first deadline, then warns again
    time.sleep(5)
    assert page.url == f"{portal_url}/applications"
    expect(dialog).to_be_visible(timeout=15_000)
    expect(page.get_by_role("heading", level=1)).to_have_text("Sign in", timeout=20_000)
    banner = page.locator(".govuk-notification-banner")
    assert "You were signed out because you had not done anything for 9 seconds" in (
        banner.inner_text()
    )
    check_page(page, "signed-out-after-time-out")

    sign_in(page, portal_url)  # back to the page the person was on
    assert page.url == f"{portal_url}/applications"


def test_council_invites_a_colleague(portal: str, page: Page) -> None:
    add_applicant()
    sign_in(page, portal)
    page.goto(f"{portal}/applications")
    page.get_by_role("link", name="Your council’s team").click()
    page.wait_for_load_state()
    check_page(page, "team")

    page.get_by_label("Full name").fill("Sam Smith")
    page.get_by_label("Email address").fill("sam@essex.gov.uk")
    page.get_by_role("button", name="Send invitation").click()
    page.wait_for_load_state()

    assert (
        "We have emailed an invitation to sam@essex.gov.uk"
        in page.locator(".govuk-notification-banner").inner_text()
    )
    assert page.get_by_role("cell", name="Sam Smith").is_visible()
    check_page(page, "team-invited")
    page.get_by_label("Full name").fill("Pat again")
    page.get_by_label("Email address").fill("PAT@essex.gov.uk")
    page.get_by_role("button", name="Send invitation").click()
    page.wait_for_load_state()
    summary = page.locator(".govuk-error-summary")
    assert "already has an account" in summary.inner_text()
    check_page(page, "team-error")


def test_council_makes_an_implementation_return(
    cbflow_env: Settings, round_refs: dict[str, str], page: Page
) -> None:
    add_applicant("bea@birmingham.gov.uk", "BIR", "Bea Brown")
    with serve(cbflow_env, FixedClock(returns_tests.RETURN_DAY)) as url:
        sign_in(page, url, "bea@birmingham.gov.uk")
        page.goto(f"{url}/applications")
        page.get_by_role("link", name="Whole-place community budgets").click()
        page.wait_for_load_state()
        assert page.get_by_role("heading", level=1).inner_text() == "Implementation returns"
        check_page(page, "returns")
        page.get_by_role("link", name="Make return for period 1").click()
        page.wait_for_load_state()
        check_page(page, "return-form")
        page.get_by_label("Families attached this period").fill("40")
        page.get_by_role("button", name="Continue").last.click()
        page.wait_for_load_state()
        assert "this question must be answered" in page.locator(".govuk-error-summary").inner_text()
        check_page(page, "return-form-error")
        page.get_by_label("Families turned around this period").fill("5")
        page.get_by_role("button", name="Continue").last.click()
        page.wait_for_load_state()
        assert "£132,000.00" in page.locator("main").inner_text()
        check_page(page, "return-check")
        page.get_by_role("button", name="Submit return").click()
        page.wait_for_load_state()
        assert "Return submitted" in page.locator(".govuk-panel").inner_text()
        check_page(page, "return-submitted")


@pytest.fixture
def page_expecting_conflicts(browser: Any) -> Iterator[Page]:
    """A page as test_browser's, except that an autosave refused because a colleague changed
    the same answer (409) is expected rather than a failure."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.add_init_script(path=str(harness.AXE))
    tab = context.new_page()
    problems: list[str] = []

    def on_response(response: Any) -> None:
        expected = response.status == 409 and response.url.endswith("/autosave")
        failed = response.request.resource_type != "document" and response.status >= 400
        if failed and not expected:
            problems.append(f"{response.status} for {response.url}")

    def on_console(message: Any) -> None:
        if message.type == "error" and not message.text.startswith("Failed to load resource"):
            problems.append(message.text)

    tab.on("console", on_console)
    tab.on("pageerror", lambda error: problems.append(str(error)))
    tab.on("response", on_response)
    yield tab
    context.close()
    assert problems == [], "the browser reported errors (a CSP violation, a failing script)"


def test_a_colleagues_change_stops_the_autosave_and_both_answers_are_shown(
    portal: str, page_expecting_conflicts: Page
) -> None:
    page = page_expecting_conflicts
    source = (ROOT / "tests" / "data" / "format-example.yaml").read_text(encoding="utf-8")
    stages.launch(source, "round.yaml", now=LAUNCHED)
    add_applicant()
    add_applicant("sam@essex.gov.uk", name="Sam Lee")
    sign_in(page, portal)
    page.goto(f"{portal}/applications")
    page.get_by_role("button", name="Start an expression of interest").click()
    page.wait_for_url("**/eoi")
    page.get_by_role("link", name="Your place").click()
    page.wait_for_load_state()
    status = page.get_by_role("status")
    version = page.locator('input[name="_version"]')

    # each autosave gives the page the draft's new version, which the next one carries
    page.get_by_label(AMBITION).fill("Pat's first thought.")
    expect(status).to_have_text("Saved at 10:00", timeout=10_000)
    expect(version).to_have_value("1")
    page.get_by_label(AMBITION).fill("Pat's second thought.")
    expect(version).to_have_value("2", timeout=10_000)

    # Sam saves the same answer from a page of their own
    with session_scope() as session:
        application = session.exec(select(Application)).one()
        applications.save_draft(
            session,
            application=application,
            stage="eoi",
            answers={**application.eoi_answers, "ambition": "Sam's ambition."},
            actor="sam@essex.gov.uk",
            now=DURING_EOI,
        )
    page.get_by_label(AMBITION).fill("Pat's third thought.")

    expect(status).to_have_text(
        re.compile(r"^Not saved: changed by Sam Lee at 10:00"), timeout=10_000
    )
    assert stored_ambition() == "Sam's ambition."

    page.locator("#save").click()  # the visible button
    page.wait_for_load_state()
    expect(page.get_by_role("heading", level=1)).to_have_text(
        "Sam Lee changed this answer while you were editing"
    )
    assert "Pat's third thought." in page.content() and "Sam's ambition." in page.content()
    check_page(page, "eoi-section-conflict")
    page.get_by_role("button", name="Save and continue").click()  # no choice yet
    page.wait_for_load_state()
    assert page.title().startswith("Error: ")
    check_page(page, "eoi-section-conflict-error")

    page.get_by_label("Keep my answer").check()
    page.get_by_role("button", name="Save and continue").click()
    page.wait_for_url("**/eoi/check")
    assert stored_ambition() == "Pat's third thought."
