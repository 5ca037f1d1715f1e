"""A council's applicant invites a colleague by e-mail, through a real local SMTP server: the
colleague gets an applicant account for the same council, the invitation is audited, the link in
it signs them in, and they see the council's applications. An address with an account already
is refused and nothing changes."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
import test_sign_in as mail
from fastapi.testclient import TestClient
from sqlmodel import select
from test_portal_forms import DURING_EOI, csrf, launch, start

from cbflow.clock import FixedClock
from cbflow.db import session_scope
from cbflow.models import AuditEvent, User
from cbflow.settings import Settings
from cbflow.web import create_app

smtp = mail.smtp  # a real SMTP server on this machine, keeping what it is sent


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(DURING_EOI)


@pytest.fixture
def settings(cbflow_env: Settings, smtp: tuple[mail.Inbox, int]) -> Settings:
    return cbflow_env.model_copy(update={"smtp_host": "127.0.0.1", "smtp_port": smtp[1]})


@pytest.fixture
def pat(
    settings: Settings, clock: FixedClock, smtp: tuple[mail.Inbox, int]
) -> Iterator[TestClient]:
    """Essex's applicant, signed in by the link the SMTP server received."""
    with session_scope() as session:
        session.add(
            User(email="pat@essex.gov.uk", name="Pat Jones", role="applicant", council_code="ESS")
        )
    with TestClient(create_app(settings, clock=clock)) as client:
        mail.ask_for_link(client, "pat@essex.gov.uk")
        signed = mail.follow_link(client, mail.link_in(smtp[0].messages[-1]))
        assert signed.status_code == 303
        yield client


def invite(client: TestClient, name: str, email: str, **extra: Any) -> Any:
    token = csrf(client.get("/applications/team").text)
    return client.post(
        "/applications/team",
        data={"name": name, "email": email, "csrf_token": token, **extra},
        follow_redirects=False,
    )


def users() -> list[tuple[str, str, str, str | None]]:
    with session_scope() as session:
        return sorted((u.email, u.name, u.role, u.council_code) for u in session.exec(select(User)))


def test_invited_colleague_signs_in_by_the_emailed_link_and_sees_the_councils_applications(
    pat: TestClient, settings: Settings, clock: FixedClock, smtp: tuple[mail.Inbox, int]
) -> None:
    inbox = smtp[0]
    base = start(pat, launch())

    answer = invite(pat, "  Sam Smith ", "Sam.Smith@Essex.gov.uk")

    assert answer.status_code == 303 and answer.headers["location"] == "/applications/team"
    page = pat.get("/applications/team").text
    assert "We have emailed an invitation to sam.smith@essex.gov.uk" in page
    assert "Sam Smith" in page and "Pat Jones (you)" in page
    assert "We have emailed an invitation" not in pat.get("/applications/team").text
    assert ("sam.smith@essex.gov.uk", "Sam Smith", "applicant", "ESS") in users()
    with session_scope() as session:
        sam = session.exec(select(User).where(User.email == "sam.smith@essex.gov.uk")).one()
        event = session.exec(
            select(AuditEvent).where(AuditEvent.entity == "user", AuditEvent.entity_id == sam.id)
        ).one()
    assert (event.action, event.actor, event.reason) == (
        "invited",
        "pat@essex.gov.uk",
        "applicant for ESS",
    )
    invitation = inbox.messages[-1]
    assert invitation["To"] == "sam.smith@essex.gov.uk"
    assert invitation["Subject"] == "You have been invited to cbflow for Essex"
    body = invitation.get_payload(decode=True)
    assert isinstance(body, bytes) and b"Pat Jones has invited you" in body

    with TestClient(create_app(settings, clock=clock)) as sam_client:
        signed = mail.follow_link(sam_client, mail.link_in(invitation))
        assert signed.status_code == 303
        home = sam_client.get("/applications")
        assert home.status_code == 200 and "Expression of interest in progress" in home.text
        assert f'href="{base}"' in home.text
        assert sam_client.get(base).status_code == 200


def test_address_with_an_account_is_refused_clearly_and_nothing_changes(
    pat: TestClient, smtp: tuple[mail.Inbox, int]
) -> None:
    with session_scope() as session:
        session.add(
            User(email="kim@kent.gov.uk", name="Kim Kent", role="applicant", council_code="KEN")
        )
    before, sent = users(), len(smtp[0].messages)

    for address in ("kim@kent.gov.uk", "KIM@kent.gov.uk ", "pat@essex.gov.uk"):
        answer = invite(pat, "Someone", address)

        assert answer.status_code == 400
        assert "There is a problem" in answer.text
        assert "This email address already has an account on cbflow" in answer.text
        assert 'href="#email"' in answer.text and 'value="Someone"' in answer.text
    assert users() == before and len(smtp[0].messages) == sent
    with session_scope() as session:
        assert not session.exec(select(AuditEvent).where(AuditEvent.action == "invited")).all()


def test_name_and_email_are_needed_and_checked(pat: TestClient) -> None:
    before = users()

    blank = invite(pat, " ", "")
    malformed = invite(pat, "Sam", "sam at essex")

    assert blank.status_code == malformed.status_code == 400
    assert "Enter your colleague’s full name" in blank.text
    assert "Enter your colleague’s email address" in blank.text
    assert "Enter an email address in the correct format" in malformed.text
    # an address that a pattern of our own took 17 s to refuse, and one too long to deliver
    for address, error in (
        (mail.HOSTILE_ADDRESS, mail.TOO_LONG),
        ("sam@" + "essex." * 42 + "gov.uk", mail.TOO_LONG),
    ):
        started = time.monotonic()
        hostile = invite(pat, "Sam", address)
        assert time.monotonic() - started < 1
        assert hostile.status_code == 400 and error in hostile.text
    assert 'value="sam at essex"' in malformed.text
    assert users() == before


def test_the_team_is_the_councils_own(pat: TestClient) -> None:
    with session_scope() as session:
        session.add(
            User(email="kim@kent.gov.uk", name="Kim Kent", role="applicant", council_code="KEN")
        )
        session.add(User(email="sam@assess.example", name="Sam Assessor", role="assessor"))

    page = pat.get("/applications/team").text

    assert "Pat Jones" in page
    assert "Kim Kent" not in page and "Sam Assessor" not in page
    assert 'href="/applications/team"' in pat.get("/applications").text


def test_inviting_needs_the_csrf_token(pat: TestClient) -> None:
    before = users()

    answer = pat.post("/applications/team", data={"name": "Sam", "email": "sam@essex.gov.uk"})

    assert answer.status_code == 403 and users() == before


def test_only_applicants_have_a_team(cbflow_env: Settings, clock: FixedClock) -> None:
    from test_portal_forms import sign_in_as_existing

    with session_scope() as session:
        session.add(User(email="sam@assess.example", name="Sam", role="assessor"))
    with TestClient(create_app(cbflow_env, clock=clock)) as client:
        assert client.get("/applications/team", follow_redirects=False).status_code == 303
        sign_in_as_existing(client, "sam@assess.example")
        assert client.get("/applications/team").status_code == 403
        token = csrf(client.get("/").text)
        refused = client.post(
            "/applications/team",
            data={"name": "X", "email": "x@essex.gov.uk", "csrf_token": token},
        )
        assert refused.status_code == 403
    assert [u[0] for u in users()] == ["sam@assess.example"]
