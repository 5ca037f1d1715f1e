"""`cbflow serve` for real: a Prefect server with its UI and the deadline runner, the demo's
runs visible through the server's API, Prefect's state under the data directory, a clean stop."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from conftest import EXAMPLE, free_port

from flows.stages import DEADLINE_FLOWS, PORTAL_FLOWS

pytestmark = pytest.mark.slow


def _post(url: str, body: dict[str, Any]) -> Any:
    request = urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.load(response)


def _wait_for(predicate: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            result = predicate()
        except OSError:
            result = None
        if result:
            return result
        time.sleep(1)
    raise AssertionError(f"timed out waiting for {what}")


def test_serve_shows_the_demo_runs_through_the_prefect_api_when_demo_runs_against_it(
    tmp_path: Path,
) -> None:
    port = free_port()
    portal = f"http://127.0.0.1:{free_port()}"
    env = {
        **os.environ,
        "CBFLOW_DATA_DIR": str(tmp_path / "data"),
        "CBFLOW_DATABASE_URL": "",
        "CBFLOW_PREFECT_PORT": str(port),
        "CBFLOW_PORTAL_PORT": portal.rsplit(":", 1)[1],
    }
    env.pop("PREFECT_API_URL", None)
    api = f"http://127.0.0.1:{port}/api"
    serve = subprocess.Popen(
        [sys.executable, "-m", "cbflow.cli", "serve"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        _wait_for(
            lambda: urllib.request.urlopen(f"{api}/health", timeout=2).status == 200,
            120,
            "the server",
        )
        home = urllib.request.urlopen(portal, timeout=10).read().decode()
        assert "Funding rounds – cbflow – GOV.UK" in home
        assert "No rounds have been launched yet." in home
        # the runner serves every deadline flow, and every flow staff start from the portal
        wanted = {(name, "deadline") for name in DEADLINE_FLOWS} | {
            (name, "portal") for name in PORTAL_FLOWS
        }

        def served() -> bool:
            deployments = _post(f"{api}/deployments/filter", {})
            flows = {f["id"]: f["name"] for f in _post(f"{api}/flows/filter", {})}
            return {(flows[d["flow_id"]], d["name"]) for d in deployments} == wanted

        _wait_for(served, 90, "the runner's deployments")

        demo = subprocess.run(
            [
                sys.executable,
                "-m",
                "cbflow.cli",
                "demo",
                "--prospectus",
                str(EXAMPLE),
                "--councils",
                "5",
            ],
            env={**env, "PREFECT_API_URL": api},
            capture_output=True,
            text=True,
            timeout=600,
        )

        assert demo.returncode == 0, demo.stdout + demo.stderr
        assert "Selected places" in demo.stdout
        runs = _post(f"{api}/flow_runs/filter", {"limit": 200})
        by_name = {run["name"]: run["state_type"] for run in runs}
        assert by_name["demo · format-example"] == "COMPLETED"
        # stage runs are named by round, stage and the date they acted on
        assert by_name["whole-place-2011 · selection and decisions · 21 Dec 2011"] == "COMPLETED"
        assert by_name["whole-place-2011 · EOI close and sift · 10 Nov 2011"] == "COMPLETED"
        assert (tmp_path / "data" / "prefect").is_dir(), (
            "Prefect keeps its state under the data directory"
        )
        page = urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10).read().decode()
        assert "<html" in page.lower(), "the Prefect UI is served"
        home = urllib.request.urlopen(portal, timeout=10).read().decode()
        assert "Whole-place community budgets" in home, "the portal lists the demo's round"
    finally:
        serve.send_signal(signal.SIGTERM)  # what an administrator's `kill` sends
        try:
            serve.wait(timeout=60)
        finally:
            if serve.poll() is None:
                os.killpg(serve.pid, signal.SIGKILL)
    assert serve.returncode == 0
    with pytest.raises(OSError):
        urllib.request.urlopen(f"{api}/health", timeout=2)
    with pytest.raises(OSError):
        urllib.request.urlopen(f"{portal}/healthz", timeout=2)
