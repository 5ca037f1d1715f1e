"""The several-host harness proved with plain Prefect: four network namespaces on this machine
(tests/hosts.py) stand for four hosts. On "db": PostgreSQL with cbflow's and Prefect's databases,
and the Prefect server on it. On "w1" and "w2": a Prefect process worker each. On "portal": a
cbflow portal process on the PostgreSQL database. Each reaches the others only over the link.

A trivial flow of ten one-second steps is deployed to the pool and run; it starts on w1, and w1
is lost mid-run (SIGKILL to every process on it, the worker and the run's own process). Prefect
on its own keeps such a run "Running" for ever: the test adds the automation that marks a run
crashed once its heartbeats stop, sees it Crashed, schedules the same flow run again, and sees
w2 finish it. The hosts share this machine's files (the flow's source and its step markers are
in one folder): the proof is of the network and the orchestration, not of shared storage.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import hosts
import httpx
import pytest
import two_hosts
from two_hosts import PYTHON, clean_env, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

POOL = "harness"
HEARTBEAT = 30  # Prefect's least heartbeat interval, seconds
SILENCE = 60  # heartbeats missed for this long: the run is crashed

STEPS_FLOW = """
import os
import time
from pathlib import Path

from prefect import flow, task


@task
def step(folder: str, number: int) -> int:
    time.sleep(1)
    Path(folder, f"step-{number:02d}-{os.environ['HARNESS_HOST']}").touch()
    return number


@flow
def steps(folder: str, count: int = 10) -> int:
    return sum(step(folder, number) for number in range(count))
"""

DEPLOY = """
import sys
from prefect import flow

flow.from_source(source=sys.argv[1], entrypoint="steps.py:steps").deploy(
    name="steps", work_pool_name=sys.argv[2], print_next_steps=False
)
"""


@pytest.fixture
def network(tmp_path: Path) -> Iterator[hosts.Network]:
    try:
        hosts.check_available()
    except hosts.Unavailable as exc:
        pytest.skip(f"no network namespaces here: {exc}")
    with hosts.network(["db", "w1", "w2", "portal"], tmp_path / "logs") as net:
        yield net


def test_a_run_lost_with_its_host_is_crashed_and_finished_on_the_other(
    network: hosts.Network, tmp_path: Path
) -> None:
    net = network
    started = time.monotonic()
    with two_hosts.postgres(net, "db", ("cbflow", "prefect")) as pg:
        postgres_seconds = time.monotonic() - started
        prefect = two_hosts.prefect_server(net, "db", f"{pg}/prefect", tmp_path / "prefect-db")
        prefect.create_pool(POOL)
        prefect.crash_silent_runs(within=SILENCE)

        # the portal, on a host of its own, on cbflow's PostgreSQL database across the link
        portal = two_hosts.portal(net, "portal", f"{pg}/cbflow", tmp_path / "portal-data")
        probe = f"import urllib.request; print(urllib.request.urlopen('{portal}/healthz').read())"
        assert "ok" in net.run("w2", [PYTHON, "-c", probe]).stdout
        assert httpx.get(f"{portal}/healthz").text == "ok"

        # a flow's source in a folder, deployed to the pool from the desk
        source = tmp_path / "source"
        source.mkdir()
        (source / "steps.py").write_text(STEPS_FLOW)
        done = subprocess.run(
            [PYTHON, "-c", DEPLOY, str(source), POOL],
            env=clean_env(PREFECT_API_URL=prefect.api_url),
            capture_output=True,
            text=True,
            timeout=180,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        deployment = prefect.deployment_id("steps", "steps")

        markers = tmp_path / "markers"
        markers.mkdir()
        worker_settings = {"PREFECT_FLOWS_HEARTBEAT_FREQUENCY": str(HEARTBEAT)}
        two_hosts.prefect_worker(
            net, "w1", prefect, POOL, tmp_path / "w1", HARNESS_HOST="w1", **worker_settings
        )
        run_id = prefect.run_deployment(deployment, {"folder": str(markers), "count": 10})
        prefect.wait_state(run_id, {"RUNNING"}, timeout=120)
        two_hosts.prefect_worker(
            net, "w2", prefect, POOL, tmp_path / "w2", HARNESS_HOST="w2", **worker_settings
        )
        wait_for("three steps done on w1", lambda: len(list(markers.glob("*-w1"))) >= 3, 60, 0.1)

        # w1 is lost: its worker and the run's own process, at once
        assert two_hosts.flow_process(net, "w1", run_id) is not None
        killed_at = time.monotonic()
        killed = net.crash("w1")
        assert killed and not net.pids("w1")
        done_on_w1 = len(list(markers.glob("*-w1")))
        assert done_on_w1 < 10
        assert prefect.flow_run(run_id)["state_type"] == "RUNNING"  # what Prefect knows by itself

        crashed = prefect.wait_state(run_id, {"CRASHED", "COMPLETED", "FAILED"}, SILENCE + 90)
        crashed_after = time.monotonic() - killed_at
        assert crashed["state_type"] == "CRASHED", crashed["state"]

        # retried as the same flow run: w2, the only worker left, picks it up
        prefect.set_state(run_id, "SCHEDULED", "AwaitingRetry", "its host was lost; retried")
        finished = prefect.wait_state(run_id, two_hosts.FINAL, timeout=120)
        retried_after = time.monotonic() - killed_at
        assert finished["state_type"] == "COMPLETED", finished["state"]
        assert finished["run_count"] >= 2
        assert sorted(p.name for p in markers.glob("*-w2")) == [
            f"step-{n:02d}-w2" for n in range(10)
        ]
        assert len(list(markers.glob("*-w1"))) == done_on_w1  # nothing ran on w1 after its loss
        states = prefect.states(run_id)
        assert states[-1] == "Completed"
        assert "Crashed" in states and "AwaitingRetry" in states
        print(
            f"\nPostgreSQL up in {postgres_seconds:.1f} s; Prefect server on it in "
            f"{prefect.started_seconds:.1f} s; run crashed {crashed_after:.0f} s after the kill; "
            f"completed on w2 {retried_after:.0f} s after it; states: {' > '.join(states)}"
        )
