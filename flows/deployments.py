"""Deployments of the flows, and the scheduling of a round's deadline runs.

`serve()` runs in the process `cbflow serve` starts beside the Prefect server: it registers one
deployment per deadline flow and one per flow the portal starts, and executes their runs.
`schedule_round` keeps, for a launched round, one scheduled run per date of its timetable (the
prospectus as amended, and its extensions), so the Prefect UI shows what happens when; after an
amendment or an extension it cancels the runs no longer due and adds the new ones. Each
scheduled run has an idempotency key: scheduling a round twice creates nothing new.
`schedule_once` adds one run of a deadline flow at a moment outside the timetable (a
clarification request's reminder and its date to answer by), which rescheduling leaves alone.
"""

from __future__ import annotations

import asyncio
import re
import threading
from datetime import UTC, datetime, timedelta
from uuid import UUID
from zoneinfo import ZoneInfo

from prefect import serve as prefect_serve
from prefect.client.orchestration import PrefectClient, get_client
from prefect.client.schemas.objects import FlowRun
from prefect.schedules import Cron, Interval, Schedule
from prefect.states import Cancelled, Scheduled

from cbflow import flowruns
from cbflow.db import session_scope
from cbflow.flowlist import DEADLINE as DEPLOYMENT
from cbflow.flowlist import FLOWS, PORTAL, SCHEDULE, FlowSpec
from cbflow.services.rounds import get_round, prospectus_of
from cbflow.settings import Settings, get_settings
from cbflow.stages import TIMETABLE_FLOWS, round_events, schedule_generation
from flows.stages import DEADLINE_FLOWS, PORTAL_FLOWS, SCHEDULED_FLOWS


def serve() -> None:
    """Register the deadline deployments and the portal's, and run their flow runs until
    stopped. A deadline flow is also the portal's way to run a missed deadline by hand.

    First, runs that an earlier runner left running when it was killed are marked crashed.
    Deadline runs scheduled while no runner was running are then run as soon as it polls,
    each acting at the real time (see flows.stages) and audited as late. The recurring flows'
    next runs are kept scheduled by a thread of this process (keep_recurring)."""
    crashed = mark_abandoned_runs()
    if crashed:
        print(f"marked {len(crashed)} flow run(s) crashed: {', '.join(crashed)}", flush=True)
    settings = get_settings()
    deployments = (
        [
            flow.to_deployment(name=DEPLOYMENT, tags=["cbflow", "deadline"])
            for flow in DEADLINE_FLOWS.values()
        ]
        + [
            flow.to_deployment(name=PORTAL, tags=["cbflow", "portal"])
            for flow in PORTAL_FLOWS.values()
        ]
        + [
            flow.to_deployment(name=SCHEDULE, tags=["cbflow", "schedule"])
            for flow in SCHEDULED_FLOWS.values()
        ]
    )
    # each recurring flow's schedule, read (and refused, naming its setting) before anything runs
    recurring = {name: schedule_of(settings, FLOWS[name]) for name in SCHEDULED_FLOWS}
    threading.Thread(
        target=asyncio.run, args=(_keep_recurring(recurring),), name="recurring", daemon=True
    ).start()
    prefect_serve(*deployments, print_starting_message=True)  # type: ignore[arg-type]


# The runner keeps the next runs of each recurring flow scheduled itself, as it does a round's
# deadline runs, rather than give the deployment a schedule for the Prefect server's scheduler
# to follow: that scheduler (Prefect 3.8's) fails on every loop with SQLAlchemy 2.1, which cbflow
# installs ("Can't evaluate bulk DML statement"), and no run would ever come.
KEEP_AHEAD = 5  # runs of each recurring flow kept scheduled
KEEP_EVERY = timedelta(seconds=15)  # how often the runner looks again
# "every N seconds" counts from a fixed moment, so a runner started again finds its own runs
INTERVAL_ANCHOR = datetime(2020, 1, 1, tzinfo=UTC)


async def _keep_recurring(recurring: dict[str, Schedule]) -> None:
    while True:
        try:
            await keep_recurring(recurring)
        except Exception as exc:  # the Prefect server not yet up, or gone a moment
            print(f"recurring runs not scheduled this time: {exc}", flush=True)
        await asyncio.sleep(KEEP_EVERY.total_seconds())


async def keep_recurring(
    recurring: dict[str, Schedule], now: datetime | None = None
) -> list[tuple[str, datetime]]:
    """Schedule the next KEEP_AHEAD runs of each recurring flow after `now` that are not yet
    scheduled (each moment once: asked again, the run already there is kept). A flow whose
    deployment is not registered yet is left for the next time. Returns the runs asked for."""
    from prefect.exceptions import ObjectNotFound
    from prefect.server.schemas import schedules

    now = now or datetime.now(UTC)
    asked: list[tuple[str, datetime]] = []
    async with get_client() as client:
        for name, schedule in recurring.items():
            try:
                deployment = await client.read_deployment_by_name(f"{name}/{SCHEDULE}")
            except ObjectNotFound:
                continue
            timing: schedules.CronSchedule | schedules.IntervalSchedule
            if schedule.interval is not None:
                timing = schedules.IntervalSchedule(
                    interval=schedule.interval,
                    anchor_date=INTERVAL_ANCHOR,
                    timezone=schedule.timezone,
                )
            else:
                assert schedule.cron is not None
                timing = schedules.CronSchedule(
                    cron=schedule.cron, timezone=schedule.timezone, day_or=schedule.day_or
                )
            for when in await timing.get_dates(n=KEEP_AHEAD, start=now):
                await client.create_flow_run_from_deployment(
                    deployment.id,
                    state=Scheduled(scheduled_time=when),
                    idempotency_key=f"recurring:{name}:{when.isoformat()}",
                    tags=["cbflow", "schedule"],
                )
                asked.append((name, when))
    return asked


EVERY = re.compile(r"^every\s+(\d{1,9})\s*(s|seconds?)$")


def schedule_of(settings: Settings, spec: FlowSpec) -> Schedule:
    """The schedule of a recurring flow, from its setting: a cron line in the portal's time zone
    ("0 8 * * 1": Mondays at 08:00), or "every N seconds". A setting that is neither stops the
    runner at start with the setting's name, rather than a recurring run that never comes."""
    text = str(getattr(settings, spec.schedule_setting)).strip()
    every = EVERY.match(text)
    if every is not None and int(every.group(1)) > 0:
        return Interval(timedelta(seconds=int(every.group(1))), timezone=settings.timezone)
    try:
        return Cron(text, timezone=settings.timezone)
    except ValueError as exc:
        name = f"CBFLOW_{spec.schedule_setting.upper()}"
        raise SystemExit(
            f"{name}={text!r} is not a schedule: write a cron line such as '0 8 * * 1' "
            "(Mondays at 08:00) or 'every 600 seconds'"
        ) from exc


ABANDONED = "the flow runner stopped while this run was running; run it again if still needed"


def mark_abandoned_runs() -> list[str]:
    """Mark crashed every run of cbflow's deployments that Prefect still has as pending or
    running: a runner is starting, so no runner is executing them (the runner `cbflow serve`
    starts is the only one). Without this, a run whose process was killed stays "Running" in
    the Prefect UI for ever. Returns the runs' names."""
    from prefect.client.schemas.filters import (
        FlowRunFilter,
        FlowRunFilterState,
        FlowRunFilterStateType,
        FlowRunFilterTags,
    )
    from prefect.client.schemas.objects import StateType
    from prefect.states import Crashed

    unfinished = FlowRunFilter(
        state=FlowRunFilterState(
            type=FlowRunFilterStateType(
                any_=[StateType.PENDING, StateType.RUNNING, StateType.CANCELLING]
            )
        ),
        tags=FlowRunFilterTags(all_=["cbflow"]),
    )
    names = []
    with get_client(sync_client=True) as client:
        for run in client.read_flow_runs(flow_run_filter=unfinished, limit=200):
            if run.deployment_id is None:
                continue  # run in a process of its own (the demo), not by a runner
            client.set_flow_run_state(run.id, Crashed(message=ABANDONED), force=True)
            names.append(run.name)
    return names


async def schedule_round(slug: str, now: datetime | None = None) -> list[tuple[str, datetime]]:
    """Bring the round's scheduled deadline runs in line with its timetable as it stands (the
    prospectus as amended, and the extensions): create a run for each future event that has
    none, and cancel each scheduled run of the timetable's flows whose moment is no longer one
    of them. Returns the runs created. Run again, it changes nothing."""
    now = now or datetime.now(UTC)
    with session_scope() as session:
        round_ = get_round(session, slug)
        prospectus = prospectus_of(round_)
        events = [(flow.name, when) for flow, when in round_events(session, round_)]
        generation = schedule_generation(session, round_)
    wanted = {(name, when) for name, when in events if when > now}
    created = []
    async with get_client() as client:
        deployments = {
            spec.name: await client.read_deployment_by_name(f"{spec.name}/{DEPLOYMENT}")
            for spec in TIMETABLE_FLOWS
        }
        names = {deployment.id: name for name, deployment in deployments.items()}
        have: set[tuple[str, datetime]] = set()
        for run in await _scheduled_runs(client, slug, list(names)):
            assert run.deployment_id is not None
            moment = run.expected_start_time or run.next_scheduled_start_time
            key = (names[run.deployment_id], moment) if moment else None
            if key in wanted and key not in have:
                have.add(key)
                continue
            await client.set_flow_run_state(
                run.id,
                Cancelled(message="the round's timetable changed: this run is no longer due"),
                force=True,
            )
        for name, when in sorted(wanted - have, key=lambda event: event[1]):
            suffix = f":g{generation}" if generation else ""
            await client.create_flow_run_from_deployment(
                deployments[name].id,
                parameters={"slug": slug},
                state=Scheduled(scheduled_time=when),
                name=f"{slug} · {name} at {when.astimezone(prospectus.zone):%Y-%m-%d %H:%M %Z}",
                idempotency_key=f"{slug}:{name}:{when.isoformat()}{suffix}",
                tags=["cbflow", slug],
            )
            created.append((name, when))
    return created


def schedule_once(settings: Settings, flow: FlowSpec, slug: str, when: datetime, key: str) -> str:
    """One scheduled run of a deadline flow for the round at `when` (a clarification request's
    reminder and its date to answer by), asked of the Prefect server as the portal asks for any
    run (cbflow.flowruns). `key` makes it once: asked again, the first run is returned. Raises
    FlowsUnavailable when the server cannot be reached or has no deployment of the flow."""
    zone = prospectus_zone(slug)
    return flowruns.start(
        settings,
        flow.name,
        {"slug": slug},
        name=f"{slug} · {flow.name} at {when.astimezone(zone):%Y-%m-%d %H:%M:%S %Z}",
        tags=[slug],
        deployment=DEPLOYMENT,
        idempotency_key=f"{slug}:{flow.name}:{key}",
        scheduled_time=when,
    )


def prospectus_zone(slug: str) -> ZoneInfo:
    with session_scope() as session:
        return prospectus_of(get_round(session, slug)).zone


async def _scheduled_runs(
    client: PrefectClient, slug: str, deployment_ids: list[UUID]
) -> list[FlowRun]:
    """The round's runs still scheduled, of the given deployments."""
    from prefect.client.schemas.filters import (
        DeploymentFilter,
        DeploymentFilterId,
        FlowRunFilter,
        FlowRunFilterState,
        FlowRunFilterStateType,
        FlowRunFilterTags,
    )
    from prefect.client.schemas.objects import StateType

    runs: list[FlowRun] = []
    while True:
        page = await client.read_flow_runs(
            flow_run_filter=FlowRunFilter(
                state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.SCHEDULED])),
                tags=FlowRunFilterTags(all_=["cbflow", slug]),
            ),
            deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=deployment_ids)),
            limit=200,
            offset=len(runs),
        )
        runs += page
        if len(page) < 200:
            return runs


async def ensure_deployments() -> None:
    """Register the deadline deployments without serving them (so runs can be scheduled before
    the runner starts; the runner picks them up when it does)."""
    for flow in DEADLINE_FLOWS.values():
        deployment = await flow.ato_deployment(name=DEPLOYMENT, tags=["cbflow", "deadline"])
        await deployment.aapply()
    for flow in PORTAL_FLOWS.values():
        deployment = await flow.ato_deployment(name=PORTAL, tags=["cbflow", "portal"])
        await deployment.aapply()


if __name__ == "__main__":
    serve()
