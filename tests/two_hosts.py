"""The parts of a several-host cbflow, each started on its own "host" (tests/hosts.py):
PostgreSQL with cbflow's and Prefect's databases, the Prefect server on PostgreSQL, Prefect
process workers, a portal process. The test process reaches them over the link, from the desk,
and asks Prefect what it knows through its REST API, as the UI does.

Every process gets a clean environment: this machine's PATH and locale, and only the settings
given here, so nothing of the test's own Prefect or cbflow configuration leaks into a "host".
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import throwaway_postgres
from hosts import Network
from sqlalchemy import create_engine, text

PYTHON = sys.executable
PREFECT = str(Path(sys.executable).parent / "prefect")
PREFECT_PORT = 4200
POSTGRES_PORT = 5432
PORTAL_PORT = 8000
FINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}


def clean_env(**settings: str) -> dict[str, str]:
    """This machine's basics, without any PREFECT_ or CBFLOW_ setting, plus these settings."""
    kept = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("PREFECT_", "CBFLOW_")) and name not in {"PYTHONPATH"}
    }
    kept["DO_NOT_TRACK"] = "1"
    kept["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
    kept.update(settings)
    return kept


def wait_for(what: str, check: Any, timeout: float, every: float = 0.5) -> Any:
    """Poll check() until it returns something true; its last value, or an error naming what."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
        except (httpx.HTTPError, OSError) as exc:
            last = exc
        else:
            if last:
                return last
        time.sleep(every)
    raise TimeoutError(f"{what}: not after {timeout:.0f} s (last seen: {last!r})")


@contextmanager
def postgres(net: Network, role: str, databases: tuple[str, ...]) -> Iterator[str]:
    """A throwaway PostgreSQL on a host, open to the hosts of the /24, with these databases.
    Yields the server's URL without a database name (psycopg)."""
    host = net[role]
    subnet = host.address.rsplit(".", 1)[0] + ".0/24"
    with throwaway_postgres.server(
        max_connections=200,
        host=host.address,
        port=POSTGRES_PORT,
        wrap=net.command(role, []),
        allow=subnet,
    ) as url:
        admin = create_engine(f"{url}/postgres", isolation_level="AUTOCOMMIT")
        with admin.connect() as connection:
            for name in databases:
                connection.execute(text(f'CREATE DATABASE "{name}"'))
        admin.dispose()
        yield url


@dataclass
class Prefect:
    """The Prefect server as the other hosts see it."""

    api_url: str
    started_seconds: float

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.api_url, timeout=30)

    def flow_run(self, run_id: str) -> dict[str, Any]:
        with self.client() as client:
            response = client.get(f"/flow_runs/{run_id}")
            response.raise_for_status()
            found: dict[str, Any] = response.json()
            return found

    def states(self, run_id: str) -> list[str]:
        """The run's states, oldest first, as the UI lists them (type, or name where it differs)."""
        with self.client() as client:
            response = client.get("/flow_run_states/", params={"flow_run_id": run_id})
            response.raise_for_status()
            states = sorted(response.json(), key=lambda state: state["timestamp"])
        return [state["name"] for state in states]

    def set_state(self, run_id: str, state_type: str, name: str, message: str) -> None:
        with self.client() as client:
            response = client.post(
                f"/flow_runs/{run_id}/set_state",
                json={
                    "state": {"type": state_type, "name": name, "message": message},
                    "force": True,
                },
            )
            response.raise_for_status()

    def crash_silent_runs(self, within: int) -> None:
        """An automation that marks crashed a flow run whose heartbeats stop for `within` seconds
        without it ending: a worker's host lost with its runs. Prefect never notices otherwise."""
        with self.client() as client:
            response = client.post(
                "/automations/",
                json={
                    "name": "Crash flow runs whose heartbeats stopped",
                    "trigger": {
                        "type": "event",
                        "posture": "Proactive",
                        "match": {"prefect.resource.id": ["prefect.flow-run.*"]},
                        "after": ["prefect.flow-run.heartbeat"],
                        "expect": ["prefect.flow-run.*"],
                        "for_each": ["prefect.resource.id"],
                        "threshold": 1,
                        "within": within,
                    },
                    "actions": [
                        {
                            "type": "change-flow-run-state",
                            "state": "CRASHED",
                            "message": f"No heartbeat for {within} s: its worker's host was lost.",
                        }
                    ],
                },
            )
            response.raise_for_status()

    def create_pool(self, name: str) -> None:
        with self.client() as client:
            response = client.post("/work_pools/", json={"name": name, "type": "process"})
            if response.status_code != 409:  # it exists already
                response.raise_for_status()

    def workers(self, pool: str) -> list[str]:
        with self.client() as client:
            response = client.post(f"/work_pools/{pool}/workers/filter", json={})
            response.raise_for_status()
            return sorted(worker["name"] for worker in response.json())

    def deployment_id(self, flow: str, deployment: str) -> str:
        with self.client() as client:
            response = client.get(f"/deployments/name/{flow}/{deployment}")
            response.raise_for_status()
            return str(response.json()["id"])

    def run_deployment(self, deployment_id: str, parameters: Mapping[str, Any]) -> str:
        with self.client() as client:
            response = client.post(
                f"/deployments/{deployment_id}/create_flow_run",
                json={"parameters": dict(parameters)},
            )
            response.raise_for_status()
            return str(response.json()["id"])

    def wait_state(self, run_id: str, wanted: set[str], timeout: float) -> dict[str, Any]:
        def reached() -> dict[str, Any] | None:
            run = self.flow_run(run_id)
            return run if run["state_type"] in wanted else None

        found: dict[str, Any] = wait_for(f"flow run {run_id} in {sorted(wanted)}", reached, timeout)
        return found


def prefect_server(net: Network, role: str, database_url: str, home: Path) -> Prefect:
    """Start the Prefect server on a host, on PostgreSQL; returns once it answers from the desk."""
    address = net[role].address
    asyncpg_url = database_url.replace("postgresql+psycopg://", "postgresql+asyncpg://")
    home.mkdir(parents=True, exist_ok=True)
    env = clean_env(
        PREFECT_HOME=str(home),
        PREFECT_API_DATABASE_CONNECTION_URL=asyncpg_url,
        PREFECT_SERVER_API_HOST=address,
        PREFECT_SERVER_API_PORT=str(PREFECT_PORT),
        PREFECT_UI_ENABLED="false",
    )
    started = time.monotonic()
    process = net.start(role, "prefect-server", [PREFECT, "server", "start"], env)
    api_url = f"http://{address}:{PREFECT_PORT}/api"

    def healthy() -> bool:
        if process.poll() is not None:
            raise RuntimeError(f"the Prefect server stopped:\n{net.log('prefect-server')[-3000:]}")
        return httpx.get(f"{api_url}/health", timeout=2).status_code == 200

    wait_for("the Prefect server's health", healthy, timeout=120)
    return Prefect(api_url=api_url, started_seconds=time.monotonic() - started)


def prefect_worker(
    net: Network, role: str, prefect: Prefect, pool: str, home: Path, **settings: str
) -> None:
    """`prefect worker start` on a host, polling the server across the link every 2 s."""
    home.mkdir(parents=True, exist_ok=True)
    env = clean_env(
        PREFECT_HOME=str(home),
        PREFECT_API_URL=prefect.api_url,
        PREFECT_WORKER_QUERY_SECONDS="2",
        **settings,
    )
    argv = [PREFECT, "worker", "start", "--pool", pool, "--type", "process", "--name", role]
    net.start(role, f"worker-{role}", argv, env)
    wait_for(f"worker {role} known to the server", lambda: role in prefect.workers(pool), 120)


def portal(net: Network, role: str, database_url: str, data_dir: Path, **settings: str) -> str:
    """`cbflow init` then one portal process on a host; its base URL once /healthz answers."""
    address = net[role].address
    env = clean_env(
        CBFLOW_DATABASE_URL=database_url,
        CBFLOW_DATA_DIR=str(data_dir),
        **settings,
    )
    net.run(role, [str(Path(PYTHON).parent / "cbflow"), "init"], env, timeout=180)
    process = net.start(
        role, f"portal-{role}", [PYTHON, "-m", "cbflow.web.worker", address, str(PORTAL_PORT)], env
    )
    url = f"http://{address}:{PORTAL_PORT}"

    def healthy() -> bool:
        if process.poll() is not None:
            raise RuntimeError(f"the portal stopped:\n{net.log(f'portal-{role}')[-3000:]}")
        return httpx.get(f"{url}/healthz", timeout=2).status_code == 200

    wait_for("the portal's /healthz", healthy, timeout=120)
    return url


def flow_process(net: Network, role: str, run_id: str) -> int | None:
    """The pid of the process on a host that executes this flow run (the worker starts one per
    run and gives it the run's id in its environment)."""
    for pid in net.pids(role):
        try:
            environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if f"PREFECT__FLOW_RUN_ID={run_id}".encode() in environ:
            return pid
    return None
