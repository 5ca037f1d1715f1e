"""Starting the engine's flows from the portal, and reading their runs back.

The portal never does a flow's work itself: a staff action creates a flow run of a served
deployment on the Prefect server, and the runner that `cbflow serve` starts executes it. Each
run the portal starts is recorded (`StartedRun`), so the staff pages link every action to the
Prefect UI run that did the work and show how it went.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from cbflow.errors import CbflowError
from cbflow.settings import Settings

PORTAL = "portal"  # the deployment name of the flows staff start from the portal
DEADLINE = "deadline"  # the deployment name of the flows a round's dates trigger

# the flows a round's dates trigger: their deployments are named DEADLINE, the others PORTAL
DEADLINE_FLOWS = frozenset({"close-eoi", "close-bids", "decide", "returns-cycle", "complete-round"})

# what staff see of a run's state
STATE_NAMES = {
    "SCHEDULED": "Scheduled",
    "PENDING": "Starting",
    "RUNNING": "Running",
    "COMPLETED": "Done",
    "FAILED": "Failed",
    "CRASHED": "Failed",
    "CANCELLED": "Cancelled",
    "CANCELLING": "Cancelling",
    "PAUSED": "Paused",
}
FINAL = frozenset({"COMPLETED", "FAILED", "CRASHED", "CANCELLED"})


class FlowsUnavailable(CbflowError):
    """The Prefect server cannot be reached, so no flow run was started."""


@dataclass(frozen=True)
class RunView:
    """A flow run as the staff pages show it."""

    id: str
    name: str
    flow: str
    state_type: str
    state: str
    expected_start: datetime | None
    url: str
    tags: tuple[str, ...] = ()

    @property
    def final(self) -> bool:
        return self.state_type in FINAL

    @property
    def failed(self) -> bool:
        return self.state_type in ("FAILED", "CRASHED")


def run_url(settings: Settings, run_id: str) -> str:
    return f"{settings.resolved_prefect_ui_url}/runs/flow-run/{run_id}"


@contextmanager
def _client(settings: Settings) -> Iterator[Any]:
    api = settings.resolved_prefect_api_url
    if not api:
        raise FlowsUnavailable(
            "the portal is not connected to a Prefect server, so it cannot start the flow; "
            "run it with `cbflow serve` (or set CBFLOW_PREFECT_API_URL)"
        )
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with (
        temporary_settings(updates={PREFECT_API_URL: api}),
        get_client(sync_client=True) as client,
    ):
        yield client


def _unavailable(settings: Settings, exc: Exception) -> FlowsUnavailable:
    return FlowsUnavailable(
        f"the Prefect server at {settings.resolved_prefect_api_url} did not answer ({exc}); "
        "nothing was started: check that `cbflow serve` is running and try again"
    )


def start(
    settings: Settings,
    flow: str,
    parameters: dict[str, Any],
    *,
    name: str,
    tags: Iterable[str] = (),
    deployment: str = PORTAL,
    idempotency_key: str | None = None,
) -> str:
    """Create a flow run of `flow`'s deployment, to be run now. Returns the run's id. With an
    idempotency key already used, returns the run created the first time."""
    from prefect.exceptions import ObjectNotFound

    try:
        with _client(settings) as client:
            try:
                found = client.read_deployment_by_name(f"{flow}/{deployment}")
            except ObjectNotFound:
                raise FlowsUnavailable(
                    f"the Prefect server has no deployment {flow}/{deployment}: the flow runner "
                    "of `cbflow serve` registers it when it starts; wait a moment and try again"
                ) from None
            run = client.create_flow_run_from_deployment(
                found.id,
                parameters=parameters,
                name=name,
                tags=["cbflow", *tags],
                idempotency_key=idempotency_key,
            )
    except FlowsUnavailable:
        raise
    except Exception as exc:  # connection refused, timeouts, server errors
        raise _unavailable(settings, exc) from exc
    return str(run.id)


def _view(settings: Settings, run: Any, flows: dict[str, str]) -> RunView:
    state_type = run.state.type.value if run.state is not None else "PENDING"
    return RunView(
        id=str(run.id),
        name=run.name,
        flow=flows.get(str(run.flow_id), ""),
        state_type=state_type,
        state=STATE_NAMES.get(state_type, state_type.title()),
        expected_start=run.expected_start_time,
        url=run_url(settings, str(run.id)),
        tags=tuple(run.tags or ()),
    )


def _flow_names(client: Any, runs: list[Any]) -> dict[str, str]:
    names = {}
    for flow_id in {run.flow_id for run in runs}:
        names[str(flow_id)] = client.read_flow(flow_id).name
    return names


def read_runs(settings: Settings, ids: Iterable[str]) -> dict[str, RunView]:
    """The runs with these ids, as they stand now. Raises FlowsUnavailable."""
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    wanted = [UUID(i) for i in ids]
    if not wanted:
        return {}
    try:
        with _client(settings) as client:
            runs = client.read_flow_runs(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=wanted))
            )
            flows = _flow_names(client, runs)
    except FlowsUnavailable:
        raise
    except Exception as exc:
        raise _unavailable(settings, exc) from exc
    return {str(run.id): _view(settings, run, flows) for run in runs}


def round_runs(settings: Settings, slug: str, limit: int = 200) -> list[RunView]:
    """Every run tagged with the round (its scheduled deadline runs and the runs staff started),
    in order of expected start. Raises FlowsUnavailable."""
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterTags
    from prefect.client.schemas.sorting import FlowRunSort

    try:
        with _client(settings) as client:
            runs = client.read_flow_runs(
                flow_run_filter=FlowRunFilter(tags=FlowRunFilterTags(all_=[slug])),
                sort=FlowRunSort.EXPECTED_START_TIME_ASC,
                limit=limit,
            )
            flows = _flow_names(client, runs)
    except FlowsUnavailable:
        raise
    except Exception as exc:
        raise _unavailable(settings, exc) from exc
    return [_view(settings, run, flows) for run in runs]
