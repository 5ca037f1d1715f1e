"""Launching a round, the runs staff started, and a round's overview: its timetable, its
scheduled deadline runs, its counts and its open data."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from fastapi import HTTPException, Request, UploadFile
from fastapi.responses import Response
from sqlmodel import Session, col, select

from cbflow import flowruns, opendata
from cbflow.flowlist import FLOWS, LAUNCH_ROUND, Trigger
from cbflow.flowruns import FlowsUnavailable, RunView
from cbflow.formatting import local_time, long_date
from cbflow.models import (
    Round,
    StartedRun,
)
from cbflow.prospectus import Prospectus
from cbflow.services import (
    deadlines,
    reminders,
    rounds,
)
from cbflow.stages import round_events
from cbflow.web.applications import APP_STATES
from cbflow.web.deps import (
    ClockDep,
    PagesDep,
    SessionDep,
    SettingsDep,
    ShortField,
)
from cbflow.web.pages import ROUND_STATES
from cbflow.web.staff.amendments import (
    UploadRefused,
    VersionRow,
    read_prospectus,
    version_rows,
)
from cbflow.web.staff.shared import (
    DeskDep,
    RoundPage,
    RunRow,
    Staff,
    new_nonce,
    round_header,
    round_or_404,
    stage_router,
    started_runs,
)
from cbflow.web.templating import path_for

router = stage_router()


@dataclass(frozen=True)
class ListedRound:
    round: Round
    state: str  # in words
    applications: int


@dataclass(frozen=True)
class RoundList:
    rounds: list[ListedRound]


@router.get("")
def staff_home(request: Request, session: SessionDep, pages: PagesDep, user: Staff) -> Response:
    listed = []
    for round_ in rounds.all_rounds(session):
        counts = rounds.state_counts(session, round_)
        listed.append(
            ListedRound(
                round=round_,
                state=ROUND_STATES.get(round_.state, round_.state),
                applications=sum(counts.values()),
            )
        )
    return pages.show(request, "staff/index.html", RoundList(rounds=listed))


@router.get("/launch")
def launch_page(request: Request, pages: PagesDep, user: Staff) -> Response:
    return pages.render(request, "staff/launch.html", errors={}, problems=[], nonce=new_nonce())


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
            nonce=new_nonce(),
        )

    try:
        name, source, parsed = read_prospectus(prospectus)
    except UploadRefused as refused:
        return refuse(refused.message, refused.problems)
    existing = desk.session.exec(select(Round).where(Round.slug == parsed.id)).first()
    if existing is not None:
        return refuse(
            f"A round with the id {parsed.id} has already been launched: give the new round "
            "its own id"
        )
    return desk.start(
        LAUNCH_ROUND,
        {
            "source": source,
            "path": name,
            "schedule": desk.settings.schedule_deadlines,
        },
        round_=None,
        nonce=nonce,
        back=path_for(desk.request, "launch_page"),
        slug=parsed.id,
    )


@dataclass(frozen=True)
class RunPage:
    started: StartedRun
    view: RunView | None  # None when Prefect did not answer
    problem: str  # what went wrong asking Prefect
    prefect_url: str  # the run's page in Prefect's UI
    round: Round | None  # the round it is about, once it exists


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
    return pages.show(
        request,
        "staff/run.html",
        RunPage(
            started=started,
            view=view,
            problem=problem,
            prefect_url=flowruns.run_url(settings, run_id),
            round=round_,
        ),
    )


# ---------------------------------------------------------------------------------------------
# a round's overview: timetable, scheduled runs, counts


def _timetable(session: Session, round_: Round, prospectus: Prospectus) -> list[tuple[str, str]]:
    """The round's dates, its windows' closes as extended for everyone."""
    zone, t = prospectus.zone, prospectus.timetable

    def closes(stage: deadlines.Stage) -> str:
        when = deadlines.stage_closes(session, round_, stage)
        extended = when != deadlines.planned_close(prospectus, stage)
        return local_time(when, prospectus) + (" (extended for everyone)" if extended else "")

    rows = [
        ("Expressions of interest open", local_time(t.eoi.opens_at(zone), prospectus)),
        ("Expressions of interest close", closes("eoi")),
    ]
    if t.bid and prospectus.stages.bid:
        rows += [
            ("Bids open", local_time(t.bid.opens_at(zone), prospectus)),
            ("Bids close", closes("bid")),
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
            ("Implementation starts", long_date(t.implementation.starts)),
            ("Implementation ends", long_date(t.implementation.ends)),
        ]
    return rows


@dataclass(frozen=True)
class DeadlineRow:
    number: int
    flow: str
    title: str
    when: str
    run: RunView | None  # its scheduled run, when Prefect answered
    actions: rounds.DeadlineActions


@dataclass(frozen=True)
class OpenData:
    kind: str
    title: str
    href: str
    why_not: str | None  # why it cannot be published yet (None when it can)


@dataclass(frozen=True, kw_only=True)
class RoundOverview(RoundPage):
    timetable: list[tuple[str, str]]
    events: list[DeadlineRow]
    problem: str  # why Prefect's scheduled runs are not shown, if it did not answer
    counts: list[tuple[str, int]]
    total: int
    started: list[RunRow]
    open_data: list[OpenData]
    reminders: list[reminders.SentSummary]
    versions: list[VersionRow]  # of the prospectus, the newest (in force) first


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
    round_ = round_or_404(session, slug)
    prospectus = rounds.prospectus_of(round_)
    now = clock()
    problem = ""
    try:
        scheduled = flowruns.round_runs(settings, slug)
    except FlowsUnavailable as exc:
        scheduled, problem = [], str(exc)
    events = []
    for number, (flow, when) in enumerate(round_events(session, round_)):
        runs = [
            r
            for r in scheduled
            if r.flow == flow.name
            and r.expected_start is not None
            and abs((r.expected_start - when).total_seconds()) < 1
        ]
        events.append(
            DeadlineRow(
                number=number,
                flow=flow.name,
                title=flow.title,
                when=local_time(when, prospectus),
                run=runs[0] if runs else None,
                # done when the round has moved on, or when its scheduled run has completed
                actions=rounds.deadline_actions(
                    round_,
                    flow.name,
                    due=when <= now,
                    run_completed=any(r.state_type == "COMPLETED" for r in runs),
                ),
            )
        )
    counts = rounds.state_counts(session, round_)
    return pages.show(
        request,
        "staff/round.html",
        RoundOverview(
            **round_header(request, round_, prospectus, ""),
            timetable=_timetable(session, round_, prospectus),
            events=events,
            problem=problem,
            counts=[(APP_STATES.get(s, s), n) for s, n in sorted(counts.items())],
            total=sum(counts.values()),
            started=started_runs(session, settings, round_)[:10],
            open_data=[
                OpenData(
                    kind=kind,
                    title=OPEN_DATA_TITLES[kind],
                    href=path_for(request, "open_data", slug=slug, kind=kind),
                    why_not=why_not,
                )
                for kind, why_not in opendata.unavailable(session, round_).items()
            ],
            reminders=reminders.summary(session, round_),
            versions=version_rows(request, session, round_, prospectus),
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
    round_ = round_or_404(session, slug)
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
    round_ = round_or_404(desk.session, slug)
    due = [flow.name for flow, when in round_events(desk.session, round_) if when <= desk.now]
    flow = FLOWS.get(event)
    if flow is None or flow.trigger is not Trigger.DEADLINE:
        raise HTTPException(status_code=404)
    back = path_for(desk.request, "round_page", slug=slug)
    if not rounds.deadline_actions(round_, event, due=event in due).can_run:
        return desk.refuse(
            flow, "this deadline has not passed yet, or its work is already done", back
        )
    return desk.start(flow, {"slug": slug}, round_=round_, nonce=nonce, back=back)
