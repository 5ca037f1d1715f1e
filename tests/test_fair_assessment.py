"""Fair assessment: a planted harsh assessor's bias is removed by normalising each assessor's
scores (shown beside the scores as given, and used for the ranking when the prospectus asks);
assessors are kept off applications from their own region when the prospectus asks, however
they are assigned or re-assigned."""

from __future__ import annotations

import subprocess
from collections import Counter
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from portal import add_user, sign_in
from pypdf import PdfReader
from sqlmodel import col, select
from test_sift_and_selection import ASSESS_DAY, Entry, Scores, assessed_round, scored

from cbflow import stages
from cbflow.clock import FixedClock
from cbflow.db import session_scope
from cbflow.errors import CbflowError
from cbflow.models import Application, Assignment, Council, Document, User
from cbflow.services import applications, assessment, rounds
from cbflow.settings import Settings
from cbflow.web import create_app

# each bid's real quality (every criterion); two bids at each level
QUALITY = {"BIR": 4, "BOL": 4, "BRD": 3, "BUR": 3, "CLD": 2, "CAM": 2, "DEV": 1, "WSM": 1}
# two assessors a bid, and each assessor sees one bid of each quality; Hilda is harsh
PANEL = {
    "Hilda Hard": ["BIR", "BRD", "CLD", "DEV"],
    "Nell One": ["BOL", "BUR", "CAM", "WSM"],
    "Ned Two": ["BIR", "BUR", "CLD", "WSM"],
    "Nora Three": ["BOL", "BRD", "CAM", "DEV"],
}
TWO_EACH = ("assessors_per_application: 3", "assessors_per_application: 2")
NORMALISE = ("justification_required: true", "justification_required: true\n    normalise: true")
OWN_REGION = (
    "justification_required: true",
    "justification_required: true\n    exclude_own_region: true",
)


def harsh_hilda(assessor: str, council: str) -> Scores:
    """Everyone scores a bid at its quality, except Hilda, who gives one less."""
    given = QUALITY[council] - (1 if assessor == "Hilda Hard" else 0)
    return scored(given, given, given)


def planted(*edits: tuple[str, str]) -> dict[str, assessment.ApplicationResult]:
    slug, _ = assessed_round(
        [Entry(council, scored(0, 0, 0)) for council in QUALITY],
        gateway=False,
        finalise=False,
        edits=(TWO_EACH, *edits),
        panel=PANEL,
        scorer=harsh_hilda,
    )
    with session_scope() as session:
        found = assessment.results(session, rounds.get_round(session, slug))
    return {r.application.council_code: r for r in found}


def test_normalisation_removes_a_harsh_assessors_bias_from_the_ranking(
    cbflow_env: Settings,
) -> None:
    results = planted(NORMALISE)
    total = {council: r.total for council, r in results.items()}

    # bids of the same quality come out level, whoever assessed them, in order of quality
    assert total["BIR"] == total["BOL"] > total["BRD"] == total["BUR"]
    assert total["BUR"] > total["CLD"] == total["CAM"] > total["DEV"] == total["WSM"]
    # beside them, the scores as given: Hilda's bids a half point down on every criterion
    ambition = {c: r.criteria[0] for c, r in results.items()}
    assert (ambition["BIR"].scores, ambition["BIR"].mean) == ([3, 4], Decimal("3.50"))
    assert (ambition["BOL"].scores, ambition["BOL"].mean) == ([4, 4], Decimal("4.00"))
    assert ambition["BIR"].normalised == ambition["BOL"].normalised
    assert ambition["BIR"].final == ambition["BIR"].normalised_mean


def test_without_normalise_the_ranking_keeps_the_scores_as_given(cbflow_env: Settings) -> None:
    results = planted()
    total = {council: r.total for council, r in results.items()}

    # the harsh assessor's bids rank below their equals, as the scores were given
    assert total["BOL"] > total["BIR"] and total["BUR"] > total["BRD"]
    assert total["BOL"] == Decimal("100.00") and total["BIR"] == Decimal("87.50")
    # the normalised scores are still worked out, to be shown beside them
    bir, bol = results["BIR"].criteria[0], results["BOL"].criteria[0]
    assert bir.normalised_mean == bol.normalised_mean != bir.mean


@pytest.fixture
def staff_view(cbflow_env: Settings) -> Iterator[TestClient]:
    planted(NORMALISE)
    add_user("sam@staff.example", "staff", name="Sam Staff")
    with TestClient(create_app(cbflow_env, clock=FixedClock(ASSESS_DAY))) as client:
        sign_in(client, "sam@staff.example")
        yield client


def test_staff_see_each_assessors_scoring_before_and_after_normalisation(
    staff_view: TestClient,
) -> None:
    page = staff_view.get("/staff/rounds/whole-place-2011/assessment").text

    assert "How each assessor scores" in page
    assert "this round ranks by the normalised scores" in page
    section = page.split('id="assessors"', 1)[1]

    def row(name: str) -> list[str]:
        cells = section.split(f">{name}</td>", 1)[1].split("</tr>", 1)[0]
        return [c.split(">", 1)[1] for c in cells.split("</td>") if ">" in c]

    # Hilda's mean is a point below the others'; after normalisation they are level
    assert row("Hilda Hard") == ["12", "1.50", "1.12", "2.25"]
    assert row("Nell One") == ["12", "2.50", "1.12", "2.25"]
    assert "Mean score each assessor gave, after normalisation" in page
    assert page.count("<svg") >= 2


REGIONS = {
    "Wendy West": "West Midlands",
    "Nick North": "North West",
    "Yan York": "Yorkshire and The Humber",
    "Lou London": "London",
}


def test_no_assessor_is_given_a_bid_from_their_own_region(cbflow_env: Settings) -> None:
    slug, _ = assessed_round(
        [Entry(c, scored(3, 3, 3)) for c in ("BIR", "BOL", "CLD", "WSM", "BUR", "LDS")],
        edits=(TWO_EACH, OWN_REGION),
        regions=REGIONS,
        finalise=False,
    )

    with session_scope() as session:
        regions = {c.code: c.region for c in session.exec(select(Council))}
        pairs = [
            (assessor.region, regions[application.council_code])
            for assignment, assessor, application in session.exec(
                select(Assignment, User, Application)
                .join(User, col(User.id) == Assignment.assessor_id)
                .join(Application, col(Application.id) == Assignment.application_id)
            )
        ]
        load = Counter(
            a.assessor_id
            for a in assessment.all_assignments(session, rounds.get_round(session, slug))
        )
    assert len(pairs) == 12
    assert all(mine != theirs for mine, theirs in pairs)
    assert sorted(load.values()) == [3, 3, 3, 3]  # still balanced


def test_moving_an_assessment_to_someone_from_the_region_is_refused(cbflow_env: Settings) -> None:
    _, refs = assessed_round(
        [Entry(c, scored(3, 3, 3)) for c in ("BIR", "CLD")],
        edits=(TWO_EACH, OWN_REGION),
        regions=REGIONS,
        scoring=False,
    )
    with session_scope() as session:
        birmingham = applications.get_application(session, refs["BIR"])
        assignment = session.exec(
            select(Assignment).where(Assignment.application_id == birmingham.id)
        ).first()
        assert assignment is not None
        wendy = session.exec(select(User).where(User.name == "Wendy West")).one()
        with pytest.raises(CbflowError) as refused:
            assessment.reassign(
                session, assignment=assignment, to=wendy, actor="staff", now=ASSESS_DAY, reason="x"
            )
    assert str(refused.value) == (
        "Wendy West is from West Midlands, the applying council's region, and this round does "
        "not let assessors assess their own region"
    )


def test_too_few_assessors_outside_the_region_is_said_before_anything_is_assigned(
    cbflow_env: Settings,
) -> None:
    with pytest.raises(CbflowError) as refused:
        assessed_round(
            [Entry("BIR", scored(3, 3, 3))],
            edits=(TWO_EACH, OWN_REGION),
            regions={"Wendy West": "West Midlands", "Wes Two": "West Midlands", "Lou": "London"},
            finalise=False,
        )
    assert (
        "not enough assessors for whole-place-2011/BIR: 2 are needed and 1 are neither from "
        in (str(refused.value))
    )
    with session_scope() as session:
        assert session.exec(select(Assignment)).all() == []


def test_the_assessment_summary_pdf_charts_each_assessor_before_and_after(
    cbflow_env: Settings, tmp_path: Path
) -> None:
    planted(NORMALISE)
    stages.finalise_assessment("whole-place-2011", now=ASSESS_DAY)
    with session_scope() as session:
        summary = session.exec(select(Document).where(Document.kind == "assessment_summary")).one()
    path = cbflow_env.documents_dir / summary.path

    text = " ".join(page.extract_text() for page in PdfReader(path).pages)

    assert "How each assessor scores" in text
    assert "Mean score each assessor gave, after normalisation" in text
    assert "Hilda Hard" in text and "Normalised" in text
    assert "What the budget buys" in text and "Best selection within each budget" in text
    # the page with the charts, as a reader sees it
    subprocess.run(
        ["pdftoppm", "-png", "-r", "50", "-f", "1", "-l", "2", str(path), str(tmp_path / "p")],
        check=True,
    )
    assert len(list(tmp_path.glob("p-*.png"))) == 2
