"""A request that cannot get to the database in time is answered 503 with a page that says
nothing of it was kept, within the bound, and changes nothing; the health check answers all
the while."""

from __future__ import annotations

import threading
import time

import httpx
import pytest
from conftest import london
from portal import add_user, csrf, serving
from sqlmodel import select

from cbflow import db
from cbflow.clock import FixedClock
from cbflow.db import lock_for_update, session_scope
from cbflow.models import MagicLink, User
from cbflow.settings import Settings


def test_a_write_that_cannot_get_the_database_in_time_is_answered_503_and_keeps_nothing(
    cbflow_env: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    add_user("pat.jones@essex.gov.uk", "applicant", "ESS")
    monkeypatch.setattr(db, "BUSY_SECONDS", 1)
    with serving(cbflow_env, FixedClock(london(2011, 11, 1, 9, 0))) as url:
        client = httpx.Client(base_url=url, timeout=20)
        token = csrf(client.get("/sign-in").text)
        held, release = threading.Event(), threading.Event()

        def hold() -> None:
            with session_scope() as session:
                user = session.exec(select(User)).one()
                lock_for_update(session, user)
                held.set()
                release.wait(30)

        holder = threading.Thread(target=hold, daemon=True)
        holder.start()
        assert held.wait(10)
        try:
            started = time.monotonic()
            answer = client.post(
                "/sign-in", data={"email": "pat.jones@essex.gov.uk", "csrf_token": token}
            )
            took = time.monotonic() - started
            health = httpx.get(f"{url}/healthz", timeout=5)  # while the lock is still held
        finally:
            release.set()
            holder.join(10)

    assert answer.status_code == 503
    assert answer.headers["retry-after"] == "30"
    assert "Sorry, the service is busy" in answer.text
    assert "What you just sent was not saved" in answer.text
    assert "Everything you saved or submitted before it is kept" in answer.text
    assert took < 5, f"answered within the bound, not after {took:.1f} s"
    assert health.status_code == 200, "the process answered its health check meanwhile"
    with session_scope() as session:
        assert session.exec(select(MagicLink)).all() == [], "nothing of the request was kept"
