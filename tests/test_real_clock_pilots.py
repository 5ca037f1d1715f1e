"""Issue 15's journey on the real clock, watched from outside and driven in a real browser:
`cbflow serve` runs a round whose windows close minutes apart, with the followers' digest
scheduled every 20 seconds and mail going to a real local SMTP server. The EOI and bid deadlines
and the decisions run by themselves at their times (staff's sift, scoring and moderation are
done through the services), and Birmingham is selected on today's clock. Then in Chromium: a
Leeds officer follows Birmingham and says Leeds intends to adopt; staff mark Birmingham's
milestone met on the implementation page; the next scheduled digest run mails Leeds that it was
met; Birmingham's officer publishes version 2 at that milestone; a Devon officer adopts version
2 through the rolling route and staff approve it, its milestone moved to its start; the board
page shows the follower, the intention and the adoption with its time, and the pack staff ask
for has them too. Every page visited is axe-checked (no serious or critical violation)."""

from __future__ import annotations

import re
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import test_browser as harness
from aiosmtpd.controller import Controller
from conftest import configure, edit, example_text, free_port
from playwright.sync_api import Browser, Page, expect
from portal import add_user
from round_walk import ASSESSORS, BID_ANSWERS, CRITERIA, SCORES, email_of, submit_eoi
from served import Served, wait_for
from sqlmodel import col, select
from test_real_clock import LONDON, _minute_after
from test_sign_in import Inbox

from cbflow import stages
from cbflow.db import session_scope
from cbflow.formatting import long_date
from cbflow.lifecycle import AppState, RoundState
from cbflow.models import Application, AuditEvent, BoardPack, PublishedModel, Round, User
from cbflow.services import applications, assessment, rounds

pytestmark = [pytest.mark.slow, pytest.mark.browser]

browser = harness.browser
check_page = harness.check_page
SLUG = "real-clock-pilots"
STAFF = "lead@staff.example"
LEEDS = "ann@leeds.example"
BIRMINGHAM = "pat@birmingham.example"
DEVON = "dee@devon.example"
CHANGES = "We agreed the operational plan with the police and health partners a day early."
DEVON_CHANGES = "Devon runs the family teams from three market towns, not from one city hub."


def _prospectus(eoi_close: datetime, bid_close: datetime, decide_at: datetime) -> str:
    """The format example with its windows minutes apart on today's clock, its decisions due
    by the run at `decide_at` (a decision's run comes twelve hours before its date), and the
    rolling adoption route open now; implementation starts in 30 days, its milestone due in
    200."""
    day = eoi_close.astimezone(LONDON).date()

    def at(moment: datetime) -> str:
        return f'"{moment.astimezone(LONDON):%Y-%m-%dT%H:%M}"'

    return edit(
        example_text(),
        ("id: whole-place-2011", f"id: {SLUG}"),
        (
            '{opens: 2011-10-17, closes: "2011-11-10T12:00"}',
            f"{{opens: {day - timedelta(days=1)}, closes: {at(eoi_close)}}}",
        ),
        (
            "{opens: 2011-11-21, closes: 2011-12-09}",
            f"{{opens: {at(eoi_close)}, closes: {at(bid_close)}}}",
        ),
        (
            "{opens: 2011-12-10, closes: 2011-12-16}",
            f"{{opens: {at(bid_close)}, closes: {at(decide_at)}}}",
        ),
        ("{by: 2011-12-21}", f"{{by: {at(decide_at + timedelta(hours=12))}}}"),
        (
            "{starts: 2012-04-01, ends: 2013-03-31}",
            f"{{starts: {day + timedelta(days=30)}, ends: {day + timedelta(days=400)}}}",
        ),
        ("due: 2012-10-31", f"due: {day + timedelta(days=200)}"),
        (
            "carry_over: [partners, pooled_budget]",
            "carry_over: [partners, pooled_budget]\n    route: open\n"
            f"    opens: {day - timedelta(days=1)}\n    closes: {day + timedelta(days=60)}",
        ),
    )


def _mail(inbox: Inbox, to: str, subject: str) -> list[str]:
    found = []
    for message in inbox.messages:
        if message["To"] == to and str(message["Subject"]).startswith(subject):
            body = message.get_payload(decode=True)
            assert isinstance(body, bytes)
            found.append(body.decode().replace("\r\n", "\n"))
    return found


def _round_state() -> str:
    with session_scope() as session:
        return session.exec(select(Round.state).where(Round.slug == SLUG)).one()


def _now() -> datetime:
    return datetime.now(UTC)


def _assess() -> None:
    """Staff's part between the bid deadline and the decisions: three assessors assigned, their
    scores, moderation where they differ, and the assessment finalised."""
    with session_scope() as session:
        session.add_all(
            User(email=email_of(name), name=name, role="assessor") for name in ASSESSORS[:3]
        )
    stages.assign_assessors(SLUG, now=_now())
    with session_scope() as session:
        round_ = rounds.get_round(session, SLUG)
        turn: dict[int, int] = {}
        for assignment in assessment.all_assignments(session, round_):
            application = session.get(Application, assignment.application_id)
            assessor = session.get(User, assignment.assessor_id)
            assert application is not None and application.id is not None
            assert assessor is not None
            which = turn[application.id] = turn.get(application.id, -1) + 1
            assessment.submit_scores(
                session,
                assignment=assignment,
                scores={
                    criterion: (scores[which], f"{assessor.name} read the evidence closely.")
                    for criterion, scores in zip(
                        CRITERIA, SCORES[application.council_code], strict=True
                    )
                },
                actor=assessor.email,
                now=_now(),
            )
    stages.open_moderation(SLUG, now=_now())
    with session_scope() as session:
        for task in assessment.moderation_tasks(session, rounds.get_round(session, SLUG)):
            assessment.moderate(
                session, task=task, score=3, reason="panel agreed", actor=STAFF, now=_now()
            )
    stages.finalise_assessment(SLUG, now=_now())


@contextmanager
def person(browser: Browser, portal: str, inbox: Inbox, email: str) -> Iterator[Page]:
    """A browser of their own, signed in by the link the SMTP server received."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.add_init_script(path=str(harness.AXE))
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    try:
        before = len(_mail(inbox, email, "Your link to sign in"))
        page.goto(f"{portal}/sign-in")
        check_page(page, "pilots-clock-sign-in")
        page.get_by_label("Sign in").fill(email)
        page.get_by_role("button", name="Email me a link").click()
        page.wait_for_load_state()
        links = wait_for(
            lambda: _mail(inbox, email, "Your link to sign in")[before:], 60, "a sign-in link"
        )
        link = re.search(r"http://\S+/sign-in/\S+", links[-1])
        assert link is not None
        page.goto(link.group(0))
        page.get_by_role("button", name="Sign in").click()
        page.wait_for_url(lambda url: "/sign-in" not in url)
        page.wait_for_load_state()
        yield page
    finally:
        context.close()
    assert errors == []


def test_a_place_selected_on_the_real_clock_is_followed_versioned_and_adopted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, browser: Browser
) -> None:
    began = time.monotonic()
    inbox = Inbox()
    port = free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    served = Served(
        tmp_path / "data",
        PREFECT_RUNNER_POLL_FREQUENCY="2",
        CBFLOW_DIGEST_SCHEDULE="every 20 seconds",
        CBFLOW_SMTP_HOST="127.0.0.1",
        CBFLOW_SMTP_PORT=str(port),
    )
    configure(monkeypatch, served.data_dir)  # this process reads and writes the same database
    served.start()
    portal = served.portal
    try:
        eoi_close = _minute_after(_now(), 20)
        bid_close = eoi_close + timedelta(minutes=1)
        decide_at = bid_close + timedelta(minutes=1)
        today = eoi_close.astimezone(LONDON).date()
        path = tmp_path / f"{SLUG}.yaml"
        path.write_text(_prospectus(eoi_close, bid_close, decide_at), encoding="utf-8")
        launched = served.cli("round", "launch", str(path))
        assert launched.returncode == 0, launched.stdout + launched.stderr

        references = {
            council: submit_eoi(SLUG, council, _now(), "Join up services around families.")
            for council in ("BIR", "BOL", "BRD")
        }
        wait_for(
            lambda: _round_state() == RoundState.EOI_CLOSED,
            (eoi_close - _now()).total_seconds() + 60,
            "the EOI deadline's scheduled run",
        )
        stages.invite_to_bid(SLUG, now=_now())
        for council, reference in references.items():
            with session_scope() as session:
                applications.submit(
                    session,
                    application=applications.get_application(session, reference),
                    stage="bid",
                    answers=BID_ANSWERS,
                    actor=f"council:{council}",
                    now=_now(),
                )
        wait_for(
            lambda: _round_state() == RoundState.BIDS_CLOSED,
            (bid_close - _now()).total_seconds() + 60,
            "the bid deadline's scheduled run",
        )
        _assess()
        assert _now() < decide_at, "staff's assessment was done before the decisions' run"
        wait_for(
            lambda: _round_state() == RoundState.DECIDED,
            (decide_at - _now()).total_seconds() + 90,
            "the decisions' scheduled run",
        )
        with session_scope() as session:
            birmingham = applications.get_application(session, references["BIR"])
            assert birmingham.state == AppState.SELECTED and birmingham.id is not None
            assert birmingham.decided_at is not None and birmingham.decided_at >= decide_at
            bir = birmingham.id
            decided = session.exec(
                select(AuditEvent).where(
                    AuditEvent.entity == "round", AuditEvent.to_state == RoundState.DECIDED.value
                )
            ).one()
            assert decided.at >= decide_at and decided.actor == "system:cbflow"
        stages.start_implementation(SLUG, now=_now())
        decided_after = time.monotonic() - began

        add_user(STAFF, "staff", name="Lee Lead")
        add_user(LEEDS, "applicant", council="LDS", name="Ann Leeds")
        add_user(BIRMINGHAM, "applicant", council="BIR", name="Pat Birmingham")
        add_user(DEVON, "applicant", council="DEV", name="Dee Devon")

        # Leeds follows Birmingham, and intends to adopt its model
        with person(browser, portal, inbox, LEEDS) as page:
            page.goto(f"{portal}/applications")
            page.get_by_role("link", name="Pilots to follow").click()
            page.wait_for_load_state()
            check_page(page, "pilots-clock-list")
            page.get_by_role("button", name="Follow Birmingham").click()
            page.wait_for_load_state()
            page.get_by_role("row", name="Birmingham").get_by_role("link").first.click()
            page.wait_for_load_state()
            assert "Leeds has followed Birmingham since" in page.inner_text("main")
            check_page(page, "pilots-clock-place")
            page.get_by_role("button", name="We intend to adopt this").click()
            page.wait_for_load_state()
            assert "Leeds intends to adopt this model" in page.inner_text("main")
            check_page(page, "pilots-clock-intends")

        # staff mark Birmingham's milestone met today, from the implementation page
        with person(browser, portal, inbox, STAFF) as page:
            page.goto(f"{portal}/staff/rounds/{SLUG}/implementation")
            check_page(page, "pilots-clock-implementation")
            page.get_by_label("Day Birmingham met “Operational plan agreed”").fill(
                today.isoformat()
            )
            card = page.locator(".govuk-summary-card", has_text="Birmingham")
            card.get_by_role("button", name="Mark met").click()
            page.wait_for_load_state()
            assert f"met on {long_date(today)}" in card.inner_text()
            check_page(page, "pilots-clock-milestone-met")

        # the next scheduled digest run mails Leeds that Birmingham met it, once
        (digest,) = wait_for(lambda: _mail(inbox, LEEDS, "What is new"), 90, "the digest")
        assert "Birmingham\n- Milestone met: Operational plan agreed" in digest
        assert f"{portal}/pilots/{bir}" in digest

        # Birmingham's officer publishes version 2 at that milestone
        with person(browser, portal, inbox, BIRMINGHAM) as page:
            page.goto(f"{portal}/applications/{bir}/returns")
            page.get_by_role("link", name="Publish a new version of your model").click()
            page.wait_for_load_state()
            check_page(page, "pilots-clock-version-form")
            page.get_by_label("Operational plan agreed").check()
            page.get_by_label("What changed since the last version").fill(CHANGES)
            page.get_by_role("button", name="Publish this version").click()
            expect(page.get_by_text("Version 2 of your model is published.")).to_be_visible()
            check_page(page, "pilots-clock-version-published")
        with session_scope() as session:
            second = session.exec(
                select(PublishedModel)
                .where(PublishedModel.application_id == bir)
                .order_by(col(PublishedModel.version).desc())
            ).first()
            assert second is not None and second.version == 2
            assert second.milestone_id == "operational-plan"

        # Devon adopts version 2 through the rolling route
        with person(browser, portal, inbox, DEVON) as page:
            page.goto(f"{portal}/models/{second.id}")
            check_page(page, "pilots-clock-model")
            page.get_by_role("button", name="Adopt through the rolling route").click()
            page.wait_for_url("**/adoptions/*")
            check_page(page, "pilots-clock-route-form")
            page.get_by_label("What you will change from the model").fill(DEVON_CHANGES)
            page.get_by_label("Your partners").fill("Devon and Cornwall Police; the districts.")
            page.get_by_label("Ready within three months").check()
            page.get_by_role("button", name="Submit for approval").click()
            page.wait_for_load_state()
            assert "Adoption waiting for approval" in page.inner_text("main")
            check_page(page, "pilots-clock-route-submitted")
            adoption_url = page.url

        # staff approve it; then the board's view and a pack produced on demand
        with person(browser, portal, inbox, STAFF) as page:
            page.goto(f"{portal}/staff/rounds/{SLUG}/adoptions")
            check_page(page, "pilots-clock-adoptions")
            page.get_by_role("button", name="Approve Devon's adoption").click()
            page.wait_for_load_state()
            assert "Implementing" in page.inner_text("main")
            check_page(page, "pilots-clock-approved")

            page.goto(f"{portal}/staff/board")
            check_page(page, "pilots-clock-board")
            section = page.locator("section", has_text="Whole-place community budgets")
            shown = section.inner_text()
            assert re.search(r"Followers\s+1\b", shown), shown
            assert re.search(r"Intending to adopt\s+1\b", shown), shown
            row = section.get_by_role("row", name=re.compile("Devon"))
            cells = row.inner_text().split("\t")
            assert cells[0] == "Devon" and "Birmingham" in cells[1], cells
            assert re.fullmatch(r"0\.0 days", cells[-1].strip()), cells
            packs_before = len(_packs())
            page.get_by_role("button", name="Produce a pack now").click()
            page.wait_for_load_state()
            wait_for(lambda: len(_packs()) > packs_before, 120, "the pack asked for")
            page.goto(f"{portal}/staff/board")
            demanded = _packs()[-1]
            assert demanded.created_by == STAFF
            link = page.get_by_role("link", name=f"{demanded.key} (PDF)")
            href = link.get_attribute("href")
            response = page.request.get(f"{portal}{href}")
            assert response.status == 200 and response.body().startswith(b"%PDF")
            pdf = tmp_path / "pack.pdf"
            pdf.write_bytes(response.body())

        # Devon's implementation starts today: its milestone is as far from today as
        # Birmingham's was from the round's start, 30 days from now
        with person(browser, portal, inbox, DEVON) as page:
            page.goto(adoption_url)
            due = long_date(today + timedelta(days=170))
            assert f"Operational plan agreed: due {due}" in page.inner_text("main")
            check_page(page, "pilots-clock-devon-approved")

        text = subprocess.run(
            ["pdftotext", "-layout", str(pdf), "-"], capture_output=True, text=True, check=True
        ).stdout
        assert "Devon" in text and "Birmingham" in text
        assert re.search(r"Followers\s+1\b", text) and re.search(r"Intending to adopt\s+1\b", text)
        subprocess.run(
            [
                "pdftoppm",
                "-png",
                "-r",
                "60",
                "-f",
                "1",
                "-l",
                "1",
                str(pdf),
                str(tmp_path / "pack"),
            ],
            check=True,
        )
        shot = harness.ARTIFACTS / "pilots-clock-pack.png"
        shot.write_bytes(next(tmp_path.glob("pack*.png")).read_bytes())
        print(
            f"\ndecided after {decided_after:.0f} s; whole journey {time.monotonic() - began:.0f} s"
        )
    finally:
        if served.process is not None:
            served.stop()
        controller.stop()


def _packs() -> list[BoardPack]:
    with session_scope() as session:
        return list(session.exec(select(BoardPack).order_by(col(BoardPack.id))))
