"""Published models for council applicants: what a place did and how it is going, version by
version from its selection on, its public documents, and "Adopt this model", which starts an
application from its answers in a round open now (never one whose windows have closed).

A model is public once published, but only the documents its bundle lists are served, and only
a council the round lets adopt it sees the button; anyone else is told why not."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import FileResponse, RedirectResponse, Response
from sqlalchemy import or_
from sqlmodel import Session, col, select

from cbflow.errors import CbflowError
from cbflow.formatting import local_deadline, local_time, long_date
from cbflow.models import Application, Council, Document, PublishedModel, Round, User
from cbflow.services import replication, rounds
from cbflow.services.councils import council_names
from cbflow.web import adoption_route
from cbflow.web.answers import answer_view, question_of
from cbflow.web.applications import APP_STATES
from cbflow.web.auth import require_role
from cbflow.web.deps import ClockDep, PagesDep, SessionDep, SettingsDep, ShortField
from cbflow.web.stored import stored_file
from cbflow.web.templating import Pages, path_for
from cbflow.web.versioning import VersionRow, version_rows

router = APIRouter(prefix="/models")

Applicant = Annotated[User, require_role("applicant")]

NONE_OPEN = (
    "No round that takes your council is open for expressions of interest now, so an "
    "application adopting this model could not be submitted."
)


# ---------------------------------------------------------------------------------------------
# the pages' contexts


@dataclass(frozen=True)
class Listed:
    """A published model the council may adopt, in the list."""

    id: int
    council: str  # the place that published it
    round: str
    version: int
    published: str
    adopted: int | None  # the council's application adopting it, if any
    stage: str  # "Implementing", "Completed": where the place stands


@dataclass(frozen=True)
class ModelsPage:
    council: Council
    models: tuple[Listed, ...]


@dataclass(frozen=True)
class Answer:
    """A question the model answers, and its answer."""

    label: str
    view: dict[str, Any]  # cbflow.web.answers.answer_view


@dataclass(frozen=True)
class Milestone:
    title: str
    due: str
    progress: str  # "Met on 1 April 2013", "Not met", "Not met by its due date" ...


@dataclass(frozen=True)
class Return:
    """A monitoring return the place made."""

    period: int
    dates: str
    submitted: str
    rows: tuple[Answer, ...]


@dataclass(frozen=True)
class DocumentLink:
    href: str
    title: str
    date: str


@dataclass(frozen=True)
class ModelPage:
    model: PublishedModel
    place: str  # the council that published it
    round: Round
    published: str
    answers: tuple[Answer, ...]
    milestones: tuple[Milestone, ...]
    returns: tuple[Return, ...]
    documents: tuple[DocumentLink, ...]
    newer: int | None  # the model's latest version, if this is not it
    versions: tuple[VersionRow, ...]  # every version, latest first
    # the version the council adopted, when a newer one has been published since
    newer_model: replication.NewerVersion | None
    council: Council  # the reader's
    adopted: int | None  # the council's application adopting it, if any
    refusal: str | None  # why the council cannot adopt it
    choices: tuple[dict[str, Any], ...]  # the rounds it may be adopted into, as radio items
    problem: str | None
    into_error: str | None
    errors: dict[str, str]
    route: adoption_route.RouteOffer | None = None  # the rolling route, if it is offered


def _council_of(session: Session, user: User) -> Council:
    council = session.get(Council, user.council_code) if user.council_code else None
    if council is None:  # an applicant account without a council can do nothing here
        raise HTTPException(status_code=403)
    return council


def _model(session: Session, model_id: int) -> PublishedModel:
    model = session.get(PublishedModel, model_id)
    if model is None:
        raise HTTPException(status_code=404)
    return model


def _documents(session: Session, model: PublishedModel) -> list[Document]:
    """The documents a model's page serves: the place's progress reports its bundle lists, and
    this version's replication pack. Never more than the model shows: a model published before
    receipts were left out of bundles still lists them, and they are not served."""
    application = session.get(Application, model.application_id)
    assert application is not None
    listed = {d["path"] for d in model.bundle.get("documents", [])}
    pack = f"{application.reference}/replication_pack/v{model.version}"
    return list(
        session.exec(
            select(Document)
            .where(
                Document.application_id == model.application_id,
                or_(
                    col(Document.path).in_(listed)
                    & col(Document.kind).in_(replication.PUBLISHED_KINDS),
                    col(Document.key) == pack,
                ),
            )
            .order_by(col(Document.id))
        )
    )


@router.get("")
def models_home(
    request: Request, user: Applicant, session: SessionDep, pages: PagesDep
) -> Response:
    council = _council_of(session, user)
    listed = []
    for model in replication.latest_models(session):
        if replication.adoption_refusal(session, model, council) is not None:
            continue
        round_ = session.get(Round, model.round_id)
        assert round_ is not None
        prospectus = rounds.prospectus_of(round_)
        adopted = replication.adoption_of(session, model, council.code)
        place = session.get(Application, model.application_id)
        assert model.id is not None and place is not None
        listed.append(
            Listed(
                id=model.id,
                council=model.bundle["council"]["name"],
                round=round_.title,
                version=model.version,
                published=local_time(model.published_at, prospectus),
                adopted=adopted.id if adopted else None,
                stage=APP_STATES.get(place.state, place.state),
            )
        )
    page = ModelsPage(council=council, models=tuple(listed))
    return pages.show(request, "models/index.html", page)


def _render_model(
    request: Request,
    pages: Pages,
    session: Session,
    model: PublishedModel,
    council: Council,
    now: datetime,
    *,
    problem: str | None = None,
    into_error: str | None = None,
    status_code: int = 200,
) -> Response:
    round_ = session.get(Round, model.round_id)
    assert round_ is not None and model.id is not None
    prospectus = rounds.prospectus_of(round_)
    bundle = model.bundle
    names = council_names(session)
    answers = []
    for question_id, value in bundle.get("answers", {}).items():
        question = question_of(prospectus, question_id)
        if question is not None:
            answers.append(Answer(question.label, answer_view(question, value, names)))
    milestones = tuple(
        Milestone(
            title=m["title"],
            due=long_date(m["due"]),
            progress=f"Met on {long_date(m['met_on'])}" if m.get("met_on") else "Not met",
        )
        for m in bundle.get("milestones", [])
    )
    stage = prospectus.stages.implementation
    returns_form = stage.returns.form if stage and stage.returns else None
    returns = []
    for made in bundle.get("returns", []):
        if not made.get("submitted_at") or returns_form is None:
            continue
        rows = []
        for question in returns_form.questions():
            if question.id in made.get("answers", {}):
                rows.append(
                    Answer(
                        question.label, answer_view(question, made["answers"][question.id], names)
                    )
                )
        returns.append(
            Return(
                period=made["period"],
                dates=f"{long_date(made['start'])} to {long_date(made['end'])}",
                submitted=local_time(datetime.fromisoformat(made["submitted_at"]), prospectus),
                rows=tuple(rows),
            )
        )
    documents = tuple(
        DocumentLink(
            href=path_for(request, "model_document", model_id=model.id, document_id=d.id),
            title=d.title,
            date=long_date(d.created_at.astimezone(prospectus.zone).date()),
        )
        for d in _documents(session, model)
    )
    latest = next(
        (m for m in replication.latest_models(session) if m.application_id == model.application_id),
        model,
    )
    adopted = replication.adoption_of(session, model, council.code)
    source = session.get(Application, model.application_id)
    assert source is not None
    choices = tuple(
        {
            "value": target.slug,
            "text": target.title,
            "hint": {"text": _round_hint(target, round_)},
        }
        for target in replication.adoption_rounds(session, model, council, now)
    )
    page = ModelPage(
        model=model,
        place=bundle["council"]["name"],
        round=round_,
        published=local_time(model.published_at, prospectus),
        answers=tuple(answers),
        milestones=milestones,
        returns=tuple(returns),
        documents=documents,
        newer=latest.id if latest.id != model.id else None,
        versions=version_rows(session, source),
        newer_model=replication.newer_version(session, adopted) if adopted else None,
        council=council,
        adopted=adopted.id if adopted else None,
        refusal=replication.adoption_refusal(session, model, council),
        choices=choices,
        problem=problem,
        into_error=into_error,
        errors={"into": into_error} if into_error else {},
        route=adoption_route.offer(session, model, council, now),
    )
    return pages.show(request, "models/model.html", page, status_code)


def _round_hint(target: Round, source: Round) -> str:
    prospectus = rounds.prospectus_of(target)
    closes = prospectus.timetable.eoi.closes_at(prospectus.zone)
    due = f"Expressions of interest are due by {local_deadline(closes, prospectus)}"
    return f"The round this model comes from. {due}" if target.id == source.id else due


@router.get("/{model_id}")
def model_page(
    request: Request,
    model_id: int,
    user: Applicant,
    session: SessionDep,
    pages: PagesDep,
    clock: ClockDep,
) -> Response:
    council = _council_of(session, user)
    model = _model(session, model_id)
    return _render_model(request, pages, session, model, council, clock())


@router.post("/{model_id}/adopt")
def adopt(
    request: Request,
    model_id: int,
    user: Applicant,
    session: SessionDep,
    pages: PagesDep,
    clock: ClockDep,
    into: ShortField = "",
) -> Response:
    """Adopt into the round chosen (`into`, a round's slug), or the only round offered."""
    council = _council_of(session, user)
    model = _model(session, model_id)
    now = clock()
    existing = replication.adoption_of(session, model, council.code)
    if existing is not None:  # adopting again, or another version: the first adoption stands
        return RedirectResponse(
            path_for(request, "application_home", application_id=existing.id), status_code=303
        )
    refusal = replication.adoption_refusal(session, model, council)
    if refusal is not None:
        return _render_model(
            request, pages, session, model, council, now, problem=refusal, status_code=403
        )
    offered = {r.slug: r for r in replication.adoption_rounds(session, model, council, now)}
    if not offered:  # every round's windows have closed: its application could never be sent
        return _render_model(
            request, pages, session, model, council, now, problem=NONE_OPEN, status_code=409
        )
    if not into and len(offered) == 1:
        into = next(iter(offered))
    target = offered.get(into)
    if target is None:
        error = "Select the round to apply to" if not into else "That round is not open to you"
        return _render_model(
            request, pages, session, model, council, now, into_error=error, status_code=400
        )
    assert model.id is not None
    try:
        application, _ = replication.adopt_model(
            session,
            model_id=model.id,
            council_code=council.code,
            actor=user.email,
            now=now,
            into=target,
        )
    except CbflowError as exc:
        return _render_model(
            request, pages, session, model, council, now, problem=str(exc), status_code=400
        )
    return RedirectResponse(
        path_for(request, "application_home", application_id=application.id), status_code=303
    )


@router.get("/{model_id}/documents/{document_id}")
def model_document(
    model_id: int,
    document_id: int,
    user: Applicant,
    session: SessionDep,
    settings: SettingsDep,
) -> Response:
    _council_of(session, user)
    model = _model(session, model_id)
    found = next((d for d in _documents(session, model) if d.id == document_id), None)
    if found is None:
        raise HTTPException(status_code=404)
    path = stored_file(settings, "documents", found.path, session)
    return FileResponse(path, media_type="application/pdf", filename=Path(found.path).name)
