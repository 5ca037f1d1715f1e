"""The applicant's home: the rounds open to their council, starting an expression of interest,
and their council's applications."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import APIRouter, Form, HTTPException, Request
from fastapi.responses import RedirectResponse, Response
from sqlmodel import col, select

from cbflow.errors import CbflowError
from cbflow.formatting import local_deadline
from cbflow.models import Application, Council
from cbflow.services import applications as service
from cbflow.services import offers, rounds
from cbflow.web.applications.shared import (
    APP_STATES,
    Applicant,
    council_of,
    home_of,
    own_application,
)
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


@dataclass(frozen=True)
class HomePage:
    council: Council
    open_rounds: list[OpenRound]
    applications: list[Listed]


def _offer_status(request: Request, application: Application) -> Link | None:
    """A selected place's grant offer, as the list of applications links to it."""
    actions = offers.offer_actions(application)
    if not actions.offered:
        return None
    return Link(
        href=path_for(request, "offer_page", application_id=application.id),
        text="Grant offer accepted" if actions.accepted else "Grant offer to accept",
    )


@router.get("")
def applications_home(
    request: Request, user: Applicant, session: SessionDep, pages: PagesDep, clock: ClockDep
) -> Response:
    council_code = council_of(user)
    council = session.get(Council, council_code)
    assert council is not None
    now = clock()
    mine = list(
        session.exec(
            select(Application)
            .where(Application.council_code == council_code)
            .order_by(col(Application.id))
        )
    )
    started = {a.round_id for a in mine if a.adopted_from_model_id is None}
    all_rounds = rounds.all_rounds(session)
    open_rounds = []
    for round_ in all_rounds:
        prospectus = rounds.prospectus_of(round_)
        types = prospectus.eligibility.council_types
        if types is not None and council.type not in types:
            continue
        window = prospectus.timetable.eoi
        if not window.is_open(prospectus.zone, now):
            continue
        open_rounds.append(
            OpenRound(
                slug=round_.slug,
                title=round_.title,
                deadline=local_deadline(window.closes_at(prospectus.zone), prospectus),
                started=round_.id in started,
            )
        )
    titles = {r.id: r.title for r in all_rounds}
    listed = [
        Listed(
            id=a.id,
            reference=a.reference,
            round=titles.get(a.round_id, ""),
            state=APP_STATES.get(a.state, a.state),
            href=home_of(request, a),
            offer=_offer_status(request, a),
        )
        for a in mine
    ]
    page = HomePage(council=council, open_rounds=open_rounds, applications=listed)
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
        prospectus = rounds.prospectus_of(round_)
        service.check_window(prospectus, "eoi", clock())
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
