"""The support on offer to a council: on its home page, for each of its applications, the offers
open to it at the stage the application has reached (each with a form to ask for it) and the
requests it has made, with their state; asking (with a sentence on what for) and withdrawing.

An offer's own page shows the same form again with what was wrong, when an ask is refused."""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import RedirectResponse, Response
from sqlmodel import Session

from cbflow.errors import NotFound, ValidationFailed
from cbflow.formatting import local_time
from cbflow.models import Application, Council, Round, SupportRequest
from cbflow.prospectus import SupportOffer
from cbflow.services import partnerships, rounds, support
from cbflow.web.applications.shared import Applicant, council_of, own_application
from cbflow.web.clarifying import mail_after_all
from cbflow.web.deps import ClockDep, PagesDep, ReasonField, SessionDep, SettingsDep, ShortField
from cbflow.web.templating import errors_as_list, path_for

router = APIRouter(prefix="/applications")


@dataclass(frozen=True)
class AskedRow:
    """One of the council's requests, as its home page lists it."""

    id: int | None
    provider: str
    what: str
    what_for: str
    state: str
    reason: str  # a decline's
    asked: str
    contact: str  # the provider's, once accepted
    can_withdraw: bool


@dataclass(frozen=True)
class OfferCard:
    offer: SupportOffer
    stages: str
    places_left: int


@dataclass(frozen=True)
class SupportPanel:
    """One application's support: what it asked, and what it may ask for now."""

    application_id: int | None
    title: str  # the round and the place
    asked: list[AskedRow]
    offers: list[OfferCard]


STAGE_NAMES = {
    "eoi": "expression of interest",
    "bid": "bid",
    "implementation": "implementation",
    "adoption": "adoption",
}


def _card(session: Session, round_: Round, offer: SupportOffer) -> OfferCard:
    return OfferCard(
        offer=offer,
        stages=", ".join(STAGE_NAMES[s] for s in offer.stages),
        places_left=max(0, offer.capacity - support.places_taken(session, round_, offer.id)),
    )


def panels(
    session: Session, council: Council, applications: list[Application]
) -> list[SupportPanel]:
    """The support panels of the council's applications that have offers open or requests."""
    found = []
    for application in applications:
        round_ = session.get(Round, application.round_id)
        assert round_ is not None
        prospectus = rounds.prospectus_of(round_)
        if not prospectus.support:
            continue
        offers = {o.id: o for o in prospectus.support}
        rows = [r for r in support.requests_of(session, application) if r.offer_id in offers]
        live = {r.offer_id for r in rows if r.state in support.OPEN}
        open_now = [
            _card(session, round_, o)
            for o in support.open_to(round_, application, council)
            if o.id not in live
        ]
        if not rows and not open_now:
            continue
        asked = [
            AskedRow(
                id=r.id,
                provider=offers[r.offer_id].provider,
                what=offers[r.offer_id].what,
                what_for=r.what_for,
                state=support.STATE_NAMES[r.state],
                reason=r.reason if r.state == support.DECLINED else "",
                asked=local_time(r.requested_at, prospectus),
                contact=offers[r.offer_id].contact if r.state == support.ACCEPTED else "",
                can_withdraw=r.state in support.OPEN and r.council_code == council.code,
            )
            for r in rows
        ]
        place = partnerships.place_of(session, application).name
        found.append(
            SupportPanel(
                application_id=application.id,
                title=f"{round_.title}: {place} ({application.reference})",
                asked=asked,
                offers=open_now,
            )
        )
    return found


@dataclass(frozen=True)
class OfferPage:
    application_id: int | None
    title: str
    card: OfferCard
    what_for: str  # as typed
    limit: int
    errors: dict[str, str]
    error_list: list[dict[str, str]]


def _council(session: Session, user: Applicant) -> Council:
    council = session.get(Council, council_of(user))
    assert council is not None
    return council


def _offer_page(
    request: Request,
    pages: PagesDep,
    session: Session,
    application: Application,
    offer: SupportOffer,
    *,
    what_for: str = "",
    errors: dict[str, str] | None = None,
    status_code: int = 200,
) -> Response:
    round_ = session.get(Round, application.round_id)
    assert round_ is not None
    errors = errors or {}
    place = partnerships.place_of(session, application).name
    page = OfferPage(
        application_id=application.id,
        title=f"{round_.title}: {place}",
        card=_card(session, round_, offer),
        what_for=what_for[: support.WHAT_FOR_LIMIT * 2],
        limit=support.WHAT_FOR_LIMIT,
        errors=errors,
        error_list=errors_as_list(errors),
    )
    return pages.show(request, "application/support-offer.html", page, status_code)


def _offer_or_404(session: Session, application: Application, offer_id: str) -> SupportOffer:
    round_ = session.get(Round, application.round_id)
    assert round_ is not None
    try:
        return support.offer_of(round_, offer_id)
    except NotFound:
        raise HTTPException(status_code=404) from None


@router.get("/{application_id}/support/{offer_id}")
def support_offer_page(
    request: Request,
    application_id: int,
    offer_id: str,
    user: Applicant,
    session: SessionDep,
    pages: PagesDep,
) -> Response:
    application = own_application(session, user, application_id)
    offer = _offer_or_404(session, application, offer_id)
    return _offer_page(request, pages, session, application, offer)


@router.post("/{application_id}/support")
def ask_for_support(
    request: Request,
    application_id: int,
    user: Applicant,
    session: SessionDep,
    pages: PagesDep,
    settings: SettingsDep,
    clock: ClockDep,
    offer: ShortField = "",
    what_for: ReasonField = "",
) -> Response:
    application = own_application(session, user, application_id)
    chosen = _offer_or_404(session, application, offer)
    now = clock()
    try:
        row = support.ask(
            session,
            application=application,
            council=_council(session, user),
            offer_id=chosen.id,
            what_for=what_for,
            actor=user.email,
            now=now,
        )
    except ValidationFailed as failed:
        return _offer_page(
            request,
            pages,
            session,
            application,
            chosen,
            what_for=what_for,
            errors=failed.errors,
            status_code=400,
        )
    except support.SupportRefused as refused:
        return _offer_page(
            request,
            pages,
            session,
            application,
            chosen,
            what_for=what_for,
            errors={"offer": str(refused)},
            status_code=409,
        )
    mail = support.tell(session, settings, row, "requested", now=now)
    back = path_for(request, "applications_home") + f"#support-{application.id}"
    return mail_after_all(RedirectResponse(back, status_code=303), mail, settings)


@router.post("/{application_id}/support/{request_id}/withdraw")
def withdraw_support(
    request: Request,
    application_id: int,
    request_id: int,
    user: Applicant,
    session: SessionDep,
    pages: PagesDep,
    settings: SettingsDep,
    clock: ClockDep,
) -> Response:
    application = own_application(session, user, application_id)
    row = session.get(SupportRequest, request_id)
    if row is None or row.application_id != application.id:
        raise HTTPException(status_code=404)
    now = clock()
    try:
        row = support.withdraw(
            session, row=row, council_code=council_of(user), actor=user.email, now=now
        )
    except NotFound:
        raise HTTPException(status_code=404) from None
    except support.SupportRefused as refused:
        return pages.render(
            request,
            "error.html",
            status_code=409,
            title="The request cannot be withdrawn",
            message=f"{refused}: nothing was changed.",
        )
    mail = support.tell(session, settings, row, "withdrawn", now=now)
    back = path_for(request, "applications_home") + f"#support-{application.id}"
    return mail_after_all(RedirectResponse(back, status_code=303), mail, settings)
