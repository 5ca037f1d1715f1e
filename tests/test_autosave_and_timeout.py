"""A section's answers are saved in the background as a council types (partial drafts, never after
the deadline, never another council's), and a session left idle times out: the person is sent to
sign in again and told why, and a form posted after the time-out says it was not saved."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from conftest import london
from fastapi.testclient import TestClient
from sqlmodel import func, select
from test_portal_forms import AFTER_EOI, csrf, fill_example, launch, sign_in, start, submit

from cbflow.clock import FixedClock
from cbflow.db import session_scope
from cbflow.models import Application, AuditEvent, OutboxMessage
from cbflow.settings import Settings
from cbflow.web import create_app

DURING_EOI = london(2011, 11, 1, 10, 42)


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(DURING_EOI)


@pytest.fixture
def portal(cbflow_env: Settings, clock: FixedClock) -> Iterator[TestClient]:
    with TestClient(create_app(cbflow_env, clock=clock)) as client:
        yield client


def autosave(client: TestClient, path: str, data: dict[str, Any], token: str | None = None) -> Any:
    """Post as the section page's script does: form-encoded, the token in X-CSRF-Token."""
    if token is None:
        token = csrf(client.get(path).text)
    return client.post(
        f"{path}/autosave",
        data=data,
        headers={"X-CSRF-Token": token, "Accept": "application/json"},
    )


def stored_answers() -> dict[str, Any]:
    with session_scope() as session:
        return dict(session.exec(select(Application)).one().eoi_answers)


def audit_count() -> int:
    with session_scope() as session:
        return session.exec(select(func.count()).select_from(AuditEvent)).one()


# -- autosave ----------------------------------------------------------------------------------


def test_section_page_offers_autosave_to_its_script(portal: TestClient) -> None:
    sign_in(portal, "pat@essex.gov.uk")
    base = start(portal, launch())

    page = portal.get(f"{base}/section/place").text

    assert f'data-autosave="{base}/section/place/autosave"' in page
    assert 'id="autosave-status"' in page and 'aria-live="polite"' in page
    assert '<script type="module" src="/static/autosave.js"></script>' in page
    script = portal.get("/static/autosave.js")
    assert script.status_code == 200 and "X-CSRF-Token" in script.text


def test_autosave_keeps_a_partial_draft_and_says_when(portal: TestClient) -> None:
    sign_in(portal, "pat@essex.gov.uk")
    base = start(portal, launch())
    path = f"{base}/section/place"

    answer = autosave(portal, path, {"ambition": "Half a thought", "partners-rows": "1"})

    assert answer.status_code == 200
    body = answer.json()
    assert {k: body[k] for k in ("saved", "message", "errors")} == {
        "saved": True,
        "message": "Saved at 10:42",
        "errors": {},
    }
    assert body["version"] == 1  # the page's next save carries it
    assert stored_answers() == {"ambition": "Half a thought"}  # nothing else need be there
    assert "Half a thought</textarea>" in portal.get(path).text
    assert "In progress" in portal.get(base).text


def test_autosave_in_summer_time_shows_london_time(portal: TestClient, clock: FixedClock) -> None:
    sign_in(portal, "pat@essex.gov.uk")
    base = start(portal, launch())
    clock.set(london(2011, 10, 20, 9, 5))  # British Summer Time: 08:05 UTC

    answer = autosave(portal, f"{base}/section/place", {"ambition": "Draft"})

    assert answer.json()["message"] == "Saved at 09:05"


def test_autosave_saves_the_rest_when_one_answer_cannot_be_saved(portal: TestClient) -> None:
    sign_in(portal, "pat@essex.gov.uk")
    base = start(portal, launch())
    path = f"{base}/section/place"
    autosave(portal, path, {"ambition": "First words"})

    answer = autosave(
        portal,
        path,
        {
            "lead_council": "ESS",
            "partners-rows": "1",
            "partners-0-organisation": "Essex Police",
            "ambition": "word " * 501,
        },
    )

    assert answer.status_code == 200
    body = answer.json()
    assert body["message"].startswith("Saved at 10:42, except: ")
    assert "500 words or fewer" in body["message"] and set(body["errors"]) == {"ambition"}
    assert stored_answers() == {
        "lead_council": "ESS",
        "partners": [{"organisation": "Essex Police"}],
        "ambition": "First words",  # as it was: the long one was not saved
    }


def test_autosave_of_unchanged_answers_writes_nothing(portal: TestClient) -> None:
    sign_in(portal, "pat@essex.gov.uk")
    base = start(portal, launch())
    path = f"{base}/section/place"
    autosave(portal, path, {"ambition": "Same"})
    before = audit_count()

    again = autosave(portal, path, {"ambition": "Same"})

    assert again.status_code == 200 and again.json()["saved"] is True
    assert audit_count() == before


def test_autosave_after_the_deadline_is_refused_and_changes_nothing(
    portal: TestClient, clock: FixedClock
) -> None:
    clock.set(london(2011, 11, 10, 11, 55))  # the page open a few minutes before the deadline
    sign_in(portal, "pat@essex.gov.uk")
    base = start(portal, launch())
    path = f"{base}/section/place"
    autosave(portal, path, {"ambition": "Before the deadline"})
    token = csrf(portal.get(path).text)
    before = audit_count()
    clock.set(AFTER_EOI)

    answer = autosave(portal, path, {"ambition": "After the deadline"}, token=token)

    assert answer.status_code == 409
    assert answer.json()["saved"] is False
    assert answer.json()["message"] == (
        "Not saved: the deadline has passed: it was 12:00 on 10 November 2011 (GMT)"
    )
    assert stored_answers() == {"ambition": "Before the deadline"}
    assert audit_count() == before
    assert "data-autosave" not in portal.get(path).text  # the page no longer offers it


def test_autosave_of_a_submitted_application_is_refused(portal: TestClient) -> None:
    sign_in(portal, "pat@essex.gov.uk")
    base = start(portal, launch())
    fill_example(portal, base)
    assert submit(portal, base).status_code == 303
    token = csrf(portal.get(base).text)

    answer = autosave(portal, f"{base}/section/place", {"ambition": "Changed"}, token=token)

    assert answer.status_code == 409
    assert "can no longer be changed" in answer.json()["message"]
    assert stored_answers()["ambition"] == "One public service for every family in Essex."


def test_autosave_of_another_councils_application_is_not_found(
    cbflow_env: Settings, clock: FixedClock
) -> None:
    slug = launch()
    app = create_app(cbflow_env, clock=clock)
    with TestClient(app) as essex, TestClient(app) as kent:
        sign_in(essex, "pat@essex.gov.uk", "ESS")
        sign_in(kent, "kim@kent.gov.uk", "KEN")
        base = start(essex, slug)
        autosave(essex, f"{base}/section/place", {"ambition": "Essex's own"})
        token = csrf(kent.get("/applications").text)

        answer = autosave(kent, f"{base}/section/place", {"ambition": "Kent's"}, token=token)

        assert answer.status_code == 404
    assert stored_answers() == {"ambition": "Essex's own"}


def test_autosave_needs_the_csrf_token(portal: TestClient) -> None:
    sign_in(portal, "pat@essex.gov.uk")
    base = start(portal, launch())
    path = f"{base}/section/place"

    without = portal.post(f"{path}/autosave", data={"ambition": "No token"})
    wrong = autosave(portal, path, {"ambition": "Wrong token"}, token="not-the-token")

    assert without.status_code == wrong.status_code == 403
    assert stored_answers() == {}


# -- session time-out --------------------------------------------------------------------------


def test_idle_session_is_cleared_and_sign_in_says_why_then_comes_back(
    portal: TestClient, clock: FixedClock
) -> None:
    sign_in(portal, "pat@essex.gov.uk")
    base = start(portal, launch())
    path = f"{base}/section/place"
    assert portal.get(path).status_code == 200
    clock.advance(timedelta(minutes=30, seconds=1))

    answer = portal.get(path, follow_redirects=False)

    assert answer.status_code == 303 and answer.headers["location"] == "/sign-in"
    sign_in_page = portal.get("/sign-in").text
    assert "You were signed out because you had not done anything for 30 minutes." in sign_in_page
    assert "govuk-notification-banner" in sign_in_page
    assert portal.get("/applications", follow_redirects=False).status_code == 303
    assert "had not done anything" not in portal.get("/sign-in").text  # said once


def test_sign_in_after_time_out_returns_to_the_page(portal: TestClient, clock: FixedClock) -> None:
    sign_in(portal, "pat@essex.gov.uk")
    base = start(portal, launch())
    path = f"{base}/section/place"
    portal.get(path)
    clock.advance(timedelta(minutes=31))
    portal.get(path)  # cleared; the page is remembered
    token = csrf(portal.get("/sign-in").text)
    portal.post("/sign-in", data={"email": "pat@essex.gov.uk", "csrf_token": token})
    with session_scope() as session:
        bodies = session.exec(
            select(OutboxMessage.body).where(OutboxMessage.to == "pat@essex.gov.uk")
        ).all()
    link = re.search(r"/sign-in/[\w-]+", bodies[-1])
    assert link is not None

    signed = portal.post(
        link.group(0),
        data={"csrf_token": csrf(portal.get(link.group(0)).text)},
        follow_redirects=False,
    )

    assert signed.status_code == 303 and signed.headers["location"] == path


def test_activity_keeps_the_session_alive(portal: TestClient, clock: FixedClock) -> None:
    sign_in(portal, "pat@essex.gov.uk")
    portal.get("/applications")
    for _ in range(4):  # two hours, never 30 minutes idle
        clock.advance(timedelta(minutes=29))
        assert portal.get("/applications", follow_redirects=False).status_code == 200


def test_section_saved_after_time_out_says_it_was_not_saved(
    portal: TestClient, clock: FixedClock
) -> None:
    sign_in(portal, "pat@essex.gov.uk")
    base = start(portal, launch())
    path = f"{base}/section/place"
    token = csrf(portal.get(path).text)
    clock.advance(timedelta(minutes=45))

    answer = portal.post(
        path, data={"ambition": "Typed while away", "csrf_token": token}, follow_redirects=False
    )

    assert answer.status_code == 401
    assert "You have been signed out" in answer.text
    assert "had not done anything for 30 minutes" in answer.text
    assert "has not been saved" in answer.text and 'href="/sign-in"' in answer.text
    assert stored_answers() == {}


def test_autosave_after_time_out_answers_json_and_saves_nothing(
    portal: TestClient, clock: FixedClock
) -> None:
    sign_in(portal, "pat@essex.gov.uk")
    base = start(portal, launch())
    path = f"{base}/section/place"
    token = csrf(portal.get(path).text)
    clock.advance(timedelta(minutes=30))

    answer = autosave(portal, path, {"ambition": "Typed while away"}, token=token)

    assert answer.status_code == 401
    assert answer.json()["saved"] is False
    assert answer.json()["message"].startswith("Not saved: you were signed out")
    assert stored_answers() == {}


def test_autosave_is_activity_and_status_is_not(portal: TestClient, clock: FixedClock) -> None:
    sign_in(portal, "pat@essex.gov.uk")
    base = start(portal, launch())
    path = f"{base}/section/place"
    token = csrf(portal.get(path).text)
    clock.advance(timedelta(minutes=20))
    assert autosave(portal, path, {"ambition": "Typing"}, token=token).status_code == 200
    clock.advance(timedelta(minutes=20))  # 40 minutes after the page, 20 after the autosave

    status = portal.get("/session/status").json()
    assert status == {"signed_in": True, "remaining_seconds": 600}
    clock.advance(timedelta(minutes=9))
    assert portal.get("/session/status").json()["remaining_seconds"] == 60  # not extended
    clock.advance(timedelta(minutes=1))
    assert portal.get("/session/status").json() == {"signed_in": False, "remaining_seconds": 0}


def test_keep_alive_needs_csrf_and_extends_the_session(
    portal: TestClient, clock: FixedClock
) -> None:
    sign_in(portal, "pat@essex.gov.uk")
    token = csrf(portal.get("/applications").text)
    clock.advance(timedelta(minutes=28))

    assert portal.post("/session/keep-alive").status_code == 403
    kept = portal.post("/session/keep-alive", headers={"X-CSRF-Token": token})

    assert kept.status_code == 200 and kept.json() == {"signed_in": True, "remaining_seconds": 1800}
    clock.advance(timedelta(minutes=28))
    assert portal.get("/applications", follow_redirects=False).status_code == 200


def test_timed_out_page_sends_an_expired_session_to_sign_in_and_back(
    portal: TestClient, clock: FixedClock
) -> None:
    sign_in(portal, "pat@essex.gov.uk")
    portal.get("/applications")

    live = portal.get("/session/timed-out?back=/applications", follow_redirects=False)
    assert live.status_code == 303 and live.headers["location"] == "/applications"
    elsewhere = portal.get("/session/timed-out?back=//evil.example/", follow_redirects=False)
    assert elsewhere.headers["location"] == "/"
    clock.advance(timedelta(minutes=30))

    ended = portal.get("/session/timed-out?back=/applications", follow_redirects=False)

    assert ended.status_code == 303 and ended.headers["location"] == "/sign-in"
    assert "had not done anything for 30 minutes" in portal.get("/sign-in").text


def test_signed_in_pages_carry_the_idle_limit_for_the_warning(
    cbflow_env: Settings, clock: FixedClock
) -> None:
    settings = cbflow_env.model_copy(update={"session_idle_minutes": 5})
    with TestClient(create_app(settings, clock=clock)) as client:
        assert "cbflow-session-idle-seconds" not in client.get("/").text
        sign_in(client, "pat@essex.gov.uk")
        page = client.get("/applications").text
        assert '<meta name="cbflow-session-idle-seconds" content="300">' in page
        assert '<script type="module" src="/static/session-timeout.js"></script>' in page
        clock.advance(timedelta(minutes=5))
        assert client.get("/applications", follow_redirects=False).status_code == 303
        assert "for 5 minutes" in client.get("/sign-in").text
