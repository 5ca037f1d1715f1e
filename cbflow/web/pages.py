"""Public pages: the home page lists the launched rounds; each round's page of changes lists
its prospectus's dates as they stand and every amendment."""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import Response
from sqlmodel import Session

from cbflow.errors import NotFound
from cbflow.formatting import local_deadline, local_time, long_date
from cbflow.models import Round
from cbflow.services import amendments, deadlines, rounds
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
    amended: str  # the day of its prospectus's latest amendment ("" when never amended)


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
                amended=_amended(session, round_),
            )
        )
    return pages.show(request, "home.html", HomePage(rounds=tuple(listed)))


def _amended(session: Session, round_: Round) -> str:
    if round_.prospectus_version == 1:
        return ""
    latest = amendments.version_of(session, round_, round_.prospectus_version)
    zone = rounds.prospectus_of(round_).zone
    return long_date(latest.published_at, zone) if latest is not None else ""


@dataclass(frozen=True)
class Amended:
    version: int
    published: str
    reason: str
    changes: tuple[str, ...]


@dataclass(frozen=True)
class ChangesPage:
    title: str
    slug: str
    version: int  # in force
    timetable: tuple[tuple[str, str], ...]  # the dates in force: (what, when)
    amendments: tuple[Amended, ...]  # the newest first


@router.get("/rounds/{slug}/changes")
def round_changes(request: Request, slug: str, session: SessionDep, pages: PagesDep) -> Response:
    """A round's dates as its prospectus now gives them (extended for everyone, where they
    were), and every amendment with what it changed."""
    try:
        round_ = rounds.get_round(session, slug)
    except NotFound:
        raise HTTPException(status_code=404) from None
    prospectus = rounds.prospectus_of(round_)
    moments = amendments.timetable_moments(prospectus)
    for stage in deadlines.close_moments(session, round_):
        closes = deadlines.stage_closes(session, round_, stage)
        key = f"{stage}.closes"
        moments[key] = amendments.Moment(
            moments[key].label, closes, local_deadline(closes, prospectus), stage
        )
    versions = amendments.versions_of(session, round_)
    page = ChangesPage(
        title=round_.title,
        slug=round_.slug,
        version=round_.prospectus_version,
        timetable=tuple((m.label, m.shown) for m in moments.values()),
        amendments=tuple(
            Amended(
                v.version,
                local_time(v.published_at, prospectus),
                v.reason,
                tuple(v.changes),
            )
            for v in reversed(versions)
            if v.version > 1
        ),
    )
    return pages.show(request, "round-changes.html", page)
