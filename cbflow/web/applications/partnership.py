"""A partnership's councils: the lead names the place and its member councils; each member
council's officers confirm its membership. Every council of the application sees the page; only
the lead's officers change the list, and only while the expression of interest is a draft."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import RedirectResponse, Response
from sqlmodel import Session, col, select

from cbflow.db import lock_for_update
from cbflow.errors import CbflowError, NotFound, ValidationFailed
from cbflow.formatting import local_time
from cbflow.lifecycle import AppState
from cbflow.models import Application, Council, Round, User
from cbflow.prospectus import Prospectus
from cbflow.services import partnerships, rounds
from cbflow.services.partnerships import MAX_PLACE_NAME, Place
from cbflow.web.applications.shared import Applicant, council_of, own_application
from cbflow.web.deps import CheckedField, ClockDep, PagesDep, SessionDep, ShortField
from cbflow.web.templating import Pages, errors_as_list, path_for
from cbflow.wording import opening

router = APIRouter(prefix="/applications")

NOTICE = "partnership_notice"  # what the last change did, for the next page to say once


@dataclass(frozen=True)
class MemberRow:
    code: str
    name: str
    role: str  # "Lead council" or "Member council"
    status: str  # confirmed when and by whom, or awaiting
    confirmed: bool
    removable: bool


@dataclass(frozen=True)
class PartnershipPage:
    application: Application
    round: Round
    place: Place
    rows: tuple[MemberRow, ...]
    mine: str  # the signed-in officer's council
    is_lead: bool  # the officer works for the lead council: they change the list
    can_change: bool  # the list and name can change now (a draft expression of interest)
    can_add: bool  # there is room for another council
    to_confirm: bool  # the officer's council is a member that has not confirmed yet
    council_items: tuple[dict[str, str], ...]  # the select's options: councils that may be added
    place_name: str  # as typed (or as stored)
    shown_name: str  # the name the page showed, so a stale rename is caught
    limits: str  # how many councils a partnership has, in words
    problems: tuple[str, ...]  # what still stops the expression of interest being submitted
    errors: dict[str, str]
    error_list: list[dict[str, str]]
    problem: str | None
    notice: str | None
    back: str


def _partnership_or_404(session: Session, application: Application) -> tuple[Round, Prospectus]:
    round_ = session.get(Round, application.round_id)
    assert round_ is not None
    prospectus = rounds.prospectus_of(round_)
    if prospectus.applicants.partnership is None or application.adopted_from_model_id:
        raise HTTPException(status_code=404)  # this round takes councils on their own
    return round_, prospectus


def _limits(prospectus: Prospectus) -> str:
    partnership = prospectus.applicants.partnership
    assert partnership is not None
    most = partnership.max_councils
    low = partnership.min_councils
    if most is None:
        return f"A partnership in this round has at least {low} councils, the lead included."
    return f"A partnership in this round has between {low} and {most} councils, the lead included."


def _choices(
    session: Session, prospectus: Prospectus, application: Application, place: Place
) -> tuple[dict[str, str], ...]:
    """The select's options: the councils the lead may add, of a type the round admits and not
    already in this place (one in another application is refused, with the reason, if chosen)."""
    types = partnerships.member_types(prospectus)
    statement = select(Council).order_by(col(Council.name))
    if types is not None:
        statement = statement.where(col(Council.type).in_(types))
    taken = set(place.codes)
    councils = [c for c in session.exec(statement).all() if c.code not in taken]
    return (
        {"value": "", "text": "Choose a council"},
        *({"value": c.code, "text": c.name} for c in councils),
    )


def _status(member: partnerships.MemberView, prospectus: Prospectus) -> str:
    if member.lead:
        return "Leads the partnership"
    if member.confirmed_at is None:
        return f"Waiting for {member.name} to confirm"
    return f"Confirmed at {local_time(member.confirmed_at, prospectus)} by {member.confirmed_by}"


def _render(
    request: Request,
    pages: Pages,
    session: Session,
    user: User,
    application: Application,
    *,
    typed: str | None = None,
    shown: str | None = None,
    errors: dict[str, str] | None = None,
    problem: str | None = None,
    status_code: int = 200,
) -> Response:
    round_, prospectus = _partnership_or_404(session, application)
    place = partnerships.place_of(session, application)
    mine = council_of(user)
    is_lead = mine == place.lead.code
    can_change = is_lead and application.state == AppState.EOI_DRAFT
    partnership = prospectus.applicants.partnership
    assert partnership is not None
    room = partnership.max_councils is None or len(place.councils) < partnership.max_councils
    rows = tuple(
        MemberRow(
            code=m.code,
            name=m.name,
            role="Lead council" if m.lead else "Member council",
            status=_status(m, prospectus),
            confirmed=m.lead or m.confirmed_at is not None,
            removable=can_change and not m.lead,
        )
        for m in place.councils
    )
    to_confirm = any(m.code == mine and m.confirmed_at is None for m in place.members)
    errors = errors or {}
    stored = application.place_name or ""
    page = PartnershipPage(
        application=application,
        round=round_,
        place=place,
        rows=rows,
        mine=mine,
        is_lead=is_lead,
        can_change=can_change,
        can_add=can_change and room,
        to_confirm=to_confirm and application.state == AppState.EOI_DRAFT,
        council_items=(
            _choices(session, prospectus, application, place) if can_change and room else ()
        ),
        place_name=typed if typed is not None else stored,
        shown_name=shown if shown is not None else stored,
        limits=_limits(prospectus),
        problems=tuple(opening(p) for p in partnerships.submission_problems(session, application)),
        errors=errors,
        error_list=errors_as_list(errors),
        problem=problem,
        notice=request.session.pop(NOTICE, None),
        back=path_for(request, "task_list", application_id=application.id, stage="eoi"),
    )
    return pages.show(request, "application/partnership.html", page, status_code)


def _again(request: Request, application: Application, notice: str) -> Response:
    request.session[NOTICE] = notice
    address = path_for(request, "partnership_page", application_id=application.id)
    return RedirectResponse(address, status_code=303)


def _lead_only(session: Session, user: User, application: Application) -> None:
    """Only the lead council's officers change the partnership's name and councils."""
    _partnership_or_404(session, application)
    if council_of(user) != application.council_code:
        raise HTTPException(status_code=403)


@router.get("/{application_id}/partnership")
def partnership_page(
    request: Request, application_id: int, user: Applicant, session: SessionDep, pages: PagesDep
) -> Response:
    application = own_application(session, user, application_id)
    return _render(request, pages, session, user, application)


@router.post("/{application_id}/partnership/name")
def name_partnership(
    request: Request,
    application_id: int,
    user: Applicant,
    session: SessionDep,
    pages: PagesDep,
    clock: ClockDep,
    place_name: CheckedField = "",
    shown_name: CheckedField = "",
) -> Response:
    """Name the place. The page carries the name it showed: if someone else renamed the place
    since, this name is not saved and the person is told what the name is now."""
    application = own_application(session, user, application_id)
    _lead_only(session, user, application)
    if len(place_name) > MAX_PLACE_NAME * 4 or len(shown_name) > MAX_PLACE_NAME * 4:
        errors = {"place_name": f"The name must be {MAX_PLACE_NAME} characters or fewer"}
        return _render(
            request, pages, session, user, application, typed="", errors=errors, status_code=400
        )
    lock_for_update(session, application)  # two renames at once: the second sees the first
    stored = application.place_name or ""
    if shown_name.strip() != stored:
        problem = (
            f"Someone else renamed the place to “{stored or 'no name'}” while you were on this "
            "page, so your name was not saved. Check the name below and save again if needed."
        )
        return _render(
            request,
            pages,
            session,
            user,
            application,
            typed=place_name,
            problem=problem,
            status_code=409,
        )
    try:
        partnerships.name_place(
            session, application=application, name=place_name, actor=user.email, now=clock()
        )
    except ValidationFailed as failed:
        return _render(
            request,
            pages,
            session,
            user,
            application,
            typed=place_name,
            errors=failed.errors,
            status_code=400,
        )
    except CbflowError as exc:
        return _render(
            request, pages, session, user, application, problem=str(exc), status_code=409
        )
    return _again(request, application, f"The place is now called {application.place_name}.")


@router.post("/{application_id}/partnership/members")
def add_partner_council(
    request: Request,
    application_id: int,
    user: Applicant,
    session: SessionDep,
    pages: PagesDep,
    clock: ClockDep,
    council: ShortField = "",
) -> Response:
    application = own_application(session, user, application_id)
    _lead_only(session, user, application)
    if not council.strip():
        errors = {"council": "Choose the council to add"}
        return _render(request, pages, session, user, application, errors=errors, status_code=400)
    try:
        member = partnerships.add_member(
            session,
            application=application,
            council_code=council.strip(),
            actor=user.email,
            now=clock(),
        )
    except ValidationFailed as failed:
        return _render(
            request, pages, session, user, application, errors=failed.errors, status_code=400
        )
    except NotFound:
        errors = {"council": "Choose a council from the list"}
        return _render(request, pages, session, user, application, errors=errors, status_code=400)
    except CbflowError as exc:
        return _render(
            request, pages, session, user, application, problem=str(exc), status_code=409
        )
    added = session.get(Council, member.council_code)
    name = added.name if added else member.council_code
    return _again(
        request,
        application,
        f"{name} is added. Its officers must now sign in and confirm its membership.",
    )


@router.post("/{application_id}/partnership/members/{council_code}/remove")
def remove_partner_council(
    request: Request,
    application_id: int,
    council_code: str,
    user: Applicant,
    session: SessionDep,
    pages: PagesDep,
    clock: ClockDep,
) -> Response:
    application = own_application(session, user, application_id)
    _lead_only(session, user, application)
    if len(council_code) > 8:
        raise HTTPException(status_code=404)
    try:
        partnerships.remove_member(
            session,
            application=application,
            council_code=council_code,
            actor=user.email,
            now=clock(),
        )
    except NotFound:
        raise HTTPException(status_code=404) from None
    except CbflowError as exc:
        return _render(
            request, pages, session, user, application, problem=str(exc), status_code=409
        )
    removed = session.get(Council, council_code)
    return _again(
        request, application, f"{removed.name if removed else council_code} is taken out."
    )


@router.post("/{application_id}/partnership/confirm")
def confirm_partnership(
    request: Request,
    application_id: int,
    user: Applicant,
    session: SessionDep,
    pages: PagesDep,
    clock: ClockDep,
) -> Response:
    """A member council's officer confirms that their council is part of the place."""
    application = own_application(session, user, application_id)
    _partnership_or_404(session, application)
    mine = council_of(user)
    if mine == application.council_code:
        raise HTTPException(status_code=403)  # the lead confirmed as it started the bid
    if application.state != AppState.EOI_DRAFT:
        problem = "The expression of interest is no longer a draft: its councils are settled."
        return _render(request, pages, session, user, application, problem=problem, status_code=409)
    now: datetime = clock()
    partnerships.confirm_membership(
        session, application=application, council_code=mine, actor=user.email, now=now
    )
    place = partnerships.place_of(session, application)
    return _again(
        request, application, f"You have confirmed that your council is part of {place.name}."
    )
