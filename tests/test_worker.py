"""The portal's processes as `cbflow serve` runs them: each on its own socket of the one port,
one that stops replaced, a port already in use refused with a clear error."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

import pytest
from conftest import free_port

from cbflow.errors import CbflowError
from cbflow.settings import Settings
from cbflow.web.worker import PortalProcesses

pytestmark = pytest.mark.slow


def _healthy(port: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as answer:
                if answer.read() == b"ok":
                    return
        except OSError:
            time.sleep(0.3)
    raise AssertionError("the portal did not answer")


def _listening(pid: int, port: int) -> bool:
    """Whether the process holds a listening socket on the port (from /proc)."""
    inodes = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[3] == "0A" and int(fields[1].split(":")[1], 16) == port:  # 0A: LISTEN
            inodes.add(fields[9])
    links = {os.readlink(f) for f in Path(f"/proc/{pid}/fd").glob("*") if f.is_symlink()}
    return any(f"socket:[{inode}]" in links for inode in inodes)


def test_every_portal_process_listens_on_the_port_and_a_stopped_one_is_replaced(
    cbflow_env: Settings, tmp_path: Path
) -> None:
    port = free_port()
    portal = PortalProcesses(2, "127.0.0.1", port, os.environ, tmp_path / "portal.log", 0)
    portal.start()
    try:
        _healthy(port)
        deadline = time.monotonic() + 60
        while not all(_listening(p.pid, port) for p in portal.processes):
            assert time.monotonic() < deadline, "each process listens on a socket of its own"
            time.sleep(0.3)
        first = portal.processes[0]
        first.send_signal(signal.SIGKILL)
        first.wait()
        assert portal.replace_stopped() == [-signal.SIGKILL]
        assert portal.processes[0].pid != first.pid and portal.processes[0].poll() is None
        _healthy(port)  # the other process answered meanwhile; the new one joins it
    finally:
        for process in portal.processes:
            process.terminate()
            process.wait(timeout=30)


def test_a_port_in_use_is_refused_rather_than_shared(cbflow_env: Settings, tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        portal = PortalProcesses(2, "127.0.0.1", port, os.environ, tmp_path / "portal.log")
        with pytest.raises(CbflowError, match=f"port {port} is in use"):
            portal.start()
    assert portal.processes == []


def test_a_process_that_stops_as_soon_as_it_starts_stops_serve(
    cbflow_env: Settings, tmp_path: Path
) -> None:
    port = free_port()
    portal = PortalProcesses(1, "127.0.0.1", port, os.environ, tmp_path / "portal.log")
    portal.start()
    portal.processes[0].kill()
    portal.processes[0].wait()
    with pytest.raises(CbflowError, match="soon after starting"):
        portal.replace_stopped()


def test_a_portal_process_that_stops_answering_is_killed_and_replaced(
    cbflow_env: Settings, tmp_path: Path
) -> None:
    port = free_port()
    portal = PortalProcesses(
        2, "127.0.0.1", port, os.environ, tmp_path / "portal.log", 0, health_every=1
    )
    portal.start()
    try:
        _healthy(port)
        deadline = time.monotonic() + 60
        while not portal.answering():
            assert time.monotonic() < deadline, "each process answers on its own socket"
            assert portal.replace_unanswering() == []
            time.sleep(0.3)
        frozen, other = portal.processes
        frozen.send_signal(signal.SIGSTOP)  # alive, holding its socket, answering nothing
        replaced: list[str] = []
        deadline = time.monotonic() + 30
        while not replaced:
            assert time.monotonic() < deadline, "the frozen process was not replaced"
            replaced = portal.replace_unanswering()
            time.sleep(0.2)
        assert replaced == [
            f"portal process {frozen.pid} did not answer its health check 3 times in a row; "
            "killed it and started another"
        ]
        assert frozen.poll() == -signal.SIGKILL
        assert portal.processes[1] is other and other.poll() is None, "the other one is kept"
        assert portal.processes[0].pid != frozen.pid
        _healthy(port)
    finally:
        for process in portal.processes:
            process.send_signal(signal.SIGCONT)
            process.terminate()
            process.wait(timeout=30)


def test_signing_in_through_the_portal_writes_no_token_to_its_log(
    cbflow_env: Settings, tmp_path: Path
) -> None:
    """Anyone who can read the portal's log must not find a sign-in link in it: the web
    server's access log records every request's path, and a link's path is its token."""
    import httpx
    from portal import add_user, csrf

    from cbflow.db import session_scope
    from cbflow.services import accounts

    port = free_port()
    log = tmp_path / "portal.log"
    add_user("ada@example.gov.uk", "admin", name="Ada")
    with session_scope() as session:
        handed = accounts.hand_over_sign_in_link(
            session,
            email="ada@example.gov.uk",
            base_url=f"http://127.0.0.1:{port}",
            actor="cli",
            now=datetime.now(UTC),
        )
    token = handed.url.rsplit("/", 1)[1]
    portal = PortalProcesses(1, "127.0.0.1", port, os.environ, log, 0)
    portal.start()
    try:
        _healthy(port)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}") as browser:
            page = browser.get(f"/sign-in/{token}")
            assert page.status_code == 200
            signed_in = browser.post(f"/sign-in/{token}", data={"csrf_token": csrf(page.text)})
            assert signed_in.status_code == 303
            assert browser.get("/admin/people").status_code == 200
            assert browser.get(f"/sign-in/{token}").status_code == 400  # used: refused, logged
    finally:
        for process in portal.processes:
            process.terminate()
            process.wait(timeout=30)

    written = log.read_text()
    assert "/admin/people" in written, "the access log is on: it records each request"
    assert token not in written
    assert written.count("/sign-in/[token]") == 3


def test_cbflow_portal_serves_the_portal_alone_and_stops_cleanly(
    cbflow_env: Settings, tmp_path: Path
) -> None:
    """A portal host's command: the portal's processes on the port, no Prefect server or worker
    of its own (the flow runs go to the server PREFECT_API_URL names)."""
    port = free_port()
    env = {
        **os.environ,
        "CBFLOW_PORTAL_PORT": str(port),
        "CBFLOW_PORTAL_WORKERS": "2",
        "PREFECT_API_URL": "http://127.0.0.1:9/api",  # a server elsewhere, not needed to serve
    }
    log = tmp_path / "portal-command.log"
    command = subprocess.Popen(
        [sys.executable, "-m", "cbflow.cli", "portal"],
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    try:
        _healthy(port)
        children = [
            int(pid)
            for pid in Path(f"/proc/{command.pid}/task/{command.pid}/children").read_text().split()
        ]
        assert len(children) == 2, "two portal processes, and nothing else"
        command.send_signal(signal.SIGTERM)
        assert command.wait(timeout=60) == 0
        assert not any(Path(f"/proc/{pid}").exists() for pid in children)
    finally:
        if command.poll() is None:
            command.kill()


def test_cbflow_portal_without_a_prefect_server_says_which_setting_is_missing(
    cbflow_env: Settings, tmp_path: Path
) -> None:
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    env.pop("CBFLOW_PREFECT_API_URL", None)
    done = subprocess.run(
        [sys.executable, "-m", "cbflow.cli", "portal"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0
    assert "set PREFECT_API_URL" in done.stdout + done.stderr
