"""Following a pilot, for council officers: the selected places their council may follow, each
with a Follow button; a place's page (its plan, milestones, progress reports and, where it shares
them, its returns' figures); unfollowing, and saying the council intends to adopt it. A place
the council may not follow, or that was not selected, is a page not found (cbflow.services.
following says who may follow what); staff see every place through their own pages.

And the place's own setting, from its returns page: whether its returns' figures are shared with
the councils following it. The form carries the setting as the page showed it: changed by a
colleague since, the change is refused (409) and the page says what it is now."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import FileResponse, RedirectResponse, Response
from sqlmodel import Session

from cbflow.errors import NotFound
from cbflow.formatting import local_time, long_date
from cbflow.lifecycle import FUNDED
from cbflow.models import Application, Council, User
from cbflow.services import following, rounds
from cbflow.services.councils import council_names
from cbflow.web.answers import answer_view, question_of
from cbflow.web.applications import own_application
from cbflow.web.auth import require_role
from cbflow.web.deps import ClockDep, PagesDep, SessionDep, SettingsDep, ShortField
from cbflow.web.replication import Answer, DocumentLink, Milestone, Return
from cbflow.web.stored import stored_file
from cbflow.web.templating import path_for

router = APIRouter(prefix="/pilots")
# the place's own setting, beside its returns pages
place_router = APIRouter(prefix="/applications")

Applicant = Annotated[User, require_role("applicant")]


def _council_of(session: Session, user: User) -> Council:
    council = session.get(Council, user.council_code) if user.council_code else None
    if council is None:  # an applicant account without a council follows nothing
        raise HTTPException(status_code=404)
    return council


def _place(session: Session, application_id: int, council: Council) -> Application:
    try:
        return following.place_for(session, application_id, council)
    except NotFound:
        raise HTTPException(status_code=404) from None


@dataclass(frozen=True)
class Listed:
    id: int
    name: str
    round: str
    following: bool
    intends: bool


@dataclass(frozen=True)
class PilotsPage:
    council: Council
    places: tuple[Listed, ...]


@router.get("")
def pilots_home(
    request: Request, user: Applicant, session: SessionDep, pages: PagesDep
) -> Response:
    council = _council_of(session, user)
    follows = following.follows_of(session, council.code)
    listed = []
    titles = {r.id: r.title for r in rounds.all_rounds(session)}
    for place in following.followable(session, council):
        assert place.id is not None
        mine = follows.get(place.id)
        listed.append(
            Listed(
                id=place.id,
                name=following.place_name(session, place),
                round=titles[place.round_id],
                following=mine is not None,
                intends=mine is not None and mine.intends_to_adopt_at is not None,
            )
        )
    return pages.show(request, "pilots/index.html", PilotsPage(council, tuple(listed)))


@dataclass(frozen=True)
class PlacePage:
    place: following.PlaceView
    council: Council  # the reader's
    following: bool
    followed: str  # when the council began following ("" when it does not)
    intends: bool
    intends_since: str
    answers: tuple[Answer, ...]
    milestones: tuple[Milestone, ...]
    reports: tuple[DocumentLink, ...]
    returns: tuple[Return, ...] | None  # None: the place does not share them
    models: tuple[str, ...]  # "Version 1, published at ..."
    met: int
    still_due: int


def _milestone(m: following.Milestone, today: Any) -> Milestone:
    if m.met_on is not None:
        progress = f"Met on {long_date(m.met_on)}"
    elif m.due < today:
        progress = "Not met by its due date"
    else:
        progress = "Not yet met"
    return Milestone(m.title, long_date(m.due), progress)


def _place_page(
    request: Request, session: Session, place: Application, council: Council, now: datetime
) -> PlacePage:
    view = following.view(session, place)
    prospectus = view.prospectus
    names = council_names(session)
    answers = []
    for question_id, value in view.answers.items():
        question = question_of(prospectus, question_id)
        if question is not None:
            answers.append(Answer(question.label, answer_view(question, value, names)))
    stage = prospectus.stages.implementation
    form = stage.returns.form if stage and stage.returns else None
    returns = None
    if view.returns is not None:
        returns = tuple(
            Return(
                period=r.period,
                dates=f"{long_date(r.start)} to {long_date(r.end)}",
                submitted=local_time(r.submitted_at, prospectus),
                rows=tuple(
                    Answer(q.label, answer_view(q, r.answers[q.id], names))
                    for q in (form.questions() if form else [])
                    if q.id in r.answers
                ),
            )
            for r in view.returns
        )
    mine = following.follow_of(session, place, council.code)
    today = now.astimezone(prospectus.zone).date()
    assert place.id is not None
    return PlacePage(
        place=view,
        council=council,
        following=mine is not None,
        followed=local_time(mine.followed_at, prospectus) if mine else "",
        intends=mine is not None and mine.intends_to_adopt_at is not None,
        intends_since=(
            local_time(mine.intends_to_adopt_at, prospectus)
            if mine is not None and mine.intends_to_adopt_at is not None
            else ""
        ),
        answers=tuple(answers),
        milestones=tuple(_milestone(m, today) for m in view.milestones),
        reports=tuple(
            DocumentLink(
                href=path_for(request, "pilot_document", application_id=place.id, document_id=d.id),
                title=d.title,
                date=long_date(d.created_at.astimezone(prospectus.zone).date()),
            )
            for d in view.reports
        ),
        returns=returns,
        models=tuple(
            f"Version {m.version}, published at {local_time(m.published_at, prospectus)}"
            for m in view.models
        ),
        met=sum(1 for m in view.milestones if m.met_on is not None),
        still_due=sum(1 for m in view.milestones if m.met_on is None),
    )


@router.get("/{application_id}")
def pilot_page(
    request: Request,
    application_id: int,
    user: Applicant,
    session: SessionDep,
    pages: PagesDep,
    clock: ClockDep,
) -> Response:
    council = _council_of(session, user)
    place = _place(session, application_id, council)
    return pages.show(
        request, "pilots/place.html", _place_page(request, session, place, council, clock())
    )


def _back(request: Request, application_id: int, to: str) -> Response:
    """Back to the list (`to` "list") or the place's page, as the form that posted asks."""
    if to == "list":
        return RedirectResponse(path_for(request, "pilots_home"), status_code=303)
    return RedirectResponse(
        path_for(request, "pilot_page", application_id=application_id), status_code=303
    )


@router.post("/{application_id}/follow")
def follow(
    request: Request,
    application_id: int,
    user: Applicant,
    session: SessionDep,
    clock: ClockDep,
    back: ShortField = "",
) -> Response:
    council = _council_of(session, user)
    place = _place(session, application_id, council)
    following.follow(session, application=place, council=council, actor=user.email, now=clock())
    return _back(request, application_id, back)


@router.post("/{application_id}/unfollow")
def unfollow(
    request: Request,
    application_id: int,
    user: Applicant,
    session: SessionDep,
    clock: ClockDep,
    back: ShortField = "",
) -> Response:
    council = _council_of(session, user)
    place = _place(session, application_id, council)
    following.unfollow(session, application=place, council=council, actor=user.email, now=clock())
    return _back(request, application_id, back)


@router.post("/{application_id}/intend")
def intend(
    request: Request,
    application_id: int,
    user: Applicant,
    session: SessionDep,
    clock: ClockDep,
    pages: PagesDep,
    intends: ShortField = "",
) -> Response:
    """`intends` "yes": the council intends to adopt the place's model; "no": no longer."""
    council = _council_of(session, user)
    place = _place(session, application_id, council)
    if intends not in ("yes", "no"):
        return _refused(request, pages, 400, "Say whether your council intends to adopt it.")
    try:
        following.intend(
            session,
            application=place,
            council=council,
            intends=intends == "yes",
            actor=user.email,
            now=clock(),
        )
    except NotFound:
        return _refused(
            request, pages, 409, "Follow the place first: then you can say you intend to adopt it."
        )
    return _back(request, application_id, "")


def _refused(request: Request, pages: PagesDep, status: int, message: str) -> Response:
    return pages.render(
        request,
        "error.html",
        status_code=status,
        title="Nothing was changed" if status != 400 else "There is a problem",
        message=message,
    )


@router.get("/{application_id}/documents/{document_id}")
def pilot_document(
    application_id: int,
    document_id: int,
    user: Applicant,
    session: SessionDep,
    settings: SettingsDep,
) -> Response:
    """One of the place's progress reports, to a council that may follow it."""
    council = _council_of(session, user)
    place = _place(session, application_id, council)
    shared = following.reports_of(session, place) if place.share_returns else []
    found = next((d for d in shared if d.id == document_id), None)
    if found is None:
        raise HTTPException(status_code=404)
    path = stored_file(settings, "documents", found.path, session)
    return FileResponse(path, media_type="application/pdf", filename=Path(found.path).name)


@place_router.post("/{application_id}/returns/share")
def share_returns(
    request: Request,
    application_id: int,
    user: Applicant,
    session: SessionDep,
    clock: ClockDep,
    pages: PagesDep,
    share: ShortField = "",
    shown: ShortField = "",
) -> Response:
    """The place's officers share its returns' figures with its followers ("yes") or stop
    ("no"); `shown` is the setting as their page showed it."""
    application = own_application(session, user, application_id)
    if application.state not in FUNDED:
        raise HTTPException(status_code=404)
    if share not in ("yes", "no") or shown not in ("yes", "no"):
        return _refused(request, pages, 400, "Choose whether to share your returns' figures.")
    try:
        following.set_share_returns(
            session,
            application=application,
            share=share == "yes",
            shown=shown == "yes",
            actor=user.email,
            now=clock(),
        )
    except following.StaleSetting as exc:
        message = f"{str(exc)[0].upper()}{str(exc)[1:]}. Go back to your returns to change it."
        return _refused(request, pages, 409, message)
    return RedirectResponse(
        path_for(request, "returns_list", application_id=application_id), status_code=303
    )
