"""Assessors in the portal: only their own assignments, a conflict of interest that passes the
application to the least-loaded free assessor, scores saved as a draft and then submitted once
with every field checked, and the disagreements sent to moderation, read only."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from conftest import edit
from fastapi.testclient import TestClient
from round_walk import (
    ASSESS_DAY,
    SLUG,
    SOURCE,
    assessors_of,
    bids_in,
    email_of,
    score_everything,
    to_assessment,
)
from sqlmodel import col, select
from test_portal_forms import csrf, sign_in_as_existing

from cbflow import stages
from cbflow.clock import FixedClock
from cbflow.db import session_scope
from cbflow.models import Assignment, AuditEvent, Conflict, Score, User
from cbflow.services import assessment
from cbflow.settings import Settings
from cbflow.web import create_app

AMBITION = "Pool budgets around families. <script>alert('x')</script>"
FULL_SCORES = {
    "score-ambition": "3",
    "justification-ambition": "A clear ambition,\nbacked by the partners.",
    "score-partnership": "2",
    "justification-partnership": "Two partners only.",
    "score-replicability": "4",
    "justification-replicability": "Others could follow it.",
}


@pytest.fixture
def app(cbflow_env: Settings) -> Any:
    return create_app(cbflow_env, clock=FixedClock(ASSESS_DAY))


@pytest.fixture
def client(app: Any) -> Iterator[TestClient]:
    with TestClient(app) as client:
        yield client


def signed_in(app: Any, email: str) -> TestClient:
    client = TestClient(app)
    sign_in_as_existing(client, email)
    return client


def post(client: TestClient, path: str, data: dict[str, str], form: str | None = None) -> Any:
    """Post to `path` with the CSRF token of the page at `form` (by default, `path`)."""
    token = csrf(client.get(form or path).text)
    return client.post(path, data={**data, "csrf_token": token}, follow_redirects=False)


def assignment(application_id: int, email: str) -> Assignment | None:
    with session_scope() as session:
        found = session.exec(
            select(Assignment)
            .join(User, col(User.id) == Assignment.assessor_id)
            .where(Assignment.application_id == application_id, User.email == email)
        ).first()
        return found


def events(application_id: int, action: str) -> list[AuditEvent]:
    with session_scope() as session:
        return list(
            session.exec(
                select(AuditEvent).where(
                    AuditEvent.entity == "application",
                    AuditEvent.entity_id == application_id,
                    AuditEvent.action == action,
                )
            )
        )


def listed(client: TestClient) -> list[str]:
    """The councils in the assessor's list of assignments."""
    page = client.get("/assess")
    assert page.status_code == 200
    return re.findall(r'href="/assess/\d+">([^<]+)<', page.text)


# -- who sees what -----------------------------------------------------------------------------


def test_assessor_sees_only_assigned_applications_and_404_for_the_rest(
    app: Any, cbflow_env: Settings
) -> None:
    ids = to_assessment()
    ben = email_of("Ben Baxter")
    mine = [c for c in ("BIR", "BOL", "BRD") if ben in assessors_of(ids[c])]
    others = [c for c in ("BIR", "BOL", "BRD") if c not in mine]
    assert mine and others, "the walk gives Ben some applications and not others"
    client = signed_in(app, ben)

    assert sorted(listed(client)) == sorted(
        {"BIR": "Birmingham", "BOL": "Bolton", "BRD": "Bradford"}[c] for c in mine
    )
    assert "Not started" in client.get("/assess").text
    assert client.get(f"/assess/{ids[mine[0]]}").status_code == 200
    for council in others:
        other = ids[council]
        assert client.get(f"/assess/{other}").status_code == 404
        assert client.get(f"/assess/{other}/conflict").status_code == 404
        assert client.get(f"/assess/{other}/moderation").status_code == 404
        token = csrf(client.get("/assess/" + str(ids[mine[0]])).text)
        answer = client.post(
            f"/assess/{other}",
            data={**FULL_SCORES, "action": "submit", "csrf_token": token},
            follow_redirects=False,
        )
        assert answer.status_code == 404
    assert client.get(f"/assess/{ids['CAM']}").status_code == 404  # never bid: nobody's
    assert client.get("/assess/999999").status_code == 404


def test_assessor_pages_are_for_assessors_only(app: Any, client: TestClient) -> None:
    ids = to_assessment()
    assert client.get("/assess", follow_redirects=False).headers["location"] == "/sign-in"
    with session_scope() as session:
        session.add(
            User(email="pat@essex.gov.uk", name="Pat", role="applicant", council_code="ESS")
        )
    applicant = signed_in(app, "pat@essex.gov.uk")

    assert applicant.get("/assess").status_code == 403
    assert applicant.get(f"/assess/{ids['BIR']}").status_code == 403


def test_post_without_csrf_token_is_refused_and_changes_nothing(app: Any) -> None:
    ids = to_assessment()
    ann = email_of("Ann Archer")
    client = signed_in(app, ann)

    answer = client.post(f"/assess/{ids['BIR']}/conflict", data={"reason": "I work there"})

    assert answer.status_code == 403
    assert assignment(ids["BIR"], ann) is not None


# -- conflicts of interest ---------------------------------------------------------------------


def test_conflict_passes_the_application_to_the_least_loaded_free_assessor(app: Any) -> None:
    ids = to_assessment(assessors=4)
    ann, dan = email_of("Ann Archer"), email_of("Dan Dyer")
    assert assessors_of(ids["BIR"]) == [ann, email_of("Ben Baxter"), email_of("Cat Cooper")]
    client = signed_in(app, ann)
    base = f"/assess/{ids['BIR']}"

    blank = post(client, f"{base}/conflict", {"reason": "  "})
    assert blank.status_code == 400
    assert "Enter why you have a conflict of interest with Birmingham" in blank.text
    assert 'href="#reason"' in blank.text
    assert assignment(ids["BIR"], ann) is not None

    declared = post(client, f"{base}/conflict", {"reason": "My sister leads the council."})

    assert declared.status_code == 303 and declared.headers["location"] == "/assess"
    page = client.get("/assess")
    assert "You have declared a conflict of interest with Birmingham" in page.text
    assert "Birmingham" not in listed(client)
    assert client.get(base).status_code == 404
    assert client.get(f"{base}/conflict").status_code == 404
    # Dan was the only assessor not on it, and the least loaded
    assert assessors_of(ids["BIR"]) == [dan, email_of("Ben Baxter"), email_of("Cat Cooper")]
    assert "Birmingham" in listed(signed_in(app, dan))
    with session_scope() as session:
        conflict = session.exec(select(Conflict)).one()
        ann_user = session.exec(select(User).where(User.email == ann)).one()
    assert (conflict.assessor_id, conflict.council_code) == (ann_user.id, "BIR")
    assert conflict.reason == "My sister leads the council."
    [declaration] = events(ids["BIR"], "conflict_declared")
    [moved] = events(ids["BIR"], "assessor_reassigned")
    assert declaration.actor == ann and "My sister leads the council." in declaration.reason
    assert moved.actor == ann


def test_conflict_with_nobody_free_says_so_and_keeps_the_assignment(app: Any) -> None:
    ids = to_assessment(assessors=3)  # every assessor is on every application
    ann = email_of("Ann Archer")
    client = signed_in(app, ann)
    base = f"/assess/{ids['BOL']}"

    answer = post(client, f"{base}/conflict", {"reason": "I used to work there."})

    assert answer.status_code == 400
    assert "No other assessor is free to take this application" in answer.text
    assert "I used to work there." in answer.text  # what was typed is kept
    assert assignment(ids["BOL"], ann) is not None
    assert "Bolton" in listed(client)
    with session_scope() as session:
        assert session.exec(select(Conflict)).all() == []
    assert events(ids["BOL"], "conflict_declared") == []


def test_automatic_assignment_skips_a_declared_conflict(cbflow_env: Settings) -> None:
    ids = to_assessment(assessors=4)
    ann = email_of("Ann Archer")
    with session_scope() as session:
        user = session.exec(select(User).where(User.email == ann)).one()
        first = session.exec(
            select(Assignment).where(
                Assignment.application_id == ids["BIR"], Assignment.assessor_id == user.id
            )
        ).one()
        assessment.declare_conflict(
            session, assignment=first, reason="Former employee", actor=ann, now=ASSESS_DAY
        )
    # a second wave of the same prospectus: Birmingham bids again
    later = edit(SOURCE, ("id: whole-place-2011 ", "id: whole-place-2012 "))
    second = bids_in(later, "whole-place-2012", "Pool budgets around families.")

    stages.assign_assessors("whole-place-2012", now=ASSESS_DAY)

    assert ann not in assessors_of(second["BIR"])
    assert len(assessors_of(second["BIR"])) == 3
    assert ann in assessors_of(second["BOL"]) + assessors_of(second["BRD"])


# -- scoring -----------------------------------------------------------------------------------


def test_scores_saved_as_a_draft_come_back_and_mark_the_work_in_progress(app: Any) -> None:
    ids = to_assessment()
    ann = email_of("Ann Archer")
    client = signed_in(app, ann)
    base = f"/assess/{ids['BIR']}"

    saved = post(
        client,
        base,
        {
            "score-ambition": "3",
            "justification-ambition": "Strong start <b>so far</b>",
            "justification-partnership": "Still reading.",
            "action": "save",
        },
    )

    assert saved.status_code == 303 and saved.headers["location"] == "/assess"
    home = client.get("/assess")
    assert "Your scores for Birmingham have been saved" in home.text
    assert "In progress" in home.text
    page = client.get(base)
    assert re.search(r'value="3"\s+checked', page.text)
    assert "Strong start &lt;b&gt;so far&lt;/b&gt;" in page.text
    assert "Still reading." in page.text
    kept = assignment(ids["BIR"], ann)
    assert kept is not None and kept.submitted_at is None
    assert kept.draft == {
        "ambition": {"score": 3, "justification": "Strong start <b>so far</b>"},
        "partnership": {"score": None, "justification": "Still reading."},
    }
    with session_scope() as session:
        assert session.exec(select(Score)).all() == []
    assert len(events(ids["BIR"], "scores_draft_saved")) == 1


def test_submission_checks_every_field_and_changes_nothing_on_error(app: Any) -> None:
    ids = to_assessment()
    ann = email_of("Ann Archer")
    client = signed_in(app, ann)
    base = f"/assess/{ids['BIR']}"

    answer = post(
        client,
        base,
        {
            "score-ambition": "3",
            "justification-ambition": "Clear.",
            "score-partnership": "9",
            "justification-partnership": "",
            "justification-replicability": "Typed before choosing a score.",
            "action": "submit",
        },
    )

    assert answer.status_code == 400
    assert "There is a problem" in answer.text
    assert 'href="#score-partnership"' in answer.text
    assert "Select a score from 0 to 4 for Partnership working" in answer.text
    assert 'href="#justification-partnership"' in answer.text
    assert "Enter why you gave your score for Partnership working" in answer.text
    assert 'href="#score-replicability"' in answer.text
    assert "Select a score for Outcomes replicable in other areas" in answer.text
    assert 'href="#justification-ambition"' not in answer.text
    assert "Typed before choosing a score." in answer.text
    assert re.search(r'value="3"\s+checked', answer.text)
    kept = assignment(ids["BIR"], ann)
    assert kept is not None and kept.submitted_at is None and kept.draft == {}
    assert events(ids["BIR"], "scores_submitted") == []


def test_scores_submitted_once_then_the_page_is_read_only(app: Any) -> None:
    ids = to_assessment()
    ann = email_of("Ann Archer")
    client = signed_in(app, ann)
    base = f"/assess/{ids['BIR']}"
    post(client, base, {"score-ambition": "1", "action": "save"})
    token = csrf(client.get(base).text)

    first = client.post(
        base, data={**FULL_SCORES, "action": "submit", "csrf_token": token}, follow_redirects=False
    )
    second = client.post(
        base,
        data={**FULL_SCORES, "score-ambition": "0", "action": "submit", "csrf_token": token},
        follow_redirects=False,
    )

    assert first.status_code == second.status_code == 303
    assert first.headers["location"] == second.headers["location"] == base
    page = client.get(base)
    assert "You have submitted your scores for Birmingham" in page.text
    assert "You submitted these scores at 09:00 on 12 December 2011 (GMT)" in page.text
    assert "3 – Good" in page.text and "4 – Strong" in page.text
    assert "A clear ambition,<br>backed by the partners." in page.text
    assert 'name="score-ambition"' not in page.text
    assert "Submit scores" not in page.text
    assert "Submitted" in client.get("/assess").text
    kept = assignment(ids["BIR"], ann)
    assert kept is not None and kept.submitted_at == ASSESS_DAY and kept.draft == {}
    with session_scope() as session:
        scores = {
            s.criterion_id: (s.score, s.justification)
            for s in session.exec(select(Score).where(Score.assignment_id == kept.id))
        }
    assert scores == {
        "ambition": (3, "A clear ambition,\nbacked by the partners."),
        "partnership": (2, "Two partners only."),
        "replicability": (4, "Others could follow it."),
    }
    assert len(events(ids["BIR"], "scores_submitted")) == 1
    # nor can a draft be saved over submitted scores, nor a conflict declared after them
    assert post(client, base, {"score-ambition": "0", "action": "save"}).status_code == 303
    assert assignment(ids["BIR"], ann).draft == {}  # type: ignore[union-attr]
    refused = post(client, f"{base}/conflict", {"reason": "Late"}, form=base)
    assert refused.status_code == 400
    assert "You have submitted your scores for this application" in refused.text


def test_scoring_page_shows_guidance_scale_and_the_councils_evidence_escaped(app: Any) -> None:
    ids = to_assessment(ambition=AMBITION)
    client = signed_in(app, email_of("Ann Archer"))

    page = client.get(f"/assess/{ids['BIR']}")

    assert page.status_code == 200
    text = page.text
    assert '<h1 class="govuk-heading-xl">Birmingham</h1>' in text
    assert "Markdown guidance shown to assessors" in text
    assert "This criterion is 40% of the total score." in text
    assert "A score below 2 means the application cannot be selected." in text
    assert "4 – Strong" in text and "0 – No evidence" in text
    assert "What is your ambition for your place?" in text
    assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;" in text
    assert "<script>alert" not in text
    # the partners table and the pooled budget, read for partnership working
    assert "Primary care trust" in text and "Community safety" in text
    assert "£400,000.00" in text
    assert 'href="/assess/{}/conflict"'.format(ids["BIR"]) in text


# -- moderation --------------------------------------------------------------------------------


def test_moderation_view_shows_every_score_and_reason_on_a_disagreement(app: Any) -> None:
    ids = to_assessment(assessors=3)
    bolton = assessors_of(ids["BOL"])
    ben = bolton[1]
    client = signed_in(app, ben)
    assert client.get(f"/assess/{ids['BOL']}/moderation").status_code == 404  # not yet scored
    score_everything()
    stages.open_moderation(SLUG, now=ASSESS_DAY)

    home = client.get("/assess")
    assert f'href="/assess/{ids["BOL"]}/moderation"' in home.text
    assert f'href="/assess/{ids["BIR"]}/moderation"' not in home.text  # agreed throughout
    page = client.get(f"/assess/{ids['BOL']}/moderation")

    assert page.status_code == 200
    assert "Partnership working" in page.text
    assert "Drive and ambition" not in page.text  # no disagreement there
    assert "Awaiting moderation" in page.text
    rows = re.findall(
        r'<th scope="row" class="govuk-table__header">([^<]+)</th>\s*'
        r'<td class="govuk-table__cell">([^<]+)</td>\s*<td class="govuk-table__cell">([^<]+)</td>',
        page.text,
    )
    assert rows == [
        ("Assessor 1", "1 – Weak", "Ann Archer read the evidence closely."),
        ("Assessor 2 (you)", "3 – Good", "Ben Baxter read the evidence closely."),
        ("Assessor 3", "3 – Good", "Cat Cooper read the evidence closely."),
    ]
    main = page.text.split("<main", 1)[1]
    assert "<form" not in main  # read only
    assert client.get(f"/assess/{ids['BIR']}/moderation").status_code == 200


def test_moderation_view_is_only_for_the_applications_assessors(app: Any) -> None:
    ids = to_assessment(assessors=4)
    score_everything()
    stages.open_moderation(SLUG, now=ASSESS_DAY)
    outsider = next(
        email_of(n)
        for n in ("Ann Archer", "Ben Baxter", "Cat Cooper", "Dan Dyer")
        if email_of(n) not in assessors_of(ids["BOL"])
    )
    client = signed_in(app, outsider)

    assert client.get(f"/assess/{ids['BOL']}/moderation").status_code == 404
