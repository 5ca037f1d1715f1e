"""Windows and deadlines: a window is open for opens <= now < closes, in the round's local time.

The clock is injected: every service takes `now`, so each case names its instant exactly.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from conftest import edit, example_text, london
from sqlmodel import select

from cbflow.db import session_scope
from cbflow.errors import DeadlinePassed, NotYet, OutsideWindow
from cbflow.lifecycle import AppState, RoundState
from cbflow.models import Application, AuditEvent, Round
from cbflow.prospectus import parse
from cbflow.services import applications, rounds, sift
from cbflow.services.audit import history
from cbflow.settings import Settings

SECOND = timedelta(seconds=1)
EXAMPLE_EOI = '  eoi:        {opens: 2011-10-17, closes: "2011-11-10T12:00"}'
EXAMPLE_BID = "  bid:        {opens: 2011-11-21, closes: 2011-12-09}"
EXAMPLE_EOI_CLOSE = london(2011, 11, 10, 12, 0)  # GMT in November: 12:00 UTC
EXAMPLE_BID_CLOSE = london(2011, 12, 10, 0, 0)  # a date alone: the end of 9 December


# -- helpers: real rows through the services ---------------------------------------------------


def prospectus_text(eoi: tuple[str, str] | None = None, bid: tuple[str, str] | None = None) -> str:
    """The example prospectus with its EOI and bid windows moved to (opens, closes)."""
    pairs = []
    if eoi:
        pairs.append((EXAMPLE_EOI, f'  eoi:        {{opens: "{eoi[0]}", closes: "{eoi[1]}"}}'))
    if bid:
        pairs.append((EXAMPLE_BID, f'  bid:        {{opens: "{bid[0]}", closes: "{bid[1]}"}}'))
    return edit(example_text(), *pairs)


def launch(source: str) -> str:
    with session_scope() as session:
        round_, _ = rounds.launch_round(
            session,
            source=source,
            path="deadlines.yaml",
            actor="staff:test",
            now=london(2011, 1, 1),
        )
        return round_.slug


def eoi_answers(council: str) -> dict[str, Any]:
    return {
        "lead_council": council,
        "partners": [
            {"organisation": "Primary care trust", "role": "Health"},
            {"organisation": "Police authority", "role": "Community safety"},
        ],
        "ambition": "Pool budgets around families with complex needs.",
    }


BID_ANSWERS = {
    "pooled_budget": [
        {"organisation": "Primary care trust", "year": "2012-13", "amount_gbp": "250000"}
    ],
    "support_requested_gbp": "1000000.00",
}


def start(slug: str, council: str = "BIR") -> str:
    with session_scope() as session:
        round_ = rounds.get_round(session, slug)
        application, _ = applications.start_application(
            session,
            round_=round_,
            council_code=council,
            actor=f"council:{council}",
            now=london(2011, 1, 1),
            answers=eoi_answers(council),
        )
        return application.reference


def submit(reference: str, stage: applications.Stage, now: datetime) -> None:
    with session_scope() as session:
        application = applications.get_application(session, reference)
        applications.submit(
            session, application=application, stage=stage, actor="council:test", now=now
        )


def invited(slug: str, eoi_at: datetime, eoi_close: datetime) -> str:
    """An application whose EOI was submitted at `eoi_at`, sifted and shortlisted."""
    reference = start(slug)
    submit(reference, "eoi", eoi_at)
    with session_scope() as session:
        round_ = rounds.get_round(session, slug)
        sift.close_eoi(session, round_=round_, actor="system:test", now=eoi_close)
        chosen = sift.propose_shortlist(session, round_=round_)
        sift.confirm_shortlist(
            session, round_=round_, chosen=chosen, actor="staff:test", now=eoi_close
        )
    with session_scope() as session:
        application = applications.get_application(session, reference)
        applications.save_draft(
            session,
            application=application,
            stage="bid",
            answers=BID_ANSWERS,
            actor="council:BIR",
            now=bid_open_of(slug),
        )
    return reference


def bid_open_of(slug: str) -> datetime:
    with session_scope() as session:
        prospectus = rounds.prospectus_of(rounds.get_round(session, slug))
    assert prospectus.timetable.bid is not None
    return prospectus.timetable.bid.opens_at(prospectus.zone)


def stored(reference: str) -> Application:
    with session_scope() as session:
        return applications.get_application(session, reference)


def submissions(reference: str, to_state: AppState) -> list[AuditEvent]:
    application = stored(reference)
    with session_scope() as session:
        return list(
            session.exec(
                select(AuditEvent).where(
                    AuditEvent.entity == "application",
                    AuditEvent.entity_id == application.id,
                    AuditEvent.to_state == to_state.value,
                )
            )
        )


def assert_eoi_accepted(reference: str, at: datetime) -> None:
    application = stored(reference)
    assert application.state == AppState.EOI_SUBMITTED
    assert application.eoi_submitted_at == at
    assert len(submissions(reference, AppState.EOI_SUBMITTED)) == 1


def audit_actions(reference: str) -> list[str]:
    application = stored(reference)
    with session_scope() as session:
        return [e.action for e in history(session, "application", application.id or 0)]


def assert_eoi_untouched(reference: str) -> None:
    application = stored(reference)
    assert application.state == AppState.EOI_DRAFT
    assert application.eoi_submitted_at is None
    assert audit_actions(reference) == ["start"]  # nothing since the draft was opened


def refused_eoi(reference: str, at: datetime, message: str) -> None:
    with pytest.raises(OutsideWindow, match=message):
        submit(reference, "eoi", at)
    assert_eoi_untouched(reference)


# -- the EOI window ----------------------------------------------------------------------------


def test_eoi_submit_one_second_before_close_is_accepted(cbflow_env: Settings) -> None:
    reference = start(launch(example_text()))
    at = EXAMPLE_EOI_CLOSE - SECOND

    submit(reference, "eoi", at)

    assert_eoi_accepted(reference, at)


def test_eoi_submit_one_second_after_close_is_refused(cbflow_env: Settings) -> None:
    reference = start(launch(example_text()))

    refused_eoi(
        reference, EXAMPLE_EOI_CLOSE + SECOND, r"closed at 12:00 on 10 November 2011 \(GMT\)"
    )


def test_eoi_submit_exactly_at_close_is_refused(cbflow_env: Settings) -> None:
    reference = start(launch(example_text()))

    refused_eoi(reference, EXAMPLE_EOI_CLOSE, "closed at 12:00 on 10 November 2011")


def test_eoi_submit_before_opening_is_refused(cbflow_env: Settings) -> None:
    reference = start(launch(example_text()))

    refused_eoi(reference, london(2011, 10, 16, 23, 59, 59), "opens at 00:00 on 17 October 2011")


def test_eoi_submit_at_opening_instant_is_accepted(cbflow_env: Settings) -> None:
    reference = start(launch(example_text()))
    at = london(2011, 10, 17, 0, 0)  # BST: 16 October 23:00 UTC

    submit(reference, "eoi", at)

    assert_eoi_accepted(reference, at)
    assert stored(reference).eoi_submitted_at == datetime(2011, 10, 16, 23, 0, tzinfo=UTC)


def test_eoi_save_draft_after_close_is_refused(cbflow_env: Settings) -> None:
    reference = start(launch(example_text()))

    with pytest.raises(DeadlinePassed), session_scope() as session:
        application = applications.get_application(session, reference)
        applications.save_draft(
            session,
            application=application,
            stage="eoi",
            answers={**eoi_answers("BIR"), "ambition": "Changed after the deadline."},
            actor="council:BIR",
            now=EXAMPLE_EOI_CLOSE + SECOND,
        )

    assert stored(reference).eoi_answers["ambition"] == eoi_answers("BIR")["ambition"]


def test_eoi_date_only_close_accepts_last_second_of_local_day(cbflow_env: Settings) -> None:
    reference = start(launch(prospectus_text(eoi=("2011-10-17", "2011-11-10"))))
    at = london(2011, 11, 10, 23, 59, 59)

    submit(reference, "eoi", at)

    assert_eoi_accepted(reference, at)


def test_eoi_date_only_close_refuses_next_local_midnight(cbflow_env: Settings) -> None:
    reference = start(launch(prospectus_text(eoi=("2011-10-17", "2011-11-10"))))

    refused_eoi(reference, london(2011, 11, 11, 0, 0, 0), "closed at the end of 10 November 2011")


# Across the clocks changing. BST (UTC+1) ended at 01:00 UTC on Sunday 30 October 2011 and began
# at 01:00 UTC on Sunday 25 March 2012. `close_utc` is the first instant the window is shut.
CLOCK_CHANGES = [
    # a date alone closes at the next local midnight: 31 Oct 00:00 GMT, a 25-hour Sunday
    pytest.param(
        "2011-10-01", "2011-10-30", datetime(2011, 10, 31, 0, 0, tzinfo=UTC), id="oct-date"
    ),
    # midday after the change: GMT, so noon UTC
    pytest.param(
        "2011-10-01", "2011-10-30T12:00", datetime(2011, 10, 30, 12, 0, tzinfo=UTC), id="oct-noon"
    ),
    # the day before the change closes at midnight BST, 23:00 UTC
    pytest.param(
        "2011-10-01", "2011-10-29", datetime(2011, 10, 29, 23, 0, tzinfo=UTC), id="oct-eve"
    ),
    # a date alone: 26 March 00:00 BST, a 23-hour Sunday
    pytest.param(
        "2012-03-01", "2012-03-25", datetime(2012, 3, 25, 23, 0, tzinfo=UTC), id="mar-date"
    ),
    # midday after the change: BST, so 11:00 UTC
    pytest.param(
        "2012-03-01", "2012-03-25T12:00", datetime(2012, 3, 25, 11, 0, tzinfo=UTC), id="mar-noon"
    ),
    # the day before the change closes at midnight GMT
    pytest.param("2012-03-01", "2012-03-24", datetime(2012, 3, 25, 0, 0, tzinfo=UTC), id="mar-eve"),
]


def _bid_after(closes: str) -> tuple[str, str]:
    """A bid window after an EOI window that closes at `closes`."""
    day = datetime.fromisoformat(closes[:10]) + timedelta(days=7)
    return day.date().isoformat(), (day + timedelta(days=30)).date().isoformat()


@pytest.mark.parametrize(("opens", "closes", "close_utc"), CLOCK_CHANGES)
def test_eoi_window_across_clock_change_closes_at_right_utc_instant(
    cbflow_env: Settings, opens: str, closes: str, close_utc: datetime
) -> None:
    source = prospectus_text(eoi=(opens, closes), bid=_bid_after(closes))
    prospectus = parse(source)
    slug = launch(source)
    on_time, late = start(slug, "BIR"), start(slug, "BOL")

    submit(on_time, "eoi", close_utc - SECOND)
    with pytest.raises(DeadlinePassed):
        submit(late, "eoi", close_utc + SECOND)

    assert prospectus.timetable.eoi.closes_at(prospectus.zone) == close_utc
    assert_eoi_accepted(on_time, close_utc - SECOND)
    assert_eoi_untouched(late)


# -- the bid window ----------------------------------------------------------------------------


def assert_bid_untouched(reference: str) -> None:
    application = stored(reference)
    assert application.state == AppState.BID_DRAFT
    assert application.bid_submitted_at is None
    assert application.support_requested_pence is None
    assert submissions(reference, AppState.BID_SUBMITTED) == []


def test_bid_submit_one_second_before_close_is_accepted(cbflow_env: Settings) -> None:
    slug = launch(example_text())
    reference = invited(slug, london(2011, 11, 1, 10, 0), EXAMPLE_EOI_CLOSE)
    at = EXAMPLE_BID_CLOSE - SECOND

    submit(reference, "bid", at)

    application = stored(reference)
    assert application.state == AppState.BID_SUBMITTED
    assert application.bid_submitted_at == at
    assert application.support_requested_pence == 100_000_000
    assert len(submissions(reference, AppState.BID_SUBMITTED)) == 1


@pytest.mark.parametrize(
    ("at", "message"),
    [
        pytest.param(EXAMPLE_BID_CLOSE, "closed at the end of 9 December 2011", id="at-close"),
        pytest.param(
            EXAMPLE_BID_CLOSE + SECOND, "closed at the end of 9 December 2011", id="after"
        ),
        pytest.param(
            london(2011, 11, 20, 23, 59, 59), "opens at 00:00 on 21 November", id="before"
        ),
    ],
)
def test_bid_submit_outside_window_is_refused(
    cbflow_env: Settings, at: datetime, message: str
) -> None:
    slug = launch(example_text())
    reference = invited(slug, london(2011, 11, 1, 10, 0), EXAMPLE_EOI_CLOSE)

    with pytest.raises(OutsideWindow, match=message):
        submit(reference, "bid", at)

    assert_bid_untouched(reference)


def test_bid_submit_from_invited_after_close_stays_invited(cbflow_env: Settings) -> None:
    slug = launch(example_text())
    reference = start(slug)
    submit(reference, "eoi", london(2011, 11, 1, 10, 0))
    with session_scope() as session:
        round_ = rounds.get_round(session, slug)
        sift.close_eoi(session, round_=round_, actor="system:test", now=EXAMPLE_EOI_CLOSE)
        sift.confirm_shortlist(
            session,
            round_=round_,
            chosen=sift.propose_shortlist(session, round_=round_),
            actor="staff:test",
            now=EXAMPLE_EOI_CLOSE,
        )

    with pytest.raises(DeadlinePassed), session_scope() as session:
        application = applications.get_application(session, reference)
        applications.submit(
            session,
            application=application,
            stage="bid",
            answers=BID_ANSWERS,
            actor="council:BIR",
            now=EXAMPLE_BID_CLOSE,
        )

    application = stored(reference)
    assert application.state == AppState.INVITED
    assert application.bid_submitted_at is None
    assert application.bid_answers == {}


@pytest.mark.parametrize(("opens", "closes", "close_utc"), CLOCK_CHANGES)
def test_bid_window_across_clock_change_closes_at_right_utc_instant(
    cbflow_env: Settings, opens: str, closes: str, close_utc: datetime
) -> None:
    eoi_opens = (datetime.fromisoformat(opens) - timedelta(days=60)).date().isoformat()
    eoi_closes = (datetime.fromisoformat(opens) - timedelta(days=20)).date().isoformat()
    source = prospectus_text(eoi=(eoi_opens, eoi_closes), bid=(opens, closes))
    prospectus = parse(source)
    eoi = prospectus.timetable.eoi
    slug = launch(source)
    eoi_at = eoi.opens_at(prospectus.zone) + timedelta(days=1)
    on_time = start(slug, "BIR")
    late = start(slug, "BOL")
    submit(on_time, "eoi", eoi_at)
    submit(late, "eoi", eoi_at)
    with session_scope() as session:
        round_ = rounds.get_round(session, slug)
        sift.close_eoi(
            session, round_=round_, actor="system:test", now=eoi.closes_at(prospectus.zone)
        )
        sift.confirm_shortlist(
            session,
            round_=round_,
            chosen=sift.propose_shortlist(session, round_=round_),
            actor="staff:test",
            now=eoi.closes_at(prospectus.zone),
        )
    for reference in (on_time, late):
        with session_scope() as session:
            applications.save_draft(
                session,
                application=applications.get_application(session, reference),
                stage="bid",
                answers=BID_ANSWERS,
                actor="council:test",
                now=close_utc - timedelta(hours=2),
            )

    submit(on_time, "bid", close_utc - SECOND)
    with pytest.raises(DeadlinePassed):
        submit(late, "bid", close_utc + SECOND)

    assert prospectus.timetable.bid is not None
    assert prospectus.timetable.bid.closes_at(prospectus.zone) == close_utc
    assert stored(on_time).state == AppState.BID_SUBMITTED
    assert stored(on_time).bid_submitted_at == close_utc - SECOND
    assert_bid_untouched(late)


# -- closing the windows -----------------------------------------------------------------------


def test_close_eoi_before_deadline_is_refused_and_sifts_nothing(cbflow_env: Settings) -> None:
    slug = launch(example_text())
    reference = start(slug)
    submit(reference, "eoi", london(2011, 11, 1, 10, 0))

    with (
        pytest.raises(
            NotYet,
            match="EOI deadline of .* had not yet passed: it is at 12:00:00 on 10 November 2011 "
            r"\(GMT\), and the time was 11:59:59",
        ),
        session_scope() as session,
    ):
        round_ = rounds.get_round(session, slug)
        sift.close_eoi(session, round_=round_, actor="system:test", now=EXAMPLE_EOI_CLOSE - SECOND)

    with session_scope() as session:
        assert rounds.get_round(session, slug).state == RoundState.LAUNCHED
    assert stored(reference).state == AppState.EOI_SUBMITTED
    assert stored(reference).sift_results == {}


def test_close_eoi_at_deadline_sifts_and_closes(cbflow_env: Settings) -> None:
    slug = launch(example_text())
    reference = start(slug)
    submit(reference, "eoi", london(2011, 11, 1, 10, 0))

    with session_scope() as session:
        round_ = rounds.get_round(session, slug)
        outcomes = sift.close_eoi(
            session, round_=round_, actor="system:test", now=EXAMPLE_EOI_CLOSE
        )

    assert outcomes == {"sift_pass": 1}
    with session_scope() as session:
        assert session.exec(select(Round.state).where(Round.slug == slug)).one() == "eoi_closed"
    assert stored(reference).state == AppState.SIFT_PASS


def test_close_bids_before_deadline_is_refused(cbflow_env: Settings) -> None:
    slug = launch(example_text())
    reference = invited(slug, london(2011, 11, 1, 10, 0), EXAMPLE_EOI_CLOSE)

    with (
        pytest.raises(
            NotYet,
            match=r"bid deadline of .* had not yet passed: it is at the end of 9 December 2011, "
            "and the time was 23:59:59 on 9 December 2011",
        ),
        session_scope() as session,
    ):
        round_ = rounds.get_round(session, slug)
        sift.close_bids(session, round_=round_, actor="system:test", now=EXAMPLE_BID_CLOSE - SECOND)

    with session_scope() as session:
        assert rounds.get_round(session, slug).state == RoundState.BIDS_INVITED
    assert stored(reference).state == AppState.BID_DRAFT


def test_close_bids_at_deadline_makes_unsubmitted_unsuccessful(cbflow_env: Settings) -> None:
    slug = launch(example_text())
    reference = invited(slug, london(2011, 11, 1, 10, 0), EXAMPLE_EOI_CLOSE)

    with session_scope() as session:
        round_ = rounds.get_round(session, slug)
        submitted = sift.close_bids(
            session, round_=round_, actor="system:test", now=EXAMPLE_BID_CLOSE
        )

    assert submitted == 0
    application = stored(reference)
    assert application.state == AppState.UNSUCCESSFUL
    assert application.decision_reason == (
        "No bid was received by the deadline, the end of 9 December 2011."
    )
