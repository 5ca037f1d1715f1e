"""A selected place accepts its grant offer in the portal: the offer's page, the letter, "Accept
the grant offer" with its confirmation, recorded once with who and when, and audited; nobody
else's offer, and no offer for a place that was not selected; staff see the acceptance."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
from conftest import london
from fastapi.testclient import TestClient
from portal import add_user, csrf, sign_in
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
from test_portal_forms import sign_in as sign_in_applicant

from cbflow import stages
from cbflow.clock import FixedClock
from cbflow.db import session_scope
from cbflow.models import Application, AuditEvent
from cbflow.services import applications
from cbflow.settings import Settings
from cbflow.web import create_app

SLUG = "whole-place-2011"
ACCEPT_DAY = london(2012, 1, 3, 10, 15)


@pytest.fixture
def decided(cbflow_env: Settings) -> dict[str, str]:
    """The round's decisions released: Birmingham and Bolton selected, Bradford on the reserve
    list. Council code -> reference."""
    stages.launch(SOURCE, "offer.yaml", now=LAUNCH_AT)
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
    return refs


@pytest.fixture
def portal(cbflow_env: Settings, decided: dict[str, str]) -> Iterator[TestClient]:
    with TestClient(create_app(cbflow_env, clock=FixedClock(ACCEPT_DAY))) as client:
        yield client


def application(reference: str) -> Application:
    with session_scope() as session:
        found = applications.get_application(session, reference)
        session.expunge(found)
        return found


def offer_path(reference: str) -> str:
    return f"/applications/{application(reference).id}/offer"


def acceptances(reference: str) -> list[AuditEvent]:
    with session_scope() as session:
        events = list(
            session.exec(
                select(AuditEvent).where(
                    AuditEvent.entity == "application",
                    AuditEvent.entity_id == application(reference).id,
                    AuditEvent.action == "grant_offer_accepted",
                )
            )
        )
        for event in events:
            session.expunge(event)
        return events


def accept(client: TestClient, path: str, confirm: str = "accepted") -> int:
    token = csrf(client.get(path).text)
    answer = client.post(
        path, data={"confirm": confirm, "csrf_token": token}, follow_redirects=False
    )
    return answer.status_code


def test_a_selected_council_accepts_its_grant_offer_once(
    portal: TestClient, decided: dict[str, str]
) -> None:
    reference = decided["BIR"]
    sign_in_applicant(portal, "bea@birmingham.gov.uk", "BIR")
    path = offer_path(reference)

    listing = portal.get("/applications").text
    assert f'href="{path}">Grant offer to accept</a>' in listing
    page = portal.get(path)
    assert page.status_code == 200
    assert "Up to £1,500,000.00" in page.text
    assert "1 April 2012 to 31 March 2013" in page.text
    # offered on 20 December 2011, to be accepted within 28 days
    assert "Not yet accepted: accept by the end of 17 January 2012" in page.text
    letter = portal.get(f"{path}.pdf")
    assert letter.status_code == 200 and letter.content.startswith(b"%PDF")

    # the confirmation is required: nothing is recorded without it
    assert accept(portal, path, confirm="") == 400
    assert application(reference).offer_accepted_at is None
    assert (
        "Confirm that you accept the grant offer"
        in portal.post(path, data={"csrf_token": csrf(portal.get(path).text)}).text
    )
    # and the form is refused without its CSRF token
    assert portal.post(path, data={"confirm": "accepted"}).status_code == 403
    assert application(reference).offer_accepted_at is None

    assert accept(portal, path) == 303
    accepted = application(reference)
    assert accepted.offer_accepted_at == ACCEPT_DAY
    assert accepted.offer_accepted_by == "bea@birmingham.gov.uk"
    page = portal.get(path).text
    assert "Grant offer accepted on 3 January 2012 by bea (bea@birmingham.gov.uk)." in page
    assert "Accept the grant offer</button>" not in page
    [event] = acceptances(reference)
    assert event.actor == "bea@birmingham.gov.uk" and event.at == ACCEPT_DAY
    assert "accepted in the portal by bea" in event.reason

    # a second press, or a colleague's, changes nothing
    token = csrf(portal.get("/applications").text)
    again = portal.post(
        path, data={"confirm": "accepted", "csrf_token": token}, follow_redirects=False
    )
    assert again.status_code == 303
    assert application(reference).offer_accepted_at == ACCEPT_DAY
    assert len(acceptances(reference)) == 1
    assert "Grant offer accepted</a>" in portal.get("/applications").text


def test_only_a_selected_places_own_council_has_an_offer_to_accept(
    portal: TestClient, decided: dict[str, str]
) -> None:
    birmingham = offer_path(decided["BIR"])
    sign_in_applicant(portal, "ben@bradford.gov.uk", "BRD")  # on the reserve list: no offer
    token = csrf(portal.get("/applications").text)

    assert portal.get(offer_path(decided["BRD"])).status_code == 404
    refused = portal.post(
        offer_path(decided["BRD"]), data={"confirm": "accepted", "csrf_token": token}
    )
    assert refused.status_code == 404
    # another council's offer is not there at all for Bradford
    assert portal.get(birmingham).status_code == 404
    assert portal.get(f"{birmingham}.pdf").status_code == 404
    stolen = portal.post(birmingham, data={"confirm": "accepted", "csrf_token": token})
    assert stolen.status_code == 404
    assert application(decided["BIR"]).offer_accepted_at is None
    assert application(decided["BRD"]).offer_accepted_at is None
    assert acceptances(decided["BIR"]) == acceptances(decided["BRD"]) == []


def test_staff_and_the_returns_page_show_the_acceptance(
    portal: TestClient, cbflow_env: Settings, decided: dict[str, str]
) -> None:
    reference = decided["BOL"]
    sign_in_applicant(portal, "bo@bolton.gov.uk", "BOL")
    assert accept(portal, offer_path(reference)) == 303
    stages.start_implementation(SLUG, now=START_DAY)
    returns = portal.get(f"/applications/{application(reference).id}/returns").text
    assert "Grant offer accepted on 3 January 2012 by bo (bo@bolton.gov.uk)." in returns
    assert portal.get(f"/applications/{application(reference).id}").headers.get("location", "") in (
        "",
        f"/applications/{application(reference).id}/returns",
    )

    with TestClient(create_app(cbflow_env, clock=FixedClock(ACCEPT_DAY))) as staff:
        add_user("sam@staff.example", "staff", name="Sam Staff")
        sign_in(staff, "sam@staff.example")
        bolton = staff.get(f"/staff/rounds/{SLUG}/applications/{application(reference).id}")
        birmingham = staff.get(
            f"/staff/rounds/{SLUG}/applications/{application(decided['BIR']).id}"
        )
    assert "Grant offer accepted on 3 January 2012 by bo (bo@bolton.gov.uk)." in bolton.text
    assert "Not yet accepted: it is to be accepted by the end of 17 January 2012." in (
        birmingham.text
    )
    assert "The grant offer was accepted in the portal by bo (bo@bolton.gov.uk)." in bolton.text
