"""Programme staff's workspace: launch a round, watch its timetable and flow runs, follow each
stage on its dashboard, and take the decisions only people take (the referrals, the shortlist,
re-assigning assessors, moderation, releasing the decisions, publishing models).

Decisions of one record (a referral, a moderated score, a re-assignment) are made in the request,
audited with the person who made them. Work over the whole round (issuing letters, assigning
assessors, ranking, selecting, returns cycles, publishing) is done by the engine's flows: the
page starts a flow run and links to it in the Prefect UI; the portal never does that work itself.
"""

from __future__ import annotations

from fastapi import APIRouter

from cbflow.web.staff import (
    adoptions,
    amendments,
    applications,
    assessment,
    board,
    clarifications,
    extensions,
    followers,
    implementation,
    replication,
    rounds,
    selection,
    sift,
    support,
)

router = APIRouter()
# each stage's routes (under /staff, for staff only: see shared.stage_router), in the order they
# were declared when they were one module (earlier routes win), as this router's own
for stage in (
    rounds,
    extensions,
    applications,
    clarifications,
    sift,
    assessment,
    selection,
    implementation,
    replication,
    amendments,
    support,
    board,
    adoptions,
    followers,
):
    router.routes.extend(stage.router.routes)
