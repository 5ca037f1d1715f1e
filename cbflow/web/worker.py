"""One process of the portal, as `cbflow serve` starts one per CPU core.

Each process listens on a socket of its own, bound to the portal's port with SO_REUSEPORT, so
the kernel deals new connections out evenly between the processes. With one socket shared by
every process, whichever process woke first accepted a whole burst of connections: in a
deadline surge one process queued most of the submissions while the other had little to do.

    python -m cbflow.web.worker HOST PORT
"""

from __future__ import annotations

import gc
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

from cbflow.errors import CbflowError

BACKLOG = 2048  # connections the kernel holds for a process before it accepts them
# a process that stops sooner than this after starting is failing, not to be started again
CRASH_LOOP_SECONDS = 30


def port_is_free(host: str, port: int) -> bool:
    """Whether nothing listens on the port, tried with a plain bind: a portal (or anything
    else) already there must not be joined silently through SO_REUSEPORT."""
    with socket.socket(_family(host), socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def listening_socket(host: str, port: int) -> socket.socket:
    sock = socket.socket(_family(host), socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen(BACKLOG)
    return sock


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


class PortalProcesses:
    """The portal's processes for `cbflow serve`: started, watched (one that stops is replaced,
    unless it stopped soon after starting), stopped. They write to one log."""

    def __init__(
        self,
        count: int,
        host: str,
        port: int,
        env: Mapping[str, str],
        log: Path,
        crash_loop_seconds: float = CRASH_LOOP_SECONDS,
    ) -> None:
        self.count, self.host, self.port, self.env, self.log = count, host, port, env, log
        self.crash_loop_seconds = crash_loop_seconds
        self.processes: list[subprocess.Popen[bytes]] = []
        self._started: dict[int, float] = {}

    def start(self) -> None:
        if not port_is_free(self.host, self.port):
            raise CbflowError(
                f"port {self.port} is in use (another `cbflow serve`?): stop what uses it, or "
                "set CBFLOW_PORTAL_PORT to another port"
            )
        self.processes = [self._spawn() for _ in range(self.count)]

    def _spawn(self) -> subprocess.Popen[bytes]:
        process = subprocess.Popen(
            [sys.executable, "-m", "cbflow.web.worker", self.host, str(self.port)],
            env=dict(self.env),
            stdout=self.log.open("ab"),
            stderr=subprocess.STDOUT,
        )
        self._started[process.pid] = time.monotonic()
        return process

    def replace_stopped(self) -> list[int]:
        """Start a new process for each that has stopped; returns their exit codes. Raises
        CbflowError for a process that stopped within `crash_loop_seconds` of starting."""
        codes = []
        for i, process in enumerate(self.processes):
            code = process.poll()
            if code is None:
                continue
            if time.monotonic() - self._started.pop(process.pid) < self.crash_loop_seconds:
                raise CbflowError(
                    f"the portal stopped (exit code {code}) soon after starting; see {self.log}"
                )
            codes.append(code)
            self.processes[i] = self._spawn()
        return codes


def main(argv: list[str] | None = None) -> None:
    import uvicorn

    from cbflow.flowruns import load_client
    from cbflow.settings import get_settings
    from cbflow.web.app import portal

    host, port = (argv or sys.argv[1:])[:2]
    settings = get_settings()
    app = portal()
    load_client(settings)  # the slow imports happen before the process takes any connection
    # what the server imports as it starts, imported now to be frozen with the rest
    import uvicorn.loops.uvloop
    import uvicorn.protocols.http.httptools_impl

    # Everything loaded so far lives as long as the process: keep it out of the collector's
    # full passes. Otherwise each full pass walks some 365,000 objects (Prefect's client, the
    # app) and stops every request in the process for 160 ms or more: the slowest
    # submissions of a deadline surge.
    gc.collect()
    gc.freeze()
    sock = listening_socket(host, int(port))
    uvicorn.Server(uvicorn.Config(app, log_level="info")).run(sockets=[sock])


if __name__ == "__main__":
    main()
