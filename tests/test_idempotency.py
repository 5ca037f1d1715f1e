"""Every stage event is safe to run again: a retried flow, a double click or a crash between
rendering and recording never makes a second row, a second letter or a second file."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from conftest import ROUTE_OPEN, edit, example_text, london
from sqlalchemy import func
from sqlmodel import SQLModel, col, select

from cbflow import stages
from cbflow.db import session_scope
from cbflow.lifecycle import AppState
from cbflow.models import (
    Application,
    Assignment,
    AuditEvent,
    Document,
    MilestoneRecord,
    ModerationTask,
    PublishedModel,
    ReturnRecord,
    Round,
    Score,
    User,
)
from cbflow.render import render_serial
from cbflow.services import applications, assessment, implementation, rounds
from cbflow.services.documents import Issuer
from cbflow.settings import Settings, get_settings

COUNTED: list[type[SQLModel]] = [
    Round,
    Application,
    AuditEvent,
    Document,
    Assignment,
    Score,
    ModerationTask,
    ReturnRecord,
    MilestoneRecord,
    PublishedModel,
]
LAUNCH_AT = london(2011, 10, 17, 9, 0)
EOI_DAY = london(2011, 10, 20, 9, 0)
EOI_CLOSE = london(2011, 11, 10, 12, 0)
INVITE_DAY = london(2011, 11, 21, 9, 0)
BID_DAY = london(2011, 12, 1, 9, 0)
BID_CLOSE = london(2011, 12, 10, 0, 0)
ASSESS_DAY = london(2011, 12, 12, 9, 0)
FINAL_DAY = london(2011, 12, 16, 17, 0)
DECIDE_DAY = london(2011, 12, 20, 9, 0)
START_DAY = london(2012, 4, 1, 9, 0)
RETURN_DAY = london(2012, 7, 5, 9, 0)  # period 1 ends 30 June, due 15 July
CYCLE_DAY = london(2012, 7, 20, 9, 0)
END_DAY = london(2013, 4, 1, 9, 0)
PUBLISH_DAY = london(2013, 4, 2, 9, 0)

# five councils; four are shortlisted, three bid, two are selected
COUNCILS = ["BIR", "BOL", "BRD", "CAM", "WSM"]
SOURCE = edit(
    example_text(),
    ("places: 4 ", "places: 2 "),
    ("shortlist: 6 ", "shortlist: 4 "),
    ROUTE_OPEN,  # Devon adopts the model through the rolling route, the round's windows closed
)
SCORES = {  # council -> (ambition, partnership, replicability), one per assessor
    "BIR": ([4, 4, 4], [4, 4, 4], [4, 4, 4]),
    "BOL": ([3, 3, 3], [1, 3, 3], [3, 3, 3]),  # partnership spread 2: moderation
    "BRD": ([2, 2, 2], [2, 2, 2], [2, 2, 2]),
}


# -- helpers -----------------------------------------------------------------------------------


def documents_root() -> Path:
    return get_settings().documents_dir


def snapshot() -> dict[str, Any]:
    """Row counts, every state, and every file in the documents folder."""
    with session_scope() as session:
        counts = {
            model.__name__: session.exec(select(func.count()).select_from(model)).one()
            for model in COUNTED
        }
        app_states = sorted((a.reference, a.state) for a in session.exec(select(Application)))
        round_states = sorted((r.slug, r.state) for r in session.exec(select(Round)))
        keys = sorted(session.exec(select(Document.key)))
    root = documents_root()
    files = sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())
    return {
        "counts": counts,
        "applications": app_states,
        "rounds": round_states,
        "document keys": keys,
        "files": files,
    }


def run_twice(name: str, event: Callable[[], object]) -> None:
    """Run a stage event, check it did something, run it again and check it did nothing."""
    before = snapshot()
    event()
    first = snapshot()
    event()
    second = snapshot()
    assert first != before, f"{name}: the first run changed nothing, so the test proves nothing"
    changed = {key: (first[key], second[key]) for key in first if first[key] != second[key]}
    assert not changed, f"{name}: the second run changed {changed}"


def start_and_submit_eoi(slug: str, council: str, at: datetime) -> str:
    with session_scope() as session:
        application, _ = applications.start_application(
            session,
            round_=rounds.get_round(session, slug),
            council_code=council,
            actor=f"council:{council}",
            now=at,
        )
        applications.submit(
            session,
            application=application,
            stage="eoi",
            answers=eoi_answers(council),
            actor=f"council:{council}",
            now=at,
        )
        return application.reference


def eoi_answers(council: str, ambition: str = "Pool budgets around families.") -> dict[str, Any]:
    return {
        "lead_council": council,
        "partners": [
            {"organisation": "Primary care trust", "role": "Health"},
            {"organisation": "Police authority", "role": "Community safety"},
        ],
        "ambition": ambition,
    }


def submit_bid(reference: str, at: datetime) -> None:
    with session_scope() as session:
        applications.submit(
            session,
            application=applications.get_application(session, reference),
            stage="bid",
            answers={
                "pooled_budget": [
                    {
                        "organisation": "Primary care trust",
                        "year": "2012-13",
                        "amount_gbp": "400000.00",
                    },
                    {
                        "organisation": "Police authority",
                        "year": "2013-14",
                        "amount_gbp": "250000.00",
                    },
                ],
                "support_requested_gbp": "1500000.00",
            },
            actor="council:test",
            now=at,
        )


def add_assessors() -> None:
    with session_scope() as session:
        session.add_all(
            User(email=f"assessor{n}@assessors.example", name=f"Assessor {n}", role="assessor")
            for n in range(1, 4)
        )


def score_everything(slug: str) -> None:
    with session_scope() as session:
        round_ = rounds.get_round(session, slug)
        turn: dict[int, int] = {}
        for assignment in assessment.all_assignments(session, round_):
            application = session.get(Application, assignment.application_id)
            assert application is not None
            which = turn[application.id] = turn.get(application.id, -1) + 1  # type: ignore[index]
            given = SCORES[application.council_code]
            assessment.submit_scores(
                session,
                assignment=assignment,
                scores={
                    criterion: (scores[which], "Justified against the guidance.")
                    for criterion, scores in zip(
                        ("ambition", "partnership", "replicability"), given, strict=True
                    )
                },
                actor=f"assessor:{assignment.assessor_id}",
                now=ASSESS_DAY,
            )
        for task in assessment.open_moderation(
            session, round_=round_, actor="staff:panel", now=ASSESS_DAY
        ):
            assessment.moderate(
                session,
                task=task,
                score=3,
                reason="panel agreed",
                actor="staff:panel",
                now=ASSESS_DAY,
            )


def make_first_return(reference: str) -> None:
    with session_scope() as session:
        application = applications.get_application(session, reference)
        first = implementation.returns_of(session, application)[0]
        implementation.submit_return(
            session,
            record_=first,
            answers={"families_attached": 40, "families_turned_around": 5},
            actor="council:test",
            now=RETURN_DAY,
        )


def launched_round_with_eois(count: int) -> tuple[str, list[str]]:
    with session_scope() as session:
        round_, _ = rounds.launch_round(
            session, source=SOURCE, path="idempotency.yaml", actor="staff:test", now=LAUNCH_AT
        )
        slug = round_.slug
    references = [
        start_and_submit_eoi(slug, council, EOI_DAY + timedelta(minutes=n))
        for n, council in enumerate(COUNCILS[:count])
    ]
    return slug, references


# -- tests -------------------------------------------------------------------------------------


def walk_whole_round(run: Callable[[str, Callable[[], object]], None]) -> dict[str, str]:
    """Take the round from launch to adoption, running each stage event through `run`;
    returns council code -> reference."""
    run("launch", lambda: stages.launch(SOURCE, "idempotency.yaml", now=LAUNCH_AT))
    slug = "whole-place-2011"
    refs = {
        council: start_and_submit_eoi(slug, council, EOI_DAY + timedelta(minutes=n))
        for n, council in enumerate(COUNCILS)
    }
    run("close_eoi", lambda: stages.close_eoi(slug, now=EOI_CLOSE))
    run("invite_to_bid", lambda: stages.invite_to_bid(slug, now=INVITE_DAY))
    invited = [c for c in COUNCILS if applications_state(refs[c]) == AppState.INVITED]
    assert invited == ["BIR", "BOL", "BRD", "CAM"]  # the four earliest EOIs
    for n, council in enumerate(["BIR", "BOL", "BRD"]):  # CAM lets the deadline pass
        submit_bid(refs[council], BID_DAY + timedelta(minutes=n))
    run("close_bids", lambda: stages.close_bids(slug, now=BID_CLOSE))
    add_assessors()
    run("assign_assessors", lambda: stages.assign_assessors(slug, now=ASSESS_DAY))
    score_everything(slug)
    run("finalise_assessment", lambda: stages.finalise_assessment(slug, now=FINAL_DAY))
    run("decide", lambda: stages.decide(slug, now=DECIDE_DAY))
    assert [applications_state(refs[c]) for c in ("BIR", "BOL", "BRD")] == [
        "selected",
        "selected",
        "reserve",
    ]
    run("start_implementation", lambda: stages.start_implementation(slug, now=START_DAY))
    make_first_return(refs["BIR"])  # BOL misses its first return and is chased
    run("returns_cycle", lambda: stages.returns_cycle(slug, now=CYCLE_DAY))
    run("complete", lambda: stages.complete(slug, now=END_DAY))
    run("publish", lambda: stages.publish(refs["BIR"], now=PUBLISH_DAY))
    run("adopt", lambda: stages.adopt(only_model_id(), "DEV", now=PUBLISH_DAY))
    return refs


def only_model_id() -> int:
    """The latest version of the round's one completed model."""
    with session_scope() as session:
        model_id = session.exec(
            select(PublishedModel.id).order_by(col(PublishedModel.version).desc())
        ).first()
    assert model_id is not None
    return model_id


def run_once(name: str, event: Callable[[], object]) -> None:
    event()


def test_every_stage_event_run_twice_adds_nothing_the_second_time(cbflow_env: Settings) -> None:
    walk_whole_round(run_twice)

    final = snapshot()
    counts = {k: v for k, v in final["counts"].items() if k != "AuditEvent"}
    assert counts == {
        "Round": 1,
        "Application": 6,  # five councils and one adoption (a draft of the route's light form)
        # prospectus 1, EOI receipts 5, invitations 4, regret 1, bid receipts 3, assessment
        # summary 1, moderation pack 1, decisions 3, grant offers 2, chaser 1, progress
        # reports 2, replication packs 3 (version 1 of each place at the decisions, then
        # Birmingham's version 2 at completion)
        "Document": 27,
        "Assignment": 9,
        "Score": 27,
        "ModerationTask": 1,
        "ReturnRecord": 8,  # two places, four quarters each
        "MilestoneRecord": 2,
        "PublishedModel": 3,
    }
    assert len(final["files"]) == final["counts"]["Document"]
    assert all(name.endswith(".pdf") for name in final["files"])


def test_every_stage_event_rerun_after_round_moved_on_adds_nothing(cbflow_env: Settings) -> None:
    refs = walk_whole_round(run_once)
    slug = "whole-place-2011"
    before = snapshot()
    late_reruns: list[tuple[str, Callable[[], object]]] = [
        ("launch", lambda: stages.launch(SOURCE, "idempotency.yaml", now=PUBLISH_DAY)),
        ("close_eoi", lambda: stages.close_eoi(slug, now=PUBLISH_DAY)),
        ("invite_to_bid", lambda: stages.invite_to_bid(slug, now=PUBLISH_DAY)),
        ("close_bids", lambda: stages.close_bids(slug, now=PUBLISH_DAY)),
        ("assign_assessors", lambda: stages.assign_assessors(slug, now=PUBLISH_DAY)),
        ("finalise_assessment", lambda: stages.finalise_assessment(slug, now=PUBLISH_DAY)),
        ("decide", lambda: stages.decide(slug, now=PUBLISH_DAY)),
        ("start_implementation", lambda: stages.start_implementation(slug, now=PUBLISH_DAY)),
        ("returns_cycle", lambda: stages.returns_cycle(slug, now=PUBLISH_DAY)),
        ("complete", lambda: stages.complete(slug, now=PUBLISH_DAY)),
        ("publish", lambda: stages.publish(refs["BIR"], now=PUBLISH_DAY)),
        ("adopt", lambda: stages.adopt(only_model_id(), "DEV", now=PUBLISH_DAY)),
    ]
    failures = []

    for name, event in late_reruns:
        try:
            event()
        except Exception as exc:  # collect every refusal, not just the first
            failures.append(f"{name}: {type(exc).__name__}: {exc}")
        after = snapshot()
        if after != before:
            failures.append(f"{name}: changed {[k for k in after if after[k] != before[k]]}")
            before = after

    assert failures == []


def applications_state(reference: str) -> str:
    with session_scope() as session:
        return applications.get_application(session, reference).state


def test_receipts_rendered_but_not_recorded_are_recorded_once_on_rerun(
    cbflow_env: Settings,
) -> None:
    slug, references = launched_round_with_eois(3)
    with session_scope() as session:
        round_ = rounds.get_round(session, slug)
        issuer = Issuer(session, round_, EOI_CLOSE)
        pendings = issuer.receipts("eoi", rounds.applications_of(session, round_))
    render_serial([p.job for p in pendings])  # ... and the process dies before recording
    with session_scope() as session:
        assert session.exec(select(Document)).all() == []
    assert len(list(documents_root().rglob("*.pdf"))) == 3

    outcome = stages.issue_receipts(slug, now=EOI_CLOSE)
    stages.issue_receipts(slug, now=EOI_CLOSE)

    assert outcome.counts == {"receipts": 3}
    with session_scope() as session:
        documents = session.exec(select(Document)).all()
    assert sorted(d.key for d in documents) == sorted(f"{r}/eoi_receipt" for r in references)
    files = sorted(p for p in documents_root().rglob("*") if p.is_file())
    assert files == sorted(documents_root() / d.path for d in documents)


def test_submit_twice_is_one_submission_with_one_audit_event(cbflow_env: Settings) -> None:
    _, [reference] = launched_round_with_eois(1)

    with session_scope() as session:
        _, newly = applications.submit(
            session,
            application=applications.get_application(session, reference),
            stage="eoi",
            answers=eoi_answers("BIR", "A different ambition, sent by a second click."),
            actor="council:BIR",
            now=EOI_DAY + timedelta(hours=1),
        )

    assert newly is False
    with session_scope() as session:
        stored = applications.get_application(session, reference)
        submitted = session.exec(
            select(AuditEvent).where(
                AuditEvent.entity_id == stored.id,
                AuditEvent.entity == "application",
                AuditEvent.to_state == AppState.EOI_SUBMITTED.value,
            )
        ).all()
    assert stored.state == AppState.EOI_SUBMITTED
    assert stored.eoi_submitted_at == EOI_DAY
    assert stored.eoi_answers["ambition"] == "Pool budgets around families."
    assert len(submitted) == 1


def test_submit_twice_in_one_session_is_one_submission(cbflow_env: Settings) -> None:
    with session_scope() as session:
        round_, _ = rounds.launch_round(
            session, source=SOURCE, path="idempotency.yaml", actor="staff:test", now=LAUNCH_AT
        )
        application, _ = applications.start_application(
            session, round_=round_, council_code="BIR", actor="council:BIR", now=EOI_DAY
        )
        results = [
            applications.submit(
                session,
                application=application,
                stage="eoi",
                answers=eoi_answers("BIR"),
                actor="council:BIR",
                now=EOI_DAY,
            )[1]
            for _ in range(2)
        ]
        app_id = application.id

    assert results == [True, False]
    with session_scope() as session:
        events = session.exec(
            select(AuditEvent.action).where(
                AuditEvent.entity == "application", AuditEvent.entity_id == app_id
            )
        ).all()
    assert sorted(events) == ["start", "transition"]


def test_issue_receipts_twice_renders_each_file_once(cbflow_env: Settings) -> None:
    slug, _ = launched_round_with_eois(2)
    stages.issue_receipts(slug, now=EOI_CLOSE)
    first = {p: p.stat().st_mtime_ns for p in documents_root().rglob("*.pdf")}

    outcome = stages.issue_receipts(slug, now=EOI_CLOSE)

    assert outcome.counts == {"receipts": 0}
    assert outcome.documents == []
    assert {p: p.stat().st_mtime_ns for p in documents_root().rglob("*.pdf")} == first
    assert len(first) == 2


def test_submit_from_two_sessions_racing_is_one_submission(any_db_env: Settings) -> None:
    """Two requests (a double click) each load the draft before either has submitted it."""
    with session_scope() as session:
        round_, _ = rounds.launch_round(
            session, source=SOURCE, path="idempotency.yaml", actor="staff:test", now=LAUNCH_AT
        )
        draft, _ = applications.start_application(
            session,
            round_=round_,
            council_code="BIR",
            actor="council:BIR",
            now=EOI_DAY,
            answers=eoi_answers("BIR"),
        )
        reference = draft.reference
    with session_scope() as first, session_scope() as second:
        first_copy = applications.get_application(first, reference)
        second_copy = applications.get_application(second, reference)
        applications.submit(
            first, application=first_copy, stage="eoi", actor="council:BIR", now=EOI_DAY
        )
        first.commit()

        _, newly = applications.submit(
            second,
            application=second_copy,
            stage="eoi",
            actor="council:BIR",
            now=EOI_DAY + timedelta(seconds=2),
        )

    assert newly is False
    with session_scope() as session:
        stored = applications.get_application(session, reference)
        submitted = session.exec(
            select(AuditEvent).where(AuditEvent.to_state == AppState.EOI_SUBMITTED.value)
        ).all()
    assert stored.eoi_submitted_at == EOI_DAY
    assert len(submitted) == 1
