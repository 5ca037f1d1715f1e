"""Launching a round and reading its prospectus back."""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache

from sqlmodel import Session, col, select

from cbflow.errors import CbflowError, NotFound
from cbflow.flowlist import CLOSE_BIDS, CLOSE_EOI, COMPLETE_ROUND, DECIDE, SEND_REMINDERS
from cbflow.lifecycle import FUNDED, RoundState
from cbflow.models import Application, ProspectusVersion, Round
from cbflow.prospectus import Prospectus, parse
from cbflow.services.audit import record


@lru_cache(maxsize=64)
def _parsed(source: str, sha256: str) -> Prospectus:
    return parse(source, f"round prospectus {sha256[:12]}")


def prospectus_of(round_: Round) -> Prospectus:
    """The prospectus in force: as launched, or as last amended (parsed once per process)."""
    return _parsed(round_.prospectus_source, round_.source_sha256)


def launch_round(
    session: Session, *, source: str, path: str, actor: str, now: datetime
) -> tuple[Round, bool]:
    """Validate a prospectus and create its round. Returns (round, created).

    Persists the round with the prospectus text as launched (its version 1), then its audit
    event. Launching the same file again (or a version it was amended to) returns the existing
    round unchanged; launching a different file under an id that is taken is refused.
    """
    prospectus = parse(source, path)
    sha256 = hashlib.sha256(source.encode()).hexdigest()
    existing = session.exec(select(Round).where(Round.slug == prospectus.id)).first()
    if existing is not None:
        known = set(
            session.exec(
                select(ProspectusVersion.sha256).where(ProspectusVersion.round_id == existing.id)
            )
        )
        if sha256 not in known | {existing.source_sha256}:  # launched, or amended since
            raise CbflowError(
                f"a round with id {prospectus.id!r} was already launched from a different file; "
                "give the new round its own id"
            )
        return existing, False
    round_ = Round(
        slug=prospectus.id,
        title=prospectus.title,
        state=RoundState.LAUNCHED.value,
        prospectus_source=source,
        source_sha256=sha256,
        launched_at=now,
        launched_by=actor,
    )
    session.add(round_)
    session.flush()
    assert round_.id is not None
    session.add(
        ProspectusVersion(
            round_id=round_.id,
            version=1,
            source=source,
            sha256=sha256,
            reason="launched",
            published_at=now,
            published_by=actor,
        )
    )
    record(
        session,
        entity="round",
        entity_id=round_.id,
        action="launch",
        actor=actor,
        now=now,
        to_state=RoundState.LAUNCHED.value,
        reason=f"launched from {path}",
    )
    return round_, True


def get_round(session: Session, slug: str) -> Round:
    round_ = session.exec(select(Round).where(Round.slug == slug)).first()
    if round_ is None:
        raise NotFound(f"no round with id {slug!r}; `cbflow round status` lists the rounds")
    return round_


def all_rounds(session: Session) -> list[Round]:
    return list(session.exec(select(Round).order_by(col(Round.id))))


def applications_of(session: Session, round_: Round, *states: str) -> list[Application]:
    statement = select(Application).where(Application.round_id == round_.id)
    if states:
        statement = statement.where(col(Application.state).in_(states))
    return list(session.exec(statement.order_by(col(Application.id))))


def is_place(application: Application) -> bool:
    """Selected for the round's funding, wherever it has got to since: not a council that
    adopted a model through the rolling adoption route, which staff approve to implement
    without an award of the round's money."""
    return application.state in FUNDED and application.route != "adoption"


def places_of(session: Session, round_: Round) -> list[Application]:
    """The round's places: those selected for its funding (see is_place)."""
    return [a for a in applications_of(session, round_, *FUNDED) if is_place(a)]


def state_counts(session: Session, round_: Round) -> Counter[str]:
    return Counter(a.state for a in applications_of(session, round_))


# the round's decisions are released: decided, and whatever follows
RELEASED = frozenset({RoundState.DECIDED, RoundState.IMPLEMENTING, RoundState.COMPLETED})


def deadline_done(round_: Round, event: str) -> bool:
    """Whether the work of a deadline's flow (`event`) is done, by where the round has got to."""
    state = RoundState(round_.state)
    order = list(RoundState)
    if state == RoundState.CANCELLED:
        return True
    if event == CLOSE_EOI.name:
        return state != RoundState.LAUNCHED
    if event == CLOSE_BIDS.name:
        return order.index(state) >= order.index(RoundState.BIDS_CLOSED)
    if event == DECIDE.name:
        return state in RELEASED
    if event == COMPLETE_ROUND.name:
        return state == RoundState.COMPLETED
    if event == SEND_REMINDERS.name:
        return True  # a reminder is of its moment: never sent late by hand
    return state == RoundState.COMPLETED  # a returns cycle may be run again until the end


@dataclass(frozen=True)
class DeadlineActions:
    """What may be done about one of a round's deadlines: run its flow now, by hand, once the
    deadline has passed and until its work is done."""

    due: bool
    done: bool
    can_run: bool


def deadline_actions(
    round_: Round, event: str, *, due: bool, run_completed: bool = False
) -> DeadlineActions:
    """The rules of one deadline: `due` when its moment has passed; done when the round has
    moved on or (`run_completed`) its scheduled run has completed."""
    done = run_completed or deadline_done(round_, event)
    return DeadlineActions(due=due, done=done, can_run=due and not done)
