"""Councils fill in the forms generated from a prospectus, through the portal: start, one page per
section, errors that keep what was typed, table rows added and removed without JavaScript,
uploads checked, check your answers, one submission however often it is sent, the deadline, the
receipt, and nobody else's application."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from conftest import ROOT, edit, example_text, london
from fastapi.testclient import TestClient
from sqlmodel import select

from cbflow import stages
from cbflow.clock import FixedClock
from cbflow.db import session_scope
from cbflow.models import Application, AuditEvent, OutboxMessage, User
from cbflow.settings import Settings
from cbflow.web import create_app

LAUNCHED = datetime(2011, 10, 17, 9, 0, tzinfo=UTC)
DURING_EOI = london(2011, 11, 1, 10, 0)
AFTER_EOI = london(2011, 11, 10, 12, 0)  # the deadline itself is already too late
PDF = b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(DURING_EOI)


@pytest.fixture
def portal(cbflow_env: Settings, clock: FixedClock) -> Iterator[TestClient]:
    with TestClient(create_app(cbflow_env, clock=clock)) as client:
        yield client


def launch(source: str | None = None) -> str:
    outcome = stages.launch(source or example_text(), "round.yaml", now=LAUNCHED)
    return outcome.round


def csrf(html: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match is not None, "the page has a form with the CSRF field"
    return match.group(1)


def sign_in(client: TestClient, email: str, council: str = "ESS") -> None:
    """Make an applicant for the council and sign in by the link in the outbox."""
    with session_scope() as session:
        session.add(
            User(email=email, name=email.split("@")[0], role="applicant", council_code=council)
        )
    sign_in_as_existing(client, email)


def start(client: TestClient, slug: str) -> str:
    """Start an EOI from the applications page; returns the task list's path."""
    page = client.get("/applications")
    assert page.status_code == 200
    answer = client.post(
        "/applications/start",
        data={"round": slug, "csrf_token": csrf(page.text)},
        follow_redirects=False,
    )
    assert answer.status_code == 303
    return str(answer.headers["location"])


def post(client: TestClient, path: str, data: dict[str, Any], **kwargs: Any) -> Any:
    token = csrf(client.get(path).text)
    return client.post(path, data={**data, "csrf_token": token}, follow_redirects=False, **kwargs)


def submissions(reference: str) -> int:
    with session_scope() as session:
        application = session.exec(
            select(Application).where(Application.reference == reference)
        ).one()
        return len(
            session.exec(
                select(AuditEvent).where(
                    AuditEvent.entity == "application",
                    AuditEvent.entity_id == application.id,
                    AuditEvent.action == "transition",
                    AuditEvent.to_state == "eoi_submitted",
                )
            ).all()
        )


def fill_example(client: TestClient, base: str) -> Any:
    return post(
        client,
        f"{base}/section/place",
        {
            "lead_council": "ESS",
            "partners-rows": "2",
            "partners-0-organisation": "Essex Police",
            "partners-0-role": "Community safety",
            "partners-1-organisation": "NHS North Essex",
            "partners-1-role": "",
            "ambition": "One public service for every family in Essex.",
            "action": "save",
        },
    )


def submit(client: TestClient, base: str) -> Any:
    return client.post(
        f"{base}/submit",
        data={"declaration": "agreed", "csrf_token": csrf(client.get(f"{base}/check").text)},
        follow_redirects=False,
    )


def test_applicant_sees_open_rounds_starts_fills_and_submits_once(portal: TestClient) -> None:
    slug = launch()
    sign_in(portal, "pat@essex.gov.uk")

    home = portal.get("/applications")
    assert "Whole-place community budgets" in home.text
    assert "12:00 on 10 November 2011 (GMT)" in home.text
    base = start(portal, slug)
    tasks = portal.get(base)
    assert "Your place" in tasks.text and "Not started" in tasks.text
    assert "Submit by 12:00 on 10 November 2011 (GMT)" in tasks.text

    saved = fill_example(portal, base)
    assert saved.status_code == 303 and saved.headers["location"] == f"{base}/check"
    assert "Completed" in portal.get(base).text
    check = portal.get(f"{base}/check")
    assert "Essex Police, Community safety" in check.text and "NHS North Essex" in check.text
    assert f'href="{base}/section/place#lead_council"' in check.text

    first, second = submit(portal, base), submit(portal, base)

    assert first.status_code == second.status_code == 303
    assert first.headers["location"] == second.headers["location"] == f"{base}/submitted"
    assert submissions(f"{slug}/ESS") == 1
    confirmation = portal.get(f"{base}/submitted")
    assert "Expression of interest submitted" in confirmation.text
    assert f"{slug}/ESS" in confirmation.text
    assert "We will email you a receipt" in confirmation.text
    # the receipt is a flow's work (the issue-receipts run the submission asked for)
    assert "Your receipt is being prepared" in confirmation.text
    assert portal.get(f"{base}/receipt.pdf").status_code == 404
    stages.issue_receipts(slug, now=DURING_EOI)
    assert "Download your receipt (PDF)" in portal.get(f"{base}/submitted").text
    receipt = portal.get(f"{base}/receipt.pdf")
    assert receipt.status_code == 200 and receipt.content.startswith(b"%PDF")
    with session_scope() as session:
        mail = session.exec(
            select(OutboxMessage).where(OutboxMessage.to == "pat@essex.gov.uk")
        ).all()
    receipts = [m for m in mail if m.subject.startswith("Expression of interest received")]
    assert len(receipts) == 1 and f"{slug}/ESS" in receipts[0].subject
    assert "[Attachment: whole-place-2011-ESS-eoi-receipt.pdf (PDF," in receipts[0].body
    assert "Expression of interest submitted" in portal.get("/applications").text


def test_invalid_answer_shows_linked_error_and_keeps_every_answer(portal: TestClient) -> None:
    slug = launch()
    sign_in(portal, "pat@essex.gov.uk")
    base = start(portal, slug)
    too_long = "word " * 501

    answer = post(
        portal,
        f"{base}/section/place",
        {
            "lead_council": "ESS",
            "partners-rows": "1",
            "partners-0-organisation": "Essex Police",
            "ambition": too_long,
            "action": "save",
        },
    )

    assert answer.status_code == 400
    assert "There is a problem" in answer.text
    assert 'href="#ambition"' in answer.text and 'id="ambition"' in answer.text
    assert "must be 500 words or fewer" in answer.text
    assert '<option value="ESS" selected>' in answer.text
    assert 'value="Essex Police"' in answer.text
    assert too_long.strip() in answer.text
    with session_scope() as session:
        assert session.exec(select(Application)).one().eoi_answers == {}


def test_unreal_date_is_an_error_and_blank_required_is_fine_in_a_draft(portal: TestClient) -> None:
    slug = launch((ROOT / "prospectus" / "whole-place-2011.yaml").read_text())
    sign_in(portal, "pat@essex.gov.uk")
    base = start(portal, slug)

    answer = post(
        portal,
        f"{base}/section/contact",
        {
            "contact_name": "Pat",
            "chief_executive_signoff": "yes",
            "signoff_date-day": "31",
            "signoff_date-month": "2",
            "signoff_date-year": "2011",
        },
    )

    assert answer.status_code == 400
    assert 'href="#signoff_date-day"' in answer.text
    assert 'value="31"' in answer.text and 'value="Pat"' in answer.text


def test_table_rows_are_added_and_removed_without_javascript(portal: TestClient) -> None:
    slug = launch()
    sign_in(portal, "pat@essex.gov.uk")
    base = start(portal, slug)
    typed = {
        "lead_council": "ESS",
        "partners-rows": "1",
        "partners-0-organisation": "Essex Police",
        "ambition": "Ambition",
    }

    added = post(portal, f"{base}/section/place", typed | {"action": "add:partners"})

    assert added.status_code == 200
    assert 'name="partners-1-organisation"' in added.text
    assert 'value="Essex Police"' in added.text and "Remove row 2" in added.text
    two_rows = typed | {"partners-rows": "2", "partners-1-organisation": "Essex Fire"}
    removed = post(portal, f"{base}/section/place", two_rows | {"action": "remove:partners:0"})
    assert 'value="Essex Fire"' in removed.text and "Essex Police" not in removed.text
    assert 'name="partners-1-organisation"' not in removed.text
    assert 'value="Ambition"' not in removed.text  # a textarea keeps its text as content
    assert "Ambition</textarea>" in removed.text


def test_after_the_deadline_submission_is_refused_and_drafts_stay_readable(
    portal: TestClient, clock: FixedClock
) -> None:
    slug = launch()
    clock.set(london(2011, 11, 10, 11, 45))  # a quarter of an hour before: the session stays alive
    sign_in(portal, "pat@essex.gov.uk")
    base = start(portal, slug)
    fill_example(portal, base)
    token = csrf(portal.get(f"{base}/check").text)
    clock.set(AFTER_EOI)

    refused = portal.post(f"{base}/submit", data={"declaration": "agreed", "csrf_token": token})

    assert refused.status_code == 400
    assert "The deadline has passed" in refused.text
    assert submissions(f"{slug}/ESS") == 0
    assert "The deadline has passed" in portal.get(base).text
    assert "NHS North Essex" in portal.get(f"{base}/check").text
    readable = portal.get(f"{base}/section/place")
    assert readable.status_code == 200 and 'value="NHS North Essex"' in readable.text
    assert "The deadline has passed" in readable.text and "Save and continue" not in readable.text
    late = post(portal, f"{base}/section/place", {"lead_council": "ESS", "ambition": "Later"})
    assert late.status_code == 400 and "Your answers were not saved" in late.text


def test_incomplete_submission_goes_back_to_the_first_section_with_a_problem(
    portal: TestClient,
) -> None:
    slug = launch((ROOT / "prospectus" / "whole-place-2011.yaml").read_text())
    sign_in(portal, "pat@essex.gov.uk")
    base = start(portal, slug)
    post(portal, f"{base}/section/place", {"lead_council": "ESS", "place_name": "Essex"})

    answer = submit(portal, base)

    assert answer.status_code == 303
    assert answer.headers["location"] == f"{base}/section/place?check=1"
    page = portal.get(answer.headers["location"])
    assert page.status_code == 400 and 'href="#partners-0-organisation"' in page.text


def test_a_hostile_email_answer_is_a_field_error_within_a_second(portal: TestClient) -> None:
    slug = launch((ROOT / "prospectus" / "whole-place-2011.yaml").read_text())
    sign_in(portal, "pat@essex.gov.uk")
    base = start(portal, slug)
    hostile = "a@" + "." * 40_000 + "@"  # 17 s of a process's time for a pattern of our own

    started = time.monotonic()
    answer = post(
        portal,
        f"{base}/section/contact",
        {"contact_name": "Pat Jones", "contact_email": hostile, "action": "save"},
    )

    assert time.monotonic() - started < 1
    assert answer.status_code == 400
    assert 'href="#contact_email"' in answer.text and "enter an email address" in answer.text
    with session_scope() as session:
        assert session.exec(select(Application.eoi_answers)).one() == {}


def test_money_of_too_many_digits_is_a_field_error_on_save_and_autosave(
    portal: TestClient,
) -> None:
    slug = launch((ROOT / "prospectus" / "whole-place-2011.yaml").read_text())
    sign_in(portal, "pat@essex.gov.uk")
    base = start(portal, slug)
    page = f"{base}/section/ambition"
    typed = {"spend_in_scope_gbp": "1" * 27, "previous_experience": "no"}  # a 500 on both

    started = time.monotonic()
    saved = post(portal, page, {**typed, "action": "save"})
    form = portal.get(page).text
    carried = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', form))
    autosaved = portal.post(f"{page}/autosave", data={**carried, **typed})

    assert time.monotonic() - started < 2  # three requests
    assert saved.status_code == 400 and 'href="#spend_in_scope_gbp"' in saved.text
    assert "at most 13 digits before the pence" in saved.text
    assert autosaved.status_code == 200
    assert "spend_in_scope_gbp" in autosaved.json()["errors"]
    with session_scope() as session:
        stored = session.exec(select(Application.eoi_answers)).one()
    assert "spend_in_scope_gbp" not in stored


def test_answers_are_bounded_and_kept_free_of_hidden_characters(portal: TestClient) -> None:
    slug = launch((ROOT / "prospectus" / "whole-place-2011.yaml").read_text())
    sign_in(portal, "pat@essex.gov.uk")
    base = start(portal, slug)
    megabyte = "x" * 1_000_000  # twenty of these in table cells were stored

    started = time.monotonic()
    place = post(
        portal,
        f"{base}/section/place",
        {
            "lead_council": "ESS",
            "place_name": "Essex",
            "partners-rows": "2",
            "partners-0-organisation": megabyte,
            "partners-0-sector": "Health",
            "partners-1-organisation": "Essex Police",
            "partners-1-sector": "Police",
            "action": "save",
        },
    )
    ambition = post(portal, f"{base}/section/ambition", {"ambition": megabyte, "action": "save"})
    contact = post(
        portal, f"{base}/section/contact", {"contact_name": "P" * 1_001, "action": "save"}
    )

    assert time.monotonic() - started < 3  # six requests
    assert place.status_code == ambition.status_code == contact.status_code == 400
    assert "row 1, organisation: must be 1,000 characters or fewer" in place.text
    assert "must be 30,000 characters or fewer" in ambition.text
    assert "must be 1,000 characters or fewer" in contact.text
    with session_scope() as session:
        assert session.exec(select(Application.eoi_answers)).one() == {}

    # a NUL byte and a right-to-left override are not kept, in answers or in a file's name
    typed = "Essex\x00 and \u202eSouthend"
    saved = post(
        portal,
        f"{base}/section/place",
        {"lead_council": "ESS", "place_name": typed, "partners-rows": "0", "action": "save"},
    )
    assert saved.status_code == 303
    with session_scope() as session:
        answers = session.exec(select(Application.eoi_answers)).one()
    assert answers["place_name"] == "Essex and Southend"
    assert "Essex and Southend" in portal.get(f"{base}/section/place").text


def test_an_uploads_name_is_kept_without_hidden_characters(tmp_path: Path) -> None:
    from cbflow.web.forms_ui import Upload, store_upload

    # shown on staff pages as "report.pdf" followed by a reversed "exe.": really an .exe?
    upload = Upload.of_bytes("C:\\Users\\pat\\report\u202efdp.exe\x00\n.pdf", b"%PDF-1.4")

    stored = store_upload(tmp_path, upload)

    assert stored["name"] == "reportfdp.exe .pdf"
    assert (tmp_path / stored["sha256"]).read_bytes() == b"%PDF-1.4"


def test_shipped_prospectus_every_section_filled_and_submitted(portal: TestClient) -> None:
    slug = launch((ROOT / "prospectus" / "whole-place-2011.yaml").read_text())
    sign_in(portal, "pat@essex.gov.uk")
    base = start(portal, slug)
    ambition = " ".join(["joined-up"] * 120)
    pages = {
        "place": {
            "lead_council": "ESS",
            "place_name": "Essex",
            "partners-rows": "3",
            **{f"partners-{i}-organisation": f"Partner {i}" for i in range(3)},
            **{f"partners-{i}-sector": "Health" for i in range(3)},
        },
        "ambition": {
            "ambition": ambition,
            "services_in_scope": ["Housing", "Transport"],
            "spend_in_scope_gbp": "£1,250,000.50",
            "previous_experience": "no",
            "previous_experience_detail": "dropped: the question is hidden by the answer no",
        },
        "capacity": {"capacity": "A programme board chaired by the leader."},
        "contact": {
            "contact_name": "Pat Jones",
            "contact_email": "pat@essex.gov.uk",
            "chief_executive_signoff": "yes",
            "signoff_date-day": "3",
            "signoff_date-month": "11",
            "signoff_date-year": "2011",
        },
    }
    for section, data in pages.items():
        answer = post(portal, f"{base}/section/{section}", data)
        assert answer.status_code == 303, (section, answer.text)
    assert portal.get(base).text.count("Completed") == 4

    assert submit(portal, base).status_code == 303

    with session_scope() as session:
        answers = session.exec(select(Application)).one().eoi_answers
    assert answers["spend_in_scope_gbp"] == "1250000.50"
    assert answers["services_in_scope"] == ["Housing", "Transport"]
    assert answers["signoff_date"] == "2011-11-03"
    assert answers["previous_experience"] is False
    assert "previous_experience_detail" not in answers
    assert submissions(f"{slug}/ESS") == 1


def test_uploads_are_checked_by_type_content_and_size(
    portal: TestClient, cbflow_env: Settings
) -> None:
    source = edit(
        example_text(),
        (
            "              max_words: 500\n              required: true\n    sift:",
            "              max_words: 500\n              required: true\n"
            "            - {id: plan, label: Outline plan, type: file, accept: [pdf], max_mb: 1}\n"
            "    sift:",
        ),
    )
    slug = launch(source)
    sign_in(portal, "pat@essex.gov.uk")
    base = start(portal, slug)
    path = f"{base}/section/place"
    form = {"lead_council": "ESS", "action": "save"}

    def upload(name: str, content: bytes) -> Any:
        return post(portal, path, form, files={"plan": (name, content, "application/pdf")})

    assert 'enctype="multipart/form-data"' in portal.get(path).text
    assert "must be a PDF" in upload("plan.docx", b"PK\x03\x04").text
    assert "not a real PDF" in upload("plan.pdf", b"MZ not a pdf").text
    assert "smaller than 1 MB" in upload("plan.pdf", PDF + b"0" * 1024 * 1024).text
    assert upload("../../plan.pdf", PDF).status_code == 303

    with session_scope() as session:
        stored = session.exec(select(Application)).one().eoi_answers["plan"]
    assert stored["name"] == "plan.pdf" and stored["size"] == len(PDF)
    kept = cbflow_env.data_dir / "uploads"
    assert [p.read_bytes() for p in kept.rglob("*") if p.is_file()] == [PDF]
    page = portal.get(path).text
    assert "Uploaded: plan.pdf" in page
    assert re.search(r"The file must be smaller than \d+(\.\d+)? MB\.", page)  # its limit, said
    # saving again without choosing a file keeps the one uploaded
    assert post(portal, path, form).status_code == 303
    with session_scope() as session:
        assert session.exec(select(Application)).one().eoi_answers["plan"] == stored


def test_another_councils_application_is_not_found(cbflow_env: Settings, clock: FixedClock) -> None:
    slug = launch()
    app = create_app(cbflow_env, clock=clock)
    with TestClient(app) as essex, TestClient(app) as kent:
        sign_in(essex, "pat@essex.gov.uk", "ESS")
        sign_in(kent, "kim@kent.gov.uk", "KEN")
        base = start(essex, slug)
        fill_example(essex, base)
        assert submit(essex, base).status_code == 303
        stages.issue_receipts(slug, now=DURING_EOI)
        assert essex.get(f"{base}/receipt.pdf").status_code == 200
        token = csrf(kent.get("/applications").text)
        for page in ("", "/check", "/section/place", "/submitted", "/receipt.pdf"):
            assert kent.get(f"{base}{page}").status_code == 404, page
        for page in ("/section/place", "/submit"):
            answer = kent.post(f"{base}{page}", data={"csrf_token": token, "declaration": "agreed"})
            assert answer.status_code == 404, page
        assert kent.get(base.rsplit("/", 1)[0]).status_code == 404
        assert "Essex" not in kent.get("/applications").text.split("Applications")[-1]


def test_start_is_for_eligible_councils_and_open_rounds_only(
    portal: TestClient, clock: FixedClock
) -> None:
    slug = launch(edit(example_text(), ("[CTY, UA, MD, LBO, CC, NMD]", "[CTY, UA]")))
    sign_in(portal, "dee@adur.gov.uk", "ADU")  # a district: not among the round's types
    page = portal.get("/applications")
    assert "Whole-place community budgets" not in page.text

    answer = portal.post("/applications/start", data={"round": slug, "csrf_token": csrf(page.text)})

    assert answer.status_code == 404
    with session_scope() as session:
        assert session.exec(select(Application)).all() == []


def test_applications_need_an_applicant(portal: TestClient) -> None:
    assert portal.get("/applications", follow_redirects=False).status_code == 303


def test_posts_without_the_csrf_token_are_refused(portal: TestClient) -> None:
    slug = launch()
    sign_in(portal, "pat@essex.gov.uk")
    base = start(portal, slug)

    assert portal.post("/applications/start", data={"round": slug}).status_code == 403
    assert portal.post(f"{base}/section/place", data={"lead_council": "ESS"}).status_code == 403
    assert portal.post(f"{base}/submit", data={"declaration": "agreed"}).status_code == 403
    with session_scope() as session:
        assert session.exec(select(Application)).one().eoi_answers == {}


def test_invited_council_fills_in_and_submits_its_bid(
    portal: TestClient, clock: FixedClock
) -> None:
    from cbflow.services import applications, rounds, sift

    slug = launch()
    with session_scope() as session:
        round_ = rounds.get_round(session, slug)
        application, _ = applications.start_application(
            session, round_=round_, council_code="ESS", actor="test", now=DURING_EOI
        )
        applications.submit(
            session,
            application=application,
            stage="eoi",
            answers={
                "lead_council": "ESS",
                "partners": [{"organisation": "Police"}, {"organisation": "Health"}],
                "ambition": "Pool the budgets.",
            },
            actor="test",
            now=DURING_EOI,
        )
        sift.close_eoi(session, round_=round_, actor="test", now=AFTER_EOI)
        sift.confirm_shortlist(
            session, round_=round_, chosen=[application], actor="test", now=AFTER_EOI
        )
    clock.set(london(2011, 11, 25, 10, 0))
    sign_in(portal, "pat@essex.gov.uk")
    home = portal.get("/applications")
    assert "Invited to bid" in home.text
    base = re.search(r'href="(/applications/\d+/bid)"', home.text)
    assert base is not None
    bid = base.group(1)
    assert "Pooled budget" in portal.get(bid).text
    assert "Submit by the end of 9 December 2011" in portal.get(bid).text

    saved = post(
        portal,
        f"{bid}/section/budget",
        {
            "pooled_budget-rows": "2",
            "pooled_budget-0-organisation": "Essex County Council",
            "pooled_budget-0-year": "2012-13",
            "pooled_budget-0-amount_gbp": "1,000,000",
            "pooled_budget-1-organisation": "Essex Police",
            "pooled_budget-1-year": "2013-14",
            "pooled_budget-1-amount_gbp": "250000.50",
            "support_requested_gbp": "1500000",
        },
    )
    assert saved.status_code == 303, saved.text
    assert submit(portal, bid).status_code == 303

    with session_scope() as session:
        application = session.exec(select(Application)).one()
        assert application.state == "bid_submitted"
        assert application.support_requested_pence == 150_000_000
        assert application.bid_answers["pooled_budget"][1]["amount_gbp"] == "250000.50"
    assert "Bid submitted" in portal.get(f"{bid}/submitted").text
    stages.issue_receipts(slug, now=clock())
    assert portal.get(f"{bid}/receipt.pdf").content.startswith(b"%PDF")


def test_answers_are_shown_as_text_never_as_markup(portal: TestClient) -> None:
    slug = launch()
    sign_in(portal, "pat@essex.gov.uk")
    base = start(portal, slug)
    script = "<script>alert(1)</script>"
    post(
        portal,
        f"{base}/section/place",
        {"partners-rows": "1", "partners-0-organisation": script, "ambition": script},
    )

    for page in (f"{base}/check", f"{base}/section/place"):
        html = portal.get(page).text
        assert script not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html


def test_other_roles_have_no_applications(portal: TestClient) -> None:
    with session_scope() as session:
        session.add(User(email="sam@assess.example", name="Sam", role="assessor"))
    sign_in_as_existing(portal, "sam@assess.example")

    assert portal.get("/applications").status_code == 403


def sign_in_as_existing(client: TestClient, email: str) -> None:
    """Sign in by the link the outbox holds for the address."""
    client.post("/sign-in", data={"email": email, "csrf_token": csrf(client.get("/sign-in").text)})
    with session_scope() as session:
        body = session.exec(select(OutboxMessage.body).where(OutboxMessage.to == email)).one()
    path = re.search(r"/sign-in/[\w-]+", body)
    assert path is not None
    page = client.get(path.group(0))
    answer = client.post(
        path.group(0), data={"csrf_token": csrf(page.text)}, follow_redirects=False
    )
    assert answer.status_code == 303
