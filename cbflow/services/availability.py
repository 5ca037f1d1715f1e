"""The portal's own availability, minute by minute, and the extension it earns a deadline.

Each portal process counts the requests it answers in each minute, how many failed (an error of
the service's own: a 5xx answer, or an exception) and how many were slow, and writes them every
few seconds to `AvailabilityMinute`, one row per process and minute, a row of zeros for a minute
it ran and answered nothing. Counting is in memory; a write that cannot be made (the database
is the trouble) is kept and tried again, with the minutes it belongs to.

A minute is degraded when, since the portal first recorded itself, no process recorded it (the
portal was not running), or a tenth or more of its requests failed or were slow. Where the
prospectus asks (`extend_if_degraded`), the deadline run counts the degraded minutes in the
hours before the deadline and, past the threshold, extends the window for everyone instead of
closing it: once per stage, with the evidence kept on the extension.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import Session, col, select

from cbflow.db import session_scope
from cbflow.formatting import local_deadline, local_time
from cbflow.models import AvailabilityMinute, Extension, Round
from cbflow.services import deadlines
from cbflow.services.rounds import prospectus_of

logger = logging.getLogger(__name__)

DEGRADED_SHARE = 0.1  # of a minute's requests failed or slow
# what is not a person's request: the process supervisor's health probe and static files
NOT_COUNTED = ("/healthz", "/assets/", "/govuk/", "/static/")
# how far before the hours looked at the portal's first record is sought: minutes before the
# portal ever ran (a new installation, a round run on its own clock) are not counted as down
FIRST_SEEN_WITHIN = timedelta(days=1)
ONE_MINUTE = timedelta(minutes=1)


def minute_of(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(second=0, microsecond=0)


def process_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"[:120]


class Recorder:
    """One process's counts by minute, until written."""

    def __init__(self, process: str, slow_seconds: float) -> None:
        self.process, self.slow_seconds = process, slow_seconds
        self._lock = threading.Lock()
        self._counts: dict[datetime, list[int]] = {}

    def note(self, at: datetime, status: int, seconds: float) -> None:
        failed = status >= 500
        slow = not failed and seconds >= self.slow_seconds
        with self._lock:
            counts = self._counts.setdefault(minute_of(at), [0, 0, 0])
            counts[0] += 1
            counts[1] += int(failed)
            counts[2] += int(slow)

    def alive(self, at: datetime) -> None:
        """The process ran in this minute, whether or not it was asked anything."""
        with self._lock:
            self._counts.setdefault(minute_of(at), [0, 0, 0])

    def _take(self) -> dict[datetime, list[int]]:
        with self._lock:
            taken, self._counts = self._counts, {}
        return taken

    def _put_back(self, taken: dict[datetime, list[int]]) -> None:
        with self._lock:
            for minute, (requests, failed, slow) in taken.items():
                counts = self._counts.setdefault(minute, [0, 0, 0])
                counts[0] += requests
                counts[1] += failed
                counts[2] += slow

    def write(self, url: str | None = None) -> bool:
        """Add the counts to the process's rows. Returns False (keeping them to try again)
        when the database would not take them."""
        taken = self._take()
        if not taken:
            return True
        try:
            with session_scope(url) as session:
                existing = {
                    row.minute: row
                    for row in session.exec(
                        select(AvailabilityMinute).where(
                            AvailabilityMinute.process == self.process,
                            col(AvailabilityMinute.minute).in_(list(taken)),
                        )
                    )
                }
                for minute, (requests, failed, slow) in sorted(taken.items()):
                    row = existing.get(minute)
                    if row is None:
                        row = AvailabilityMinute(minute=minute, process=self.process)
                        session.add(row)
                    row.requests += requests
                    row.failed += failed
                    row.slow += slow
        except SQLAlchemyError as exc:
            self._put_back(taken)
            logger.warning("the portal's availability was not recorded yet: %s", exc)
            return False
        return True


class Heartbeat:
    """Writes a process's counts every `every` seconds, noting each minute it runs."""

    def __init__(self, recorder: Recorder, every: float, url: str | None = None) -> None:
        self.recorder, self.every, self.url = recorder, every, url
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="availability", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.recorder.alive(datetime.now(UTC))
            self.recorder.write(self.url)
            self._stop.wait(self.every)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=self.every + 15)
        self.recorder.write(self.url)


Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


class CountRequests:
    """ASGI middleware: every request's answer and time, into the process's Recorder."""

    def __init__(
        self, app: Callable[[Scope, Receive, Send], Awaitable[None]], *, recorder: Recorder
    ):
        self.app, self.recorder = app, recorder

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith(NOT_COUNTED):
            await self.app(scope, receive, send)
            return
        started = time.monotonic()
        status = 500

        async def sending(message: MutableMapping[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            self.recorder.note(datetime.now(UTC), status, time.monotonic() - started)


@dataclass
class Evidence:
    """The portal's record over a span of time, as an extension keeps it."""

    start: datetime
    end: datetime
    recorded: bool  # whether the portal recorded itself at all, by the end
    degraded: list[dict[str, Any]] = field(default_factory=list)  # one per degraded minute

    @property
    def minutes_degraded(self) -> int:
        return len(self.degraded)

    def as_dict(self) -> dict[str, Any]:
        return {
            "from": self.start.isoformat(),
            "to": self.end.isoformat(),
            "minutes_degraded": self.minutes_degraded,
            "minutes": self.degraded,
            "rule": f"no portal process running, or {DEGRADED_SHARE:.0%} or more of a "
            "minute's requests failed or slow",
        }


def measure(session: Session, start: datetime, end: datetime) -> Evidence:
    """The degraded minutes in [start, end), from the portal's records."""
    rows = list(
        session.exec(
            select(AvailabilityMinute).where(
                col(AvailabilityMinute.minute) >= minute_of(start) - FIRST_SEEN_WITHIN,
                col(AvailabilityMinute.minute) < end,
            )
        )
    )
    evidence = Evidence(start, end, recorded=bool(rows))
    if not rows:
        return evidence
    totals: dict[datetime, list[int]] = {}
    for row in rows:
        counts = totals.setdefault(minute_of(row.minute), [0, 0, 0])
        counts[0] += row.requests
        counts[1] += row.failed
        counts[2] += row.slow
    minute = max(minute_of(start), min(totals))
    while minute < end:
        found = totals.get(minute)
        if found is None:
            evidence.degraded.append({"minute": minute.isoformat(), "down": True})
        else:
            requests, failed, slow = found
            if requests and (failed + slow) >= DEGRADED_SHARE * requests:
                evidence.degraded.append(
                    {
                        "minute": minute.isoformat(),
                        "requests": requests,
                        "failed": failed,
                        "slow": slow,
                    }
                )
        minute += ONE_MINUTE
    return evidence


def degraded_extension(
    session: Session, round_: Round, stage: deadlines.Stage, now: datetime, actor: str
) -> Extension | None:
    """At the stage's deadline for everyone, the extension the portal's degraded minutes earn,
    persisted (with its audit event), or None. None where the prospectus does not ask, before
    the deadline, where the stage has had one already, and where a late run finds the
    extension would already be over."""
    prospectus = prospectus_of(round_)
    rule = prospectus.extend_if_degraded
    if rule is None:
        return None
    closes = deadlines.stage_closes(session, round_, stage)
    if now < closes or closes + rule.extension <= now:
        return None
    given = session.exec(
        select(Extension).where(
            Extension.round_id == round_.id,
            Extension.stage == stage,
            Extension.kind == deadlines.DEGRADED,
        )
    ).first()
    if given is not None:
        return None
    evidence = measure(session, closes - rule.looks_back, closes)
    if evidence.minutes_degraded < rule.minutes_degraded:
        return None
    new_close = closes + rule.extension
    reason = (
        f"the portal was not working properly for {evidence.minutes_degraded} minute"
        f"{'' if evidence.minutes_degraded == 1 else 's'} between "
        f"{local_time(evidence.start, prospectus)} and {local_deadline(closes, prospectus)} "
        f"(the prospectus extends the deadline by {rule.extend_by} after "
        f"{rule.minutes_degraded} or more)"
    )
    return deadlines.extend_everyone(
        session,
        round_=round_,
        stage=stage,
        closes=new_close,
        reason=reason,
        actor=actor,
        now=now,
        kind=deadlines.DEGRADED,
        evidence=evidence.as_dict(),
    )
