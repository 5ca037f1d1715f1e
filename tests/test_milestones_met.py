"""Staff mark a place's milestone met from the round's implementation page, on the day it was
met: not in the future, not before the place began implementing (400, saying why); marked twice,
409 saying when. Each marking is audited, and the place may then publish a version of its model
at that milestone."""

from __future__ import annotations

import re

from conftest import london
from fastapi.testclient import TestClient
from portal import add_user
from round_walk import SLUG, START_DAY, to_decisions
from sqlmodel import col, select
from test_portal_forms import csrf, sign_in_as_existing

from cbflow import stages
from cbflow.clock import FixedClock
from cbflow.db import session_scope
from cbflow.models import AuditEvent, MilestoneRecord
from cbflow.settings import Settings
from cbflow.web import create_app

TODAY = london(2012, 10, 31, 11, 0)


def test_staff_mark_a_milestone_met_on_a_day_that_makes_sense(cbflow_env: Settings) -> None:
    ids = to_decisions()
    stages.start_implementation(SLUG, now=START_DAY)  # 1 April 2012
    with session_scope() as session:
        milestone = session.exec(
            select(MilestoneRecord).where(MilestoneRecord.application_id == ids["BIR"])
        ).one()
    app = create_app(cbflow_env, clock=FixedClock(TODAY))
    add_user("sam@staff.example", "staff", name="Sam Staff")
    staff = TestClient(app)
    sign_in_as_existing(staff, "sam@staff.example")
    page_url = f"/staff/rounds/{SLUG}/implementation"
    mark = f"/staff/rounds/{SLUG}/implementation/milestones/{milestone.id}/met"

    page = staff.get(page_url).text
    assert "Operational plan agreed, due 31 October 2012: not yet met" in page
    assert f'action="{mark}"' in page and "Mark met" in page

    def post(day: str) -> tuple[int, str]:
        answer = staff.post(
            mark, data={"csrf_token": csrf(page), "met_on": day}, follow_redirects=False
        )
        return answer.status_code, answer.text

    status, text = post("2012-11-01")
    assert status == 400
    assert "cannot be in the future: today is 31 October 2012" in text
    assert 'value="2012-11-01"' in text  # the day typed, shown again with why
    status, text = post("2012-03-31")
    assert (status, "cannot be before implementation began, on 1 April 2012" in text) == (400, True)
    status, text = post("the end of October")
    assert (status, "Enter the day it was met as a date" in text) == (400, True)
    with session_scope() as session:
        assert session.get(MilestoneRecord, milestone.id).met_on is None  # type: ignore[union-attr]

    status, _ = post("2012-10-30")
    assert status == 303
    page = staff.get(page_url).text
    assert "Operational plan agreed, due 31 October 2012: met on 30 October 2012" in page
    assert f'action="{mark}"' not in page  # nothing left to mark for Birmingham
    assert re.search(r"Publish a new version of [^<]*Birmingham[^<]*model", page)

    status, text = post("2012-10-31")
    assert status == 409
    assert "Operational plan agreed was already marked met on 30 October 2012" in text
    with session_scope() as session:
        events = list(
            session.exec(
                select(AuditEvent)
                .where(AuditEvent.action == "milestone_met")
                .order_by(col(AuditEvent.id))
            )
        )
        assert [(e.entity_id, e.actor, e.reason) for e in events] == [
            (ids["BIR"], "sam@staff.example", "operational-plan on 2012-10-30")
        ]

    # a milestone of another round's place is not found through this round
    assert (
        staff.post(
            f"/staff/rounds/other-round/implementation/milestones/{milestone.id}/met",
            data={"csrf_token": csrf(page), "met_on": "2012-10-30"},
        ).status_code
        == 404
    )
