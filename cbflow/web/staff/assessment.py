"""Assessment: assigning assessors, re-assigning, moderation and the ranked results."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from decimal import Decimal

from fastapi import HTTPException, Request
from fastapi.responses import RedirectResponse, Response
from markupsafe import Markup
from sqlmodel import Session, col, select

from cbflow.charts import assessor_charts
from cbflow.errors import CbflowError, ValidationFailed
from cbflow.flowlist import ASSIGN_ASSESSORS, FINALISE_ASSESSMENT, OPEN_MODERATION
from cbflow.lifecycle import AppState
from cbflow.models import (
    Application,
    Assignment,
    ModerationTask,
    Round,
    User,
)
from cbflow.prospectus import AssessmentStage, Criterion, Prospectus
from cbflow.services import (
    assessment,
    rounds,
)
from cbflow.settings import Settings
from cbflow.web.deps import (
    ClockDep,
    PagesDep,
    ReasonField,
    SessionDep,
    SettingsDep,
    ShortField,
)
from cbflow.web.security import as_id
from cbflow.web.staff.places import PlaceNames, place_names
from cbflow.web.staff.shared import (
    DeskDep,
    RoundPage,
    RunRow,
    Staff,
    application_or_404,
    round_header,
    round_or_404,
    runs_of,
    stage_router,
    started_runs,
)
from cbflow.web.templating import Pages, path_for
from cbflow.wording import opening

router = stage_router()


def _stage_of(prospectus: Prospectus) -> AssessmentStage:
    if prospectus.stages.assessment is None:
        raise HTTPException(status_code=404)
    return prospectus.stages.assessment


@router.get("/rounds/{slug}/assessment")
def assessment_page(
    request: Request,
    slug: str,
    session: SessionDep,
    settings: SettingsDep,
    pages: PagesDep,
    user: Staff,
) -> Response:
    round_ = round_or_404(session, slug)
    return _render_assessment(request, session, settings, pages, round_, {})


@dataclass(frozen=True)
class AssignmentRow:
    assignment: Assignment
    assessor: User | None
    reassignable: bool  # not yet submitted, of an application under assessment
    others: list[dict[str, str]]  # the assessors it could move to, as select items


@dataclass(frozen=True)
class AssessedRow:
    application: Application
    council: str
    assignments: list[AssignmentRow]
    scores: list[tuple[str, list[int]]]  # each criterion's title and the scores given so far


@dataclass(frozen=True)
class TaskRow:
    task: ModerationTask
    application: Application | None
    council: str
    criterion: Criterion | None
    scores: list[int]
    justifications: list[tuple[int, str]]


@dataclass(frozen=True)
class Profile:
    name: str
    count: int
    mean: Decimal
    spread: Decimal
    normalised: Decimal


@dataclass(frozen=True)
class Pooled:
    mean: Decimal
    spread: Decimal


@dataclass(frozen=True, kw_only=True)
class AssessmentPage(RoundPage):
    errors: dict[str, str]
    stage: AssessmentStage
    actions: assessment.AssessmentActions
    score_items: list[dict[str, str]]
    assessor_count: int
    assessors: list[tuple[User, int]]  # each assessor and how many applications they assess
    rows: list[AssessedRow]
    submitted: int
    total_assignments: int
    tasks: list[TaskRow]
    ranked: list[assessment.ApplicationResult]
    profiles: list[Profile]
    pooled: Pooled | None
    assessor_charts: list[Markup]
    runs: list[RunRow]
    names: PlaceNames  # each application as the page names it: its council, or its place


def _render_assessment(
    request: Request,
    session: Session,
    settings: Settings,
    pages: Pages,
    round_: Round,
    errors: dict[str, str],
    status_code: int = 200,
) -> Response:
    prospectus = rounds.prospectus_of(round_)
    stage = _stage_of(prospectus)
    actions = assessment.assessment_actions(session, round_)
    names = place_names(session, round_.id)
    assessors = list(
        session.exec(select(User).where(User.role == "assessor").order_by(col(User.name)))
    )
    by_id = {a.id: a for a in assessors}
    assignments = assessment.all_assignments(session, round_)
    by_application: dict[int, list[Assignment]] = {}
    for assignment in assignments:
        by_application.setdefault(assignment.application_id, []).append(assignment)
    assessed = [
        a
        for a in rounds.applications_of(session, round_)
        if a.id in by_application and a.state != AppState.WITHDRAWN
    ]
    tasks = assessment.moderation_tasks(session, round_)
    apps_by_id = {a.id: a for a in assessed}
    # every submitted score and its reason on each disputed criterion
    justifications = {
        task.id or 0: [(score.score, score.justification) for _, score in given]
        for application_id in {t.application_id for t in tasks if t.application_id in apps_by_id}
        for task, given in assessment.disagreements(session, apps_by_id[application_id])
    }
    criteria = {c.id: c for c in stage.criteria}
    scores = assessment.scores_by_application(session, round_)
    load = Counter(a.assessor_id for a in assignments)
    profiles, pooled, charts = _assessor_charts(session, round_)
    return pages.show(
        request,
        "staff/assessment.html",
        AssessmentPage(
            **round_header(request, round_, prospectus, "assessment"),
            errors=errors,
            stage=stage,
            actions=actions,
            score_items=[
                {"value": str(n), "text": f"{n} – {stage.scale.labels[n]}"}
                if n in (stage.scale.labels or {})
                else {"value": str(n), "text": str(n)}
                for n in range(stage.scale.min, stage.scale.max + 1)
            ],
            assessor_count=len(assessors),
            assessors=[(a, load.get(a.id or 0, 0)) for a in assessors],
            rows=[
                AssessedRow(
                    application=a,
                    council=names.of(a),
                    assignments=[
                        AssignmentRow(
                            assignment=x,
                            assessor=by_id.get(x.assessor_id),
                            reassignable=assessment.reassign_refusal(x, a) is None,
                            others=[
                                {"value": str(o.id), "text": o.name}
                                for o in assessors
                                if o.id not in {y.assessor_id for y in by_application[a.id or 0]}
                                and o.council_code != a.council_code
                            ],
                        )
                        for x in by_application[a.id or 0]
                    ],
                    scores=[
                        (c.title, scores.get(a.id or 0, {}).get(c.id, [])) for c in stage.criteria
                    ],
                )
                for a in assessed
            ],
            submitted=sum(1 for a in assignments if a.submitted_at is not None),
            total_assignments=len(assignments),
            tasks=[
                TaskRow(
                    task=t,
                    application=apps_by_id.get(t.application_id),
                    council=names.of(apps_by_id[t.application_id], "")
                    if t.application_id in apps_by_id
                    else "",
                    criterion=criteria.get(t.criterion_id),
                    scores=scores.get(t.application_id, {}).get(t.criterion_id, []),
                    justifications=justifications.get(t.id or 0, []),
                )
                for t in tasks
                if t.application_id in apps_by_id
            ],
            ranked=assessment.results(session, round_) if actions.has_results else [],
            profiles=profiles,
            pooled=pooled,
            assessor_charts=charts,
            runs=runs_of(
                started_runs(session, settings, round_),
                ASSIGN_ASSESSORS,
                OPEN_MODERATION,
                FINALISE_ASSESSMENT,
            ),
            names=names,
        ),
        status_code,
    )


def _assessor_charts(
    session: Session, round_: Round
) -> tuple[list[Profile], Pooled | None, list[Markup]]:
    """How each assessor scores, before and after normalisation: a table and two charts."""
    profiles, pooled = assessment.assessor_profiles(session, round_)
    if not profiles:
        return [], None, []

    def quantize(value: Decimal) -> Decimal:
        return value.quantize(Decimal("0.01"))

    return (
        [
            Profile(
                name=p.assessor.name,
                count=p.count,
                mean=quantize(p.raw.mean),
                spread=quantize(p.raw.spread),
                normalised=quantize(p.normalised_mean),
            )
            for p in profiles
        ],
        Pooled(mean=quantize(pooled.mean), spread=quantize(pooled.spread)),
        assessor_charts([(p.assessor.name, p.raw.mean, p.normalised_mean) for p in profiles]),
    )


@router.post("/rounds/{slug}/assessment/{action}")
def assessment_action(slug: str, action: str, desk: DeskDep, nonce: ShortField = "") -> Response:
    flows = {
        "assign": ASSIGN_ASSESSORS,
        "moderation": OPEN_MODERATION,
        "finalise": FINALISE_ASSESSMENT,
    }
    if action not in flows:
        raise HTTPException(status_code=404)
    round_ = round_or_404(desk.session, slug)
    _stage_of(rounds.prospectus_of(round_))
    return desk.start(
        flows[action],
        {"slug": slug},
        round_=round_,
        nonce=nonce,
        back=path_for(desk.request, "assessment_page", slug=slug),
    )


@router.post("/rounds/{slug}/assessment/assignments/{assignment_id}")
def reassign(
    request: Request,
    slug: str,
    assignment_id: int,
    session: SessionDep,
    settings: SettingsDep,
    clock: ClockDep,
    pages: PagesDep,
    user: Staff,
    assessor: ShortField = "",
    reason: ReasonField = "",
) -> Response:
    round_ = round_or_404(session, slug)
    assignment = session.get(Assignment, assignment_id)
    if assignment is None:
        raise HTTPException(status_code=404)
    application_or_404(session, round_, assignment.application_id)
    field = f"assessor-{assignment_id}"
    chosen = as_id(assessor)
    to = session.get(User, chosen) if chosen is not None else None
    if to is None:
        return _render_assessment(
            request, session, settings, pages, round_, {field: "Select an assessor"}, 400
        )
    try:
        assessment.reassign(
            session, assignment=assignment, to=to, actor=user.email, now=clock(), reason=reason
        )
    except ValidationFailed:
        errors = {f"reason-{assignment_id}": "Enter the reason for moving the assessment"}
        return _render_assessment(request, session, settings, pages, round_, errors, 400)
    except CbflowError as exc:
        message = str(exc)
        return _render_assessment(
            request,
            session,
            settings,
            pages,
            round_,
            {field: opening(message)},
            400,
        )
    return RedirectResponse(path_for(request, "assessment_page", slug=slug), status_code=303)


@router.post("/rounds/{slug}/assessment/moderation/{task_id}")
def moderate(
    request: Request,
    slug: str,
    task_id: int,
    session: SessionDep,
    settings: SettingsDep,
    clock: ClockDep,
    pages: PagesDep,
    user: Staff,
    score: ShortField = "",
    reason: ReasonField = "",
) -> Response:
    round_ = round_or_404(session, slug)
    task = session.get(ModerationTask, task_id)
    if task is None:
        raise HTTPException(status_code=404)
    application_or_404(session, round_, task.application_id)
    errors: dict[str, str] = {}
    stage = _stage_of(rounds.prospectus_of(round_))
    value = int(score) if score.strip().lstrip("-").isdigit() else None
    if value is None:
        errors[f"score-{task_id}"] = "Select the moderated score"
    if not reason.strip():
        errors[f"reason-{task_id}"] = "Enter the reason for the moderated score"
    if value is not None and not stage.scale.min <= value <= stage.scale.max:
        errors[f"score-{task_id}"] = (
            f"The score must be from {stage.scale.min} to {stage.scale.max}"
        )
    if not errors:
        assert value is not None
        try:
            assessment.moderate(
                session, task=task, score=value, reason=reason, actor=user.email, now=clock()
            )
        except CbflowError as exc:
            errors[f"score-{task_id}"] = opening(str(exc))
    if errors:
        return _render_assessment(request, session, settings, pages, round_, errors, 400)
    return RedirectResponse(path_for(request, "assessment_page", slug=slug), status_code=303)
