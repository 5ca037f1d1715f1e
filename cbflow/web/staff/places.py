"""The places of a round's applications, read in one query, for the pages that list them: a
council on its own by its name, a partnership by its place, its lead and its member councils."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func
from sqlalchemy import select as sa_select
from sqlalchemy.orm import aliased
from sqlmodel import Session, col, select

from cbflow.formatting import long_date
from cbflow.models import Application, ApplicationMember, Council
from cbflow.services import partnerships
from cbflow.services.partnerships import Place, place_label


@dataclass(frozen=True)
class PlaceNames:
    """Each application's place by id, and each council's name by code for an application
    made before partnerships (its lead alone)."""

    places: dict[int, Place]
    councils: dict[str, str]

    def place(self, application: Application) -> Place | None:
        return self.places.get(application.id or 0)

    def of(self, application: Application, default: str | None = None) -> str:
        """`Greater Manchester (Manchester and 9 other councils)`; a council alone: its name."""
        place = self.place(application)
        if place is not None:
            return place_label(place)
        fallback = application.council_code if default is None else default
        return self.councils.get(application.council_code, fallback)


def place_names(session: Session, round_id: int | None) -> PlaceNames:
    """The places of every application in the round."""
    councils = dict(session.exec(select(Council.code, Council.name)).all())
    return PlaceNames(
        partnerships.places_where(session, ApplicationMember.round_id == round_id), councils
    )


def places_by_id(session: Session, ids: Iterable[int]) -> dict[int, Place]:
    """The places of the given applications (the rows of one page of a list)."""
    ids = list(ids)
    if not ids:
        return {}
    return partnerships.places_where(session, col(ApplicationMember.application_id).in_(ids))


def matching(q: str) -> Any:
    """The applications with `q` in their lead council's name, their place's name, or any of
    their councils' names (or a council's code): a search by a member finds its partnership."""
    text = q.lower()
    other = aliased(Council)  # not the lead's, which the list joins
    member = (
        sa_select(col(ApplicationMember.application_id))
        .join(other, col(other.code) == ApplicationMember.council_code)
        .where(
            func.lower(other.name).contains(text, autoescape=True)
            | (func.lower(other.code) == text)
        )
        .correlate(None)
    )
    return (
        func.lower(Council.name).contains(text, autoescape=True)
        | func.lower(Application.place_name).contains(text, autoescape=True)
        | col(Application.id).in_(member)
    )


def council_rows(place: Place, zone: Any = None) -> list[dict[str, Any]]:
    """A partnership's councils as a summary list's rows: the lead, then each member with when
    it confirmed (or that it has still to)."""
    rows = [{"key": {"text": "Lead council"}, "value": {"text": place.lead.name}}]
    for member in place.members:
        status = (
            f"Confirmed on {long_date(member.confirmed_at, zone)}"
            if member.confirmed_at is not None
            else "Awaiting confirmation"
        )
        rows.append(
            {
                "key": {"text": member.name},
                "value": {"text": f"Member council: {status}"},
            }
        )
    return rows
