"""The programme board's view: figures across rounds computed from the records, the same on the
page, in the CSV and in the pack (PDF), and the pack issued once per key."""

from __future__ import annotations

import csv
import html
import io
import re
import statistics
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from conftest import london
from fastapi.testclient import TestClient
from portal import add_user, sign_in
from pypdf import PdfReader
from round_walk import PUBLISH_DAY, SECOND_WAVE, SLUG, submit_eoi, to_publication
from sqlmodel import col, select

from cbflow import stages
from cbflow.clock import FixedClock
from cbflow.db import session_scope
from cbflow.lifecycle import FUNDED
from cbflow.models import (
    Application,
    BoardPack,
    Follow,
    MilestoneRecord,
    PublishedModel,
    ReturnRecord,
    Round,
)
from cbflow.services import applications, board, replication, rounds
from cbflow.settings import Settings
from cbflow.web import create_app

WAVE = "whole-place-2013"
NOW = london(2013, 5, 2, 12, 0)  # the second wave's EOIs closed on 30 April: no run closed them
PAID = 1_234_567  # pence, on Birmingham's first return


def _programme() -> int:
    """The first round completed with Birmingham's model published; the second wave launched,
    its EOIs past their close with nobody having closed them. Councils follow Birmingham, one
    intending to adopt; Devon adopts into the second wave and submits, Kent adopts through the
    rolling route and submits, Hull adopts and has not submitted."""
    model_id = to_publication()
    stages.launch(SECOND_WAVE, "second-wave.yaml", now=PUBLISH_DAY - timedelta(days=20))
    submit_eoi(WAVE, "CAM", PUBLISH_DAY + timedelta(days=3), "Join up.", PUBLISH_DAY)
    with session_scope() as session:
        model = session.get(PublishedModel, model_id)
        assert model is not None
        for n, council in enumerate(("DEV", "KEN", "WSM")):
            session.add(
                Follow(
                    application_id=model.application_id,
                    council_code=council,
                    followed_by=f"officer@{council.lower()}.example",
                    followed_at=PUBLISH_DAY,
                    intends_to_adopt_at=PUBLISH_DAY if n == 0 else None,
                    intends_by="officer@dev.example" if n == 0 else None,
                )
            )
        first = session.exec(
            select(ReturnRecord).where(ReturnRecord.application_id == model.application_id)
        ).first()
        assert first is not None
        first.payment_pence = PAID
        session.add(first)
        devon, _ = replication.adopt_model(
            session,
            model_id=model_id,
            council_code="DEV",
            actor="council:DEV",
            now=PUBLISH_DAY,
            into=rounds.get_round(session, WAVE),
        )
        applications.submit(
            session,
            application=devon,
            stage="eoi",
            answers={**devon.eoi_answers, "lead_council": "DEV", "ambition": "As Birmingham."},
            actor="council:DEV",
            now=PUBLISH_DAY + timedelta(days=1, hours=8),
        )
        # the rolling route's adoption, as its form leaves it submitted
        session.add(
            Application(
                reference=f"{SLUG}/KEN/adopts-{model_id}",
                round_id=model.round_id,
                council_code="KEN",
                state="eoi_submitted",
                route="adoption",
                adopted_from_model_id=model_id,
                eoi_submitted_at=PUBLISH_DAY + timedelta(days=4),
                created_at=PUBLISH_DAY + timedelta(days=2),
            )
        )
        replication.adopt_model(
            session, model_id=model_id, council_code="KIN", actor="council:KIN", now=PUBLISH_DAY
        )
    return model_id


def _expected(slug: str, now: datetime) -> dict[str, object]:
    """The figures of one round, straight from the records."""
    with session_scope() as session:
        round_ = session.exec(select(Round).where(Round.slug == slug)).one()
        apps = list(session.exec(select(Application).where(Application.round_id == round_.id)))
        funded = [a.id for a in apps if a.state in FUNDED]
        today = now.astimezone(rounds.prospectus_of(round_).zone).date()
        milestones = list(
            session.exec(
                select(MilestoneRecord).where(col(MilestoneRecord.application_id).in_(funded))
            )
        )
        returns = list(
            session.exec(select(ReturnRecord).where(col(ReturnRecord.application_id).in_(funded)))
        )
        follows = list(
            session.exec(select(Follow).where(col(Follow.application_id).in_([a.id for a in apps])))
        )
        models = list(
            session.exec(select(PublishedModel).where(PublishedModel.round_id == round_.id))
        )
        published = {m.id: m.published_at for m in models}
        adopters = list(
            session.exec(
                select(Application).where(
                    col(Application.adopted_from_model_id).in_(list(published))
                )
            )
        )
        days = [
            Decimal(str((a.eoi_submitted_at - published[a.adopted_from_model_id]).total_seconds()))
            / 86400
            for a in adopters
            if a.eoi_submitted_at is not None and a.adopted_from_model_id is not None
        ]
        return {
            "applications": len(apps),
            "places": len(funded),
            "milestones_met": sum(m.met_on is not None for m in milestones),
            "milestones_due": sum(m.met_on is None and m.due >= today for m in milestones),
            "milestones_late": sum(m.met_on is None and m.due < today for m in milestones),
            "returns_made": sum(r.submitted_at is not None for r in returns),
            "returns_overdue": sum(r.submitted_at is None and r.due < now for r in returns),
            "committed_pence": sum(
                a.support_requested_pence or 0 for a in apps if a.state in FUNDED
            ),
            "paid_pence": sum(r.payment_pence or 0 for r in returns),
            "followers": len(follows),
            "intending": sum(f.intends_to_adopt_at is not None for f in follows),
            "adoptions": len(adopters),
            "median": (
                Decimal(str(statistics.median(days))).quantize(Decimal("0.1")) if days else None
            ),
        }


def _client(settings: Settings, email: str, role: str, at: datetime) -> TestClient:
    add_user(email, role, council="BIR" if role == "applicant" else None)
    client = TestClient(create_app(settings, clock=FixedClock(at)))
    client.__enter__()
    sign_in(client, email)
    return client


def test_the_boards_figures_are_those_of_the_records_on_the_page_and_in_the_csv(
    any_db_env: Settings,
) -> None:
    """On SQLite and on PostgreSQL."""
    cbflow_env = any_db_env
    _programme()
    with session_scope() as session:
        figures = board.figures(session, NOW)
    assert [r.slug for r in figures.rounds] == [SLUG, WAVE]
    first, wave = figures.rounds
    for found in figures.rounds:
        expected = _expected(found.slug, NOW)
        assert {name: getattr(found, name) for name, _ in (*board.COUNTS, *board.MONEY[1:])} == {
            k: v for k, v in expected.items() if k not in ("adoptions", "median")
        }
        assert (len(found.adoptions), found.adoption_median_days) == (
            expected["adoptions"],
            expected["median"],
        )
    # what the test set up, read as a person would
    assert (first.state, wave.state) == ("completed", "launched")
    assert (first.places, first.paid_pence, first.followers, first.intending) == (2, PAID, 3, 1)
    assert first.budget_pence == 480_000_000 and first.committed_pence == 300_000_000
    assert first.late == [] and first.next_date is None
    assert [title for title, _ in wave.late] == ["Close expressions of interest and sift"]
    assert wave.next_date is not None and wave.next_date[1] > NOW
    assert sorted(
        (a.council, a.route, board.tenths(a.days) if a.days else None) for a in first.adoptions
    ) == [
        ("Devon", "competitive", Decimal("1.3")),
        ("Kent", "adoption", Decimal("4.0")),
        ("Kings Lynn and West Norfolk", "competitive", None),
    ]
    assert first.adoption_median_days == Decimal("2.7")
    assert figures.total("places") == 2 and figures.late_rounds == 1

    staff = _client(cbflow_env, "lead@staff.example", "staff", NOW)
    page = staff.get("/staff/board")
    assert page.status_code == 200
    rows = list(csv.reader(io.StringIO(staff.get("/staff/board.csv").text)))
    assert rows[0] == list(board.HEADER)
    assert [row[0] for row in rows[1:]] == [SLUG, WAVE, "total"]
    # each round's section on the page shows the figures its CSV row holds
    text = html.unescape(re.sub(r"<[^>]+>", " ", page.text))
    text = re.sub(r"\s+", " ", text)
    column = {name: n for n, name in enumerate(rows[0])}
    sections = text.split(" Each round ")[1].split("The board's packs")[0]
    totals = text.split(" All rounds ")[1].split(" Each round ")[0]
    for row, part in zip(
        rows[1:],
        [sections.split(WAVE_TITLE)[0], sections.split(WAVE_TITLE)[1], totals],
        strict=True,
    ):
        met, due, late = (row[column[f"Milestones {w}"]] for w in ("met", "due", "late"))
        assert f"Places {row[column['Places']]} " in part
        assert f"Applications {row[column['Applications']]} " in part
        assert f"Milestones {met} met, {due} due, {late} late" in part
        made, overdue = row[column["Returns made"]], row[column["Returns overdue"]]
        assert f"Returns {made} made, {overdue} overdue" in part
        assert f"Paid £{Decimal(row[column['Paid (£)']]):,.2f}" in part
        assert f"Committed to places £{Decimal(row[column['Committed (£)']]):,.2f}" in part
        assert f"Followers {row[column['Followers']]} " in part
        assert f"Adoptions {row[column['Adoptions']]} " in part
    assert "1 round behind its timetable" in totals
    assert "Median time from model to submission 2.7 days" in totals
    assert "<svg" in page.text and "<title" in page.text  # the charts, with their titles


WAVE_TITLE = "Whole-place community budgets, second wave"


def test_the_pack_has_a_summary_then_a_page_per_round_and_is_issued_once_per_key(
    cbflow_env: Settings,
) -> None:
    _programme()
    stages.board_pack(now=NOW)
    stages.board_pack(now=NOW + timedelta(days=3))  # the same month: nothing new
    with session_scope() as session:
        packs = list(session.exec(select(BoardPack)))
    assert [p.key for p in packs] == ["2013-05"]
    pack = packs[0]
    assert pack.figures["rows"][-1][0] == "total"
    path = cbflow_env.documents_dir / pack.path
    reader = PdfReader(path)
    pages = [page.extract_text() for page in reader.pages]
    # the summary first, then (after the charts) a page for each round
    assert "Summary across 2 rounds" in pages[0]
    assert "1 round behind its timetable" in pages[0]
    assert "Places 2" in pages[0].replace("\n", " ")
    round_pages = pages[-2:]
    assert all("Adoptions of its models" in t for t in round_pages)
    assert not any("Adoptions of its models" in t for t in pages[:-2])
    assert "Whole-place community budgets" in round_pages[0]
    assert WAVE_TITLE in round_pages[1] and "Late: Close expressions of interest" in (
        round_pages[1].replace("\n", " ")
    )
    assert "Devon" in round_pages[0] and "1.3 days" in round_pages[0]
    # the pack is listed on the board page, and opens from it
    staff = _client(cbflow_env, "lead@staff.example", "staff", NOW)
    page = staff.get("/staff/board").text
    href = re.search(r'href="(/staff/board/packs/\d+)"', page)
    assert href is not None and "2013-05 (PDF)" in page
    served = staff.get(href.group(1))
    assert served.status_code == 200 and served.content == path.read_bytes()


def test_the_board_is_for_staff_only(cbflow_env: Settings) -> None:
    at = datetime(2013, 5, 2, 11, tzinfo=UTC)
    applicant = _client(cbflow_env, "bids@birmingham.example", "applicant", at)
    for address in ("/staff/board", "/staff/board.csv", "/staff/board/packs/1"):
        assert applicant.get(address).status_code == 403
    anonymous = TestClient(create_app(cbflow_env, clock=FixedClock(at)))
    assert anonymous.get("/staff/board", follow_redirects=False).status_code == 303
    admin = _client(cbflow_env, "admin@cbflow.example", "admin", at)
    assert admin.get("/staff/board").status_code == 200
    assert admin.get("/staff/board/packs/1").status_code == 404
