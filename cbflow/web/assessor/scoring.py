"""Scoring an application against the prospectus's criteria: a draft to come back to, then one
submission."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response

from cbflow.errors import CbflowError, ValidationFailed
from cbflow.formatting import local_time
from cbflow.models import Assignment
from cbflow.prospectus import AssessmentStage
from cbflow.render import markdown_filter
from cbflow.services import assessment, clarifications
from cbflow.services.applications import all_answers
from cbflow.services.contributions import pooled_view
from cbflow.services.councils import council_names
from cbflow.web.answers import answer_view, question_of
from cbflow.web.assessor.shared import (
    NOTICE,
    Assessor,
    Criterion,
    Evidence,
    ScoringPage,
    Work,
    take_notice,
)
from cbflow.web.clarifying import request_views
from cbflow.web.deps import ClockDep, FormDep, PagesDep, SessionDep
from cbflow.web.templating import Pages, errors_as_list, path_for

router = APIRouter(prefix="/assess")


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
    asked = clarifications.of_application(work.session, work.application)
    page = ScoringPage(
        **work.header(),
        criteria=_criteria(work, raw),
        errors=errors,
        error_list=errors_as_list(errors),
        problem=problem,
        notice=take_notice(request),
        scale_hint=f"{scale.min} is the lowest score and {scale.max} the highest.",
        justification_required=work.stage.justification_required,
        submitted_at=local_time(work.assignment.submitted_at, work.prospectus)
        if work.assignment.submitted_at
        else None,
        pooled=pooled_view(work.session, work.application, work.prospectus),
        clarifications=request_views(work.session, work.prospectus, asked),
        waiting=any(c.state in clarifications.PENDING for c in asked),
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
    if submit and clarifications.pending_of(session, work.application):
        problem = (
            "The council has not yet answered the clarification requested: score once it has "
            "(or once the request lapses). Your scores were not submitted; save them to come "
            "back to."
        )
        return _render_scoring(request, pages, work, raw, status_code=409, problem=problem)
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
