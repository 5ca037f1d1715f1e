"""The Prefect flows: runs named by round and stage, documents linked as artifacts, deadline runs
scheduled at the prospectus's dates. One Prefect test server for the whole module."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest
from conftest import EXAMPLE, edit, example_text, london
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterTags
from prefect.testing.utilities import prefect_test_harness

from cbflow.settings import Settings

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def prefect_server() -> Iterator[None]:
    with prefect_test_harness(server_startup_timeout=60):
        yield


async def _runs_and_artifacts() -> tuple[list[str], dict[str, str]]:
    async with get_client() as client:
        runs = await client.read_flow_runs()
        artifacts = await client.read_artifacts()
    return [r.name for r in runs], {a.key: str(a.data) for a in artifacts if a.key}


def test_demo_flow_names_runs_by_round_and_stage_and_links_documents(
    prefect_server: None, cbflow_env: Settings
) -> None:
    from flows.demo import demo_round

    summary = asyncio.run(demo_round(str(EXAMPLE), councils=5))

    names, artifacts = asyncio.run(_runs_and_artifacts())
    assert summary["selected"]
    for expected in (  # each followed by the date the stage acted on
        "whole-place-2011 · EOI close and sift",
        "whole-place-2011 · selection and decisions",
        "whole-place-2011 · invite to bid",
        "format-example · launch",
    ):
        assert any(name.startswith(expected + " · ") for name in names), expected
    assert any(name.startswith("model ") and "adopted by" in name for name in names)
    decisions = artifacts["whole-place-2011-decisions"]
    links = [part.split(")")[0] for part in decisions.split("](")[1:]]
    assert links, "the decisions artifact links each letter"
    for link in links:
        assert Path(unquote(urlparse(link).path)).is_file()


def test_schedule_round_creates_one_run_per_future_deadline_when_called_twice(
    prefect_server: None, cbflow_env: Settings
) -> None:
    from cbflow import stages
    from flows.deployments import ensure_deployments, schedule_round

    source = edit(
        example_text(),
        ("id: whole-place-2011", "id: future-round"),
        (
            'eoi:        {opens: 2011-10-17, closes: "2011-11-10T12:00"}',
            'eoi:        {opens: 2031-10-17, closes: "2031-11-10T12:00"}',
        ),
        (
            "bid:        {opens: 2011-11-21, closes: 2011-12-09}",
            "bid:        {opens: 2031-11-21, closes: 2031-12-09}",
        ),
        (
            "assessment: {opens: 2011-12-10, closes: 2011-12-16}",
            "assessment: {opens: 2031-12-10, closes: 2031-12-16}",
        ),
        ("decision:   {by: 2011-12-21}", "decision:   {by: 2031-12-21}"),
        (
            "implementation: {starts: 2012-04-01, ends: 2013-03-31}",
            "implementation: {starts: 2032-04-01, ends: 2032-09-30}",
        ),
        ("due: 2012-10-31}", "due: 2032-10-31}"),
    )
    stages.launch(source, "future-round.yaml", now=datetime(2031, 10, 1, tzinfo=UTC))

    async def schedule_twice() -> list[tuple[str, datetime]]:
        await ensure_deployments()
        first = await schedule_round("future-round", now=datetime(2031, 10, 1, tzinfo=UTC))
        await schedule_round("future-round", now=datetime(2031, 10, 1, tzinfo=UTC))
        async with get_client() as client:
            runs = await client.read_flow_runs(
                flow_run_filter=FlowRunFilter(tags=FlowRunFilterTags(all_=["future-round"]))
            )
        assert len(runs) == len(first)
        return [(r.name, r.state.state_details.scheduled_time) for r in runs]  # type: ignore[union-attr,misc]

    scheduled = asyncio.run(schedule_twice())

    by_name = dict(scheduled)
    eoi_close = next(when for name, when in by_name.items() if "close-eoi" in name)
    assert eoi_close == london(2031, 11, 10, 12, 0)
    bids_close = next(when for name, when in by_name.items() if "close-bids" in name)
    assert bids_close == london(2031, 12, 10, 0, 0)  # a date alone: the end of that day
    returns = [name for name in by_name if "returns-cycle" in name]
    assert len(returns) == 2  # two quarters of implementation
