"""Assessment: assigning assessors, scores with justifications, moderation, weighted totals.

Scoring rule (documented for staff): a criterion's final score is the moderated score where
moderation took place, otherwise the mean of the assessors' scores: as given, or, when the
prospectus sets `normalise`, each normalised for its assessor (see `normalise`); both are shown.
An application's total is the weighted mean of its criteria's final scores, each scaled to 0..1
across the prospectus's scale, as a percentage with two decimals. A criterion with a `minimum` is
a gateway: a final score below it bars selection, whatever the total.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from sqlmodel import Session, col, select

from cbflow.errors import CbflowError, ValidationFailed
from cbflow.lifecycle import AppState, RoundState
from cbflow.models import (
    Application,
    Assignment,
    Conflict,
    Council,
    ModerationTask,
    Round,
    Score,
    User,
)
from cbflow.prospectus import AssessmentStage
from cbflow.services import partnerships
from cbflow.services.audit import record, transition
from cbflow.services.rounds import RELEASED, applications_of, prospectus_of

HUNDREDTH = Decimal("0.01")


def _round_of(session: Session, application: Application) -> Round:
    round_ = session.get(Round, application.round_id)
    assert round_ is not None
    return round_


def _stage(round_: Round) -> AssessmentStage:
    stage = prospectus_of(round_).stages.assessment
    if stage is None:
        raise CbflowError(f"round {round_.slug} has no assessment stage")
    return stage


def candidates(session: Session, round_: Round) -> list[Application]:
    """Applications waiting for assessment: submitted bids, or sift passes without a bid stage."""
    waiting = AppState.BID_SUBMITTED if prospectus_of(round_).stages.bid else AppState.SIFT_PASS
    return applications_of(session, round_, waiting)


def _barred(
    assessor: User,
    councils: Sequence[Council],
    stage: AssessmentStage,
    conflicts: set[tuple[int, str]],
) -> str | None:
    """Why the assessor may not assess an application made by these councils (its lead and
    any member councils), or None if they may: they work for one of them, have declared a
    conflict with one, or (when the prospectus asks) are from the region of one."""
    alone = len(councils) == 1
    for council in councils:
        which = "the applying council" if alone else f"{council.name}, one of the applying councils"
        if assessor.council_code is not None and assessor.council_code == council.code:
            return f"{assessor.name} works for {which}: that is a conflict"
        if (assessor.id, council.code) in conflicts:
            return f"{assessor.name} has declared a conflict with {council.code}"
        if stage.exclude_own_region and assessor.region and assessor.region == council.region:
            region = "the applying council's region" if alone else f"the region of {which}"
            return (
                f"{assessor.name} is from {council.region}, {region}, and this round does not "
                "let assessors assess their own region"
            )
    return None


def _council(session: Session, code: str) -> Council:
    council = session.get(Council, code)
    assert council is not None
    return council


def _councils(session: Session, application: Application) -> list[Council]:
    """The application's councils, its lead first."""
    return [_council(session, code) for code in partnerships.council_codes_of(session, application)]


def assign_assessors(
    session: Session, *, round_: Round, assessors: list[User], actor: str, now: datetime
) -> dict[int, list[int]]:
    """Give each waiting application its assessors and move it to under_assessment.

    Balanced load: each application takes the least-loaded assessors, never one from the
    applying council nor one who has declared a conflict with it. Persists the assignments, then
    each application's state change. Returns application id -> assessor ids. Applications
    already under assessment are left as they are.
    """
    stage = _stage(round_)
    if len(assessors) < stage.assessors_per_application:
        raise CbflowError(
            f"{stage.assessors_per_application} assessors are needed per application; "
            f"{len(assessors)} are available"
        )
    load: dict[int, int] = defaultdict(int)
    for assignment in all_assignments(session, round_):
        load[assignment.assessor_id] += 1
    conflicts = declared_conflicts(session)
    result: dict[int, list[int]] = {}
    for application in candidates(session, round_):
        councils = _councils(session, application)
        eligible = [a for a in assessors if _barred(a, councils, stage, conflicts) is None]
        if len(eligible) < stage.assessors_per_application:
            barred = "from the council or its region" if stage.exclude_own_region else "from it"
            raise CbflowError(
                f"not enough assessors for {application.reference}: "
                f"{stage.assessors_per_application} are needed and {len(eligible)} are neither "
                f"{barred} nor in conflict with it"
            )
        eligible.sort(key=lambda a: (load[a.id or 0], a.id))
        chosen = eligible[: stage.assessors_per_application]
        for assessor in chosen:
            assert assessor.id is not None and application.id is not None
            session.add(Assignment(application_id=application.id, assessor_id=assessor.id))
            load[assessor.id] += 1
        transition(
            session,
            application,
            AppState.UNDER_ASSESSMENT,
            actor=actor,
            now=now,
            reason=f"assigned to {len(chosen)} assessors",
        )
        assert application.id is not None
        result[application.id] = [a.id for a in chosen if a.id is not None]
    session.flush()
    return result


def all_assignments(session: Session, round_: Round) -> list[Assignment]:
    statement = (
        select(Assignment)
        .join(Application, col(Application.id) == Assignment.application_id)
        .where(Application.round_id == round_.id)
        .order_by(col(Assignment.id))
    )
    return list(session.exec(statement))


def submit_scores(
    session: Session,
    *,
    assignment: Assignment,
    scores: dict[str, tuple[int, str]],
    actor: str,
    now: datetime,
) -> Assignment:
    """An assessor's scores for one application: criterion id -> (score, justification).

    Every criterion must be scored on the prospectus's scale, with a justification when the
    prospectus requires one. Persists the scores and the submission time, then an audit event.
    Submitting the same scores again changes nothing; changing submitted scores is refused.
    """
    application = session.get(Application, assignment.application_id)
    assert application is not None
    round_ = session.get(Round, application.round_id)
    assert round_ is not None
    stage = _stage(round_)
    if application.state != AppState.UNDER_ASSESSMENT:
        raise CbflowError(f"{application.reference} is not under assessment")
    errors: dict[str, str] = {}
    for criterion in stage.criteria:
        if criterion.id not in scores:
            errors[criterion.id] = f"{criterion.title}: give a score"
            continue
        score, justification = scores[criterion.id]
        if not stage.scale.min <= score <= stage.scale.max:
            errors[criterion.id] = (
                f"{criterion.title}: the score must be from {stage.scale.min} to {stage.scale.max}"
            )
        elif stage.justification_required and not justification.strip():
            errors[criterion.id] = f"{criterion.title}: justify the score"
    for unknown in set(scores) - {c.id for c in stage.criteria}:
        errors[unknown] = "not a criterion of this round"
    if errors:
        raise ValidationFailed(errors)
    existing = {s.criterion_id: s for s in scores_of(session, assignment)}
    if assignment.submitted_at is not None:
        if {k: (s.score, s.justification) for k, s in existing.items()} == scores:
            return assignment
        raise CbflowError("these scores were already submitted; ask staff to reopen them")
    for criterion_id, (score, justification) in scores.items():
        assert assignment.id is not None
        row = existing.get(criterion_id) or Score(
            assignment_id=assignment.id, criterion_id=criterion_id, score=score
        )
        row.score, row.justification = score, justification.strip()
        session.add(row)
    assignment.submitted_at, assignment.draft = now, {}
    session.add(assignment)
    assert application.id is not None
    record(
        session,
        entity="application",
        entity_id=application.id,
        action="scores_submitted",
        actor=actor,
        now=now,
        reason=f"assignment {assignment.id}",
    )
    session.flush()
    return assignment


def scores_of(session: Session, assignment: Assignment) -> list[Score]:
    """An assignment's submitted scores (none until it is submitted)."""
    return list(session.exec(select(Score).where(Score.assignment_id == assignment.id)))


def save_draft_scores(
    session: Session,
    *,
    assignment: Assignment,
    draft: dict[str, tuple[int | None, str]],
    actor: str,
    now: datetime,
) -> Assignment:
    """Keep an assessor's unfinished scores to come back to: criterion id -> (score or None,
    justification). A score given must be on the prospectus's scale; nothing else is needed
    until submission. Persists the draft, then an audit event. Refused once the scores are
    submitted or the application is no longer under assessment."""
    application = session.get(Application, assignment.application_id)
    assert application is not None and application.id is not None
    round_ = session.get(Round, application.round_id)
    assert round_ is not None
    stage = _stage(round_)
    if assignment.submitted_at is not None:
        raise CbflowError("these scores were already submitted; ask staff to reopen them")
    if application.state != AppState.UNDER_ASSESSMENT:
        raise CbflowError(f"{application.reference} is not under assessment")
    titles = {c.id: c.title for c in stage.criteria}
    errors: dict[str, str] = {}
    kept: dict[str, Any] = {}
    for criterion_id, (score, justification) in draft.items():
        if criterion_id not in titles:
            errors[criterion_id] = "not a criterion of this round"
        elif score is not None and not stage.scale.min <= score <= stage.scale.max:
            errors[criterion_id] = (
                f"{titles[criterion_id]}: the score must be from {stage.scale.min} "
                f"to {stage.scale.max}"
            )
        elif score is not None or justification.strip():
            kept[criterion_id] = {"score": score, "justification": justification.strip()}
    if errors:
        raise ValidationFailed(errors)
    assignment.draft = kept
    session.add(assignment)
    record(
        session,
        entity="application",
        entity_id=application.id,
        action="scores_draft_saved",
        actor=actor,
        now=now,
        reason=f"assignment {assignment.id}: {len(kept)} of {len(stage.criteria)} criteria",
    )
    session.flush()
    return assignment


def scoring_status(assignment: Assignment) -> str:
    """'submitted', 'in progress' (a draft is kept) or 'not started'."""
    if assignment.submitted_at is not None:
        return "submitted"
    return "in progress" if assignment.draft else "not started"


# -- conflicts of interest ---------------------------------------------------------------------


class NoAssessorFree(CbflowError):
    """Nobody can take over an assignment; nothing was changed."""


def declared_conflicts(session: Session) -> set[tuple[int, str]]:
    """(assessor id, council code) for every declared conflict."""
    return {(c.assessor_id, c.council_code) for c in session.exec(select(Conflict))}


def _conflicted(session: Session, assessor_id: int, council_code: str) -> bool:
    statement = select(Conflict).where(
        Conflict.assessor_id == assessor_id, Conflict.council_code == council_code
    )
    return session.exec(statement).first() is not None


def declare_conflict(
    session: Session, *, assignment: Assignment, reason: str, actor: str, now: datetime
) -> list[tuple[Application, User]]:
    """An assessor declares a conflict of interest with the council of an assigned application.

    Each of their unsubmitted assignments to that council's applications under assessment
    passes to the assessor with the lightest load in its round who is not from the council,
    has no conflict with it and is not already on the application (the lowest id among equals).
    If any of them has nobody to pass to, NoAssessorFree is raised and nothing changes.
    Persists the conflict, each assignment's new assessor (its draft scores discarded), then
    an audit event for the declaration and one for each re-assignment. Returns each
    application with its new assessor.
    """
    if not reason.strip():
        raise ValidationFailed({"reason": "give the reason for the conflict of interest"})
    application = session.get(Application, assignment.application_id)
    assert application is not None and application.id is not None
    if assignment.submitted_at is not None:
        raise CbflowError(
            f"the scores for {application.reference} were already submitted; ask programme "
            "staff to set them aside"
        )
    if application.state != AppState.UNDER_ASSESSMENT:
        raise CbflowError(f"{application.reference} is not under assessment")
    # a partnership's conflict is declared with its lead council; it covers every application
    # that council is part of, as lead or member
    council = application.council_code
    declarer = assignment.assessor_id
    affected = [
        (a, app)
        for a, app in session.exec(
            select(Assignment, Application)
            .join(Application, col(Application.id) == Assignment.application_id)
            .where(
                Assignment.assessor_id == declarer,
                Application.state == AppState.UNDER_ASSESSMENT,
                col(Assignment.submitted_at).is_(None),
            )
            .order_by(col(Assignment.id))
        )
        if council in partnerships.council_codes_of(session, app)
    ]
    assessors = list(
        session.exec(select(User).where(User.role == "assessor").order_by(col(User.id)))
    )
    conflicts = declared_conflicts(session) | {(declarer, council)}
    loads: dict[int, dict[int, int]] = {}
    plan: list[tuple[Assignment, Application, User]] = []
    for moving, app in affected:
        if app.round_id not in loads:
            round_ = session.get(Round, app.round_id)
            assert round_ is not None
            load: dict[int, int] = defaultdict(int)
            for other in all_assignments(session, round_):
                load[other.assessor_id] += 1
            loads[app.round_id] = load
        load = loads[app.round_id]
        on_it = {
            a.assessor_id
            for a in session.exec(select(Assignment).where(Assignment.application_id == app.id))
        }
        stage = _stage(_round_of(session, app))
        applying = _councils(session, app)
        free = [
            u
            for u in assessors
            if u.id is not None
            and u.id not in on_it
            and _barred(u, applying, stage, conflicts) is None
        ]
        if not free:
            raise NoAssessorFree(
                f"no other assessor is free to take {app.reference}: every other assessor is "
                "already on it, is from the council"
                + (" or its region" if stage.exclude_own_region else "")
                + " or has a conflict with it. Nothing has changed; ask programme staff to "
                "find another assessor"
            )
        chosen = min(free, key=lambda u: (load[u.id or 0], u.id or 0))
        load[chosen.id or 0] += 1
        plan.append((moving, app, chosen))
    if not _conflicted(session, declarer, council):
        session.add(
            Conflict(
                assessor_id=declarer, council_code=council, reason=reason.strip(), declared_at=now
            )
        )
    record(
        session,
        entity="application",
        entity_id=application.id,
        action="conflict_declared",
        actor=actor,
        now=now,
        reason=f"assessor {declarer} declared a conflict with {council}: {reason.strip()}",
    )
    for moving, app, chosen in plan:
        assert app.id is not None
        moving.assessor_id, moving.draft = chosen.id or 0, {}
        session.add(moving)
        record(
            session,
            entity="application",
            entity_id=app.id,
            action="assessor_reassigned",
            actor=actor,
            now=now,
            reason=f"assignment {moving.id}: assessor {declarer} -> assessor {chosen.id}",
        )
    session.flush()
    return [(app, chosen) for _, app, chosen in plan]


@dataclass
class CriterionResult:
    criterion_id: str
    title: str
    weight: Decimal
    scores: list[int]
    mean: Decimal
    moderated: int | None
    final: Decimal
    below_minimum: bool
    normalised: list[Decimal] = field(default_factory=list)  # each score, per its assessor
    normalised_mean: Decimal = Decimal(0)


@dataclass(frozen=True)
class Scoring:
    """How scores spread: their mean and (population) standard deviation."""

    mean: Decimal
    spread: Decimal

    @classmethod
    def of(cls, scores: list[int]) -> Scoring:
        mean = Decimal(sum(scores)) / len(scores)
        variance = sum(((Decimal(s) - mean) ** 2 for s in scores), Decimal(0)) / len(scores)
        return cls(mean, variance.sqrt())


def normalise(score: int, by: Scoring, pooled: Scoring, stage: AssessmentStage) -> Decimal:
    """A score as it would be from an assessor who scores like the panel as a whole: its
    distance from its assessor's mean, in its assessor's spreads, placed at the same distance
    from the panel's mean in the panel's spreads (z-scores), kept within the scale. An
    assessor whose scores do not vary is only moved by the difference of the means."""
    if by.spread == 0:
        moved = pooled.mean + (score - by.mean)
    else:
        moved = pooled.mean + (score - by.mean) * pooled.spread / by.spread
    return min(max(moved, Decimal(stage.scale.min)), Decimal(stage.scale.max))


def scores_by_assessor(
    session: Session, round_: Round
) -> dict[int, dict[str, list[tuple[int, int]]]]:
    """Application id -> criterion id -> (assessor id, score) for every submitted score."""
    result: dict[int, dict[str, list[tuple[int, int]]]] = defaultdict(lambda: defaultdict(list))
    statement = (
        select(Assignment.application_id, Assignment.assessor_id, Score.criterion_id, Score.score)
        .join(Score, col(Score.assignment_id) == Assignment.id)
        .join(Application, col(Application.id) == Assignment.application_id)
        .where(Application.round_id == round_.id, col(Assignment.submitted_at).is_not(None))
        .order_by(col(Score.id))
    )
    for application_id, assessor_id, criterion_id, score in session.exec(statement):
        result[application_id][criterion_id].append((assessor_id, score))
    return result


def _given_by(
    by_application: dict[int, dict[str, list[tuple[int, int]]]],
) -> dict[int, list[int]]:
    """Assessor id -> every score they submitted."""
    given: dict[int, list[int]] = defaultdict(list)
    for criteria in by_application.values():
        for pairs in criteria.values():
            for assessor_id, score in pairs:
                given[assessor_id].append(score)
    return given


def scorings(
    by_application: dict[int, dict[str, list[tuple[int, int]]]],
) -> tuple[dict[int, Scoring], Scoring]:
    """How each assessor scores (every score they submitted in the round), and the panel."""
    given = _given_by(by_application)
    if not given:
        return {}, Scoring(Decimal(0), Decimal(0))
    pooled = Scoring.of([s for scores in given.values() for s in scores])
    return {a: Scoring.of(scores) for a, scores in given.items()}, pooled


@dataclass
class ApplicationResult:
    application: Application
    criteria: list[CriterionResult] = field(default_factory=list)
    total: Decimal = Decimal(0)

    @property
    def gateway_failed(self) -> list[str]:
        return [c.title for c in self.criteria if c.below_minimum]


def scores_by_application(session: Session, round_: Round) -> dict[int, dict[str, list[int]]]:
    """Application id -> criterion id -> the submitted scores."""
    result: dict[int, dict[str, list[int]]] = defaultdict(lambda: defaultdict(list))
    statement = (
        select(Assignment.application_id, Score.criterion_id, Score.score)
        .join(Score, col(Score.assignment_id) == Assignment.id)
        .join(Application, col(Application.id) == Assignment.application_id)
        .where(Application.round_id == round_.id, col(Assignment.submitted_at).is_not(None))
        .order_by(col(Score.id))
    )
    for application_id, criterion_id, score in session.exec(statement):
        result[application_id][criterion_id].append(score)
    return result


@dataclass(frozen=True)
class AssessorProfile:
    """How one assessor scored the round, before and after normalisation."""

    assessor: User
    count: int
    raw: Scoring
    normalised_mean: Decimal


def assessor_profiles(session: Session, round_: Round) -> tuple[list[AssessorProfile], Scoring]:
    """Each assessor who submitted scores in the round (by name), and the panel as a whole."""
    stage = _stage(round_)
    scores = scores_by_assessor(session, round_)
    by_assessor, pooled = scorings(scores)
    profiles = []
    for assessor_id, raw in _given_by(scores).items():
        assessor = session.get(User, assessor_id)
        assert assessor is not None
        scoring = by_assessor[assessor_id]
        evened = [normalise(s, scoring, pooled, stage) for s in raw]
        profiles.append(
            AssessorProfile(
                assessor=assessor,
                count=len(raw),
                raw=scoring,
                normalised_mean=sum(evened, Decimal(0)) / len(evened),
            )
        )
    profiles.sort(key=lambda p: (p.assessor.name, p.assessor.id or 0))
    return profiles, pooled


def moderation_tasks(session: Session, round_: Round) -> list[ModerationTask]:
    statement = (
        select(ModerationTask)
        .join(Application, col(Application.id) == ModerationTask.application_id)
        .where(Application.round_id == round_.id)
        .order_by(col(ModerationTask.id))
    )
    return list(session.exec(statement))


def open_moderation(
    session: Session, *, round_: Round, actor: str, now: datetime
) -> list[ModerationTask]:
    """Once every assignment is submitted, open a moderation task for each criterion on which
    the assessors are at least the prospectus's spread apart. Persists the tasks (one per
    application and criterion, never twice) and an audit event for each. Returns the open ones."""
    stage = _stage(round_)
    missing = [a for a in all_assignments(session, round_) if a.submitted_at is None]
    if missing:
        raise CbflowError(f"{len(missing)} assessments are not yet submitted")
    known = {(t.application_id, t.criterion_id) for t in moderation_tasks(session, round_)}
    # a place that withdrew is no longer ranked, so its disagreements need no moderation
    withdrawn = {a.id for a in applications_of(session, round_, AppState.WITHDRAWN)}
    if stage.moderation is not None:
        for application_id, by_criterion in scores_by_application(session, round_).items():
            if application_id in withdrawn:
                continue
            for criterion_id, scores in by_criterion.items():
                spread = max(scores) - min(scores)
                if (
                    spread >= stage.moderation.spread_at_least
                    and (application_id, criterion_id) not in known
                ):
                    task = ModerationTask(
                        application_id=application_id, criterion_id=criterion_id, spread=spread
                    )
                    session.add(task)
                    record(
                        session,
                        entity="application",
                        entity_id=application_id,
                        action="moderation_opened",
                        actor=actor,
                        now=now,
                        reason=f"{criterion_id}: scores {sorted(scores)} differ by {spread}",
                    )
        session.flush()
    return [
        t
        for t in moderation_tasks(session, round_)
        if t.resolved_at is None and t.application_id not in withdrawn
    ]


def moderate(
    session: Session, *, task: ModerationTask, score: int, reason: str, actor: str, now: datetime
) -> ModerationTask:
    """Record the moderated score and its reason beside the original scores (kept unchanged)."""
    application = session.get(Application, task.application_id)
    assert application is not None
    round_ = session.get(Round, application.round_id)
    assert round_ is not None
    stage = _stage(round_)
    if not stage.scale.min <= score <= stage.scale.max:
        raise ValidationFailed({"score": f"from {stage.scale.min} to {stage.scale.max}"})
    if not reason.strip():
        raise ValidationFailed({"reason": "give the reason for the moderated score"})
    if task.resolved_at is not None:
        if (task.moderated_score, task.reason) == (score, reason.strip()):
            return task
        raise CbflowError("this moderation is already recorded")
    task.moderated_score, task.reason = score, reason.strip()
    task.moderated_by, task.resolved_at = actor, now
    session.add(task)
    record(
        session,
        entity="application",
        entity_id=task.application_id,
        action="moderated",
        actor=actor,
        now=now,
        reason=f"{task.criterion_id}: {score} ({reason.strip()})",
    )
    session.flush()
    return task


def results(
    session: Session, round_: Round, weights: dict[str, Decimal] | None = None
) -> list[ApplicationResult]:
    """Each assessed application's criteria and total, best first (see `ranking_key`). With
    `weights` (criterion id -> weight), the totals are as those weights would make them: the
    what-if of the selection page; the prospectus's weights otherwise."""
    stage = _stage(round_)
    if weights is not None:
        stage = stage.model_copy(
            update={
                "criteria": [
                    c.model_copy(update={"weight": weights.get(c.id, c.weight)})
                    for c in stage.criteria
                ]
            }
        )
    scores = scores_by_assessor(session, round_)
    by_assessor, pooled = scorings(scores)
    moderated = {
        (t.application_id, t.criterion_id): t.moderated_score
        for t in moderation_tasks(session, round_)
        if t.resolved_at is not None
    }
    total_weight = sum((c.weight for c in stage.criteria), Decimal(0))
    if total_weight <= 0:
        raise ValidationFailed({"weights": "at least one criterion needs a weight above 0"})
    span = Decimal(stage.scale.max - stage.scale.min)
    out = []
    for application in applications_of(session, round_):
        # a place that withdrew keeps its scores on record but is neither ranked nor decided
        if application.id not in scores or application.state == AppState.WITHDRAWN:
            continue
        result = ApplicationResult(application=application)
        weighted = Decimal(0)
        for criterion in stage.criteria:
            pairs = scores[application.id].get(criterion.id, [])
            if not pairs:
                continue
            given = [score for _, score in pairs]
            mean = Decimal(sum(given)) / len(given)
            evened = [normalise(s, by_assessor[a], pooled, stage) for a, s in pairs]
            evened_mean = sum(evened, Decimal(0)) / len(evened)
            override = moderated.get((application.id, criterion.id))
            if override is not None:
                final = Decimal(override)
            else:
                final = evened_mean if stage.normalise else mean
            weighted += criterion.weight * (final - stage.scale.min) / span
            result.criteria.append(
                CriterionResult(
                    criterion_id=criterion.id,
                    title=criterion.title,
                    weight=criterion.weight,
                    scores=given,
                    mean=mean.quantize(HUNDREDTH, ROUND_HALF_UP),
                    moderated=override,
                    final=final.quantize(HUNDREDTH, ROUND_HALF_UP),
                    below_minimum=criterion.minimum is not None and final < criterion.minimum,
                    normalised=[e.quantize(HUNDREDTH, ROUND_HALF_UP) for e in evened],
                    normalised_mean=evened_mean.quantize(HUNDREDTH, ROUND_HALF_UP),
                )
            )
        result.total = (weighted * 100 / total_weight).quantize(HUNDREDTH, ROUND_HALF_UP)
        out.append(result)
    heaviest = max(stage.criteria, key=lambda c: c.weight).id  # first listed among equals
    out.sort(key=lambda r: ranking_key(r, heaviest))
    return out


def ranking_key(result: ApplicationResult, heaviest: str) -> tuple[object, ...]:
    """Ties are broken, in order, by: the higher final score on the most heavily weighted
    criterion (the first listed among equals); the smaller support requested; the earlier bid
    (or EOI) submission; the council code, alphabetically."""
    application = result.application
    on_heaviest = next((c.final for c in result.criteria if c.criterion_id == heaviest), Decimal(0))
    submitted = application.bid_submitted_at or application.eoi_submitted_at
    return (
        -result.total,
        -on_heaviest,
        application.support_requested_pence or 0,
        submitted.timestamp() if submitted else 0.0,
        application.council_code,
    )


def finalise(
    session: Session, *, round_: Round, actor: str, now: datetime
) -> list[ApplicationResult]:
    """Close the assessment: every score in, every moderation resolved. Persists each
    application's total and rank and its move to moderated, then the round's move to assessed.
    Run again, it changes nothing."""
    if assessment_final(round_):
        return results(session, round_)
    still_open = open_moderation(session, round_=round_, actor=actor, now=now)
    if still_open:
        raise CbflowError(f"{len(still_open)} moderation tasks are still open")
    ranked = results(session, round_)
    for rank, result in enumerate(ranked, start=1):
        application = result.application
        application.total_score, application.rank = str(result.total), rank
        transition(
            session,
            application,
            AppState.MODERATED,
            actor=actor,
            now=now,
            reason=f"total {result.total}%, rank {rank}",
        )
    transition(
        session,
        round_,
        RoundState.ASSESSED,
        actor=actor,
        now=now,
        reason=f"{len(ranked)} applications assessed",
    )
    return ranked


def reassign_refusal(assignment: Assignment, application: Application) -> str | None:
    """Why an assessment cannot move to another assessor, or None if it can: only one not yet
    submitted, of an application under assessment."""
    if assignment.submitted_at is not None:
        return "these scores are submitted: a submitted assessment cannot move"
    if application.state != AppState.UNDER_ASSESSMENT:
        return f"{application.reference} is not under assessment"
    return None


# the assessment is closed: scores final and the ranking known
FINAL = frozenset({RoundState.ASSESSED}) | RELEASED


def assessment_final(round_: Round) -> bool:
    return round_.state in FINAL


@dataclass(frozen=True)
class AssessmentActions:
    """What the assessment stage permits for a round in its state."""

    waiting: int  # applications waiting for assessors
    can_assign: bool  # assessors can be assigned to the waiting applications
    can_open_moderation: bool  # every assessment is in, and the assessment is still open
    can_finalise: bool  # every assessment is in and every moderation recorded
    has_results: bool  # scores may have been given: the results can be shown
    final: bool  # the ranking is final


def assessment_actions(session: Session, round_: Round) -> AssessmentActions:
    """The one place that says what may be done in the assessment stage of a round."""
    state = RoundState(round_.state)
    has_bid = prospectus_of(round_).stages.bid is not None
    waiting = candidates(session, round_)
    assignments = all_assignments(session, round_)
    tasks = moderation_tasks(session, round_)
    all_in = bool(assignments) and all(a.submitted_at is not None for a in assignments)
    return AssessmentActions(
        waiting=len(waiting),
        can_assign=bool(waiting)
        and state == (RoundState.BIDS_CLOSED if has_bid else RoundState.EOI_CLOSED),
        can_open_moderation=all_in and state not in RELEASED and state != RoundState.ASSESSED,
        can_finalise=all_in
        and all(t.resolved_at is not None for t in tasks)
        and state in (RoundState.BIDS_CLOSED, RoundState.EOI_CLOSED),
        has_results=state != RoundState.LAUNCHED,
        final=state in FINAL,
    )


def assignments_for(session: Session, round_: Round, assessor: User) -> list[Assignment]:
    return [a for a in all_assignments(session, round_) if a.assessor_id == assessor.id]


def reassign(
    session: Session,
    *,
    assignment: Assignment,
    to: User,
    actor: str,
    now: datetime,
    reason: str,
) -> Assignment:
    """Move an assessment not yet submitted to another assessor: one not already on the
    application and not from the applying council. Persists the new assessor on the assignment,
    then an audit event with the reason."""
    application = session.get(Application, assignment.application_id)
    assert application is not None and application.id is not None
    refusal = reassign_refusal(assignment, application)
    if refusal is not None:
        raise CbflowError(refusal)
    if to.role != "assessor":
        raise CbflowError(f"{to.name} is not an assessor")
    barred = _barred(
        to,
        _councils(session, application),
        _stage(_round_of(session, application)),
        declared_conflicts(session),
    )
    if barred is not None:
        raise CbflowError(barred)
    on_it = session.exec(
        select(Assignment).where(
            Assignment.application_id == application.id, Assignment.assessor_id == to.id
        )
    ).first()
    if on_it is not None:
        raise CbflowError(f"{to.name} already assesses {application.reference}")
    if not reason.strip():
        raise ValidationFailed({"reason": "give the reason for moving the assessment"})
    previous = session.get(User, assignment.assessor_id)
    # the draft belongs to the previous assessor's judgement: the new one starts afresh
    assignment.draft = {}
    assert to.id is not None
    assignment.assessor_id = to.id
    session.add(assignment)
    record(
        session,
        entity="application",
        entity_id=application.id,
        action="assessor_reassigned",
        actor=actor,
        now=now,
        reason=f"from {previous.email if previous else '?'} to {to.email}: {reason.strip()}",
    )
    session.flush()
    return assignment


def assigned_to(session: Session, assessor: User) -> list[tuple[Assignment, Application]]:
    """Every application assigned to an assessor, in every round, oldest first, without those
    of councils they have declared a conflict with."""
    conflicted = {c for a, c in declared_conflicts(session) if a == assessor.id}
    statement = (
        select(Assignment, Application)
        .join(Application, col(Application.id) == Assignment.application_id)
        .where(Assignment.assessor_id == assessor.id)
        .order_by(col(Assignment.id))
    )
    return [
        (a, app)
        for a, app in session.exec(statement)
        if conflicted.isdisjoint(partnerships.council_codes_of(session, app))
    ]


def assignment_of(session: Session, assessor: User, application_id: int) -> Assignment | None:
    """The assessor's assignment to an application, or None if it is not theirs (or they have
    declared a conflict with its council)."""
    found = session.exec(
        select(Assignment, Application)
        .join(Application, col(Application.id) == Assignment.application_id)
        .where(Assignment.assessor_id == assessor.id, Assignment.application_id == application_id)
    ).first()
    if found is None or assessor.id is None:
        return None
    assignment, application = found
    conflicted = {c for a, c in declared_conflicts(session) if a == assessor.id}
    codes = partnerships.council_codes_of(session, application)
    return None if not conflicted.isdisjoint(codes) else assignment


def disagreements(
    session: Session, application: Application
) -> list[tuple[ModerationTask, list[tuple[int, Score]]]]:
    """The application's moderation tasks, each with every submitted score on its criterion as
    (assessor id, score), in the order the assessors were assigned."""
    tasks = session.exec(
        select(ModerationTask)
        .where(ModerationTask.application_id == application.id)
        .order_by(col(ModerationTask.id))
    )
    out = []
    for task in tasks:
        rows = session.exec(
            select(Assignment.assessor_id, Score)
            .join(Score, col(Score.assignment_id) == Assignment.id)
            .where(
                Assignment.application_id == application.id,
                col(Assignment.submitted_at).is_not(None),
                Score.criterion_id == task.criterion_id,
            )
            .order_by(col(Assignment.id))
        )
        out.append((task, [(assessor_id, score) for assessor_id, score in rows]))
    return out
