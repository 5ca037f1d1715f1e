"""Shared fixtures: real databases (SQLite files, and a throwaway PostgreSQL server), real files.

Every test that touches storage gets its own empty database, migrated with Alembic and loaded with
the council register, and its own data folder. Tests marked `postgres` run against a PostgreSQL
server: the one in CBFLOW_TEST_POSTGRES_URL, or one started here from Debian's binaries. Under CI
(CI=true) a missing PostgreSQL is an error, never a skip.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import throwaway_postgres

from cbflow.db import migrate, session_scope
from cbflow.settings import Settings, get_settings

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "tests" / "data" / "format-example.yaml"
LONDON = ZoneInfo("Europe/London")


def london(*args: int) -> datetime:
    """A local time in the round's zone: london(2011, 11, 10, 12, 0)."""
    return datetime(*args, tzinfo=LONDON)  # type: ignore[misc]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """A PostgreSQL server URL (without database name) for this test session."""
    given = os.environ.get("CBFLOW_TEST_POSTGRES_URL")
    if given:
        yield given.rstrip("/")
        return
    if throwaway_postgres.binaries() is None:
        if os.environ.get("CI"):
            pytest.fail("PostgreSQL is not installed: CI must run the PostgreSQL tests")
        pytest.skip(
            "PostgreSQL is not installed (apt-get install postgresql) "
            "and CBFLOW_TEST_POSTGRES_URL is unset"
        )
    try:
        with throwaway_postgres.server(max_connections=300) as url:
            yield url
    except throwaway_postgres.Unavailable as exc:
        pytest.fail(str(exc))


def _fresh_postgres_database(server: str) -> str:
    return throwaway_postgres.fresh_database(server)


def configure(monkeypatch: pytest.MonkeyPatch, data_dir: Path, database_url: str = "") -> Settings:
    """Point cbflow's settings at a test's own data folder and database."""
    monkeypatch.setenv("CBFLOW_DATA_DIR", str(data_dir))
    monkeypatch.setenv("CBFLOW_DATABASE_URL", database_url)
    monkeypatch.setenv("CBFLOW_RENDER_WORKERS", "1")  # tests render few documents: no pool start-up
    get_settings.cache_clear()
    return get_settings()


@pytest.fixture
def cbflow_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Settings]:
    """A migrated SQLite database with the council register, and an empty data folder."""
    from cbflow.services.councils import load_register

    settings = configure(monkeypatch, tmp_path / "data")
    migrate()
    with session_scope() as session:
        load_register(session)
    yield settings
    get_settings.cache_clear()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def any_db_env(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Settings]:
    """As cbflow_env, once on SQLite and once on PostgreSQL."""
    from cbflow.services.councils import load_register

    url = ""
    if request.param == "postgres":
        url = _fresh_postgres_database(request.getfixturevalue("postgres_server"))
    settings = configure(monkeypatch, tmp_path / "data", url)
    migrate()
    with session_scope() as session:
        load_register(session)
    yield settings
    get_settings.cache_clear()


def example_text() -> str:
    """The format document's example prospectus (change it with `edit`)."""
    return EXAMPLE.read_text(encoding="utf-8")


ROUTE_OPEN = (
    "    carry_over: [partners, pooled_budget]   # answers an adopting council starts from\n",
    "    carry_over: [partners, pooled_budget]\n"
    "    route: open\n"
    "    opens: 2012-04-01\n"
    "    closes: 2015-03-31\n",
)  # edit() pair: the example with the rolling adoption route open from its implementation


def edit(source: str, *pairs: tuple[str, str]) -> str:
    """Replace each `old` with `new` in a prospectus text; every `old` must be there."""
    for old, new in pairs:
        assert old in source, f"{old!r} is not in the prospectus"
        source = source.replace(old, new)
    return source


def _wait_until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if predicate():
                return
        except OSError:
            pass
        time.sleep(0.3)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def _answers(url: str) -> bool:
    with urllib.request.urlopen(url, timeout=2) as response:
        return bool(response.status == 200)


@pytest.fixture(scope="session")
def prefect_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real Prefect server for this test session (its own home and SQLite database)."""
    port = free_port()
    home = tmp_path_factory.mktemp("prefect-home")
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
    log = (home / "server.log").open("wb")
    server = subprocess.Popen(
        [sys.executable, "-m", "prefect", "server", "start"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    api = f"http://127.0.0.1:{port}/api"
    try:
        _wait_until(lambda: _answers(f"{api}/health"), 120, f"the Prefect server (log {log.name})")
        yield api
    finally:
        server.terminate()
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()


@pytest.fixture
def flow_runner(cbflow_env: Settings, prefect_api: str, tmp_path: Path) -> Iterator[Settings]:
    """A flow runner serving every deployment from one process (`python -m flows.deployments`),
    executing the flow runs the portal creates against this test's data folder and database:
    quicker to start than a work pool and its worker (`cbflow serve` starts those; see
    tests/test_workers.py). Yields the settings the portal uses to reach it."""
    env = {
        **os.environ,
        "PREFECT_API_URL": prefect_api,
        "PREFECT_RUNNER_POLL_FREQUENCY": "1",
        "PREFECT_LOGGING_LEVEL": "WARNING",
        "PREFECT_HOME": str(tmp_path / "prefect-runner"),
    }
    log_path = tmp_path / "runner.log"
    log = log_path.open("wb")
    runner = subprocess.Popen(
        [sys.executable, "-m", "flows.deployments"],
        env=env,
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    settings = cbflow_env.model_copy(update={"prefect_api_url": prefect_api})
    _forget_flow_runs(prefect_api)  # a clean slate: no run left over by an earlier test

    def deployed() -> bool:
        assert runner.poll() is None, f"the flow runner stopped: {log_path.read_text()}"
        return _answers(f"{prefect_api}/deployments/name/publish-model/portal")

    try:
        _wait_until(deployed, 90, "the flow runner's deployments")
        yield settings
    finally:
        runner.terminate()
        try:
            runner.wait(timeout=15)
        except subprocess.TimeoutExpired:
            runner.kill()
        log.close()
        # runs still scheduled (a receipts batch, say) must not run in the next test's world
        _forget_flow_runs(prefect_api)


def _forget_flow_runs(api: str) -> None:
    """Delete every flow run on the session's Prefect server."""
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with (
        temporary_settings(updates={PREFECT_API_URL: api}),
        get_client(sync_client=True) as client,
    ):
        while runs := client.read_flow_runs(limit=200):
            for run in runs:
                client.delete_flow_run(run.id)
