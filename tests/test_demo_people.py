"""The demo's people: one for each role, each signed in with one press on the sign-in page in
demo mode and landing in a workspace with the demo round's data; outside demo mode nobody can be
signed in that way."""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime
from pathlib import Path

import pytest
from conftest import ROUTE_OPEN, edit, example_text
from fastapi.testclient import TestClient
from portal import add_user, csrf
from sqlmodel import select
from typer.testing import CliRunner

from cbflow import demo, demo_people, stages
from cbflow.cli import DEMO_MARK, app
from cbflow.db import session_scope
from cbflow.models import Application, Assignment, AuditEvent, Council, User
from cbflow.settings import Settings, get_settings
from cbflow.web import create_app

NOW = datetime(2014, 6, 1, 9, 0, tzinfo=UTC)


@pytest.fixture
def demo_round(cbflow_env: Settings, tmp_path: Path) -> demo_people.Cast:
    """The example round simulated end to end, with the demo's people added as `serve` does."""
    with session_scope() as session:
        demo_people.add_staff_and_assessors(session, now=NOW)
    path = tmp_path / "with-route.yaml"  # a council adopts the model through the route
    path.write_text(edit(example_text(), ROUTE_OPEN), encoding="utf-8")
    summary = asyncio.run(demo.run(path, stages=stages, council_count=10, log=lambda _: None))
    with session_scope() as session:
        return demo_people.add_council_officers(session, round_slug=summary.round, now=NOW)


def _client(settings: Settings, *, demo_mode: bool) -> TestClient:
    return TestClient(create_app(settings.model_copy(update={"demo": demo_mode})))


def _press(client: TestClient, email: str) -> str:
    """Press Sign in beside the person on the sign-in page; returns where it leads."""
    page = client.get("/sign-in").text
    assert email in page
    answer = client.post(
        "/demo/sign-in", data={"email": email, "csrf_token": csrf(page)}, follow_redirects=False
    )
    assert answer.status_code == 303, answer.text
    return str(answer.headers["location"])


def test_each_demo_person_signs_in_with_one_press_and_reaches_their_workspace(
    cbflow_env: Settings, demo_round: demo_people.Cast
) -> None:
    roles = [person.role for person in demo_round.people]
    assert roles.count("admin") == 1 and roles.count("staff") == 1
    assert roles.count("assessor") == 3
    assert roles.count("applicant") >= 3, "a selected place, one not selected, an adopter"
    with session_scope() as session:
        councils = {c.code: c.name for c in session.exec(select(Council))}
        adopted = session.exec(
            select(Application).where(Application.adopted_from_model_id != None)  # noqa: E711
        ).first()
        assert adopted is not None
        jo = demo_people.people(session)
        assessors = {u.id for u in jo if u.role == "assessor"}
        assigned = session.exec(
            select(Assignment).where(Assignment.assessor_id.in_(assessors))  # type: ignore[union-attr]
        ).all()
    assert assigned, "the demo's assessors were given bids to score"
    applicants = [p for p in demo_round.people if p.role == "applicant"]
    assert any(p.start == f"/applications/{adopted.id}" for p in applicants)

    for person in demo_round.people:
        client = _client(cbflow_env, demo_mode=True)
        landed = _press(client, person.email)
        assert landed == person.start, person
        workspace = client.get(landed)
        assert workspace.status_code == 200, (person, workspace.text[:300])
        text = re.sub(r"\s+", " ", workspace.text)
        assert person.name.split(" (")[0] in text, "the page says who is signed in"
        if person.role == "staff":
            assert "Whole-place community budgets" in text
        if person.role == "applicant":
            code = re.search(r"\((.+)\)", person.name)
            assert code is not None and code.group(1) in councils.values()
            assert code.group(1) in text, "the officer sees their council's application"
    assert len(demo_round.tries) == 3
    assert all(t.path.startswith("/") for t in demo_round.tries)


def test_outside_demo_mode_the_demo_sign_in_does_not_exist(
    cbflow_env: Settings, demo_round: demo_people.Cast
) -> None:
    client = _client(cbflow_env, demo_mode=False)
    page = client.get("/sign-in").text
    assert "Demo people" not in page
    assert "@demo.example" not in page
    admin = demo_round.people[0].email
    refused = client.post(
        "/demo/sign-in", data={"email": admin, "csrf_token": csrf(page)}, follow_redirects=False
    )
    assert refused.status_code == 404
    assert client.get("/admin/people", follow_redirects=False).status_code in (303, 401, 403)


def test_demo_mode_signs_in_nobody_but_the_demo_people(cbflow_env: Settings) -> None:
    add_user("chief@devon.gov.uk", "admin", name="A real administrator")
    with session_scope() as session:
        demo_people.add_staff_and_assessors(session, now=NOW)
        added = session.exec(select(AuditEvent).where(AuditEvent.action == "user_added")).all()
    assert len(added) == 5, "each demo person's arrival is audited"
    client = _client(cbflow_env, demo_mode=True)
    page = client.get("/sign-in").text
    assert "A real administrator" not in page
    for email in ("chief@devon.gov.uk", "nobody@demo.example", "x" * 400):
        refused = client.post(
            "/demo/sign-in", data={"email": email, "csrf_token": csrf(page)}, follow_redirects=False
        )
        assert refused.status_code in (400, 404), email
    assert client.get("/admin/people", follow_redirects=False).status_code in (303, 401, 403)
    # adding them again (a continued demo) adds nobody twice
    with session_scope() as session:
        demo_people.add_staff_and_assessors(session, now=NOW)
        assert len(demo_people.people(session)) == 5
        assert session.exec(select(User).where(User.email == "jo.evans@demo.example")).one()


def test_serve_demo_refuses_to_empty_a_folder_it_did_not_make(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = tmp_path / "data"
    (data / "demo").mkdir(parents=True)
    (data / "demo" / "precious.txt").write_text("a real round's notes")
    # what `serve --demo` points itself at, put back after the test
    monkeypatch.setenv("CBFLOW_DATA_DIR", str(data))
    monkeypatch.setenv("CBFLOW_DATABASE_URL", "")
    monkeypatch.setenv("CBFLOW_DEMO", "false")
    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(app, ["serve", "--demo"])
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 1
    assert "was not made by the demo" in result.output
    assert (data / "demo" / "precious.txt").read_text() == "a real round's notes"
    assert not (data / "demo" / DEMO_MARK).exists()
