"""The stage events as Prefect flows, so administrators watch every step in the Prefect UI.

Each flow runs the domain event from `cbflow.stages` in a worker thread (the work is blocking:
database and rendering), its steps as task runs (flows.steps: the domain step, the documents in
batches, the mail; a retried run resumes after the steps it finished), then attaches one
artifact listing what it did and linking every document it issued. Flows are async because a
Prefect sync flow costs about a second of bookkeeping, an async one about a tenth. `now` is the
injectable clock: left out, it is the system's time; the demo and tests pass the round's own
dates.
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from prefect import Flow, flow, get_run_logger, task
from prefect.artifacts import acreate_markdown_artifact
from prefect.cache_policies import NO_CACHE
from sqlmodel import col, select

from cbflow import stages
from cbflow.db import session_scope
from cbflow.flowlist import (
    ADOPT_MODEL,
    AMEND_PROSPECTUS,
    ASSIGN_ASSESSORS,
    BOARD_PACK,
    CLARIFICATIONS_DUE,
    CLOSE_BIDS,
    CLOSE_EOI,
    COMPLETE_ROUND,
    DEADLINE,
    DECIDE,
    FINALISE_ASSESSMENT,
    FLOWS,
    INVITE_TO_BID,
    ISSUE_RECEIPTS,
    LAUNCH_ROUND,
    OPEN_MODERATION,
    PORTAL,
    PUBLISH_MODEL,
    RETURNS_CYCLE,
    SCHEDULE,
    SEND_DIGESTS,
    SEND_REMINDERS,
    START_IMPLEMENTATION,
)
from cbflow.lifeline import end_with_parent
from cbflow.models import Document
from cbflow.services import checkpoints
from cbflow.settings import get_settings
from cbflow.stages import SYSTEM, Outcome, documents_summary
from flows.steps import TaskSteps

__all__ = ["documents_summary"]


def _now(now: datetime | None) -> datetime:
    return now if now is not None else datetime.now(UTC)


async def _deadline(event: str, slug: str, now: datetime | None) -> datetime:
    """The moment a deadline run acts at: `now` when given (the demo, tests); otherwise the
    real time, never before the time the run was scheduled for. Prefect's runner may start a
    scheduled run a fraction of a second early (seen: 22:13:59.814 for 22:14:00), and acting
    then would find the deadline not yet passed, so an early run waits for its moment. A run
    that starts well after it (the runner was down over the deadline and caught up) is audited
    with how late it ran."""
    if now is not None:
        return now
    from prefect.runtime import flow_run

    # a retried run acts at the moment its first attempt did
    run = str(flow_run.id)
    done, moment = await asyncio.to_thread(checkpoints.finished, run, MOMENT)
    if done:
        return datetime.fromisoformat(moment)
    scheduled: datetime = flow_run.scheduled_start_time
    current = datetime.now(UTC)
    while current < scheduled:
        await asyncio.sleep(max((scheduled - current).total_seconds(), 0.001))
        current = datetime.now(UTC)
    late = await asyncio.to_thread(stages.record_late_run, slug, event, scheduled, current)
    if late is not None:
        get_run_logger().warning("%s: %s", slug, late)
    await asyncio.to_thread(checkpoints.record, run, MOMENT, current.isoformat())
    return current


MOMENT = "the moment it acts at"  # a deadline run's first step, kept for its retries


# how far ahead of a run's `now` the run may be started and still wait for it (the receipts
# run for a batch of submissions is asked for the end of its batch, seconds ahead)
WAITS_AT_MOST = timedelta(minutes=5)


async def _not_before(now: datetime | None) -> datetime:
    """`now`, once the real time has reached it. A receipts run acts for the batch of
    submissions that ends at `now`: started a moment early (Prefect's runner does that), it
    would miss the batch's last submissions, whose own requests asked for this same run. A
    `now` in the past (the demo, a re-run) or far ahead (a test's own calendar) is used as
    given, at once."""
    if now is None:
        return datetime.now(UTC)
    ahead = (now - datetime.now(UTC)).total_seconds()
    if 0 < ahead <= WAITS_AT_MOST.total_seconds():
        await asyncio.sleep(ahead)
    return now


def _link(document_id: int) -> str:
    """A document's address on the portal: staff open it there (a browser will not follow a
    file:// link from a web page such as the Prefect UI)."""
    return f"{get_settings().resolved_portal_base_url}/staff/documents/{document_id}"


def _document_ids(paths: Sequence[Path]) -> dict[Path, int]:
    """The id of each issued document, by the path it was rendered to: its Document row is found
    by its path under the documents folder, in one query for every 500 paths."""
    root = get_settings().documents_dir.resolve()
    by_stored: dict[str, Path] = {}  # as Document.path has it (see record_rendered)
    for path in paths:
        absolute = path.resolve()
        by_stored[str(absolute.relative_to(root) if absolute.is_relative_to(root) else path)] = path
    found: dict[Path, int] = {}
    stored = list(by_stored)
    with session_scope() as session:
        for start in range(0, len(stored), 500):
            rows = session.exec(
                select(Document.path, Document.id).where(
                    col(Document.path).in_(stored[start : start + 500])
                )
            )
            found |= {by_stored[row_path]: row_id for row_path, row_id in rows if row_id}
    return found


@task(name="artifact", task_run_name="artifact", cache_policy=NO_CACHE, persist_result=False)
async def _report(outcome: Outcome) -> Outcome:
    """Log what the stage did and attach one markdown artifact to its flow run: its counts, and
    a link on the portal to every document it issued. Persists nothing in cbflow's database."""
    logger = get_run_logger()
    counts = ", ".join(f"{k}: {v}" for k, v in outcome.counts.items()) or "nothing to do"
    logger.info(
        "%s %s: %s; %d documents issued",
        outcome.round,
        outcome.stage,
        counts,
        len(outcome.documents),
    )
    lines = [f"# {outcome.round}: {outcome.stage}", "", "| what | count |", "| --- | --- |"]
    lines += [f"| {k} | {v} |" for k, v in outcome.counts.items()]
    if outcome.notes:
        lines += ["", "## Notes", "", *(f"- {note}" for note in outcome.notes)]
    if outcome.documents:
        ids = await asyncio.to_thread(_document_ids, outcome.documents)
        lines += ["", f"## Documents issued ({len(outcome.documents)})", ""]
        for path in outcome.documents:
            name = f"{path.parent.name}/{path.name}"
            found = ids.get(path)
            lines.append(f"- [{name}]({_link(found)})" if found else f"- {name} (not recorded)")
    await acreate_markdown_artifact(
        markdown="\n".join(lines),
        key=f"{outcome.round}-{outcome.stage}".lower(),
        description=f"{outcome.round}: {outcome.stage}",
    )
    return outcome


def _run_id() -> str:
    from prefect.runtime import flow_run

    return str(flow_run.id)


async def _run(event: Callable[..., Outcome], *args: Any, **kwargs: Any) -> Outcome:
    """Run the stage event's steps as task runs of this flow run (see flows.steps: a retry of
    the run resumes after the steps it finished), then report what it did."""
    if os.environ.get("PREFECT__DEPLOYMENT_NAME"):
        # a process of its own, started by the flow runner: it ends (reported crashed by
        # Prefect's engine) when the runner ends, rather than run on with nobody watching
        end_with_parent(signal.SIGTERM)
    steps = TaskSteps(_run_id(), get_settings())
    outcome = await asyncio.to_thread(event, *args, steps=steps, **kwargs)
    if outcome.timetable_changed:
        await _reschedule(outcome)
    return await _report(outcome)


async def _reschedule(outcome: Outcome) -> None:
    """Bring the round's scheduled runs in line with its changed timetable. Where that cannot be
    done (no deadline deployments registered: a run outside `cbflow serve`), the run says so:
    the staff desk then offers each deadline's run by hand once it has passed."""
    from flows.deployments import schedule_round

    logger = get_run_logger()
    try:
        created = await schedule_round(outcome.round)
    except Exception as exc:  # the Prefect server's refusal, whatever its kind
        note = f"the round's deadline runs were not rescheduled: {exc}"
        logger.warning("%s: %s", outcome.round, note)
        outcome.notes.append(note)
        return
    for name, when in created:
        logger.info("%s: %s scheduled for %s", outcome.round, name, when.isoformat())


def _named(template: str) -> Callable[[], str]:
    """A run name from the flow's parameters, with the date it acts on when one is given, so
    the runs of a round read as its timetable: 'whole-place-2011 · bids close · 14 Dec 2011'."""

    def name() -> str:
        from prefect.runtime import flow_run

        parameters = dict(flow_run.parameters)
        if "path" in parameters:
            parameters["path"] = Path(parameters["path"]).stem
        text = template.format(**parameters)
        now = parameters.get("now")
        if isinstance(now, str):
            now = datetime.fromisoformat(now)
        return f"{text} · {now:%-d %b %Y}" if isinstance(now, datetime) else text

    return name


@flow(name=LAUNCH_ROUND.name, flow_run_name=_named("{path} · launch"))
async def launch(
    source: str,
    path: str,
    now: datetime | None = None,
    schedule: bool = False,
    actor: str = SYSTEM,
) -> Outcome:
    """Launch a round; with `schedule`, also create a scheduled run for each of its deadlines."""
    outcome = await _run(stages.launch, source, path, now=_now(now), actor=actor)
    if schedule:
        from flows.deployments import schedule_round

        scheduled = await schedule_round(outcome.round, _now(now))
        get_run_logger().info("%s: %d deadline runs scheduled", outcome.round, len(scheduled))
    return outcome


@flow(name=ISSUE_RECEIPTS.name, flow_run_name=_named("{slug} · receipts"))
async def issue_receipts(slug: str, now: datetime | None = None) -> Outcome:
    return await _run(stages.issue_receipts, slug, now=await _not_before(now))


@flow(name=CLOSE_EOI.name, flow_run_name=_named("{slug} · EOI close and sift"))
async def close_eoi(slug: str, now: datetime | None = None, actor: str = SYSTEM) -> Outcome:
    return await _run(
        stages.close_eoi, slug, now=await _deadline(CLOSE_EOI.name, slug, now), actor=actor
    )


@flow(name=INVITE_TO_BID.name, flow_run_name=_named("{slug} · invite to bid"))
async def invite_to_bid(
    slug: str,
    now: datetime | None = None,
    chosen: list[str] | None = None,
    actor: str = SYSTEM,
) -> Outcome:
    return await _run(stages.invite_to_bid, slug, now=_now(now), chosen=chosen, actor=actor)


@flow(name=CLOSE_BIDS.name, flow_run_name=_named("{slug} · bids close"))
async def close_bids(slug: str, now: datetime | None = None, actor: str = SYSTEM) -> Outcome:
    return await _run(
        stages.close_bids, slug, now=await _deadline(CLOSE_BIDS.name, slug, now), actor=actor
    )


@flow(name=ASSIGN_ASSESSORS.name, flow_run_name=_named("{slug} · assessment: assign"))
async def assign_assessors(slug: str, now: datetime | None = None, actor: str = SYSTEM) -> Outcome:
    return await _run(stages.assign_assessors, slug, now=_now(now), actor=actor)


@flow(name=OPEN_MODERATION.name, flow_run_name=_named("{slug} · assessment: moderation"))
async def open_moderation(slug: str, now: datetime | None = None, actor: str = SYSTEM) -> Outcome:
    return await _run(stages.open_moderation, slug, now=_now(now), actor=actor)


@flow(
    name=FINALISE_ASSESSMENT.name, flow_run_name=_named("{slug} · assessment: totals and ranking")
)
async def finalise_assessment(
    slug: str, now: datetime | None = None, actor: str = SYSTEM
) -> Outcome:
    return await _run(stages.finalise_assessment, slug, now=_now(now), actor=actor)


@flow(name=DECIDE.name, flow_run_name=_named("{slug} · selection and decisions"))
async def decide(slug: str, now: datetime | None = None, actor: str = SYSTEM) -> Outcome:
    return await _run(stages.decide, slug, now=await _deadline(DECIDE.name, slug, now), actor=actor)


@flow(name=START_IMPLEMENTATION.name, flow_run_name=_named("{slug} · implementation starts"))
async def start_implementation(
    slug: str, now: datetime | None = None, actor: str = SYSTEM
) -> Outcome:
    return await _run(stages.start_implementation, slug, now=_now(now), actor=actor)


@flow(name=RETURNS_CYCLE.name, flow_run_name=_named("{slug} · returns cycle"))
async def returns_cycle(slug: str, now: datetime | None = None, actor: str = SYSTEM) -> Outcome:
    return await _run(
        stages.returns_cycle, slug, now=await _deadline(RETURNS_CYCLE.name, slug, now), actor=actor
    )


@flow(name=COMPLETE_ROUND.name, flow_run_name=_named("{slug} · complete"))
async def complete(slug: str, now: datetime | None = None, actor: str = SYSTEM) -> Outcome:
    return await _run(
        stages.complete, slug, now=await _deadline(COMPLETE_ROUND.name, slug, now), actor=actor
    )


@flow(name=SEND_REMINDERS.name, flow_run_name=_named("{slug} · reminders"))
async def send_reminders(slug: str, now: datetime | None = None) -> Outcome:
    """E-mail the reminders due before a deadline (the prospectus's `reminders`), each once."""
    return await _run(
        stages.send_reminders, slug, now=await _deadline(SEND_REMINDERS.name, slug, now)
    )


@flow(name=PUBLISH_MODEL.name, flow_run_name=_named("{reference} · publish model"))
async def publish(reference: str, now: datetime | None = None, actor: str = SYSTEM) -> Outcome:
    return await _run(stages.publish, reference, now=_now(now), actor=actor)


@flow(name=ADOPT_MODEL.name, flow_run_name=_named("model {model_id} · adopted by {council_code}"))
async def adopt(model_id: int, council_code: str, now: datetime | None = None) -> Outcome:
    return await _run(stages.adopt, model_id, council_code, now=_now(now))


@flow(name=AMEND_PROSPECTUS.name, flow_run_name=_named("{slug} · amendment"))
async def amend_prospectus(
    slug: str,
    source: str,
    path: str,
    reason: str,
    now: datetime | None = None,
    schedule: bool = True,
    actor: str = SYSTEM,
) -> Outcome:
    """Publish an amendment to a round's prospectus; with `schedule`, then bring the round's
    scheduled deadline runs in line with its timetable as amended."""
    outcome = await _run(
        stages.amend_prospectus, slug, source, path, reason, now=_now(now), actor=actor
    )
    if schedule:
        from flows.deployments import schedule_round

        scheduled = await schedule_round(slug, _now(now))
        get_run_logger().info("%s: %d deadline runs scheduled anew", slug, len(scheduled))
    return outcome


@flow(name=CLARIFICATIONS_DUE.name, flow_run_name=_named("{slug} · clarification requests"))
async def clarifications_due(
    slug: str, now: datetime | None = None, actor: str = SYSTEM
) -> Outcome:
    """Scheduled when a request is asked: at its reminder and at its date to answer by."""
    return await _run(
        stages.clarifications_due,
        slug,
        now=await _deadline(CLARIFICATIONS_DUE.name, slug, now),
        actor=actor,
    )


@flow(name=BOARD_PACK.name, flow_run_name="programme board pack")
async def board_pack(
    on_demand: bool = False, now: datetime | None = None, actor: str = SYSTEM
) -> Outcome:
    """The programme board's pack across rounds: the month's, as scheduled (issued once a
    month), or, `on_demand` (staff asked for it), one for the moment asked."""
    from zoneinfo import ZoneInfo

    from cbflow.services.board import on_demand_key

    moment = _now(now)
    key = on_demand_key(moment, ZoneInfo(get_settings().timezone)) if on_demand else ""
    return await _run(stages.board_pack, key, now=moment, actor=actor)


@flow(name=SEND_DIGESTS.name, flow_run_name=_named("followers' digest"))
async def send_digests(now: datetime | None = None) -> Outcome:
    """E-mail followers what is new at the places they follow, where their digest is due; the
    deployment's schedule is CBFLOW_DIGEST_SCHEDULE."""
    return await _run(stages.send_digests, now=_now(now))


# the flows staff and the portal start (as deployments named "portal", see flows.deployments)
# and the deadline events a round schedules at its prospectus's dates, by their names
_ALL: list[Flow[..., Any]] = [
    launch,
    issue_receipts,
    close_eoi,
    invite_to_bid,
    close_bids,
    assign_assessors,
    open_moderation,
    finalise_assessment,
    decide,
    start_implementation,
    returns_cycle,
    complete,
    send_reminders,
    publish,
    adopt,
    amend_prospectus,
    clarifications_due,
    board_pack,
    send_digests,
]
PORTAL_FLOWS: dict[str, Flow[..., Any]] = {
    flow.name: flow for flow in _ALL if FLOWS[flow.name].deployment == PORTAL
}
DEADLINE_FLOWS: dict[str, Flow[..., Any]] = {
    flow.name: flow for flow in _ALL if FLOWS[flow.name].deployment == DEADLINE
}
# the programme's recurring flows, each deployed with the schedule its setting gives
SCHEDULED_FLOWS: dict[str, Flow[..., Any]] = {
    flow.name: flow for flow in _ALL if FLOWS[flow.name].deployment == SCHEDULE
}
