"""A flow run whose process died with its runner is marked crashed when a runner starts again,
instead of staying "Running" in the Prefect UI for ever."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from prefect.client.orchestration import get_client
from prefect.settings import PREFECT_API_URL, temporary_settings
from prefect.states import Running

from cbflow import flowruns
from cbflow.settings import Settings
from flows.deployments import ABANDONED, mark_abandoned_runs

pytestmark = pytest.mark.slow


def test_runs_left_running_by_a_killed_runner_are_marked_crashed(flow_runner: Settings) -> None:
    far_off = datetime.now(UTC) + timedelta(days=30)  # never picked up by the test's runner
    left_running = flowruns.start(
        flow_runner,
        "close-eoi",
        {"slug": "a-round"},
        name="a-round · EOI close and sift",
        deployment=flowruns.DEADLINE,
        scheduled_time=far_off,
    )
    still_scheduled = flowruns.start(
        flow_runner,
        "close-bids",
        {"slug": "a-round"},
        name="a-round · bids close",
        deployment=flowruns.DEADLINE,
        scheduled_time=far_off,
    )
    with (
        temporary_settings(updates={PREFECT_API_URL: flow_runner.prefect_api_url}),
        get_client(sync_client=True) as client,
    ):
        # as its process left it when the runner executing it was killed
        client.set_flow_run_state(left_running, Running(), force=True)

        assert mark_abandoned_runs() == ["a-round · EOI close and sift"]

        crashed = client.read_flow_run(left_running).state
        assert crashed is not None and crashed.type.value == "CRASHED"
        assert crashed.message == ABANDONED
        waiting = client.read_flow_run(still_scheduled).state
        assert waiting is not None and waiting.type.value == "SCHEDULED", (
            "a run not yet started is kept"
        )
        assert mark_abandoned_runs() == [], "once is enough"
