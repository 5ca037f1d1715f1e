"""A selected place's grant offer in the portal: what it offers, the letter, and "Accept the grant
offer", which records who accepted it and when. For the application's own council only (404 for
anyone else, and for an application that was not offered a grant)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import FileResponse, RedirectResponse, Response
from sqlmodel import Session, select

from cbflow.errors import CbflowError
from cbflow.formatting import long_date, long_deadline
from cbflow.models import Application, Document, Round, User
from cbflow.services import offers, rounds
from cbflow.services.documents import money
from cbflow.web.applications import own_application
from cbflow.web.auth import require_role
from cbflow.web.deps import ClockDep, PagesDep, SessionDep, SettingsDep, ShortField
from cbflow.web.stored import stored_file
from cbflow.web.templating import path_for

router = APIRouter(prefix="/applications")

Applicant = Annotated[User, require_role("applicant")]
CONFIRM = "accepted"
CONFIRM_ERROR = "Confirm that you accept the grant offer on behalf of your council"


def _offered(session: Session, user: User, application_id: int) -> Application:
    application = own_application(session, user, application_id)
    if not offers.offer_actions(application).offered:
        raise HTTPException(status_code=404)
    return application


def _letter(session: Session, application: Application) -> Document | None:
    return session.exec(
        select(Document).where(
            Document.application_id == application.id, Document.kind == "grant_offer"
        )
    ).first()


@dataclass(frozen=True)
class OfferPage:
    application: Application
    round: Round
    amount: str
    period: str | None
    offered_on: str
    accept_by: str
    actions: offers.OfferActions
    acceptance: offers.Acceptance | None
    letter: bool  # made already, to download
    errors: dict[str, str]


def _page(
    session: Session, application: Application, errors: dict[str, str] | None = None
) -> OfferPage:
    round_ = session.get(Round, application.round_id)
    assert round_ is not None and application.decided_at is not None
    prospectus = rounds.prospectus_of(round_)
    period = prospectus.timetable.implementation
    return OfferPage(
        application=application,
        round=round_,
        amount=money(application.support_requested_pence),
        period=f"{long_date(period.starts)} to {long_date(period.ends)}" if period else None,
        offered_on=long_date(application.decided_at, prospectus.zone),
        accept_by=long_deadline(
            offers.accept_by(prospectus, application.decided_at), prospectus.zone
        ),
        actions=offers.offer_actions(application),
        acceptance=offers.acceptance(session, application, prospectus),
        letter=_letter(session, application) is not None,
        errors=errors or {},
    )


@router.get("/{application_id}/offer")
def offer_page(
    request: Request, application_id: int, user: Applicant, session: SessionDep, pages: PagesDep
) -> Response:
    application = _offered(session, user, application_id)
    return pages.show(request, "application/offer.html", _page(session, application))


@router.post("/{application_id}/offer")
def accept_offer(
    request: Request,
    application_id: int,
    user: Applicant,
    session: SessionDep,
    pages: PagesDep,
    clock: ClockDep,
    confirm: ShortField = "",
) -> Response:
    application = _offered(session, user, application_id)
    address = path_for(request, "offer_page", application_id=application.id)
    done = RedirectResponse(address, status_code=303)
    if not offers.offer_actions(application).can_accept:  # pressed twice, or by a colleague
        return done
    if confirm != CONFIRM:
        page = _page(session, application, errors={"confirm": CONFIRM_ERROR})
        return pages.show(request, "application/offer.html", page, status_code=400)
    try:
        offers.accept(session, application=application, user=user, now=clock())
    except CbflowError:
        raise HTTPException(status_code=404) from None
    session.commit()
    return done


@router.get("/{application_id}/offer.pdf")
def offer_letter(
    application_id: int, user: Applicant, session: SessionDep, settings: SettingsDep
) -> Response:
    application = _offered(session, user, application_id)
    document = _letter(session, application)
    if document is None:
        raise HTTPException(status_code=404)
    path = stored_file(settings, "documents", document.path, session)
    name = f"{application.reference.replace('/', '-')}-grant-offer.pdf"
    return FileResponse(path, media_type="application/pdf", filename=name)
