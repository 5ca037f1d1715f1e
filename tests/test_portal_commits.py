"""The portal under load: it answers only once its transaction has committed (a redirect that
says something was saved, sent or submitted is never ahead of the database), more requests than
threads all finish without waiting on each other, and portal processes started together share
one secret key."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from portal import serving
from sqlmodel import select
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from test_portal_forms import csrf
from test_sign_in import NOW

from cbflow.clock import FixedClock
from cbflow.db import session_scope
from cbflow.models import Application, Council, OutboxMessage, User
from cbflow.settings import Settings
from cbflow.web import create_app
from cbflow.web.security import secret_key


class SeenAtAnswer:
    """Wraps the portal: when a response starts, records what another connection reads."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.seen: list[Any] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def spy(message: Message) -> None:
            if message["type"] == "http.response.start":
                with session_scope() as session:
                    self.seen.append(list(session.exec(select(OutboxMessage.to))))
            await send(message)

        await self.app(scope, receive, spy)


def test_the_answer_is_sent_after_the_commit(cbflow_env: Settings) -> None:
    with session_scope() as session:
        session.add(
            User(email="pat@essex.gov.uk", name="Pat", role="applicant", council_code="ESS")
        )
    portal = SeenAtAnswer(create_app(cbflow_env, clock=FixedClock(NOW)))
    with TestClient(portal) as client:
        token = csrf(client.get("/sign-in").text)
        answer = client.post(
            "/sign-in",
            data={"email": "pat@essex.gov.uk", "csrf_token": token},
            follow_redirects=False,
        )

    assert answer.status_code == 303
    assert portal.seen[-1] == ["pat@essex.gov.uk"]  # the link was in the outbox as it answered


@pytest.fixture
def served(cbflow_env: Settings) -> Iterator[str]:
    """The portal on a free port in a thread, with only two threads for its routes."""
    with serving(cbflow_env, FixedClock(NOW), portal_threads=2) as url:
        yield url


def test_more_requests_than_threads_all_finish_without_waiting_on_each_other(
    cbflow_env: Settings, served: str
) -> None:
    """Signed-in applicants start their applications all at once: each request reads who is
    signed in, waits for one of the two threads, then writes. None may wait for a database
    connection that the requests queued behind it hold."""
    from test_portal_forms import launch

    slug = launch()
    with session_scope() as session:
        codes = list(session.exec(select(Council.code).order_by(Council.code)))[:30]
        for code in codes:
            email = f"{code.lower()}@example.gov.uk"
            session.add(User(email=email, name=code, role="applicant", council_code=code))
    clients = {code: httpx.Client(base_url=served, timeout=60) for code in codes}
    tokens = {}
    for code, client in clients.items():
        tokens[code] = sign_in_over_http(client, f"{code.lower()}@example.gov.uk")
    start = threading.Barrier(len(codes))

    def begin(code: str) -> int:
        start.wait()
        data = {"round": slug, "csrf_token": tokens[code]}
        return clients[code].post("/applications/start", data=data).status_code

    began = time.monotonic()
    with ThreadPoolExecutor(len(codes)) as pool:
        answers = list(pool.map(begin, codes))
    took = time.monotonic() - began

    assert answers == [303] * len(codes)
    assert took < 15, f"{took:.1f} s: requests waited on each other"
    with session_scope() as session:
        assert len(session.exec(select(Application)).all()) == len(codes)


def sign_in_over_http(client: httpx.Client, email: str) -> str:
    """Sign in by the outbox's link; returns the session's CSRF token."""
    client.post("/sign-in", data={"email": email, "csrf_token": csrf(client.get("/sign-in").text)})
    with session_scope() as session:
        body = session.exec(select(OutboxMessage.body).where(OutboxMessage.to == email)).one()
    path = re.search(r"/sign-in/[\w-]+", body)
    assert path is not None
    client.post(path.group(0), data={"csrf_token": csrf(client.get(path.group(0)).text)})
    return csrf(client.get("/applications").text)


def test_portal_processes_starting_together_share_one_secret_key(cbflow_env: Settings) -> None:
    """`cbflow serve` starts one portal process per core; the first to start makes the key."""
    start = threading.Barrier(8)

    def key() -> str:
        start.wait()
        return secret_key(cbflow_env)

    with ThreadPoolExecutor(8) as pool:
        keys = list(pool.map(lambda _: key(), range(8)))

    assert len(set(keys)) == 1 and len(keys[0]) > 40
    assert (cbflow_env.data_dir / "secret_key").read_text(encoding="utf-8").strip() == keys[0]
