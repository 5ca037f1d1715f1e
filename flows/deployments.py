"""Deployments of the flows, and the scheduling of a round's deadline runs.

`serve()` runs in the process `cbflow serve` starts beside the Prefect server: it registers one
deployment per deadline flow and one per flow the portal starts, and executes their runs.
`schedule_round` creates, for a launched round, one scheduled run per date of its prospectus, so
the Prefect UI shows what happens when.
Each scheduled run has an idempotency key: scheduling a round twice creates nothing new.
"""

from __future__ import annotations

from datetime import UTC, datetime

from prefect import serve as prefect_serve
from prefect.client.orchestration import get_client
from prefect.states import Scheduled

from cbflow.db import session_scope
from cbflow.flowlist import DEADLINE as DEPLOYMENT
from cbflow.flowlist import PORTAL
from cbflow.services.rounds import get_round, prospectus_of
from cbflow.stages import deadline_events
from flows.stages import DEADLINE_FLOWS, PORTAL_FLOWS


def serve() -> None:
    """Register the deadline deployments and the portal's, and run their flow runs until
    stopped. A deadline flow is also the portal's way to run a missed deadline by hand.

    First, runs that an earlier runner left running when it was killed are marked crashed.
    Deadline runs scheduled while no runner was running are then run as soon as it polls,
    each acting at the real time (see flows.stages) and audited as late."""
    crashed = mark_abandoned_runs()
    if crashed:
        print(f"marked {len(crashed)} flow run(s) crashed: {', '.join(crashed)}", flush=True)
    deployments = [
        flow.to_deployment(name=DEPLOYMENT, tags=["cbflow", "deadline"])
        for flow in DEADLINE_FLOWS.values()
    ] + [
        flow.to_deployment(name=PORTAL, tags=["cbflow", "portal"]) for flow in PORTAL_FLOWS.values()
    ]
    prefect_serve(*deployments, print_starting_message=True)  # type: ignore[arg-type]


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
    """Create a scheduled flow run for each of the round's future deadlines. Returns them."""
    now = now or datetime.now(UTC)
    with session_scope() as session:
        prospectus = prospectus_of(get_round(session, slug))
    scheduled = []
    async with get_client() as client:
        for flow, when in deadline_events(prospectus):
            flow_name = flow.name
            if when <= now:
                continue
            deployment = await client.read_deployment_by_name(f"{flow_name}/{DEPLOYMENT}")
            await client.create_flow_run_from_deployment(
                deployment.id,
                parameters={"slug": slug},
                state=Scheduled(scheduled_time=when),
                name=f"{slug} · {flow_name} at "
                f"{when.astimezone(prospectus.zone):%Y-%m-%d %H:%M %Z}",
                idempotency_key=f"{slug}:{flow_name}:{when.isoformat()}",
                tags=["cbflow", slug],
            )
            scheduled.append((flow_name, when))
    return scheduled


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
