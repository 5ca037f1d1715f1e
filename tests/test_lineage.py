"""Replication with lineage: a model's adoptions, into its own round or a later wave, each with
its carried-over answers checked as its own form asks them; how long adopters took to submit
against councils applying from scratch; and their results beside the original place's, on the
staff page."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

from fastapi.testclient import TestClient
from portal import add_user, sign_in
from round_walk import PUBLISH_DAY, SECOND_WAVE, submit_eoi, to_publication

from cbflow import stages
from cbflow.clock import FixedClock
from cbflow.db import session_scope
from cbflow.models import PublishedModel
from cbflow.services import applications, replication, rounds
from cbflow.settings import Settings
from cbflow.web import create_app

WAVE = "whole-place-2013"


def apply_from_scratch(council: str, days: int) -> None:
    """A council of the second wave starts on the day the model is published and submits its
    expression of interest `days` later."""
    submit_eoi(WAVE, council, PUBLISH_DAY + timedelta(days=days), "Join up.", PUBLISH_DAY)


def test_adopters_are_traced_checked_and_compared_with_applying_from_scratch(
    cbflow_env: Settings,
) -> None:
    model_id = to_publication()
    stages.launch(SECOND_WAVE, "second-wave.yaml", now=PUBLISH_DAY - timedelta(days=20))
    apply_from_scratch("CAM", days=3)
    apply_from_scratch("WSM", days=5)
    with session_scope() as session:
        model = session.get(PublishedModel, model_id)
        assert model is not None
        # Devon adopts into the second wave and submits a day later
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
            now=PUBLISH_DAY + timedelta(days=1),
        )
        # Kent adopts into the model's own round and has not submitted
        replication.adopt_model(
            session, model_id=model_id, council_code="KEN", actor="council:KEN", now=PUBLISH_DAY
        )

    with session_scope() as session:
        model = session.get(PublishedModel, model_id)
        assert model is not None
        report = replication.lineage(session, model)

    assert [(a.council.code, a.round.slug) for a in report.adoptions] == [
        ("DEV", WAVE),
        ("KEN", "whole-place-2011"),
    ]
    devon_line, kent_line = report.adoptions
    assert [c.question_id for c in devon_line.carried] == ["partners", "pooled_budget"]
    assert devon_line.carried_valid and kent_line.carried_valid
    assert devon_line.days_to_submit == Decimal("1.0") and kent_line.days_to_submit is None
    # adopting: a day; from scratch in the same round: three and five days, median four
    assert report.adopted_days == Decimal("1.0")
    assert (report.scratch_days, report.scratch_count) == (Decimal("4.0"), 2)
    assert report.measure == "Families attached this period"
    assert report.original == {1: Decimal(40)}

    add_user("sam@staff.example", "staff", name="Sam Staff")
    with TestClient(create_app(cbflow_env, clock=FixedClock(PUBLISH_DAY))) as staff:
        sign_in(staff, "sam@staff.example")
        implementation = staff.get("/staff/rounds/whole-place-2011/implementation").text
        link = f"/staff/rounds/whole-place-2011/models/{model_id}/lineage"
        page = staff.get(link)
        elsewhere = staff.get(f"/staff/rounds/{WAVE}/models/{model_id}/lineage")

    assert f'href="{link}"' in implementation
    assert page.status_code == 200
    text = page.text
    assert "Birmingham's model: who adopted it" in text
    assert "1.0 days (median)" in text and "4.0 days (median of 2)" in text
    assert "Version 2 is the latest" in text
    assert "Version 1: the plan as selected" in text  # every version, with what changed
    assert '<td class="govuk-table__cell">Devon</td>' in text and "after 1.0 days" in text
    assert '<td class="govuk-table__cell">Version 2</td>' in text  # the version Devon took
    assert "All 2 valid" in text
    assert "Families attached this period" in text and "<svg" in text
    assert elsewhere.status_code == 404  # the model belongs to its own round's pages
