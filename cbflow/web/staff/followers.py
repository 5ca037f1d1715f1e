"""Followers: the councils following the round's selected places and those that intend to adopt
them, by place and by the followers' region: the demand for each model, as staff read it."""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import HTTPException, Request
from fastapi.responses import Response

from cbflow.services import following, rounds
from cbflow.web.deps import PagesDep, SessionDep
from cbflow.web.staff.shared import RoundPage, Staff, round_header, round_or_404, stage_router

router = stage_router()


@dataclass(frozen=True, kw_only=True)
class FollowersPage(RoundPage):
    demand: following.Demand


@router.get("/rounds/{slug}/followers")
def followers_page(
    request: Request, slug: str, session: SessionDep, pages: PagesDep, user: Staff
) -> Response:
    round_ = round_or_404(session, slug)
    prospectus = rounds.prospectus_of(round_)
    if prospectus.stages.replication is None:  # the round shares no places to follow
        raise HTTPException(status_code=404)
    return pages.show(
        request,
        "staff/followers.html",
        FollowersPage(
            **round_header(request, round_, prospectus, "followers"),
            demand=following.demand(session, round_),
        ),
    )
