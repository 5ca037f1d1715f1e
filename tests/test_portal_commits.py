"""The portal answers only once its transaction has committed: a redirect that says something
was saved, sent or submitted is never ahead of the database."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient
from sqlmodel import select
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from test_portal_forms import csrf
from test_sign_in import NOW

from cbflow.clock import FixedClock
from cbflow.db import session_scope
from cbflow.models import OutboxMessage, User
from cbflow.settings import Settings
from cbflow.web import create_app


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
