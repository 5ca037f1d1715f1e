"""Staff, assessors and documents name a partnership by its place and every one of its
councils: the applications list, its CSV and the application page; the assessor's list and
scoring page; the receipt a partnership is sent. A council alone reads as before."""

from __future__ import annotations

import csv
import io
import subprocess
from collections.abc import Iterator
from datetime import timedelta

import pytest
from conftest import london
from fastapi.testclient import TestClient
from portal import add_user, sign_in
from round_walk import START_DAY
from sqlmodel import select
from test_partnerships import (
    add,
    assessed_partnerships,
    panel,
    partnership_round,
    start,
    submit_eoi,
    tri_borough,
)
from test_sift_and_selection import ASSESS_DAY, DECIDE_DAY, EOI_DAY

from cbflow import stages
from cbflow.clock import FixedClock
from cbflow.db import session_scope
from cbflow.models import Application, Assignment, Document, User
from cbflow.services import assessment
from cbflow.settings import Settings
from cbflow.web import create_app

STAFF_EMAIL = "programme.lead@staff.example"
TRI = "West London Tri-borough"
SLUG = "whole-place-2011"
CHASE_DAY = london(2012, 7, 20, 9, 0)  # the first quarter's returns were due by 14 July


def portal(settings: Settings, email: str, role: str, when: FixedClock) -> TestClient:
    ten_years = 10 * 365 * 24
    quiet = settings.model_copy(
        update={
            "prefect_api_url": "",
            "session_idle_minutes": ten_years * 60,
            "session_hours": ten_years,
        }
    )
    if role:
        add_user(email, role, name=email.split("@")[0])
    client = TestClient(create_app(quiet, clock=when))
    client.__enter__()
    sign_in(client, email)
    return client


@pytest.fixture
def staff(cbflow_env: Settings) -> Iterator[TestClient]:
    client = portal(cbflow_env, STAFF_EMAIL, "staff", FixedClock(EOI_DAY + timedelta(hours=3)))
    yield client
    client.__exit__(None, None, None)


def tri_borough_and_bury() -> tuple[str, int, int]:
    """A partnership round with the Tri-borough (Westminster leading Kensington and Chelsea and
    Hammersmith and Fulham) and Bury on its own, both submitted; Manchester named by a lead and
    not yet confirmed is in a third."""
    slug = partnership_round()
    tri = tri_borough(slug)
    submit_eoi(tri, "WSM")
    bury = start(slug, "BUR", at_minutes=5)
    submit_eoi(bury, "BUR")
    waiting = start(slug, "SND", at_minutes=6)
    add(waiting, "MAN")
    return slug, tri, bury


def test_staff_see_the_place_and_its_councils_on_the_list_the_csv_and_the_page(
    staff: TestClient,
) -> None:
    slug, tri, bury = tri_borough_and_bury()

    listed = staff.get(f"/staff/rounds/{slug}/applications")
    assert listed.status_code == 200
    assert TRI in listed.text
    assert "Led by Westminster, with Kensington and Chelsea, Hammersmith and Fulham" in listed.text
    assert ">Bury</a>" in listed.text  # a council alone: its name, as before

    # a search by a member council's name, or its code, finds the partnership it belongs to
    for q in ("kensington", "HMF", "tri-borough"):
        found = staff.get(f"/staff/rounds/{slug}/applications", params={"q": q})
        assert TRI in found.text and ">Bury</a>" not in found.text, q
    sorted_ = staff.get(
        f"/staff/rounds/{slug}/applications", params={"sort": "council", "order": "desc"}
    )
    assert sorted_.status_code == 200

    exported = staff.get(f"/staff/rounds/{slug}/applications.csv")
    rows = list(csv.DictReader(io.StringIO(exported.text)))
    by_code = {row["Council code"]: row for row in rows}
    assert list(rows[0])[-3:] == ["Place", "Lead council", "Member councils"]
    assert by_code["WSM"]["Council"] == "Westminster"
    assert by_code["WSM"]["Place"] == TRI
    assert by_code["WSM"]["Lead council"] == "Westminster"
    assert by_code["WSM"]["Member councils"] == "Kensington and Chelsea; Hammersmith and Fulham"
    assert (by_code["BUR"]["Place"], by_code["BUR"]["Member councils"]) == ("Bury", "")

    page = staff.get(f"/staff/rounds/{slug}/applications/{tri}")
    assert page.status_code == 200
    text = " ".join(page.text.split())
    assert f'<h1 class="govuk-heading-xl">{TRI}</h1>' in text
    assert "Councils" in text and "Lead council" in text
    assert "Kensington and Chelsea" in text and "Confirmed on 20 October 2011" in text

    waiting = staff.get(f"/staff/rounds/{slug}/applications")
    assert waiting.status_code == 200
    with session_scope() as session:
        sunderland = session.exec(
            select(Application).where(Application.council_code == "SND")
        ).one()
        assert sunderland.id is not None
        sunderland_id = sunderland.id
    pending = staff.get(f"/staff/rounds/{slug}/applications/{sunderland_id}")
    assert "Awaiting confirmation" in pending.text

    alone = staff.get(f"/staff/rounds/{slug}/applications/{bury}")
    assert '<h1 class="govuk-heading-xl">Bury</h1>' in alone.text
    assert "is a partnership of" not in alone.text and "Member council" not in alone.text


def test_an_assessor_sees_the_place_and_its_councils(cbflow_env: Settings) -> None:
    assessors = [
        User(email=f"assessor{n}@panel.example", name=f"Assessor {n}", role="assessor")
        for n in range(4)
    ]
    ids = assessed_partnerships(assessors=assessors)
    with session_scope() as session:
        assigned = session.exec(
            select(User.email)
            .join(Assignment, Assignment.assessor_id == User.id)
            .where(Assignment.application_id == ids["tri"])
        ).first()
    assert assigned is not None
    client = portal(cbflow_env, assigned, "", FixedClock(EOI_DAY + timedelta(days=53)))
    try:
        listed = " ".join(client.get("/assess").text.split())
        assert TRI in listed
        scoring = " ".join(client.get(f"/assess/{ids['tri']}").text.split())
        assert TRI in scoring
        for member in ("Westminster", "Kensington and Chelsea", "Hammersmith and Fulham"):
            assert member in scoring
        conflict = " ".join(client.get(f"/assess/{ids['tri']}/conflict").text.split())
        assert "Hammersmith and Fulham: a conflict with any of them counts" in conflict
    finally:
        client.__exit__(None, None, None)


def pdftotext(path: str) -> str:
    done = subprocess.run(
        ["pdftotext", "-layout", path, "-"], capture_output=True, text=True, check=True
    )
    return " ".join(done.stdout.split())


def test_a_partnership_receipt_is_made_on_behalf_of_the_place_and_names_every_council(
    cbflow_env: Settings,
) -> None:
    slug, _, _ = tri_borough_and_bury()
    stages.issue_receipts(slug, now=EOI_DAY + timedelta(hours=3))
    with session_scope() as session:
        receipts = {
            d.key.split("/")[1]: str(cbflow_env.documents_dir / d.path)
            for d in session.exec(select(Document).where(Document.kind == "eoi_receipt"))
        }
    tri = pdftotext(receipts["WSM"])
    assert "The Chief Executive City of Westminster Dear Chief Executive" in tri
    assert (
        f"to you as the lead council, on behalf of {TRI}: a partnership of Kensington and "
        "Chelsea and Hammersmith and Fulham, led by City of Westminster." in tri
    )
    bury = pdftotext(receipts["BUR"])
    assert "partnership" not in bury


def documents_of(settings: Settings, kind: str) -> dict[str, str]:
    """Each document of the kind, by the second part of its key (an application's council
    code)."""
    with session_scope() as session:
        return {
            d.key.split("/")[1]: pdftotext(str(settings.documents_dir / d.path))
            for d in session.exec(select(Document).where(Document.kind == kind))
        }


def test_decisions_offers_and_the_staff_reports_name_the_place_and_its_councils(
    cbflow_env: Settings,
) -> None:
    ids = assessed_partnerships(assessors=panel("Ann One", "Ben Two", "Cat Three"))
    quality = {ids["tri"]: 4, ids["north"]: 3, ids["bury"]: 2}
    with session_scope() as session:
        for assignment in session.exec(select(Assignment)):
            given = quality[assignment.application_id]
            assessment.submit_scores(
                session,
                assignment=assignment,
                scores={
                    c: (given, "Justified.") for c in ("ambition", "partnership", "replicability")
                },
                actor="assessor",
                now=ASSESS_DAY,
            )
    stages.finalise_assessment(SLUG, now=ASSESS_DAY)
    stages.decide(SLUG, now=DECIDE_DAY)

    (summary,) = documents_of(cbflow_env, "assessment_summary").values()
    assert f"{TRI} (Westminster and 2 other councils)" in summary
    assert "North of England (Sunderland and 1 other council)" in summary
    assert "Bury" in summary

    decisions = documents_of(cbflow_env, "decision")
    assert (
        f"on behalf of {TRI}: a partnership of Kensington and Chelsea and Hammersmith and "
        "Fulham, led by City of Westminster." in decisions["WSM"]
    )
    assert "a partnership of Manchester, led by" in decisions["SND"]
    assert "partnership" not in decisions["BUR"].split("Dear Chief Executive")[1][:200]
    offer = documents_of(cbflow_env, "grant_offer")["WSM"]
    assert "Kensington and Chelsea and Hammersmith and Fulham" in offer

    stages.start_implementation(SLUG, now=START_DAY)
    stages.returns_cycle(SLUG, now=CHASE_DAY)
    report = documents_of(cbflow_env, "progress_report")["WSM"]
    assert f"On behalf of {TRI}: a partnership of Kensington and Chelsea and" in report
    chaser = documents_of(cbflow_env, "chaser")["WSM"]
    assert f"on behalf of {TRI}: a partnership of Kensington and Chelsea and" in chaser

    staff = portal(cbflow_env, STAFF_EMAIL, "staff", FixedClock(CHASE_DAY))
    try:
        for stage in ("assessment", "selection", "implementation"):
            page = " ".join(staff.get(f"/staff/rounds/{SLUG}/{stage}").text.split())
            assert f"{TRI} (Westminster and 2 other councils)" in page, stage
    finally:
        staff.__exit__(None, None, None)
