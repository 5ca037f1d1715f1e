"""A selected place's grant offer: by when it is to be accepted, and its acceptance in the portal
by an officer of the council, recorded once with who and when."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, time, timedelta

from sqlmodel import Session, select

from cbflow.db import lock_for_update
from cbflow.errors import CbflowError
from cbflow.formatting import long_date
from cbflow.models import Application, User
from cbflow.prospectus import Prospectus
from cbflow.services.audit import record
from cbflow.services.rounds import is_place


class NoOffer(CbflowError):
    """The application has no grant offer to accept: it was not selected."""


def has_offer(application: Application) -> bool:
    """Whether the application was offered a grant: selected by a released decision."""
    return is_place(application) and application.decided_at is not None


def accept_by(prospectus: Prospectus, offered_at: datetime) -> datetime:
    """The moment an offer made at `offered_at` is to be accepted by: the end of the day
    `grant_offer.accept_within_days` later, local time (the next midnight)."""
    day = offered_at.astimezone(prospectus.zone).date() + timedelta(
        days=prospectus.grant_offer.accept_within_days + 1
    )
    return datetime.combine(day, time(0, 0), tzinfo=prospectus.zone)


def accept(session: Session, *, application: Application, user: User, now: datetime) -> bool:
    """Record that `user`, an officer of the application's council, accepts its grant offer.

    Persists the time and the person on the application, and an audit event, in the caller's
    transaction. Returns True when accepted now; False when it had been accepted already (the
    first acceptance stands, unchanged: a second press, or a colleague's, changes nothing).
    Refused (NoOffer) for an application that was not selected, and (CbflowError) for a person
    of another council."""
    if user.council_code != application.council_code:
        raise CbflowError("only an officer of the council can accept its grant offer")
    lock_for_update(session, application)  # two presses at once: the second sees the first
    if not has_offer(application):
        raise NoOffer(f"{application.reference} has no grant offer: it was not selected")
    if application.offer_accepted_at is not None:
        return False
    assert application.id is not None
    application.offer_accepted_at = now
    application.offer_accepted_by = user.email
    session.add(application)
    record(
        session,
        entity="application",
        entity_id=application.id,
        action="grant_offer_accepted",
        actor=user.email,
        now=now,
        reason=f"The grant offer was accepted in the portal by {user.name} ({user.email}).",
    )
    session.flush()
    return True


@dataclass(frozen=True)
class Acceptance:
    """An accepted offer as pages show it."""

    on: str  # "3 January 2012"
    by: str  # "Sam Lee (sam@devon.gov.uk)", or the email of a person since removed

    @property
    def sentence(self) -> str:
        return f"Grant offer accepted on {self.on} by {self.by}."


def acceptance(
    session: Session, application: Application, prospectus: Prospectus
) -> Acceptance | None:
    if application.offer_accepted_at is None:
        return None
    email = application.offer_accepted_by or ""
    person = session.exec(select(User).where(User.email == email)).first()
    return Acceptance(
        on=long_date(application.offer_accepted_at, prospectus.zone),
        by=f"{person.name} ({email})" if person else email,
    )


@dataclass(frozen=True)
class OfferActions:
    """What the council may do with its application's grant offer."""

    offered: bool  # selected by a released decision: the offer and its letter can be seen
    accepted: bool

    @property
    def can_accept(self) -> bool:
        return self.offered and not self.accepted


def offer_actions(application: Application) -> OfferActions:
    return OfferActions(
        offered=has_offer(application), accepted=application.offer_accepted_at is not None
    )
