"""Two Prefect workers on one host, as `cbflow deploy` sets them up: one is killed with SIGKILL in
the middle of a stage, and the same flow run is marked crashed, retried on the other worker and
completed, with every document of the stage issued once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from uuid import UUID

import pytest
from conftest import ROOT, _answers, _wait_until, free_port
from served import wait_for
from sqlmodel import col, select

from cbflow import simulate, stages
from cbflow.db import session_scope
from cbflow.models import Application, Document
from cbflow.prospectus import load
from cbflow.services import councils, rounds
from cbflow.settings import Settings

pytestmark = pytest.mark.slow

PROSPECTUS = ROOT / "prospectus" / "whole-place-2011.yaml"
WORKER = [sys.executable, "-m", "prefect", "worker", "start", "--pool", "cbflow"]
EOIS = 60  # enough receipts for the stage to take several seconds


@pytest.fixture
def own_prefect_server(tmp_path: Path) -> Iterator[str]:
    """A Prefect server of this test's own: `cbflow deploy` adds automations, which must not
    act on the runs of other tests."""
    port = free_port()
    home = tmp_path / "prefect-server"
    home.mkdir()
    env = {
        **os.environ,
        "PREFECT_HOME": str(home),
        "PREFECT_SERVER_API_HOST": "127.0.0.1",
        "PREFECT_SERVER_API_PORT": str(port),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "DO_NOT_TRACK": "1",
        "PREFECT_LOGGING_LEVEL": "WARNING",
    }
    env.pop("PREFECT_API_URL", None)
    with (home / "server.log").open("wb") as log:
        server = subprocess.Popen(
            [sys.executable, "-m", "prefect", "server", "start"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        api = f"http://127.0.0.1:{port}/api"
        try:
            _wait_until(lambda: _answers(f"{api}/health"), 120, "the Prefect server")
            yield api
        finally:
            server.terminate()
            try:
                server.wait(timeout=15)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()


def _round_with_eois(count: int) -> tuple[str, int]:
    """The shipped whole-place round, launched, with `count` expressions of interest submitted
    and no receipt issued yet: closing the window issues them all. Returns the round's id and
    the moment just after its EOI window closed."""
    prospectus = load(PROSPECTUS)
    zone = prospectus.zone
    eoi = prospectus.timetable.eoi
    stages.launch(PROSPECTUS.read_text(encoding="utf-8"), str(PROSPECTUS), now=eoi.opens_at(zone))
    with session_scope() as session:
        round_ = rounds.get_round(session, prospectus.id)
        field = councils.eligible_councils(session, prospectus)[:count]
        submitted = simulate.submit_eois(
            session,
            round_=round_,
            councils=field,
            now=eoi.opens_at(zone) + timedelta(days=1),
            seed=2011,
        )
    return prospectus.id, submitted


def _parent(pid: int) -> int:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat.rsplit(")", 1)[1].split()[1])


def test_a_worker_killed_mid_stage_leaves_the_same_run_to_the_other_worker(
    cbflow_env: Settings, own_prefect_server: str, tmp_path: Path
) -> None:
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    slug, submitted = _round_with_eois(EOIS)
    assert submitted == EOIS
    prospectus = load(PROSPECTUS)
    closed = prospectus.timetable.eoi.closes_at(prospectus.zone) + timedelta(seconds=1)
    env = {
        **os.environ,
        "CBFLOW_DATA_DIR": str(cbflow_env.data_dir),
        "CBFLOW_DATABASE_URL": "",
        "CBFLOW_RENDER_WORKERS": "1",
        "PREFECT_API_URL": own_prefect_server,
        "PREFECT_LOGGING_LEVEL": "WARNING",
        "PREFECT_WORKER_QUERY_SECONDS": "1",
        "PYTHONPATH": str(ROOT),  # the flow runs import this checkout's cbflow
    }
    deployed = subprocess.run(
        [sys.executable, "-m", "cbflow.cli", "deploy"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert deployed.returncode == 0, deployed.stdout + deployed.stderr
    assert "Work pool cbflow created." in deployed.stdout

    workers: dict[int, subprocess.Popen[bytes]] = {}
    logs = []
    try:
        for name in ("worker-1", "worker-2"):
            log_path = tmp_path / f"{name}.log"
            logs.append(log_path)
            process = subprocess.Popen(
                [*WORKER, "--name", name],
                env={**env, "PREFECT_HOME": str(tmp_path / name)},
                cwd=tmp_path,
                stdout=log_path.open("wb"),
                stderr=subprocess.STDOUT,
            )
            workers[process.pid] = process
        with (
            temporary_settings(updates={PREFECT_API_URL: own_prefect_server}),
            get_client(sync_client=True) as client,
        ):
            wait_for(
                lambda: len(client.read_workers_for_work_pool("cbflow")) == 2, 90, "two workers"
            )
            deployment = client.read_deployment_by_name("close-eoi/deadline")
            run_id: UUID = client.create_flow_run_from_deployment(
                deployment.id,
                parameters={"slug": slug, "now": closed.isoformat()},
                name=f"{slug} · EOI close and sift",
            ).id

            documents = cbflow_env.documents_dir
            launched = len(list(documents.rglob("*.pdf")))  # the prospectus document

            def receipts() -> int:
                return len(list(documents.rglob("*.pdf"))) - launched

            # mid-stage: the run is running and has rendered some of its documents, not all
            wait_for(lambda: receipts() >= 3, 180, "the stage to render its first documents", 0.1)
            first = client.read_flow_run(run_id)
            assert first.state_name == "Running" and first.infrastructure_pid
            assert receipts() < EOIS, "the stage finished before the worker could be killed"
            flow_process = int(str(first.infrastructure_pid).rsplit(":", 1)[-1])
            running_it = _parent(flow_process)
            assert running_it in workers, "the flow run is a child of one of the workers"
            killed_at = time.monotonic()
            workers[running_it].send_signal(signal.SIGKILL)
            workers[running_it].wait()
            survivor = next(pid for pid in workers if pid != running_it)

            def states() -> list[str]:
                return [s.name for s in client.read_flow_run_states(run_id)]

            wait_for(lambda: "Crashed" in states(), 120, "the run to be marked crashed", 0.2)
            crashed_after = time.monotonic() - killed_at
            wait_for(lambda: states().count("Running") == 2, 120, "the retry to start", 0.2)
            retried_after = time.monotonic() - killed_at
            done = wait_for(
                lambda: (
                    (run := client.read_flow_run(run_id)).state_type.value
                    in ("COMPLETED", "FAILED", "CRASHED")
                    and run
                ),
                300,
                "the retried run to finish",
            )
            print(
                f"\nmarked crashed {crashed_after:.1f} s after the kill, running again after "
                f"{retried_after:.1f} s, done after {time.monotonic() - killed_at:.1f} s"
            )
            assert done.state_name == "Completed", states()
            assert done.run_count == 2
            assert workers[survivor].poll() is None, "the other worker kept going"
            assert done.infrastructure_pid != first.infrastructure_pid
            history = states()
            assert history.index("Crashed") < history.index("AwaitingRetry")
            runs = [r.id for r in client.read_flow_runs() if r.deployment_id == deployment.id]
            assert runs == [run_id], "retried as the same run, no new one"
    finally:
        for process in workers.values():
            if process.poll() is None:
                process.kill()
                process.wait()
    with session_scope() as session:
        round_ = rounds.get_round(session, slug)
        eois = session.exec(select(Application.id).where(Application.round_id == round_.id)).all()
        issued = session.exec(
            select(Document.application_id, Document.path).where(
                col(Document.application_id).is_not(None)
            )
        ).all()
    by_application = [application for application, _ in issued]
    assert sorted(by_application) == sorted(eois), "one receipt for each EOI, none twice"
    for _, path in issued:
        assert (documents / path).is_file(), path
    assert list(documents.rglob("*.part")) == []
