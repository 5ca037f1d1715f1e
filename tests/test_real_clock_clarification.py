"""A clarification request on the real clock, watched from outside: `cbflow serve` runs a round
in which Birmingham's bid is in; staff ask for clarification with a date to answer by a minute
or so away, and the portal's way of scheduling its runs asks the served Prefect server for them.
Nobody answers, and nothing presses a button: the scheduled runs remind the council once, before
the date, and lapse the request at it, mailing the council each time."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from conftest import configure
from portal import add_user
from round_walk import BID_ANSWERS, submit_eoi
from served import Served, wait_for
from sqlmodel import col, select
from test_real_clock import SLUG, _minute_after, _prospectus, _round_state, _state_of
from test_real_clock_sign_off import _signed_in

from cbflow import stages
from cbflow.db import session_scope
from cbflow.lifecycle import AppState, RoundState
from cbflow.models import AuditEvent, Clarification, OutboxMessage, User
from cbflow.services import applications, clarifications, rounds
from cbflow.settings import get_settings
from cbflow.web.clarifying import schedule

pytestmark = pytest.mark.slow

OFFICER = "bids@birmingham.gov.uk"


def _clarification(clarification_id: int) -> Clarification:
    with session_scope() as session:
        found = session.get(Clarification, clarification_id)
        assert found is not None
        return found


def _mail() -> list[str]:
    with session_scope() as session:
        return list(
            session.exec(
                select(OutboxMessage.subject)
                .where(OutboxMessage.to == OFFICER)
                .order_by(col(OutboxMessage.id))
            )
        )


def test_an_unanswered_request_is_reminded_once_then_lapses_by_its_scheduled_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    served = Served(tmp_path / "data", PREFECT_RUNNER_POLL_FREQUENCY="2")
    configure(monkeypatch, served.data_dir)
    served.start()
    try:
        eoi_close = _minute_after(datetime.now(UTC), 30)
        path = tmp_path / f"{SLUG}.yaml"
        path.write_text(_prospectus(eoi_close, eoi_close + timedelta(days=1)), encoding="utf-8")
        launched = served.cli("round", "launch", str(path))
        assert launched.returncode == 0, launched.stdout + launched.stderr
        add_user(OFFICER, "applicant", council="BIR")
        staff = add_user("lead@staff.gov.uk", "staff")
        reference = submit_eoi(SLUG, "BIR", datetime.now(UTC), "Join up services around families.")
        wait_for(
            lambda: _round_state() == RoundState.EOI_CLOSED,
            (eoi_close - datetime.now(UTC)).total_seconds() + 60,
            "the EOI deadline's scheduled run",
        )
        assert _state_of(reference) == AppState.SIFT_PASS
        stages.invite_to_bid(SLUG, now=datetime.now(UTC))
        with session_scope() as session:
            application = applications.get_application(session, reference)
            applications.submit(
                session,
                application=application,
                stage="bid",
                answers=BID_ANSWERS,
                actor=OFFICER,
                now=datetime.now(UTC),
            )
        assert _state_of(reference) == AppState.BID_SUBMITTED

        asked_at = datetime.now(UTC)
        with session_scope() as session:
            application = applications.get_application(session, reference)
            asker = session.get(User, staff.id)
            assert asker is not None
            request = clarifications.ask(
                session,
                application=application,
                asker=asker,
                question_ids=["support_requested_gbp"],
                question="Please confirm the support you request.",
                answer_by=asked_at + timedelta(seconds=80),
                now=asked_at,
            )
            assert request.id is not None
            request_id = request.id
            application_id = application.id
        settings = get_settings().model_copy(update={"prefect_api_url": served.api})
        assert schedule(settings, _clarification(request_id), SLUG) is None
        # scheduling again (a retried post) makes no second pair of runs
        assert schedule(settings, _clarification(request_id), SLUG) is None
        reminder = clarifications.remind_at(_clarification(request_id))
        assert reminder == asked_at + timedelta(seconds=40)

        # the council sees the request on its page, served
        council = _signed_in(served.portal, OFFICER)
        page = council.get(f"/applications/{application_id}/clarifications/{request_id}")
        assert page.status_code == 200 and "Please confirm the support you request." in page.text

        reminded = wait_for(
            lambda: _clarification(request_id).reminded_at,
            (reminder - datetime.now(UTC)).total_seconds() + 45,
            "the reminder's scheduled run",
        )
        assert reminder <= reminded < reminder + timedelta(seconds=30)
        assert _clarification(request_id).state == "open"  # not before its date
        lapsed = wait_for(
            lambda: _clarification(request_id).lapsed_at,
            (asked_at + timedelta(seconds=80) - datetime.now(UTC)).total_seconds() + 45,
            "the lapse's scheduled run",
        )
        request = _clarification(request_id)
        assert request.state == "lapsed"
        assert request.answer_by <= lapsed < request.answer_by + timedelta(seconds=30)
        assert request.reminded_at == reminded  # reminded once, not again at the lapse
        subjects = [s.split(":")[0] for s in _mail()]
        assert subjects.count("Reminder") == 1
        assert subjects.count("Clarification request lapsed") == 1
        with session_scope() as session:
            events = session.exec(
                select(AuditEvent.action).where(
                    AuditEvent.entity == "application", AuditEvent.entity_id == application_id
                )
            ).all()
            assert events.count("clarification_reminded") == 1
            assert events.count("clarification_lapsed") == 1
            assert rounds.get_round(session, SLUG).state != RoundState.LAUNCHED
        after = council.get(f"/applications/{application_id}/clarifications/{request_id}")
        assert "Lapsed: not answered in time" in after.text
        assert 'name="support_requested_gbp"' not in after.text
    finally:
        if served.process is not None:
            served.stop()
