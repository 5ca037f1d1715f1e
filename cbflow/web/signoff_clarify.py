"""A council's certifier signs off its reply to a clarification request, where the prospectus
asks for sign-off of clarifications: they read the answers as submitted and as changed, with
the explanation, and approve the reply, which answers the request (before its date only)."""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import RedirectResponse, Response
from sqlmodel import Session, col, select

from cbflow.formatting import local_deadline
from cbflow.models import Application, Clarification, Round, User
from cbflow.services import clarifications, partnerships, rounds
from cbflow.services.clarifications import ClarificationRefused
from cbflow.web.clarifying import RequestView, mail_after_all, request_views
from cbflow.web.deps import ClockDep, PagesDep, SessionDep, SettingsDep, ShortField
from cbflow.web.signoff import NOTICE, Certifier
from cbflow.web.templating import Pages, path_for
from cbflow.wording import opening

router = APIRouter(prefix="/sign-off")


@dataclass(frozen=True)
class ReplySignOffPage:
    round: Round
    place: str
    asked: RequestView
    waiting: bool  # the reply waits for sign-off
    error: str | None


@dataclass(frozen=True)
class WaitingReply:
    href: str
    place: str
    round: str
    answer_by: str


@dataclass(frozen=True)
class RepliesPage:
    waiting: tuple[WaitingReply, ...]


@router.get("/clarifications")
def clarification_replies(
    request: Request, user: Certifier, session: SessionDep, pages: PagesDep
) -> Response:
    """The council's replies to clarification requests waiting for sign-off."""
    found = session.exec(
        select(Clarification, Application)
        .join(Application, col(Application.id) == Clarification.application_id)
        .where(
            Application.council_code == user.council_code,
            Clarification.state == clarifications.AWAITING_SIGN_OFF,
        )
        .order_by(col(Clarification.answer_by))
    ).all()
    waiting = []
    for clarification, application in found:
        round_ = session.get(Round, clarification.round_id)
        assert round_ is not None
        waiting.append(
            WaitingReply(
                href=path_for(
                    request, "clarification_sign_off_page", clarification_id=clarification.id
                ),
                place=partnerships.place_of(session, application).name,
                round=round_.title,
                answer_by=local_deadline(clarification.answer_by, rounds.prospectus_of(round_)),
            )
        )
    return pages.show(request, "sign-off/clarifications.html", RepliesPage(tuple(waiting)))


def _theirs(session: Session, user: User, clarification_id: int) -> Clarification:
    """The request, if its application is of the certifier's council."""
    found = session.get(Clarification, clarification_id)
    application = session.get(Application, found.application_id) if found else None
    if found is None or application is None or application.council_code != user.council_code:
        raise HTTPException(status_code=404)
    return found


def _render(
    request: Request,
    pages: Pages,
    session: Session,
    clarification: Clarification,
    error: str | None = None,
    status_code: int = 200,
) -> Response:
    round_ = session.get(Round, clarification.round_id)
    application = session.get(Application, clarification.application_id)
    assert round_ is not None and application is not None
    prospectus = rounds.prospectus_of(round_)
    page = ReplySignOffPage(
        round=round_,
        place=partnerships.place_of(session, application).name,
        asked=request_views(session, prospectus, [clarification])[0],
        waiting=clarification.state == clarifications.AWAITING_SIGN_OFF,
        error=error,
    )
    return pages.show(request, "sign-off/clarification.html", page, status_code)


@router.get("/clarifications/{clarification_id}/reply")
def clarification_sign_off_page(
    request: Request, clarification_id: int, user: Certifier, session: SessionDep, pages: PagesDep
) -> Response:
    return _render(request, pages, session, _theirs(session, user, clarification_id))


@router.post("/clarifications/{clarification_id}/approve-reply")
def approve_clarification_reply(
    request: Request,
    clarification_id: int,
    user: Certifier,
    session: SessionDep,
    pages: PagesDep,
    settings: SettingsDep,
    clock: ClockDep,
    declaration: ShortField = "",
) -> Response:
    clarification = _theirs(session, user, clarification_id)
    if declaration != "agreed":
        error = "Confirm that you approve the reply on behalf of the council"
        return _render(request, pages, session, clarification, error, 400)
    now = clock()
    try:
        clarifications.approve(session, clarification=clarification, certifier=user, now=now)
    except ClarificationRefused as exc:
        return _render(request, pages, session, clarification, opening(f"{exc}."), 409)
    mail = clarifications.tell(session, settings, clarification, "answered", now=now)
    request.session[NOTICE] = "You have signed off the reply: the assessors can now read it."
    answer = RedirectResponse(path_for(request, "sign_off_home"), status_code=303)
    return mail_after_all(answer, mail, settings)
