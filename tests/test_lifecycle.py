"""The transition tables: every move between two states, legal or not, through audit.transition.

The expected tables below are written out by hand from the design (not read from
cbflow.lifecycle), so a change to the real tables must be made in both places on purpose.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta
from itertools import pairwise
from pathlib import Path

import pytest
from conftest import configure, edit, example_text, london
from sqlmodel import select

from cbflow.db import get_engine, migrate, session_scope
from cbflow.errors import IllegalTransition
from cbflow.lifecycle import AppState, RoundState
from cbflow.models import Application, AuditEvent, Round
from cbflow.services import applications
from cbflow.services.audit import history, transition
from cbflow.services.councils import load_register
from cbflow.settings import Settings, get_settings

A, R = AppState, RoundState
ARRANGED_AT = london(2011, 10, 20, 9, 0)
MOVED_AT = london(2011, 11, 1, 14, 30)  # GMT: 14:30 UTC
ACTOR = "staff:programme-team"
REASON = "checked against the transition table"

# -- the expected tables -----------------------------------------------------------------------

# an applicant may withdraw from every state until the work is complete
WITHDRAWABLE = {
    A.EOI_DRAFT,
    A.EOI_SIGN_OFF,
    A.BID_SIGN_OFF,
    A.EOI_SUBMITTED,
    A.SIFT_PASS,
    A.SIFT_REFER,
    A.INVITED,
    A.BID_DRAFT,
    A.BID_SUBMITTED,
    A.UNDER_ASSESSMENT,
    A.MODERATED,
    A.RESERVE,
    A.SELECTED,
    A.IMPLEMENTING,
    A.ADOPTION_DRAFT,
    A.ADOPTION_SUBMITTED,
}
NOT_WITHDRAWABLE = {A.SIFT_FAIL, A.UNSUCCESSFUL, A.COMPLETED, A.PUBLISHED, A.WITHDRAWN}
DECISIONS = {A.SELECTED, A.RESERVE, A.UNSUCCESSFUL}

EXPECTED_APP_MOVES: dict[AppState, set[AppState]] = {
    # sent for sign-off: the certifier approves (submitting it) or returns it (reopening it)
    A.EOI_DRAFT: {A.EOI_SUBMITTED, A.EOI_SIGN_OFF},
    A.EOI_SIGN_OFF: {A.EOI_SUBMITTED, A.EOI_DRAFT},
    A.EOI_SUBMITTED: {A.SIFT_PASS, A.SIFT_REFER, A.SIFT_FAIL, A.EOI_DRAFT},
    A.SIFT_PASS: {A.INVITED, A.UNDER_ASSESSMENT} | DECISIONS,
    A.SIFT_REFER: {A.SIFT_PASS, A.SIFT_FAIL},
    A.SIFT_FAIL: set(),
    A.INVITED: {A.BID_DRAFT, A.UNSUCCESSFUL},
    A.BID_DRAFT: {A.BID_SUBMITTED, A.BID_SIGN_OFF, A.UNSUCCESSFUL},
    # still waiting for sign-off when the bids close: not submitted, so unsuccessful
    A.BID_SIGN_OFF: {A.BID_SUBMITTED, A.BID_DRAFT, A.UNSUCCESSFUL},
    A.BID_SUBMITTED: {A.UNDER_ASSESSMENT, A.BID_DRAFT} | DECISIONS,
    A.UNDER_ASSESSMENT: {A.MODERATED},
    A.MODERATED: set(DECISIONS),
    A.SELECTED: {A.IMPLEMENTING},
    A.RESERVE: {A.SELECTED, A.UNSUCCESSFUL},
    A.UNSUCCESSFUL: set(),
    A.IMPLEMENTING: {A.COMPLETED},
    A.COMPLETED: {A.PUBLISHED},
    A.PUBLISHED: set(),
    A.WITHDRAWN: set(),
    # the rolling adoption route: staff approve (implementation starts) or return it
    A.ADOPTION_DRAFT: {A.ADOPTION_SUBMITTED},
    A.ADOPTION_SUBMITTED: {A.IMPLEMENTING, A.ADOPTION_DRAFT},
}
for _state in WITHDRAWABLE:
    EXPECTED_APP_MOVES[_state].add(A.WITHDRAWN)

EXPECTED_ROUND_MOVES: dict[RoundState, set[RoundState]] = {
    R.LAUNCHED: {R.EOI_CLOSED, R.CANCELLED},
    R.EOI_CLOSED: {R.BIDS_INVITED, R.ASSESSED, R.DECIDED, R.CANCELLED},
    R.BIDS_INVITED: {R.BIDS_CLOSED, R.CANCELLED},
    R.BIDS_CLOSED: {R.ASSESSED, R.DECIDED, R.CANCELLED},
    R.ASSESSED: {R.DECIDED, R.CANCELLED},
    R.DECIDED: {R.IMPLEMENTING, R.COMPLETED},
    R.IMPLEMENTING: {R.COMPLETED},
    R.COMPLETED: set(),
    R.CANCELLED: set(),
}


def _pairs(states: type[AppState] | type[RoundState], legal: bool) -> list[object]:
    table = EXPECTED_APP_MOVES if states is AppState else EXPECTED_ROUND_MOVES
    return [
        pytest.param(current, target, id=f"{current.value}->{target.value}")
        for current in states
        for target in states
        if (target in table[current]) == legal  # type: ignore[index,operator]
    ]


LEGAL_APP, ILLEGAL_APP = _pairs(AppState, True), _pairs(AppState, False)
LEGAL_ROUND, ILLEGAL_ROUND = _pairs(RoundState, True), _pairs(RoundState, False)

# the whole way through, visiting every state that has a way out
APP_PATH = [
    A.EOI_SUBMITTED,
    A.SIFT_REFER,
    A.SIFT_PASS,
    A.INVITED,
    A.BID_DRAFT,
    A.BID_SUBMITTED,
    A.UNDER_ASSESSMENT,
    A.MODERATED,
    A.RESERVE,
    A.SELECTED,
    A.IMPLEMENTING,
    A.COMPLETED,
    A.PUBLISHED,
]
ROUND_PATH = [
    R.EOI_CLOSED,
    R.BIDS_INVITED,
    R.BIDS_CLOSED,
    R.ASSESSED,
    R.DECIDED,
    R.IMPLEMENTING,
    R.COMPLETED,
]


# -- fixtures and helpers ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def shared_db(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """One migrated SQLite database for the hundreds of table cases: each case makes its own
    round (and application), so cases do not see each other's rows."""
    with pytest.MonkeyPatch.context() as patch:
        configure(patch, Path(tmp_path_factory.mktemp("lifecycle")) / "data")
        migrate()
        with session_scope() as session:
            load_register(session)
        yield
    get_settings.cache_clear()


def new_round(state: RoundState = R.LAUNCHED) -> int:
    """A round of its own (the example prospectus under a fresh id), arranged in `state`."""
    slug = f"lifecycle-{uuid.uuid4().hex[:12]}"
    source = edit(example_text(), ("id: whole-place-2011", f"id: {slug}"))
    with session_scope() as session:
        round_ = Round(
            slug=slug,
            title="Lifecycle test round",
            state=state.value,
            prospectus_source=source,
            source_sha256=hashlib.sha256(source.encode()).hexdigest(),
            launched_at=ARRANGED_AT,
            launched_by=ACTOR,
        )
        session.add(round_)
        session.flush()
        assert round_.id is not None
        return round_.id


def new_application(state: AppState = A.EOI_DRAFT, council: str = "BIR") -> int:
    """An application of a round of its own, arranged in `state`."""
    round_id = new_round()
    with session_scope() as session:
        round_ = session.get(Round, round_id)
        assert round_ is not None
        application = Application(
            reference=f"{round_.slug}/{council}",
            round_id=round_id,
            council_code=council,
            state=state.value,
            created_at=ARRANGED_AT,
        )
        session.add(application)
        session.flush()
        assert application.id is not None
        return application.id


def move(kind: type[Round] | type[Application], row_id: int, target: AppState | RoundState) -> None:
    with session_scope() as session:
        row = session.get(kind, row_id)
        assert row is not None
        transition(session, row, target, actor=ACTOR, now=MOVED_AT, reason=REASON)


def stored_state(kind: type[Round] | type[Application], row_id: int) -> str:
    with session_scope() as session:
        row = session.get(kind, row_id)
        assert row is not None
        return row.state


def events(entity: str, entity_id: int) -> list[AuditEvent]:
    with session_scope() as session:
        return history(session, entity, entity_id)


def transitions(
    entity: str, entity_id: int
) -> list[tuple[str, str, datetime, str | None, str | None, str]]:
    return [
        (e.action, e.actor, e.at, e.from_state, e.to_state, e.reason)
        for e in events(entity, entity_id)
        if e.action == "transition"
    ]


def assert_on_configured_database(settings: Settings) -> None:
    expected = "postgresql" if settings.database_url.startswith("postgresql") else "sqlite"
    assert get_engine().dialect.name == expected


def refusal(kind: str, current: str, target: str) -> str:
    return rf"{kind} .*: cannot move from {re.escape(current)} to {re.escape(target)}$"


# -- applications ------------------------------------------------------------------------------


@pytest.mark.parametrize(("current", "target"), LEGAL_APP)
def test_application_move_legal_changes_state_and_audits_once(
    shared_db: None, current: AppState, target: AppState
) -> None:
    app_id = new_application(current)
    before = events("application", app_id)

    move(Application, app_id, target)

    assert stored_state(Application, app_id) == target.value
    after = events("application", app_id)
    assert len(after) == len(before) + 1
    added = after[-1]
    assert (added.action, added.actor, added.from_state, added.to_state, added.reason) == (
        "transition",
        ACTOR,
        current.value,
        target.value,
        REASON,
    )
    assert added.at == MOVED_AT
    assert added.at.utcoffset() == timedelta(0)  # read back in UTC


@pytest.mark.parametrize(("current", "target"), ILLEGAL_APP)
def test_application_move_illegal_is_refused_and_changes_nothing(
    shared_db: None, current: AppState, target: AppState
) -> None:
    app_id = new_application(current)
    before = events("application", app_id)

    with pytest.raises(IllegalTransition, match=refusal("application", current, target)):
        move(Application, app_id, target)

    assert stored_state(Application, app_id) == current.value
    assert [e.id for e in events("application", app_id)] == [e.id for e in before]


@pytest.mark.parametrize("current", sorted(WITHDRAWABLE), ids=str)
def test_withdraw_active_application_is_withdrawn_with_reason(
    shared_db: None, current: AppState
) -> None:
    app_id = new_application(current)

    with session_scope() as session:
        application = session.get(Application, app_id)
        assert application is not None
        applications.withdraw(
            session,
            application=application,
            actor="council:BIR",
            now=MOVED_AT,
            reason="the partnership has broken up",
        )

    assert stored_state(Application, app_id) == A.WITHDRAWN.value
    assert transitions("application", app_id) == [
        (
            "transition",
            "council:BIR",
            MOVED_AT,
            current.value,
            A.WITHDRAWN.value,
            "the partnership has broken up",
        )
    ]


@pytest.mark.parametrize("current", sorted(NOT_WITHDRAWABLE), ids=str)
def test_withdraw_terminal_application_is_refused(shared_db: None, current: AppState) -> None:
    app_id = new_application(current)

    with (
        pytest.raises(IllegalTransition, match=refusal("application", current, "withdrawn")),
        session_scope() as session,
    ):
        application = session.get(Application, app_id)
        assert application is not None
        applications.withdraw(
            session, application=application, actor="council:BIR", now=MOVED_AT, reason="x"
        )

    assert stored_state(Application, app_id) == current.value
    assert transitions("application", app_id) == []


def test_withdrawable_states_cover_every_state() -> None:
    assert set(AppState) == WITHDRAWABLE | NOT_WITHDRAWABLE
    assert not WITHDRAWABLE & NOT_WITHDRAWABLE


def test_application_move_to_round_state_is_refused(shared_db: None) -> None:
    app_id = new_application(A.EOI_SUBMITTED)

    with pytest.raises(IllegalTransition, match="cannot move from eoi_submitted to decided"):
        move(Application, app_id, R.DECIDED)

    assert stored_state(Application, app_id) == A.EOI_SUBMITTED.value


def test_application_illegal_move_after_legal_one_rolls_back_both(shared_db: None) -> None:
    app_id = new_application(A.EOI_SUBMITTED)

    with pytest.raises(IllegalTransition), session_scope() as session:
        application = session.get(Application, app_id)
        assert application is not None
        transition(session, application, A.SIFT_PASS, actor=ACTOR, now=MOVED_AT)
        transition(session, application, A.EOI_DRAFT, actor=ACTOR, now=MOVED_AT)

    assert stored_state(Application, app_id) == A.EOI_SUBMITTED.value
    assert transitions("application", app_id) == []


# -- rounds ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("current", "target"), LEGAL_ROUND)
def test_round_move_legal_changes_state_and_audits_once(
    shared_db: None, current: RoundState, target: RoundState
) -> None:
    round_id = new_round(current)
    before = events("round", round_id)

    move(Round, round_id, target)

    assert stored_state(Round, round_id) == target.value
    after = events("round", round_id)
    assert len(after) == len(before) + 1
    added = after[-1]
    assert (
        added.action,
        added.actor,
        added.at,
        added.from_state,
        added.to_state,
        added.reason,
    ) == (
        "transition",
        ACTOR,
        MOVED_AT,
        current.value,
        target.value,
        REASON,
    )


@pytest.mark.parametrize(("current", "target"), ILLEGAL_ROUND)
def test_round_move_illegal_is_refused_and_changes_nothing(
    shared_db: None, current: RoundState, target: RoundState
) -> None:
    round_id = new_round(current)
    before = events("round", round_id)

    with pytest.raises(IllegalTransition, match=refusal("round", current, target)):
        move(Round, round_id, target)

    assert stored_state(Round, round_id) == current.value
    assert [e.id for e in events("round", round_id)] == [e.id for e in before]


def test_round_illegal_message_names_round(shared_db: None) -> None:
    round_id = new_round(R.COMPLETED)
    with session_scope() as session:
        slug = session.get(Round, round_id).slug  # type: ignore[union-attr]

    with pytest.raises(IllegalTransition) as refused:
        move(Round, round_id, R.LAUNCHED)

    assert str(refused.value) == f"round {slug}: cannot move from completed to launched"


# -- the whole way through, on SQLite and PostgreSQL -------------------------------------------


def test_application_full_path_is_audited_in_order(any_db_env: Settings) -> None:
    assert_on_configured_database(any_db_env)
    app_id = new_application(A.EOI_DRAFT)

    for target in APP_PATH:
        move(Application, app_id, target)

    assert stored_state(Application, app_id) == A.PUBLISHED.value
    steps = [A.EOI_DRAFT, *APP_PATH]
    assert transitions("application", app_id) == [
        ("transition", ACTOR, MOVED_AT, before.value, after.value, REASON)
        for before, after in pairwise(steps)
    ]


def test_round_full_path_is_audited_in_order(any_db_env: Settings) -> None:
    assert_on_configured_database(any_db_env)
    round_id = new_round(R.LAUNCHED)

    for target in ROUND_PATH:
        move(Round, round_id, target)

    assert stored_state(Round, round_id) == R.COMPLETED.value
    steps = [R.LAUNCHED, *ROUND_PATH]
    assert transitions("round", round_id) == [
        ("transition", ACTOR, MOVED_AT, before.value, after.value, REASON)
        for before, after in pairwise(steps)
    ]


def test_illegal_move_rolls_back_on_every_database(any_db_env: Settings) -> None:
    assert_on_configured_database(any_db_env)
    app_id = new_application(A.SELECTED)

    with (
        pytest.raises(IllegalTransition, match=refusal("application", "implementing", "eoi_draft")),
        session_scope() as session,
    ):
        application = session.get(Application, app_id)
        assert application is not None
        transition(session, application, A.IMPLEMENTING, actor=ACTOR, now=MOVED_AT)
        transition(session, application, A.EOI_DRAFT, actor=ACTOR, now=MOVED_AT)

    assert stored_state(Application, app_id) == A.SELECTED.value
    with session_scope() as session:
        written = session.exec(
            select(AuditEvent).where(
                AuditEvent.entity == "application",
                AuditEvent.entity_id == app_id,
                AuditEvent.action == "transition",
            )
        ).all()
    assert written == []
