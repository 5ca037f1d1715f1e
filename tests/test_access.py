"""Who may see and do what: every page and every form post of the portal, for every role.

The routes are read from the application itself, so a page added without a rule here fails this
test. Each role signs in for real; every GET answers as the rules say; every POST from someone
not allowed is refused (403, or a redirect to sign in) and changes nothing; every POST without
its CSRF token is refused, even from someone allowed."""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import round_walk
from conftest import london
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from portal import add_user, sign_in
from sqlmodel import func, select

from cbflow.clock import FixedClock
from cbflow.db import session_scope
from cbflow.models import (
    Application,
    Assignment,
    AuditEvent,
    Document,
    ModerationTask,
    PublishedModel,
    StartedRun,
    User,
)
from cbflow.settings import Settings
from cbflow.web import create_app

# who each part of the portal is for; anything else is 403 (or sign in, when nobody is)
OWNERS = {
    "staff": {"staff", "admin"},
    "admin": {"admin"},
    "applications": {"applicant"},
    "assess": {"assessor"},
    "models": {"applicant"},
    "sign-off": {"certifier"},
    "support": {"provider"},
    "adoptions": {"applicant"},  # an adoption through the rolling route
    "pilots": {"applicant"},
}
# /demo/sign-in answers 404 to everyone outside demo mode (tests/test_demo_people.py)
PUBLIC = {"", "sign-in", "signed-out", "healthz", "sign-out", "session", "demo", "partner"}
PUBLIC |= {"rounds"}  # a round's dates and the changes to its prospectus
ROLES = [
    "anonymous",
    "applicant",
    "other-applicant",
    "assessor",
    "other-assessor",
    "certifier",
    "other-certifier",
    "staff",
    "admin",
    "provider",
]
# objects whose pages belong to one council or one assessor: the others get 404, never 403, so
# they learn nothing of what exists
OWN_ONLY = {
    "other-applicant": "/applications/{application_id}",
    "other-assessor": "/assess/",
    "other-certifier": "/sign-off/",
}
# (route, role) pairs whose object the world below does not hold: found to be missing (404)
MISSING = {
    "/staff/rounds/{slug}/applications/{application_id}/files/{sha256}",
    # the world's round takes councils on their own: its applications have no partnership
    "/applications/{application_id}/partnership",
    # nor does it ask for sign-off: nothing was sent to a certifier
    "/sign-off/{application_id}/{stage}",
    # nor does it ask for partners' contributions
    "/applications/{application_id}/partners",
    # nor did anyone ask for clarification
    "/applications/{application_id}/clarifications/{clarification_id}",
    "/sign-off/clarifications/{clarification_id}/reply",
    # nor does its prospectus offer support
    "/applications/{application_id}/support/{offer_id}",
    # nor has the programme board's pack been produced
    "/staff/board/packs/{pack_id}",
    # nor has it an adoption through the rolling route (tests/test_adoption_route.py)
    "/adoptions/{application_id}",
}
# a place's own officers do not follow it: its pages under /pilots are not found for them
NOT_FOR_ITSELF = {"applicant": "/pilots/{application_id}"}
MISSING |= {"/pilots/{application_id}/documents/{document_id}"}  # the world's is no report
# pages that send their owner on to the page that applies now
REDIRECTS = {"/applications/{application_id}"}


@dataclass
class World:
    values: dict[str, str]
    emails: dict[str, str]


@pytest.fixture
def world(cbflow_env: Settings) -> World:
    """The format example's round walked to a published model of Birmingham's place (see
    round_walk): every stage has its records, every object its page. Bolton is the other
    council; one assessor is on no application at all."""
    model_id = round_walk.to_publication()
    add_user("nobody@assessors.example", "assessor", name="Zoe Zed")
    with session_scope() as session:
        model = session.get(PublishedModel, model_id)
        assert model is not None
        birmingham = session.get(Application, model.application_id)
        assert birmingham is not None and birmingham.id is not None
        assignment = session.exec(
            select(Assignment).where(Assignment.application_id == birmingham.id)
        ).first()
        assert assignment is not None
        mine = session.get(User, assignment.assessor_id)
        task = session.exec(select(ModerationTask)).first()
        # a document the model's page serves: its own replication pack
        document_id = session.exec(
            select(Document.id).where(
                Document.key == f"{birmingham.reference}/replication_pack/v{model.version}"
            )
        ).one()
        run_id = str(uuid.uuid4())
        session.add(
            StartedRun(
                flow_run_id=run_id,
                flow="publish-model",
                title="Publish a replication model",
                round_id=birmingham.round_id,
                started_by="lead@staff.example",
                started_at=round_walk.PUBLISH_DAY,
            )
        )
        values = {
            "slug": round_walk.SLUG,
            "application_id": str(birmingham.id),
            "stage": "eoi",
            "section_id": "place",
            "run_id": run_id,
            "document_id": str(document_id),
            "sha256": "0" * 64,
            "assignment_id": str(assignment.id),
            "task_id": str(task.id if task else 1),
            "action": "assign",
            "token": "not-a-token",
            "model_id": str(model_id),
            "period": "1",
            "kind": "ocds",
            "council_code": "BOL",
            "contribution_id": "1",
            "clarification_id": "1",
            "offer_id": "lga-peer-challenge",
            "request_id": "1",
            "pack_id": "1",
            "milestone_id": "1",
        }
        assert mine is not None
        emails = {"assessor": mine.email, "other-assessor": "nobody@assessors.example"}
    add_user("bids@birmingham.example", "applicant", council="BIR")
    add_user("bids@bolton.example", "applicant", council="BOL")
    add_user("lead@staff.example", "staff")
    add_user("admin@cbflow.example", "admin")
    add_user("ceo@birmingham.example", "certifier", council="BIR")
    add_user("ceo@bolton.example", "certifier", council="BOL")
    with session_scope() as session:
        session.add(
            User(
                email="help@lga.example",
                name="Lee Ash",
                role="provider",
                provider="Local Government Association",
            )
        )
    emails |= {
        "certifier": "ceo@birmingham.example",
        "other-certifier": "ceo@bolton.example",
        "applicant": "bids@birmingham.example",
        "other-applicant": "bids@bolton.example",
        "staff": "lead@staff.example",
        "admin": "admin@cbflow.example",
        "provider": "help@lga.example",
    }
    return World(values, emails)


@pytest.fixture
def clients(cbflow_env: Settings, world: World) -> Iterator[dict[str, TestClient]]:
    clock = FixedClock(london(2011, 12, 12, 10, 0))
    opened: dict[str, TestClient] = {}
    for role in ROLES:
        client = TestClient(create_app(cbflow_env, clock=clock))
        client.__enter__()
        if role != "anonymous":
            sign_in(client, world.emails[role])
        opened[role] = client
    yield opened
    for client in opened.values():
        client.__exit__(None, None, None)


def routes(app: Any) -> list[tuple[str, str]]:
    found = []
    for entry in app.routes:
        router = getattr(entry, "original_router", None)
        candidates = router.routes if router is not None else [entry]
        for route in candidates:
            if isinstance(route, APIRoute):
                found += [(method, route.path) for method in sorted(route.methods)]
    return found


def fill(template: str, values: dict[str, str]) -> str:
    def value(match: re.Match[str]) -> str:
        name = match.group(1)
        assert name in values, f"no value for {{{name}}} in {template}: add one to the world"
        return values[name]

    return re.sub(r"\{(\w+)\}", value, template)


def expected_get(role: str, template: str) -> int:
    part = template.strip("/").split("/")[0]
    if part in PUBLIC:
        if template == "/session/timed-out":  # on to sign in, or back where the session was
            return 303
        return 400 if "{token}" in template else 200
    owners = OWNERS.get(part)
    assert owners is not None, f"{template}: which roles is it for? add it to OWNERS"
    if role == "anonymous":
        return 303
    if role.removeprefix("other-") not in owners:
        return 403
    if role in OWN_ONLY and template.startswith(OWN_ONLY[role]) and "{" in template:
        return 404
    if template in MISSING:
        return 404
    if role in NOT_FOR_ITSELF and template.startswith(NOT_FOR_ITSELF[role]):
        return 404
    return 303 if template in REDIRECTS else 200


def test_every_page_answers_each_role_as_the_rules_say(
    clients: dict[str, TestClient], world: World
) -> None:
    app = clients["staff"].app
    pages = [path for method, path in routes(app) if method == "GET"]
    assert len(pages) >= 20
    wrong = []
    for template in pages:
        url = fill(template, world.values)
        for role in ROLES:
            answer = clients[role].get(url, follow_redirects=False)
            want = expected_get(role, template)
            if answer.status_code != want:
                wrong.append(f"{role:15} GET {template}: {answer.status_code}, expected {want}")
            if want == 303 and role == "anonymous":
                assert answer.headers["location"].startswith("/sign-in")
            if want in (403, 404):
                # nothing leaks: the page is the service's own error page, naming nothing
                assert world.values["slug"] not in answer.text or want == 403
    assert wrong == [], "\n".join(wrong)


def snapshot() -> tuple[int, list[tuple[str, str]], int]:
    with session_scope() as session:
        events = session.exec(select(func.count()).select_from(AuditEvent)).one()
        states = [(a.reference, a.state) for a in session.exec(select(Application))]
        people = session.exec(select(func.count()).select_from(User)).one()
    return events, sorted(states), people


def csrf_of(client: TestClient) -> str:
    page = client.get("/sign-in")
    match = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert match is not None
    return match.group(1)


def test_every_form_post_is_refused_to_those_it_is_not_for_and_changes_nothing(
    clients: dict[str, TestClient], world: World
) -> None:
    app = clients["staff"].app
    posts = [path for method, path in routes(app) if method == "POST"]
    before = snapshot()
    wrong = []
    for template in posts:
        part = template.strip("/").split("/")[0]
        if part in PUBLIC:
            continue
        url = fill(template, world.values)
        owners = OWNERS[part]
        for role in ROLES:
            client = clients[role]
            data = {"csrf_token": csrf_of(client), "reason": "x", "decision": "pass"}
            if role.removeprefix("other-") in owners:
                # allowed in principle; without the token it is refused all the same
                answer = client.post(url, data={"reason": "x"}, follow_redirects=False)
                if answer.status_code != 403 or "Your session has expired" not in answer.text:
                    wrong.append(f"{role:15} POST {template} without CSRF: {answer.status_code}")
                continue
            answer = client.post(url, data=data, follow_redirects=False)
            want = 303 if role == "anonymous" else 403
            if answer.status_code != want:
                wrong.append(f"{role:15} POST {template}: {answer.status_code}, expected {want}")
    assert wrong == [], "\n".join(wrong)
    assert snapshot() == before, "a refused post changed something"


# the smallest number no database id can be, a longer one, and an id that is no number at all
BEYOND_IDS = ("9223372036854775808", "1" * 40, "twelve")


def test_an_id_beyond_the_databases_range_is_a_page_not_found(
    clients: dict[str, TestClient], world: World
) -> None:
    """Every page and post with an id in its address, asked for by someone allowed to use it,
    with an id no database can hold (or no number): answered 404 at once, never a 500 or a
    bare validation error, and nothing changes."""
    app = clients["staff"].app
    role_for = {"staff": "staff", "admin": "admin", "applications": "applicant"}
    role_for |= {"assess": "assessor", "models": "applicant", "support": "provider"}
    role_for |= {"pilots": "applicant"}
    before = snapshot()
    checked, wrong = 0, []
    for method, template in routes(app):
        ids = [n for n in re.findall(r"\{(\w+)\}", template) if n.endswith("_id")]
        part = template.strip("/").split("/")[0]
        if not ids or part not in role_for:
            continue
        for beyond in BEYOND_IDS:
            url = fill(template, world.values | {name: beyond for name in ids})
            client = clients[role_for[part]]
            data = {"csrf_token": csrf_of(client)} if method == "POST" else None
            for _ in range(2):  # a second over is asked again once: a hiccup of the machine
                started = time.monotonic()  # passes, a page that is slow to refuse does not
                answer = client.request(method, url, data=data, follow_redirects=False)
                took = time.monotonic() - started
                if took <= 1:
                    break
            checked += 1
            if answer.status_code != 404 or "Page not found" not in answer.text or took > 1:
                wrong.append(f"{method} {template}: {answer.status_code} in {took:.2f} s")
    assert checked >= 60  # every kind of id: applications, documents, models, assignments...
    assert wrong == [], "\n".join(wrong)
    assert snapshot() == before


def test_the_people_page_refuses_a_hostile_address_or_name_at_once(
    clients: dict[str, TestClient],
) -> None:
    admin = clients["admin"]
    before = snapshot()
    for email, name, said in (
        ("a@" + "." * 40_000 + "@", "Ada", "Email address must be 254 characters or fewer"),
        ("ada@example.gov.uk", "A" * 201, "name must be 200 characters or fewer"),
    ):
        started = time.monotonic()
        answer = admin.post(
            "/admin/people",
            data={"email": email, "name": name, "role": "staff", "csrf_token": csrf_of(admin)},
        )
        assert time.monotonic() - started < 1
        assert answer.status_code == 400 and said in answer.text
    assert snapshot() == before
