"""A throwaway PostgreSQL server from Debian's binaries, on a free loopback port, for the tests
and the benchmarks: started in a temporary folder, stopped and removed afterwards."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import create_engine, text


class Unavailable(Exception):
    """PostgreSQL is not installed, or would not start."""


def binaries() -> Path | None:
    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), reverse=True)
    return candidates[0].parent if candidates else None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def server(
    max_connections: int = 100,
    *,
    host: str = "127.0.0.1",
    port: int | None = None,
    wrap: Sequence[str] = (),
    allow: str = "",
) -> Iterator[str]:
    """A running server's URL, without a database name. By default on a free loopback port of
    this machine; `wrap` runs its commands another way (in a network namespace: `ip netns exec
    NS`), `host` and `port` are the address it listens on there, and `allow` a network
    (10.1.2.0/24) whose hosts may connect without a password."""
    found = binaries()
    if found is None:
        raise Unavailable("PostgreSQL is not installed (apt-get install postgresql)")
    # not under pytest's temporary folder: the postgres user cannot enter root's folders
    folder = Path(tempfile.mkdtemp(prefix="cbflow-test-postgres-"))
    data = folder / "data"
    as_postgres: list[str] = []
    if os.geteuid() == 0:  # initdb refuses to run as root
        shutil.chown(folder, "postgres", "postgres")
        as_postgres = ["runuser", "-u", "postgres", "--"]
    if port is None:
        port = _free_port()
    options = f"-h {host} -p {port} -k {folder} -F -c max_connections={max_connections}"
    try:
        initdb = [
            str(found / "initdb"),
            "-D",
            str(data),
            "-U",
            "postgres",
            "-A",
            "trust",
            "--no-sync",
        ]
        done = subprocess.run([*as_postgres, *initdb], capture_output=True, text=True)
        if done.returncode != 0:
            raise Unavailable(f"initdb failed:\n{done.stdout}\n{done.stderr}")
        if allow:
            with (data / "pg_hba.conf").open("a") as hba:
                hba.write(f"host all all {allow} trust\n")
        for command in (
            [
                str(found / "pg_ctl"),
                "-D",
                str(data),
                "-l",
                str(folder / "log"),
                "-w",
                "-o",
                options,
                "start",
            ],
        ):
            done = subprocess.run([*wrap, *as_postgres, *command], capture_output=True, text=True)
            if done.returncode != 0:
                raise Unavailable(
                    f"starting PostgreSQL failed: {' '.join(command)}\n{done.stdout}\n{done.stderr}"
                )
        yield f"postgresql+psycopg://postgres@{host}:{port}"
    finally:
        stop = [str(found / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"]
        subprocess.run([*wrap, *as_postgres, *stop], capture_output=True)
        shutil.rmtree(folder, ignore_errors=True)


def fresh_database(server_url: str, prefix: str = "cbflow_test") -> str:
    """A new empty database on the server; its URL."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    admin = create_engine(f"{server_url}/postgres", isolation_level="AUTOCOMMIT")
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
    return f"{server_url}/{name}"
