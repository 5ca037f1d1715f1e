"""An amendment that moves a deadline reschedules the round's deadline runs in Prefect: checked
against a real Prefect server."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from conftest import edit, example_text, london
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterTags
from prefect.testing.utilities import prefect_test_harness

from cbflow import stages
from cbflow.db import session_scope
from cbflow.services import rounds
from cbflow.settings import Settings

pytestmark = pytest.mark.slow

SLUG = "future-round"
NOW = datetime(2031, 10, 1, tzinfo=UTC)
BIDS = "bid:        {opens: 2031-11-21, closes: 2031-12-09}"
LATER_BIDS = "bid:        {opens: 2031-11-21, closes: 2032-01-09}"
SOURCE = edit(
    example_text(),
    ("id: whole-place-2011", f"id: {SLUG}"),
    (
        'eoi:        {opens: 2011-10-17, closes: "2011-11-10T12:00"}',
        'eoi:        {opens: 2031-10-17, closes: "2031-11-10T12:00"}',
    ),
    ("bid:        {opens: 2011-11-21, closes: 2011-12-09}", BIDS),
    (
        "assessment: {opens: 2011-12-10, closes: 2011-12-16}",
        "assessment: {opens: 2032-01-10, closes: 2032-01-16}",
    ),
    ("decision:   {by: 2011-12-21}", "decision:   {by: 2032-01-21}"),
    (
        "implementation: {starts: 2012-04-01, ends: 2013-03-31}",
        "implementation: {starts: 2032-04-01, ends: 2032-09-30}",
    ),
    ("due: 2012-10-31}", "due: 2032-10-31}"),
)


@pytest.fixture(scope="module")
def prefect_server() -> Iterator[None]:
    with prefect_test_harness(server_startup_timeout=60):
        yield


async def _runs() -> list[tuple[str, str, datetime]]:
    """The round's runs: (name, state, scheduled time)."""
    async with get_client() as client:
        runs = await client.read_flow_runs(
            flow_run_filter=FlowRunFilter(tags=FlowRunFilterTags(all_=[SLUG]))
        )
    found = []
    for run in runs:
        assert run.state is not None
        when = run.expected_start_time or run.next_scheduled_start_time
        assert when is not None
        found.append((run.name, run.state.type.value, when))
    return found


def test_an_amendment_moving_the_bid_deadline_reschedules_the_close_bids_run(
    prefect_server: None, cbflow_env: Settings
) -> None:
    from flows.deployments import ensure_deployments, schedule_round
    from flows.stages import amend_prospectus

    stages.launch(SOURCE, f"{SLUG}.yaml", now=NOW)

    async def amend() -> tuple[list[tuple[str, str, datetime]], list[tuple[str, str, datetime]]]:
        await ensure_deployments()
        await schedule_round(SLUG, now=NOW)
        before = await _runs()
        await amend_prospectus(
            SLUG,
            edit(SOURCE, (BIDS, LATER_BIDS)),
            f"{SLUG}-v2.yaml",
            "More time for bids",
            now=NOW,
            schedule=True,
            actor="lead@staff.example",
        )
        return before, await _runs()

    before, after = asyncio.run(amend())
    old_close, new_close = london(2031, 12, 10, 0, 0), london(2032, 1, 10, 0, 0)
    close_bids = [(state, when) for name, state, when in before if "close-bids" in name]
    assert close_bids == [("SCHEDULED", old_close)]
    close_bids = sorted(
        ((state, when) for name, state, when in after if "close-bids" in name),
        key=lambda run: run[1],
    )
    assert close_bids == [("CANCELLED", old_close), ("SCHEDULED", new_close)]
    # the reminders before bids close moved with it (10, 3 and 1 working days before, Christmas
    # and the new year's bank holidays left out); those before the EOI deadline did not
    reminders = {(s, w) for n, s, w in after if "send-reminders" in n}
    old_bids = {when for state, when in reminders if old_close - timedelta(days=20) < when}
    assert {("CANCELLED", when) for when in old_bids if when < old_close} <= reminders
    assert {
        ("SCHEDULED", london(y, m, d, 9, 0))
        for y, m, d in [(2031, 12, 23), (2032, 1, 6), (2032, 1, 8)]
    } <= reminders
    # the other deadlines did not move: their runs are the same, still scheduled
    others = sorted(
        (n, s, w) for n, s, w in before if "close-bids" not in n and "send-reminders" not in n
    )
    assert sorted(
        (n, s, w)
        for n, s, w in after
        if "close-bids" not in n and "amend" not in n and "send-reminders" not in n
    ) == (others)
    with session_scope() as session:
        assert rounds.get_round(session, SLUG).prospectus_version == 2
