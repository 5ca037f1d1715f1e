"""The applications dashboard, its CSV, and one application as staff see it: answers, files,
assessors' scores, documents and history."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from fastapi import HTTPException, Request
from fastapi.responses import FileResponse, Response
from sqlalchemy import func
from sqlalchemy import select as sa_select
from sqlmodel import Session, col, select

from cbflow.formatting import csv_cell, local_when, long_deadline, money_or_blank, pence_to_money
from cbflow.models import (
    Application,
    Assignment,
    AuditEvent,
    Council,
    Document,
    Round,
    Score,
    User,
)
from cbflow.prospectus import Criterion, Prospectus
from cbflow.services import (
    audit,
    offers,
    reopening,
    rounds,
)
from cbflow.services.contributions import PooledView, pooled_view
from cbflow.services.documents import answer_sections
from cbflow.services.partnerships import Place, place_of
from cbflow.web.applications import APP_STATES
from cbflow.web.deps import (
    PagesDep,
    SessionDep,
    SettingsDep,
)
from cbflow.web.staff.clarifications import StaffRequests, requests_of
from cbflow.web.staff.places import council_rows, matching, places_by_id
from cbflow.web.staff.shared import (
    RoundPage,
    Staff,
    application_or_404,
    council_names,
    round_header,
    round_or_404,
    stage_router,
)
from cbflow.web.stored import stored_file

router = stage_router()

PAGE_SIZE = 50
SORTS = {
    "council": col(Council.name),
    "state": col(Application.state),
    "submitted": col(Application.eoi_submitted_at),
    "bid": col(Application.bid_submitted_at),
    "request": col(Application.support_requested_pence),
    "rank": col(Application.rank),
}


# the dashboard reads these columns only: never the answers, however many there are
LISTED: list[Any] = [
    Application.id,
    Application.reference,
    Application.council_code,
    Council.name,
    Council.type_name,
    Council.region,
    Application.state,
    Application.eoi_submitted_at,
    Application.bid_submitted_at,
    Application.support_requested_pence,
    Application.total_score,
    Application.rank,
    Application.place_name,
]


@dataclass(frozen=True)
class Listing:
    state: str
    q: str
    sort: str
    descending: bool

    @classmethod
    def of(cls, state: str, q: str, sort: str, order: str) -> Listing:
        return cls(
            state=state if state in APP_STATES else "",
            q=q.strip()[:100],
            sort=sort if sort in SORTS else "council",
            descending=order == "desc",
        )

    def query(self, round_: Round) -> Any:
        statement = (
            sa_select(*LISTED)
            .join(Council, col(Council.code) == Application.council_code)
            .where(col(Application.round_id) == round_.id)
        )
        if self.state:
            statement = statement.where(col(Application.state) == self.state)
        if self.q:
            statement = statement.where(matching(self.q))
        key = SORTS[self.sort]
        ordered = key.desc() if self.descending else key.asc()
        return statement.order_by(ordered.nulls_last(), col(Council.name))

    def link(self, **changes: Any) -> str:
        values = {"state": self.state, "q": self.q, "sort": self.sort} | changes
        values["order"] = "desc" if changes.get("descending", self.descending) else "asc"
        values.pop("descending", None)
        return "?" + urlencode({k: v for k, v in values.items() if v not in ("", None)})


SORT_COLUMNS = [
    ("council", "Council"),
    ("state", "Status"),
    ("submitted", "EOI submitted"),
    ("bid", "Bid submitted"),
    ("request", "Support requested"),
    ("rank", "Rank"),
]


@dataclass(frozen=True, kw_only=True)
class ApplicationsPage(RoundPage):
    listing: Listing
    rows: list[ListedRow]
    total: int
    page: int
    pages_count: int
    state_items: list[dict[str, Any]]
    counts: list[tuple[str, str, int]]  # each status's name, its value and its count
    sort_columns: list[tuple[str, str]]


@router.get("/rounds/{slug}/applications")
def applications_page(
    request: Request,
    slug: str,
    session: SessionDep,
    pages: PagesDep,
    user: Staff,
    state: str = "",
    q: str = "",
    sort: str = "council",
    order: str = "asc",
    page: int = 1,
) -> Response:
    round_ = round_or_404(session, slug)
    prospectus = rounds.prospectus_of(round_)
    listing = Listing.of(state, q, sort, order)
    statement = listing.query(round_)
    total = session.execute(
        sa_select(func.count()).select_from(statement.order_by(None).subquery())
    ).scalar_one()
    pages_count = max(1, -(-total // PAGE_SIZE))
    page = min(max(page, 1), pages_count)
    rows = session.execute(statement.offset((page - 1) * PAGE_SIZE).limit(PAGE_SIZE)).all()
    counts = session.exec(
        select(Application.state, func.count())
        .where(Application.round_id == round_.id)
        .group_by(col(Application.state))
    ).all()
    return pages.show(
        request,
        "staff/applications.html",
        ApplicationsPage(
            **round_header(request, round_, prospectus, "applications"),
            listing=listing,
            rows=_rows(session, rows, prospectus),
            total=total,
            page=page,
            pages_count=pages_count,
            state_items=[
                {"value": value, "text": text, "selected": value == listing.state}
                for value, text in [("", "Any status"), *APP_STATES.items()]
            ],
            counts=sorted(((APP_STATES.get(s, s), s, n) for s, n in counts), key=lambda c: c[1]),
            sort_columns=SORT_COLUMNS,
        ),
    )


@dataclass(frozen=True)
class ListedRow:
    """One application as the dashboard lists it (and its CSV exports it)."""

    id: int
    reference: str
    council_code: str
    council: str
    type: str
    region: str
    state: str
    eoi_submitted: str
    bid_submitted: str
    request: str
    score: str
    rank: int | str
    place: str = ""  # the partnership's name, or the council's for a council alone
    lead: str = ""
    members: tuple[str, ...] = ()  # a partnership's member councils, the lead not among them

    @property
    def is_partnership(self) -> bool:
        return bool(self.members)


def _rows(session: Session, rows: Sequence[Any], prospectus: Prospectus) -> list[ListedRow]:
    places = places_by_id(session, [r[0] for r in rows])
    return [_row(r, prospectus, places.get(r[0])) for r in rows]


def _row(row: Any, prospectus: Prospectus, place: Place | None = None) -> ListedRow:
    (ident, reference, code, name, type_name, region, state, eoi_at, bid_at, pence, total, rank) = (
        row[:12]
    )
    return ListedRow(
        id=ident,
        reference=reference,
        council_code=code,
        council=name,
        type=type_name,
        region=region,
        state=APP_STATES.get(state, state),
        eoi_submitted=local_when(eoi_at, prospectus),
        bid_submitted=local_when(bid_at, prospectus),
        request=money_or_blank(pence),
        score=f"{total}%" if total is not None else "",
        rank=rank or "",
        place=place.name if place is not None and place.is_partnership else name,
        lead=place.lead.name if place is not None else name,
        members=tuple(m.name for m in place.members) if place is not None else (),
    )


@router.get("/rounds/{slug}/applications.csv")
def applications_csv(
    slug: str,
    session: SessionDep,
    user: Staff,
    state: str = "",
    q: str = "",
    sort: str = "council",
    order: str = "asc",
) -> Response:
    round_ = round_or_404(session, slug)
    prospectus = rounds.prospectus_of(round_)
    listing = Listing.of(state, q, sort, order)
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(
        [
            "Reference",
            "Council code",
            "Council",
            "Council type",
            "Region",
            "Status",
            "EOI submitted",
            "Bid submitted",
            "Support requested (GBP)",
            "Total score (%)",
            "Rank",
            "Place",
            "Lead council",
            "Member councils",
        ]
    )
    for shown, row in _csv_rows(session, listing.query(round_), prospectus):
        pence = row[9]
        writer.writerow(
            csv_cell(v)
            for v in [
                shown.reference,
                shown.council_code,
                shown.council,
                shown.type,
                shown.region,
                shown.state,
                shown.eoi_submitted,
                shown.bid_submitted,
                "" if pence is None else f"{pence_to_money(pence):.2f}",
                row[10] or "",
                row[11] or "",
                shown.place,
                shown.lead,
                "; ".join(shown.members),
            ]
        )
    return Response(
        out.getvalue(),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{slug}-applications.csv"'},
    )


def _csv_rows(
    session: Session, statement: Any, prospectus: Prospectus, batch: int = 500
) -> Iterator[tuple[ListedRow, Any]]:
    """Every listed application with its place, its councils read a batch at a time."""
    rows = session.execute(statement).all()
    for start in range(0, len(rows), batch):
        chunk = rows[start : start + batch]
        shown = _rows(session, chunk, prospectus)
        yield from zip(shown, chunk, strict=True)


@dataclass(frozen=True)
class AssessorScores:
    """One assessor's scores on the application, criterion by criterion (once submitted)."""

    assignment: Assignment
    assessor: User | None
    submitted: bool
    scores: list[tuple[Criterion, Score | None]]


@dataclass(frozen=True, kw_only=True)
class ApplicationPage(RoundPage):
    application: Application
    council: Council | None
    place: Place | None  # a partnership's place; None for a council alone
    councils: list[dict[str, Any]]  # a partnership's councils as summary list rows
    state: str
    forms: list[tuple[str, list[dict[str, Any]]]]  # each form's title and its answers, by section
    files: list[dict[str, Any]]
    assessors: list[AssessorScores]
    documents: list[Document]
    history: list[tuple[str, AuditEvent]]
    request_pounds: str
    offer: str | None
    pooled: PooledView | None  # the partners and the confirmed pooled budget, where asked for
    submissions: list[dict[str, str]]  # each version submitted, and reopened (reopening)
    clarifying: StaffRequests | None = None  # its clarification requests


@router.get("/rounds/{slug}/applications/{application_id}")
def application_page(
    request: Request,
    slug: str,
    application_id: int,
    session: SessionDep,
    pages: PagesDep,
    user: Staff,
) -> Response:
    round_ = round_or_404(session, slug)
    prospectus = rounds.prospectus_of(round_)
    application = application_or_404(session, round_, application_id)
    council = session.get(Council, application.council_code)
    place = place_of(session, application)
    names = council_names(session)
    forms = [("Expression of interest", prospectus.stages.eoi.form, application.eoi_answers)]
    if prospectus.stages.bid and application.bid_answers:
        forms.append(("Bid", prospectus.stages.bid.form, application.bid_answers))
    assessors = _assessments(session, prospectus, application)
    documents = session.exec(
        select(Document).where(Document.application_id == application.id).order_by(col(Document.id))
    ).all()
    history = audit.history(session, "application", application.id or 0)
    return pages.show(
        request,
        "staff/application.html",
        ApplicationPage(
            **round_header(request, round_, prospectus, "applications"),
            application=application,
            council=council,
            place=place if place.is_partnership else None,
            councils=council_rows(place, prospectus.zone) if place.is_partnership else [],
            state=APP_STATES.get(application.state, application.state),
            forms=[
                (title, answer_sections(form, answers, names)) for title, form, answers in forms
            ],
            files=_files(application),
            assessors=assessors,
            documents=list(documents),
            history=[(local_when(e.at, prospectus), e) for e in history],
            request_pounds=money_or_blank(application.support_requested_pence),
            offer=_offer(session, application, prospectus),
            pooled=pooled_view(session, application, prospectus),
            submissions=reopening.version_rows(session, application, prospectus),
            clarifying=requests_of(request, session, application, prospectus),
        ),
    )


def _offer(session: Session, application: Application, prospectus: Prospectus) -> str | None:
    """Where a selected place's grant offer stands: accepted (when, by whom), or not yet."""
    if not offers.has_offer(application):
        return None
    accepted = offers.acceptance(session, application, prospectus)
    if accepted:
        return accepted.sentence
    assert application.decided_at is not None
    by = offers.accept_by(prospectus, application.decided_at)
    return f"Not yet accepted: it is to be accepted by {long_deadline(by, prospectus.zone)}."


def _files(application: Application) -> list[dict[str, Any]]:
    """The files the council uploaded, for staff to open."""
    found = []
    for answers in (application.eoi_answers, application.bid_answers):
        for value in answers.values():
            candidates = value if isinstance(value, list) else [value]
            for item in candidates:
                if isinstance(item, dict) and {"sha256", "name"} <= item.keys():
                    found.append(item)
                elif isinstance(item, dict):
                    found += [v for v in item.values() if isinstance(v, dict) and "sha256" in v]
    return found


@router.get("/rounds/{slug}/applications/{application_id}/files/{sha256}")
def application_file(
    slug: str,
    application_id: int,
    sha256: str,
    session: SessionDep,
    settings: SettingsDep,
    user: Staff,
) -> Response:
    round_ = round_or_404(session, slug)
    application = application_or_404(session, round_, application_id)
    record_ = next((f for f in _files(application) if f["sha256"] == sha256), None)
    if record_ is None:
        raise HTTPException(status_code=404)
    path = stored_file(settings, "uploads", f"{application.id}/{sha256}", session)
    return FileResponse(
        path,
        media_type="application/octet-stream",
        filename=str(record_["name"]),
        headers={"X-Content-Type-Options": "nosniff"},
    )


@router.get("/documents/{document_id}")
def staff_document(
    document_id: int, session: SessionDep, settings: SettingsDep, user: Staff
) -> Response:
    found = session.get(Document, document_id)
    if found is None:
        raise HTTPException(status_code=404)
    path = stored_file(settings, "documents", found.path, session)
    return FileResponse(path, media_type="application/pdf", filename=path.name)


def _assessments(
    session: Session, prospectus: Prospectus, application: Application
) -> list[AssessorScores]:
    """Each assessor's scores on the application, criterion by criterion."""
    if prospectus.stages.assessment is None:
        return []
    out = []
    for assignment in session.exec(
        select(Assignment)
        .where(Assignment.application_id == application.id)
        .order_by(col(Assignment.id))
    ):
        assessor = session.get(User, assignment.assessor_id)
        scores = {
            s.criterion_id: s
            for s in session.exec(select(Score).where(Score.assignment_id == assignment.id))
        }
        out.append(
            AssessorScores(
                assignment=assignment,
                assessor=assessor,
                submitted=assignment.submitted_at is not None,
                scores=[
                    (c, scores.get(c.id) if assignment.submitted_at else None)
                    for c in prospectus.stages.assessment.criteria
                ],
            )
        )
    return out
