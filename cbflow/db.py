"""The database engine, session scope and schema migrations (Alembic)."""

from __future__ import annotations

import fcntl
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError
from sqlmodel import Session, create_engine

from cbflow.settings import get_settings

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


BUSY_SECONDS = 30  # how long a write waits for another to finish before giving up


class _Writers:
    """One SQLite writer at a time across every process using the database (the portal's
    workers, the flow runs, the command line), queued on locks rather than left to SQLite's busy
    handler, which retries after sleeps of up to 100 ms: under a surge of submissions those
    sleeps, not the work, made the slowest answers.

    In a process, threads queue on a lock (for up to BUSY_SECONDS); the thread holding it then
    takes an exclusive lock on a file beside the database, which other processes' writers wait
    for in the kernel, woken as soon as it is free (and freed by the kernel if its holder dies).
    Both are taken at a transaction's first write (or by `lock_for_update`) and released when
    its connection goes back to the pool, that is after its commit or rollback has completed.
    """

    DML = ("INSERT", "UPDATE", "DELETE", "REPLACE")

    def __init__(self, lock_file: Path | None) -> None:
        self._lock = threading.Lock()
        self._file = lock_file.open("a+b") if lock_file is not None else None

    def before_execute(self, conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if statement.lstrip()[:7].upper().startswith(self.DML):
            self.acquire(conn.info)

    def acquire(self, info: dict[str, Any]) -> None:
        """Make the connection with this `info` the database's only writer."""
        if info.get("writing"):
            return
        if not self._lock.acquire(timeout=BUSY_SECONDS):
            raise _locked()
        try:
            if self._file is not None:
                fcntl.flock(self._file, fcntl.LOCK_EX)
        except BaseException:
            self._lock.release()
            raise
        info["writing"] = True

    def returned(self, _dbapi_connection: Any, record: Any, *_: Any) -> None:
        if record is not None and record.info.pop("writing", False):
            if self._file is not None:
                fcntl.flock(self._file, fcntl.LOCK_UN)
            self._lock.release()

    def watch(self, engine: Engine) -> None:
        event.listen(engine, "before_cursor_execute", self.before_execute)
        for name in ("checkin", "invalidate", "soft_invalidate"):
            event.listen(engine.pool, name, self.returned)


def _locked() -> OperationalError:
    return OperationalError(
        "waiting to write", None, sqlite3.OperationalError("database is locked")
    )


_WRITERS: dict[Engine, _Writers] = {}


def lock_for_update(session: Session, row: Any) -> None:
    """Read `row` afresh before a write that depends on it (has this already been submitted?),
    as the database's only writer until the transaction ends: a second request racing this one,
    in this process or another, then reads after this one has committed. PostgreSQL does this
    with the read's FOR UPDATE; SQLite ignores FOR UPDATE, so there the writer lock is taken
    first."""
    session.flush()
    connection = session.connection()
    writers = _WRITERS.get(connection.engine)
    if writers is not None:
        writers.acquire(connection.info)
    session.refresh(row, with_for_update=True)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")  # readers don't block the writer
    cursor.execute(f"PRAGMA busy_timeout={BUSY_SECONDS * 1000}")
    cursor.close()


def get_engine(url: str | None = None) -> Engine:
    """One engine per database URL for the process (default: the configured database)."""
    return _engine(url or get_settings().resolved_database_url)


@cache
def _engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        database = url.split("///", 1)[-1]
        on_disk = bool(database) and database != ":memory:"
        if on_disk:
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        # a portal request holds its connection while it waits for a worker thread, so a
        # bounded pool can be emptied by requests that wait for threads held by requests that
        # wait for a connection: SQLite connections are cheap, open as many as are asked for
        engine = create_engine(
            url, connect_args={"check_same_thread": False}, pool_size=20, max_overflow=-1
        )
        event.listen(engine, "connect", _sqlite_pragmas)
        writers = _WRITERS[engine] = _Writers(Path(f"{database}-writer") if on_disk else None)
        writers.watch(engine)
        return engine
    return create_engine(url, pool_pre_ping=True)


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def migrate(url: str | None = None) -> None:
    """Bring the database schema up to date. Safe to run again."""
    url = url or get_settings().resolved_database_url
    engine = get_engine(url)
    config = alembic_config(url)
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "head")


@contextmanager
def session_scope(url: str | None = None) -> Iterator[Session]:
    """A session whose work commits on success and rolls back whole on any error."""
    with Session(get_engine(url), expire_on_commit=False) as session:
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise
