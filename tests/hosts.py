"""Several "hosts" on this machine: Linux network namespaces joined by virtual links.

A test that must show cbflow working across machines (a worker on one host, PostgreSQL and the
Prefect server on another, a portal on a third) builds them here instead. `network(...)` makes
one namespace per host (named `cbf-<pid>-<host>`, so parallel or leftover runs never collide),
and one more that holds only an Ethernet bridge, the switch. Each host has a veth link to the
switch, an address in a private /24 and its loopback up; nothing else. The test process itself
gets a link to the switch too (`desk`, the operator's laptop), so it can talk to every host over
the network as a person would, and see nothing they would not see.

A process started on a host (`Network.start`) runs under `ip netns exec`, so it has that host's
network and only that: its address, its loopback, the link. Everything else is this machine's:
the same files, users and processes. A test that relies on a shared folder is therefore not a
multi-host proof; cbflow's documents must go through the store every host reaches.

Leaving the `with` block, by failure, Ctrl-C or normal end, stops every process in the
namespaces (SIGTERM, then SIGKILL after a grace) and deletes them; deleting a namespace deletes
its links. Namespaces left by a run that was itself killed are deleted by the next run.
Where namespaces cannot be made (not root, no CAP_NET_ADMIN, no `ip`), `Unavailable` says why.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

IP = shutil.which("ip") or "/usr/sbin/ip"
PREFIX = "cbf-"
_OURS = re.compile(rf"^{PREFIX}(\d+)-")


class Unavailable(Exception):
    """Network namespaces cannot be made here."""


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([IP, *args], capture_output=True, text=True, timeout=30)
    if check and done.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)} failed: {done.stderr.strip()}")
    return done


def _namespaces() -> list[str]:
    done = _ip("netns", "list", check=False)
    return [line.split()[0] for line in done.stdout.splitlines() if line.strip()]


def namespace_pids(namespace: str) -> list[int]:
    """The processes whose network is this namespace."""
    done = _ip("netns", "pids", namespace, check=False)
    return [int(pid) for pid in done.stdout.split() if pid.isdigit()]


def _alive(pid: int) -> bool:
    """Whether the process runs (a zombie, dead but not yet reaped, does not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


def _kill_all(namespaces: Sequence[str], grace: float) -> None:
    """Stop every process in the namespaces: SIGTERM, a grace, then SIGKILL."""
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
        pids = [pid for namespace in namespaces for pid in namespace_pids(namespace)]
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.monotonic() + wait
        while pids and time.monotonic() < deadline:
            pids = [pid for pid in pids if _alive(pid)]
            time.sleep(0.1)
        if not pids:
            return


def _delete(namespaces: Sequence[str], grace: float = 5.0) -> None:
    _kill_all(namespaces, grace)
    for namespace in namespaces:
        _ip("netns", "delete", namespace, check=False)


def remove_leftovers() -> list[str]:
    """Delete the namespaces of earlier runs whose process has gone (a run killed by SIGKILL)."""
    left = []
    for namespace in _namespaces():
        found = _OURS.match(namespace)
        if found and not _alive(int(found.group(1))):
            left.append(namespace)
    _delete(left, grace=0.5)
    return left


def check_available() -> None:
    """Raise Unavailable, saying why, where namespaces cannot be made."""
    if not Path(IP).exists():
        raise Unavailable("the `ip` command (iproute2) is not installed")
    if os.geteuid() != 0:
        raise Unavailable("network namespaces need root (CAP_NET_ADMIN); run the tests as root")
    probe = f"{PREFIX}{os.getpid()}-probe"
    done = _ip("netns", "add", probe, check=False)
    if done.returncode != 0:
        raise Unavailable(f"cannot make a network namespace: {done.stderr.strip()}")
    _ip("netns", "delete", probe, check=False)


def _subnet() -> str:
    """A private /24 no route of this machine uses: 10.<a>.<b>.0/24 from the pid."""
    routes = _ip("-4", "route", "show", "table", "all", check=False).stdout
    pid = os.getpid()
    for attempt in range(200):
        value = (pid + attempt * 7919) % 60000
        prefix = f"10.{200 + value // 1000 % 50}.{value % 250}"
        if f"{prefix}." not in routes:
            return prefix
    raise Unavailable("no free private /24 for the test network")


@dataclass
class Host:
    """One namespace: its name, its address on the link."""

    role: str
    namespace: str
    address: str


@dataclass
class Network:
    """Hosts on one switch, and the processes started on them."""

    hosts: dict[str, Host]
    switch: str
    desk_address: str
    logs: Path
    processes: list[tuple[str, subprocess.Popen[bytes]]] = field(default_factory=list)

    def __getitem__(self, role: str) -> Host:
        return self.hosts[role]

    def command(self, role: str, argv: Sequence[str]) -> list[str]:
        """The command line that runs argv on a host."""
        return [IP, "netns", "exec", self.hosts[role].namespace, *argv]

    def start(
        self, role: str, name: str, argv: Sequence[str], env: Mapping[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        """Start a long-running process on a host; its output goes to logs/<name>.log.
        `ip netns exec` executes the command in its own place, so the pid is the command's."""
        log = (self.logs / f"{name}.log").open("ab")
        process = subprocess.Popen(
            self.command(role, argv),
            env=dict(env) if env is not None else None,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        self.processes.append((name, process))
        return process

    def run(
        self,
        role: str,
        argv: Sequence[str],
        env: Mapping[str, str] | None = None,
        timeout: float = 120,
    ) -> subprocess.CompletedProcess[str]:
        """Run a command on a host to its end; an error says what it printed."""
        done = subprocess.run(
            self.command(role, argv),
            env=dict(env) if env is not None else None,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if done.returncode != 0:
            said = f"{done.stdout}\n{done.stderr}"
            raise RuntimeError(f"on {role}: {' '.join(argv)} exited {done.returncode}\n{said}")
        return done

    def pids(self, role: str) -> list[int]:
        """Every process running on a host."""
        return namespace_pids(self.hosts[role].namespace)

    def crash(self, role: str) -> list[int]:
        """The host dies: SIGKILL to every process on it, at once. Returns the pids killed."""
        pids = self.pids(role)
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while any(_alive(pid) for pid in pids) and time.monotonic() < deadline:
            time.sleep(0.05)
        for _, process in self.processes:
            if process.pid in pids:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    process.wait(timeout=1)
        return pids

    def log(self, name: str) -> str:
        path = self.logs / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""


@contextlib.contextmanager
def network(roles: Sequence[str], logs: Path) -> Iterator[Network]:
    """Hosts with these roles (e.g. "db", "w1", "w2", "portal") on one switch, torn down on exit.
    Addresses: the desk .1, the hosts .10, .11, ... in the order given."""
    check_available()
    remove_leftovers()
    logs.mkdir(parents=True, exist_ok=True)
    stem = f"{PREFIX}{os.getpid()}"
    existing = set(_namespaces())
    if any(name.startswith(f"{stem}-") for name in existing):
        raise Unavailable(f"namespaces {stem}-* exist already: one network per process at a time")
    prefix = _subnet()
    switch = f"{stem}-switch"
    made: list[str] = []
    desk_link = f"cbf{os.getpid()}"[:15]
    try:
        _ip("netns", "add", switch)
        made.append(switch)
        _ip("-n", switch, "link", "set", "lo", "up")
        _ip("-n", switch, "link", "add", "br0", "type", "bridge")
        _ip("-n", switch, "link", "set", "br0", "up")
        hosts: dict[str, Host] = {}
        for index, role in enumerate(roles):
            namespace = f"{stem}-{role}"
            address = f"{prefix}.{10 + index}"
            _ip("netns", "add", namespace)
            made.append(namespace)
            _ip("-n", namespace, "link", "set", "lo", "up")
            port = f"p{index}"
            _ip(
                "-n", switch, *f"link add {port} type veth peer name eth0 netns {namespace}".split()
            )
            _ip("-n", switch, "link", "set", port, "master", "br0", "up")
            _ip("-n", namespace, "addr", "add", f"{address}/24", "dev", "eth0")
            _ip("-n", namespace, "link", "set", "eth0", "up")
            hosts[role] = Host(role, namespace, address)
        # the desk: this process's own end of a link to the switch (deleted with the switch)
        desk = f"{prefix}.1"
        here = os.getpid()
        _ip("-n", switch, *f"link add desk type veth peer name {desk_link} netns {here}".split())
        _ip("-n", switch, "link", "set", "desk", "master", "br0", "up")
        _ip("addr", "add", f"{desk}/24", "dev", desk_link)
        _ip("link", "set", desk_link, "up")
        net = Network(hosts=hosts, switch=switch, desk_address=desk, logs=logs)
        try:
            yield net
        finally:
            for _, process in net.processes:
                with contextlib.suppress(ProcessLookupError):
                    process.terminate()
    finally:
        _ip("link", "delete", desk_link, check=False)
        _delete(list(reversed(made)))
