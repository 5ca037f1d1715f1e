"""A simulated round, end to end, on the round's own timetable.

Real councils from the register apply with generated answers, simulated staff and assessors do
their part, and every stage event runs as it would in production: through `cbflow.stages`
directly, or through the Prefect flows that wrap it (see `flows/demo.py`). The clock walks the
prospectus's dates, so a 2011 round runs on its 2011 timetable.
"""

from __future__ import annotations

import inspect
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from pathlib import Path
from types import ModuleType
from typing import Any

from cbflow import simulate
from cbflow.clock import FixedClock
from cbflow.db import migrate, session_scope
from cbflow.demo_people import STAFF_EMAIL, officer_email
from cbflow.errors import OutsideWindow
from cbflow.lifecycle import AppState
from cbflow.models import Application, Council, PublishedModel
from cbflow.prospectus import Prospectus, load
from cbflow.services import adoption_route, applications, councils, rounds
from cbflow.services.implementation import return_periods
from cbflow.services.replication import adoption_rounds, latest_model, lineage
from cbflow.stages import documents_summary

Log = Callable[[str], None]


@dataclass
class DemoSummary:
    round: str
    title: str
    states: dict[str, int] = field(default_factory=dict)
    selected: list[dict[str, Any]] = field(default_factory=list)
    documents: dict[str, Any] = field(default_factory=dict)
    late_refused: int = 0
    adoption: dict[str, Any] = field(default_factory=dict)
    stages: list[str] = field(default_factory=list)


def default_council_count(prospectus: Prospectus, eligible: int) -> int:
    """Everyone in an opt-in round; otherwise a realistic field: several per shortlist place."""
    if prospectus.stages.assessment is None and prospectus.stages.bid is None:
        return eligible
    wanted = prospectus.stages.eoi.shortlist or prospectus.capacity.places or 5
    return min(eligible, max(30, 4 * wanted))


def _last_event(prospectus: Prospectus) -> datetime:
    """When the simulated round ends: after implementation, or after the decisions."""
    zone = prospectus.zone
    if prospectus.timetable.implementation and prospectus.stages.implementation:
        return _midnight(prospectus.timetable.implementation.ends, prospectus) + timedelta(days=15)
    if prospectus.timetable.decision:
        return prospectus.timetable.decision.by_at(zone)
    return prospectus.timetable.eoi.closes_at(zone) + timedelta(days=30)


def _midnight(day: Any, prospectus: Prospectus) -> datetime:
    return datetime.combine(day, time(0, 0), tzinfo=prospectus.zone)


async def _call(function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Run a stage event: a plain function, or a Prefect flow (a coroutine function)."""
    result = function(*args, **kwargs)
    return await result if inspect.isawaitable(result) else result


async def run(
    prospectus_path: Path,
    *,
    stages: ModuleType,
    seed: int = 2011,
    council_count: int | None = None,
    assessors: int = 6,
    progress: Callable[[float], None] | None = None,
    log: Log = print,
) -> DemoSummary:
    """Run the round in `prospectus_path` from launch to replication. `stages` is
    `cbflow.stages` or a module of flows with the same functions."""
    prospectus = load(prospectus_path)
    migrate()
    with session_scope() as session:
        councils.load_register(session)
        eligible = councils.eligible_councils(session, prospectus)
        needed = (
            prospectus.stages.assessment.assessors_per_application
            if prospectus.stages.assessment
            else 0
        )
        simulate.ensure_people(session, assessors=max(assessors, needed + 2), seed=seed)
    zone = prospectus.zone
    eoi = prospectus.timetable.eoi
    clock = FixedClock(eoi.opens_at(zone))
    start, finish = clock(), _last_event(prospectus)
    slug = prospectus.id
    summary = DemoSummary(round=slug, title=prospectus.title)

    def step(name: str, outcome: Any) -> None:
        summary.stages.append(name)
        counts = (
            ", ".join(f"{k}: {v}" for k, v in outcome.counts.items())
            if hasattr(outcome, "counts")
            else ""
        )
        log(f"{clock().astimezone(zone):%Y-%m-%d %H:%M %Z}  {name:<22} {counts}")
        if progress is not None:
            progress(min(1.0, (clock() - start) / (finish - start)))

    step(
        "launch",
        await _call(
            stages.launch,
            prospectus_path.read_text(encoding="utf-8"),
            str(prospectus_path),
            now=clock(),
        ),
    )

    count = council_count or default_council_count(prospectus, len(eligible))
    rng = simulate.seeded_random("field", slug, seed)
    field_ = sorted(rng.sample(eligible, min(count, len(eligible))), key=lambda c: c.code)
    clock.set(eoi.opens_at(zone) + (eoi.closes_at(zone) - eoi.opens_at(zone)) / 2)
    with session_scope() as session:
        round_ = rounds.get_round(session, slug)
        submitted = simulate.submit_eois(
            session, round_=round_, councils=field_[1:], now=clock(), seed=seed
        )
    log(f"{clock().astimezone(zone):%Y-%m-%d %H:%M %Z}  {'EOIs submitted':<22} {submitted}")
    step("receipts", await _call(stages.issue_receipts, slug, now=clock()))

    # one council tries a second after the deadline: refused, and nothing is stored
    clock.set(eoi.closes_at(zone) + timedelta(seconds=1))
    with session_scope() as session:
        round_ = rounds.get_round(session, slug)
        late, _ = applications.start_application(
            session,
            round_=round_,
            council_code=field_[0].code,
            actor=f"council:{field_[0].code}",
            now=clock(),
        )
        late_id = late.id
    try:
        with session_scope() as session:
            late_app = session.get(Application, late_id)
            assert late_app is not None
            by_type = simulate.councils_by_type(councils.all_councils(session))
            answers = simulate.answers_for(
                prospectus.stages.eoi.form,
                field_[0],
                prospectus,
                seed=seed,
                councils_by_type=by_type,
            )
            applications.submit(
                session,
                application=late_app,
                stage="eoi",
                answers=answers,
                actor=f"council:{field_[0].code}",
                now=clock(),
            )
    except OutsideWindow as refused:
        summary.late_refused += 1
        log(f"{clock().astimezone(zone):%Y-%m-%d %H:%M %Z}  late EOI refused: {refused}")

    clock.set(eoi.closes_at(zone))
    step("close EOI and sift", await _call(stages.close_eoi, slug, now=clock()))
    clock.advance(timedelta(days=1))
    with session_scope() as session:
        reviewed = simulate.review_referrals(
            session, round_=rounds.get_round(session, slug), now=clock(), seed=seed
        )
    log(f"{clock().astimezone(zone):%Y-%m-%d %H:%M %Z}  {'referrals reviewed':<22} {reviewed}")

    if prospectus.stages.bid and prospectus.timetable.bid:
        bid = prospectus.timetable.bid
        clock.set(max(clock(), bid.opens_at(zone)))
        step("invite to bid", await _call(stages.invite_to_bid, slug, now=clock()))
        clock.set(bid.opens_at(zone) + (bid.closes_at(zone) - bid.opens_at(zone)) / 2)
        with session_scope() as session:
            bids = simulate.submit_bids(
                session, round_=rounds.get_round(session, slug), now=clock(), seed=seed
            )
        log(f"{clock().astimezone(zone):%Y-%m-%d %H:%M %Z}  {'bids submitted':<22} {bids}")
        clock.set(bid.closes_at(zone))
        step("close bids", await _call(stages.close_bids, slug, now=clock()))

    if prospectus.stages.assessment:
        window = prospectus.timetable.assessment
        clock.set(max(clock(), window.opens_at(zone)) if window else clock() + timedelta(days=1))
        step("assign assessors", await _call(stages.assign_assessors, slug, now=clock()))
        clock.advance(timedelta(days=2))
        with session_scope() as session:
            scored = simulate.score_all(
                session, round_=rounds.get_round(session, slug), now=clock(), seed=seed
            )
        log(f"{clock().astimezone(zone):%Y-%m-%d %H:%M %Z}  {'assessments submitted':<22} {scored}")
        step("open moderation", await _call(stages.open_moderation, slug, now=clock()))
        clock.advance(timedelta(days=1))
        with session_scope() as session:
            simulate.moderate_all(session, round_=rounds.get_round(session, slug), now=clock())
        step("finalise assessment", await _call(stages.finalise_assessment, slug, now=clock()))

    decision = prospectus.timetable.decision
    clock.set(
        max(clock(), decision.by_at(zone) - timedelta(hours=12))
        if decision
        else clock() + timedelta(days=1)
    )
    step("decisions", await _call(stages.decide, slug, now=clock()))

    period = prospectus.timetable.implementation
    if prospectus.stages.implementation and period:
        clock.set(max(clock(), _midnight(period.starts, prospectus)))
        step("start implementation", await _call(stages.start_implementation, slug, now=clock()))
        for number, (_, last, due) in enumerate(return_periods(prospectus), start=1):
            clock.set(
                max(clock(), _midnight(last + timedelta(days=1), prospectus) + timedelta(hours=10))
            )
            with session_scope() as session:
                simulate.make_returns(
                    session,
                    round_=rounds.get_round(session, slug),
                    period=number,
                    now=clock(),
                    seed=seed,
                )
            clock.set(max(clock(), due))
            step(f"returns cycle {number}", await _call(stages.returns_cycle, slug, now=clock()))
        clock.set(max(clock(), _midnight(period.ends + timedelta(days=1), prospectus)))
        step("complete", await _call(stages.complete, slug, now=clock()))

        if prospectus.stages.replication:
            await _replicate(
                slug, stages=stages, clock=clock, summary=summary, step=step, field_=field_, log=log
            )

    with session_scope() as session:
        round_ = rounds.get_round(session, slug)
        summary.states = dict(Counter(a.state for a in rounds.applications_of(session, round_)))
        chosen = [a for a in rounds.places_of(session, round_) if a.decided_at]
        names = {c.code: c.name for c in councils.all_councils(session)}
        summary.selected = [
            {
                "council": names[a.council_code],
                "score": a.total_score,
                "rank": a.rank,
                "support": a.support_requested_pence,
                "state": a.state,
            }
            for a in sorted(chosen, key=lambda a: (a.rank or 0, a.council_code))
        ]
    summary.documents = documents_summary(slug)
    return summary


async def _replicate(
    slug: str,
    *,
    stages: ModuleType,
    clock: FixedClock,
    summary: DemoSummary,
    step: Callable[[str, Any], None],
    field_: list[Any],
    log: Log,
) -> None:
    """The best-ranked place publishes its model and a council that was not selected adopts it:
    through the rolling adoption route where the prospectus opens one (its officer submits the
    light form and staff approve it), or into a round open for expressions of interest; never
    into a round whose windows have closed."""
    with session_scope() as session:
        round_ = rounds.get_round(session, slug)
        done = rounds.applications_of(session, round_, AppState.COMPLETED)
        if not done:
            return
        best = sorted(done, key=lambda a: (a.rank or 0, a.council_code))[0]
        others = [
            a.council_code
            for a in rounds.applications_of(session, round_)
            if a.state in (AppState.UNSUCCESSFUL, AppState.RESERVE, AppState.SIFT_FAIL)
        ]
        reference = best.reference
    adopter = (
        others[0] if others else next(c.code for c in field_ if c.code != reference.split("/")[1])
    )
    step("publish model", await _call(stages.publish, reference, now=clock()))
    with session_scope() as session:
        application = applications.get_application(session, reference)
        model = latest_model(session, application)
        assert model is not None and model.id is not None
        model_id = model.id
    clock.advance(timedelta(days=14))
    refusal = _cannot_adopt(model_id, adopter, clock())
    if refusal is not None:
        # never into a round whose windows have closed: its application could not be submitted
        log(f"no adoption: {refusal}")
        summary.adoption = {"model": reference, "not adopted": refusal}
        return
    outcome = await _call(stages.adopt, model_id, adopter, now=clock())
    step("adopt model", outcome)
    approved = _through_the_route(outcome.notes[0], clock)
    with session_scope() as session:
        model = session.get(PublishedModel, model_id)
        assert model is not None
        report = lineage(session, model)
        [adoption] = [a for a in report.adoptions if a.council.code == adopter]
        valid = sum(1 for c in adoption.carried if c.problem is None)
    summary.adoption = {
        "model": reference,
        "adopter": adopter,
        "application": outcome.notes[0],
        "answers carried over": outcome.counts.get("answers carried over", 0),
        "carried over and valid": valid,
        "lineage report": f"/staff/rounds/{slug}/models/{model_id}/lineage",
    }
    if approved is not None:
        summary.adoption["approved, implementation starts"] = approved


def _cannot_adopt(model_id: int, council_code: str, now: datetime) -> str | None:
    """Why the council cannot adopt the model now (no rolling route open, and no round that
    takes it open for expressions of interest), or None when it can."""
    with session_scope() as session:
        model = session.get(PublishedModel, model_id)
        council = session.get(Council, council_code)
        assert model is not None and council is not None
        route_refused = adoption_route.route_refusal(session, model, council, now)
        if route_refused is None or adoption_rounds(session, model, council, now):
            return None
        return f"{route_refused}, and no round that takes {council.name} is open"


# what the demo's adopting council writes in the rolling route's own questions
ADOPTION_ANSWERS = {
    adoption_route.CHANGES: (
        "We keep the model's pooled budget and its governance, and start with troubled families "
        "and older people's care only, adding the rest in the second year."
    ),
    adoption_route.PARTNERS: "Our police, health and Jobcentre Plus partners, who have agreed.",
    adoption_route.READINESS: adoption_route.READY[0],
}


def _through_the_route(reference: str, clock: FixedClock) -> str | None:
    """An adoption through the rolling route goes on as people would take it: the council's
    officer answers the route's own questions and submits, and programme staff approve it a week
    later, which starts its implementation with the model's milestones moved to that day.
    Returns that day, or None for an adoption into a round (a draft its council goes on with)."""
    with session_scope() as session:
        application = applications.get_application(session, reference)
        if application.route != adoption_route.ROUTE:
            return None
        council = session.get(Council, application.council_code)
        assert council is not None
        officer = officer_email(council)
        adoption_route.save(
            session,
            application=application,
            answers=ADOPTION_ANSWERS,
            questions=list(ADOPTION_ANSWERS),
            base=None,
            actor=officer,
            now=clock(),
        )
        clock.advance(timedelta(days=2))
        adoption_route.submit(session, application=application, actor=officer, now=clock())
    clock.advance(timedelta(days=7))
    with session_scope() as session:
        application = applications.get_application(session, reference)
        adoption_route.approve(session, application=application, actor=STAFF_EMAIL, now=clock())
        return clock().date().isoformat()
