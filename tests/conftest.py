"""Shared fixtures: real databases (SQLite files, and a throwaway PostgreSQL server), real files.

Every test that touches storage gets its own empty database, migrated with Alembic and loaded with
the council register, and its own data folder. Tests marked `postgres` run against a PostgreSQL
server: the one in CBFLOW_TEST_POSTGRES_URL, or one started here from Debian's binaries. Under CI
(CI=true) a missing PostgreSQL is an error, never a skip.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import create_engine, text

from cbflow.db import migrate, session_scope
from cbflow.settings import Settings, get_settings

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "tests" / "data" / "format-example.yaml"
LONDON = ZoneInfo("Europe/London")


def london(*args: int) -> datetime:
    """A local time in the round's zone: london(2011, 11, 10, 12, 0)."""
    return datetime(*args, tzinfo=LONDON)  # type: ignore[misc]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _postgres_bin() -> Path | None:
    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), reverse=True)
    return candidates[0].parent if candidates else None


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """A PostgreSQL server URL (without database name) for this test session."""
    given = os.environ.get("CBFLOW_TEST_POSTGRES_URL")
    if given:
        yield given.rstrip("/")
        return
    binaries = _postgres_bin()
    if binaries is None:
        if os.environ.get("CI"):
            pytest.fail("PostgreSQL is not installed: CI must run the PostgreSQL tests")
        pytest.skip(
            "PostgreSQL is not installed (apt-get install postgresql) "
            "and CBFLOW_TEST_POSTGRES_URL is unset"
        )
    # not under pytest's temporary folder: the postgres user cannot enter root's folders
    folder = Path(tempfile.mkdtemp(prefix="cbflow-test-postgres-"))
    data = folder / "data"
    as_postgres: list[str] = []
    if os.geteuid() == 0:  # initdb refuses to run as root
        shutil.chown(folder, "postgres", "postgres")
        as_postgres = ["runuser", "-u", "postgres", "--"]
    port = _free_port()
    for command in (
        [str(binaries / "initdb"), "-D", str(data), "-U", "postgres", "-A", "trust", "--no-sync"],
        [
            str(binaries / "pg_ctl"),
            "-D",
            str(data),
            "-l",
            str(folder / "log"),
            "-w",
            "-o",
            f"-h 127.0.0.1 -p {port} -k {folder} -F",
            "start",
        ],
    ):
        done = subprocess.run([*as_postgres, *command], capture_output=True, text=True)
        if done.returncode != 0:
            pytest.fail(
                f"starting PostgreSQL failed: {' '.join(command)}\n{done.stdout}\n{done.stderr}"
            )
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}"
    finally:
        subprocess.run(
            [*as_postgres, str(binaries / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
            capture_output=True,
        )
        shutil.rmtree(folder, ignore_errors=True)


def _fresh_postgres_database(server: str) -> str:
    name = f"cbflow_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(f"{server}/postgres", isolation_level="AUTOCOMMIT")
    deadline = time.monotonic() + 30
    while True:
        try:
            with admin.connect() as connection:
                connection.execute(text(f'CREATE DATABASE "{name}"'))
            break
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)
    admin.dispose()
    return f"{server}/{name}"


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


def edit(source: str, *pairs: tuple[str, str]) -> str:
    """Replace each `old` with `new` in a prospectus text; every `old` must be there."""
    for old, new in pairs:
        assert old in source, f"{old!r} is not in the prospectus"
        source = source.replace(old, new)
    return source
