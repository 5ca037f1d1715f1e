"""Programme staff run a round from their workspace: every stage's page shows where the round
stands; the decisions of one record (a referral, a re-assignment, a moderated score) are made on
the page and audited with the person who made them; the work over the whole round is left to
flow runs, and nothing changes when no flow can be started; the dashboard filters, sorts, pages
and exports; the what-if changes nothing."""

from __future__ import annotations

import csv
import io
import re
import socket
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from conftest import example_text, london
from fastapi.testclient import TestClient
from portal import add_user, csrf, nonce, post, sign_in
from sqlmodel import col, select

from cbflow import flowruns, simulate, stages
from cbflow.clock import FixedClock
from cbflow.db import session_scope
from cbflow.formatting import csv_cell
from cbflow.lifecycle import AppState
from cbflow.models import Application, Assignment, AuditEvent, ModerationTask, Round, User
from cbflow.services import councils, rounds
from cbflow.settings import Settings
from cbflow.web import create_app

LAUNCHED = datetime(2011, 10, 17, 9, 0, tzinfo=UTC)
DURING_EOI = london(2011, 11, 1, 10, 0)
AFTER_EOI = london(2011, 11, 10, 12, 0)
DURING_BIDS = london(2011, 11, 25, 10, 0)
AFTER_BIDS = london(2011, 12, 10, 9, 0)
ASSESSING = london(2011, 12, 12, 10, 0)
SLUG = "whole-place-2011"
STAFF = "programme.lead@staff.example"


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(DURING_EOI)


@pytest.fixture
def client(cbflow_env: Settings, clock: FixedClock) -> Iterator[TestClient]:
    """The portal, signed in as programme staff; no Prefect server is configured."""
    # the tests move the round's clock by days: the session must not end meanwhile
    ten_years = 10 * 365 * 24
    settings = cbflow_env.model_copy(
        update={
            "prefect_api_url": "",
            "session_idle_minutes": ten_years * 60,
            "session_hours": ten_years,
        }
    )
    add_user(STAFF, "staff", name="Programme lead")
    with TestClient(create_app(settings, clock=clock)) as client:
        sign_in(client, STAFF)
        yield client


def field_of(count: int) -> None:
    """The example round with `count` eligible councils' expressions of interest in."""
    stages.launch(example_text(), "round.yaml", now=LAUNCHED)
    with session_scope() as session:
        round_ = rounds.get_round(session, SLUG)
        chosen = councils.eligible_councils(session, rounds.prospectus_of(round_))[:count]
        simulate.ensure_people(session, assessors=5, seed=7)
        simulate.submit_eois(session, round_=round_, councils=chosen, now=DURING_EOI, seed=7)


def to_assessment() -> None:
    """From the closed EOIs to every bid assigned to its assessors."""
    stages.close_eoi(SLUG, now=AFTER_EOI)
    with session_scope() as session:
        simulate.review_referrals(
            session, round_=rounds.get_round(session, SLUG), now=AFTER_EOI, seed=7
        )
    stages.invite_to_bid(SLUG, now=AFTER_EOI)
    with session_scope() as session:
        simulate.submit_bids(
            session, round_=rounds.get_round(session, SLUG), now=DURING_BIDS, seed=7
        )
    stages.close_bids(SLUG, now=AFTER_BIDS)
    stages.assign_assessors(SLUG, now=AFTER_BIDS)


def app_states() -> dict[str, str]:
    with session_scope() as session:
        return {a.reference: a.state for a in session.exec(select(Application))}


def audit_actions(action: str) -> list[AuditEvent]:
    with session_scope() as session:
        found = list(session.exec(select(AuditEvent).where(AuditEvent.action == action)))
        for event in found:
            session.expunge(event)
        return found


# ---------------------------------------------------------------------------------------------


def test_only_staff_and_administrators_reach_the_workspace(
    cbflow_env: Settings, clock: FixedClock
) -> None:
    field_of(3)
    add_user("council@essex.example", "applicant", council="ESS")
    add_user("assessor@assessors.example", "assessor")
    with TestClient(create_app(cbflow_env, clock=clock)) as anonymous:
        answer = anonymous.get(f"/staff/rounds/{SLUG}", follow_redirects=False)
        assert (answer.status_code, answer.headers["location"]) == (303, "/sign-in")
    for email in ("council@essex.example", "assessor@assessors.example"):
        with TestClient(create_app(cbflow_env, clock=clock)) as client:
            sign_in(client, email)
            assert client.get("/staff").status_code == 403
            assert client.get(f"/staff/rounds/{SLUG}/applications.csv").status_code == 403


def test_overview_shows_the_timetable_the_counts_and_the_deadline_runs(
    client: TestClient, clock: FixedClock
) -> None:
    field_of(5)
    page = client.get(f"/staff/rounds/{SLUG}")
    assert page.status_code == 200
    text = page.text
    assert "Expressions of interest close" in text
    assert "10 November 2011, 12:00pm" in text or "10 November 2011" in text
    assert "Expression of interest submitted" in text and "5 applications" in text
    # before the deadline, its run waits; nothing may be run by hand
    assert "Run now" not in text
    assert "Prefect server did not answer" in text  # no server configured here: said, not hidden

    clock.set(AFTER_EOI + timedelta(hours=1))
    page = client.get(f"/staff/rounds/{SLUG}")
    assert "Run now: Close expressions of interest and sift" in page.text
    # a deadline run that cannot start says so and changes nothing
    answer = client.post(
        f"/staff/rounds/{SLUG}/run-deadline",
        data={"event": "close-eoi", "nonce": nonce(page.text), "csrf_token": csrf(page.text)},
    )
    assert answer.status_code == 503
    assert "nothing was started" in answer.text
    with session_scope() as session:
        assert rounds.get_round(session, SLUG).state == "launched"
    # a deadline not yet due is refused, saying why
    answer = client.post(
        f"/staff/rounds/{SLUG}/run-deadline",
        data={"event": "close-bids", "nonce": "x", "csrf_token": csrf(page.text)},
    )
    assert answer.status_code == 409
    assert "this deadline has not passed yet" in answer.text


def test_a_prefect_server_that_never_answers_does_not_hold_the_page(
    cbflow_env: Settings, clock: FixedClock
) -> None:
    """A server that takes the connection and says nothing (hung, or behind a stuck proxy):
    the page waits a few seconds for it, once, then says so."""
    field_of(2)
    add_user(STAFF, "staff", name="Programme lead")
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)  # connections complete in the backlog; nothing ever reads or answers
        settings = cbflow_env.model_copy(
            update={"prefect_api_url": f"http://127.0.0.1:{silent.getsockname()[1]}/api"}
        )
        with TestClient(create_app(settings, clock=clock)) as client:
            sign_in(client, STAFF)
            started = time.monotonic()
            page = client.get(f"/staff/rounds/{SLUG}")
            waited = time.monotonic() - started

    assert page.status_code == 200
    assert "Expressions of interest close" in page.text
    assert "Prefect server at" in page.text and "did not answer" in page.text
    # not minutes: Prefect's own client would wait a minute a try and retry five times
    assert waited < 10 * flowruns.READ_SECONDS


def test_a_referral_is_decided_with_a_reason_recorded_against_the_person(
    client: TestClient, clock: FixedClock
) -> None:
    field_of(8)
    with session_scope() as session:  # one council names a single partner: the sift refers it
        first = session.exec(select(Application).order_by(col(Application.id))).first()
        assert first is not None
        first.eoi_answers = {**first.eoi_answers, "partners": first.eoi_answers["partners"][:1]}
        session.add(first)
    stages.close_eoi(SLUG, now=AFTER_EOI)
    clock.set(AFTER_EOI + timedelta(days=1))
    with session_scope() as session:
        referred = [
            a.id for a in session.exec(select(Application).where(Application.state == "sift_refer"))
        ]
    assert referred
    page = f"/staff/rounds/{SLUG}/sift"
    assert "Referred to staff" in client.get(page).text
    target = referred[0]

    missing = post(client, page, f"{page}/referrals/{target}", data={"decision": "pass"})
    assert missing.status_code == 400
    assert "Enter the reason for the decision" in missing.text
    assert f'href="#reason-{target}"' in missing.text  # the summary links to the field

    done = post(
        client,
        page,
        f"{page}/referrals/{target}",
        data={"decision": "pass", "reason": "Partners confirmed by phone"},
    )
    assert done.status_code == 303
    with session_scope() as session:
        assert session.get(Application, target).state == "sift_pass"  # type: ignore[union-attr]
    event = [e for e in audit_actions("transition") if e.entity_id == target][-1]
    assert (event.actor, event.reason, event.to_state) == (
        STAFF,
        "Partners confirmed by phone",
        "sift_pass",
    )
    again = post(
        client, page, f"{page}/referrals/{target}", data={"decision": "fail", "reason": "x"}
    )
    assert again.status_code == 400 and "already been decided" in again.text


def test_the_shortlist_is_checked_on_the_page_and_left_to_a_flow(
    client: TestClient, clock: FixedClock
) -> None:
    field_of(10)
    stages.close_eoi(SLUG, now=AFTER_EOI)
    with session_scope() as session:
        simulate.review_referrals(
            session, round_=rounds.get_round(session, SLUG), now=AFTER_EOI, seed=7
        )
        passed = [
            a.reference
            for a in session.exec(select(Application).where(Application.state == "sift_pass"))
        ]
    clock.set(AFTER_EOI + timedelta(days=1))
    page = client.get(f"/staff/rounds/{SLUG}/sift")
    ticked = re.findall(r'name="chosen" type="checkbox" value="([^"]+)" checked', page.text)
    assert len(ticked) == 6, "the proposed shortlist is the prospectus's six, ticked"
    too_many = client.post(
        f"/staff/rounds/{SLUG}/sift/shortlist",
        data={"chosen": passed[:7], "nonce": "n", "csrf_token": csrf(page.text)},
    )
    assert too_many.status_code == 400
    assert "Select at most 6 places" in too_many.text
    # what was ticked stays ticked
    assert len(re.findall(r'type="checkbox" value="[^"]+" checked', too_many.text)) == 7
    stranger = client.post(
        f"/staff/rounds/{SLUG}/sift/shortlist",
        data={"chosen": [f"{SLUG}/NOPE"], "nonce": "n", "csrf_token": csrf(page.text)},
    )
    assert stranger.status_code == 400
    fine = client.post(
        f"/staff/rounds/{SLUG}/sift/shortlist",
        data={"chosen": passed[:3], "nonce": "n", "csrf_token": csrf(page.text)},
    )
    assert fine.status_code == 503  # no Prefect server: said clearly, nothing done
    assert "Confirm the shortlist and issue invitations: nothing was started" in fine.text
    assert set(app_states().values()) <= {"sift_pass", "sift_fail"}


def test_assessments_are_reassigned_and_moderated_on_the_page_with_their_reasons(
    client: TestClient, clock: FixedClock
) -> None:
    field_of(10)
    to_assessment()
    clock.set(ASSESSING)
    page = f"/staff/rounds/{SLUG}/assessment"
    text = client.get(page).text
    submitted = re.search(r"0 of (\d+) assessments submitted", text)
    assert submitted is not None and int(submitted.group(1)) % 3 == 0  # three per bid
    with session_scope() as session:
        assignment = session.exec(select(Assignment).order_by(col(Assignment.id))).first()
        assert assignment is not None
        on_it = {
            a.assessor_id
            for a in session.exec(
                select(Assignment).where(Assignment.application_id == assignment.application_id)
            )
        }
        free = session.exec(
            select(User).where(User.role == "assessor", col(User.id).not_in(on_it))
        ).first()
        busy = next(i for i in on_it if i != assignment.assessor_id)
        assert free is not None and free.id is not None
        assignment_id, free_id = assignment.id, free.id
    action = f"{page}/assignments/{assignment_id}"
    no_reason = post(client, page, action, data={"assessor": str(free_id)})
    assert no_reason.status_code == 400 and "Enter the reason" in no_reason.text
    for chosen in ("²", "9" * 40, "nobody"):  # a 500 where isdigit() passed what int() cannot
        odd = post(client, page, action, data={"assessor": chosen, "reason": "leave"})
        assert odd.status_code == 400 and "Select an assessor" in odd.text, chosen
    twice = post(client, page, action, data={"assessor": str(busy), "reason": "leave"})
    assert twice.status_code == 400 and "already assesses" in twice.text
    moved = post(client, page, action, data={"assessor": str(free_id), "reason": "On leave"})
    assert moved.status_code == 303
    with session_scope() as session:
        assert session.get(Assignment, assignment_id).assessor_id == free_id  # type: ignore[union-attr]
    (event,) = audit_actions("assessor_reassigned")
    assert event.actor == STAFF and event.reason.endswith("On leave")

    with session_scope() as session:
        round_ = rounds.get_round(session, SLUG)
        simulate.score_all(session, round_=round_, now=ASSESSING, seed=7)
    stages.open_moderation(SLUG, now=ASSESSING)
    with session_scope() as session:
        tasks = list(session.exec(select(ModerationTask)))
        assert tasks, "the simulated assessors disagree somewhere"
        task_id = tasks[0].id
    text = client.get(page).text
    assert "Moderation tasks" in text and "differ by" in text
    assert "Finalise the assessment" not in text  # not while a task is open
    bad = post(client, page, f"{page}/moderation/{task_id}", data={"score": "9", "reason": "x"})
    assert bad.status_code == 400 and "The score must be from 0 to 4" in bad.text
    long = post(
        client, page, f"{page}/moderation/{task_id}", data={"score": "3", "reason": "x" * 5_001}
    )
    assert long.status_code == 400
    assert "The reason you entered is longer than 5,000 characters" in long.text
    ok = post(client, page, f"{page}/moderation/{task_id}", data={"score": "3", "reason": "Agreed"})
    assert ok.status_code == 303
    with session_scope() as session:
        task = session.get(ModerationTask, task_id)
        assert task is not None
        assert (task.moderated_score, task.reason, task.moderated_by) == (3, "Agreed", STAFF)


def test_the_what_if_shows_what_would_change_and_changes_nothing(
    client: TestClient, clock: FixedClock
) -> None:
    field_of(10)
    to_assessment()
    with session_scope() as session:
        round_ = rounds.get_round(session, SLUG)
        simulate.score_all(session, round_=round_, now=ASSESSING, seed=7)
        stages_open = stages.open_moderation  # moderation opens over the whole round
    stages_open(SLUG, now=ASSESSING)
    with session_scope() as session:
        simulate.moderate_all(session, round_=rounds.get_round(session, SLUG), now=ASSESSING)
    stages.finalise_assessment(SLUG, now=ASSESSING)
    clock.set(ASSESSING + timedelta(days=1))
    page = client.get(f"/staff/rounds/{SLUG}/selection")
    assert page.status_code == 200
    assert "Decisions the rule gives" in page.text and "Release the decisions" in page.text
    before = app_states()

    one_place = client.get(f"/staff/rounds/{SLUG}/selection", params={"places": "1"})
    assert one_place.status_code == 200
    changed = re.search(r"(\d+) places? would change", one_place.text)
    assert changed is not None and int(changed.group(1)) >= 1
    assert app_states() == before, "trying a what-if changes nothing"

    weights = client.get(
        f"/staff/rounds/{SLUG}/selection", params={"weight-ambition": "-3", "budget": "lots"}
    )
    assert weights.status_code == 400
    assert "Enter the weight of Drive and ambition as a number from 0 to 1000" in weights.text
    assert "Enter the budget in pounds" in weights.text

    # careless or hostile figures: refused at once, on the page, and nothing changes
    places_error = "Enter the number of places as a whole number from 1 to 9999"
    for params, error in (
        ({"places": "²"}, places_error),  # a digit to isdigit(), not to int(): was a 500
        ({"places": "9" * 40}, places_error),
        ({"budget": "9" * 40}, "Enter the budget in pounds"),  # was a 500
        ({"weight-ambition": "1e1000000"}, "Enter the weight of Drive and ambition"),
    ):
        started = time.monotonic()
        refused = client.get(f"/staff/rounds/{SLUG}/selection", params=params)
        assert time.monotonic() - started < 1
        assert refused.status_code == 400 and error in refused.text, params
    assert app_states() == before

    # released decisions stay as released, whatever a what-if says
    stages.decide(SLUG, now=ASSESSING + timedelta(days=2))
    released = app_states()
    after = client.get(f"/staff/rounds/{SLUG}/selection", params={"places": "1"})
    assert "Decisions released" in after.text and "Release the decisions" not in after.text
    assert app_states() == released
    no_release = post(
        client,
        f"/staff/rounds/{SLUG}/selection",
        f"/staff/rounds/{SLUG}/selection/release",
        data={"confirm": "yes"},
    )
    assert no_release.status_code == 409
    assert "decisions are released once it is bids assessed" in no_release.text


def test_the_dashboard_filters_sorts_pages_and_exports(client: TestClient) -> None:
    field_of(60)
    base = f"/staff/rounds/{SLUG}/applications"
    page = client.get(base)
    assert page.status_code == 200
    assert "60 applications" in page.text and "Page 1 of 2" in page.text
    second = client.get(base, params={"page": "2"})
    assert second.text.count('class="govuk-table__row"') == 10 + 1  # ten rows and the head

    everyone = re.findall(r'applications/\d+">([^<]+)</a>', page.text)
    word = everyone[0].split()[0].lower()  # a word of the first council's name
    found = client.get(base, params={"q": word.upper()})
    rows = re.findall(r'applications/\d+">([^<]+)</a>', found.text)
    assert rows and all(word in r.lower() for r in rows)

    by_name_desc = client.get(base, params={"sort": "council", "order": "desc"})
    names = re.findall(r'applications/\d+">([^<]+)</a>', by_name_desc.text)
    assert names == sorted(names, reverse=True)
    assert 'aria-sort="descending"' in by_name_desc.text

    none = client.get(base, params={"state": "selected"})
    assert "0 applications match the filter" in none.text

    export = client.get(f"{base}.csv", params={"q": word})
    assert export.status_code == 200
    assert export.headers["content-type"].startswith("text/csv")
    table = list(csv.DictReader(io.StringIO(export.text)))
    assert [r["Council"] for r in table] == sorted(rows)
    assert all(r["Status"] == "Expression of interest submitted" for r in table)
    full = list(csv.DictReader(io.StringIO(client.get(f"{base}.csv").text)))
    assert len(full) == 60


def test_a_csv_cell_never_runs_as_a_formula() -> None:
    assert csv_cell('=HYPERLINK("x")') == '\'=HYPERLINK("x")'
    assert csv_cell("-1") == "'-1" and csv_cell("+1") == "'+1" and csv_cell("@A1") == "'@A1"
    assert csv_cell("Essex") == "Essex" and csv_cell(None) == ""


def test_an_application_page_shows_answers_history_and_files_to_staff(
    client: TestClient,
) -> None:
    field_of(3)
    with session_scope() as session:
        application = session.exec(select(Application).order_by(col(Application.id))).first()
        assert application is not None
        ident = application.id
    page = client.get(f"/staff/rounds/{SLUG}/applications/{ident}")
    assert page.status_code == 200
    assert "What is your ambition for your place?" in page.text
    assert "eoi_draft → eoi_submitted" in page.text
    assert client.get(f"/staff/rounds/{SLUG}/applications/999999").status_code == 404
    assert client.get(f"/staff/rounds/another/applications/{ident}").status_code == 404


def test_launching_checks_the_file_and_reports_every_problem_with_its_line(
    client: TestClient,
) -> None:
    page = "/staff/launch"

    def upload(name: str, content: bytes) -> object:
        token = csrf(client.get(page).text)
        return client.post(
            page,
            data={"csrf_token": token, "nonce": "n"},
            files={"prospectus": (name, content, "application/octet-stream")},
        )

    none = client.post(page, data={"csrf_token": csrf(client.get(page).text)})
    assert none.status_code == 400 and "Select a prospectus file" in none.text
    wrong = upload("round.pdf", b"%PDF-1.4")
    assert wrong.status_code == 400 and "must be a YAML file" in wrong.text  # type: ignore[attr-defined]
    broken = (
        example_text().replace("places: 4", "places: four").replace("weight: 40", "weight: -40")
    )
    bad = upload("broken.yaml", broken.encode())
    assert bad.status_code == 400  # type: ignore[attr-defined]
    problems = re.findall(r"<code>(broken\.yaml:\d+:[^<]+)</code>", bad.text)  # type: ignore[attr-defined]
    assert len(problems) >= 2, problems
    assert any("capacity.places" in p for p in problems)
    with session_scope() as session:
        assert session.exec(select(Round)).first() is None

    # refused at once, each with its line, where they froze a process or answered 500
    from test_cli import HOSTILE_PROSPECTUSES

    for name, (text, said) in HOSTILE_PROSPECTUSES.items():
        started = time.monotonic()
        hostile = upload(f"{name}.yaml", text.encode())
        assert time.monotonic() - started < 1, name
        assert hostile.status_code == 400, name  # type: ignore[attr-defined]
        assert f"{name}.yaml:{said}" in hostile.text, name  # type: ignore[attr-defined]
    with session_scope() as session:
        assert session.exec(select(Round)).first() is None

    good = upload("whole-place.yaml", example_text().encode())
    assert good.status_code == 503  # type: ignore[attr-defined]
    assert "Launch the round: nothing was started" in good.text  # type: ignore[attr-defined]
    stages.launch(example_text(), "round.yaml", now=LAUNCHED)
    taken = upload("again.yaml", example_text().replace("title: Whole", "title: Other").encode())
    assert taken.status_code == 400 and "has already been launched" in taken.text  # type: ignore[attr-defined]


def test_implementation_highlights_overdue_returns_in_words(
    client: TestClient, clock: FixedClock
) -> None:
    field_of(10)
    to_assessment()
    with session_scope() as session:
        simulate.score_all(session, round_=rounds.get_round(session, SLUG), now=ASSESSING, seed=7)
    stages.open_moderation(SLUG, now=ASSESSING)
    with session_scope() as session:
        simulate.moderate_all(session, round_=rounds.get_round(session, SLUG), now=ASSESSING)
    stages.finalise_assessment(SLUG, now=ASSESSING)
    stages.decide(SLUG, now=london(2011, 12, 20, 10, 0))
    clock.set(london(2011, 12, 20, 11, 0))
    page = client.get(f"/staff/rounds/{SLUG}/implementation")
    assert "Start implementation" in page.text
    stages.start_implementation(SLUG, now=london(2012, 4, 1, 9, 0))
    clock.set(london(2012, 8, 1, 9, 0))  # the first quarter's return was due in mid July
    page = client.get(f"/staff/rounds/{SLUG}/implementation")
    assert page.status_code == 200
    assert "Overdue" in page.text and "returns are overdue" in page.text
    with session_scope() as session:
        funded = session.exec(
            select(Application).where(Application.state == AppState.IMPLEMENTING)
        ).all()
    assert page.text.count("govuk-tag--red") == len(funded)


def test_the_portal_starts_each_flow_on_the_deployment_the_runner_serves_it_under() -> None:
    from cbflow import flowruns
    from flows.stages import DEADLINE_FLOWS, PORTAL_FLOWS

    assert set(flowruns.DEADLINE_FLOWS) == set(DEADLINE_FLOWS)
    assert not set(DEADLINE_FLOWS) & set(PORTAL_FLOWS)
