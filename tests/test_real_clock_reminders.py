"""A reminder on the real clock, watched from outside: `cbflow serve` runs a round whose EOI
deadline is at noon on the next working day and whose prospectus asks for a reminder one working
day before, at a reminder time (CBFLOW_REMINDER_TIME) a minute or so from now. Nothing presses a
button: the scheduled reminders run e-mails the officer of the council whose EOI is still a
draft, naming what is missing, at its moment and not before, and nobody at the council that has
submitted."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from conftest import configure, edit
from portal import add_user
from round_walk import submit_eoi
from served import Served, wait_for
from sqlmodel import col, select
from test_real_clock import FINAL, LONDON, SLUG, _minute_after, _prospectus

from cbflow.db import session_scope
from cbflow.models import OutboxMessage, Reminder
from cbflow.services import applications, rounds
from cbflow.workdays import is_working_day

pytestmark = pytest.mark.slow

REMINDERS = ("capacity:\n", "reminders: {before_deadline: [1]}\ncapacity:\n")


def _reminder_mail(address: str) -> list[OutboxMessage]:
    with session_scope() as session:
        return list(
            session.exec(
                select(OutboxMessage)
                .where(
                    OutboxMessage.to == address,
                    col(OutboxMessage.subject).startswith("Reminder"),
                )
                .order_by(col(OutboxMessage.id))
            )
        )


def test_a_scheduled_reminder_run_sends_the_reminder_at_its_moment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    today = datetime.now(LONDON).date()
    if not is_working_day(today):
        pytest.skip("a reminder goes on a working day: today is not one")
    deadline_day = today + timedelta(days=1)
    while not is_working_day(deadline_day):
        deadline_day += timedelta(days=1)
    # one working day before the deadline's date is today: the reminder goes at the reminder
    # time, set to a whole minute far enough ahead to start `cbflow serve` and launch the round
    moment = _minute_after(datetime.now(UTC), 240)
    at = moment.astimezone(LONDON)
    if at.date() != today:
        pytest.skip("the reminder time would fall tomorrow")
    served = Served(
        tmp_path / "data", PREFECT_RUNNER_POLL_FREQUENCY="2", CBFLOW_REMINDER_TIME=f"{at:%H:%M}"
    )
    configure(monkeypatch, served.data_dir)  # this process reads the same database
    served.start()
    try:
        assert (moment - datetime.now(UTC)).total_seconds() > 45, "cbflow serve started late"
        eoi_close = datetime(
            deadline_day.year, deadline_day.month, deadline_day.day, 12, 0, tzinfo=LONDON
        )
        source = _prospectus(eoi_close, eoi_close + timedelta(minutes=5))
        source = edit(
            source,
            REMINDERS,
            (
                f"{{opens: {deadline_day - timedelta(days=1)}, closes:",
                f"{{opens: {today - timedelta(days=1)}, closes:",
            ),
        )
        path = tmp_path / f"{SLUG}.yaml"
        path.write_text(source, encoding="utf-8")
        launched = served.cli("round", "launch", str(path))
        assert launched.returncode == 0, launched.stdout + launched.stderr
        assert datetime.now(UTC) < moment, "the round was launched too late for the test"

        add_user("pat@birmingham.gov.uk", "applicant", council="BIR", name="Pat Birmingham")
        add_user("bo@bolton.gov.uk", "applicant", council="BOL", name="Bo Bolton")
        with session_scope() as session:
            applications.start_application(
                session,
                round_=rounds.get_round(session, SLUG),
                council_code="BIR",
                actor="pat@birmingham.gov.uk",
                now=datetime.now(UTC),
                answers={"lead_council": "BIR"},
            )
        submit_eoi(SLUG, "BOL", datetime.now(UTC), "Join up services around families.")

        (mail,) = wait_for(
            lambda: _reminder_mail("pat@birmingham.gov.uk"),
            (moment - datetime.now(UTC)).total_seconds() + 90,
            "the scheduled reminder",
        )
        assert "- section not complete: Your place" in mail.body
        assert "one working day from now" in mail.body
        assert mail.created_at >= moment, "a reminder never goes before its moment"
        with session_scope() as session:
            (row,) = session.exec(select(Reminder))
            assert row.recipient == "pat@birmingham.gov.uk" and row.on_date == today

        def finished() -> str | None:
            # the run that ran is named by its flow (the ones still scheduled, for the days
            # before the assessment closes, keep the names they were scheduled with)
            states = [
                r["state_type"] for r in served.flow_runs() if r["name"] == f"{SLUG} · reminders"
            ]
            return states[0] if len(states) == 1 and states[0] in FINAL else None

        assert wait_for(finished, 60, "the reminders run to finish") == "COMPLETED"
        assert _reminder_mail("bo@bolton.gov.uk") == []  # Bolton had submitted
    finally:
        if served.process is not None:
            served.stop()
