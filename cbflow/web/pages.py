"""Public pages: the home page lists the launched rounds."""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import APIRouter, Request
from fastapi.responses import Response

from cbflow.formatting import local_deadline
from cbflow.services import deadlines, rounds
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


@dataclass(frozen=True)
class Listed:
    """A launched round, as the home page lists it."""

    slug: str
    title: str
    issued_by: str
    stage: str  # where the round has got to, in words
    eoi_deadline: str


@dataclass(frozen=True)
class HomePage:
    rounds: tuple[Listed, ...]


@router.get("/")
def home(request: Request, session: SessionDep, pages: PagesDep) -> Response:
    listed = []
    for round_ in rounds.all_rounds(session):
        prospectus = rounds.prospectus_of(round_)
        eoi_closes = deadlines.stage_closes(session, round_, "eoi")
        listed.append(
            Listed(
                slug=round_.slug,
                title=round_.title,
                issued_by=prospectus.issued_by,
                stage=ROUND_STATES.get(round_.state, round_.state),
                eoi_deadline=local_deadline(eoi_closes, prospectus),
            )
        )
    return pages.show(request, "home.html", HomePage(rounds=tuple(listed)))
