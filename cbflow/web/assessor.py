"""An assessor's pages: the applications assigned to them, scoring one against the prospectus's
criteria (a draft to come back to, then one submission), declaring a conflict of interest, and
reading the disagreements that went to moderation.

Every page under /assess/{application} is for an assessor assigned to the application who has
not declared a conflict with its council: anything else is 404, so nobody learns what others
are assessing."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from typing import Annotated, Any, TypedDict

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import RedirectResponse, Response
from markupsafe import Markup
from sqlmodel import Session

from cbflow.errors import CbflowError, ValidationFailed
from cbflow.formatting import local_time
from cbflow.lifecycle import AppState
from cbflow.models import Application, Assignment, Council, Round, User
from cbflow.prospectus import AssessmentStage, Prospectus
from cbflow.render import markdown_filter
from cbflow.services import assessment, rounds
from cbflow.services.applications import all_answers
from cbflow.services.councils import council_names
from cbflow.web.answers import answer_view, question_of
from cbflow.web.auth import require_role
from cbflow.web.deps import ClockDep, FormDep, PagesDep, ReasonField, SessionDep
from cbflow.web.templating import Pages, errors_as_list, path_for

router = APIRouter(prefix="/assess")

Assessor = Annotated[User, require_role("assessor")]

NOTICE = "assess_notice"  # a one-off message for the next page, kept in the session
STATUS_TAGS = {
    "not started": {"text": "Not started", "classes": "govuk-tag--blue"},
    "in progress": {"text": "In progress", "classes": "govuk-tag--light-blue"},
    "submitted": {"text": "Submitted", "classes": "govuk-tag--green"},
}


def _notice(request: Request) -> str | None:
    notice = request.session.pop(NOTICE, None)
    return notice if isinstance(notice, str) else None


class Work:
    """One assessor's assignment to one application, with its round and assessment stage."""

    def __init__(self, session: Session, user: User, application_id: int) -> None:
        assignment = assessment.assignment_of(session, user, application_id)
        application = session.get(Application, application_id)
        if assignment is None or application is None:
            raise HTTPException(status_code=404)
        round_ = session.get(Round, application.round_id)
        council = session.get(Council, application.council_code)
        assert round_ is not None and council is not None
        prospectus = rounds.prospectus_of(round_)
        if prospectus.stages.assessment is None:
            raise HTTPException(status_code=404)
        self.session = session
        self.user = user
        self.assignment: Assignment = assignment
        self.application = application
        self.round = round_
        self.council = council
        self.prospectus: Prospectus = prospectus
        self.stage: AssessmentStage = prospectus.stages.assessment

    @property
    def submitted(self) -> bool:
        return self.assignment.submitted_at is not None

    @property
    def open(self) -> bool:
        """Scores can still be saved or submitted."""
        return not self.submitted and self.application.state == AppState.UNDER_ASSESSMENT

    def header(self) -> Header:
        """What every page about the application shows."""
        return Header(
            application=self.application,
            round=self.round,
            council=self.council,
            submitted=self.submitted,
            open=self.open,
        )

    def address(self, request: Request) -> str:
        """The scoring page's address: where the assessor comes back to."""
        return path_for(request, "scoring_page", application_id=self.application.id)


class Header(TypedDict):
    """The fields every page about one application has first: its round and council, and
    whether the assessor has submitted their scores and can still change anything."""

    application: Application
    round: Round
    council: Council
    submitted: bool
    open: bool


# ---------------------------------------------------------------------------------------------
# the pages' contexts


@dataclass(frozen=True)
class Assigned:
    """An application assigned to the assessor, in their list."""

    id: int
    council: str
    reference: str
    round: str
    tag: dict[str, str]  # GOV.UK tag: how far their scoring has gone


@dataclass(frozen=True)
class Disagreement:
    """An application whose assessors' scores went to moderation, for an assessor who has
    given theirs."""

    id: int
    council: str
    round: str
    count: int  # criteria sent to moderation
    open: int  # of which not yet moderated


@dataclass(frozen=True)
class AssignedPage:
    assignments: tuple[Assigned, ...]
    disagreements: tuple[Disagreement, ...]
    notice: str | None


@dataclass(frozen=True)
class Evidence:
    """A council's answer to a question a criterion is scored on."""

    label: str
    view: dict[str, Any]  # cbflow.web.answers.answer_view


@dataclass(frozen=True)
class Criterion:
    """A criterion to score: its guidance, the council's evidence, and the assessor's score
    (the form's values, or the one submitted)."""

    id: str
    title: str
    share: Decimal  # per cent of the total score
    minimum: int | None
    guidance: Markup | None
    evidence: tuple[Evidence, ...]
    justification: str  # in the form
    choices: tuple[dict[str, Any], ...]  # the scale's radio items, the chosen one checked
    score_text: str  # the score submitted, with its label
    justification_lines: tuple[str, ...]  # the reason submitted


@dataclass(frozen=True)
class ApplicationPage:
    application: Application
    round: Round
    council: Council
    submitted: bool
    open: bool


@dataclass(frozen=True)
class ScoringPage(ApplicationPage):
    criteria: tuple[Criterion, ...]
    errors: dict[str, str]
    error_list: list[dict[str, str]]
    problem: str | None
    notice: str | None
    scale_hint: str
    justification_required: bool
    submitted_at: str | None


@dataclass(frozen=True)
class ConflictPage(ApplicationPage):
    reason: str
    errors: dict[str, str]
    error_list: list[dict[str, str]]
    problem: str | None


@dataclass(frozen=True)
class GivenScore:
    who: str  # "Assessor 2 (you)"
    score: str  # with its label
    justification: tuple[str, ...]


@dataclass(frozen=True)
class ModerationItem:
    criterion: str
    spread: int
    scores: tuple[GivenScore, ...]
    moderated: int | None
    reason: str | None
    resolved: bool


@dataclass(frozen=True)
class ModerationPage(ApplicationPage):
    items: tuple[ModerationItem, ...]
    threshold: int | None


# ---------------------------------------------------------------------------------------------
# the list of assigned applications


@router.get("")
def assigned(request: Request, user: Assessor, session: SessionDep, pages: PagesDep) -> Response:
    listed, disagreements = [], []
    for assignment, application in assessment.assigned_to(session, user):
        round_ = session.get(Round, application.round_id)
        council = session.get(Council, application.council_code)
        assert round_ is not None and council is not None and application.id is not None
        status = assessment.scoring_status(assignment)
        listed.append(
            Assigned(
                id=application.id,
                council=council.name,
                reference=application.reference,
                round=round_.title,
                tag=STATUS_TAGS[status],
            )
        )
        if assignment.submitted_at is not None:
            tasks = assessment.disagreements(session, application)
            if tasks:
                disagreements.append(
                    Disagreement(
                        id=application.id,
                        council=council.name,
                        round=round_.title,
                        count=len(tasks),
                        open=sum(1 for task, _ in tasks if task.resolved_at is None),
                    )
                )
    page = AssignedPage(
        assignments=tuple(listed), disagreements=tuple(disagreements), notice=_notice(request)
    )
    return pages.show(request, "assess/index.html", page)


# ---------------------------------------------------------------------------------------------
# scoring


def _scale_items(stage: AssessmentStage, chosen: str) -> list[dict[str, Any]]:
    items = []
    for value in range(stage.scale.min, stage.scale.max + 1):
        label = stage.scale.labels.get(value)
        items.append(
            {
                "value": str(value),
                "text": f"{value} – {label}" if label else str(value),
                "checked": chosen == str(value),
            }
        )
    return items


def _criteria(work: Work, raw: dict[str, dict[str, str]]) -> tuple[Criterion, ...]:
    """Each criterion with its guidance, the council's evidence and the values in the form."""
    stage = work.stage
    total = sum((c.weight for c in stage.criteria), Decimal(0))
    answers = all_answers(work.application)
    names = council_names(work.session)
    submitted = {s.criterion_id: s for s in assessment.scores_of(work.session, work.assignment)}
    out = []
    for criterion in stage.criteria:
        evidence = []
        for question_id in criterion.evidence:
            question = question_of(work.prospectus, question_id)
            if question is not None:
                evidence.append(
                    Evidence(question.label, answer_view(question, answers.get(question_id), names))
                )
        share = (criterion.weight * 100 / total).quantize(Decimal(1), ROUND_HALF_UP)
        given = submitted.get(criterion.id)
        label = stage.scale.labels.get(given.score) if given else None
        posted = raw.get(criterion.id, {})
        out.append(
            Criterion(
                id=criterion.id,
                title=criterion.title,
                share=share,
                minimum=criterion.minimum,
                guidance=markdown_filter(criterion.guidance) if criterion.guidance else None,
                evidence=tuple(evidence),
                justification=posted.get("justification", ""),
                choices=tuple(_scale_items(stage, posted.get("score", ""))),
                score_text=(f"{given.score} – {label}" if label else str(given.score))
                if given
                else "",
                justification_lines=tuple(given.justification.splitlines()) if given else (),
            )
        )
    return tuple(out)


def _raw_of_draft(assignment: Assignment) -> dict[str, dict[str, str]]:
    raw = {}
    for criterion_id, kept in assignment.draft.items():
        score = kept.get("score")
        raw[criterion_id] = {
            "score": "" if score is None else str(score),
            "justification": str(kept.get("justification") or ""),
        }
    return raw


def _render_scoring(
    request: Request,
    pages: Pages,
    work: Work,
    raw: dict[str, dict[str, str]],
    errors: dict[str, str] | None = None,
    status_code: int = 200,
    problem: str | None = None,
) -> Response:
    errors = errors or {}
    scale = work.stage.scale
    page = ScoringPage(
        **work.header(),
        criteria=_criteria(work, raw),
        errors=errors,
        error_list=errors_as_list(errors),
        problem=problem,
        notice=_notice(request),
        scale_hint=f"{scale.min} is the lowest score and {scale.max} the highest.",
        justification_required=work.stage.justification_required,
        submitted_at=local_time(work.assignment.submitted_at, work.prospectus)
        if work.assignment.submitted_at
        else None,
    )
    return pages.show(request, "assess/score.html", page, status_code)


@router.get("/{application_id}")
def scoring_page(
    request: Request, application_id: int, user: Assessor, session: SessionDep, pages: PagesDep
) -> Response:
    work = Work(session, user, application_id)
    return _render_scoring(request, pages, work, _raw_of_draft(work.assignment))


def _read_scores(
    work: Work, raw: dict[str, dict[str, str]], complete: bool
) -> tuple[dict[str, tuple[int | None, str]], dict[str, str]]:
    """The posted scores, and errors keyed by field id. A draft needs only well-formed scores;
    a submission needs every score and, where the prospectus asks, every justification."""
    scale = work.stage.scale
    scores: dict[str, tuple[int | None, str]] = {}
    errors: dict[str, str] = {}
    for criterion in work.stage.criteria:
        text = raw[criterion.id]["score"]
        justification = raw[criterion.id]["justification"]
        score: int | None = None
        if text:
            try:
                score = int(text)
            except ValueError:
                score = None
            if score is None or not scale.min <= score <= scale.max:
                errors[f"score-{criterion.id}"] = (
                    f"Select a score from {scale.min} to {scale.max} for {criterion.title}"
                )
                score = None
        elif complete:
            errors[f"score-{criterion.id}"] = f"Select a score for {criterion.title}"
        if complete and work.stage.justification_required and not justification.strip():
            errors[f"justification-{criterion.id}"] = (
                f"Enter why you gave your score for {criterion.title}"
            )
        scores[criterion.id] = (score, justification)
    return scores, errors


@router.post("/{application_id}")
def save_scores(
    request: Request,
    application_id: int,
    user: Assessor,
    session: SessionDep,
    pages: PagesDep,
    clock: ClockDep,
    posted: FormDep,
) -> Response:
    work = Work(session, user, application_id)
    if work.submitted:  # a retried or double-clicked submission: the first one stands
        return RedirectResponse(work.address(request), status_code=303)
    raw = {
        c.id: {
            "score": str(posted.get(f"score-{c.id}") or "").strip(),
            "justification": str(posted.get(f"justification-{c.id}") or ""),
        }
        for c in work.stage.criteria
    }
    if not work.open:
        return _render_scoring(
            request,
            pages,
            work,
            raw,
            status_code=400,
            problem="This application is no longer being assessed. Your scores were not saved.",
        )
    submit = posted.get("action") == "submit"
    scores, errors = _read_scores(work, raw, complete=submit)
    if errors:
        return _render_scoring(request, pages, work, raw, errors, 400)
    try:
        if submit:
            assessment.submit_scores(
                session,
                assignment=work.assignment,
                scores={k: (s, j) for k, (s, j) in scores.items() if s is not None},
                actor=user.email,
                now=clock(),
            )
        else:
            assessment.save_draft_scores(
                session, assignment=work.assignment, draft=scores, actor=user.email, now=clock()
            )
    except ValidationFailed as failed:  # the service's own checks, should the page's miss one
        errors = {f"score-{k}": v for k, v in failed.errors.items()}
        return _render_scoring(request, pages, work, raw, errors, 400)
    except CbflowError as exc:
        return _render_scoring(request, pages, work, raw, status_code=400, problem=str(exc))
    if submit:
        request.session[NOTICE] = f"You have submitted your scores for {work.council.name}."
        return RedirectResponse(work.address(request), status_code=303)
    request.session[NOTICE] = (
        f"Your scores for {work.council.name} have been saved. You can come back to them later."
    )
    return RedirectResponse(path_for(request, "assigned"), status_code=303)


# ---------------------------------------------------------------------------------------------
# conflicts of interest


def _render_conflict(
    request: Request,
    pages: Pages,
    work: Work,
    reason: str = "",
    errors: dict[str, str] | None = None,
    problem: str | None = None,
    status_code: int = 200,
) -> Response:
    errors = errors or {}
    page = ConflictPage(
        **work.header(),
        reason=reason,
        errors=errors,
        error_list=errors_as_list(errors),
        problem=problem,
    )
    return pages.show(request, "assess/conflict.html", page, status_code)


@router.get("/{application_id}/conflict")
def conflict_page(
    request: Request, application_id: int, user: Assessor, session: SessionDep, pages: PagesDep
) -> Response:
    return _render_conflict(request, pages, Work(session, user, application_id))


@router.post("/{application_id}/conflict")
def declare_conflict(
    request: Request,
    application_id: int,
    user: Assessor,
    session: SessionDep,
    pages: PagesDep,
    clock: ClockDep,
    reason: ReasonField = "",
) -> Response:
    work = Work(session, user, application_id)
    if not work.open:
        return _render_conflict(request, pages, work, reason, status_code=400)
    if not reason.strip():
        errors = {"reason": f"Enter why you have a conflict of interest with {work.council.name}"}
        return _render_conflict(request, pages, work, reason, errors, status_code=400)
    try:
        assessment.declare_conflict(
            session, assignment=work.assignment, reason=reason, actor=user.email, now=clock()
        )
    except assessment.NoAssessorFree:
        problem = (
            "No other assessor is free to take this application, so it is still assigned to "
            "you and your conflict has not been recorded. Contact the programme team: they "
            "will find another assessor."
        )
        return _render_conflict(request, pages, work, reason, problem=problem, status_code=400)
    except CbflowError as exc:
        return _render_conflict(request, pages, work, reason, problem=str(exc), status_code=400)
    request.session[NOTICE] = (
        f"You have declared a conflict of interest with {work.council.name}. Their application "
        "has been passed to another assessor."
    )
    return RedirectResponse(path_for(request, "assigned"), status_code=303)


# ---------------------------------------------------------------------------------------------
# disagreements sent to moderation (read only: staff moderate)


@router.get("/{application_id}/moderation")
def moderation_page(
    request: Request, application_id: int, user: Assessor, session: SessionDep, pages: PagesDep
) -> Response:
    work = Work(session, user, application_id)
    if not work.submitted:  # others' scores are shown only to an assessor who has given theirs
        raise HTTPException(status_code=404)
    titles = {c.id: c.title for c in work.stage.criteria}
    labels = work.stage.scale.labels
    items = []
    for task, given in assessment.disagreements(session, work.application):
        items.append(
            ModerationItem(
                criterion=titles.get(task.criterion_id, task.criterion_id),
                spread=task.spread,
                scores=tuple(
                    GivenScore(
                        who=f"Assessor {n}" + (" (you)" if assessor_id == user.id else ""),
                        score=f"{score.score} – {labels[score.score]}"
                        if score.score in labels
                        else str(score.score),
                        justification=tuple(score.justification.splitlines()),
                    )
                    for n, (assessor_id, score) in enumerate(given, start=1)
                ),
                moderated=task.moderated_score,
                reason=task.reason,
                resolved=task.resolved_at is not None,
            )
        )
    page = ModerationPage(**work.header(), items=tuple(items), threshold=_threshold(work.stage))
    return pages.show(request, "assess/moderation.html", page)


def _threshold(stage: AssessmentStage) -> int | None:
    return stage.moderation.spread_at_least if stage.moderation else None
