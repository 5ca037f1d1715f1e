"""One process of the portal, as `cbflow serve` starts one per CPU core.

Each process listens on a socket of its own, bound to the portal's port with SO_REUSEPORT, so
the kernel deals new connections out evenly between the processes. With one socket shared by
every process, whichever process woke first accepted a whole burst of connections: in a
deadline surge one process queued most of the submissions while the other had little to do.

    python -m cbflow.web.worker HOST PORT [HEALTH_SOCKET]

`cbflow serve` also gives each process a socket of its own (HEALTH_SOCKET, in Linux's abstract
namespace) on which it asks that process, and only that one, for /healthz: a process that has
stopped answering is killed and replaced, where a probe of the shared port would reach
whichever process the kernel chose.
"""

from __future__ import annotations

import gc
import http.client
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from cbflow.errors import CbflowError
from cbflow.lifeline import with_parent

BACKLOG = 2048  # connections the kernel holds for a process before it accepts them
# a process that stops sooner than this after starting is failing, not to be started again
CRASH_LOOP_SECONDS = 30
HEALTH_EVERY = 5.0  # seconds between two health checks of a process
HEALTH_TIMEOUT = 5.0  # how long one check waits for its answer
HEALTH_FAILURES = 3  # checks failed in a row (about 30 s unanswered) before a process is replaced
STARTING_SECONDS = 60  # a process that has never answered is given this long to start


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


def health_socket(name: str) -> socket.socket:
    """The process's own socket for health checks: `name` in the abstract namespace (no file,
    gone with the process)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind("\0" + name)
    sock.listen(16)
    return sock


class _HealthConnection(http.client.HTTPConnection):
    def __init__(self, name: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self.name = name

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect("\0" + self.name)
        except OSError:
            sock.close()
            raise
        self.sock = sock


def answers_health_check(name: str, timeout: float = HEALTH_TIMEOUT) -> bool:
    """Whether the process listening on health socket `name` answers /healthz in time."""
    connection = _HealthConnection(name, timeout)
    try:
        connection.request("GET", "/healthz")
        return connection.getresponse().status == 200
    except OSError:
        return False
    finally:
        connection.close()


class PortalProcesses:
    """The portal's processes for `cbflow serve`: started, watched, stopped. A process that
    stops is replaced, unless it stopped soon after starting (then it is failing, and starting
    it again would only fail again); one that stops answering its health check is killed and
    replaced. They write to one log, and end with the process that started them."""

    def __init__(
        self,
        count: int,
        host: str,
        port: int,
        env: Mapping[str, str],
        log: Path,
        crash_loop_seconds: float = CRASH_LOOP_SECONDS,
        health_every: float = HEALTH_EVERY,
    ) -> None:
        self.count, self.host, self.port, self.env, self.log = count, host, port, env, log
        self.crash_loop_seconds = crash_loop_seconds
        self.health_every = health_every
        self.processes: list[subprocess.Popen[bytes]] = []
        self._started: dict[int, float] = {}
        self._health: dict[int, _Health] = {}
        self._spawned = 0

    def start(self) -> None:
        if not port_is_free(self.host, self.port):
            raise CbflowError(
                f"port {self.port} is in use (another `cbflow serve`?): stop what uses it, or "
                "set CBFLOW_PORTAL_PORT to another port"
            )
        self.processes = [self._spawn() for _ in range(self.count)]

    def _spawn(self) -> subprocess.Popen[bytes]:
        self._spawned += 1
        name = f"cbflow-portal-{os.getpid()}-{self.port}-{self._spawned}"
        process = subprocess.Popen(
            [sys.executable, "-m", "cbflow.web.worker", self.host, str(self.port), name],
            env=dict(self.env),
            stdout=self.log.open("ab"),
            stderr=subprocess.STDOUT,
            preexec_fn=with_parent(),
        )
        now = time.monotonic()
        self._started[process.pid] = now
        self._health[process.pid] = _Health(name, checked=now)
        return process

    def answering(self) -> bool:
        """Whether every process has answered its last health check."""
        return all(
            self._health[p.pid].answered and not self._health[p.pid].failures
            for p in self.processes
        )

    def replace_stopped(self) -> list[int]:
        """Start a new process for each that has stopped; returns their exit codes. Raises
        CbflowError for a process that stopped within `crash_loop_seconds` of starting."""
        codes = []
        for i, process in enumerate(self.processes):
            code = process.poll()
            if code is None:
                continue
            self._health.pop(process.pid, None)
            if time.monotonic() - self._started.pop(process.pid) < self.crash_loop_seconds:
                raise CbflowError(
                    f"the portal stopped (exit code {code}) soon after starting; see {self.log}"
                )
            codes.append(code)
            self.processes[i] = self._spawn()
        return codes

    def replace_unanswering(self) -> list[str]:
        """Ask each process that is due a check for /healthz on its own socket; kill and
        replace one that has failed HEALTH_FAILURES checks in a row (or never answered within
        STARTING_SECONDS). Returns a line for the log about each one replaced."""
        replaced = []
        for i, process in enumerate(self.processes):
            health = self._health[process.pid]
            now = time.monotonic()
            if process.poll() is not None or now - health.checked < self.health_every:
                continue
            answered = answers_health_check(health.name, min(HEALTH_TIMEOUT, self.health_every))
            health.checked = time.monotonic()
            if answered:
                health.answered, health.failures = True, 0
                continue
            health.failures += 1
            starting = not health.answered and now - self._started[process.pid] < STARTING_SECONDS
            if starting or (health.answered and health.failures < HEALTH_FAILURES):
                continue
            process.send_signal(signal.SIGKILL)
            process.wait()
            del self._health[process.pid], self._started[process.pid]
            replaced.append(
                f"portal process {process.pid} did not answer its health check "
                f"{health.failures} times in a row; killed it and started another"
            )
            self.processes[i] = self._spawn()
        return replaced


@dataclass
class _Health:
    """What the supervisor knows of one process's health checks."""

    name: str  # of its health socket
    checked: float  # when it was last asked (monotonic)
    answered: bool = False  # whether it has ever answered
    failures: int = 0  # checks failed in a row


def main(argv: list[str] | None = None) -> None:
    import uvicorn

    from cbflow.flowruns import load_client
    from cbflow.settings import get_settings
    from cbflow.web.app import portal

    args = argv or sys.argv[1:]
    host, port = args[:2]
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
    sockets = [listening_socket(host, int(port))]
    if len(args) > 2:
        sockets.append(health_socket(args[2]))
    uvicorn.Server(uvicorn.Config(app, log_level="info")).run(sockets=sockets)


if __name__ == "__main__":
    main()
