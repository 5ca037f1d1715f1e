"""The database engine, session scope and schema migrations (Alembic)."""

from __future__ import annotations

import fcntl
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import event, text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError
from sqlmodel import Session, create_engine

from cbflow.settings import get_settings

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


# how long a write waits for the others before it gives up (the portal then answers 503, and
# nothing of the request is kept): writes last milliseconds, so a wait this long means one is
# stuck, and the person is better told than kept waiting
BUSY_SECONDS = 10


POOL_SECONDS = 10  # how long a request waits for a database connection (PostgreSQL)
# a transaction left open this long without a statement is ended by PostgreSQL, its locks freed
IDLE_IN_TRANSACTION_SECONDS = 60


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
        give_up = time.monotonic() + BUSY_SECONDS
        if not self._lock.acquire(timeout=BUSY_SECONDS):
            raise _locked()
        try:
            if self._file is not None:
                self._lock_file(give_up)
        except BaseException:
            self._lock.release()
            raise
        info["writing"] = True

    def _lock_file(self, give_up: float) -> None:
        """The lock between processes, waited for until `give_up` at most: tried without
        blocking, then again after pauses growing from half a millisecond to four (a write
        takes a few milliseconds; the kernel's blocking wait could not be bounded)."""
        assert self._file is not None
        pause = 0.0005
        while True:
            try:
                fcntl.flock(self._file, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                if time.monotonic() + pause > give_up:
                    raise _locked() from None
                time.sleep(pause)
                pause = min(pause * 2, 0.004)

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


def busy(error: OperationalError) -> bool:
    """Whether a database error means "not now" (a write or a lock waited for too long), not
    "broken": the request may be tried again."""
    message = str(error.orig).lower()
    return any(sign in message for sign in ("database is locked", "lock timeout", "lock_timeout"))


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
    elif connection.dialect.name == "postgresql":
        # waits for the row as long as a SQLite writer would for the database (for the rest
        # of this transaction; every connection also has it as its default)
        session.execute(text(f"SET LOCAL lock_timeout = '{BUSY_SECONDS * 1000}ms'"))
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
    settings = get_settings()
    # every route thread of a portal process may hold a connection, and so may the
    # transactions committing in threads of their own: the pool has room for all of them, and
    # a request that still finds none waits POOL_SECONDS, then is answered 503
    threads = settings.portal_threads
    return create_engine(
        url,
        pool_pre_ping=True,
        pool_size=threads + 2,
        max_overflow=threads,
        pool_timeout=POOL_SECONDS,
        connect_args={
            "options": f"-c lock_timeout={BUSY_SECONDS * 1000} "
            f"-c idle_in_transaction_session_timeout={IDLE_IN_TRANSACTION_SECONDS * 1000}"
        },
    )


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
