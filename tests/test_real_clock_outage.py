"""An outage before a real deadline, watched from outside: `cbflow serve` runs a round that
extends its EOI deadline by two minutes when the portal was degraded for a minute in the half
hour before it. Shortly before the deadline the portal's database cannot be written to (a lock
held on it from outside, as a stuck writer would): people signing in are answered "busy". Nothing
presses a button: the scheduled deadline run finds the failed minute in the portal's own record,
extends the window for everyone instead of closing it, tells the council still drafting, and
schedules the close at the new time; the council submits after the original deadline, and the
run at the new deadline closes and sifts both submissions."""

from __future__ import annotations

import fcntl
import re
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from conftest import configure, edit
from portal import add_user
from round_walk import eoi_answers, submit_eoi
from served import Served, wait_for
from sqlmodel import col, select
from test_real_clock import FINAL, SLUG, _minute_after, _prospectus, _round_state, _state_of
from test_real_clock_sign_off import _signed_in

from cbflow.db import session_scope
from cbflow.lifecycle import AppState, RoundState
from cbflow.models import Application, AvailabilityMinute, Extension, OutboxMessage
from cbflow.services import applications, rounds

pytestmark = pytest.mark.slow

RULE = (
    "capacity:\n",
    "extend_if_degraded: {within_hours: 0.5, minutes_degraded: 1, extend_by: 2 minutes}\n"
    "capacity:\n",
)


def _sign_in_asked(portal: str, email: str, answers: list[int]) -> None:
    """Ask for a sign-in link as a person would: the form, then its post."""
    with httpx.Client(base_url=portal, timeout=30) as client:
        page = client.get("/sign-in")
        token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
        assert token is not None
        answer = client.post("/sign-in", data={"email": email, "csrf_token": token.group(1)})
        answers.append(answer.status_code)


def test_a_portal_outage_before_the_deadline_extends_it_for_everyone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    served = Served(
        tmp_path / "data",
        PREFECT_RUNNER_POLL_FREQUENCY="2",
        CBFLOW_AVAILABILITY_EVERY_SECONDS="2",
    )
    configure(monkeypatch, served.data_dir)
    served.start()
    try:
        eoi_close = _minute_after(datetime.now(UTC), 80)
        path = tmp_path / f"{SLUG}.yaml"
        path.write_text(
            edit(_prospectus(eoi_close, eoi_close + timedelta(minutes=10)), RULE),
            encoding="utf-8",
        )
        launched = served.cli("round", "launch", str(path))
        assert launched.returncode == 0, launched.stdout + launched.stderr
        add_user("officer@bolton.gov.uk", "applicant", council="BOL")
        birmingham = submit_eoi(SLUG, "BIR", datetime.now(UTC), "Join up services.")
        with session_scope() as session:
            drafting, _ = applications.start_application(
                session,
                round_=rounds.get_round(session, SLUG),
                council_code="BOL",
                actor="officer@bolton.gov.uk",
                now=datetime.now(UTC),
            )
            bolton = drafting.reference

        # the outage: the database refuses every write for a quarter of a minute
        wait_for(lambda: datetime.now(UTC) >= eoi_close - timedelta(seconds=40), 120, "the outage")
        answers: list[int] = []
        with (served.data_dir / "cbflow.db-writer").open("a+b") as held:
            fcntl.flock(held, fcntl.LOCK_EX)
            askers = [
                threading.Thread(
                    target=_sign_in_asked, args=(served.portal, "officer@bolton.gov.uk", answers)
                )
                for _ in range(3)
            ]
            for asker in askers:
                asker.start()
            for asker in askers:
                asker.join(timeout=60)
            fcntl.flock(held, fcntl.LOCK_UN)
        assert answers == [503, 503, 503], "people were told the service was busy"
        assert datetime.now(UTC) < eoi_close

        extension = wait_for(
            lambda: _extension(),
            (eoi_close - datetime.now(UTC)).total_seconds() + 60,
            "the EOI deadline's scheduled run to extend the window",
        )
        assert extension.closes_at == eoi_close + timedelta(minutes=2)
        assert extension.granted_at >= eoi_close
        assert extension.evidence["minutes_degraded"] >= 1
        assert any(m.get("failed", 0) >= 3 for m in extension.evidence["minutes"])
        assert _round_state() == RoundState.LAUNCHED  # not closed
        with session_scope() as session:
            recorded = session.exec(
                select(AvailabilityMinute).where(col(AvailabilityMinute.failed) > 0)
            ).all()
            assert sum(row.failed for row in recorded) >= 3
            told = session.exec(
                select(OutboxMessage).where(
                    OutboxMessage.to == "officer@bolton.gov.uk",
                    col(OutboxMessage.subject).contains("More time"),
                )
            ).one()
            assert "not working properly" in told.body

        # after the original deadline: the council reads why, and submits in time
        officer = _signed_in(served.portal, "officer@bolton.gov.uk")
        page = officer.get(f"/applications/{_id(bolton)}/eoi").text
        assert "extended for everyone" in page and "not working properly" in page
        with session_scope() as session:
            application = applications.get_application(session, bolton)
            applications.submit(
                session,
                application=application,
                stage="eoi",
                answers=eoi_answers("BOL", "Join up services around families."),
                actor="officer@bolton.gov.uk",
                now=datetime.now(UTC),
            )

        wait_for(
            lambda: _round_state() == RoundState.EOI_CLOSED,
            (extension.closes_at - datetime.now(UTC)).total_seconds() + 60,
            "the close at the extended deadline",
        )
        assert _state_of(birmingham) == AppState.SIFT_PASS
        assert _state_of(bolton) == AppState.SIFT_PASS

        def closes() -> list[str] | None:
            states = sorted(
                run["state_type"]
                for run in served.flow_runs()
                if run["name"].startswith(f"{SLUG} · close-eoi") or "EOI close" in run["name"]
            )
            return states if all(state in FINAL for state in states) else None

        # the run at the deadline (which extended it) and the run it scheduled, both done
        assert wait_for(closes, 60, "the close runs to finish") == ["COMPLETED", "COMPLETED"]
    finally:
        if served.process is not None:
            served.stop()


def _extension() -> Extension | None:
    with session_scope() as session:
        found = session.exec(select(Extension)).first()
        if found is not None:
            session.expunge(found)
        return found


def _id(reference: str) -> int:
    with session_scope() as session:
        return session.exec(select(Application.id).where(Application.reference == reference)).one()  # type: ignore[return-value]
