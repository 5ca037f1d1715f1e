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

from cbflow.web.auth import require_role
from cbflow.web.staff import (
    applications,
    assessment,
    implementation,
    replication,
    rounds,
    selection,
    sift,
)

router = APIRouter(dependencies=[require_role("staff", "admin")])
for stage in (rounds, applications, sift, assessment, selection, implementation, replication):
    router.include_router(stage.router, prefix="/staff")
