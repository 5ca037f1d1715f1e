"""Support on offer: the prospectus lists what support councils may ask for (`support:`), from
whom, at which stages and for which kinds of council, and how many places each offer can take.

A council sees the offers open to each of its applications at the stage it has reached and asks
for one with a sentence on what for; an application holds at most one open request (asked or
accepted) per offer. The offer's provider (people with the role "provider" whose organisation is
the offer's `provider`) accepts or declines it, giving a reason to decline; an offer accepts no
more requests than its capacity (each accepted request takes a place; a withdrawal frees it, a
decline never took one). The council may withdraw a request, asked or accepted. Every step is
audited (entity "support_request") and mailed: the provider hears of a request and of a
withdrawal, the council of a decision.

Staff see the round's offers against its places (`matrix`): each place's requests, the places
with no support asked or accepted (gaps), those with several offers of the same kind (overlaps),
and each offer's places taken.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import datetime

from sqlmodel import Session, col, select

from cbflow import notify
from cbflow.db import lock_for_update
from cbflow.errors import CbflowError, NotFound, ValidationFailed
from cbflow.lifecycle import AppState
from cbflow.models import Application, Council, Round, SupportRequest, User
from cbflow.prospectus import Prospectus, SupportOffer
from cbflow.services import partnerships
from cbflow.services.audit import record
from cbflow.services.rounds import prospectus_of
from cbflow.settings import Settings

WHAT_FOR_LIMIT = 1_000  # characters of what the council wants the support for
REASON_LIMIT = 2_000  # characters of a provider's reason to decline

REQUESTED = "requested"
ACCEPTED = "accepted"
DECLINED = "declined"
WITHDRAWN = "withdrawn"
OPEN = (REQUESTED, ACCEPTED)  # asked and not yet declined or withdrawn
STATE_NAMES = {
    REQUESTED: "Requested: waiting for the provider",
    ACCEPTED: "Accepted",
    DECLINED: "Declined",
    WITHDRAWN: "Withdrawn",
}
ROLE = "provider"

_A = AppState
# the states of an application at each stage of support (a competitive application's); an
# adoption's: its own stage while it is decided, implementation once it implements
STAGE_STATES: dict[str, frozenset[AppState]] = {
    "eoi": frozenset(
        {_A.EOI_DRAFT, _A.EOI_SIGN_OFF, _A.EOI_SUBMITTED, _A.SIFT_PASS, _A.SIFT_REFER}
    ),
    "bid": frozenset({_A.INVITED, _A.BID_DRAFT, _A.BID_SIGN_OFF, _A.BID_SUBMITTED}),
    "implementation": frozenset({_A.SELECTED, _A.IMPLEMENTING}),
}
ADOPTION_STATES = frozenset(
    {_A.EOI_DRAFT, _A.EOI_SIGN_OFF, _A.EOI_SUBMITTED, _A.SIFT_PASS, _A.SIFT_REFER, _A.SELECTED}
)
# places the matrix expects support for: a gap is one of these with none asked or accepted
SUPPORTED_PLACES = frozenset({_A.SELECTED, _A.IMPLEMENTING})


class SupportRefused(CbflowError):
    """A request or a decision that cannot be made now (nothing was changed)."""


class StaleDecision(CbflowError):
    """A decision made from a page drawn before the request changed: nothing was changed."""


def stages_of(application: Application) -> frozenset[str]:
    """The stages of support the application is at now (none once it is decided against,
    withdrawn or finished)."""
    state = AppState(application.state)
    if application.route == "adoption":
        if state in ADOPTION_STATES:
            return frozenset({"adoption"})
        return frozenset({"implementation"}) if state is _A.IMPLEMENTING else frozenset()
    return frozenset(stage for stage, states in STAGE_STATES.items() if state in states)


def offers_of(round_: Round) -> list[SupportOffer]:
    return list(prospectus_of(round_).support)


def offer_of(round_: Round, offer_id: str) -> SupportOffer:
    for offer in offers_of(round_):
        if offer.id == offer_id:
            return offer
    raise NotFound(f"no support offer {offer_id!r} in {round_.slug}")


def offers_open(
    prospectus: Prospectus, application: Application, council_type: str
) -> list[SupportOffer]:
    """The prospectus's offers open to a council of this type on this application now: at the
    application's stage, for its kind of council."""
    at = stages_of(application)
    return [
        offer
        for offer in prospectus.support
        if at.intersection(offer.stages) and offer.is_for(council_type)
    ]


def open_to(round_: Round, application: Application, council: Council) -> list[SupportOffer]:
    """The round's offers the council may ask for on this application now."""
    return offers_open(prospectus_of(round_), application, council.type)


def requests_of(session: Session, application: Application) -> list[SupportRequest]:
    """The application's requests, oldest first."""
    return list(
        session.exec(
            select(SupportRequest)
            .where(SupportRequest.application_id == application.id)
            .order_by(col(SupportRequest.id))
        )
    )


def places_taken(session: Session, round_: Round, offer_id: str) -> int:
    """The offer's places taken: its accepted requests."""
    return len(
        session.exec(
            select(SupportRequest.id).where(
                SupportRequest.round_id == round_.id,
                SupportRequest.offer_id == offer_id,
                SupportRequest.state == ACCEPTED,
            )
        ).all()
    )


def _round(session: Session, row: SupportRequest | Application) -> Round:
    round_ = session.get(Round, row.round_id)
    assert round_ is not None
    return round_


# ---------------------------------------------------------------------------------------------
# the council's steps


def ask(
    session: Session,
    *,
    application: Application,
    council: Council,
    offer_id: str,
    what_for: str,
    actor: str,
    now: datetime,
) -> SupportRequest:
    """The council asks for an offer on its application. Refused with nothing changed: an
    offer not open to it now (SupportRefused), no sentence on what for or one too long
    (ValidationFailed), an open request for the offer already (SupportRefused). Persists the
    request, then the audit event."""
    round_ = _round(session, application)
    offer = next((o for o in open_to(round_, application, council) if o.id == offer_id), None)
    if offer is None:
        raise SupportRefused("That support is not on offer to your council at this stage")
    text = what_for.strip()
    if not text:
        raise ValidationFailed({"what_for": "Say what you want the support for"})
    if len(text) > WHAT_FOR_LIMIT:
        raise ValidationFailed(
            {"what_for": f"What you want it for must be {WHAT_FOR_LIMIT:,} characters or fewer"}
        )
    lock_for_update(session, application)  # two asks at once: the second sees the first
    live = session.exec(
        select(SupportRequest.id).where(
            SupportRequest.application_id == application.id,
            SupportRequest.offer_id == offer.id,
            col(SupportRequest.state).in_(OPEN),
        )
    ).first()
    if live is not None:
        raise SupportRefused(f"You have already asked {offer.provider} for this support")
    assert application.id is not None and round_.id is not None
    row = SupportRequest(
        round_id=round_.id,
        offer_id=offer.id,
        application_id=application.id,
        council_code=council.code,
        what_for=text,
        requested_by=actor,
        requested_at=now,
    )
    session.add(row)
    session.flush()
    assert row.id is not None
    record(
        session,
        entity="support_request",
        entity_id=row.id,
        action="support_requested",
        actor=actor,
        now=now,
        reason=f"{offer.id} for {application.reference}: {text}",
        to_state=REQUESTED,
    )
    return row


def withdraw(
    session: Session, *, row: SupportRequest, council_code: str, actor: str, now: datetime
) -> SupportRequest:
    """The council withdraws a request it made, asked or accepted (an accepted one frees its
    place). Refused with nothing changed once declined or withdrawn. Persists the state, then
    the audit event."""
    if row.council_code != council_code:
        raise NotFound("no such request of your council")
    lock_for_update(session, row)
    if row.state not in OPEN:
        raise SupportRefused(f"The request is {STATE_NAMES[row.state].lower()} already")
    return _move(session, row, WITHDRAWN, actor=actor, now=now)


def _move(
    session: Session,
    row: SupportRequest,
    target: str,
    *,
    actor: str,
    now: datetime,
    reason: str = "",
) -> SupportRequest:
    before = row.state
    row.state = target
    row.version += 1
    if target in (ACCEPTED, DECLINED):
        row.decided_by, row.decided_at, row.reason = actor, now, reason
    session.add(row)
    assert row.id is not None
    record(
        session,
        entity="support_request",
        entity_id=row.id,
        action=f"support_{target}",
        actor=actor,
        now=now,
        reason=reason or row.offer_id,
        from_state=before,
        to_state=target,
    )
    session.flush()
    return row


# ---------------------------------------------------------------------------------------------
# the provider's steps


def provider_of(user: User) -> str:
    return user.provider or "" if user.role == ROLE else ""


def for_provider(session: Session, user: User) -> list[tuple[SupportRequest, SupportOffer]]:
    """The requests for the provider's organisation's offers, in every round, newest first."""
    organisation = provider_of(user)
    if not organisation:
        return []
    rounds_ = {r.id: r for r in session.exec(select(Round))}
    found = []
    for row in session.exec(select(SupportRequest).order_by(col(SupportRequest.id).desc())):
        offer = _offer_or_none(rounds_.get(row.round_id), row.offer_id)
        if offer is not None and offer.provider == organisation:
            found.append((row, offer))
    return found


def _offer_or_none(round_: Round | None, offer_id: str) -> SupportOffer | None:
    if round_ is None:
        return None
    return next((o for o in offers_of(round_) if o.id == offer_id), None)


def provider_request(
    session: Session, user: User, request_id: int
) -> tuple[SupportRequest, SupportOffer]:
    """A request for one of the provider's organisation's offers, or NotFound (for any other,
    so that nobody learns what others were asked)."""
    row = session.get(SupportRequest, request_id)
    organisation = provider_of(user)
    if row is None or not organisation:
        raise NotFound("no such request")
    offer = _offer_or_none(_round(session, row), row.offer_id)
    if offer is None or offer.provider != organisation:
        raise NotFound("no such request")
    return row, offer


def decide(
    session: Session,
    *,
    user: User,
    request_id: int,
    accept: bool,
    reason: str,
    version: int,
    now: datetime,
) -> SupportRequest:
    """The provider accepts or declines a request for its organisation's offer. Refused with
    nothing changed: another organisation's request (NotFound), a page older than the request
    (StaleDecision), a request no longer asked (SupportRefused), a decline without a reason or
    with one too long (ValidationFailed), an accept beyond the offer's capacity
    (SupportRefused). Persists the decision, then the audit event."""
    row, offer = provider_request(session, user, request_id)
    reason = reason.strip()
    if not accept and not reason:
        raise ValidationFailed({"reason": "Say why you are declining it"})
    if len(reason) > REASON_LIMIT:
        raise ValidationFailed(
            {"reason": f"The reason must be {REASON_LIMIT:,} characters or fewer"}
        )
    round_ = _round(session, row)
    # decisions on one round's offers, one at a time: two accepts of an offer's last place
    # cannot both take it
    lock_for_update(session, round_)
    session.refresh(row)
    if row.version != version:
        raise StaleDecision(
            "The request has changed since you opened the page: "
            f"it is now {STATE_NAMES[row.state].lower()}. Look at it again before deciding."
        )
    if row.state != REQUESTED:
        raise SupportRefused(f"The request is {STATE_NAMES[row.state].lower()} already")
    if accept:
        taken = places_taken(session, round_, offer.id)
        if taken >= offer.capacity:
            raise SupportRefused(
                f"{offer.provider} has taken all {offer.capacity} places this offer has: "
                "decline this request, or free a place first"
            )
    return _move(
        session, row, ACCEPTED if accept else DECLINED, actor=user.email, now=now, reason=reason
    )


# ---------------------------------------------------------------------------------------------
# mail


def provider_people(session: Session, offer: SupportOffer) -> list[str]:
    """Who hears of a request for the offer: its contact, and the provider's people."""
    people = session.exec(
        select(User.email)
        .where(User.role == ROLE, User.provider == offer.provider)
        .order_by(col(User.id))
    ).all()
    return list(dict.fromkeys([offer.contact, *people]))


def council_people(session: Session, row: SupportRequest) -> list[str]:
    """Who hears of a decision: the asking council's applicants."""
    return list(
        session.exec(
            select(User.email)
            .where(User.role == "applicant", User.council_code == row.council_code)
            .order_by(col(User.id))
        ).all()
    )


def messages(
    session: Session, settings: Settings, row: SupportRequest, kind: str
) -> list[notify.Message]:
    """The e-mails of one step (`kind`: requested, decided, withdrawn)."""
    round_ = _round(session, row)
    offer = offer_of(round_, row.offer_id)
    application = session.get(Application, row.application_id)
    council = session.get(Council, row.council_code)
    assert application is not None and council is not None
    base = settings.resolved_portal_base_url
    to = council_people(session, row) if kind == "decided" else provider_people(session, offer)
    return [
        notify.compose(
            settings.templates_dir,
            f"support-{kind}",
            to=address,
            offer=offer,
            council=council.name,
            place=partnerships.place_of(session, application).name,
            round=round_.title,
            reference=application.reference,
            what_for=row.what_for,
            accepted=row.state == ACCEPTED,
            reason=row.reason,
            link=f"{base}/applications" if kind == "decided" else f"{base}/support",
        )
        for address in to
    ]


def tell(
    session: Session, settings: Settings, row: SupportRequest, kind: str, *, now: datetime
) -> list[notify.Message]:
    """Mail one step from a page: without SMTP into the outbox, in the request's transaction;
    with SMTP the messages are returned, to deliver once it has committed."""
    return [
        message
        for message in messages(session, settings, row, kind)
        if notify.send_after_commit(message, settings=settings, session=session, now=now)
    ]


# ---------------------------------------------------------------------------------------------
# the staff's matrix


@dataclass(frozen=True)
class OfferUse:
    offer: SupportOffer
    taken: int  # accepted requests
    waiting: int  # requests not yet decided

    @property
    def left(self) -> int:
        return max(0, self.offer.capacity - self.taken)


@dataclass(frozen=True)
class PlaceRow:
    application: Application
    cells: dict[str, list[SupportRequest]]  # offer id -> the place's requests for it
    gap: bool  # a selected or implementing place with no support asked or accepted
    overlaps: list[str]  # kinds of support more than one open offer to the place is of


@dataclass(frozen=True)
class Matrix:
    offers: list[OfferUse]
    places: list[PlaceRow]

    @property
    def gaps(self) -> list[PlaceRow]:
        return [p for p in self.places if p.gap]

    @property
    def overlapping(self) -> list[PlaceRow]:
        return [p for p in self.places if p.overlaps]


def matrix(session: Session, round_: Round) -> Matrix:
    """The round's offers against its places: every place that asked for support or is
    selected or implementing, with its requests for each offer."""
    offers = offers_of(round_)
    requests = list(
        session.exec(
            select(SupportRequest)
            .where(SupportRequest.round_id == round_.id)
            .order_by(col(SupportRequest.id))
        )
    )
    by_app: dict[int, list[SupportRequest]] = {}
    for row in requests:
        by_app.setdefault(row.application_id, []).append(row)
    applications = session.exec(
        select(Application)
        .where(Application.round_id == round_.id)
        .order_by(col(Application.reference))
    ).all()
    kinds = {o.id: o.kind_name for o in offers}
    places = []
    for application in applications:
        assert application.id is not None
        rows = by_app.get(application.id, [])
        supported = AppState(application.state) in SUPPORTED_PLACES
        if not rows and not supported:
            continue
        live = [r for r in rows if r.state in OPEN]
        cells: dict[str, list[SupportRequest]] = {}
        for row in rows:
            cells.setdefault(row.offer_id, []).append(row)
        per_kind = Counter(kinds.get(o, o) for o in {r.offer_id for r in live})
        places.append(
            PlaceRow(
                application=application,
                cells=cells,
                gap=supported and not live,
                overlaps=sorted(kind for kind, n in per_kind.items() if n > 1),
            )
        )
    counts = Counter((r.offer_id, r.state) for r in requests)
    return Matrix(
        offers=[
            OfferUse(offer=o, taken=counts[(o.id, ACCEPTED)], waiting=counts[(o.id, REQUESTED)])
            for o in offers
        ],
        places=places,
    )


def first_line(text: str, limit: int = 80) -> str:
    """A request's sentence, shortened for a table's cell."""
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 1].rstrip() + "…"
