"""The round's support matrix: the prospectus's offers against its places, each cell the place's
requests for the offer with their states; the places with no support asked or accepted (gaps),
those with several offers of one kind (overlaps), and each offer's places taken. CSV too."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass

from fastapi import Request
from fastapi.responses import Response
from sqlmodel import Session

from cbflow.formatting import csv_cell
from cbflow.services import rounds, support
from cbflow.web.applications import APP_STATES
from cbflow.web.deps import PagesDep, SessionDep
from cbflow.web.staff.places import place_names
from cbflow.web.staff.shared import RoundPage, Staff, round_header, round_or_404, stage_router

router = stage_router()


@dataclass(frozen=True)
class Cell:
    states: list[str]  # each request's state, oldest first; empty: never asked


@dataclass(frozen=True)
class MatrixRow:
    place: str
    reference: str
    state: str
    cells: list[Cell]  # in the order of the offers
    gap: bool
    overlaps: str  # the kinds offered more than once, or ""


@dataclass(frozen=True, kw_only=True)
class SupportPage(RoundPage):
    uses: list[support.OfferUse]
    rows: list[MatrixRow]
    gaps: int
    overlaps: int


def _rows(session: Session, slug: str) -> tuple[support.Matrix, list[MatrixRow]]:
    round_ = round_or_404(session, slug)
    found = support.matrix(session, round_)
    names = place_names(session, round_.id)
    rows = [
        MatrixRow(
            place=names.of(p.application),
            reference=p.application.reference,
            state=APP_STATES.get(p.application.state, p.application.state),
            cells=[
                Cell([support.STATE_NAMES[r.state] for r in p.cells.get(u.offer.id, [])])
                for u in found.offers
            ],
            gap=p.gap,
            overlaps=", ".join(p.overlaps),
        )
        for p in found.places
    ]
    return found, rows


@router.get("/rounds/{slug}/support")
def support_page(
    request: Request, slug: str, session: SessionDep, pages: PagesDep, user: Staff
) -> Response:
    round_ = round_or_404(session, slug)
    found, rows = _rows(session, slug)
    return pages.show(
        request,
        "staff/support.html",
        SupportPage(
            **round_header(request, round_, rounds.prospectus_of(round_), "support"),
            uses=found.offers,
            rows=rows,
            gaps=len(found.gaps),
            overlaps=len(found.overlapping),
        ),
    )


@router.get("/rounds/{slug}/support.csv")
def support_csv(slug: str, session: SessionDep, user: Staff) -> Response:
    """One line per place and offer: the place's requests for it, with the offer's use."""
    found, rows = _rows(session, slug)
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(
        [
            "Reference",
            "Place",
            "Status",
            "Offer",
            "Provider",
            "Kind",
            "Requests",
            "Gap",
            "Overlapping kinds",
            "Places taken",
            "Capacity",
        ]
    )
    for row in rows:
        for use, cell in zip(found.offers, row.cells, strict=True):
            writer.writerow(
                csv_cell(v)
                for v in [
                    row.reference,
                    row.place,
                    row.state,
                    use.offer.id,
                    use.offer.provider,
                    use.offer.kind_name,
                    "; ".join(cell.states),
                    "yes" if row.gap else "no",
                    row.overlaps,
                    use.taken,
                    use.offer.capacity,
                ]
            )
    return Response(
        out.getvalue(),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{slug}-support.csv"'},
    )
