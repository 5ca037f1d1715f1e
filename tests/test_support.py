"""Support on offer: which offers a council sees at each stage and for its kind of council, and
requests against an offer's capacity (the place beyond it refused, a decline frees nothing, a
withdrawal of an accepted request frees its place), on SQLite and PostgreSQL; a request open
once per offer; bad input refused with nothing changed; every step audited."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import round_walk
from conftest import ROOT, edit
from sqlmodel import func, select
from support_walk import PROVIDERS, SOURCE, add_providers
from test_cli import cbflow

from cbflow import stages
from cbflow.db import session_scope
from cbflow.errors import NotFound, ProspectusError, ValidationFailed
from cbflow.models import Application, AuditEvent, Council, SupportRequest, User
from cbflow.prospectus import parse
from cbflow.services import accounts, applications, rounds, support
from cbflow.settings import Settings

CBU = PROVIDERS["Community Budgets Unit"]
LGA = PROVIDERS["Local Government Association"]


def offered(
    state: str, council_type: str, route: str = "competitive", source: str = SOURCE
) -> list[str]:
    application = Application(state=state, route=route)
    return [o.id for o in support.offers_open(parse(source), application, council_type)]


def test_a_council_sees_the_offers_of_its_stage_and_for_its_kind_of_council() -> None:
    # Birmingham is a metropolitan district (MD); Cambridgeshire a county (CTY)
    assert offered("eoi_draft", "MD") == ["bid-clinic"]
    assert offered("eoi_submitted", "CTY") == ["bid-clinic", "two-tier"]
    assert offered("bid_draft", "MD") == ["bid-clinic", "peer-review"]
    assert offered("implementing", "MD") == ["peer-review", "mentor"]
    assert offered("selected", "NMD") == ["peer-review", "mentor", "two-tier"]
    for over in ("unsuccessful", "withdrawn", "completed", "sift_fail", "under_assessment"):
        assert offered(over, "MD") == [], over


def test_an_adoption_sees_the_offers_for_adopters_until_it_implements() -> None:
    source = edit(
        SOURCE,
        (
            "open_to: all ",
            "route: open\n    opens: 2013-04-01\n    closes: 2014-03-31\n    open_to: all ",
        ),
    ) + (
        "  - {id: adopt-help, provider: Local Partnerships, what: Help to adopt a model.,"
        " stages: [adoption], contact: adopt@localpartnerships.example.gov.uk, capacity: 2}\n"
    )
    assert offered("eoi_draft", "MD", "adoption", source) == ["adopt-help"]
    assert offered("eoi_submitted", "MD", "adoption", source) == ["adopt-help"]
    assert offered("implementing", "MD", "adoption", source) == ["peer-review", "mentor"]
    # a competitive application is no adoption
    assert "adopt-help" not in offered("eoi_draft", "MD", "competitive", source)


@pytest.mark.parametrize(
    ("change", "said"),
    [
        (
            ("for: [CTY, NMD]", "for: [CTY, SHIRE]"),
            "['SHIRE'] are not council types of the register",
        ),
        (("for: [CTY, NMD]", "for: []"), "leave `for` out for every one"),
        (
            ("stages: [implementation]", "stages: [adoption]"),
            "adoption needs stages.replication.route: open",
        ),
        (("capacity: 3", "capacity: 0"), "support[2].capacity"),
        (("contact: peers@lga.example.gov.uk", "contact: the LGA"), "is not an email address"),
        (("id: mentor", "id: peer-review"), "support offer id 'peer-review' is used twice"),
    ],
)
def test_a_support_offer_that_cannot_work_is_refused_with_where_and_why(
    change: tuple[str, str], said: str
) -> None:
    with pytest.raises(ProspectusError) as refused:
        parse(edit(SOURCE, change))
    assert said in str(refused.value)


# ---------------------------------------------------------------------------------------------
# requests against capacity, on both databases


def eois(councils: list[str]) -> dict[str, int]:
    stages.launch(SOURCE, "round.yaml", now=round_walk.LAUNCH_AT)
    found = {}
    with session_scope() as session:
        round_ = rounds.get_round(session, round_walk.SLUG)
        for council in councils:
            application, _ = applications.start_application(
                session,
                round_=round_,
                council_code=council,
                actor=f"officer@{council.lower()}.example",
                now=round_walk.EOI_DAY,
            )
            assert application.id is not None
            found[council] = application.id
    return found


def ask(application_id: int, council: str, offer: str, what_for: str = "Our bid.") -> int:
    with session_scope() as session:
        application = session.get(Application, application_id)
        place = session.get(Council, council)
        assert application is not None and place is not None
        row = support.ask(
            session,
            application=application,
            council=place,
            offer_id=offer,
            what_for=what_for,
            actor=f"officer@{council.lower()}.example",
            now=round_walk.EOI_DAY,
        )
        assert row.id is not None
        return row.id


def decide(
    email: str, request_id: int, accept: bool, reason: str = "", version: int | None = None
) -> str:
    with session_scope() as session:
        user = session.exec(select(User).where(User.email == email)).one()
        row = session.get(SupportRequest, request_id)
        assert row is not None
        decided = support.decide(
            session,
            user=user,
            request_id=request_id,
            accept=accept,
            reason=reason,
            version=row.version if version is None else version,
            now=round_walk.EOI_DAY,
        )
        return decided.state


def withdraw(request_id: int, council: str) -> str:
    with session_scope() as session:
        row = session.get(SupportRequest, request_id)
        assert row is not None
        return support.withdraw(
            session, row=row, council_code=council, actor="officer", now=round_walk.EOI_DAY
        ).state


def taken(offer: str) -> int:
    with session_scope() as session:
        return support.places_taken(session, rounds.get_round(session, round_walk.SLUG), offer)


def records() -> tuple[list[tuple[int | None, str, int, str]], int]:
    """Every request's id, state, version and reason, and the support audit events."""
    with session_scope() as session:
        rows = [
            (r.id, r.state, r.version, r.reason)
            for r in session.exec(select(SupportRequest).order_by(SupportRequest.id))  # type: ignore[arg-type]
        ]
        events = session.exec(
            select(func.count())
            .select_from(AuditEvent)
            .where(AuditEvent.entity == "support_request")
        ).one()
    return rows, events


def refused(step: Callable[[], Any], error: type[Exception], said: str) -> None:
    """The step is refused, saying so, and changes nothing."""
    before = records()
    with pytest.raises(error) as caught:
        step()
    assert said in str(caught.value)
    assert records() == before


def test_an_offer_takes_no_more_places_than_it_has_and_a_withdrawal_frees_one(
    any_db_env: Settings,
) -> None:
    add_providers()
    ids = eois(["BIR", "BOL", "BRD"])
    # the bid clinic takes one place
    bir = ask(ids["BIR"], "BIR", "bid-clinic", "To test our cost-benefit case.")
    bol = ask(ids["BOL"], "BOL", "bid-clinic", "To shape our Whitehall asks.")
    brd = ask(ids["BRD"], "BRD", "bid-clinic", "To check our governance.")
    assert decide(CBU, bir, accept=True) == "accepted"
    assert taken("bid-clinic") == 1
    refused(
        lambda: decide(CBU, bol, accept=True),
        support.SupportRefused,
        "Community Budgets Unit has taken all 1 places this offer has",
    )
    # a decline never took a place, so it frees none
    assert (
        decide(CBU, brd, accept=False, reason="Our clinics are booked until March.") == "declined"
    )
    assert taken("bid-clinic") == 1
    refused(lambda: decide(CBU, bol, accept=True), support.SupportRefused, "has taken all 1")
    # Birmingham withdraws its accepted request: its place is free, and Bolton takes it
    assert withdraw(bir, "BIR") == "withdrawn"
    assert taken("bid-clinic") == 0
    assert decide(CBU, bol, accept=True) == "accepted"
    assert taken("bid-clinic") == 1
    with session_scope() as session:
        states = {r.council_code: (r.state, r.reason) for r in session.exec(select(SupportRequest))}
        events = [
            (e.entity_id, e.action, e.from_state, e.to_state, e.actor)
            for e in session.exec(
                select(AuditEvent)
                .where(AuditEvent.entity == "support_request")
                .order_by(AuditEvent.id)  # type: ignore[arg-type]
            )
        ]
    assert states == {
        "BIR": ("withdrawn", ""),
        "BOL": ("accepted", ""),
        "BRD": ("declined", "Our clinics are booked until March."),
    }
    assert events == [
        (bir, "support_requested", None, "requested", "officer@bir.example"),
        (bol, "support_requested", None, "requested", "officer@bol.example"),
        (brd, "support_requested", None, "requested", "officer@brd.example"),
        (bir, "support_accepted", "requested", "accepted", CBU),
        (brd, "support_declined", "requested", "declined", CBU),
        (bir, "support_withdrawn", "accepted", "withdrawn", "officer"),
        (bol, "support_accepted", "requested", "accepted", CBU),
    ]


def test_two_providers_accepting_the_last_place_at_once_take_it_once(
    any_db_env: Settings,
) -> None:
    add_providers()
    with session_scope() as session:
        session.add(
            User(
                email="jo@communities.example.gov.uk",
                name="Jo",
                role="provider",
                provider="Community Budgets Unit",
            )
        )
    ids = eois(["BIR", "BOL"])
    first, second = ask(ids["BIR"], "BIR", "bid-clinic"), ask(ids["BOL"], "BOL", "bid-clinic")
    results: dict[int, str] = {}
    start = threading.Barrier(2)

    def accept(email: str, request_id: int) -> None:
        start.wait()
        try:
            results[request_id] = decide(email, request_id, accept=True)
        except support.SupportRefused as exc:
            results[request_id] = str(exc)

    threads = [
        threading.Thread(target=accept, args=(CBU, first)),
        threading.Thread(target=accept, args=("jo@communities.example.gov.uk", second)),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sorted(r == "accepted" for r in results.values()) == [False, True], results
    assert taken("bid-clinic") == 1


def test_a_request_is_open_once_per_offer_and_bad_asks_change_nothing(
    any_db_env: Settings,
) -> None:
    add_providers()
    ids = eois(["BIR", "CAM"])
    first = ask(ids["BIR"], "BIR", "bid-clinic")
    refused(
        lambda: ask(ids["BIR"], "BIR", "bid-clinic"),
        support.SupportRefused,
        "You have already asked Community Budgets Unit for this support",
    )
    refused(lambda: ask(ids["BIR"], "BIR", "two-tier"), support.SupportRefused, "not on offer")
    refused(lambda: ask(ids["BIR"], "BIR", "mentor"), support.SupportRefused, "not on offer")
    refused(lambda: ask(ids["BIR"], "BIR", "no-such"), support.SupportRefused, "not on offer")
    refused(
        lambda: ask(ids["CAM"], "CAM", "two-tier", "   "),
        ValidationFailed,
        "Say what you want the support for",
    )
    refused(
        lambda: ask(ids["CAM"], "CAM", "two-tier", "x" * 1001),
        ValidationFailed,
        "1,000 characters or fewer",
    )
    # a county may ask for the two-tier network
    ask(ids["CAM"], "CAM", "two-tier", "To pool budgets with our districts.")
    # once declined, it may be asked again
    decide(CBU, first, accept=False, reason="Booked up.")
    again = ask(ids["BIR"], "BIR", "bid-clinic", "Any later date would do.")
    assert again != first
    # deciding: a decline needs a reason; a stale page, a decided request, another
    # organisation's request are refused
    refused(lambda: decide(CBU, again, accept=False, reason=" "), ValidationFailed, "Say why")
    refused(
        lambda: decide(CBU, again, accept=False, reason="x" * 2001),
        ValidationFailed,
        "2,000 characters or fewer",
    )
    with session_scope() as session:
        version = session.get(SupportRequest, again).version  # type: ignore[union-attr]
    decide(CBU, again, accept=True)
    refused(
        lambda: decide(CBU, again, accept=False, reason="Changed our mind.", version=version),
        support.StaleDecision,
        "it is now accepted",
    )
    refused(lambda: decide(CBU, again, accept=True), support.SupportRefused, "accepted already")
    refused(lambda: decide(LGA, first, accept=True), NotFound, "no such request")
    refused(lambda: withdraw(first, "BIR"), support.SupportRefused, "declined already")
    refused(lambda: withdraw(again, "BOL"), NotFound, "no such request")


def test_a_provider_is_added_with_the_organisation_it_answers_for(tmp_path: Path) -> None:
    here = {"PYTHONPATH": str(ROOT)}  # this checkout's cbflow, whatever is installed
    add = ("user", "add", "sam@lga.example.gov.uk", "--name", "Sam", "--role", "provider")
    alone = cbflow(tmp_path, *add, env=here)
    assert alone.returncode == 1
    assert "Enter the organisation they answer for" in alone.stderr
    added = cbflow(tmp_path, *add, "--provider", "Local  Government Association", env=here)
    assert added.returncode == 0, added.stderr
    assert "as Support provider" in added.stdout
    with sqlite3.connect(tmp_path / "cbflow.db") as db:
        rows = db.execute("select email, role, provider from user").fetchall()
        reasons = db.execute("select reason from auditevent where action = 'user_added'").fetchall()
    assert rows == [("sam@lga.example.gov.uk", "provider", "Local Government Association")]
    assert reasons == [(f"{accounts.ROLES['provider']} for Local Government Association",)]
