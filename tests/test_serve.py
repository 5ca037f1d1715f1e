"""`cbflow serve` for real: a Prefect server with its UI and the deadline runner, the demo's
runs visible through the server's API, Prefect's state under the data directory, a clean stop."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from conftest import EXAMPLE, ROOT, free_port
from served import Served, post_json, wait_for

from flows.stages import DEADLINE_FLOWS, PORTAL_FLOWS, SCHEDULED_FLOWS

pytestmark = pytest.mark.slow


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
        wait_for(
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
        wanted |= {(name, "schedule") for name in SCHEDULED_FLOWS}  # the recurring flows

        def served() -> bool:
            deployments = post_json(f"{api}/deployments/filter", {})
            flows = {f["id"]: f["name"] for f in post_json(f"{api}/flows/filter", {})}
            return {(flows[d["flow_id"]], d["name"]) for d in deployments} == wanted

        wait_for(served, 90, "the runner's deployments")

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
        runs = post_json(f"{api}/flow_runs/filter", {"limit": 200})
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


def _descendants(root: int) -> dict[int, tuple[str, str]]:
    """The processes below `root`: pid -> (start time, command line)."""
    children: dict[int, list[int]] = {}
    found: dict[int, tuple[str, str]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        children.setdefault(int(fields[1]), []).append(int(entry.name))
        found[int(entry.name)] = (fields[19], command)
    below: dict[int, tuple[str, str]] = {}
    stack = list(children.get(root, []))
    while stack:
        pid = stack.pop()
        if pid in found:
            below[pid] = found[pid]
            stack.extend(children.get(pid, []))
    return below


def _alive(pid: int, started: str) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    fields = stat.rsplit(")", 1)[1].split()
    return fields[19] == started and fields[0] != "Z"


def test_serve_killed_while_rendering_leaves_no_process_and_no_partial_document(
    tmp_path: Path,
) -> None:
    served = Served(tmp_path / "data", CBFLOW_RENDER_WORKERS="2")
    process = subprocess.Popen(
        [sys.executable, "-m", "cbflow.cli", "serve", "--demo"],
        env=served.env,
        stdout=served.output.open("ab"),
        stderr=subprocess.STDOUT,
        cwd=ROOT,
    )
    try:
        # the demo renders its documents in a pool of worker processes under `serve`
        def rendering() -> dict[int, tuple[str, str]]:
            assert process.poll() is None, served.output.read_text()
            below = _descendants(process.pid)
            workers = [pid for pid, (_, command) in below.items() if "forkserver" in command]
            return below if len(workers) >= 2 else {}

        below = wait_for(rendering, 300, "the demo's rendering workers", every=0.2)
        process.send_signal(signal.SIGKILL)
        process.wait()

        def survivors() -> list[str]:
            return [command for pid, (started, command) in below.items() if _alive(pid, started)]

        try:
            wait_for(lambda: not survivors(), 60, "every process `serve` started to end")
        except AssertionError:
            raise AssertionError(f"still running: {survivors()}") from None
    finally:
        if process.poll() is None:
            process.kill()
    commands = "\n".join(command for _, command in below.values())
    assert "prefect" in commands and "cbflow.web.worker" in commands  # all of it was there
    assert list((served.data_dir / "documents").rglob("*.part")) == []


def test_serve_starts_a_new_worker_when_its_worker_dies(tmp_path: Path) -> None:
    served = Served(tmp_path / "data")
    served.start()
    try:
        assert served.process is not None

        def runners() -> list[int]:
            below = _descendants(served.process.pid)  # type: ignore[union-attr]
            return [pid for pid, (_, command) in below.items() if "worker start" in command]

        (first,) = wait_for(runners, 30, "the flow runner")
        time.sleep(31)  # a runner that dies sooner than this after starting is failing
        os.kill(first, signal.SIGKILL)
        wait_for(lambda: [p for p in runners() if p != first], 30, "a new runner")
        wait_for(
            lambda: (
                "the flow runner stopped (exit code -9); started another"
                in served.output.read_text()
            ),
            30,
            "serve to say so",
        )
        served.process.poll()
        assert served.process.returncode is None, "serve itself kept going"
    finally:
        assert served.stop() == 0
