"""The page a partner's contact reaches from their single-use link: the place, the organisation
and the amounts asked, with a form to confirm them (giving their name) and one to decline them
(giving a reason). Opening the page spends nothing, so a mail scanner that opens links does not
use one up; only the answer, a POST, spends it. A link used, expired or unknown gets a plain
page saying so and to ask the council for a new one."""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import APIRouter, Request
from fastapi.responses import Response
from sqlmodel import Session

from cbflow.errors import ValidationFailed
from cbflow.formatting import local_deadline, money
from cbflow.models import Application, PartnerContribution, Round
from cbflow.prospectus import partner_type_name
from cbflow.services import contributions, partnerships, rounds
from cbflow.services.contributions import LinkUnusable
from cbflow.web.deps import ClockDep, PagesDep, ReasonField, SessionDep, ShortField
from cbflow.web.templating import Pages, errors_as_list

router = APIRouter()

# what the link's page and answer say when the link cannot be used: nothing about what it was
UNUSABLE = 400


@dataclass(frozen=True)
class PartnerPage:
    token: str
    organisation: str
    type_name: str
    contact_name: str
    place: str
    council: str  # the lead council, which asked
    round_title: str
    amounts: tuple[tuple[str, str], ...]  # (year, amount)
    total: str
    until: str  # when the link stops working
    typed_name: str  # as typed
    typed_reason: str  # as typed
    errors: dict[str, str]
    error_list: list[dict[str, str]]


@dataclass(frozen=True)
class ThanksPage:
    confirmed: bool
    organisation: str
    place: str
    total: str


def _unusable(request: Request, pages: Pages) -> Response:
    return pages.render(request, "partner/unusable.html", status_code=UNUSABLE)


def _about(session: Session, row: PartnerContribution) -> tuple[Application, Round, str]:
    application = session.get(Application, row.application_id)
    assert application is not None
    round_ = session.get(Round, application.round_id)
    assert round_ is not None
    return application, round_, partnerships.place_of(session, application).name


def _show(
    request: Request,
    pages: Pages,
    session: Session,
    token: str,
    row: PartnerContribution,
    *,
    name: str = "",
    reason: str = "",
    errors: dict[str, str] | None = None,
    status_code: int = 200,
) -> Response:
    application, round_, place = _about(session, row)
    prospectus = rounds.prospectus_of(round_)
    years = prospectus.partners.years if prospectus.partners else sorted(row.amounts)
    lead = partnerships.place_of(session, application).lead.name
    assert row.token_expires_at is not None
    errors = errors or {}
    page = PartnerPage(
        token=token,
        organisation=row.organisation,
        type_name=partner_type_name(row.partner_type),
        contact_name=row.contact_name,
        place=place,
        council=lead,
        round_title=prospectus.title,
        amounts=tuple((y, money(contributions.pence_of(row, y))) for y in years),
        total=money(contributions.total_pence(row)),
        until=local_deadline(row.token_expires_at, prospectus),
        typed_name=name,
        typed_reason=reason,
        errors=errors,
        error_list=errors_as_list(errors),
    )
    return pages.show(request, "partner/confirm.html", page, status_code)


@router.get("/partner/{token}")
def partner_page(
    request: Request, token: str, pages: PagesDep, session: SessionDep, clock: ClockDep
) -> Response:
    row = contributions.by_link(session, token, clock())
    if row is None:
        return _unusable(request, pages)
    return _show(request, pages, session, token, row)


@router.post("/partner/{token}")
def partner_answer(
    request: Request,
    token: str,
    pages: PagesDep,
    session: SessionDep,
    clock: ClockDep,
    answer: ShortField = "",
    name: ShortField = "",
    reason: ReasonField = "",
) -> Response:
    now = clock()
    row = contributions.by_link(session, token, now)
    if row is None:
        return _unusable(request, pages)
    if answer not in ("confirm", "decline"):  # not a form of the page: nothing is spent
        return _show(request, pages, session, token, row, status_code=400)
    try:
        row = contributions.respond(
            session, token=token, confirm=answer == "confirm", name=name, reason=reason, now=now
        )
    except ValidationFailed as failed:
        return _show(
            request,
            pages,
            session,
            token,
            row,
            name=name[:1000],
            reason=reason,
            errors=failed.errors,
            status_code=400,
        )
    except LinkUnusable:
        return _unusable(request, pages)
    _, _, place = _about(session, row)
    page = ThanksPage(
        confirmed=row.status == contributions.CONFIRMED,
        organisation=row.organisation,
        place=place,
        total=money(contributions.total_pence(row)),
    )
    return pages.show(request, "partner/thanks.html", page)
