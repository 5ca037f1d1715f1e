"""Money is exact (integer pence, never a float) and times are aware (UTC in storage), on SQLite
and on PostgreSQL alike."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from conftest import edit, example_text, london
from sqlalchemy import text
from sqlalchemy.exc import StatementError
from sqlmodel import func, select

from cbflow.clock import FixedClock
from cbflow.db import get_engine, session_scope
from cbflow.errors import ValidationFailed
from cbflow.formatting import pence_to_money
from cbflow.forms import money_to_pence, parse_money, parse_number
from cbflow.lifecycle import AppState, RoundState
from cbflow.models import Application, AuditEvent, Round
from cbflow.services import applications, rounds, selection, sift
from cbflow.services.audit import transition
from cbflow.settings import Settings

EOI_DAY = london(2011, 10, 20, 9, 0)  # BST: 08:00 UTC
EOI_CLOSE = london(2011, 11, 10, 12, 0)  # GMT: 12:00 UTC
BID_DAY = london(2011, 12, 1, 9, 0)
STAFF = "staff:programme-team"


def assert_on_configured_database(settings: Settings) -> None:
    expected = "postgresql" if settings.database_url.startswith("postgresql") else "sqlite"
    assert get_engine().dialect.name == expected


# -- parsing money -----------------------------------------------------------------------------


@pytest.mark.parametrize("amount", [0.1, 1600000.01, 1500000.0, float("nan")])
def test_parse_money_float_is_refused(amount: float) -> None:
    with pytest.raises(ValueError, match="not a float"):
        parse_money(amount)


@pytest.mark.parametrize("amount", ["1.005", "1600000.001", "0.001", "£4,800,000.000001"])
def test_parse_money_three_decimals_is_refused(amount: str) -> None:
    with pytest.raises(ValueError, match="at most two decimal places"):
        parse_money(amount)


@pytest.mark.parametrize(
    ("typed", "said"),
    [
        ("1" * 14, "at most 13 digits before the pence"),
        ("£" + "9" * 27, "at most 13 digits before the pence"),  # a 500 on save and autosave
        ("9" * 100_000, "at most 13 digits before the pence"),
        ("1e6", "like 1500000"),
    ],
)
def test_parse_money_too_many_digits_or_an_exponent_is_refused(typed: str, said: str) -> None:
    with pytest.raises(ValueError, match=said):
        parse_money(typed)
    assert parse_money("£9,999,999,999,999.99") == Decimal("9999999999999.99")


@pytest.mark.parametrize(
    ("given", "read"),
    [
        ("0.000001", Decimal("0.000001")),
        (1e-06, Decimal("0.000001")),  # stored as a float, read again at submission
        (2.5, Decimal("2.5")),
        (123456789012345, Decimal(123456789012345)),
        ("-42", Decimal(-42)),
    ],
)
def test_parse_number_reads_numbers_written_out_or_stored(given: Any, read: Decimal) -> None:
    assert parse_number(given) == read


@pytest.mark.parametrize(
    ("given", "said"),
    [
        ("1e1000000", "in full"),  # 26 s of a process, then a 500
        ("1.5E6", "in full"),
        ("1" * 16, "at most 15 digits"),
        (10**30, "at most 15 digits"),
        (1e30, "at most 15 digits"),
        ("0.1234567", "6 after the point"),
        ("NaN", "enter a number"),
        (float("inf"), "enter a number"),
        (True, "enter a number"),
    ],
)
def test_parse_number_refuses_what_is_not_a_number_written_out(given: Any, said: str) -> None:
    with pytest.raises(ValueError, match=said):
        parse_number(given)


@pytest.mark.parametrize("amount", ["", "abc", "1.2.3", "Infinity", "NaN", True])
def test_parse_money_not_an_amount_is_refused(amount: Any) -> None:
    with pytest.raises(ValueError):
        parse_money(amount)


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("1600000.01", "1600000.01"),
        ("£1,600,000.01", "1600000.01"),
        (" 4800000 ", "4800000.00"),
        (4800000, "4800000.00"),
        ("0.1", "0.10"),
        (Decimal("2.50"), "2.50"),
    ],
)
def test_parse_money_exact_amount_keeps_every_penny(given: Any, expected: str) -> None:
    amount = parse_money(given)

    assert str(amount) == expected
    assert pence_to_money(money_to_pence(amount)) == amount


def test_money_to_pence_is_integer_and_exact() -> None:
    pence = money_to_pence(parse_money("1600000.01"))

    assert pence == 160_000_001
    assert isinstance(pence, int)
    assert 3 * pence == 480_000_003  # a float sum of three such amounts is not exact


# -- the support requested, stored ------------------------------------------------------------

BIG_REQUESTS = "              max: 1500000\n"


def invited_application(max_request: str = "50000000000") -> tuple[str, str]:
    """An application shortlisted in the example round, with a request limit of `max_request`;
    returns (slug, reference)."""
    source = edit(example_text(), (BIG_REQUESTS, f"              max: {max_request}\n"))
    with session_scope() as session:
        round_, _ = rounds.launch_round(
            session, source=source, path="money.yaml", actor=STAFF, now=london(2011, 10, 17)
        )
        application, _ = applications.start_application(
            session, round_=round_, council_code="BIR", actor="council:BIR", now=EOI_DAY
        )
        applications.submit(
            session,
            application=application,
            stage="eoi",
            answers={
                "lead_council": "BIR",
                "partners": [{"organisation": "Police"}, {"organisation": "Health"}],
                "ambition": "Pool the budgets.",
            },
            actor="council:BIR",
            now=EOI_DAY,
        )
        sift.close_eoi(session, round_=round_, actor=STAFF, now=EOI_CLOSE)
        sift.confirm_shortlist(
            session, round_=round_, chosen=[application], actor=STAFF, now=EOI_CLOSE
        )
        return round_.slug, application.reference


def submit_bid(reference: str, request: Any) -> None:
    with session_scope() as session:
        applications.submit(
            session,
            application=applications.get_application(session, reference),
            stage="bid",
            answers={
                "pooled_budget": [
                    {"organisation": "Police", "year": "2012-13", "amount_gbp": "0.01"}
                ],
                "support_requested_gbp": request,
            },
            actor="council:BIR",
            now=BID_DAY,
        )


@pytest.mark.parametrize(
    ("request_gbp", "pence"),
    [
        ("1600000.01", 160_000_001),
        ("0.01", 1),
        ("49999999999.99", 4_999_999_999_999),  # beyond a 32-bit integer
    ],
)
def test_support_requested_round_trips_as_integer_pence(
    any_db_env: Settings, request_gbp: str, pence: int
) -> None:
    assert_on_configured_database(any_db_env)
    _, reference = invited_application()

    submit_bid(reference, request_gbp)

    with session_scope() as session:
        stored = applications.get_application(session, reference)
    assert stored.support_requested_pence == pence
    assert type(stored.support_requested_pence) is int
    assert stored.bid_answers["support_requested_gbp"] == request_gbp
    assert stored.bid_answers["pooled_budget"][0]["amount_gbp"] == "0.01"


def test_support_requested_as_float_is_refused_and_not_stored(any_db_env: Settings) -> None:
    assert_on_configured_database(any_db_env)
    _, reference = invited_application()

    with pytest.raises(ValidationFailed, match="not a float") as refused:
        submit_bid(reference, 1600000.01)

    assert set(refused.value.errors) == {"support_requested_gbp"}
    with session_scope() as session:
        stored = applications.get_application(session, reference)
    assert stored.support_requested_pence is None
    assert stored.state == AppState.INVITED


# -- the budget, compared exactly --------------------------------------------------------------

BUDGET_ROUND = """\
format: 1
id: exact-budget
title: A round with a budget of four point eight million
issued_by: Department for Communities and Local Government
capacity:
  places: 3
  budget_gbp: 4800000.00
timetable:
  eoi: {opens: 2011-10-17, closes: "2011-11-10T12:00"}
stages:
  eoi:
    form:
      sections:
        - id: request
          title: Your request
          questions:
            - {id: lead_council, label: Council, type: council, required: true}
            - {id: support_gbp, label: Support requested, type: money, min: 0, required: true}
"""


def budget_round(requests: list[str]) -> tuple[str, list[str]]:
    """The budget round with one EOI per request, submitted in the order given."""
    councils = ["BIR", "BOL", "BRD", "CAM"]
    references = []
    with session_scope() as session:
        round_, _ = rounds.launch_round(
            session, source=BUDGET_ROUND, path="budget.yaml", actor=STAFF, now=EOI_DAY
        )
        for n, request in enumerate(requests):
            application, _ = applications.start_application(
                session, round_=round_, council_code=councils[n], actor="council", now=EOI_DAY
            )
            applications.submit(
                session,
                application=application,
                stage="eoi",
                answers={"lead_council": councils[n], "support_gbp": request},
                actor="council",
                now=EOI_DAY + timedelta(minutes=n),
            )
            references.append(application.reference)
        sift.close_eoi(session, round_=round_, actor=STAFF, now=EOI_CLOSE)
        return round_.slug, references


def decide(slug: str) -> list[selection.Decision]:
    with session_scope() as session:
        return selection.decide(
            session, round_=rounds.get_round(session, slug), actor=STAFF, now=EOI_CLOSE
        )


def test_budget_one_penny_over_is_not_selected(any_db_env: Settings) -> None:
    assert_on_configured_database(any_db_env)
    slug, _ = budget_round(["1600000.00", "1600000.00", "1600000.01"])

    decisions = decide(slug)

    assert [d.outcome for d in decisions] == [
        AppState.SELECTED,
        AppState.SELECTED,
        AppState.RESERVE,
    ]
    assert (
        " Its request of £1,600,000.01 is more than the £1,600,000.00 left in the budget. "
        in decisions[2].reason
    )
    with session_scope() as session:
        awarded = selection.total_awarded(session, rounds.get_round(session, slug))
    assert awarded == Decimal("3200000.00")


def test_budget_spent_to_the_penny_selects_all(any_db_env: Settings) -> None:
    assert_on_configured_database(any_db_env)
    slug, references = budget_round(["1600000.01", "1599999.99", "1600000.00"])

    decisions = decide(slug)

    assert [d.outcome for d in decisions] == [AppState.SELECTED] * 3
    with session_scope() as session:
        awarded = selection.total_awarded(session, rounds.get_round(session, slug))
        pence = [
            applications.get_application(session, r).support_requested_pence for r in references
        ]
    assert pence == [160_000_001, 159_999_999, 160_000_000]
    assert awarded == Decimal("4800000.00")
    assert str(awarded) == "4800000.00"


# -- time --------------------------------------------------------------------------------------


def test_datetimes_read_back_aware_in_utc(any_db_env: Settings) -> None:
    assert_on_configured_database(any_db_env)
    launched = london(2011, 10, 17, 9, 30)  # BST

    with session_scope() as session:
        round_, _ = rounds.launch_round(
            session, source=example_text(), path="time.yaml", actor=STAFF, now=launched
        )
        application, _ = applications.start_application(
            session, round_=round_, council_code="BIR", actor="council:BIR", now=EOI_CLOSE
        )
        slug, app_id = round_.slug, application.id

    with session_scope() as session:
        stored_round = rounds.get_round(session, slug)
        stored_app = session.get(Application, app_id)
        events = session.exec(select(AuditEvent).order_by(AuditEvent.id)).all()  # type: ignore[arg-type]
    assert stored_app is not None
    moments = [stored_round.launched_at, stored_app.created_at, *(e.at for e in events)]
    assert all(m.tzinfo is not None and m.utcoffset() == timedelta(0) for m in moments)
    assert stored_round.launched_at == datetime(2011, 10, 17, 8, 30, tzinfo=UTC)
    assert stored_round.launched_at.hour == 8  # the UTC wall time, not the London one
    assert stored_app.created_at == datetime(2011, 11, 10, 12, 0, tzinfo=UTC)
    assert [e.at for e in events] == [launched, EOI_CLOSE]


def test_datetimes_stored_as_utc(any_db_env: Settings) -> None:
    assert_on_configured_database(any_db_env)
    with session_scope() as session:
        rounds.launch_round(
            session,
            source=example_text(),
            path="time.yaml",
            actor=STAFF,
            now=london(2011, 10, 17, 9, 30),
        )

    with session_scope() as session:
        raw = session.exec(text("SELECT launched_at FROM round")).one()[0]  # type: ignore[call-overload]
        if get_engine().dialect.name == "postgresql":
            column_type = session.exec(
                text(  # type: ignore[call-overload]
                    "SELECT data_type FROM information_schema.columns "
                    "WHERE table_name = 'round' AND column_name = 'launched_at'"
                )
            ).one()[0]
            assert column_type == "timestamp with time zone"
            assert raw == datetime(2011, 10, 17, 8, 30, tzinfo=UTC)
        else:
            assert str(raw).startswith("2011-10-17 08:30:00")


@pytest.mark.parametrize(
    "any_db_env", [pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True
)
def test_postgres_session_time_zone_does_not_shift_instants(any_db_env: Settings) -> None:
    assert get_engine().dialect.name == "postgresql"
    with session_scope() as session:
        rounds.launch_round(
            session, source=example_text(), path="time.yaml", actor=STAFF, now=EOI_CLOSE
        )

    with session_scope() as session:
        session.exec(text("SET TIME ZONE 'America/New_York'"))  # type: ignore[call-overload]
        launched_at = session.exec(select(Round.launched_at)).one()

    assert launched_at == datetime(2011, 11, 10, 12, 0, tzinfo=UTC)
    assert launched_at.utcoffset() == timedelta(0)


def test_naive_datetime_is_refused_on_write(any_db_env: Settings) -> None:
    assert_on_configured_database(any_db_env)

    with (
        pytest.raises(StatementError, match="naive datetime") as refused,
        session_scope() as session,
    ):
        rounds.launch_round(
            session,
            source=example_text(),
            path="time.yaml",
            actor=STAFF,
            now=datetime(2011, 10, 17, 9, 30),
        )

    assert isinstance(refused.value.orig, ValueError)
    with session_scope() as session:
        assert session.exec(select(func.count()).select_from(Round)).one() == 0
        assert session.exec(select(func.count()).select_from(AuditEvent)).one() == 0


def test_naive_datetime_on_transition_leaves_state_unchanged(any_db_env: Settings) -> None:
    assert_on_configured_database(any_db_env)
    with session_scope() as session:
        round_, _ = rounds.launch_round(
            session, source=example_text(), path="time.yaml", actor=STAFF, now=EOI_DAY
        )
        slug = round_.slug

    with pytest.raises(StatementError, match="naive datetime"), session_scope() as session:
        transition(
            session,
            rounds.get_round(session, slug),
            RoundState.CANCELLED,
            actor=STAFF,
            now=datetime(2011, 11, 11, 9, 0),
            reason="cancelled",
        )

    with session_scope() as session:
        assert rounds.get_round(session, slug).state == "launched"
        actions = session.exec(select(AuditEvent.action)).all()
    assert actions == ["launch"]


def test_fixed_clock_refuses_naive_datetime() -> None:
    with pytest.raises(ValueError, match="time-zone-aware"):
        FixedClock(datetime(2011, 11, 10, 12, 0))
    clock = FixedClock(EOI_CLOSE)
    with pytest.raises(ValueError, match="time-zone-aware"):
        clock.set(datetime(2011, 11, 10, 12, 0))
    assert clock() == EOI_CLOSE
