"""Reminders before a deadline: working days in England, when each reminder goes, who is sent one
(councils with an unsubmitted draft and the certifier awaited; assessors with scores to submit),
what it says is missing, and that each goes once per person and date whatever runs again, and
never to anyone who has submitted. On SQLite and PostgreSQL for the rules that hold under
re-runs; through the staff pages for what staff read."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from conftest import edit, example_text, london
from fastapi.testclient import TestClient
from portal import add_user, sign_in
from sqlmodel import col, select
from test_sign_off import approve, certifier, send, started

from cbflow import stages
from cbflow.clock import FixedClock
from cbflow.db import session_scope
from cbflow.flowlist import CLOSE_EOI, SEND_REMINDERS
from cbflow.models import Application, AuditEvent, OutboxMessage, Reminder, User
from cbflow.services import deadlines, rounds
from cbflow.settings import Settings
from cbflow.web import create_app
from cbflow.workdays import (
    is_working_day,
    parse_time_of_day,
    reminder_moment,
    working_days_before,
)

ROUND = "whole-place-2011"
ZONE = ZoneInfo("Europe/London")
# the example's EOI deadline is 12:00 on Thursday 10 November 2011: the reminders 10, 3 and 1
# working days before go at 09:00 on 27 October, 7 November and 9 November
ONE_DAY_BEFORE = london(2011, 11, 9, 9, 0)
THREE_DAYS_BEFORE = london(2011, 11, 7, 9, 0)
TEN_DAYS_BEFORE = london(2011, 10, 27, 9, 0)
SIGN_OFF = ("capacity:\n", "sign_off: {role: Chief executive, stages: [eoi]}\ncapacity:\n")
NINE = time(9, 0)


# ---------------------------------------------------------------------------------------------
# working days


def test_weekends_and_england_s_bank_holidays_are_not_working_days() -> None:
    assert is_working_day(date(2026, 12, 24))  # a Thursday
    assert not is_working_day(date(2026, 12, 25))  # Christmas Day
    assert not is_working_day(date(2026, 12, 26))  # a Saturday
    assert not is_working_day(date(2026, 12, 28))  # Boxing Day, observed on the Monday
    assert not is_working_day(date(2026, 4, 3))  # Good Friday
    assert not is_working_day(date(2026, 4, 6))  # Easter Monday
    assert not is_working_day(date(2023, 5, 8))  # the coronation's bank holiday
    assert is_working_day(date(2026, 3, 17))  # St Patrick's Day is Northern Ireland's only
    assert is_working_day(date(2026, 8, 3))  # Scotland's summer holiday is not England's


def test_counting_back_skips_a_weekend_and_the_bank_holidays_after_it() -> None:
    # Tuesday 29 December 2026: Monday 28 (Boxing Day observed), the weekend, Friday 25
    # (Christmas Day) are passed over
    assert working_days_before(date(2026, 12, 29), 1) == date(2026, 12, 24)
    assert working_days_before(date(2026, 12, 29), 2) == date(2026, 12, 23)
    # Tuesday 7 April 2026, after Easter: Thursday 2 April
    assert working_days_before(date(2026, 4, 7), 1) == date(2026, 4, 2)
    # an ordinary Monday: the Friday before
    assert working_days_before(date(2026, 12, 7), 1) == date(2026, 12, 4)
    with pytest.raises(ValueError):
        working_days_before(date(2026, 12, 7), 0)


def test_a_reminder_goes_at_nine_on_the_working_day_counted_back_from_the_deadline_s_date() -> None:
    zone = ZONE
    # 23:59:59 on Wednesday 9 December 2026: one working day before is Tuesday at 09:00
    late_wednesday = datetime(2026, 12, 9, 23, 59, 59, tzinfo=zone)
    assert reminder_moment(late_wednesday, 1, zone, NINE) == datetime(2026, 12, 8, 9, tzinfo=zone)
    # a date alone closes at the next midnight: that is still Wednesday's deadline
    end_of_wednesday = datetime(2026, 12, 10, 0, 0, tzinfo=zone)
    assert reminder_moment(end_of_wednesday, 1, zone, NINE) == datetime(2026, 12, 8, 9, tzinfo=zone)
    # after Christmas and a weekend: Tuesday 29 December's deadline, 1 day before is the 24th
    after_christmas = datetime(2026, 12, 29, 12, 0, tzinfo=zone)
    assert reminder_moment(after_christmas, 1, zone, time(14, 30)) == datetime(
        2026, 12, 24, 14, 30, tzinfo=zone
    )
    assert parse_time_of_day(" 09:00 ") == NINE
    with pytest.raises(ValueError, match="time of day"):
        parse_time_of_day("nine o'clock")


# ---------------------------------------------------------------------------------------------
# who is reminded, once


def _officer(email: str, council: str, name: str) -> User:
    return add_user(email, "applicant", council=council, name=name)


def _outbox(address: str) -> list[OutboxMessage]:
    with session_scope() as session:
        return list(
            session.exec(
                select(OutboxMessage)
                .where(OutboxMessage.to == address, col(OutboxMessage.subject).contains("Remind"))
                .order_by(col(OutboxMessage.id))
            )
        )


def _reminders() -> list[Reminder]:
    with session_scope() as session:
        rows = list(session.exec(select(Reminder).order_by(col(Reminder.id))))
        for row in rows:
            session.expunge(row)
        return rows


def _history(application_id: int, action: str = "reminded") -> list[AuditEvent]:
    with session_scope() as session:
        return list(
            session.exec(
                select(AuditEvent)
                .where(
                    AuditEvent.entity == "application",
                    AuditEvent.entity_id == application_id,
                    AuditEvent.action == action,
                )
                .order_by(col(AuditEvent.id))
            )
        )


def _sign_off_round() -> dict[str, int]:
    """The example round asking for sign-off of EOIs, at 09:00 the day before its deadline:
    Essex's EOI is a draft with a section to finish, Devon's waits for its chief executive's
    sign-off, Bolton's is submitted (approved). Returns council -> application id."""
    stages.launch(edit(example_text(), SIGN_OFF), "round.yaml", now=london(2011, 10, 17, 9, 0))
    _officer("pat@essex.gov.uk", "ESS", "Pat Essex")
    _officer("sam@essex.gov.uk", "ESS", "Sam Essex")
    _officer("dee@devon.gov.uk", "DEV", "Dee Devon")
    _officer("bo@bolton.gov.uk", "BOL", "Bo Bolton")
    essex = started("ESS", complete=False)
    devon = started("DEV")
    send(devon, certifier("DEV", "ceo@devon.gov.uk").id)
    bolton = started("BOL")
    bolton_ceo = certifier("BOL", "ceo@bolton.gov.uk")
    send(bolton, bolton_ceo.id)
    approve(bolton, bolton_ceo)
    return {"ESS": essex, "DEV": devon, "BOL": bolton}


def test_reminders_go_once_per_person_and_date_and_never_to_a_council_that_submitted(
    any_db_env: Settings,
) -> None:
    ids = _sign_off_round()

    first = stages.send_reminders(ROUND, now=ONE_DAY_BEFORE)
    again = stages.send_reminders(ROUND, now=ONE_DAY_BEFORE + timedelta(seconds=5))
    later_that_day = stages.send_reminders(ROUND, now=ONE_DAY_BEFORE + timedelta(hours=6))

    reminded = sorted(r.recipient for r in _reminders())
    assert reminded == [
        "ceo@devon.gov.uk",  # the certifier it waits for
        "dee@devon.gov.uk",
        "pat@essex.gov.uk",
        "sam@essex.gov.uk",
    ]
    assert first.counts["e-mailed"] == 4
    assert "e-mailed" not in again.counts and "e-mailed" not in later_that_day.counts
    assert _outbox("bo@bolton.gov.uk") == [] and _outbox("ceo@bolton.gov.uk") == []
    assert _history(ids["BOL"]) == []
    for address in ("pat@essex.gov.uk", "sam@essex.gov.uk", "dee@devon.gov.uk"):
        assert len(_outbox(address)) == 1

    # what each says is missing
    essex = _outbox("pat@essex.gov.uk")[0]
    assert "The\ndeadline is 12:00 on 10 November 2011 (GMT), one working day from now" in (
        essex.body
    )
    assert "- section not complete: Your place" in essex.body
    assert "- sending it to the council's chief executive to sign off" in essex.body
    assert f"/applications/{ids['ESS']}/eoi" in essex.body
    devon = _outbox("dee@devon.gov.uk")[0]
    assert "- sign-off by Chris Chief, the council's chief executive" in devon.body
    ceo = _outbox("ceo@devon.gov.uk")[0]
    assert "is waiting for you to sign it off" in ceo.body
    assert f"/sign-off/{ids['DEV']}/eoi" in ceo.body

    # each in the application's history, once per person
    essex_history = _history(ids["ESS"])
    assert len(essex_history) == 2
    assert "Pat Essex (pat@essex.gov.uk), council officer, reminded" in essex_history[0].reason
    assert "still to do: section not complete: Your place" in essex_history[0].reason
    assert len(_history(ids["DEV"])) == 2

    # the next reminder date is another reminder; the day of the deadline has none
    stages.send_reminders(ROUND, now=london(2011, 11, 10, 9, 0))
    assert len(_reminders()) == 4
    # Devon's certifier approves; Essex's draft is still a draft
    approve(ids["DEV"], _user("ceo@devon.gov.uk"), now=london(2011, 11, 9, 10, 0))
    rows = _reminders()
    assert {r.on_date for r in rows} == {date(2011, 11, 9)}
    assert all(r.missing for r in rows)


def test_two_runs_at_once_send_each_reminder_once(any_db_env: Settings) -> None:
    """A run started again by hand while the scheduled one is still going: the second waits
    for the first, then finds every reminder recorded."""
    _sign_off_round()
    with ThreadPoolExecutor(2) as pool:
        outcomes = list(
            pool.map(lambda _: stages.send_reminders(ROUND, now=ONE_DAY_BEFORE), range(2))
        )
    assert len(_reminders()) == 4
    assert sorted(o.counts.get("e-mailed", 0) for o in outcomes) == [0, 4]
    for address in ("pat@essex.gov.uk", "sam@essex.gov.uk", "ceo@devon.gov.uk"):
        assert len(_outbox(address)) == 1


def test_a_run_that_comes_late_sends_the_latest_reminder_due_that_day_and_no_stale_one(
    cbflow_env: Settings,
) -> None:
    ids = _sign_off_round()
    # nobody ran the 10-day reminder; a run the next day sends nothing
    stages.send_reminders(ROUND, now=TEN_DAYS_BEFORE + timedelta(days=1))
    assert _reminders() == []
    # the runner came back at 15:00 on the day of the 3-day reminder: it goes, once
    stages.send_reminders(ROUND, now=THREE_DAYS_BEFORE + timedelta(hours=6))
    stages.send_reminders(ROUND, now=THREE_DAYS_BEFORE + timedelta(hours=7))
    assert {r.on_date for r in _reminders()} == {date(2011, 11, 7)}
    assert len(_outbox("pat@essex.gov.uk")) == 1
    # before 09:00 nothing is due yet
    stages.send_reminders(ROUND, now=ONE_DAY_BEFORE - timedelta(minutes=1))
    assert len(_outbox("pat@essex.gov.uk")) == 1
    stages.send_reminders(ROUND, now=ONE_DAY_BEFORE)
    assert len(_outbox("pat@essex.gov.uk")) == 2
    assert len(_history(ids["ESS"])) == 4


def test_every_council_of_a_partnership_is_reminded_of_the_members_still_to_confirm(
    cbflow_env: Settings,
) -> None:
    from test_partnerships import PARTNERSHIPS, add, confirm_member, start

    stages.launch(edit(example_text(), PARTNERSHIPS), "round.yaml", now=london(2011, 10, 17, 9))
    lead = _officer("lee@westminster.gov.uk", "WSM", "Lee Westminster")
    kensington = _officer("kim@rbkc.gov.uk", "KEC", "Kim Kensington")
    hammersmith = _officer("hal@lbhf.gov.uk", "HMF", "Hal Hammersmith")
    application_id = start(ROUND, "WSM")
    add(application_id, "KEC")
    add(application_id, "HMF")
    confirm_member(application_id, "KEC")

    stages.send_reminders(ROUND, now=ONE_DAY_BEFORE)
    for officer in (lead, kensington, hammersmith):
        (mail,) = _outbox(officer.email)
        assert "Hammersmith and Fulham has still to confirm its membership in the portal" in (
            mail.body
        )
        assert "- the partnership's place has no name" in mail.body
        assert f"/applications/{application_id}/eoi" in mail.body
    assert len(_history(application_id)) == 3


def _user(email: str) -> User:
    with session_scope() as session:
        user = session.exec(select(User).where(User.email == email)).one()
        session.expunge(user)
        return user


def test_a_council_given_more_time_is_reminded_against_its_own_deadline(
    cbflow_env: Settings,
) -> None:
    ids = _sign_off_round()
    extended_to = london(2011, 11, 15, 12, 0)  # Tuesday: one working day before is Monday
    with session_scope() as session:
        essex = session.get(Application, ids["ESS"])
        assert essex is not None
        deadlines.extend_application(
            session,
            application=essex,
            stage="eoi",
            closes=extended_to,
            reason="The council's offices flooded.",
            actor="staff:lead",
            now=london(2011, 11, 1, 9, 0),
        )
        round_ = rounds.get_round(session, ROUND)
        events = stages.round_events(session, round_)
    reminder_runs = [when for flow, when in events if flow is SEND_REMINDERS]
    assert london(2011, 11, 14, 9, 0) in reminder_runs  # the extension's own reminder
    assert ONE_DAY_BEFORE in reminder_runs and TEN_DAYS_BEFORE in reminder_runs
    assert reminder_runs == sorted(set(reminder_runs))
    assert [w for f, w in events if f is CLOSE_EOI] == [london(2011, 11, 10, 12, 0), extended_to]

    stages.send_reminders(ROUND, now=ONE_DAY_BEFORE)
    assert _outbox("pat@essex.gov.uk") == []  # its 1 day is not everyone's
    assert len(_outbox("dee@devon.gov.uk")) == 1
    stages.send_reminders(ROUND, now=london(2011, 11, 14, 9, 0))
    (mail,) = _outbox("pat@essex.gov.uk")
    assert "12:00 on 15 November 2011 (GMT), one working day from now" in mail.body


def test_the_reminder_time_is_a_setting(
    cbflow_env: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cbflow.settings import get_settings

    _sign_off_round()
    monkeypatch.setenv("CBFLOW_REMINDER_TIME", "13:45")
    get_settings.cache_clear()
    with session_scope() as session:
        events = stages.round_events(session, rounds.get_round(session, ROUND))
    assert london(2011, 11, 9, 13, 45) in [w for f, w in events if f is SEND_REMINDERS]
    stages.send_reminders(ROUND, now=london(2011, 11, 9, 13, 44))
    assert _reminders() == []
    stages.send_reminders(ROUND, now=london(2011, 11, 9, 13, 45))
    assert len(_reminders()) == 4


def test_assessors_with_scores_unsubmitted_are_reminded_of_what_they_have_not_scored(
    any_db_env: Settings,
) -> None:
    import round_walk

    ids = round_walk.to_assessment(assessors=4)
    birmingham = ids["BIR"]
    late = round_walk.assessors_of(birmingham)[0]
    round_walk.score_everything(skip=frozenset({(birmingham, late)}))
    # the assessment closes at the end of Friday 16 December 2011: 3 working days before is
    # Tuesday 13th
    stages.send_reminders(round_walk.SLUG, now=london(2011, 12, 13, 9, 0))
    stages.send_reminders(round_walk.SLUG, now=london(2011, 12, 13, 9, 30))
    rows = _reminders()
    assert [(r.recipient, r.stage, r.application_id) for r in rows] == [(late, "assessment", None)]
    (mail,) = _outbox(late)
    assert "closes at the end of 16 December 2011, three working days from now" in mail.body
    assert "(whole-place-2011/BIR)" in mail.body and "BOL" not in mail.body
    assert "/assess" in mail.body
    assert len(_history(birmingham)) == 1
    assert "assessor, reminded to submit scores" in _history(birmingham)[0].reason


# ---------------------------------------------------------------------------------------------
# what staff read


@pytest.fixture
def staff(cbflow_env: Settings) -> Iterator[TestClient]:
    settings = cbflow_env.model_copy(update={"prefect_api_url": ""})
    add_user("lead@staff.example", "staff", name="Programme lead")
    with TestClient(create_app(settings, clock=FixedClock(ONE_DAY_BEFORE))) as client:
        sign_in(client, "lead@staff.example")
        yield client


def test_the_round_overview_and_the_application_s_history_show_the_reminders(
    staff: TestClient,
) -> None:
    ids = _sign_off_round()
    overview = staff.get(f"/staff/rounds/{ROUND}")
    assert "No reminders have been sent yet." in overview.text
    stages.send_reminders(ROUND, now=ONE_DAY_BEFORE)
    overview = staff.get(f"/staff/rounds/{ROUND}")
    assert "Reminders sent" in overview.text
    assert "9 November 2011" in overview.text
    assert "Expression of interest deadline" in overview.text
    assert "ceo@devon.gov.uk" in overview.text
    history = staff.get(f"/staff/rounds/{ROUND}/applications/{ids['ESS']}")
    assert history.status_code == 200
    assert "reminded" in history.text and "pat@essex.gov.uk" in history.text
