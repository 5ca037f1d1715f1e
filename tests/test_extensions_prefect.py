"""Extensions move a round's deadline runs in Prefect (a real Prefect server): more time for
everyone moves the stage's close run to the new deadline and cancels the old one; one council's
extension adds a close run at its end, for that application alone; scheduling again changes
nothing."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterTags
from prefect.testing.utilities import prefect_test_harness
from test_real_clock import _prospectus

from cbflow import stages
from cbflow.db import session_scope
from cbflow.models import Application
from cbflow.services import applications, deadlines, rounds
from cbflow.settings import Settings

pytestmark = pytest.mark.slow

SLUG = "real-clock"
EOI_CLOSE = datetime(2031, 11, 10, 12, 0, tzinfo=UTC)
BID_CLOSE = datetime(2031, 12, 9, 23, 0, tzinfo=UTC)
NOW = datetime(2031, 10, 1, tzinfo=UTC)


@pytest.fixture(scope="module")
def prefect_server() -> Iterator[None]:
    with prefect_test_harness(server_startup_timeout=60):
        yield


async def _close_runs() -> dict[str, list[tuple[str, datetime]]]:
    """The round's close-bids runs by state: (name, scheduled time)."""
    async with get_client() as client:
        runs = await client.read_flow_runs(
            flow_run_filter=FlowRunFilter(tags=FlowRunFilterTags(all_=["cbflow", SLUG]))
        )
    found: dict[str, list[tuple[str, datetime]]] = {}
    for run in runs:
        if "close-bids" in run.name and run.state is not None:
            when = run.expected_start_time
            assert when is not None
            found.setdefault(run.state.type.value, []).append((run.name, when))
    return {state: sorted(runs, key=lambda r: r[1]) for state, runs in found.items()}


def test_extensions_move_and_add_the_rounds_close_runs(
    prefect_server: None, cbflow_env: Settings
) -> None:
    from flows.deployments import ensure_deployments, schedule_round

    stages.launch(_prospectus(EOI_CLOSE, BID_CLOSE), f"{SLUG}.yaml", now=NOW)
    with session_scope() as session:
        application, _ = applications.start_application(
            session, round_=rounds.get_round(session, SLUG), council_code="BIR", actor="t", now=NOW
        )
        application_id = application.id

    async def scheduled() -> dict[str, list[tuple[str, datetime]]]:
        await ensure_deployments()
        await schedule_round(SLUG, now=NOW)
        return await _close_runs()

    before = asyncio.run(scheduled())
    assert [when for _, when in before["SCHEDULED"]] == [BID_CLOSE]

    everyone = BID_CLOSE + timedelta(days=7)
    own = everyone + timedelta(days=3)
    with session_scope() as session:
        round_ = rounds.get_round(session, SLUG)
        deadlines.extend_everyone(
            session,
            round_=round_,
            stage="bid",
            closes=everyone,
            reason="The guidance was corrected.",
            actor="staff",
            now=NOW,
        )
    with session_scope() as session:
        found = session.get(Application, application_id)
        assert found is not None
        deadlines.extend_application(
            session,
            application=found,
            stage="bid",
            closes=own,
            reason="Their offices flooded.",
            actor="staff",
            now=NOW,
        )

    after = asyncio.run(scheduled())
    again = asyncio.run(scheduled())

    assert [when for _, when in after["SCHEDULED"]] == [everyone, own]
    assert [when for _, when in after["CANCELLED"]] == [BID_CLOSE]
    assert again == after  # scheduling again: nothing new, nothing cancelled
