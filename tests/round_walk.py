"""A round of the format example driven through the real stage events, for the portal tests of
the later stages: three bids under assessment with their assessors, and on to a published model
(version 1 at selection, version 2 at completion).

Five councils send an EOI; the four earliest are invited; Birmingham, Bolton and Bradford bid.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from conftest import edit, example_text, london
from sqlmodel import col, select

from cbflow import stages
from cbflow.db import session_scope
from cbflow.models import Application, Assignment, PublishedModel, User
from cbflow.services import applications, assessment, implementation, rounds

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
RETURN_DAY = london(2012, 7, 5, 9, 0)
END_DAY = london(2013, 4, 1, 9, 0)
PUBLISH_DAY = london(2013, 4, 2, 9, 0)

SLUG = "whole-place-2011"
COUNCILS = ["BIR", "BOL", "BRD", "CAM", "WSM"]
BIDDERS = ["BIR", "BOL", "BRD"]
SOURCE = edit(
    example_text(), ("places: 4 ", "places: 2 "), ("shortlist: 6 ", "shortlist: 4 ")
) + (  # so that the round can be published as open data
    "\nopen_data:\n  funder_id: GB-GOVUK-department-for-communities-and-local-government\n"
    "  grant_prefix: 360G-cbflow\n  ocid_prefix: ocds-cbflow\n"
)
# the programme's second wave: its expressions of interest are open when the model is
# published (PUBLISH_DAY)
SECOND_WAVE = edit(
    example_text(),
    ("id: whole-place-2011", "id: whole-place-2013"),
    ("title: Whole-place community budgets", "title: Whole-place community budgets, second wave"),
    ('{opens: 2011-10-17, closes: "2011-11-10T12:00"}', "{opens: 2013-03-18, closes: 2013-04-30}"),
    ("{opens: 2011-11-21, closes: 2011-12-09}", "{opens: 2013-05-20, closes: 2013-06-10}"),
    ("{opens: 2011-12-10, closes: 2011-12-16}", "{opens: 2013-06-11, closes: 2013-06-20}"),
    ("{by: 2011-12-21}", "{by: 2013-06-28}"),
    ("{starts: 2012-04-01, ends: 2013-03-31}", "{starts: 2013-10-01, ends: 2014-09-30}"),
    ("due: 2012-10-31", "due: 2014-03-31"),
)
ASSESSORS = ["Ann Archer", "Ben Baxter", "Cat Cooper", "Dan Dyer", "Eve Ellis"]
# council -> each criterion's scores, one per assessor in the order they were assigned
SCORES = {
    "BIR": ([4, 4, 4], [4, 4, 4], [4, 4, 4]),
    "BOL": ([3, 3, 3], [1, 3, 3], [3, 3, 3]),  # partnership 2 apart: moderation
    "BRD": ([2, 2, 2], [2, 2, 2], [2, 2, 2]),
}
CRITERIA = ("ambition", "partnership", "replicability")


def email_of(name: str) -> str:
    return f"{name.split()[0].lower()}@assessors.example"


def eoi_answers(council: str, ambition: str) -> dict[str, Any]:
    return {
        "lead_council": council,
        "partners": [
            {"organisation": "Primary care trust", "role": "Health"},
            {"organisation": "Police authority", "role": "Community safety"},
        ],
        "ambition": ambition,
    }


BID_ANSWERS = {
    "pooled_budget": [
        {"organisation": "Primary care trust", "year": "2012-13", "amount_gbp": "400000.00"},
        {"organisation": "Police authority", "year": "2013-14", "amount_gbp": "250000.00"},
    ],
    "support_requested_gbp": "1500000.00",
}


def submit_eoi(
    slug: str, council: str, at: datetime, ambition: str, started: datetime | None = None
) -> str:
    """The council's EOI, submitted `at`, started then or at `started`."""
    with session_scope() as session:
        application, _ = applications.start_application(
            session,
            round_=rounds.get_round(session, slug),
            council_code=council,
            actor=f"council:{council}",
            now=started or at,
        )
        applications.submit(
            session,
            application=application,
            stage="eoi",
            answers=eoi_answers(council, ambition),
            actor=f"council:{council}",
            now=at,
        )
        return application.reference


def bids_in(source: str, slug: str, ambition: str) -> dict[str, int]:
    """Launch, take EOIs, invite and take three bids; returns council code -> application id."""
    stages.launch(source, f"{slug}.yaml", now=LAUNCH_AT)
    references = {
        council: submit_eoi(slug, council, EOI_DAY + timedelta(minutes=n), ambition)
        for n, council in enumerate(COUNCILS)
    }
    stages.close_eoi(slug, now=EOI_CLOSE)
    stages.invite_to_bid(slug, now=INVITE_DAY)
    for n, council in enumerate(BIDDERS):
        with session_scope() as session:
            applications.submit(
                session,
                application=applications.get_application(session, references[council]),
                stage="bid",
                answers=BID_ANSWERS,
                actor=f"council:{council}",
                now=BID_DAY + timedelta(minutes=n),
            )
    stages.close_bids(slug, now=BID_CLOSE)
    with session_scope() as session:
        return {
            council: applications.get_application(session, reference).id or 0
            for council, reference in references.items()
        }


def to_assessment(
    source: str = SOURCE, assessors: int = 4, ambition: str = "Pool budgets around families."
) -> dict[str, int]:
    """The three bids with `assessors` assessors (named from ASSESSORS) assigned; returns
    council code -> application id."""
    ids = bids_in(source, SLUG, ambition)
    with session_scope() as session:
        session.add_all(
            User(email=email_of(name), name=name, role="assessor") for name in ASSESSORS[:assessors]
        )
    stages.assign_assessors(SLUG, now=ASSESS_DAY)
    return ids


def assessors_of(application_id: int) -> list[str]:
    """The e-mail addresses of an application's assessors, in the order they were assigned."""
    with session_scope() as session:
        rows = session.exec(
            select(User.email)
            .join(Assignment, col(Assignment.assessor_id) == User.id)
            .where(Assignment.application_id == application_id)
            .order_by(col(Assignment.id))
        )
        return list(rows)


def score_everything(skip: frozenset[tuple[int, str]] = frozenset()) -> None:
    """Every assessor submits SCORES, except the (application id, e-mail) pairs in `skip`."""
    with session_scope() as session:
        round_ = rounds.get_round(session, SLUG)
        turn: dict[int, int] = {}
        for assignment in assessment.all_assignments(session, round_):
            application = session.get(Application, assignment.application_id)
            assessor = session.get(User, assignment.assessor_id)
            assert application is not None and application.id is not None
            assert assessor is not None
            which = turn[application.id] = turn.get(application.id, -1) + 1
            if (application.id, assessor.email) in skip:
                continue
            given = SCORES[application.council_code]
            assessment.submit_scores(
                session,
                assignment=assignment,
                scores={
                    criterion: (scores[which], f"{assessor.name} read the evidence closely.")
                    for criterion, scores in zip(CRITERIA, given, strict=True)
                },
                actor=assessor.email,
                now=ASSESS_DAY,
            )


def to_decisions(source: str = SOURCE) -> dict[str, int]:
    """Take the round to its decisions (Birmingham and Bolton selected, each with version 1 of
    its model); returns council code -> application id."""
    ids = to_assessment(source, assessors=3)
    score_everything()
    stages.open_moderation(SLUG, now=ASSESS_DAY)
    with session_scope() as session:
        for task in assessment.moderation_tasks(session, rounds.get_round(session, SLUG)):
            assessment.moderate(
                session, task=task, score=3, reason="panel agreed", actor="staff", now=FINAL_DAY
            )
    stages.finalise_assessment(SLUG, now=FINAL_DAY)
    stages.decide(SLUG, now=DECIDE_DAY)
    return ids


def to_publication(source: str = SOURCE) -> int:
    """Take the round to a published model of Birmingham's place; returns the model's id.
    Birmingham makes its first return; Bolton makes none."""
    ids = to_decisions(source)
    stages.start_implementation(SLUG, now=START_DAY)
    with session_scope() as session:
        birmingham = session.get(Application, ids["BIR"])
        assert birmingham is not None
        reference = birmingham.reference
        first = implementation.returns_of(session, birmingham)[0]
        implementation.submit_return(
            session,
            record_=first,
            answers={"families_attached": 40, "families_turned_around": 5, "narrative": "Good."},
            actor="council:BIR",
            now=RETURN_DAY,
        )
    stages.complete(SLUG, now=END_DAY)
    stages.publish(reference, now=PUBLISH_DAY)
    with session_scope() as session:  # version 1 at selection; this one at completion
        model_id = session.exec(
            select(PublishedModel.id).order_by(col(PublishedModel.version).desc())
        ).first()
    assert model_id is not None
    return model_id
