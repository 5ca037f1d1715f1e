"""Programme staff's workspace: launch a round, watch its timetable and flow runs, follow each
stage on its dashboard, and take the decisions only people take (the referrals, the shortlist,
re-assigning assessors, moderation, releasing the decisions, publishing models).

Decisions of one record (a referral, a moderated score, a re-assignment) are made in the request,
audited with the person who made them. Work over the whole round (issuing letters, assigning
assessors, ranking, selecting, returns cycles, publishing) is done by the engine's flows: the
page starts a flow run and links to it in the Prefect UI; the portal never does that work itself.
"""

from __future__ import annotations

import csv
import io
import secrets
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, HTTPException, Request, UploadFile
from fastapi.responses import FileResponse, RedirectResponse, Response
from sqlalchemy import func
from sqlalchemy import select as sa_select
from sqlmodel import Session, col, select

from cbflow import flowruns, opendata
from cbflow.charts import assessor_charts, bar_chart, frontier_chart, line_chart
from cbflow.errors import CbflowError, NotFound, ProspectusError, ValidationFailed
from cbflow.flowruns import DEADLINE, PORTAL, FlowsUnavailable, RunView
from cbflow.forms import money_to_pence, parse_money, pence_to_money
from cbflow.lifecycle import FUNDED, AppState, RoundState
from cbflow.models import (
    Application,
    Assignment,
    Council,
    Document,
    ModerationTask,
    PublishedModel,
    ReturnRecord,
    Round,
    Score,
    StartedRun,
    User,
)
from cbflow.prospectus import AssessmentStage, Prospectus, parse
from cbflow.services import (
    assessment,
    audit,
    implementation,
    offers,
    replication,
    rounds,
    selection,
    sift,
)
from cbflow.services.applications import local_time
from cbflow.services.documents import answer_sections
from cbflow.settings import Settings
from cbflow.stages import deadline_events
from cbflow.web.applications import APP_STATES
from cbflow.web.auth import require_role
from cbflow.web.deps import (
    ClockDep,
    FormDep,
    PagesDep,
    ReasonField,
    SessionDep,
    SettingsDep,
    ShortField,
)
from cbflow.web.pages import ROUND_STATES
from cbflow.web.security import as_id
from cbflow.wording import long_deadline

router = APIRouter(prefix="/staff", dependencies=[require_role("staff", "admin")])
Staff = Annotated[User, require_role("staff", "admin")]

PAGE_SIZE = 50
MAX_PROSPECTUS_BYTES = 512 * 1024
SORTS = {
    "council": col(Council.name),
    "state": col(Application.state),
    "submitted": col(Application.eoi_submitted_at),
    "bid": col(Application.bid_submitted_at),
    "request": col(Application.support_requested_pence),
    "rank": col(Application.rank),
}
DEADLINE_NAMES = {
    "close-eoi": "Close expressions of interest and sift",
    "close-bids": "Close bids",
    "decide": "Select places and issue decision letters",
    "returns-cycle": "Returns cycle: chase overdue returns, progress reports",
    "complete-round": "Complete the round",
}
FLOW_TITLES = {
    "launch-round": "Launch the round",
    "invite-to-bid": "Confirm the shortlist and issue invitations",
    "assign-assessors": "Assign assessors",
    "open-moderation": "Open moderation",
    "finalise-assessment": "Finalise the assessment and rank",
    "start-implementation": "Start implementation",
    "publish-model": "Publish a replication model",
    "issue-receipts": "Issue receipts",
    **DEADLINE_NAMES,
}
STAGE_PAGES = [
    ("", "Overview"),
    ("applications", "Applications"),
    ("sift", "Sift and shortlist"),
    ("assessment", "Assessment"),
    ("selection", "Selection"),
    ("implementation", "Implementation"),
]


# ---------------------------------------------------------------------------------------------
# helpers


def _round(session: Session, slug: str) -> Round:
    try:
        return rounds.get_round(session, slug)
    except NotFound:
        raise HTTPException(status_code=404) from None


def _application(session: Session, round_: Round, application_id: int) -> Application:
    application = session.get(Application, application_id)
    if application is None or application.round_id != round_.id:
        raise HTTPException(status_code=404)
    return application


def _when(moment: datetime | None, prospectus: Prospectus) -> str:
    return local_time(moment, prospectus) if moment is not None else ""


def _pounds(pence: int | None) -> str:
    return "" if pence is None else f"£{pence_to_money(pence):,.2f}"


def _started_runs(session: Session, settings: Settings, round_: Round) -> list[dict[str, Any]]:
    """The runs staff started for this round, newest first, with their state when Prefect
    answers."""
    started = list(
        session.exec(
            select(StartedRun)
            .where(StartedRun.round_id == round_.id)
            .order_by(col(StartedRun.id).desc())
        )
    )
    try:
        views = flowruns.read_runs(settings, [s.flow_run_id for s in started])
    except FlowsUnavailable:
        views = {}
    return [
        {
            "run": s,
            "view": views.get(s.flow_run_id),
            "url": flowruns.run_url(settings, s.flow_run_id),
        }
        for s in started
    ]


def _runs_of(runs: Sequence[dict[str, Any]], *flows: str) -> list[dict[str, Any]]:
    return [r for r in runs if r["run"].flow in flows]


def _nonce() -> str:
    """A one-off key for an action's form: a double click or a resent POST starts one run."""
    return secrets.token_urlsafe(16)


class Desk:
    """What every staff action needs: the request, its transaction, the settings, the pages,
    the time it happens and the person acting. Starts the action's flow run, or refuses it."""

    def __init__(
        self,
        request: Request,
        session: SessionDep,
        settings: SettingsDep,
        pages: PagesDep,
        clock: ClockDep,
        user: Staff,
    ) -> None:
        self.request, self.session, self.settings = request, session, settings
        self.pages, self.user, self.now = pages, user, clock()

    def start(
        self,
        flow: str,
        parameters: dict[str, Any],
        *,
        round_: Round | None,
        nonce: str,
        back: str,
        slug: str = "",
    ) -> Response:
        """Start `flow` as a run of its deployment (with `now` and the acting person), record
        it, and show its page; or say why nothing was started. The run is tagged with the
        round's id (`slug` for a round not yet launched), so the round's pages find it."""
        deployment = DEADLINE if flow in flowruns.DEADLINE_FLOWS else PORTAL
        title = FLOW_TITLES.get(flow, flow)
        slug = round_.slug if round_ is not None else slug
        email = self.user.email
        try:
            run_id = flowruns.start(
                self.settings,
                flow,
                {**parameters, "now": self.now, "actor": email},
                name=f"{slug} · {title.lower()} · started by {email}",
                tags=[slug] if slug else [],
                deployment=deployment,
                idempotency_key=f"portal:{flow}:{nonce}" if nonce else None,
            )
        except FlowsUnavailable as exc:
            return self._not_started(503, title, str(exc), back)
        known = self.session.exec(
            select(StartedRun).where(StartedRun.flow_run_id == run_id)
        ).first()
        if known is None:
            self.session.add(
                StartedRun(
                    flow_run_id=run_id,
                    flow=flow,
                    title=title,
                    round_id=round_.id if round_ is not None else None,
                    started_by=email,
                    started_at=self.now,
                )
            )
        return RedirectResponse(f"/staff/runs/{run_id}", status_code=303)

    def refuse(self, flow: str, problem: str, back: str) -> Response:
        """An action no longer possible (the page was old, or someone else did it first): say
        so; nothing is started."""
        return self._not_started(409, FLOW_TITLES.get(flow, flow), problem, back)

    def _not_started(self, status: int, title: str, problem: str, back: str) -> Response:
        return self.pages.render(
            self.request,
            "staff/not-started.html",
            status_code=status,
            title=title,
            problem=problem,
            back=back,
        )


DeskDep = Annotated[Desk, Depends()]


def _round_page(round_: Round, prospectus: Prospectus, here: str, **extra: Any) -> dict[str, Any]:
    return {
        "round": round_,
        "prospectus": prospectus,
        "round_state": ROUND_STATES.get(round_.state, round_.state),
        "stage_pages": [
            (f"/staff/rounds/{round_.slug}" + (f"/{path}" if path else ""), name, path == here)
            for path, name in STAGE_PAGES
            if _has_page(prospectus, path)
        ],
        "nonce": _nonce(),
    } | extra


def _council_names(session: Session) -> dict[str, str]:
    """Council code -> name, for the pages that list applications by council."""
    return dict(session.exec(select(Council.code, Council.name)).all())


def _has_page(prospectus: Prospectus, path: str) -> bool:
    if path == "assessment":
        return prospectus.stages.assessment is not None
    if path == "implementation":
        return prospectus.stages.implementation is not None
    return True


# ---------------------------------------------------------------------------------------------
# rounds, launching


@router.get("")
def staff_home(request: Request, session: SessionDep, pages: PagesDep, user: Staff) -> Response:
    listed = []
    for round_ in rounds.all_rounds(session):
        counts = rounds.state_counts(session, round_)
        listed.append(
            {
                "round": round_,
                "state": ROUND_STATES.get(round_.state, round_.state),
                "applications": sum(counts.values()),
            }
        )
    return pages.render(request, "staff/index.html", rounds=listed)


@router.get("/launch")
def launch_page(request: Request, pages: PagesDep, user: Staff) -> Response:
    return pages.render(request, "staff/launch.html", errors={}, problems=[], nonce=_nonce())


@router.post("/launch")
def launch(
    desk: DeskDep,
    prospectus: UploadFile | None = None,
    nonce: ShortField = "",
) -> Response:
    """Check the file here, so staff see every problem at once; the launch-round flow then
    launches it (and schedules its deadline runs)."""

    def refuse(message: str, problems: Sequence[str] = ()) -> Response:
        return desk.pages.render(
            desk.request,
            "staff/launch.html",
            status_code=400,
            errors={"prospectus": message},
            problems=list(problems),
            nonce=_nonce(),
        )

    if prospectus is None or not prospectus.filename:
        return refuse("Select a prospectus file")
    name = Path(prospectus.filename.replace("\\", "/")).name
    if not name.lower().endswith((".yaml", ".yml")):
        return refuse("The prospectus must be a YAML file (.yaml or .yml)")
    content = prospectus.file.read(MAX_PROSPECTUS_BYTES + 1)  # in this thread: the file is spooled
    if len(content) > MAX_PROSPECTUS_BYTES:
        return refuse(f"The prospectus must be smaller than {MAX_PROSPECTUS_BYTES // 1024} KB")
    try:
        source = content.decode("utf-8")
    except UnicodeDecodeError:
        return refuse("The prospectus must be a text file in UTF-8")
    try:
        parsed = parse(source, name)
    except ProspectusError as exc:
        return refuse(
            f"The prospectus has {len(exc.problems)} problem"
            f"{'s' if len(exc.problems) != 1 else ''}: correct the file and upload it again",
            exc.problems,
        )
    existing = desk.session.exec(select(Round).where(Round.slug == parsed.id)).first()
    if existing is not None:
        return refuse(
            f"A round with the id {parsed.id} has already been launched: give the new round "
            "its own id"
        )
    return desk.start(
        "launch-round",
        {
            "source": source,
            "path": name,
            "schedule": desk.settings.schedule_deadlines,
        },
        round_=None,
        nonce=nonce,
        back="/staff/launch",
        slug=parsed.id,
    )


@router.get("/runs/{run_id}")
def run_page(
    request: Request,
    run_id: str,
    session: SessionDep,
    settings: SettingsDep,
    pages: PagesDep,
    user: Staff,
) -> Response:
    started = session.exec(select(StartedRun).where(StartedRun.flow_run_id == run_id)).first()
    if started is None:
        raise HTTPException(status_code=404)
    view: RunView | None
    problem = ""
    try:
        view = flowruns.read_runs(settings, [run_id]).get(run_id)
    except FlowsUnavailable as exc:
        view, problem = None, str(exc)
    round_ = session.get(Round, started.round_id) if started.round_id is not None else None
    if round_ is None and view is not None and view.final:
        # the round a launch created, named by the run's tag; recorded once it exists
        round_ = session.exec(select(Round).where(col(Round.slug).in_(view.tags))).first()
        if round_ is not None:
            started.round_id = round_.id
            session.add(started)
    return pages.render(
        request,
        "staff/run.html",
        started=started,
        view=view,
        problem=problem,
        url=flowruns.run_url(settings, run_id),
        round=round_,
    )


# ---------------------------------------------------------------------------------------------
# a round's overview: timetable, scheduled runs, counts


def _event_done(event: str, round_: Round) -> bool:
    state = RoundState(round_.state)
    order = list(RoundState)
    if state == RoundState.CANCELLED:
        return True
    if event == "close-eoi":
        return state != RoundState.LAUNCHED
    if event == "close-bids":
        return order.index(state) >= order.index(RoundState.BIDS_CLOSED)
    if event == "decide":
        return state in selection.RELEASED
    if event == "complete-round":
        return state == RoundState.COMPLETED
    return state == RoundState.COMPLETED  # a returns cycle may be run again until the end


def _timetable(prospectus: Prospectus) -> list[tuple[str, str]]:
    zone, t = prospectus.zone, prospectus.timetable
    rows = [
        ("Expressions of interest open", local_time(t.eoi.opens_at(zone), prospectus)),
        ("Expressions of interest close", local_time(t.eoi.closes_at(zone), prospectus)),
    ]
    if t.bid:
        rows += [
            ("Bids open", local_time(t.bid.opens_at(zone), prospectus)),
            ("Bids close", local_time(t.bid.closes_at(zone), prospectus)),
        ]
    if t.assessment:
        rows += [
            ("Assessment opens", local_time(t.assessment.opens_at(zone), prospectus)),
            ("Assessment closes", local_time(t.assessment.closes_at(zone), prospectus)),
        ]
    if t.decision:
        rows.append(("Decisions by", local_time(t.decision.by_at(zone), prospectus)))
    if t.implementation:
        rows += [
            ("Implementation starts", f"{t.implementation.starts:%-d %B %Y}"),
            ("Implementation ends", f"{t.implementation.ends:%-d %B %Y}"),
        ]
    return rows


@router.get("/rounds/{slug}")
def round_page(
    request: Request,
    slug: str,
    session: SessionDep,
    settings: SettingsDep,
    clock: ClockDep,
    pages: PagesDep,
    user: Staff,
) -> Response:
    round_ = _round(session, slug)
    prospectus = rounds.prospectus_of(round_)
    now = clock()
    problem = ""
    try:
        scheduled = flowruns.round_runs(settings, slug)
    except FlowsUnavailable as exc:
        scheduled, problem = [], str(exc)
    events = []
    for number, (flow, when) in enumerate(deadline_events(prospectus)):
        runs = [
            r
            for r in scheduled
            if r.flow == flow
            and r.expected_start is not None
            and abs((r.expected_start - when).total_seconds()) < 1
        ]
        # done when the round has moved on, or when its scheduled run has completed
        done = _event_done(flow, round_) or any(r.state_type == "COMPLETED" for r in runs)
        events.append(
            {
                "number": number,
                "flow": flow,
                "title": DEADLINE_NAMES[flow],
                "when": local_time(when, prospectus),
                "run": runs[0] if runs else None,
                "due": when <= now,
                "done": done,
                "can_run": when <= now and not done,
                "at": when.isoformat(),
            }
        )
    counts = rounds.state_counts(session, round_)
    return pages.render(
        request,
        "staff/round.html",
        **_round_page(
            round_,
            prospectus,
            "",
            timetable=_timetable(prospectus),
            events=events,
            problem=problem,
            counts=[(APP_STATES.get(s, s), n) for s, n in sorted(counts.items())],
            total=sum(counts.values()),
            started=_started_runs(session, settings, round_)[:10],
            open_data=[
                {
                    "kind": kind,
                    "title": OPEN_DATA_TITLES[kind],
                    "href": f"/staff/rounds/{slug}/open-data/{kind}.json",
                    "why_not": why_not,
                }
                for kind, why_not in opendata.unavailable(session, round_).items()
            ],
        ),
    )


OPEN_DATA_TITLES = {
    "360giving": "Grants awarded, as 360Giving data (JSON)",
    "ocds": "The round's stages, as OCDS releases (JSON)",
}


@router.get("/rounds/{slug}/open-data/{kind}.json")
def open_data(
    request: Request,
    slug: str,
    kind: str,
    session: SessionDep,
    settings: SettingsDep,
    clock: ClockDep,
    pages: PagesDep,
    user: Staff,
) -> Response:
    """The round as open data, built from what is recorded now (as `cbflow export` writes it)."""
    round_ = _round(session, slug)
    if kind not in opendata.KINDS:
        raise HTTPException(status_code=404)
    url = opendata.download_url(settings, slug, kind)
    try:
        data = opendata.package(session, round_, kind, now=clock(), url=url)
    except opendata.OpenDataUnavailable as exc:
        return pages.render(
            request,
            "error.html",
            status_code=409,
            title="This open data cannot be published yet",
            message=f"{str(exc)[0].upper()}{str(exc)[1:]}.",
        )
    return Response(
        opendata.to_json(data),
        media_type="application/json",
        headers={"Content-Disposition": f'attachment; filename="{slug}-{kind}.json"'},
    )


@router.post("/rounds/{slug}/run-deadline")
def run_deadline(
    slug: str,
    desk: DeskDep,
    event: ShortField = "",
    nonce: ShortField = "",
) -> Response:
    """Run a deadline's flow now: for a deadline that has passed without its run (the runner
    was down, say). Not before the deadline, and not once its work is done."""
    round_ = _round(desk.session, slug)
    prospectus = rounds.prospectus_of(round_)
    due = [flow for flow, when in deadline_events(prospectus) if when <= desk.now]
    if event not in DEADLINE_NAMES:
        raise HTTPException(status_code=404)
    back = f"/staff/rounds/{slug}"
    if event not in due or _event_done(event, round_):
        return desk.refuse(
            event, "this deadline has not passed yet, or its work is already done", back
        )
    return desk.start(event, {"slug": slug}, round_=round_, nonce=nonce, back=back)


# ---------------------------------------------------------------------------------------------
# the applications dashboard and CSV


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
            statement = statement.where(
                func.lower(Council.name).contains(self.q.lower(), autoescape=True)
            )
        key = SORTS[self.sort]
        ordered = key.desc() if self.descending else key.asc()
        return statement.order_by(ordered.nulls_last(), col(Council.name))

    def link(self, **changes: Any) -> str:
        values = {"state": self.state, "q": self.q, "sort": self.sort} | changes
        values["order"] = "desc" if changes.get("descending", self.descending) else "asc"
        values.pop("descending", None)
        return "?" + urlencode({k: v for k, v in values.items() if v not in ("", None)})


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
    round_ = _round(session, slug)
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
    return pages.render(
        request,
        "staff/applications.html",
        **_round_page(
            round_,
            prospectus,
            "applications",
            listing=listing,
            rows=[_row(r, prospectus) for r in rows],
            total=total,
            page=page,
            pages_count=pages_count,
            state_items=[
                {"value": value, "text": text, "selected": value == listing.state}
                for value, text in [("", "Any status"), *APP_STATES.items()]
            ],
            counts=sorted(((APP_STATES.get(s, s), s, n) for s, n in counts), key=lambda c: c[1]),
            sort_columns=[
                ("council", "Council"),
                ("state", "Status"),
                ("submitted", "EOI submitted"),
                ("bid", "Bid submitted"),
                ("request", "Support requested"),
                ("rank", "Rank"),
            ],
        ),
    )


def _row(row: Any, prospectus: Prospectus) -> dict[str, Any]:
    (ident, reference, code, name, type_name, region, state, eoi_at, bid_at, pence, total, rank) = (
        row
    )
    return {
        "id": ident,
        "reference": reference,
        "council_code": code,
        "council": name,
        "type": type_name,
        "region": region,
        "state": APP_STATES.get(state, state),
        "eoi_submitted": _when(eoi_at, prospectus),
        "bid_submitted": _when(bid_at, prospectus),
        "request": _pounds(pence),
        "score": f"{total}%" if total is not None else "",
        "rank": rank or "",
    }


def _csv_cell(value: Any) -> str:
    """A cell a spreadsheet will not run as a formula (CSV injection)."""
    text = "" if value is None else str(value)
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


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
    round_ = _round(session, slug)
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
        ]
    )
    for row in session.execute(listing.query(round_)):
        shown = _row(row, prospectus)
        pence = row[9]
        writer.writerow(
            _csv_cell(v)
            for v in [
                shown["reference"],
                shown["council_code"],
                shown["council"],
                shown["type"],
                shown["region"],
                shown["state"],
                shown["eoi_submitted"],
                shown["bid_submitted"],
                "" if pence is None else f"{pence_to_money(pence):.2f}",
                row[10] or "",
                row[11] or "",
            ]
        )
    return Response(
        out.getvalue(),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{slug}-applications.csv"'},
    )


@router.get("/rounds/{slug}/applications/{application_id}")
def application_page(
    request: Request,
    slug: str,
    application_id: int,
    session: SessionDep,
    pages: PagesDep,
    user: Staff,
) -> Response:
    round_ = _round(session, slug)
    prospectus = rounds.prospectus_of(round_)
    application = _application(session, round_, application_id)
    council = session.get(Council, application.council_code)
    names = _council_names(session)
    forms = [("Expression of interest", prospectus.stages.eoi.form, application.eoi_answers)]
    if prospectus.stages.bid and application.bid_answers:
        forms.append(("Bid", prospectus.stages.bid.form, application.bid_answers))
    assessors = _assessments(session, prospectus, application)
    documents = session.exec(
        select(Document).where(Document.application_id == application.id).order_by(col(Document.id))
    ).all()
    history = audit.history(session, "application", application.id or 0)
    return pages.render(
        request,
        "staff/application.html",
        **_round_page(
            round_,
            prospectus,
            "applications",
            application=application,
            council=council,
            state=APP_STATES.get(application.state, application.state),
            forms=[
                (title, answer_sections(form, answers, names)) for title, form, answers in forms
            ],
            files=_files(application),
            assessors=assessors,
            documents=documents,
            history=[(_when(e.at, prospectus), e) for e in history],
            request_pounds=_pounds(application.support_requested_pence),
            offer=_offer(session, application, prospectus),
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
    round_ = _round(session, slug)
    application = _application(session, round_, application_id)
    record_ = next((f for f in _files(application) if f["sha256"] == sha256), None)
    if record_ is None:
        raise HTTPException(status_code=404)
    path = settings.data_dir / "uploads" / str(application.id) / sha256
    if not path.is_file():
        raise HTTPException(status_code=404)
    return FileResponse(
        path,
        media_type="application/octet-stream",
        filename=str(record_["name"]),
        headers={"X-Content-Type-Options": "nosniff"},
    )


@router.get("/documents/{document_id}")
def document(document_id: int, session: SessionDep, settings: SettingsDep, user: Staff) -> Response:
    found = session.get(Document, document_id)
    if found is None:
        raise HTTPException(status_code=404)
    root = settings.documents_dir.resolve()
    path = (root / found.path).resolve()
    if not path.is_relative_to(root) or not path.is_file():
        raise HTTPException(status_code=404)
    return FileResponse(path, media_type="application/pdf", filename=path.name)


# ---------------------------------------------------------------------------------------------
# sift and shortlist


@router.get("/rounds/{slug}/sift")
def sift_page(
    request: Request,
    slug: str,
    session: SessionDep,
    settings: SettingsDep,
    pages: PagesDep,
    user: Staff,
) -> Response:
    round_ = _round(session, slug)
    return _render_sift(request, session, settings, pages, round_, errors={})


def _render_sift(
    request: Request,
    session: Session,
    settings: Settings,
    pages: Any,
    round_: Round,
    errors: dict[str, str],
    status_code: int = 200,
    chosen: Iterable[str] | None = None,
) -> Response:
    prospectus = rounds.prospectus_of(round_)
    names = _council_names(session)
    rules = {r.id: r.description for r in prospectus.stages.eoi.sift}
    referred = [
        {
            "application": a,
            "council": names.get(a.council_code, a.council_code),
            "failed": [
                rules.get(rule, rule)
                for rule, result in a.sift_results.items()
                if not result.get("passed")
            ],
        }
        for a in rounds.applications_of(session, round_, AppState.SIFT_REFER)
    ]
    passed = rounds.applications_of(session, round_, AppState.SIFT_PASS)
    passed.sort(key=lambda a: (a.eoi_submitted_at or a.created_at, a.council_code))
    proposed = {a.reference for a in sift.propose_shortlist(session, round_=round_)}
    ticked = set(chosen) if chosen is not None else proposed
    confirmable = (
        prospectus.stages.bid is not None and round_.state == RoundState.EOI_CLOSED and not referred
    )
    invited = rounds.applications_of(
        session, round_, AppState.INVITED, AppState.BID_DRAFT, AppState.BID_SUBMITTED
    )
    return pages.render(
        request,
        "staff/sift.html",
        status_code=status_code,
        **_round_page(
            round_,
            prospectus,
            "sift",
            errors=errors,
            referred=referred,
            candidates=[
                {
                    "application": a,
                    "council": names.get(a.council_code, a.council_code),
                    "submitted": _when(a.eoi_submitted_at, prospectus),
                    "checked": a.reference in ticked,
                }
                for a in passed
            ],
            shortlist_size=prospectus.stages.eoi.shortlist,
            has_bid=prospectus.stages.bid is not None,
            confirmable=confirmable,
            invited=[(a, names.get(a.council_code, a.council_code)) for a in invited],
            eoi_open=round_.state == RoundState.LAUNCHED,
            runs=_runs_of(_started_runs(session, settings, round_), "invite-to-bid", "close-eoi"),
        ),
    )


@router.post("/rounds/{slug}/sift/referrals/{application_id}")
def review_referral(
    request: Request,
    slug: str,
    application_id: int,
    session: SessionDep,
    settings: SettingsDep,
    clock: ClockDep,
    pages: PagesDep,
    user: Staff,
    decision: ShortField = "",
    reason: ReasonField = "",
) -> Response:
    round_ = _round(session, slug)
    application = _application(session, round_, application_id)
    errors = {}
    if decision not in ("pass", "fail"):
        errors[f"decision-{application.id}"] = "Select whether the expression of interest passes"
    if not reason.strip():
        errors[f"reason-{application.id}"] = "Enter the reason for the decision"
    if application.state != AppState.SIFT_REFER:
        errors[f"decision-{application.id}"] = "This referral has already been decided"
    if errors:
        return _render_sift(request, session, settings, pages, round_, errors, 400)
    sift.review_referral(
        session,
        application=application,
        passed=decision == "pass",
        actor=user.email,
        now=clock(),
        reason=reason.strip(),
    )
    return RedirectResponse(f"/staff/rounds/{slug}/sift", status_code=303)


@router.post("/rounds/{slug}/sift/shortlist")
def confirm_shortlist(slug: str, desk: DeskDep, form: FormDep) -> Response:
    request, session = desk.request, desk.session
    round_ = _round(session, slug)
    prospectus = rounds.prospectus_of(round_)
    chosen = [str(v) for v in form.getlist("chosen")]
    nonce = str(form.get("nonce", ""))
    passed = {a.reference for a in rounds.applications_of(session, round_, AppState.SIFT_PASS)}
    size = prospectus.stages.eoi.shortlist
    error = ""
    if round_.state != RoundState.EOI_CLOSED or prospectus.stages.bid is None:
        error = "The shortlist can be confirmed once the sift is done, in a round with bids"
    elif rounds.applications_of(session, round_, AppState.SIFT_REFER):
        error = "Decide the referred expressions of interest first"
    elif not chosen:
        error = "Select the places to invite to bid"
    elif any(c not in passed for c in chosen):
        error = "Only expressions of interest that passed the sift can be shortlisted"
    elif size is not None and len(chosen) > size:
        error = f"Select at most {size} places: the prospectus shortlists {size}"
    if error:
        return _render_sift(
            request, session, desk.settings, desk.pages, round_, {"chosen": error}, 400, chosen
        )
    return desk.start(
        "invite-to-bid",
        {"slug": slug, "chosen": sorted(chosen)},
        round_=round_,
        nonce=nonce,
        back=f"/staff/rounds/{slug}/sift",
    )


# ---------------------------------------------------------------------------------------------
# assessment


def _stage_of(prospectus: Prospectus) -> AssessmentStage:
    if prospectus.stages.assessment is None:
        raise HTTPException(status_code=404)
    return prospectus.stages.assessment


def _assessments(
    session: Session, prospectus: Prospectus, application: Application
) -> list[dict[str, Any]]:
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
            {
                "assignment": assignment,
                "assessor": assessor,
                "submitted": assignment.submitted_at is not None,
                "scores": [
                    (c, scores.get(c.id) if assignment.submitted_at else None)
                    for c in prospectus.stages.assessment.criteria
                ],
            }
        )
    return out


@router.get("/rounds/{slug}/assessment")
def assessment_page(
    request: Request,
    slug: str,
    session: SessionDep,
    settings: SettingsDep,
    pages: PagesDep,
    user: Staff,
) -> Response:
    round_ = _round(session, slug)
    return _render_assessment(request, session, settings, pages, round_, {})


def _render_assessment(
    request: Request,
    session: Session,
    settings: Settings,
    pages: Any,
    round_: Round,
    errors: dict[str, str],
    status_code: int = 200,
) -> Response:
    prospectus = rounds.prospectus_of(round_)
    stage = _stage_of(prospectus)
    names = _council_names(session)
    assessors = list(
        session.exec(select(User).where(User.role == "assessor").order_by(col(User.name)))
    )
    by_id = {a.id: a for a in assessors}
    assignments = assessment.all_assignments(session, round_)
    by_application: dict[int, list[Assignment]] = {}
    for assignment in assignments:
        by_application.setdefault(assignment.application_id, []).append(assignment)
    waiting = assessment.candidates(session, round_)
    assessed = [
        a
        for a in rounds.applications_of(session, round_)
        if a.id in by_application and a.state != AppState.WITHDRAWN
    ]
    tasks = assessment.moderation_tasks(session, round_)
    apps_by_id = {a.id: a for a in assessed}
    # every submitted score and its reason on each disputed criterion
    justifications = {
        task.id or 0: [(score.score, score.justification) for _, score in given]
        for application_id in {t.application_id for t in tasks if t.application_id in apps_by_id}
        for task, given in assessment.disagreements(session, apps_by_id[application_id])
    }
    criteria = {c.id: c for c in stage.criteria}
    scores = assessment.scores_by_application(session, round_)
    load = Counter(a.assessor_id for a in assignments)
    submitted = sum(1 for a in assignments if a.submitted_at is not None)
    state = RoundState(round_.state)
    return pages.render(
        request,
        "staff/assessment.html",
        status_code=status_code,
        **_round_page(
            round_,
            prospectus,
            "assessment",
            errors=errors,
            stage=stage,
            waiting=len(waiting),
            score_items=[
                {"value": str(n), "text": f"{n} – {stage.scale.labels[n]}"}
                if n in (stage.scale.labels or {})
                else {"value": str(n), "text": str(n)}
                for n in range(stage.scale.min, stage.scale.max + 1)
            ],
            assessor_count=len(assessors),
            assessors=[(a, load.get(a.id or 0, 0)) for a in assessors],
            rows=[
                {
                    "application": a,
                    "council": names.get(a.council_code, a.council_code),
                    "assignments": [
                        {
                            "assignment": x,
                            "assessor": by_id.get(x.assessor_id),
                            "others": [
                                {"value": str(o.id), "text": o.name}
                                for o in assessors
                                if o.id not in {y.assessor_id for y in by_application[a.id or 0]}
                                and o.council_code != a.council_code
                            ],
                        }
                        for x in by_application[a.id or 0]
                    ],
                    "scores": [
                        (c.title, scores.get(a.id or 0, {}).get(c.id, [])) for c in stage.criteria
                    ],
                }
                for a in assessed
            ],
            submitted=submitted,
            total_assignments=len(assignments),
            tasks=[
                {
                    "task": t,
                    "application": apps_by_id.get(t.application_id),
                    "council": names.get(
                        apps_by_id[t.application_id].council_code
                        if t.application_id in apps_by_id
                        else "",
                        "",
                    ),
                    "criterion": criteria.get(t.criterion_id),
                    "scores": scores.get(t.application_id, {}).get(t.criterion_id, []),
                    "justifications": justifications.get(t.id or 0, []),
                }
                for t in tasks
                if t.application_id in apps_by_id
            ],
            can_assign=bool(waiting)
            and state
            == (RoundState.BIDS_CLOSED if prospectus.stages.bid else RoundState.EOI_CLOSED),
            can_moderate=bool(assignments)
            and submitted == len(assignments)
            and state not in selection.RELEASED
            and state != RoundState.ASSESSED,
            can_finalise=bool(assignments)
            and submitted == len(assignments)
            and all(t.resolved_at is not None for t in tasks)
            and state in (RoundState.BIDS_CLOSED, RoundState.EOI_CLOSED),
            ranked=assessment.results(session, round_) if state != RoundState.LAUNCHED else [],
            **_assessor_charts(session, round_),
            runs=_runs_of(
                _started_runs(session, settings, round_),
                "assign-assessors",
                "open-moderation",
                "finalise-assessment",
            ),
            names=names,
        ),
    )


def _assessor_charts(session: Session, round_: Round) -> dict[str, Any]:
    """How each assessor scores, before and after normalisation: a table and two charts."""
    profiles, pooled = assessment.assessor_profiles(session, round_)
    if not profiles:
        return {"profiles": [], "pooled": None}

    def quantize(value: Decimal) -> Decimal:
        return value.quantize(Decimal("0.01"))

    return {
        "profiles": [
            {
                "name": p.assessor.name,
                "count": p.count,
                "mean": quantize(p.raw.mean),
                "spread": quantize(p.raw.spread),
                "normalised": quantize(p.normalised_mean),
            }
            for p in profiles
        ],
        "pooled": {"mean": quantize(pooled.mean), "spread": quantize(pooled.spread)},
        "assessor_charts": assessor_charts(
            [(p.assessor.name, p.raw.mean, p.normalised_mean) for p in profiles]
        ),
    }


@router.post("/rounds/{slug}/assessment/{action}")
def assessment_action(slug: str, action: str, desk: DeskDep, nonce: ShortField = "") -> Response:
    flows = {
        "assign": "assign-assessors",
        "moderation": "open-moderation",
        "finalise": "finalise-assessment",
    }
    if action not in flows:
        raise HTTPException(status_code=404)
    round_ = _round(desk.session, slug)
    _stage_of(rounds.prospectus_of(round_))
    return desk.start(
        flows[action],
        {"slug": slug},
        round_=round_,
        nonce=nonce,
        back=f"/staff/rounds/{slug}/assessment",
    )


@router.post("/rounds/{slug}/assessment/assignments/{assignment_id}")
def reassign(
    request: Request,
    slug: str,
    assignment_id: int,
    session: SessionDep,
    settings: SettingsDep,
    clock: ClockDep,
    pages: PagesDep,
    user: Staff,
    assessor: ShortField = "",
    reason: ReasonField = "",
) -> Response:
    round_ = _round(session, slug)
    assignment = session.get(Assignment, assignment_id)
    if assignment is None:
        raise HTTPException(status_code=404)
    _application(session, round_, assignment.application_id)
    field = f"assessor-{assignment_id}"
    chosen = as_id(assessor)
    to = session.get(User, chosen) if chosen is not None else None
    if to is None:
        return _render_assessment(
            request, session, settings, pages, round_, {field: "Select an assessor"}, 400
        )
    try:
        assessment.reassign(
            session, assignment=assignment, to=to, actor=user.email, now=clock(), reason=reason
        )
    except ValidationFailed:
        errors = {f"reason-{assignment_id}": "Enter the reason for moving the assessment"}
        return _render_assessment(request, session, settings, pages, round_, errors, 400)
    except CbflowError as exc:
        message = str(exc)
        return _render_assessment(
            request,
            session,
            settings,
            pages,
            round_,
            {field: message[:1].upper() + message[1:]},
            400,
        )
    return RedirectResponse(f"/staff/rounds/{slug}/assessment", status_code=303)


@router.post("/rounds/{slug}/assessment/moderation/{task_id}")
def moderate(
    request: Request,
    slug: str,
    task_id: int,
    session: SessionDep,
    settings: SettingsDep,
    clock: ClockDep,
    pages: PagesDep,
    user: Staff,
    score: ShortField = "",
    reason: ReasonField = "",
) -> Response:
    round_ = _round(session, slug)
    task = session.get(ModerationTask, task_id)
    if task is None:
        raise HTTPException(status_code=404)
    _application(session, round_, task.application_id)
    errors: dict[str, str] = {}
    stage = _stage_of(rounds.prospectus_of(round_))
    value = int(score) if score.strip().lstrip("-").isdigit() else None
    if value is None:
        errors[f"score-{task_id}"] = "Select the moderated score"
    if not reason.strip():
        errors[f"reason-{task_id}"] = "Enter the reason for the moderated score"
    if value is not None and not stage.scale.min <= value <= stage.scale.max:
        errors[f"score-{task_id}"] = (
            f"The score must be from {stage.scale.min} to {stage.scale.max}"
        )
    if not errors:
        assert value is not None
        try:
            assessment.moderate(
                session, task=task, score=value, reason=reason, actor=user.email, now=clock()
            )
        except CbflowError as exc:
            errors[f"score-{task_id}"] = str(exc)[:1].upper() + str(exc)[1:]
    if errors:
        return _render_assessment(request, session, settings, pages, round_, errors, 400)
    return RedirectResponse(f"/staff/rounds/{slug}/assessment", status_code=303)


# ---------------------------------------------------------------------------------------------
# selection, what-if, release


def _scenario(
    prospectus: Prospectus, places: str, budget: str, weights: dict[str, str]
) -> tuple[selection.Scenario | None, dict[str, str]]:
    errors: dict[str, str] = {}
    scenario_places: int | None = None
    budget_pence: int | None = None
    chosen: dict[str, Decimal] = {}
    if places := places.strip():
        # read as text first: isdigit() alone accepts "²", which int() then refuses
        if not (places.isascii() and places.isdigit() and len(places) <= 4) or int(places) < 1:
            errors["places"] = "Enter the number of places as a whole number from 1 to 9999"
        else:
            scenario_places = int(places)
    if budget.strip():
        try:
            amount = parse_money(budget)
        except ValueError:
            amount = None
        if amount is None or amount < 0:
            errors["budget"] = "Enter the budget in pounds, like 4800000 or 4,800,000.00"
        else:
            budget_pence = money_to_pence(amount)
    stage = prospectus.stages.assessment
    for criterion in stage.criteria if stage else []:
        text = weights.get(criterion.id, "").strip()
        if not text:
            continue
        try:
            weight = Decimal(text) if len(text) <= 20 and "e" not in text.lower() else Decimal(-1)
        except InvalidOperation:
            weight = Decimal(-1)
        if not weight.is_finite() or weight < 0 or weight > 1000:
            errors[f"weight-{criterion.id}"] = (
                f"Enter the weight of {criterion.title} as a number from 0 to 1000"
            )
        else:
            chosen[criterion.id] = weight
    if stage and chosen and sum(chosen.get(c.id, c.weight) for c in stage.criteria) <= 0:
        errors[f"weight-{stage.criteria[0].id}"] = "At least one weight must be above 0"
    if errors:
        return None, errors
    if scenario_places is None and budget_pence is None and not chosen:
        return None, {}
    return selection.Scenario(scenario_places, budget_pence, chosen or None), {}


@router.get("/rounds/{slug}/selection")
def selection_page(
    request: Request,
    slug: str,
    session: SessionDep,
    settings: SettingsDep,
    pages: PagesDep,
    user: Staff,
    places: str = "",
    budget: str = "",
) -> Response:
    round_ = _round(session, slug)
    prospectus = rounds.prospectus_of(round_)
    weights = {
        key.removeprefix("weight-"): value
        for key, value in request.query_params.items()
        if key.startswith("weight-")
    }
    scenario, errors = _scenario(prospectus, places, budget, weights)
    state = RoundState(round_.state)
    released = state in selection.RELEASED
    ready = selection.ready_state(prospectus)
    names = _council_names(session)
    decisions: list[selection.Decision] = []
    changes: list[selection.Change] = []
    impossible = ""
    if released:
        decisions = selection.recorded(session, round_)
    elif state == ready:
        try:
            decisions = selection.plan(session, round_)
        except selection.SelectionImpossible as exc:
            impossible = str(exc)
    if scenario is not None and (released or state == ready) and not impossible:
        try:
            changes = selection.what_if(session, round_, scenario)
        except ValidationFailed as exc:
            errors = {"places": str(exc)}
        except selection.SelectionImpossible as exc:
            errors = {"places": f"With these figures, {exc}"}
    selected = [d for d in decisions if d.outcome == AppState.SELECTED]
    stage = prospectus.stages.assessment
    return pages.render(
        request,
        "staff/selection.html",
        frontier=frontier_chart(
            selection.frontier(session, round_), prospectus.capacity.places or len(decisions)
        )
        if decisions
        else None,
        status_code=400 if errors else 200,
        **_round_page(
            round_,
            prospectus,
            "selection",
            errors=errors,
            released=released,
            ready=state == ready,
            ready_state=ROUND_STATES.get(ready.value, ready.value),
            impossible=impossible,
            rules=[selection.rule_text(rule) for rule in prospectus.selection.constraints],
            decisions=[
                (d, names.get(d.application.council_code, d.application.council_code))
                for d in decisions
            ],
            outcome_names={
                AppState.SELECTED: "Selected",
                AppState.RESERVE: "Reserve",
                AppState.UNSUCCESSFUL: "Not selected",
            },
            places=prospectus.capacity.places,
            budget=_pounds(money_to_pence(prospectus.capacity.budget_gbp))
            if prospectus.capacity.budget_gbp is not None
            else "",
            awarded=_pounds(sum(d.application.support_requested_pence or 0 for d in selected)),
            form={"places": places, "budget": budget, "weights": weights},
            criteria=stage.criteria if stage else [],
            scenario=scenario,
            changes=changes,
            changed=[c for c in changes if c.changed],
            names=names,
            runs=_runs_of(_started_runs(session, settings, round_), "decide"),
        ),
    )


@router.post("/rounds/{slug}/selection/release")
def release_decisions(
    slug: str,
    desk: DeskDep,
    confirm: ShortField = "",
    nonce: ShortField = "",
) -> Response:
    round_ = _round(desk.session, slug)
    ready = selection.ready_state(rounds.prospectus_of(round_))
    if round_.state != ready:
        return desk.refuse(
            "decide",
            f"the round is {ROUND_STATES.get(round_.state, round_.state).lower()}; decisions "
            f"are released once it is {ROUND_STATES.get(ready.value, ready.value).lower()}",
            f"/staff/rounds/{slug}/selection",
        )
    if confirm != "yes":
        return RedirectResponse(
            f"/staff/rounds/{slug}/selection?confirm=missing#release", status_code=303
        )
    return desk.start(
        "decide",
        {"slug": slug},
        round_=round_,
        nonce=nonce,
        back=f"/staff/rounds/{slug}/selection",
    )


# ---------------------------------------------------------------------------------------------
# implementation, returns, replication


def _return_status(record_: ReturnRecord, now: datetime, prospectus: Prospectus) -> str:
    if record_.submitted_at is not None:
        return "late" if record_.submitted_at > record_.due else "submitted"
    opens = datetime.combine(record_.period_end, datetime.min.time(), tzinfo=prospectus.zone)
    if now > record_.due:
        return "overdue"
    return "due" if now >= opens else "not yet due"


@router.get("/rounds/{slug}/implementation")
def implementation_page(
    request: Request,
    slug: str,
    session: SessionDep,
    settings: SettingsDep,
    clock: ClockDep,
    pages: PagesDep,
    user: Staff,
) -> Response:
    round_ = _round(session, slug)
    prospectus = rounds.prospectus_of(round_)
    stage = prospectus.stages.implementation
    if stage is None:
        raise HTTPException(status_code=404)
    now = clock()
    names = _council_names(session)
    places = rounds.applications_of(session, round_, *FUNDED)
    rows: list[dict[str, Any]] = []
    periods: list[str] = []
    payments: list[tuple[str, float]] = []
    for application in places:
        returns = implementation.returns_of(session, application)
        if not periods:
            periods = [f"{r.period_start:%b %Y} to {r.period_end:%b %Y}" for r in returns]
        paid = sum(r.payment_pence or 0 for r in returns)
        payments.append((names.get(application.council_code, ""), float(pence_to_money(paid))))
        rows.append(
            {
                "application": application,
                "council": names.get(application.council_code, application.council_code),
                "state": APP_STATES.get(application.state, application.state),
                "returns": [
                    {"record": r, "status": _return_status(r, now, prospectus)} for r in returns
                ],
                "milestones": implementation.milestones_of(session, application),
                "paid": _pounds(paid) if stage.payments else "",
                "model": replication.latest_model(session, application),
                "publishable": application.state == AppState.COMPLETED
                and prospectus.stages.replication is not None,
            }
        )
    overdue = sum(1 for r in rows for x in r["returns"] if x["status"] == "overdue")
    chart = (
        bar_chart("Paid by results so far", payments, unit="£")
        if stage.payments and payments
        else None
    )
    state = RoundState(round_.state)
    return pages.render(
        request,
        "staff/implementation.html",
        **_round_page(
            round_,
            prospectus,
            "implementation",
            rows=rows,
            periods=periods,
            overdue=overdue,
            chart=chart,
            can_start=state == RoundState.DECIDED,
            runs=_runs_of(
                _started_runs(session, settings, round_),
                "start-implementation",
                "returns-cycle",
                "publish-model",
                "complete-round",
            ),
        ),
    )


@router.post("/rounds/{slug}/implementation/start")
def start_implementation(slug: str, desk: DeskDep, nonce: ShortField = "") -> Response:
    round_ = _round(desk.session, slug)
    if round_.state != RoundState.DECIDED:
        return desk.refuse(
            "start-implementation",
            "implementation starts once the decisions are released, and only once",
            f"/staff/rounds/{slug}/implementation",
        )
    return desk.start(
        "start-implementation",
        {"slug": slug},
        round_=round_,
        nonce=nonce,
        back=f"/staff/rounds/{slug}/implementation",
    )


@router.get("/rounds/{slug}/models/{model_id}/lineage")
def lineage_page(
    request: Request,
    slug: str,
    model_id: int,
    session: SessionDep,
    pages: PagesDep,
    user: Staff,
) -> Response:
    """Who adopted a published model, how their applications stand, and how they compare."""
    round_ = _round(session, slug)
    prospectus = rounds.prospectus_of(round_)
    model = session.get(PublishedModel, model_id)
    if model is None or model.round_id != round_.id:
        raise HTTPException(status_code=404)
    report = replication.lineage(session, model)
    periods = sorted(set(report.original).union(*(a.results for a in report.adoptions)))
    series = {
        f"{report.place.name} (the model)": [
            (f"Return {p}", report.original[p]) for p in periods if p in report.original
        ]
    }
    for adoption in report.adoptions:
        if adoption.results:
            series[adoption.council.name] = [
                (f"Return {p}", adoption.results[p]) for p in periods if p in adoption.results
            ]
    return pages.render(
        request,
        "staff/lineage.html",
        **_round_page(
            round_,
            prospectus,
            "implementation",
            report=report,
            adoptions=[
                {
                    "adoption": a,
                    "started": local_time(a.started_at, prospectus),
                    "submitted": local_time(a.submitted_at, prospectus) if a.submitted_at else "",
                    "state": APP_STATES.get(a.application.state, a.application.state),
                }
                for a in report.adoptions
            ],
            chart=line_chart(report.measure, series) if report.measure and periods else None,
        ),
    )


@router.post("/rounds/{slug}/implementation/publish/{application_id}")
def publish_model(
    slug: str, application_id: int, desk: DeskDep, nonce: ShortField = ""
) -> Response:
    round_ = _round(desk.session, slug)
    application = _application(desk.session, round_, application_id)
    if application.state != AppState.COMPLETED:
        return desk.refuse(
            "publish-model",
            "a place is published as a model once it has completed, and only once",
            f"/staff/rounds/{slug}/implementation",
        )
    return desk.start(
        "publish-model",
        {"reference": application.reference},
        round_=round_,
        nonce=nonce,
        back=f"/staff/rounds/{slug}/implementation",
    )
