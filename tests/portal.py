"""Helpers for tests that drive the portal through its pages (TestClient, or a real server in
a thread): the CSRF token of a page, signing in by the link in the outbox, posting a form as a
browser would."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import uvicorn
from conftest import free_port
from fastapi.testclient import TestClient
from sqlmodel import col, select

from cbflow.clock import Clock
from cbflow.db import session_scope
from cbflow.models import OutboxMessage, User
from cbflow.settings import Settings
from cbflow.web import create_app


@contextmanager
def serving(settings: Settings, clock: Clock, **updates: Any) -> Iterator[str]:
    """The portal on a free port, in a thread of this process, with the given clock and these
    settings changed; yields its address."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    settings = settings.model_copy(update={"portal_port": port, "portal_base_url": url, **updates})
    app = create_app(settings, clock=clock)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the portal did not start"
        time.sleep(0.05)
    try:
        yield url
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def csrf(html: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match is not None, "the page has a form with the CSRF field"
    return match.group(1)


def add_user(email: str, role: str, council: str | None = None, name: str | None = None) -> User:
    with session_scope() as session:
        user = User(email=email, name=name or email.split("@")[0], role=role, council_code=council)
        session.add(user)
        session.flush()
        session.expunge(user)
    return user


def sign_in(client: TestClient, email: str) -> None:
    """Sign in by the newest link the outbox holds for the address."""
    client.post("/sign-in", data={"email": email, "csrf_token": csrf(client.get("/sign-in").text)})
    with session_scope() as session:
        body = session.exec(
            select(OutboxMessage.body)
            .where(OutboxMessage.to == email)
            .order_by(col(OutboxMessage.id).desc())
        ).first()
    assert body is not None, f"no sign-in link was sent to {email}"
    path = re.search(r"/sign-in/[\w-]+", body)
    assert path is not None
    page = client.get(path.group(0))
    answer = client.post(
        path.group(0), data={"csrf_token": csrf(page.text)}, follow_redirects=False
    )
    assert answer.status_code == 303


def post(client: TestClient, page: str, action: str | None = None, **kwargs: Any) -> Any:
    """Post a form of `page` (to `action`, or back to the page) with the page's CSRF token."""
    token = csrf(client.get(page).text)
    data = {**kwargs.pop("data", {}), "csrf_token": token}
    return client.post(action or page, data=data, follow_redirects=False, **kwargs)


def nonce(html: str) -> str:
    match = re.search(r'name="nonce" value="([^"]+)"', html)
    assert match is not None, "the page has an action form"
    return match.group(1)


PDF = b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"


def _put(data: dict[str, Any], name: str, question: Any, raw: Any) -> None:
    if question.type == "date":
        for part in ("day", "month", "year"):
            data[f"{name}-{part}"] = raw[part]
    elif question.type == "multichoice":
        data[name] = list(raw)
    else:
        data[name] = raw


def section_form(section: Any, answers: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The fields and files a person would post on a section's page to give these answers."""
    from cbflow.forms import is_shown
    from cbflow.prospectus import TableQuestion
    from cbflow.web.forms_ui import to_raw

    data: dict[str, Any] = {"action": "save"}
    files: dict[str, Any] = {}
    for question in section.questions:
        if not is_shown(question, answers):
            continue
        value = answers.get(question.id)
        if isinstance(question, TableQuestion):
            rows = value or []
            data[f"{question.id}-rows"] = str(len(rows))
            for index, row in enumerate(rows):
                for column in question.columns:
                    raw = to_raw(column, row.get(column.id))
                    _put(data, f"{question.id}-{index}-{column.id}", column, raw)
        elif question.type == "file":
            if value:
                files[question.id] = (value["name"], PDF, "application/pdf")
        else:
            _put(data, question.id, question, to_raw(question, value))
    return data, files
