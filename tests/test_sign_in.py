"""Signing in by e-mailed link, through a real local SMTP server: the link arrives, works once,
expires, and asking for one tells nobody whether an address has an account. Without SMTP the
mail waits in the outbox, which only administrators read."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email import message_from_bytes
from email.message import Message
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from conftest import free_port
from fastapi.testclient import TestClient
from sqlmodel import select

from cbflow.clock import FixedClock
from cbflow.db import session_scope
from cbflow.models import AuditEvent, MagicLink, OutboxMessage, User
from cbflow.settings import Settings
from cbflow.web import create_app

NOW = datetime(2011, 11, 1, 9, 0, tzinfo=UTC)


class Inbox:
    """aiosmtpd handler: keeps every message it is given."""

    def __init__(self) -> None:
        self.messages: list[Message] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(message_from_bytes(envelope.content))
        return "250 Message accepted for delivery"


@pytest.fixture
def smtp() -> Iterator[tuple[Inbox, int]]:
    inbox = Inbox()
    port = free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield inbox, port
    finally:
        controller.stop()


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(NOW)


def _client(settings: Settings, clock: FixedClock) -> TestClient:
    return TestClient(create_app(settings, clock=clock))


@pytest.fixture
def mailing_client(
    cbflow_env: Settings, smtp: tuple[Inbox, int], clock: FixedClock
) -> Iterator[TestClient]:
    settings = cbflow_env.model_copy(update={"smtp_host": "127.0.0.1", "smtp_port": smtp[1]})
    with _client(settings, clock) as client:
        yield client


def add_user(email: str, role: str = "applicant", name: str = "Pat Jones") -> None:
    with session_scope() as session:
        council = "ESS" if role == "applicant" else None
        session.add(User(email=email, name=name, role=role, council_code=council))


def csrf(page_html: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', page_html)
    assert match is not None, "the page has a form with the CSRF field"
    return match.group(1)


def ask_for_link(client: TestClient, email: str) -> Any:
    token = csrf(client.get("/sign-in").text)
    return client.post("/sign-in", data={"email": email, "csrf_token": token})


def link_in(message: Message) -> str:
    body = message.get_payload(decode=True)
    assert isinstance(body, bytes)
    match = re.search(r"https?://\S+/sign-in/[\w-]+", body.decode())
    assert match is not None, body
    return match.group(0)


def follow_link(client: TestClient, link: str) -> Any:
    """Open the link and press 'Sign in', as a person does."""
    path = "/" + link.split("/", 3)[3]
    page = client.get(path)
    if page.status_code != 200:
        return page
    return client.post(path, data={"csrf_token": csrf(page.text)}, follow_redirects=False)


def test_sign_in_link_arrives_by_smtp_and_signs_in(
    mailing_client: TestClient, smtp: tuple[Inbox, int]
) -> None:
    inbox, _ = smtp
    add_user("pat.jones@essex.gov.uk")

    answer = ask_for_link(mailing_client, "  Pat.Jones@essex.gov.uk ")

    assert "Check your email" in answer.text
    assert len(inbox.messages) == 1
    mail = inbox.messages[0]
    assert mail["To"] == "pat.jones@essex.gov.uk"
    assert mail["Subject"] == "Your link to sign in to cbflow"
    signed_in = follow_link(mailing_client, link_in(mail))
    assert signed_in.status_code == 303
    home = mailing_client.get(signed_in.headers["location"]).text
    assert "Pat Jones" in home and "Sign out" in home


def test_sign_in_link_works_once(mailing_client: TestClient, smtp: tuple[Inbox, int]) -> None:
    inbox, _ = smtp
    add_user("pat.jones@essex.gov.uk")
    ask_for_link(mailing_client, "pat.jones@essex.gov.uk")
    link = link_in(inbox.messages[0])
    assert follow_link(mailing_client, link).status_code == 303
    mailing_client.cookies.clear()

    again = follow_link(mailing_client, link)

    assert again.status_code == 400
    assert "This link cannot be used" in again.text
    assert "Sign out" not in again.text


def test_sign_in_link_opened_by_a_mail_scanner_still_works(
    mailing_client: TestClient, smtp: tuple[Inbox, int]
) -> None:
    """Opening the link (a GET, as link checkers do) does not use it up."""
    inbox, _ = smtp
    add_user("pat.jones@essex.gov.uk")
    ask_for_link(mailing_client, "pat.jones@essex.gov.uk")
    link = link_in(inbox.messages[0])
    TestClient(mailing_client.app).get("/" + link.split("/", 3)[3])

    assert follow_link(mailing_client, link).status_code == 303


def test_sign_in_link_expires_after_15_minutes(
    mailing_client: TestClient, smtp: tuple[Inbox, int], clock: FixedClock
) -> None:
    inbox, _ = smtp
    add_user("pat.jones@essex.gov.uk")
    ask_for_link(mailing_client, "pat.jones@essex.gov.uk")
    clock.advance(timedelta(minutes=15))

    late = follow_link(mailing_client, link_in(inbox.messages[0]))

    assert late.status_code == 400
    assert "This link cannot be used" in late.text


def test_sign_in_link_used_within_15_minutes_works(
    mailing_client: TestClient, smtp: tuple[Inbox, int], clock: FixedClock
) -> None:
    inbox, _ = smtp
    add_user("pat.jones@essex.gov.uk")
    ask_for_link(mailing_client, "pat.jones@essex.gov.uk")
    clock.advance(timedelta(minutes=14, seconds=59))

    assert follow_link(mailing_client, link_in(inbox.messages[0])).status_code == 303


def test_sign_in_link_is_stored_only_as_a_hash(
    mailing_client: TestClient, smtp: tuple[Inbox, int]
) -> None:
    inbox, _ = smtp
    add_user("pat.jones@essex.gov.uk")
    ask_for_link(mailing_client, "pat.jones@essex.gov.uk")
    token = link_in(inbox.messages[0]).rsplit("/", 1)[1]

    with session_scope() as session:
        stored = [link.token_hash for link in session.exec(select(MagicLink))]

    assert len(stored) == 1 and token not in stored[0]


def test_unknown_address_gets_the_same_answer_and_no_mail(
    mailing_client: TestClient, smtp: tuple[Inbox, int]
) -> None:
    inbox, _ = smtp
    add_user("pat.jones@essex.gov.uk")
    known = ask_for_link(mailing_client, "pat.jones@essex.gov.uk")

    unknown = ask_for_link(mailing_client, "nobody@essex.gov.uk")

    assert unknown.status_code == known.status_code == 200
    assert unknown.text.replace("nobody", "pat.jones") == known.text
    assert len(inbox.messages) == 1


@pytest.mark.parametrize(
    ("email", "error"),
    [
        ("", "Enter your email address"),
        ("pat.jones", "Enter an email address in the correct format"),
    ],
)
def test_bad_email_shows_the_error_summary_linked_to_the_field(
    mailing_client: TestClient, email: str, error: str
) -> None:
    answer = ask_for_link(mailing_client, email)

    assert answer.status_code == 400
    assert "<title>Error: Sign in – cbflow – GOV.UK</title>" in answer.text
    assert "There is a problem" in answer.text
    assert re.search(rf'<a href="#email">{error}', answer.text)
    assert 'id="email-error"' in answer.text


# an address that kept a portal process busy for 17 s when a pattern of our own checked it
HOSTILE_ADDRESS = "a@" + "." * 40_000 + "@"
TOO_LONG = "Email address must be 254 characters or fewer"


@pytest.mark.parametrize(
    ("email", "error"),
    [
        (HOSTILE_ADDRESS, TOO_LONG),
        ("pat@" + "essex." * 42 + "gov.uk", TOO_LONG),  # 262 characters, well formed
        ("a@" + "." * 200 + "@", "Enter an email address in the correct format"),
    ],
)
def test_a_hostile_address_is_refused_within_a_second_and_nothing_is_sent(
    mailing_client: TestClient, smtp: tuple[Inbox, int], email: str, error: str
) -> None:
    started = time.monotonic()
    answer = ask_for_link(mailing_client, email)

    assert time.monotonic() - started < 1
    assert answer.status_code == 400
    assert re.search(rf'<a href="#email">{error}', answer.text)
    assert smtp[0].messages == []
    with session_scope() as session:
        assert session.exec(select(MagicLink)).all() == []


def _live_links() -> int:
    with session_scope() as session:
        return len(session.exec(select(MagicLink).where(MagicLink.used_at == None)).all())  # noqa: E711


def test_asking_again_and_again_makes_no_more_than_three_live_links(
    mailing_client: TestClient, smtp: tuple[Inbox, int]
) -> None:
    inbox, _ = smtp
    add_user("pat.jones@essex.gov.uk")
    token = csrf(mailing_client.get("/sign-in").text)

    asks = [
        mailing_client.post(
            "/sign-in",
            data={"email": "pat.jones@essex.gov.uk", "csrf_token": token},
            follow_redirects=False,
        )
        for _ in range(20)  # 30 asks in a second made 30 live links
    ]

    # every ask is told the same, and only three links exist to be found in a mailbox
    assert {a.status_code for a in asks} == {303}
    assert {a.headers["location"] for a in asks} == {"/sign-in/check-your-email"}
    assert _live_links() == 3
    _wait_for_mail(inbox, 3)
    # once one is used, the person can ask for another
    assert follow_link(mailing_client, link_in(inbox.messages[0])).status_code == 303
    ask_for_link(mailing_client, "pat.jones@essex.gov.uk")
    assert _live_links() == 3


def test_a_client_asking_for_link_after_link_is_told_the_same_and_sent_nothing(
    mailing_client: TestClient, smtp: tuple[Inbox, int]
) -> None:
    add_user("pat.jones@essex.gov.uk")
    for n in range(30):  # addresses tried one after another, from one client
        ask_for_link(mailing_client, f"guess{n}@essex.gov.uk")

    answer = ask_for_link(mailing_client, "pat.jones@essex.gov.uk")

    assert answer.status_code == 200 and "Check your email" in answer.text
    assert _live_links() == 0


def _wait_for_mail(inbox: Inbox, count: int) -> None:
    deadline = time.monotonic() + 10
    while len(inbox.messages) < count:
        assert time.monotonic() < deadline, f"{len(inbox.messages)} of {count} messages came"
        time.sleep(0.05)


def test_sign_in_post_without_csrf_token_is_refused_403(
    mailing_client: TestClient, smtp: tuple[Inbox, int]
) -> None:
    inbox, _ = smtp
    add_user("pat.jones@essex.gov.uk")

    answer = mailing_client.post("/sign-in", data={"email": "pat.jones@essex.gov.uk"})

    assert answer.status_code == 403
    assert inbox.messages == []


def test_sign_out_needs_the_csrf_token_and_ends_the_session(
    mailing_client: TestClient, smtp: tuple[Inbox, int]
) -> None:
    inbox, _ = smtp
    add_user("pat.jones@essex.gov.uk")
    ask_for_link(mailing_client, "pat.jones@essex.gov.uk")
    follow_link(mailing_client, link_in(inbox.messages[0]))
    home = mailing_client.get("/").text

    refused = mailing_client.post("/sign-out", data={})
    assert refused.status_code == 403
    assert "Sign out" in mailing_client.get("/").text

    mailing_client.post("/sign-out", data={"csrf_token": csrf(home)})
    assert "Sign out" not in mailing_client.get("/").text


def _signed_in_applicant(client: TestClient, inbox: Inbox) -> str:
    """Pat signed in on `client`; returns the session cookie."""
    add_user("pat.jones@essex.gov.uk")
    ask_for_link(client, "pat.jones@essex.gov.uk")
    assert follow_link(client, link_in(inbox.messages[-1])).status_code == 303
    assert client.get("/applications", follow_redirects=False).status_code == 200
    return str(client.cookies["cbflow_session"])


def test_a_copy_of_the_cookie_is_refused_once_its_session_has_signed_out(
    cbflow_env: Settings, smtp: tuple[Inbox, int], clock: FixedClock
) -> None:
    inbox, port = smtp
    settings = cbflow_env.model_copy(update={"smtp_host": "127.0.0.1", "smtp_port": port})
    with _client(settings, clock) as pat, _client(settings, clock) as thief:
        copied = _signed_in_applicant(pat, inbox)
        thief.cookies.set("cbflow_session", copied)
        team = thief.get("/applications/team")
        assert team.status_code == 200  # a copy works while the session lasts
        token = csrf(team.text)

        signed_out = pat.post("/sign-out", data={"csrf_token": csrf(pat.get("/").text)})
        assert signed_out.status_code == 200

        # the copy no longer signs in: not for a page, nor to invite a colleague (as it did)
        page = thief.get("/applications", follow_redirects=False)
        assert page.status_code == 303 and page.headers["location"] == "/sign-in"
        thief.cookies.set("cbflow_session", copied)
        invited = thief.post(
            "/applications/team",
            data={"name": "Mallory", "email": "m@essex.gov.uk", "csrf_token": token},
            follow_redirects=False,
        )
        assert invited.status_code in (303, 403)
        assert invited.headers.get("location", "/sign-in") == "/sign-in"
    with session_scope() as session:
        assert session.exec(select(User).where(User.email == "m@essex.gov.uk")).first() is None
        events = session.exec(select(AuditEvent.action).where(AuditEvent.entity == "user")).all()
    assert "sign-out" in events


def test_a_session_ends_its_hours_after_signing_in_however_busy(
    mailing_client: TestClient, smtp: tuple[Inbox, int], clock: FixedClock
) -> None:
    _signed_in_applicant(mailing_client, smtp[0])
    # a request every 20 minutes (within the idle limit) for the whole of the 8 hours
    for step in range(1, 24):
        clock.set(NOW + timedelta(minutes=20 * step))
        kept = mailing_client.get("/applications", follow_redirects=False)
        assert kept.status_code == 200, f"signed out after {20 * step} minutes"

    clock.set(NOW + timedelta(hours=8, seconds=1))
    ended = mailing_client.get("/applications", follow_redirects=False)

    assert ended.status_code == 303 and ended.headers["location"] == "/sign-in"


def test_session_signed_with_another_secret_is_ignored(
    cbflow_env: Settings, smtp: tuple[Inbox, int], clock: FixedClock
) -> None:
    inbox, port = smtp
    add_user("pat.jones@essex.gov.uk")
    mailing = {"smtp_host": "127.0.0.1", "smtp_port": port}
    first = _client(cbflow_env.model_copy(update={**mailing, "secret_key": "a" * 40}), clock)
    ask_for_link(first, "pat.jones@essex.gov.uk")
    follow_link(first, link_in(inbox.messages[0]))
    assert "Sign out" in first.get("/").text
    other = _client(cbflow_env.model_copy(update={**mailing, "secret_key": "b" * 40}), clock)

    other.cookies.set("cbflow_session", first.cookies["cbflow_session"])

    assert "Sign out" not in other.get("/").text


def test_without_smtp_the_link_waits_in_the_outbox_for_administrators(
    cbflow_env: Settings, clock: FixedClock
) -> None:
    add_user("pat.jones@essex.gov.uk")
    add_user("admin@cbflow.example", role="admin", name="Ada Admin")
    client = _client(cbflow_env, clock)
    ask_for_link(client, "admin@cbflow.example")
    ask_for_link(client, "pat.jones@essex.gov.uk")
    assert client.get("/admin/outbox", follow_redirects=False).headers["location"] == "/sign-in"

    with session_scope() as session:
        admin_mail = session.exec(
            select(OutboxMessage).where(OutboxMessage.to == "admin@cbflow.example")
        ).one()
        link = re.search(r"https?://\S+/sign-in/[\w-]+", admin_mail.body)
    assert link is not None
    follow_link(client, link.group(0))
    outbox = client.get("/admin/outbox")

    assert outbox.status_code == 200
    assert "pat.jones@essex.gov.uk" in outbox.text
    assert "Your link to sign in to cbflow" in outbox.text


def test_outbox_is_forbidden_to_other_roles(
    mailing_client: TestClient, smtp: tuple[Inbox, int]
) -> None:
    inbox, _ = smtp
    add_user("pat.jones@essex.gov.uk")
    ask_for_link(mailing_client, "pat.jones@essex.gov.uk")
    follow_link(mailing_client, link_in(inbox.messages[0]))

    answer = mailing_client.get("/admin/outbox")

    assert answer.status_code == 403
    assert "You cannot do that" in answer.text


def test_mail_server_down_still_answers_and_the_failure_is_logged(
    cbflow_env: Settings, clock: FixedClock, caplog: pytest.LogCaptureFixture
) -> None:
    add_user("pat.jones@essex.gov.uk")
    nobody_listens = {"smtp_host": "127.0.0.1", "smtp_port": free_port()}
    client = _client(cbflow_env.model_copy(update=nobody_listens), clock)

    answer = ask_for_link(client, "pat.jones@essex.gov.uk")

    assert answer.status_code == 200
    assert "Check your email" in answer.text
    assert "mail to pat.jones@essex.gov.uk (Your link to sign in to cbflow) was not sent" in (
        caplog.text
    )


def test_log_records_keep_the_path_of_a_sign_in_link_but_not_its_token() -> None:
    import logging

    from cbflow.web.auth import RedactLinkTokens as RedactSignInTokens

    access = logging.LogRecord(
        "uvicorn.access",
        logging.INFO,
        __file__,
        1,
        '%s - "%s %s HTTP/%s" %d',
        ("127.0.0.1:5000", "POST", "/sign-in/Ab-3_x9?next=1", "1.1", 303),
        None,
    )
    message = logging.LogRecord(
        "cbflow", logging.WARNING, __file__, 1, "opened http://x/sign-in/Zz-9 twice", None, None
    )
    page = logging.LogRecord(
        "uvicorn.access", logging.INFO, __file__, 1, "%s", ("/sign-in/check-your-email",), None
    )

    for record in (access, message, page):
        assert RedactSignInTokens().filter(record)

    assert access.getMessage() == '127.0.0.1:5000 - "POST /sign-in/[token]?next=1 HTTP/1.1" 303'
    assert message.getMessage() == "opened http://x/sign-in/[token] twice"
    assert page.getMessage() == "/sign-in/check-your-email"
