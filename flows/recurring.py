"""The runs of the programme's recurring flows (Trigger.SCHEDULE), made while `cbflow serve`'s
runner runs, as the deadline runs are: from the client, not by the Prefect server's scheduler.

A deployment's schedule is stored on the server, whose scheduler service is to make its runs.
Prefect 3.8's scheduler cannot under SQLAlchemy 2.1: its bulk insert of the runs fails ("Can't
evaluate bulk DML statement; please supply a bulk_dml decorated function", in the server's
log), so no recurring run would ever come. Here the runner's process keeps the next few runs of
each recurring deployment scheduled, at the dates of the schedule the server holds and with the
idempotency key its scheduler gives them: where the server's scheduler works, it makes the same
runs, never a second of each.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from datetime import UTC, datetime
from typing import Any

from cbflow.flowlist import SCHEDULE

AHEAD = 3  # runs kept scheduled for each recurring deployment
EVERY_SECONDS = 10.0  # how often they are looked at

logger = logging.getLogger(__name__)


def _server_schedule(schedule: Any) -> Any:
    """The server's form of a deployment's schedule, which lists its dates as its scheduler
    does."""
    from prefect.server.schemas import schedules

    data = schedule.model_dump()
    if "interval" in data:
        return schedules.IntervalSchedule.model_validate(data)
    if "cron" in data:
        return schedules.CronSchedule.model_validate(data)
    return schedules.RRuleSchedule.model_validate(data)


async def schedule_next(
    names: list[str], now: datetime | None = None
) -> list[tuple[str, datetime]]:
    """Make sure the next AHEAD runs of each named flow's recurring deployment are scheduled.
    Returns the (flow, moment) of each run asked for (a run already made is asked for again and
    found by its key)."""
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound
    from prefect.states import Scheduled

    start = now or datetime.now(UTC)
    asked: list[tuple[str, datetime]] = []
    async with get_client() as client:
        for name in names:
            try:
                deployment = await client.read_deployment_by_name(f"{name}/{SCHEDULE}")
            except ObjectNotFound:
                continue  # not registered yet: the runner is starting
            for held in deployment.schedules:
                if not held.active:
                    continue
                dates = await _server_schedule(held.schedule).get_dates(n=AHEAD, start=start)
                for date in dates:
                    await client.create_flow_run_from_deployment(
                        deployment.id,
                        state=Scheduled(scheduled_time=date),
                        tags=["auto-scheduled", *(deployment.tags or [])],
                        idempotency_key=f"scheduled {deployment.id} {held.id} {date}",
                    )
                    asked.append((name, date))
    return asked


def keep_scheduled(names: list[str], stop: threading.Event) -> threading.Thread:
    """Start a thread that keeps the flows' next runs scheduled until `stop` is set (or the
    process ends). A failure (the server not up yet) is logged and tried again."""

    def loop() -> None:
        while True:
            try:
                asyncio.run(schedule_next(names))
            except Exception as exc:  # the server's absence or refusal, whatever its kind
                logger.warning("recurring runs not scheduled this time: %s", exc)
            if stop.wait(EVERY_SECONDS):
                return

    thread = threading.Thread(target=loop, name="cbflow-recurring-runs", daemon=True)
    thread.start()
    return thread
