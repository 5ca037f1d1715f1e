"""The demo round end to end, on every shipped prospectus and on unusual shapes of round."""

from __future__ import annotations

import asyncio
from datetime import date
from pathlib import Path

import pytest
from conftest import EXAMPLE, ROOT, ROUTE_OPEN, edit, example_text
from pypdf import PdfReader
from sqlmodel import col, select

from cbflow import demo, stages
from cbflow.db import session_scope
from cbflow.models import Application, AuditEvent, Document, PublishedModel
from cbflow.services import implementation
from cbflow.services.replication import lineage
from cbflow.settings import Settings

SHIPPED = sorted((ROOT / "prospectus").glob("*.yaml"))
UNUSUAL = [
    ROOT / "tests" / "data" / "bid-without-assessment.yaml",
    ROOT / "tests" / "data" / "assessment-on-eoi.yaml",
]


def run_demo(path: Path, councils: int) -> demo.DemoSummary:
    return asyncio.run(demo.run(path, stages=stages, council_count=councils, log=lambda _: None))


def assert_documents_open(settings: Settings) -> int:
    with session_scope() as session:
        documents = list(session.exec(select(Document)))
    for document in documents:
        reader = PdfReader(settings.documents_dir / document.path)
        assert len(reader.pages) >= 1
        assert reader.metadata is not None and reader.metadata.title
    return len(documents)


@pytest.mark.parametrize("path", [*SHIPPED, EXAMPLE], ids=lambda p: p.stem)
def test_demo_runs_every_stage_when_given_a_shipped_prospectus(
    path: Path, cbflow_env: Settings
) -> None:
    summary = run_demo(path, councils=5)

    assert summary.late_refused == 1
    assert summary.selected, "some places are selected"
    assert "decisions" in summary.stages
    by_kind = summary.documents["by_kind"]
    assert by_kind["prospectus"] == 1
    assert by_kind["eoi_receipt"] == 4  # five councils, one of them late
    assert by_kind["decision"] >= len(summary.selected)
    assert assert_documents_open(cbflow_env) == summary.documents["total"]


def test_demo_publishes_a_model_and_adopts_nothing_where_no_round_is_open(
    cbflow_env: Settings,
) -> None:
    """Without a rolling route, and with the round's own windows long closed, no council is
    started on an application it could never submit: the demo says why."""
    summary = run_demo(EXAMPLE, councils=10)

    assert summary.states.get("published") == 1
    reason = summary.adoption["not adopted"]
    assert reason.startswith(
        "Whole-place community budgets has no rolling adoption route, and no round that takes "
    )
    assert reason.endswith(" is open")
    with session_scope() as session:
        assert not session.exec(
            select(Application).where(col(Application.adopted_from_model_id).is_not(None))
        ).all()


def test_demo_publishes_and_adopts_a_model_through_the_rolling_route(
    cbflow_env: Settings, tmp_path: Path
) -> None:
    path = tmp_path / "with-route.yaml"
    path.write_text(edit(example_text(), ROUTE_OPEN), encoding="utf-8")
    summary = run_demo(path, councils=10)

    assert summary.adoption["answers carried over"] >= 1
    # the adopter starts from answers its own form accepts, and the lineage report lists it
    assert summary.adoption["carried over and valid"] == summary.adoption["answers carried over"]
    with session_scope() as session:
        # version 1 of each selected place at the decisions; the completed place's latest
        model = session.exec(
            select(PublishedModel).order_by(col(PublishedModel.published_at).desc())
        ).first()
        assert model is not None
        report = lineage(session, model)
    [adoption] = report.adoptions
    assert adoption.council.code == summary.adoption["adopter"]
    assert (
        adoption.carried_valid
        and adoption.application.reference == (summary.adoption["application"])
    )
    assert summary.states.get("published") == 1
    # the adopter's officer submitted the light form and staff approved it: its implementation
    # started that day, the model's milestone as far after it as the place's was after its start
    starts = date.fromisoformat(summary.adoption["approved, implementation starts"])
    with session_scope() as session:
        adopted = session.get(Application, adoption.application.id)
        assert adopted is not None and adopted.state == "implementing"
        assert adopted.route == "adoption"
        [milestone] = implementation.milestones_of(session, adopted)
    assert milestone.due == date(2012, 10, 31) + (starts - date(2012, 4, 1))
    with session_scope() as session:  # a pack for each version: one each at selection, and
        # the completed place's at its end
        versions = session.exec(select(PublishedModel)).all()
    assert summary.documents["by_kind"]["replication_pack"] == len(versions)
    assert len(versions) == 1 + sum(1 for m in versions if m.version == 1)


def test_demo_selects_within_capacity_when_opt_in_round_has_no_assessment(
    cbflow_env: Settings,
) -> None:
    path = ROOT / "prospectus" / "troubled-families-2012.yaml"

    summary = run_demo(path, councils=4)

    assert "assign assessors" not in summary.stages
    assert "invite to bid" not in summary.stages
    assert len(summary.selected) <= 152
    assert all(place["rank"] is None for place in summary.selected)


def test_demo_runs_when_round_has_only_an_eoi_stage(cbflow_env: Settings, tmp_path: Path) -> None:
    source = example_text()
    start = source.index("  bid:\n    form:")
    source = source[:start]  # the stages after the EOI are all cut away
    source = edit(
        source,
        ("  bid:        {opens: 2011-11-21, closes: 2011-12-09}\n", ""),
        ("  assessment: {opens: 2011-12-10, closes: 2011-12-16}\n", ""),
        ("  implementation: {starts: 2012-04-01, ends: 2013-03-31}\n", ""),
        ("  budget_gbp: 4800000 ", "  # no budget: "),
    )
    path = tmp_path / "eoi-only.yaml"
    path.write_text(source, encoding="utf-8")

    summary = run_demo(path, councils=8)

    assert summary.stages[-1] == "decisions"
    assert 1 <= len(summary.selected) <= 4


def test_demo_audits_every_state_change_when_run(cbflow_env: Settings) -> None:
    run_demo(EXAMPLE, councils=8)

    with session_scope() as session:
        events = list(session.exec(select(AuditEvent)))
    transitions = [e for e in events if e.action == "transition"]
    assert transitions, "state changes are audited"
    assert all(e.actor and e.at.tzinfo is not None and e.to_state for e in transitions)


@pytest.mark.parametrize("path", UNUSUAL, ids=lambda p: p.stem)
def test_demo_runs_every_stage_when_the_round_has_an_unusual_shape(
    path: Path, cbflow_env: Settings
) -> None:
    summary = run_demo(path, councils=9)

    assert summary.late_refused == 1
    assert summary.selected
    assert summary.states.get("eoi_submitted", 0) == 0, "every submitted EOI was sifted"
    assert "complete" in summary.stages
    assert assert_documents_open(cbflow_env) == summary.documents["total"]


def test_demo_pays_by_results_when_returns_name_a_payment(cbflow_env: Settings) -> None:
    from cbflow.models import ReturnRecord

    run_demo(UNUSUAL[0], councils=9)

    with session_scope() as session:
        made = [r for r in session.exec(select(ReturnRecord)) if r.submitted_at is not None]
    assert made
    for record in made:  # £250.50 for each household helped, exactly
        assert record.payment_pence == 25050 * record.answers["households_helped"]
