"""`cbflow serve` as an administrator runs it: a real process (the portal, the Prefect server and
its runner) on free ports with its own data folder, for the slow tests that watch it on the real
clock from outside."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from conftest import ROOT, free_port

T = TypeVar("T")


def wait_for(predicate: Callable[[], T], timeout: float, what: str, every: float = 1) -> T:
    """The predicate's first true result within `timeout` seconds (a refused connection counts
    as not yet)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            result = predicate()
        except OSError:
            result = None  # type: ignore[assignment]
        if result:
            return result
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def post_json(url: str, body: dict[str, Any]) -> Any:
    request = urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.load(response)


class Served:
    """One data folder and its ports, served by `cbflow serve` as often as it is started."""

    def __init__(self, data_dir: Path, **env: str) -> None:
        self.data_dir = data_dir
        self.prefect_port = free_port()
        self.portal_port = free_port()
        self.api = f"http://127.0.0.1:{self.prefect_port}/api"
        self.portal = f"http://127.0.0.1:{self.portal_port}"
        self.env = {
            **os.environ,
            "CBFLOW_DATA_DIR": str(data_dir),
            "CBFLOW_DATABASE_URL": "",
            "CBFLOW_PREFECT_PORT": str(self.prefect_port),
            "CBFLOW_PORTAL_PORT": str(self.portal_port),
            "CBFLOW_PORTAL_BASE_URL": self.portal,
            **env,
        }
        self.env.pop("PREFECT_API_URL", None)
        self.process: subprocess.Popen[bytes] | None = None
        self.output = data_dir.parent / "serve-output.log"

    def cli(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        """`cbflow ARGS` against this data folder and its Prefect server."""
        return subprocess.run(
            [sys.executable, "-m", "cbflow.cli", *args],
            env={**self.env, "PREFECT_API_URL": self.api},
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=ROOT,
        )

    def start(self, *args: str) -> None:
        """Start `cbflow serve ARGS` and wait until the runner serves its deployments; with
        --exit-after-demo it may be done and gone before then, so the caller waits for what it
        prints instead."""
        assert self.process is None
        self.process = subprocess.Popen(
            [sys.executable, "-m", "cbflow.cli", "serve", *args],
            env=self.env,
            stdout=self.output.open("ab"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
            cwd=ROOT,
        )
        if "--exit-after-demo" not in args:
            wait_for(self._deployed, 180, f"cbflow serve's runner (output: {self.output})")

    def _deployed(self) -> bool:
        assert self.process is not None and self.process.poll() is None, (
            f"cbflow serve stopped: {self.output.read_text()}"
        )
        with urllib.request.urlopen(
            f"{self.api}/deployments/name/close-bids/deadline", timeout=2
        ) as response:
            return bool(response.status == 200)

    def stop(self) -> int:
        """Stop it as an administrator's `kill` does; returns its exit code."""
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        try:
            code = self.process.wait(timeout=90)
        finally:
            if self.process.poll() is None:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self.process = None
        return code

    def flow_runs(self) -> list[dict[str, Any]]:
        runs: list[dict[str, Any]] = post_json(f"{self.api}/flow_runs/filter", {"limit": 200})
        return runs

    @property
    def log_dir(self) -> Path:
        return self.data_dir / "logs"
