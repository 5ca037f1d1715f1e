"""Public pages: the home page lists the launched rounds."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from cbflow.formatting import local_deadline
from cbflow.services import rounds
from cbflow.web.deps import PagesDep, SessionDep

router = APIRouter()

ROUND_STATES = {
    "launched": "Launched",
    "eoi_closed": "Expressions of interest closed",
    "bids_invited": "Bids invited",
    "bids_closed": "Bids closed",
    "assessed": "Bids assessed",
    "decided": "Places selected",
    "implementing": "Implementing",
    "completed": "Completed",
    "cancelled": "Cancelled",
}


@router.get("/")
def home(request: Request, session: SessionDep, pages: PagesDep) -> Response:
    listed = []
    for round_ in rounds.all_rounds(session):
        prospectus = rounds.prospectus_of(round_)
        eoi = prospectus.timetable.eoi
        listed.append(
            {
                "slug": round_.slug,
                "title": round_.title,
                "issued_by": prospectus.issued_by,
                "state": ROUND_STATES.get(round_.state, round_.state),
                "eoi_deadline": local_deadline(eoi.closes_at(prospectus.zone), prospectus),
            }
        )
    return pages.render(request, "home.html", rounds=listed)
