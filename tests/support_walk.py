"""A round of the format example with support on offer (see round_walk), for the tests of
support requests: the offers, the people who answer for their providers, and the round walked
to its places implementing."""

from __future__ import annotations

import round_walk
from sqlmodel import select

from cbflow import stages
from cbflow.db import session_scope
from cbflow.models import Application, User
from cbflow.services import assessment, rounds

SUPPORT = """
support:
  - id: bid-clinic
    provider: Community Budgets Unit
    kind: bid-advice
    what: A half-day clinic on the bid and its cost-benefit case.
    stages: [eoi, bid]
    contact: clinic@communities.example.gov.uk
    capacity: 1
  - id: peer-review
    provider: Local Government Association
    kind: peer-support
    what: A peer review by officers of a place that pooled its budgets.
    stages: [bid, implementation]
    contact: peers@lga.example.gov.uk
    capacity: 2
  - id: mentor
    provider: Local Partnerships
    kind: peer-support
    what: A mentor for the joint team through its first year.
    stages: [implementation]
    contact: mentors@localpartnerships.example.gov.uk
    capacity: 3
  - id: two-tier
    provider: Local Government Association
    kind: two-tier
    what: A network of county and district officers pooling budgets in two tiers.
    stages: [eoi, implementation]
    for: [CTY, NMD]
    contact: two.tier@lga.example.gov.uk
    capacity: 5
"""
SOURCE = round_walk.SOURCE + SUPPORT
PROVIDERS = {
    "Community Budgets Unit": "cbu@communities.example.gov.uk",
    "Local Government Association": "sam@lga.example.gov.uk",
    "Local Partnerships": "kim@localpartnerships.example.gov.uk",
}


def add_providers() -> None:
    with session_scope() as session:
        for organisation, email in PROVIDERS.items():
            session.add(
                User(
                    email=email,
                    name=email.split("@")[0].title(),
                    role="provider",
                    provider=organisation,
                )
            )


def to_implementation() -> dict[str, int]:
    """Birmingham and Bolton selected and implementing, Bradford not selected; returns council
    code -> application id."""
    ids = round_walk.to_assessment(SOURCE, assessors=3)
    round_walk.score_everything()
    stages.open_moderation(round_walk.SLUG, now=round_walk.ASSESS_DAY)
    with session_scope() as session:
        round_ = rounds.get_round(session, round_walk.SLUG)
        for task in assessment.moderation_tasks(session, round_):
            assessment.moderate(
                session,
                task=task,
                score=3,
                reason="panel agreed",
                actor="staff",
                now=round_walk.FINAL_DAY,
            )
    stages.finalise_assessment(round_walk.SLUG, now=round_walk.FINAL_DAY)
    stages.decide(round_walk.SLUG, now=round_walk.DECIDE_DAY)
    stages.start_implementation(round_walk.SLUG, now=round_walk.START_DAY)
    with session_scope() as session:
        states = dict(session.exec(select(Application.council_code, Application.state)).all())
    assert states["BIR"] == states["BOL"] == "implementing", states
    return ids
