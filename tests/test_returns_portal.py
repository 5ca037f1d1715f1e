"""A selected council makes its implementation returns through the portal: a round driven by its
stage events to implementation, the council's periods with due dates and statuses, the returns
form drawn and checked like the application forms, a check-your-answers step, one submission
however often it is sent, with its audit event and payment by results; errors per field; nobody
else's returns."""

from __future__ import annotations

import html
import re
import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
from conftest import london
from fastapi.testclient import TestClient
from portal import serving
from sqlmodel import select
from test_idempotency import (
    ASSESS_DAY,
    BID_CLOSE,
    BID_DAY,
    DECIDE_DAY,
    EOI_CLOSE,
    EOI_DAY,
    FINAL_DAY,
    INVITE_DAY,
    LAUNCH_AT,
    SOURCE,
    START_DAY,
    add_assessors,
    score_everything,
    start_and_submit_eoi,
    submit_bid,
)
from test_portal_commits import sign_in_over_http
from test_portal_forms import csrf, sign_in

from cbflow import stages
from cbflow.clock import FixedClock
from cbflow.db import session_scope
from cbflow.models import Application, AuditEvent, ReturnRecord, User
from cbflow.services import applications
from cbflow.settings import Settings
from cbflow.web import create_app

SLUG = "whole-place-2011"
RETURN_DAY = london(2012, 7, 5, 9, 0)  # period 1 (April to June) is open, due by 14 July
LATE_DAY = london(2012, 7, 20, 9, 0)
GOOD = {"families_attached": "40", "families_turned_around": "5", "narrative": "A good start."}


@pytest.fixture
def round_refs(cbflow_env: Settings) -> dict[str, str]:
    """The round taken to implementation by its stage events: Birmingham and Bolton selected,
    Bradford on the reserve list. Council code -> reference."""
    stages.launch(SOURCE, "returns.yaml", now=LAUNCH_AT)
    refs = {
        council: start_and_submit_eoi(SLUG, council, EOI_DAY + timedelta(minutes=n))
        for n, council in enumerate(["BIR", "BOL", "BRD"])
    }
    stages.close_eoi(SLUG, now=EOI_CLOSE)
    stages.invite_to_bid(SLUG, now=INVITE_DAY)
    for n, reference in enumerate(refs.values()):
        submit_bid(reference, BID_DAY + timedelta(minutes=n))
    stages.close_bids(SLUG, now=BID_CLOSE)
    add_assessors()
    stages.assign_assessors(SLUG, now=ASSESS_DAY)
    score_everything(SLUG)
    stages.finalise_assessment(SLUG, now=FINAL_DAY)
    stages.decide(SLUG, now=DECIDE_DAY)
    stages.start_implementation(SLUG, now=START_DAY)
    return refs


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(RETURN_DAY)


@pytest.fixture
def birmingham(
    cbflow_env: Settings, round_refs: dict[str, str], clock: FixedClock
) -> Iterator[TestClient]:
    with TestClient(create_app(cbflow_env, clock=clock)) as client:
        sign_in(client, "bea@birmingham.gov.uk", "BIR")
        yield client


def base_of(reference: str) -> str:
    with session_scope() as session:
        return f"/applications/{applications.get_application(session, reference).id}/returns"


def hidden_fields(page: str) -> dict[str, str]:
    pairs = re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)">', page)
    return {name: html.unescape(value) for name, value in pairs}


def record_of(reference: str, period: int) -> ReturnRecord:
    with session_scope() as session:
        application = applications.get_application(session, reference)
        record_ = session.exec(
            select(ReturnRecord).where(
                ReturnRecord.application_id == application.id, ReturnRecord.period == period
            )
        ).one()
        session.expunge(record_)
        return record_


def return_events(reference: str) -> list[AuditEvent]:
    with session_scope() as session:
        application = applications.get_application(session, reference)
        events = list(
            session.exec(
                select(AuditEvent).where(
                    AuditEvent.entity == "application",
                    AuditEvent.entity_id == application.id,
                    AuditEvent.action == "return_submitted",
                )
            )
        )
        for event in events:
            session.expunge(event)
        return events


def check(client: TestClient, path: str, data: dict[str, str]) -> Any:
    token = csrf(client.get(path).text)
    return client.post(path, data={**data, "csrf_token": token}, follow_redirects=False)


def test_selected_council_checks_and_submits_a_return_once(
    birmingham: TestClient, round_refs: dict[str, str]
) -> None:
    reference = round_refs["BIR"]
    base = base_of(reference)
    home = birmingham.get("/applications")
    assert "Implementing" in home.text and f'href="{base}"' in home.text
    assert birmingham.get(base.removesuffix("/returns"), follow_redirects=False).headers[
        "location"
    ] == (base)

    listing = birmingham.get(base).text
    assert "1 April 2012 to 30 June 2012" in listing and "by the end of 14 July 2012" in listing
    assert "Due by the end of 14 July 2012" in listing
    assert listing.count("Not yet open") == 3 and "Opens on 1 October 2012" in listing
    assert f'href="{base}/1"' in listing and f'href="{base}/2"' not in listing
    assert "Operational plan agreed" in listing  # the milestones too

    form = birmingham.get(f"{base}/1").text
    assert 'name="families_attached"' in form and 'name="narrative"' in form
    checked = check(birmingham, f"{base}/1", GOOD)
    assert checked.status_code == 200
    assert "Check your return before submitting it" in checked.text
    assert "A good start." in checked.text
    assert "Payment by results for this return: <strong>£132,000.00</strong>" in checked.text
    fields = hidden_fields(checked.text)
    assert {k: fields[k] for k in GOOD} == GOOD

    first = birmingham.post(f"{base}/1/submit", data=fields, follow_redirects=False)
    second = birmingham.post(f"{base}/1/submit", data=fields, follow_redirects=False)

    assert first.status_code == second.status_code == 303
    assert first.headers["location"] == second.headers["location"] == f"{base}/1/submitted"
    record_ = record_of(reference, 1)
    assert record_.answers == {
        "families_attached": 40,
        "families_turned_around": 5,
        "narrative": "A good start.",
    }
    assert record_.submitted_at == RETURN_DAY
    assert record_.payment_pence == 13_200_000  # 40 x £3,200 + 5 x £800
    events = return_events(reference)
    assert [(e.actor, e.reason) for e in events] == [("bea@birmingham.gov.uk", "period 1")]
    confirmation = birmingham.get(f"{base}/1/submitted").text
    assert "Return submitted" in confirmation and "£132,000.00" in confirmation
    assert "1 April 2012 to 30 June 2012" in confirmation
    listing = birmingham.get(base).text
    assert "Submitted at 09:00 on 5 July 2012 (BST)" in listing
    assert f'href="{base}/1">View' in listing
    # a submitted return cannot be checked or changed again
    again = check(birmingham, f"{base}/1", GOOD | {"families_attached": "400"})
    assert again.status_code == 303 and record_of(reference, 1).answers["families_attached"] == 40


def test_errors_are_shown_per_field_and_nothing_is_stored(
    birmingham: TestClient, round_refs: dict[str, str]
) -> None:
    base = base_of(round_refs["BIR"])
    bad = {"families_attached": "", "families_turned_around": "-3", "narrative": "word " * 301}

    checked = check(birmingham, f"{base}/1", bad)
    submitted = birmingham.post(
        f"{base}/1/submit",
        data={**bad, "csrf_token": csrf(birmingham.get(f"{base}/1").text)},
        follow_redirects=False,
    )

    for answer in (checked, submitted):
        assert answer.status_code == 400
        assert "There is a problem" in answer.text
        assert 'href="#families_attached"' in answer.text
        assert 'href="#families_turned_around"' in answer.text
        assert 'href="#narrative"' in answer.text
        assert "This question must be answered" in answer.text
        assert "300 words or fewer" in answer.text
        assert 'value="-3"' in answer.text  # what was typed is kept
    assert record_of(round_refs["BIR"], 1).submitted_at is None
    assert return_events(round_refs["BIR"]) == []


@pytest.mark.parametrize(
    ("typed", "error"),
    [
        ("1e1000000", "enter the number in full"),  # 26 s of a process, then a 500
        ("1e30", "enter the number in full"),  # a 500 where the question has a step
        ("1" + "0" * 22, "at most 15 digits"),  # passed the check, then a 500 on submit
        ("9" * 100_000, "at most 15 digits"),
    ],
)
def test_a_number_too_big_or_in_exponent_form_is_refused_within_a_second(
    birmingham: TestClient, round_refs: dict[str, str], typed: str, error: str
) -> None:
    base = base_of(round_refs["BIR"])
    data = {**GOOD, "families_attached": typed}
    token = csrf(birmingham.get(f"{base}/1").text)

    for path in (f"{base}/1", f"{base}/1/submit"):
        for _ in range(2):  # a second over is asked again once: a hiccup of the machine passes,
            started = time.monotonic()  # a refusal that is slow to come does not
            answer = birmingham.post(
                path, data={**data, "csrf_token": token}, follow_redirects=False
            )
            took = time.monotonic() - started
            if took < 1:
                break
        assert took < 1
        assert answer.status_code == 400
        assert 'href="#families_attached"' in answer.text and error in answer.text
    assert record_of(round_refs["BIR"], 1).submitted_at is None
    assert return_events(round_refs["BIR"]) == []


def test_change_from_the_check_page_keeps_what_was_typed(
    birmingham: TestClient, round_refs: dict[str, str]
) -> None:
    base = base_of(round_refs["BIR"])
    fields = hidden_fields(check(birmingham, f"{base}/1", GOOD).text)

    change = birmingham.post(f"{base}/1", data=fields | {"action": "change"})

    assert change.status_code == 200
    assert 'value="40"' in change.text and "A good start.</textarea>" in change.text
    assert record_of(round_refs["BIR"], 1).submitted_at is None


def test_a_period_not_yet_over_cannot_be_returned(
    birmingham: TestClient, round_refs: dict[str, str]
) -> None:
    base = base_of(round_refs["BIR"])
    token = csrf(birmingham.get(base).text)

    page = birmingham.get(f"{base}/2").text
    answer = birmingham.post(f"{base}/2/submit", data=GOOD | {"csrf_token": token})

    assert "Not yet open" in page and 'name="families_attached"' not in page
    assert answer.status_code == 400
    assert "This return cannot be made yet. Opens on 1 October 2012." in answer.text
    assert record_of(round_refs["BIR"], 2).submitted_at is None


def test_overdue_return_is_marked_in_words_and_can_still_be_made_late(
    cbflow_env: Settings, round_refs: dict[str, str]
) -> None:
    with TestClient(create_app(cbflow_env, clock=FixedClock(LATE_DAY))) as bolton:
        sign_in(bolton, "bob@bolton.gov.uk", "BOL")
        base = base_of(round_refs["BOL"])
        listing = bolton.get(base).text
        assert "Overdue" in listing and "Was due by the end of 14 July 2012" in listing
        assert "govuk-tag--red" in listing

        fields = hidden_fields(check(bolton, f"{base}/1", GOOD).text)
        assert bolton.post(f"{base}/1/submit", data=fields).status_code == 200

        assert "Submitted late" in bolton.get(base).text
    assert [e.reason for e in return_events(round_refs["BOL"])] == ["period 1 (late)"]


def test_another_councils_returns_are_not_found(
    cbflow_env: Settings, round_refs: dict[str, str], clock: FixedClock
) -> None:
    birmingham = base_of(round_refs["BIR"])
    bradford = base_of(round_refs["BRD"])
    with TestClient(create_app(cbflow_env, clock=clock)) as bolton:
        sign_in(bolton, "bob@bolton.gov.uk", "BOL")
        token = csrf(bolton.get("/applications").text)
        for path in ("", "/1", "/1/submitted", "/9"):
            assert bolton.get(f"{birmingham}{path}").status_code == 404, path
        for path in ("/1", "/1/submit"):
            answer = bolton.post(f"{birmingham}{path}", data=GOOD | {"csrf_token": token})
            assert answer.status_code == 404, path
    with TestClient(create_app(cbflow_env, clock=clock)) as bradford_client:
        sign_in(bradford_client, "bo@bradford.gov.uk", "BRD")
        assert bradford_client.get(bradford).status_code == 404  # reserve: no returns
    assert record_of(round_refs["BIR"], 1).submitted_at is None
    with session_scope() as session:
        states = {a.council_code: a.state for a in session.exec(select(Application))}
    assert states == {"BIR": "implementing", "BOL": "implementing", "BRD": "reserve"}


# -- two officers on one return ----------------------------------------------------------------


@pytest.fixture
def two_officers(
    cbflow_env: Settings, round_refs: dict[str, str], clock: FixedClock
) -> Iterator[tuple[str, httpx.Client, httpx.Client]]:
    """Birmingham's returns, over real HTTP, for two of its officers (Bea Khan, Ben Ross);
    yields (the returns' path, Bea, Ben)."""
    with session_scope() as session:
        for email, name in (("bea@birmingham.gov.uk", "Bea Khan"), (BEN, "Ben Ross")):
            session.add(User(email=email, name=name, role="applicant", council_code="BIR"))
    with (
        serving(cbflow_env, clock) as url,
        httpx.Client(base_url=url, timeout=30) as bea,
        httpx.Client(base_url=url, timeout=30) as ben,
    ):
        sign_in_over_http(bea, "bea@birmingham.gov.uk")
        sign_in_over_http(ben, BEN)
        yield base_of(round_refs["BIR"]), bea, ben


BEN = "ben@birmingham.gov.uk"


def test_a_return_draft_is_kept_to_come_back_to(
    two_officers: tuple[str, httpx.Client, httpx.Client], round_refs: dict[str, str]
) -> None:
    base, bea, ben = two_officers
    form = hidden_fields(bea.get(f"{base}/1").text)

    saved = bea.post(f"{base}/1", data=form | {"families_attached": "12", "action": "save"})

    assert saved.status_code == 303 and saved.headers["location"] == base
    record_ = record_of(round_refs["BIR"], 1)
    assert record_.draft == {"families_attached": 12} and record_.draft_version == 1
    assert record_.submitted_at is None and record_.answers == {}  # not a return yet
    # the form opens with the draft, for any of the council's officers
    assert re.search(r'name="families_attached"[^>]*value="12"', ben.get(f"{base}/1").text)


def test_a_stale_save_of_a_return_draft_is_refused_then_chosen(
    two_officers: tuple[str, httpx.Client, httpx.Client], round_refs: dict[str, str]
) -> None:
    base, bea, ben = two_officers
    beas_page = hidden_fields(bea.get(f"{base}/1").text)  # Bea opens the form, then Ben saves
    bens = ben.post(
        f"{base}/1",
        data=hidden_fields(ben.get(f"{base}/1").text) | GOOD | {"action": "save"},
    )
    assert bens.status_code == 303
    before = record_of(round_refs["BIR"], 1)

    refused = bea.post(
        f"{base}/1", data=beas_page | GOOD | {"families_attached": "30", "action": "save"}
    )

    assert refused.status_code == 409
    assert "Ben Ross changed this answer while you were editing" in refused.text
    assert "Changed by Ben Ross at 09:00 on 5 July 2012 (BST)" in refused.text
    assert ">30</p>" in refused.text and ">40</p>" in refused.text  # both answers
    after = record_of(round_refs["BIR"], 1)
    assert (after.draft, after.draft_version) == (before.draft, before.draft_version)

    choice = hidden_fields(refused.text) | {"action": "resolve", "_keep-families_attached": "mine"}
    kept = bea.post(f"{base}/1", data=choice)

    assert kept.status_code == 303 and kept.headers["location"] == f"{base}/1"
    assert record_of(round_refs["BIR"], 1).draft["families_attached"] == 30


def test_a_return_submitted_from_a_stale_page_is_refused(
    two_officers: tuple[str, httpx.Client, httpx.Client], round_refs: dict[str, str]
) -> None:
    base, bea, ben = two_officers
    form = hidden_fields(bea.get(f"{base}/1").text)
    checked = bea.post(f"{base}/1", data=form | GOOD)  # Bea checks her return...
    assert checked.status_code == 200 and "Check your return" in checked.text
    # ...while Ben saves a different narrative
    ben_form = hidden_fields(ben.get(f"{base}/1").text)
    ben_data = ben_form | GOOD | {"narrative": "Slower than hoped.", "action": "save"}
    assert ben.post(f"{base}/1", data=ben_data).status_code == 303

    refused = bea.post(f"{base}/1/submit", data=hidden_fields(checked.text))

    assert refused.status_code == 409
    assert "Slower than hoped." in refused.text and "A good start." in refused.text
    record_ = record_of(round_refs["BIR"], 1)
    assert record_.submitted_at is None and record_.answers == {}
    assert record_.draft["narrative"] == "Slower than hoped."
    assert return_events(round_refs["BIR"]) == []
