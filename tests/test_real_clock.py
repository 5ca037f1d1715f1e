"""Deadlines on the real clock, watched from outside: `cbflow serve` runs a round whose windows
close a couple of minutes apart, and nothing presses a deadline button. The EOI window closes and
the EOIs are sifted by the scheduled run, at the deadline and not a moment before; `cbflow serve`
is stopped over the bid deadline, a bid sent meanwhile is refused, and the missed deadline runs
by itself when it is started again, audited with how late it ran. No run fails."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from conftest import configure, edit, example_text
from round_walk import BID_ANSWERS, submit_eoi
from served import Served, wait_for
from sqlmodel import col, select

from cbflow import flowruns
from cbflow.db import session_scope
from cbflow.errors import DeadlinePassed
from cbflow.lifecycle import AppState, RoundState
from cbflow.models import Application, AuditEvent, Round
from cbflow.services import applications
from cbflow.settings import get_settings

pytestmark = pytest.mark.slow

LONDON = ZoneInfo("Europe/London")
SLUG = "real-clock"
FINAL = ("COMPLETED", "FAILED", "CRASHED", "CANCELLED")


def _minute_after(moment: datetime, seconds: int) -> datetime:
    """The first whole minute at least `seconds` after `moment`."""
    later = moment + timedelta(seconds=seconds)
    return later.replace(second=0, microsecond=0) + timedelta(minutes=1)


def _prospectus(eoi_close: datetime, bid_close: datetime) -> str:
    """The format example with its windows on today's clock; the later dates in days to come."""
    local = eoi_close.astimezone(LONDON)
    day = local.date()

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
            f"{{opens: {day + timedelta(days=1)}, closes: {day + timedelta(days=5)}}}",
        ),
        ("{by: 2011-12-21}", f"{{by: {day + timedelta(days=8)}}}"),
        (
            "{starts: 2012-04-01, ends: 2013-03-31}",
            f"{{starts: {day + timedelta(days=30)}, ends: {day + timedelta(days=400)}}}",
        ),
        ("due: 2012-10-31", f"due: {day + timedelta(days=200)}"),
    )


def _round_state() -> str:
    with session_scope() as session:
        return session.exec(select(Round.state).where(Round.slug == SLUG)).one()


def _round_audit(action: str | None = None) -> list[AuditEvent]:
    with session_scope() as session:
        round_id = session.exec(select(Round.id).where(Round.slug == SLUG)).one()
        query = select(AuditEvent).where(
            AuditEvent.entity == "round", AuditEvent.entity_id == round_id
        )
        if action is not None:
            query = query.where(AuditEvent.action == action)
        return list(session.exec(query.order_by(col(AuditEvent.id))))


def _state_of(reference: str) -> str:
    with session_scope() as session:
        return session.exec(
            select(Application.state).where(Application.reference == reference)
        ).one()


def test_deadlines_close_by_themselves_on_time_and_catch_up_after_the_runner_was_down(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    served = Served(tmp_path / "data", PREFECT_RUNNER_POLL_FREQUENCY="2")
    configure(monkeypatch, served.data_dir)  # this process reads the same database
    served.start()
    try:
        eoi_close = _minute_after(datetime.now(UTC), 45)
        bid_close = eoi_close + timedelta(minutes=2)
        path = tmp_path / f"{SLUG}.yaml"
        path.write_text(_prospectus(eoi_close, bid_close), encoding="utf-8")
        launched = served.cli("round", "launch", str(path))
        assert launched.returncode == 0, launched.stdout + launched.stderr

        # three councils send an EOI on the real clock; nobody touches the round after that
        references = {
            council: submit_eoi(
                SLUG, council, datetime.now(UTC), "Join up services around families."
            )
            for council in ("BIR", "BOL", "CAM")
        }
        assert _round_state() == RoundState.LAUNCHED

        wait_for(
            lambda: _round_state() == RoundState.EOI_CLOSED,
            (eoi_close - datetime.now(UTC)).total_seconds() + 60,
            "the EOI deadline's scheduled run",
        )
        closed = _round_audit()[-1]
        assert closed.to_state == RoundState.EOI_CLOSED
        assert eoi_close <= closed.at < eoi_close + timedelta(seconds=30), (
            "the EOI window was closed at its deadline, never before it"
        )
        assert all(_state_of(r) == AppState.SIFT_PASS for r in references.values())
        assert _round_audit("deadline_run_late") == [], "on time: nothing late to record"

        # staff confirm the shortlist from the portal: a run of the portal's deployment
        flowruns.start(
            get_settings().model_copy(update={"prefect_api_url": served.api}),
            "invite-to-bid",
            {"slug": SLUG, "chosen": [references["BIR"], references["BOL"]]},
            name=f"{SLUG} · invite to bid",
        )
        wait_for(lambda: _round_state() == RoundState.BIDS_INVITED, 60, "the invitations")
        with session_scope() as session:
            birmingham = applications.get_application(session, references["BIR"])
            applications.save_draft(
                session,
                application=birmingham,
                stage="bid",
                answers=BID_ANSWERS,
                actor="council:BIR",
                now=datetime.now(UTC),
            )
            applications.submit(
                session,
                application=birmingham,
                stage="bid",
                actor="council:BIR",
                now=datetime.now(UTC),
            )

        # cbflow serve is stopped over the bid deadline
        wait_for(
            lambda: datetime.now(UTC) >= bid_close - timedelta(seconds=20),
            (bid_close - datetime.now(UTC)).total_seconds(),
            "twenty seconds before the bid deadline",
            every=0.5,
        )
        assert served.stop() == 0
        wait_for(
            lambda: datetime.now(UTC) >= bid_close + timedelta(seconds=75),
            120,
            "the bid deadline to pass while nothing runs",
            every=0.5,
        )
        assert _round_state() == RoundState.BIDS_INVITED, "nothing ran while it was stopped"
        # a bid after the deadline is refused although the deadline's run has not happened
        with pytest.raises(DeadlinePassed, match="closed at"), session_scope() as session:
            applications.submit(
                session,
                application=applications.get_application(session, references["BOL"]),
                stage="bid",
                answers=BID_ANSWERS,
                actor="council:BOL",
                now=datetime.now(UTC),
            )

        restarted = datetime.now(UTC)
        served.start()
        wait_for(lambda: _round_state() == RoundState.BIDS_CLOSED, 120, "the missed bid deadline")
        assert _state_of(references["BIR"]) == AppState.BID_SUBMITTED
        assert _state_of(references["BOL"]) == AppState.UNSUCCESSFUL
        (late,) = _round_audit("deadline_run_late")
        assert late.at >= restarted
        assert re.match(r"close-bids ran (\d+ min )?\d+ s late: it was due at ", late.reason), (
            late.reason
        )

        def finished() -> dict[str, str]:
            states = {run["name"]: run["state_type"] for run in served.flow_runs()}
            deadline_runs = [
                states.get(f"{SLUG} · {n}") for n in ("EOI close and sift", "bids close")
            ]
            return states if all(s in FINAL for s in deadline_runs) else {}

        states = wait_for(finished, 60, "the deadline runs to finish")
        assert states[f"{SLUG} · EOI close and sift"] == "COMPLETED", states
        assert states[f"{SLUG} · bids close"] == "COMPLETED", states
        assert [name for name, state in states.items() if state in ("FAILED", "CRASHED")] == []
    finally:
        if served.process is not None:
            served.stop()
    runner_log = (served.log_dir / "worker.log").read_text(encoding="utf-8")
    assert not re.search(r"Finished in state (Failed|Crashed)", runner_log), runner_log
