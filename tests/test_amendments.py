"""Amending a launched round's prospectus: what staff and councils read changed, what is refused
and why, and what a published amendment does (the version kept and in force, its document, the
councils told what changed for them)."""

from __future__ import annotations

from datetime import timedelta

import httpx
import pytest
import round_walk
from conftest import london
from fastapi.testclient import TestClient
from portal import add_user, csrf, sign_in
from pypdf import PdfReader
from sqlmodel import col, select

from cbflow import stages
from cbflow.clock import FixedClock
from cbflow.db import session_scope
from cbflow.models import Application, Document, OutboxMessage, ProspectusVersion
from cbflow.prospectus import parse
from cbflow.services import amendments, applications, deadlines, rounds
from cbflow.settings import Settings
from cbflow.web import create_app

SLUG = round_walk.SLUG
SOURCE = round_walk.SOURCE
LATER_BIDS = (
    "bid:        {opens: 2011-11-21, closes: 2011-12-09}",
    "bid:        {opens: 2011-11-21, closes: 2012-01-11}",
)
AMEND_DAY = london(2011, 11, 25, 10, 0)  # invited councils are writing their bids


def changed(source: str, *pairs: tuple[str, str]) -> str:
    for old, new in pairs:
        assert old in source, old
        source = source.replace(old, new)
    return source


def texts(old: str, new: str) -> list[str]:
    return [c.text for c in amendments.compare(parse(old), parse(new))]


def test_the_changes_read_as_people_say_them() -> None:
    new = changed(
        SOURCE,
        LATER_BIDS,
        (
            "hint: Health, police, Jobcentre Plus, the voluntary sector ...",
            "hint: Health, police, probation, Jobcentre Plus, the voluntary sector ...",
        ),
        (
            "              max: 1500000\n              required: true\n",
            "              max: 1500000\n              required: true\n"
            "            - id: match_funding\n              label: Match funding from partners\n"
            "              type: money\n",
        ),
        ("guidance: Markdown guidance shown to assessors", "guidance: What the place will do"),
        ("  Places are invited to develop", "  Places are warmly invited to develop"),
    )
    assert texts(SOURCE, new) == [
        "Summary reworded",
        "Bids close: was the end of 9 December 2011, now the end of 11 January 2012",
        "Guidance of question ‘Partner organisations’ reworded",
        "Question ‘Match funding from partners’ added to the bid form (optional)",
        "Criterion ‘Drive and ambition’ reworded",
    ]
    changes = amendments.compare(parse(SOURCE), parse(new))
    assert [c.stage for c in changes] == ["general", "bid", "eoi", "bid", "assessment"]


def test_other_changes_are_named_by_the_part_that_changed() -> None:
    new = changed(
        SOURCE,
        ("due: 2012-10-31}", "due: 2012-11-30}"),
        ("weight: 40", "weight: 50"),
        ("places: 2 ", "places: 3 "),
    )
    assert texts(SOURCE, new) == [
        "Weight of criterion ‘Partnership working’: was 40, now 50",
        "Places: was 2, now 3",
        "Implementation: milestones, returns and payments changed",
    ]
    assert texts(SOURCE, SOURCE + "\n# a comment\n") == []


@pytest.fixture
def eois_in(any_db_env: Settings) -> Settings:
    """The round launched, five EOIs in, closed, four councils invited to bid (Birmingham,
    Bolton, Bradford, Cambridge); each council has an officer."""
    stages.launch(SOURCE, f"{SLUG}.yaml", now=round_walk.LAUNCH_AT)
    for n, council in enumerate(round_walk.COUNCILS):
        round_walk.submit_eoi(
            SLUG, council, round_walk.EOI_DAY + timedelta(minutes=n), "Pool budgets."
        )
        add_user(f"officer@{council.lower()}.example", "applicant", council=council)
    stages.close_eoi(SLUG, now=round_walk.EOI_CLOSE)
    stages.invite_to_bid(SLUG, now=round_walk.INVITE_DAY)
    return any_db_env


def test_launch_keeps_version_one(any_db_env: Settings) -> None:
    stages.launch(SOURCE, f"{SLUG}.yaml", now=round_walk.LAUNCH_AT)
    with session_scope() as session:
        round_ = rounds.get_round(session, SLUG)
        (first,) = amendments.versions_of(session, round_)
        assert (first.version, first.sha256, first.source) == (1, round_.source_sha256, SOURCE)
        assert round_.prospectus_version == 1


def test_an_amendment_moving_the_bid_deadline_is_published_and_told(eois_in: Settings) -> None:
    new = changed(
        SOURCE,
        LATER_BIDS,
        ("guidance: Markdown guidance shown to assessors", "guidance: What the place will do"),
        (
            "hint: Health, police, Jobcentre Plus, the voluntary sector ...",
            "hint: Health, police, probation, Jobcentre Plus, the voluntary sector ...",
        ),
    )
    outcome = stages.amend_prospectus(
        SLUG,
        new,
        "whole-place-2011-v2.yaml",
        "More time for bids",
        now=AMEND_DAY,
        actor="lead@staff.example",
    )
    assert outcome.counts["version"] == 2 and outcome.counts["new"] == 1
    with session_scope() as session:
        round_ = rounds.get_round(session, SLUG)
        assert round_.prospectus_version == 2 and round_.prospectus_source == new
        assert rounds.prospectus_of(round_).timetable.bid is not None
        assert deadlines.stage_closes(session, round_, "bid") == london(2012, 1, 12, 0, 0)
        versions = amendments.versions_of(session, round_)
        assert [(v.version, v.reason) for v in versions] == [
            (1, "launched"),
            (2, "More time for bids"),
        ]
        assert versions[1].published_by == "lead@staff.example"
        assert versions[1].changes[0] == (
            "Bids close: was the end of 9 December 2011, now the end of 11 January 2012"
        )
        documents = {
            d.key: d for d in session.exec(select(Document).where(Document.kind == "prospectus"))
        }
        assert set(documents) == {f"{SLUG}/prospectus", f"{SLUG}/prospectus/v2"}
        assert documents[f"{SLUG}/prospectus"].prospectus_version == 1
        assert documents[f"{SLUG}/prospectus/v2"].prospectus_version == 2
        reissued = eois_in.documents_dir / documents[f"{SLUG}/prospectus/v2"].path
        first_page = " ".join(PdfReader(reissued).pages[0].extract_text().split())
        assert "Prospectus: version 2, amended 25 November 2011" in first_page
        assert "Changes in this version" in first_page
        assert "now the end of 11 January 2012" in first_page
        assert (eois_in.documents_dir / documents[f"{SLUG}/prospectus"].path).is_file()
        mail = list(
            session.exec(
                select(OutboxMessage)
                .where(col(OutboxMessage.subject).contains("amended"))
                .order_by(col(OutboxMessage.to))
            )
        )
    # the invited councils are told of the bid deadline and the criterion, not of the EOI
    # form's guidance (they are past it); the council not invited is told nothing
    invited = {
        "officer@bir.example",
        "officer@bol.example",
        "officer@brd.example",
        "officer@cam.example",
    }
    assert {m.to for m in mail} == invited
    body = mail[0].body
    assert "Bids close: was the end of 9 December 2011, now the end of 11 January 2012" in body
    assert "Criterion ‘Drive and ambition’ reworded" in body
    assert "Partner organisations" not in body
    assert "More time for bids" in body

    # the same file again: nothing new
    again = stages.amend_prospectus(
        SLUG, new, "whole-place-2011-v2.yaml", "More time for bids", now=AMEND_DAY
    )
    assert again.counts["new"] == 0 and not again.documents
    with session_scope() as session:
        assert len(session.exec(select(ProspectusVersion)).all()) == 2
        assert (
            len(
                session.exec(
                    select(OutboxMessage).where(col(OutboxMessage.subject).contains("amended"))
                ).all()
            )
            == 4
        )
        # launching the first file again is still the same round, unchanged
        round_, created = rounds.launch_round(
            session, source=SOURCE, path="x.yaml", actor="x", now=AMEND_DAY
        )
        assert not created and round_.prospectus_version == 2


def refusals(new: str, now: object = AMEND_DAY) -> list[str]:
    with session_scope() as session:
        round_ = rounds.get_round(session, SLUG)
        return amendments.check(session, round_, parse(new), now)  # type: ignore[arg-type]


def test_an_amendment_that_breaks_submitted_answers_is_refused(eois_in: Settings) -> None:
    required = changed(
        SOURCE,
        (
            "              max_words: 500\n              required: true\n",
            "              max_words: 500\n              required: true\n"
            "            - id: vision\n              label: Your vision\n"
            "              type: textarea\n              required: true\n",
        ),
    )
    (reason,) = refusals(required)
    assert reason.startswith(
        "the changes to the expression of interest form would invalidate answers already "
        "given (5 submitted; for example whole-place-2011/BIR: Your vision: this question "
        "must be answered)"
    )
    removed = changed(
        SOURCE,
        (
            "            - id: ambition\n              label: What is your ambition for your "
            "place?\n              type: textarea\n              max_words: 500\n"
            "              required: true\n",
            "",
        ),
        ("evidence: [ambition]         #", "evidence: [partners]         #"),
        ("evidence: [ambition]\n", "evidence: [partners]\n"),
    )
    assert any("would invalidate answers" in r for r in refusals(removed))
    with pytest.raises(amendments.AmendmentRefused) as refused:
        stages.amend_prospectus(SLUG, required, "v2.yaml", "A new question", now=AMEND_DAY)
    assert "would invalidate answers" in str(refused.value)
    with session_scope() as session:
        round_ = rounds.get_round(session, SLUG)
        assert round_.prospectus_version == 1 and round_.prospectus_source == SOURCE
        assert len(amendments.versions_of(session, round_)) == 1


def test_dates_that_have_passed_stay_and_none_moves_into_the_past(eois_in: Settings) -> None:
    eoi_moved = changed(
        SOURCE,
        (
            'eoi:        {opens: 2011-10-17, closes: "2011-11-10T12:00"}',
            'eoi:        {opens: 2011-10-17, closes: "2011-11-11T12:00"}',
        ),
    )
    assert refusals(eoi_moved) == [
        "Expressions of interest close (12:00 on 10 November 2011 (GMT)) has passed: it can "
        "no longer be changed"
    ]
    into_the_past = changed(
        SOURCE, (LATER_BIDS[0], "bid:        {opens: 2011-11-21, closes: 2011-11-24}")
    )
    assert refusals(into_the_past) == [
        "Bids close would be the end of 24 November 2011, which has passed: a date cannot be "
        "moved into the past"
    ]
    other_round = changed(SOURCE, ("id: whole-place-2011", "id: whole-place-2012"))
    assert refusals(other_round)[0].startswith("the file is the prospectus of 'whole-place-2012'")
    sift = changed(
        SOURCE,
        ("check: {question: partners, min_rows: 2}", "check: {question: partners, min_rows: 3}"),
    )
    assert refusals(sift) == [
        "the sift's checks and the number invited to bid cannot change once expressions of "
        "interest have closed"
    ]
    assert refusals(SOURCE + "\n# only a comment\n") == [
        "the file changes nothing in the prospectus (only its comments or layout differ)"
    ]


def test_an_application_records_the_version_it_was_started_under(eois_in: Settings) -> None:
    stages.amend_prospectus(SLUG, changed(SOURCE, LATER_BIDS), "v2.yaml", "Later", now=AMEND_DAY)
    with session_scope() as session:
        round_ = rounds.get_round(session, SLUG)
        first = session.exec(select(Application).where(Application.council_code == "BIR")).one()
        assert first.prospectus_version == 1
        # a council starting an application now starts under version 2
        late, _ = applications.start_application(
            session, round_=round_, council_code="LDS", actor="x", now=AMEND_DAY
        )
        assert late.prospectus_version == 2


def test_weights_cannot_change_once_scored_but_wording_can(cbflow_env: Settings) -> None:
    round_walk.to_assessment(assessors=3)
    round_walk.score_everything()
    now = round_walk.FINAL_DAY
    heavier = changed(SOURCE, ("weight: 40", "weight: 50"))
    assert refusals(heavier, now) == [
        "the criteria, their weights and the scoring scale cannot change once assessors have "
        "scored (only their wording can)"
    ]
    reworded = changed(
        SOURCE, ("guidance: Markdown guidance shown to assessors", "guidance: Read closely")
    )
    assert refusals(reworded, now) == []


def test_the_staff_pages_check_the_file_show_the_changes_and_publish_only_the_file_checked(
    eois_in: Settings,
) -> None:
    add_user("lead@staff.example", "staff")
    page = f"/staff/rounds/{SLUG}/amendment"

    def upload(client: TestClient, text: str, name: str = "v2.yaml") -> httpx.Response:
        return client.post(
            page,
            data={"csrf_token": csrf(client.get(page).text)},
            files={"prospectus": (name, text.encode(), "application/x-yaml")},
        )

    with TestClient(create_app(eois_in, clock=FixedClock(AMEND_DAY))) as staff:
        sign_in(staff, "lead@staff.example")
        overview = staff.get(f"/staff/rounds/{SLUG}").text
        assert page in overview and "Prospectus, version 1 (PDF)" in overview
        broken = upload(staff, SOURCE.replace("places: 2 ", "places: many "))
        assert broken.status_code == 400
        assert "The prospectus has 1 problem" in broken.text
        later = changed(SOURCE, LATER_BIDS)
        checked = upload(staff, later)
        assert checked.status_code == 200
        assert (
            "Bids close: was the end of 9 December 2011, now the end of 11 January 2012"
            in checked.text
        )
        assert "Publish version 2" in checked.text
        sha256 = amendments.sha256_of(later)
        assert f'name="sha256" value="{sha256}"' in checked.text
        unknown = upload(staff, SOURCE + "surprise: 1\n")
        assert unknown.status_code == 400 and "surprise" in unknown.text
        moved = upload(
            staff,
            changed(
                SOURCE,
                (
                    'eoi:        {opens: 2011-10-17, closes: "2011-11-10T12:00"}',
                    'eoi:        {opens: 2011-10-17, closes: "2011-11-11T12:00"}',
                ),
            ),
        )
        assert moved.status_code == 409
        assert "Why it cannot be published" in moved.text
        assert "has passed: it can no longer be changed" in moved.text
        assert "Publish version 2" not in moved.text

        confirm = f"{page}/confirm"
        token = csrf(staff.get(page).text)
        # a file never checked cannot be published, whatever hash is sent
        forged = staff.post(
            confirm, data={"csrf_token": token, "sha256": "0" * 64, "reason": "Why not"}
        )
        assert forged.status_code == 400 and "check it first" in forged.text
        # the checked file, without a reason: asked for one
        bare = staff.post(confirm, data={"csrf_token": token, "sha256": sha256, "name": "v2.yaml"})
        assert bare.status_code == 400 and "Give the reason for the amendment" in bare.text
        # with one: the flow is started (here no Prefect server answers: nothing is started)
        started = staff.post(
            confirm,
            data={"csrf_token": token, "sha256": sha256, "name": "v2.yaml", "reason": "Later"},
        )
        assert started.status_code == 503 and "nothing was started" in started.text
    with session_scope() as session:
        assert rounds.get_round(session, SLUG).prospectus_version == 1


def test_places_and_budget_cannot_change_once_decided(cbflow_env: Settings) -> None:
    round_walk.to_publication()
    now = round_walk.PUBLISH_DAY
    assert refusals(changed(SOURCE, ("places: 2 ", "places: 3 ")), now) == [
        "the places, the budget and the selection's limits cannot change once decided"
    ]
    assert refusals(changed(SOURCE, ("budget_gbp: 4800000", "budget_gbp: 5000000")), now) == [
        "the places, the budget and the selection's limits cannot change once decided"
    ]
    assert (
        refusals(changed(SOURCE, ("  Places are invited", "  Places are warmly invited")), now)
        == []
    )
