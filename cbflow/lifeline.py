"""Processes that end with the process that started them, however it ends.

`cbflow serve` starts the portal's processes, the Prefect server and the flow runner; the runner
starts a process for each flow run, and a flow run a pool of rendering workers. Killed with
SIGKILL, a parent cannot stop its children, and before these lifelines they lived on (some
350 MB of rendering workers, a runner still taking runs). On Linux the kernel sends a child a
chosen signal when its parent ends (`PR_SET_PDEATHSIG`); elsewhere this does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import select
import signal
import sys
import threading
import time
from collections.abc import Callable
from functools import cache

_PR_SET_PDEATHSIG = 1


@cache
def _prctl() -> Callable[..., int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    except OSError:
        return None
    prctl: Callable[..., int] = libc.prctl
    return prctl


def end_with_parent(signum: int = signal.SIGTERM, parent: int | None = None) -> bool:
    """Have the kernel send this process `signum` when its parent ends. Returns whether it will.

    `parent`: the process that should be the parent (for a child about to run, the pid its
    parent had before starting it); if it has already gone, the signal is sent now."""
    prctl = _prctl()
    if prctl is None:
        return False
    expected = os.getppid() if parent is None else parent
    if prctl(_PR_SET_PDEATHSIG, signum, 0, 0, 0) != 0:
        return False
    if os.getppid() != expected:
        os.kill(os.getpid(), signum)
    return True


def with_parent(signum: int = signal.SIGTERM) -> Callable[[], None]:
    """For `subprocess.Popen(preexec_fn=...)`: the child is sent `signum` when this process
    ends (SIGTERM: it stops as it would when this process stopped it)."""
    parent = os.getpid()
    _prctl()  # loaded here: between fork and exec the child should do as little as it can

    def lifeline() -> None:
        end_with_parent(signum, parent)

    return lifeline


def end_with(owner: int, signum: int = signal.SIGKILL) -> None:
    """Send this process `signum` when process `owner` (not necessarily its parent) ends: for
    the rendering pool's workers, whose parent is the pool's fork server, which itself only
    ends once they have (they hold its pipe open). A thread of this process waits for it."""

    def watch() -> None:
        try:
            handle = os.pidfd_open(owner)
        except ProcessLookupError:
            os.kill(os.getpid(), signum)
            return
        except OSError:  # no pidfd (an old kernel): look once a second
            while _running(owner):
                time.sleep(1)
        else:
            select.select([handle], [], [])  # readable once the process has ended
        os.kill(os.getpid(), signum)

    threading.Thread(target=watch, name=f"end-with-{owner}", daemon=True).start()


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
