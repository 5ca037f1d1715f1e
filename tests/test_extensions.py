"""More time: staff give one council, or everyone, a later deadline for a stage, and the deadline
run gives everyone more time by itself when the portal was degraded before the deadline. The
window logic honours an extension everywhere: submitting, the close runs, the pages. On SQLite
and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from conftest import edit
from fastapi.testclient import TestClient
from portal import add_user, post, sign_in
from round_walk import BID_ANSWERS as BID
from round_walk import (
    BID_CLOSE,
    BID_DAY,
    COUNCILS,
    EOI_CLOSE,
    EOI_DAY,
    INVITE_DAY,
    LAUNCH_AT,
    SLUG,
    SOURCE,
    submit_eoi,
)
from sqlmodel import col, select

from cbflow import stages
from cbflow.clock import FixedClock
from cbflow.db import session_scope
from cbflow.errors import CbflowError, DeadlinePassed, NotYet
from cbflow.lifecycle import AppState, RoundState
from cbflow.models import (
    Application,
    AuditEvent,
    AvailabilityMinute,
    Extension,
    OutboxMessage,
)
from cbflow.services import applications, availability, deadlines, rounds
from cbflow.settings import Settings
from cbflow.web import create_app

STAFF = "staff:programme-team"
EXTENDED = BID_CLOSE + timedelta(days=2)
DEGRADED_RULE = (
    "capacity:\n",
    "extend_if_degraded: {within_hours: 2, minutes_degraded: 15, extend_by: 24 hours}\ncapacity:\n",
)


def invited(source: str = SOURCE) -> dict[str, int]:
    """Launch, take five EOIs, close and invite the four earliest: council -> application id."""
    stages.launch(source, f"{SLUG}.yaml", now=LAUNCH_AT)
    references = {
        council: submit_eoi(SLUG, council, EOI_DAY + timedelta(minutes=n), "Join up services.")
        for n, council in enumerate(COUNCILS)
    }
    stages.close_eoi(SLUG, now=EOI_CLOSE)
    stages.invite_to_bid(SLUG, now=INVITE_DAY)
    with session_scope() as session:
        return {
            council: applications.get_application(session, reference).id or 0
            for council, reference in references.items()
        }


def submit_bid(application_id: int, now: datetime) -> None:
    with session_scope() as session:
        application = session.get(Application, application_id)
        assert application is not None
        applications.submit(
            session,
            application=application,
            stage="bid",
            answers=BID,
            actor="officer@council.gov.uk",
            now=now,
        )


def extend(application_id: int, closes: datetime, reason: str = "Their offices flooded.") -> None:
    with session_scope() as session:
        application = session.get(Application, application_id)
        assert application is not None
        deadlines.extend_application(
            session,
            application=application,
            stage="bid",
            closes=closes,
            reason=reason,
            actor=STAFF,
            now=BID_DAY,
        )


def state(application_id: int) -> str:
    with session_scope() as session:
        application = session.get(Application, application_id)
        assert application is not None
        return application.state


def round_state() -> str:
    with session_scope() as session:
        return rounds.get_round(session, SLUG).state


def test_an_individual_extension_admits_exactly_one_councils_late_submission(
    any_db_env: Settings,
) -> None:
    ids = invited()  # BIR, BOL, BRD and CAM invited to bid
    submit_bid(ids["BIR"], BID_DAY)
    extend(ids["CAM"], EXTENDED)

    stages.close_bids(SLUG, now=BID_CLOSE)

    assert round_state() == RoundState.BIDS_CLOSED
    assert state(ids["BOL"]) == AppState.UNSUCCESSFUL  # no bid, no extension
    assert state(ids["CAM"]) == AppState.INVITED  # still has time
    late = BID_CLOSE + timedelta(days=1)
    with pytest.raises(DeadlinePassed):
        submit_bid(ids["BRD"], late)
    submit_bid(ids["CAM"], late)
    assert state(ids["CAM"]) == AppState.BID_SUBMITTED

    outcome = stages.close_bids(SLUG, now=EXTENDED)  # the run at the end of the extension

    assert outcome.counts == {"bids": 2}
    assert state(ids["CAM"]) == AppState.BID_SUBMITTED
    assert state(ids["BRD"]) == AppState.UNSUCCESSFUL
    with session_scope() as session:
        (event,) = session.exec(
            select(AuditEvent).where(
                AuditEvent.entity_id == ids["CAM"], AuditEvent.action == "extend_bid"
            )
        )
        assert event.actor == STAFF
        assert "Their offices flooded." in event.reason
        assert "the end of 11 December 2011" in event.reason


def test_an_extension_that_ends_unused_closes_that_application_at_its_end(
    any_db_env: Settings,
) -> None:
    ids = invited()
    extend(ids["CAM"], EXTENDED)
    stages.close_bids(SLUG, now=BID_CLOSE)
    with pytest.raises(NotYet):  # a run must not act before its moment
        stages.close_bids(SLUG, now=BID_CLOSE - timedelta(seconds=1))

    stages.close_bids(SLUG, now=EXTENDED)

    assert state(ids["CAM"]) == AppState.UNSUCCESSFUL
    with session_scope() as session:
        application = session.get(Application, ids["CAM"])
        assert application is not None and application.decision_reason is not None
        assert "No bid was received by the deadline" in application.decision_reason
        assert "11 December 2011" in application.decision_reason  # its own deadline


def test_an_extension_is_refused_without_a_reason_or_for_less_time_or_once_submitted(
    cbflow_env: Settings,
) -> None:
    ids = invited()
    submit_bid(ids["BIR"], BID_DAY)
    with pytest.raises(CbflowError, match="reason"):
        extend(ids["CAM"], EXTENDED, reason="  ")
    with pytest.raises(CbflowError, match="after the one that applies now"):
        extend(ids["CAM"], BID_CLOSE - timedelta(hours=1))
    with pytest.raises(CbflowError, match="already submitted"):
        extend(ids["BIR"], EXTENDED)
    with session_scope() as session:
        assert session.exec(select(Extension)).all() == []


def test_everyone_extended_by_hand_may_submit_after_the_original_deadline(
    cbflow_env: Settings,
) -> None:
    ids = invited()
    with session_scope() as session:
        deadlines.extend_everyone(
            session,
            round_=rounds.get_round(session, SLUG),
            stage="bid",
            closes=EXTENDED,
            reason="The guidance was corrected late.",
            actor=STAFF,
            now=BID_DAY,
        )
    with pytest.raises(NotYet):
        stages.close_bids(SLUG, now=BID_CLOSE)
    submit_bid(ids["BRD"], BID_CLOSE + timedelta(hours=1))
    submit_bid(ids["BOL"], EXTENDED - timedelta(seconds=1))
    with pytest.raises(DeadlinePassed):
        submit_bid(ids["BIR"], EXTENDED)

    stages.close_bids(SLUG, now=EXTENDED)

    assert [state(ids[c]) for c in ("BIR", "BOL", "BRD", "CAM")] == [
        AppState.UNSUCCESSFUL,
        AppState.BID_SUBMITTED,
        AppState.BID_SUBMITTED,
        AppState.UNSUCCESSFUL,
    ]
    with session_scope() as session:
        round_ = rounds.get_round(session, SLUG)
        with pytest.raises(CbflowError, match="has passed"):  # too late to extend for everyone
            deadlines.extend_everyone(
                session,
                round_=round_,
                stage="bid",
                closes=EXTENDED + timedelta(days=1),
                reason="Again.",
                actor=STAFF,
                now=EXTENDED + timedelta(hours=1),
            )


def _record(start: datetime, minutes: int, requests: int, failed: int, process: str = "a") -> None:
    with session_scope() as session:
        for n in range(minutes):
            session.add(
                AvailabilityMinute(
                    minute=start + timedelta(minutes=n),
                    process=process,
                    requests=requests,
                    failed=failed,
                    slow=0,
                )
            )


def test_a_degraded_portal_before_the_deadline_extends_it_for_everyone_once(
    any_db_env: Settings,
) -> None:
    ids = invited(edit(SOURCE, DEGRADED_RULE))
    for council in ("BIR", "BRD", "CAM"):
        add_user(f"officer@{council.lower()}.gov.uk", "applicant", council=council)
    submit_bid(ids["BIR"], BID_DAY)
    closes = BID_CLOSE.astimezone(UTC)
    _record(closes - timedelta(hours=3), 180, requests=40, failed=0)  # up, working
    with session_scope() as session:  # 16 minutes in the last two hours: a fifth failed
        for row in session.exec(
            select(AvailabilityMinute).where(
                col(AvailabilityMinute.minute) >= closes - timedelta(minutes=30),
                col(AvailabilityMinute.minute) < closes - timedelta(minutes=14),
            )
        ):
            row.failed = 8

    outcome = stages.close_bids(SLUG, now=BID_CLOSE)

    assert outcome.timetable_changed
    assert round_state() == RoundState.BIDS_INVITED  # not closed
    assert state(ids["BOL"]) == AppState.INVITED
    submit_bid(ids["BOL"], BID_CLOSE + timedelta(hours=23))  # within the extension
    with session_scope() as session:
        (extension,) = session.exec(select(Extension))
        assert extension.kind == deadlines.DEGRADED and extension.application_id is None
        assert extension.closes_at == closes + timedelta(hours=24)
        assert extension.evidence["minutes_degraded"] == 16
        assert "16 minutes" in extension.reason
        told = {m.to for m in session.exec(select(OutboxMessage))}
        # the councils with bids still to submit, not the one that has
        assert told == {"officer@brd.gov.uk", "officer@cam.gov.uk"}
        bodies = [m.body for m in session.exec(select(OutboxMessage))]
        assert any("not working properly" in body for body in bodies)

    # at the new deadline: the same degraded minutes are within its hours only partly, and a
    # stage is extended automatically once at most
    stages.close_bids(SLUG, now=BID_CLOSE + timedelta(hours=24))

    assert round_state() == RoundState.BIDS_CLOSED
    assert state(ids["BOL"]) == AppState.BID_SUBMITTED
    assert state(ids["BRD"]) == AppState.UNSUCCESSFUL
    with session_scope() as session:
        assert len(session.exec(select(Extension)).all()) == 1


@pytest.mark.parametrize(
    ("failing_minutes", "recorded", "extended"),
    [(14, True, False), (15, True, True), (60, False, False)],
    ids=["below the threshold", "at the threshold", "nothing recorded"],
)
def test_the_threshold_and_a_portal_that_never_recorded_itself(
    cbflow_env: Settings, failing_minutes: int, recorded: bool, extended: bool
) -> None:
    invited(edit(SOURCE, DEGRADED_RULE))
    closes = BID_CLOSE.astimezone(UTC)
    if recorded:
        _record(closes - timedelta(hours=3), 180 - failing_minutes, requests=10, failed=0)
        _record(closes - timedelta(minutes=failing_minutes), failing_minutes, 10, 1, "b")

    stages.close_bids(SLUG, now=BID_CLOSE)

    assert (round_state() == RoundState.BIDS_INVITED) is extended


def test_minutes_with_no_portal_process_running_are_degraded(cbflow_env: Settings) -> None:
    closes = datetime(2011, 12, 10, 0, 0, tzinfo=UTC)
    _record(closes - timedelta(hours=3), 100, requests=5, failed=0)  # then nothing for 80 min
    _record(closes - timedelta(minutes=20), 20, requests=5, failed=0)
    with session_scope() as session:
        evidence = availability.measure(session, closes - timedelta(hours=2), closes)
    assert evidence.recorded
    assert evidence.minutes_degraded == 60
    assert all(minute.get("down") for minute in evidence.degraded)


def test_each_portal_process_counts_its_minutes_failures_and_slow_answers(
    cbflow_env: Settings,
) -> None:
    recorder = availability.Recorder("host:1", slow_seconds=5)
    minute = datetime(2026, 12, 1, 9, 30, tzinfo=UTC)
    recorder.note(minute + timedelta(seconds=1), 200, 0.1)
    recorder.note(minute + timedelta(seconds=2), 503, 10.0)  # failed (not also slow)
    recorder.note(minute + timedelta(seconds=3), 200, 6.0)  # slow
    recorder.alive(minute + timedelta(minutes=1))  # ran, answered nothing
    assert recorder.write()
    recorder.note(minute + timedelta(seconds=59), 404, 0.1)  # a person's mistake: not failed
    assert recorder.write()
    with session_scope() as session:
        rows = {
            row.minute: (row.requests, row.failed, row.slow)
            for row in session.exec(select(AvailabilityMinute))
        }
    assert rows == {minute: (4, 1, 1), minute + timedelta(minutes=1): (0, 0, 0)}


# -- through the portal's pages ----------------------------------------------------------------


def test_staff_give_one_council_more_time_and_only_that_council_reads_it(
    cbflow_env: Settings,
) -> None:
    ids = invited()
    add_user("staff@dclg.gov.uk", "staff")
    add_user("officer@cam.gov.uk", "applicant", council="CAM")
    add_user("officer@brd.gov.uk", "applicant", council="BRD")
    clock = FixedClock(BID_DAY)
    app = create_app(cbflow_env, clock=clock)
    page = f"/staff/rounds/{SLUG}/deadlines"
    with TestClient(app) as staff, TestClient(app) as cam, TestClient(app) as brd:
        sign_in(staff, "staff@dclg.gov.uk")
        fields = {"who": f"bid:{ids['CAM']}", "day": "12", "month": "12", "year": "2011"}

        refused = post(staff, page, data={**fields, "at": "17:00", "reason": " "})
        too_long = post(staff, page, data={**fields, "reason": "x" * 6000})
        bad_time = post(staff, page, data={**fields, "at": "25:00", "reason": "Flood."})
        given = post(
            staff, page, data={**fields, "at": "17:00", "reason": "Their offices flooded."}
        )

        assert refused.status_code == 400 and "Give the reason for the extension" in refused.text
        assert 400 <= too_long.status_code < 500
        assert bad_time.status_code == 400 and "hours and minutes" in bad_time.text
        assert given.status_code == 303
        listed = staff.get(page).text
        assert "17:00 on 12 December 2011" in listed and "Their offices flooded." in listed
        with session_scope() as session:
            (extension,) = session.exec(select(Extension))
            assert extension.application_id == ids["CAM"]

        clock.set(BID_CLOSE + timedelta(days=1))
        sign_in(cam, "officer@cam.gov.uk")
        sign_in(brd, "officer@brd.gov.uk")
        theirs = cam.get(f"/applications/{ids['CAM']}/bid").text
        others = brd.get(f"/applications/{ids['BRD']}/bid").text
        assert "Your council has been given more time" in theirs
        assert "17:00 on 12 December 2011" in theirs
        assert "The deadline has passed" not in theirs
        assert "The deadline has passed" in others
        assert "more time" not in others and "12 December 2011" not in others
