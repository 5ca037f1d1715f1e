"""Deployments of the flows, and the scheduling of a round's deadline runs.

`deploy()` (the command `cbflow deploy`) registers one deployment per deadline flow, one per flow
the portal starts and one per recurring flow to a Prefect process work pool (the setting
`CBFLOW_WORK_POOL`), creating the pool if need be, on whichever server PREFECT_API_URL names; any
number of hosts then run them with `prefect worker start --pool cbflow`. Its deployments name
their flows by module (`flows.stages.close_eoi`), so a worker loads them from the cbflow installed
on its own host, wherever that is. It also sets up the crash recovery several workers need: a
flow run whose worker or host dies is marked crashed (at once when only the worker died, by the
lifeline in flows.stages; after three missed heartbeats when the host went), and a crashed run is
retried, as the same flow run, a bounded number of times (two automations on the server).
`serve()` is the older single-process mode: it registers the same deployments without a pool and
executes their runs itself (`python -m flows.deployments`).
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
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID
from zoneinfo import ZoneInfo

from prefect import Flow
from prefect import serve as prefect_serve
from prefect.client.orchestration import PrefectClient, get_client
from prefect.client.schemas.objects import FlowRun
from prefect.deployments.runner import EntrypointType, RunnerDeployment
from prefect.schedules import Cron, Interval, Schedule
from prefect.states import Cancelled, Scheduled

from cbflow import flowruns
from cbflow.db import session_scope
from cbflow.errors import CbflowError
from cbflow.flowlist import DEADLINE as DEPLOYMENT
from cbflow.flowlist import FLOWS, PORTAL, SCHEDULE, FlowSpec
from cbflow.services.rounds import get_round, prospectus_of
from cbflow.settings import Settings, get_settings
from cbflow.stages import TIMETABLE_FLOWS, round_events, schedule_generation
from flows.stages import DEADLINE_FLOWS, PORTAL_FLOWS, SCHEDULED_FLOWS


class CannotDeploy(CbflowError):
    """The Prefect server named by PREFECT_API_URL did not answer, or its work pool of cbflow's
    name is not a process pool."""


# what a flow run started by a worker is given, beside the worker's own environment: its output
# is not piped to the worker, because a flow run writing to the pipe of a worker that was killed
# dies at once, before it can report itself crashed (measured: it then stayed "Running" for ever)
def job_variables(settings: Settings) -> dict[str, Any]:
    return {
        "stream_output": False,
        "env": {"PREFECT_FLOWS_HEARTBEAT_FREQUENCY": str(settings.heartbeat_seconds)},
    }


async def _deployments(settings: Settings, *, for_pool: bool) -> list[RunnerDeployment]:
    """Every deployment of cbflow: the deadline flows, the portal's and the recurring ones. For a
    work pool they name their flows by module and carry the job variables above; for `serve()`
    by file, as the serving process loads them itself."""
    extra: dict[str, Any] = (
        {"entrypoint_type": EntrypointType.MODULE_PATH, "job_variables": job_variables(settings)}
        if for_pool
        else {}
    )
    wanted: list[tuple[str, Flow[..., Any], list[Schedule] | None]] = [
        (DEPLOYMENT, flow, None) for flow in DEADLINE_FLOWS.values()
    ]
    wanted += [(PORTAL, flow, None) for flow in PORTAL_FLOWS.values()]
    wanted += [
        (SCHEDULE, flow, [schedule_of(settings, FLOWS[name])])
        for name, flow in SCHEDULED_FLOWS.items()
    ]
    return [
        await flow.ato_deployment(name=name, tags=["cbflow", name], schedules=when, **extra)
        for name, flow, when in wanted
    ]


@dataclass
class Deployed:
    pool: str
    pool_created: bool
    deployments: list[str]
    automations: list[str]


ZOMBIES = "cbflow: mark crashed the runs whose heartbeat stopped"
RETRY = "cbflow: retry crashed runs"


async def deploy(settings: Settings | None = None) -> Deployed:
    """Create the work pool if absent, register (or update) every deployment to it and set up
    the crash recovery, on the Prefect server of PREFECT_API_URL. Run again, it leaves the same
    deployments, with their schedules as the settings now say, and the same two automations.
    Raises CannotDeploy when the server does not answer, or the pool is not a process pool."""
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound

    settings = settings or get_settings()
    deployments = await _deployments(settings, for_pool=True)  # a bad schedule stops us first
    async with get_client() as client:
        failure = await client.api_healthcheck()
        if failure is not None:
            raise CannotDeploy(
                f"the Prefect server at {client.api_url} did not answer ({failure}): start it, "
                "or set PREFECT_API_URL to one that is running"
            )
        created = False
        try:
            pool = await client.read_work_pool(settings.work_pool)
        except ObjectNotFound:
            try:
                pool = await client.create_work_pool(
                    WorkPoolCreate(name=settings.work_pool, type="process")
                )
                created = True
            except ObjectAlreadyExists:  # another `cbflow deploy` made it meanwhile
                pool = await client.read_work_pool(settings.work_pool)
        if pool.type != "process":
            raise CannotDeploy(
                f"the work pool {settings.work_pool!r} is of type {pool.type!r}, not 'process': "
                "set CBFLOW_WORK_POOL to another name"
            )
        names = []
        for deployment in deployments:
            await deployment.aapply(work_pool_name=settings.work_pool)
            names.append(f"{deployment.flow_name}/{deployment.name}")
        automations = await _recovery_automations(client, settings)
    return Deployed(settings.work_pool, created, names, automations)


async def _recovery_automations(client: PrefectClient, settings: Settings) -> list[str]:
    """Prefect's documented detection of "zombie" runs, and the retry of crashed ones, for the
    runs of cbflow's deployments (tagged "cbflow"), replacing any earlier version of each.

    A run whose heartbeat stops for three beats (its host died, or its worker with the run's
    process in a way the lifeline could not see) is marked crashed; the change is refused by
    the server if the run has already finished. A crashed run that has run at most
    `crash_retries` times is put back to AwaitingRetry: the same flow run, taken by whichever
    worker polls first, which resumes the stage from the step that failed. A run that crashed
    before it ever ran (its flow could not be loaded on that host) is left crashed: retrying it
    would loop."""
    from prefect.automations import Automation
    from prefect.client.schemas.objects import StateType
    from prefect.events.actions import ChangeFlowRunState
    from prefect.events.schemas.automations import EventTrigger, Posture
    from prefect.events.schemas.events import ResourceSpecification

    ours = ResourceSpecification(
        {"prefect.resource.role": "tag", "prefect.resource.id": "prefect.tag.cbflow"}
    )
    finished = {f"prefect.flow-run.{state}" for state in ("Completed", "Failed", "Cancelled")}
    wanted = [
        Automation(
            name=ZOMBIES,
            description="A cbflow flow run that stopped sending heartbeats is marked crashed.",
            trigger=EventTrigger(
                after={"prefect.flow-run.heartbeat"},
                expect={"prefect.flow-run.heartbeat", "prefect.flow-run.Crashed", *finished},
                match=ResourceSpecification({"prefect.resource.id": ["prefect.flow-run.*"]}),
                match_related=ours,
                for_each={"prefect.resource.id"},
                posture=Posture.Proactive,
                threshold=1,
                within=timedelta(seconds=3 * settings.heartbeat_seconds),
            ),
            actions=[
                ChangeFlowRunState(
                    state=StateType.CRASHED,
                    message=f"no heartbeat for {3 * settings.heartbeat_seconds} s: its worker "
                    "or its host stopped",
                )
            ],
        ),
        Automation(
            name=RETRY,
            description=(
                f"A crashed cbflow flow run is run again, as the same run, at most "
                f"{settings.crash_retries} times."
            ),
            trigger=EventTrigger(
                expect={"prefect.flow-run.Crashed"},
                match=ResourceSpecification(
                    {
                        "prefect.resource.id": ["prefect.flow-run.*"],
                        "prefect.run-count": [
                            str(count) for count in range(1, settings.crash_retries + 1)
                        ]
                        or ["never"],
                    }
                ),
                match_related=ours,
                posture=Posture.Reactive,
                threshold=1,
                within=timedelta(0),
            ),
            actions=[
                ChangeFlowRunState(
                    state=StateType.SCHEDULED,
                    name="AwaitingRetry",
                    message="crashed (its worker or host stopped): run again from the step "
                    "that did not finish",
                )
            ],
            enabled=settings.crash_retries > 0,
        ),
    ]
    for automation in wanted:
        for old in await client.read_automations_by_name(automation.name):
            await client.delete_automation(old.id)
        await automation.acreate()
    return [automation.name for automation in wanted]


def serve() -> None:
    """Register the deadline deployments and the portal's, and run their flow runs until
    stopped. A deadline flow is also the portal's way to run a missed deadline by hand.

    First, runs that an earlier runner left running when it was killed are marked crashed.
    Deadline runs scheduled while no runner was running are then run as soon as it polls,
    each acting at the real time (see flows.stages) and audited as late."""
    crashed = mark_abandoned_runs()
    if crashed:
        print(f"marked {len(crashed)} flow run(s) crashed: {', '.join(crashed)}", flush=True)
    deployments = asyncio.run(_deployments(get_settings(), for_pool=False))
    prefect_serve(*deployments, print_starting_message=True)


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
    the runner starts; the runner picks them up when it does). One that exists is left as it
    is: `cbflow deploy` may have registered it to the work pool, which this must not undo."""
    from prefect.exceptions import ObjectNotFound

    async with get_client() as client:
        for name, flow in [
            *((DEPLOYMENT, flow) for flow in DEADLINE_FLOWS.values()),
            *((PORTAL, flow) for flow in PORTAL_FLOWS.values()),
        ]:
            try:
                await client.read_deployment_by_name(f"{flow.name}/{name}")
                continue
            except ObjectNotFound:
                pass
            deployment = await flow.ato_deployment(name=name, tags=["cbflow", name])
            await deployment.aapply()


if __name__ == "__main__":
    serve()
