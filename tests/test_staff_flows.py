"""Staff actions against a real Prefect server and the flow runner `cbflow serve` starts: the
page starts a flow run, the runner does the work, the page follows the run. A prospectus no test
has seen, launched from the staff page, yields forms councils can fill in and submit."""

from __future__ import annotations

import os
import re
import time
from datetime import date
from html import escape

import pytest
import unseen
from conftest import london
from fastapi.testclient import TestClient
from portal import add_user, csrf, section_form, sign_in
from sqlmodel import select

from cbflow import simulate
from cbflow.clock import FixedClock
from cbflow.db import session_scope
from cbflow.models import Application, Council, StartedRun
from cbflow.services import rounds
from cbflow.settings import Settings
from cbflow.web import create_app

pytestmark = pytest.mark.slow

STAFF = "programme.lead@staff.example"
COUNCIL = "bids@essex.example"


def wait_for_run(client: TestClient, location: str, timeout: float = 120) -> str:
    """Follow a run's page until it says the run has finished; returns that page."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        page = client.get(location)
        assert page.status_code == 200
        if 'data-run-final="yes"' in page.text:
            return page.text
        time.sleep(0.5)
    raise AssertionError(f"the run at {location} did not finish within {timeout:.0f} s")


def test_a_prospectus_never_seen_launched_from_the_staff_page_yields_working_forms(
    flow_runner: Settings,
) -> None:
    seed = int.from_bytes(os.urandom(4), "big")
    slug, text = unseen.prospectus(
        seed, opens=date(2011, 10, 17), closes=date(2011, 11, 30), decision=date(2012, 1, 16)
    )
    clock = FixedClock(london(2011, 11, 1, 10, 0))
    # the test's clock is in 2011: scheduled deadline runs would fall due at once in real time
    settings = flow_runner.model_copy(update={"schedule_deadlines": False})
    add_user(STAFF, "staff", name="Programme lead")
    add_user(COUNCIL, "applicant", council="ESS", name="Essex bids team")

    with TestClient(create_app(settings, clock=clock)) as staff:
        sign_in(staff, STAFF)
        form = staff.get("/staff/launch").text
        started = staff.post(
            "/staff/launch",
            data={"csrf_token": csrf(form), "nonce": "launch-1"},
            files={"prospectus": (f"{slug}.yaml", text.encode(), "application/x-yaml")},
            follow_redirects=False,
        )
        assert started.status_code == 303, f"seed {seed}: {started.text[:2000]}"
        location = started.headers["location"]
        finished = wait_for_run(staff, location)
        assert "The flow run has finished" in finished, f"seed {seed}"
        assert f"/runs/flow-run/{location.rsplit('/', 1)[1]}" in finished  # the Prefect UI link
        # the same form sent again starts nothing new
        again = staff.post(
            "/staff/launch",
            data={"csrf_token": csrf(form), "nonce": "launch-1"},
            files={"prospectus": (f"{slug}.yaml", text.encode(), "application/x-yaml")},
            follow_redirects=False,
        )
        assert again.status_code == 400 and "already been launched" in again.text
        with session_scope() as session:
            round_ = rounds.get_round(session, slug)
            assert round_.launched_by == STAFF
            prospectus = rounds.prospectus_of(round_)
            assert len(session.exec(select(StartedRun)).all()) == 1
            essex = session.get(Council, "ESS")
            assert essex is not None
            answers = simulate.answers_for(
                prospectus.stages.eoi.form,
                essex,
                prospectus,
                seed=seed,
                councils_by_type=simulate.councils_by_type([essex]),
            )

    with TestClient(create_app(settings, clock=clock)) as council:
        sign_in(council, COUNCIL)
        listing = council.get("/applications")
        assert prospectus.title in listing.text
        begun = council.post(
            "/applications/start",
            data={"round": slug, "csrf_token": csrf(listing.text)},
            follow_redirects=False,
        )
        assert begun.status_code == 303
        base = begun.headers["location"].rstrip("/")
        tasks = council.get(base, follow_redirects=True)
        base = str(tasks.url).rstrip("/")
        for section in prospectus.stages.eoi.form.sections:
            assert escape(section.title) in tasks.text
            path = f"{base}/section/{section.id}"
            page = council.get(path)
            assert page.status_code == 200
            for question in section.questions:
                if question.show_if is None:
                    assert escape(question.label) in page.text, f"seed {seed}: {question.id}"
            data, files = section_form(section, answers)
            saved = council.post(
                path,
                data={**data, "csrf_token": csrf(page.text)},
                files=files or None,
                follow_redirects=False,
            )
            assert saved.status_code == 303, (
                f"seed {seed}: {re.sub(r'<[^>]+>', ' ', saved.text)[:3000]}"
            )
        check = council.get(f"{base}/check")
        assert check.status_code == 200
        submitted = council.post(
            f"{base}/submit",
            data={"declaration": "agreed", "csrf_token": csrf(check.text)},
            follow_redirects=False,
        )
        assert submitted.status_code == 303, f"seed {seed}"

    with session_scope() as session:
        application = session.exec(select(Application)).one()
        assert application.state == "eoi_submitted"
        for question_id, value in answers.items():
            stored = application.eoi_answers.get(question_id)
            if isinstance(value, dict) and "sha256" in value:
                assert stored["name"] == value["name"]
            else:
                assert stored is not None, f"seed {seed}: {question_id} was not kept"
