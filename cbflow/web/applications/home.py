"""The applicant's home: the rounds open to their council, starting an expression of interest,
and their council's applications."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import APIRouter, Form, HTTPException, Request
from fastapi.responses import RedirectResponse, Response
from sqlmodel import Session

from cbflow.errors import CbflowError
from cbflow.formatting import local_deadline
from cbflow.models import Application, Council
from cbflow.services import applications as service
from cbflow.services import clarifications, deadlines, offers, partnerships, rounds
from cbflow.web.applications.shared import (
    APP_STATES,
    Applicant,
    council_of,
    home_of,
    own_application,
)
from cbflow.web.applications.support import SupportPanel, panels
from cbflow.web.deps import ClockDep, PagesDep, SessionDep
from cbflow.web.templating import path_for

router = APIRouter(prefix="/applications")


@dataclass(frozen=True)
class OpenRound:
    slug: str
    title: str
    deadline: str
    started: bool


@dataclass(frozen=True)
class Link:
    href: str
    text: str


@dataclass(frozen=True)
class Listed:
    """One of the council's applications, as its list shows it."""

    id: int | None
    reference: str
    round: str
    state: str
    href: str
    offer: Link | None  # its grant offer, once offered
    place: str  # the partnership's name and this council's part in it; blank for a council alone
    confirm: Link | None  # a member council still to confirm its membership
    clarify: Link | None = None  # a clarification request waiting for the council's reply


@dataclass(frozen=True)
class HomePage:
    council: Council
    open_rounds: list[OpenRound]
    applications: list[Listed]
    support: list[SupportPanel]  # the support on offer to each application, and asked for


def _offer_status(request: Request, application: Application) -> Link | None:
    """A selected place's grant offer, as the list of applications links to it."""
    actions = offers.offer_actions(application)
    if not actions.offered:
        return None
    return Link(
        href=path_for(request, "offer_page", application_id=application.id),
        text="Grant offer accepted" if actions.accepted else "Grant offer to accept",
    )


def _listed(
    request: Request,
    session: Session,
    application: Application,
    council: Council,
    titles: dict[int | None, str],
) -> Listed:
    place = partnerships.place_of(session, application)
    part, confirm = "", None
    if place.is_partnership:
        lead = place.lead.code == council.code
        part = f"{place.name}, {'led by your council' if lead else 'led by ' + place.lead.name}"
        waiting = any(m.code == council.code and m.confirmed_at is None for m in place.members)
        if waiting:
            confirm = Link(
                href=path_for(request, "partnership_page", application_id=application.id),
                text="Confirm your council’s membership",
            )
    return Listed(
        id=application.id,
        reference=application.reference,
        round=titles.get(application.round_id, ""),
        state=APP_STATES.get(application.state, application.state),
        href=home_of(request, application),
        offer=_offer_status(request, application),
        place=part,
        confirm=confirm,
        clarify=_clarify(request, session, application),
    )


def _clarify(request: Request, session: Session, application: Application) -> Link | None:
    """The clarification request the council has still to answer (the earliest due)."""
    waiting = [
        c for c in clarifications.pending_of(session, application) if c.state == clarifications.OPEN
    ]
    if not waiting:
        return None
    first = min(waiting, key=lambda c: c.answer_by)
    href = path_for(
        request, "clarification_page", application_id=application.id, clarification_id=first.id
    )
    return Link(href=href, text="Clarification requested: answer it")


@router.get("")
def applications_home(
    request: Request, user: Applicant, session: SessionDep, pages: PagesDep, clock: ClockDep
) -> Response:
    council_code = council_of(user)
    council = session.get(Council, council_code)
    assert council is not None
    now = clock()
    mine = partnerships.applications_of_council(session, council_code)
    started = {a.round_id for a in mine if a.adopted_from_model_id is None}
    all_rounds = rounds.all_rounds(session)
    open_rounds = []
    for round_ in all_rounds:
        prospectus = rounds.prospectus_of(round_)
        types = prospectus.eligibility.council_types
        if types is not None and council.type not in types:
            continue
        closes = deadlines.stage_closes(session, round_, "eoi")
        if not prospectus.timetable.eoi.opens_at(prospectus.zone) <= now < closes:
            continue
        open_rounds.append(
            OpenRound(
                slug=round_.slug,
                title=round_.title,
                deadline=local_deadline(closes, prospectus),
                started=round_.id in started,
            )
        )
    titles = {r.id: r.title for r in all_rounds}
    listed = [_listed(request, session, a, council, titles) for a in mine]
    page = HomePage(
        council=council,
        open_rounds=open_rounds,
        applications=listed,
        support=panels(session, council, mine),
    )
    return pages.show(request, "application/index.html", page)


@router.post("/start")
def start(
    request: Request,
    user: Applicant,
    session: SessionDep,
    clock: ClockDep,
    round_slug: Annotated[str, Form(alias="round")] = "",
) -> Response:
    council_code = council_of(user)
    try:
        round_ = rounds.get_round(session, round_slug)
        assert round_.id is not None
        joined = partnerships.application_of_council(session, round_.id, council_code)
        if joined is not None:  # already in the round, as lead or member: go to it
            return RedirectResponse(home_of(request, joined), status_code=303)
        prospectus = rounds.prospectus_of(round_)
        service.check_window(
            prospectus, "eoi", clock(), deadlines.stage_closes(session, round_, "eoi")
        )
        application, _ = service.start_application(
            session, round_=round_, council_code=council_code, actor=user.email, now=clock()
        )
    except CbflowError:
        raise HTTPException(status_code=404) from None
    address = path_for(request, "task_list", application_id=application.id, stage="eoi")
    return RedirectResponse(address, status_code=303)


@router.get("/{application_id}")
def application_home(
    request: Request, application_id: int, user: Applicant, session: SessionDep
) -> Response:
    application = own_application(session, user, application_id)
    return RedirectResponse(home_of(request, application), status_code=303)
