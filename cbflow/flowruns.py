"""Starting the engine's flows from the portal, and reading their runs back.

The portal never does a flow's work itself: a staff action creates a flow run of a served
deployment on the Prefect server, and the runner that `cbflow serve` starts executes it. Each
run the portal starts is recorded (`StartedRun`), so the staff pages link every action to the
Prefect UI run that did the work and show how it went.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

from cbflow.errors import CbflowError
from cbflow.flowlist import DEADLINE as DEADLINE  # re-exported: the deployments' names
from cbflow.flowlist import DEADLINE_FLOWS as _DEADLINE_SPECS
from cbflow.flowlist import ISSUE_RECEIPTS, PORTAL
from cbflow.settings import Settings

# the names of the flows a round's dates trigger: their deployments are named DEADLINE
DEADLINE_FLOWS = frozenset(spec.name for spec in _DEADLINE_SPECS)

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

# submissions acknowledged together by one flow run: a receipt within seconds of a deadline
# surge, and at most four runs a minute (each a process of its own) while submissions trickle in
RECEIPTS_EVERY = timedelta(seconds=15)
# a run may start up to half a second before its scheduled time (the server rounds the wait to
# whole seconds): a batch runs this long after its interval, so it sees every submission in it
SETTLE = timedelta(seconds=1)
_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)
READ_SECONDS = 3.0  # how long a page waits for Prefect to tell it about runs

logger = logging.getLogger(__name__)


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
def _client(settings: Settings, *, reading: bool = False) -> Iterator[Any]:
    """Prefect's client for the configured server. `reading`: for what a page shows, a quick
    answer or none (READ_SECONDS, no retries), rather than Prefect's default of a minute a try
    and five retries, which would hold a page, and a portal thread, for minutes."""
    api = settings.resolved_prefect_api_url
    if not api:
        raise FlowsUnavailable(
            "the portal is not connected to a Prefect server, so it cannot start the flow; "
            "run it with `cbflow serve` (or set CBFLOW_PREFECT_API_URL)"
        )
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, PREFECT_CLIENT_MAX_RETRIES, temporary_settings

    updates: dict[Any, Any] = {}
    if PREFECT_API_URL.value() != api:  # `cbflow serve` sets it: then no settings copy
        updates[PREFECT_API_URL] = api
    if reading:
        updates[PREFECT_CLIENT_MAX_RETRIES] = 0
    httpx_settings = {"timeout": READ_SECONDS} if reading else None
    if not updates:
        with get_client(httpx_settings, sync_client=True) as client:
            yield client
        return
    with (
        temporary_settings(updates=updates),
        get_client(httpx_settings, sync_client=True) as client,
    ):
        yield client


def load_client(settings: Settings) -> None:
    """Import Prefect's client now, when a portal process starts, if it will talk to a Prefect
    server. The import takes a second or two of CPU, which the first submission of a deadline
    surge would otherwise pay while fifty others wait behind it."""
    if settings.resolved_prefect_api_url:
        import prefect.client.orchestration  # noqa: F401


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
    scheduled_time: datetime | None = None,
) -> str:
    """Create a flow run of `flow`'s deployment, to be run now (or at `scheduled_time`). Returns
    the run's id. With an idempotency key already used, returns the run created the first
    time."""
    from prefect.exceptions import ObjectNotFound
    from prefect.states import Scheduled

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
                state=Scheduled(scheduled_time=scheduled_time) if scheduled_time else None,
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
        with _client(settings, reading=True) as client:
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
        with _client(settings, reading=True) as client:
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


class ReceiptBatches:
    """Asks for the `issue-receipts` run that acknowledges a round's new submissions.

    One run per round per interval (`every`), scheduled just after the interval ends, so a surge
    of submissions makes a few runs that each issue many receipts, and none is made per
    submission. The run's idempotency key is the round and the interval, so every portal process
    asking for it gets the same run; within a process only the first submission of an interval
    asks at all. Ask only after the submission has committed: the run then finds it.

    If Prefect cannot be reached, the submission still stands: this logs a warning and the
    next interval's run, or the run that closes the window, issues every missing receipt.
    """

    def __init__(self, settings: Settings, every: timedelta = RECEIPTS_EVERY) -> None:
        self.settings = settings
        self.every = every
        self._lock = threading.Lock()
        self._asked: dict[str, datetime] = {}  # round: the batch last asked for

    def batch_time(self, now: datetime) -> datetime:
        """When the run for a submission committed at `now` starts: after its interval ends."""
        intervals = (now - _EPOCH) // self.every
        return _EPOCH + (intervals + 1) * self.every + SETTLE

    def asked(self, slug: str, now: datetime) -> bool:
        """Whether this process has already asked for the round's batch for `now` (then
        `request` would do nothing)."""
        with self._lock:
            return self._asked.get(slug) == self.batch_time(now)

    def request(self, slug: str, now: datetime) -> str | None:
        """Make sure the round's batch for `now` is scheduled. Returns the run's id when this
        call asked for it, None when this process already had."""
        when = self.batch_time(now)
        with self._lock:
            if self._asked.get(slug) == when:
                return None
            self._asked[slug] = when  # asked once per interval, even if the asking fails
        if not self.settings.resolved_prefect_api_url:
            logger.warning(
                "%s: no Prefect server is configured, so no receipts run was started; the "
                "receipts will be issued when the window closes",
                slug,
            )
            return None
        try:
            return start(
                self.settings,
                ISSUE_RECEIPTS.name,
                {"slug": slug, "now": when.isoformat()},
                name=f"{slug} · receipts · {when:%-d %b %Y %H:%M:%S} UTC",
                tags=[slug, "receipts"],
                idempotency_key=f"{slug}:{ISSUE_RECEIPTS.name}:{when.isoformat()}",
                scheduled_time=when,
            )
        except FlowsUnavailable as exc:
            logger.warning(
                "%s: no receipts run was started (%s); the next one, or the run that closes the "
                "window, issues the missing receipts",
                slug,
                exc,
            )
            return None


def reschedule(settings: Settings, slug: str) -> list[tuple[str, datetime]]:
    """Bring a round's scheduled deadline runs in line with its timetable, from the portal (see
    flows.deployments.schedule_round). Returns the runs created."""
    import asyncio

    from prefect.settings import PREFECT_API_URL, temporary_settings

    from flows.deployments import schedule_round

    api = settings.resolved_prefect_api_url
    if not api:
        raise FlowsUnavailable("the portal is not connected to a Prefect server")
    try:
        with temporary_settings(updates={PREFECT_API_URL: api}):
            return asyncio.run(schedule_round(slug))
    except Exception as exc:  # the server's refusal or absence, whatever its kind
        raise _unavailable(settings, exc) from exc
