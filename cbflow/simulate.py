"""Simulated councils and assessors for the demo and the benchmark.

Answers are generated from any prospectus form by question type (nothing here knows a question),
deterministically from a seed, so a demo run can be repeated. Most answers pass the round's sift
rules; a few do not, so that every sift outcome shows up.
"""

from __future__ import annotations

import hashlib
import random
import re
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlmodel import Session, select

from cbflow.forms import is_shown
from cbflow.lifecycle import AppState
from cbflow.models import Application, Council, Round, User
from cbflow.prospectus import (
    ChoiceQuestion,
    CouncilQuestion,
    DateQuestion,
    EmailQuestion,
    FileQuestion,
    Form,
    MoneyQuestion,
    MultichoiceQuestion,
    NumberQuestion,
    Prospectus,
    Question,
    SiftCheck,
    TableQuestion,
    TextareaQuestion,
    TextQuestion,
    YesNoQuestion,
)
from cbflow.services import applications, assessment, implementation, rounds, sift
from cbflow.services.councils import all_councils
from cbflow.services.rounds import prospectus_of

WORDS = [
    "partners",
    "pool",
    "budgets",
    "to",
    "redesign",
    "services",
    "around",
    "families",
    "and",
    "places,",
    "sharing",
    "data,",
    "staff",
    "and",
    "premises",
    "so",
    "that",
    "people",
    "get",
    "help",
    "earlier",
    "and",
    "public",
    "money",
    "goes",
    "further;",
    "the",
    "board",
    "agrees",
    "outcomes,",
    "tracks",
    "savings",
    "and",
    "reinvests",
    "them",
    "in",
    "prevention",
    "across",
    "health,",
    "police,",
    "housing,",
    "skills",
    "and",
    "employment",
    "support",
]


def seeded_random(*parts: object) -> random.Random:
    digest = hashlib.sha256("|".join(map(str, parts)).encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


def quality(council_code: str, seed: int) -> float:
    """A council's hidden strength (0..1): what simulated assessors perceive, with noise."""
    return seeded_random("quality", council_code, seed).betavariate(4.0, 2.0)


def _sift_targets(prospectus: Prospectus, question_id: str) -> list[SiftCheck]:
    return [r.check for r in prospectus.stages.eoi.sift if r.check.question == question_id]


PENNY = Decimal("0.01")
PARTNERS = [
    "Primary care trust",
    "Police",
    "Fire and rescue service",
    "Jobcentre Plus",
    "Probation trust",
    "Housing association",
    "Voluntary sector forum",
    "Further education college",
    "Clinical commissioning group",
    "Youth offending service",
]


def _json_number(value: Decimal) -> int | float:
    return int(value) if value == value.to_integral_value() else float(value)


def _bounds(
    low: Decimal | None,
    high: Decimal | None,
    checks: list[SiftCheck],
    comply: bool,
    default_high: Decimal | None,
) -> tuple[Decimal, Decimal]:
    """The range to draw a number from: the question's own, narrowed to what the sift asks."""
    low = low if low is not None else Decimal(0)
    for check in checks if comply else []:
        if check.min is not None:
            low = max(low, check.min)
        if check.max is not None:
            high = check.max if high is None else min(high, check.max)
    if high is None:
        high = default_high if default_high is not None else low + 200
    return low, max(low, high)


def _text(rng: random.Random, words: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(max(words, 1))).capitalize() + "."


def _value(
    question: Question,
    rng: random.Random,
    council: Council,
    prospectus: Prospectus,
    request: Decimal | None,
    councils_by_type: dict[str, list[str]],
) -> Any:
    checks = _sift_targets(prospectus, question.id)
    comply = rng.random() < 0.9  # one answer in ten misses a sift check on purpose
    match question:
        case TextQuestion():
            text = f"{council.name}: {question.label.lower()}"
            return text[: question.max_chars] if question.max_chars else text
        case TextareaQuestion():
            limit = question.max_words or 250
            floor = max((c.min_words or 0 for c in checks), default=0)
            words = rng.randint(max(floor, limit // 3), limit) if comply else max(floor // 2, 3)
            text = _text(rng, min(words, limit))
            return text[: question.max_chars].rstrip() if question.max_chars else text
        case MoneyQuestion():
            low, high = _bounds(question.min, question.max, checks, comply, Decimal(5_000_000))
            if request is not None and question.id == prospectus.support_question():
                return str(min(max(request, low), high).quantize(PENNY))
            thousands = rng.randint(
                int(low) // 1000 + 1, max(int(high) // 1000, int(low) // 1000 + 1)
            )
            return str(min(Decimal(thousands * 1000), high).quantize(PENNY))
        case NumberQuestion():
            low, high = _bounds(question.min, question.max, checks, comply, None)
            step = question.step or Decimal(1)
            steps = int((min(high, low + 200) - low) / step)
            return _json_number(low + step * rng.randint(0, max(steps, 0)))
        case DateQuestion():
            start = question.min or prospectus.timetable.eoi.opens_at(prospectus.zone).date()
            end = question.max or start + timedelta(days=365)
            return (start + timedelta(days=rng.randint(0, max((end - start).days, 0)))).isoformat()
        case YesNoQuestion():
            wanted = next((c.equals for c in checks if "equals" in c.model_fields_set), None)
            if isinstance(wanted, bool):
                return wanted if comply else not wanted
            return rng.random() < 0.7
        case ChoiceQuestion():
            wanted = next((c.equals for c in checks if "equals" in c.model_fields_set), None)
            if wanted in question.options and comply:
                return wanted
            return rng.choice(question.options)
        case MultichoiceQuestion():
            options = list(question.options)
            fewest = question.min_selected or 1
            most = min(question.max_selected or len(options), len(options))
            return rng.sample(options, rng.randint(min(fewest, most), most))
        case EmailQuestion():
            person = question.id.replace("_", ".")
            domain = re.sub(r"[^a-z0-9]+", "-", council.name.lower()).strip("-")  # St. Helens
            return f"{person}@{domain}.gov.uk"
        case CouncilQuestion():
            types = question.council_types
            if types is None or council.type in types:
                return council.code
            pool = [code for t in types for code in councils_by_type.get(t, [])]
            return rng.choice(pool) if pool else council.code
        case FileQuestion():
            accept = question.accept or ["pdf"]
            return {
                "name": f"{question.id.replace('_', '-')}.{accept[0].lstrip('.')}",
                "size": rng.randint(50_000, 900_000),
                "sha256": hashlib.sha256(f"{council.code}{question.id}".encode()).hexdigest(),
            }
    raise ValueError(f"no simulation for question type {question.type}")


def _table(
    question: TableQuestion,
    rng: random.Random,
    council: Council,
    prospectus: Prospectus,
    councils_by_type: dict[str, list[str]],
) -> list[dict[str, Any]]:
    floor = max(
        [question.min_rows or 0] + [c.min_rows or 0 for c in _sift_targets(prospectus, question.id)]
    )
    ceiling = question.max_rows or max(floor, 6)
    comply = rng.random() < 0.9
    count = (
        rng.randint(max(floor, min(3, ceiling)), max(min(ceiling, floor + 5), floor, 1))
        if comply
        else max(floor - 1, question.min_rows or 0)
    )
    names = rng.sample(PARTNERS, k=min(count, len(PARTNERS)))
    rows = []
    for index in range(count):
        row: dict[str, Any] = {}
        for position, column in enumerate(question.columns):
            if not is_shown(column, row):
                continue
            if position == 0 and isinstance(column, TextQuestion):
                # the first text column of a table names something: a partner, say
                name = f"{names[index % len(names)]} ({council.name})"
                row[column.id] = name[: column.max_chars] if column.max_chars else name
            else:
                row[column.id] = _value(column, rng, council, prospectus, None, councils_by_type)
        rows.append(row)
    return rows


def answers_for(
    form: Form,
    council: Council,
    prospectus: Prospectus,
    *,
    seed: int,
    councils_by_type: dict[str, list[str]],
    request: Decimal | None = None,
    period: int = 0,
) -> dict[str, Any]:
    """A complete, valid set of answers to `form` for one council."""
    rng = seeded_random("answers", council.code, seed, period)
    answers: dict[str, Any] = {}
    for question in form.questions():
        if not is_shown(question, answers):
            continue
        if isinstance(question, TableQuestion):
            answers[question.id] = _table(question, rng, council, prospectus, councils_by_type)
        elif question.required or _sift_targets(prospectus, question.id) or rng.random() < 0.85:
            answers[question.id] = _value(
                question, rng, council, prospectus, request, councils_by_type
            )
    return answers


def request_for(council: Council, prospectus: Prospectus, seed: int) -> Decimal | None:
    """A plausible request: around an equal share of the budget, some asking for more."""
    budget, places = prospectus.capacity.budget_gbp, prospectus.capacity.places
    if budget is None:
        return None
    share = budget / (places or 1)
    return (
        share
        * Decimal(str(round(seeded_random("request", council.code, seed).uniform(0.5, 1.4), 2)))
    ).quantize(Decimal("1000"))


def assessor_bias(assessor_id: int, seed: int) -> float:
    """How harsh (negative) or lenient (positive) an assessor is, in scale points."""
    return seeded_random("bias", assessor_id, seed).uniform(-0.7, 0.7)


def score_for(
    prospectus: Prospectus, council_code: str, criterion_id: str, assessor_id: int, seed: int
) -> tuple[int, str]:
    """One simulated assessor's score and justification for one criterion."""
    stage = prospectus.stages.assessment
    assert stage is not None
    rng = seeded_random("score", council_code, criterion_id, assessor_id, seed)
    span = stage.scale.max - stage.scale.min
    perceived = (
        stage.scale.min + quality(council_code, seed) * span + assessor_bias(assessor_id, seed)
    )
    score = max(stage.scale.min, min(stage.scale.max, round(perceived + rng.gauss(0, 0.6))))
    label = stage.scale.labels.get(score, str(score))
    return (
        score,
        f"{label}: the evidence for this criterion was judged {label.lower()} "
        "against the guidance.",
    )


def return_answers(
    form: Form,
    council: Council,
    prospectus: Prospectus,
    *,
    seed: int,
    period: int,
    councils_by_type: dict[str, list[str]],
) -> dict[str, Any]:
    """A return for one period; counts and sums grow steadily as the work beds in."""
    answers = answers_for(
        form, council, prospectus, seed=seed, councils_by_type=councils_by_type, period=period
    )
    base = answers_for(form, council, prospectus, seed=seed, councils_by_type=councils_by_type)
    rng = seeded_random("growth", council.code, seed, period)
    growth = Decimal(str(round((0.3 + 0.15 * period) * rng.uniform(0.9, 1.1), 3)))
    for question in form.questions():
        if question.id not in answers or question.id not in base:
            continue
        if isinstance(question, NumberQuestion):
            low = question.min if question.min is not None else Decimal(0)
            step = question.step or Decimal(1)
            grown = Decimal(str(base[question.id])) * growth
            value = low + step * int(max(grown - low, Decimal(0)) / step)
            answers[question.id] = _json_number(min(value, question.max) if question.max else value)
        elif isinstance(question, MoneyQuestion):
            grown = (Decimal(base[question.id]) * growth).quantize(PENNY)
            low = question.min if question.min is not None else grown
            answers[question.id] = str(min(max(grown, low), question.max or grown))
    return answers


def moderated_score(scores: list[int]) -> int:
    """A moderator's call in the simulation: the median of the assessors' scores."""
    ordered = sorted(scores)
    return ordered[len(ordered) // 2]


# ---------------------------------------------------------------------------------------------
# Simulated people acting through the services, as the portal's users will


def councils_by_type(councils: list[Council]) -> dict[str, list[str]]:
    grouped: dict[str, list[str]] = {}
    for council in councils:
        grouped.setdefault(council.type, []).append(council.code)
    return grouped


def ensure_people(session: Session, *, assessors: int, seed: int) -> list[User]:
    """Staff and assessors for a simulated round (created once; found again on a re-run)."""
    councils = all_councils(session)
    regions = sorted({c.region for c in councils})
    people = []
    for number in range(1, assessors + 1):
        email = f"assessor{number}@assessors.example"
        user = session.exec(select(User).where(User.email == email)).first()
        if user is None:
            user = User(
                email=email,
                name=f"Assessor {number}",
                role="assessor",
                region=regions[(number + seed) % len(regions)],
            )
            session.add(user)
        people.append(user)
    if session.exec(select(User).where(User.role == "staff")).first() is None:
        session.add(User(email="programme.team@staff.example", name="Programme team", role="staff"))
    session.flush()
    return people


def submit_eois(
    session: Session, *, round_: Round, councils: list[Council], now: datetime, seed: int
) -> int:
    """Each council starts and submits its expression of interest. Returns how many submitted."""
    prospectus = prospectus_of(round_)
    by_type = councils_by_type(all_councils(session))
    submitted = 0
    for council in councils:
        answers = answers_for(
            prospectus.stages.eoi.form,
            council,
            prospectus,
            seed=seed,
            councils_by_type=by_type,
            request=request_for(council, prospectus, seed),
        )
        application, _ = applications.start_application(
            session,
            round_=round_,
            council_code=council.code,
            actor=f"council:{council.code}",
            now=now,
        )
        if application.state == AppState.EOI_DRAFT:
            applications.submit(
                session,
                application=application,
                stage="eoi",
                answers=answers,
                actor=f"council:{council.code}",
                now=now,
            )
            submitted += 1
    return submitted


def review_referrals(session: Session, *, round_: Round, now: datetime, seed: int) -> int:
    """Staff look at each referred EOI; about two in three are let through."""
    referred = rounds.applications_of(session, round_, AppState.SIFT_REFER)
    for application in referred:
        passed = seeded_random("referral", application.council_code, seed).random() < 0.67
        failed_rules = [rid for rid, r in application.sift_results.items() if not r["passed"]]
        reason = (
            f"staff review: {', '.join(failed_rules)} met by evidence supplied on request"
            if passed
            else f"staff review: {', '.join(failed_rules)} not met"
        )
        sift.review_referral(
            session,
            application=application,
            passed=passed,
            actor="staff:programme-team",
            now=now,
            reason=reason,
        )
    return len(referred)


def submit_bids(session: Session, *, round_: Round, now: datetime, seed: int) -> int:
    """Invited councils draft and submit their bids; one in eight lets the deadline pass."""
    prospectus = prospectus_of(round_)
    assert prospectus.stages.bid is not None
    by_type = councils_by_type(all_councils(session))
    submitted = 0
    for application in rounds.applications_of(session, round_, AppState.INVITED):
        council = session.get(Council, application.council_code)
        assert council is not None
        answers = answers_for(
            prospectus.stages.bid.form,
            council,
            prospectus,
            seed=seed,
            councils_by_type=by_type,
            request=request_for(council, prospectus, seed),
        )
        actor = f"council:{council.code}"
        applications.save_draft(
            session, application=application, stage="bid", answers=answers, actor=actor, now=now
        )
        if seeded_random("bid", council.code, seed).random() < 0.875:
            applications.submit(session, application=application, stage="bid", actor=actor, now=now)
            submitted += 1
    return submitted


def score_all(session: Session, *, round_: Round, now: datetime, seed: int) -> int:
    """Every assessor scores every application assigned to them."""
    prospectus = prospectus_of(round_)
    assert prospectus.stages.assessment is not None
    count = 0
    for assignment in assessment.all_assignments(session, round_):
        if assignment.submitted_at is not None:
            continue
        application = session.get(Application, assignment.application_id)
        assert application is not None
        scores = {
            c.id: score_for(
                prospectus, application.council_code, c.id, assignment.assessor_id, seed
            )
            for c in prospectus.stages.assessment.criteria
        }
        assessment.submit_scores(
            session,
            assignment=assignment,
            scores=scores,
            actor=f"assessor:{assignment.assessor_id}",
            now=now,
        )
        count += 1
    return count


def moderate_all(session: Session, *, round_: Round, now: datetime) -> int:
    """A moderator settles each open disagreement at the assessors' median."""
    scores = assessment.scores_by_application(session, round_)
    tasks = [t for t in assessment.moderation_tasks(session, round_) if t.resolved_at is None]
    for task in tasks:
        given = scores[task.application_id][task.criterion_id]
        assessment.moderate(
            session,
            task=task,
            score=moderated_score(given),
            reason=f"moderation panel agreed the median of {sorted(given)}",
            actor="staff:moderation-panel",
            now=now,
        )
    return len(tasks)


def make_returns(session: Session, *, round_: Round, period: int, now: datetime, seed: int) -> int:
    """Implementing places make their return for one period; one place in six misses it."""
    prospectus = prospectus_of(round_)
    form = prospectus.forms().get("returns")
    if form is None:
        return 0
    by_type = councils_by_type(all_councils(session))
    made = 0
    for application in rounds.applications_of(session, round_, AppState.IMPLEMENTING):
        if seeded_random("return", application.council_code, period, seed).random() < 1 / 6:
            continue
        council = session.get(Council, application.council_code)
        assert council is not None
        for record_ in implementation.returns_of(session, application):
            if record_.period == period:
                answers = return_answers(
                    form, council, prospectus, seed=seed, period=period, councils_by_type=by_type
                )
                implementation.submit_return(
                    session,
                    record_=record_,
                    answers=answers,
                    actor=f"council:{council.code}",
                    now=now,
                )
                made += 1
        for milestone in implementation.milestones_of(session, application):
            if milestone.met_on is None and milestone.due <= now.astimezone(prospectus.zone).date():
                implementation.meet_milestone(
                    session,
                    milestone=milestone,
                    met_on=milestone.due,
                    actor=f"council:{council.code}",
                    now=now,
                )
    return made
