"""What every page of the staff workspace shares: the round and application they are about (or
404), the flow run an action starts (`Desk`), and the stage pages' common context."""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Any, NamedTuple, TypedDict

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import RedirectResponse, Response
from sqlmodel import Session, col, select

from cbflow import flowruns
from cbflow.errors import NotFound
from cbflow.flowlist import PORTAL, FlowSpec
from cbflow.flowruns import FlowsUnavailable, RunView
from cbflow.models import (
    Application,
    Council,
    Round,
    StartedRun,
    User,
)
from cbflow.prospectus import Prospectus
from cbflow.services import (
    rounds,
)
from cbflow.settings import Settings
from cbflow.web.auth import require_role
from cbflow.web.deps import (
    ClockDep,
    PagesDep,
    SessionDep,
    SettingsDep,
)
from cbflow.web.pages import ROUND_STATES
from cbflow.web.templating import path_for

Staff = Annotated[User, require_role("staff", "admin")]


def stage_router() -> APIRouter:
    """A stage module's router: its addresses under /staff, for staff and administrators only
    (checked before anything else the route depends on)."""
    return APIRouter(prefix="/staff", dependencies=[require_role("staff", "admin")])


# the round's stage pages, in its navigation: (route name, title, key)
STAGE_PAGES = [
    ("round_page", "Overview", ""),
    ("deadlines_page", "Deadlines", "deadlines"),
    ("applications_page", "Applications", "applications"),
    ("sift_page", "Sift and shortlist", "sift"),
    ("assessment_page", "Assessment", "assessment"),
    ("selection_page", "Selection", "selection"),
    ("implementation_page", "Implementation", "implementation"),
    ("support_page", "Support", "support"),
    ("adoptions_page", "Adoptions", "adoptions"),
    ("followers_page", "Followers", "followers"),
]


def round_or_404(session: Session, slug: str) -> Round:
    try:
        return rounds.get_round(session, slug)
    except NotFound:
        raise HTTPException(status_code=404) from None


def application_or_404(session: Session, round_: Round, application_id: int) -> Application:
    application = session.get(Application, application_id)
    if application is None or application.round_id != round_.id:
        raise HTTPException(status_code=404)
    return application


@dataclass(frozen=True)
class RunRow:
    """A run staff started, with its state when Prefect answered, and its page in Prefect's UI."""

    run: StartedRun
    view: RunView | None
    url: str


def started_runs(session: Session, settings: Settings, round_: Round) -> list[RunRow]:
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
        RunRow(s, views.get(s.flow_run_id), flowruns.run_url(settings, s.flow_run_id))
        for s in started
    ]


def runs_of(runs: Sequence[RunRow], *flows: FlowSpec) -> list[RunRow]:
    names = {flow.name for flow in flows}
    return [r for r in runs if r.run.flow in names]


def new_nonce() -> str:
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
        flow: FlowSpec,
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
        deployment, title = flow.deployment or PORTAL, flow.title
        slug = round_.slug if round_ is not None else slug
        email = self.user.email
        try:
            run_id = flowruns.start(
                self.settings,
                flow.name,
                {**parameters, "now": self.now, "actor": email},
                name=f"{slug} · {title.lower()} · started by {email}",
                tags=[slug] if slug else [],
                deployment=deployment,
                idempotency_key=f"portal:{flow.name}:{nonce}" if nonce else None,
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
                    flow=flow.name,
                    title=title,
                    round_id=round_.id if round_ is not None else None,
                    started_by=email,
                    started_at=self.now,
                )
            )
        return RedirectResponse(path_for(self.request, "run_page", run_id=run_id), status_code=303)

    def refuse(self, flow: FlowSpec, problem: str, back: str) -> Response:
        """An action no longer possible (the page was old, or someone else did it first): say
        so; nothing is started."""
        return self._not_started(409, flow.title, problem, back)

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


class StageLink(NamedTuple):
    href: str
    name: str
    current: bool


class RoundHeader(TypedDict):
    """What every page of a round shows above its own content."""

    round: Round
    round_state: str
    stage_pages: list[StageLink]
    nonce: str


@dataclass(frozen=True, kw_only=True)
class RoundPage:
    """A page of a round: the round, its state in words, its stage pages (the one shown
    marked), and a nonce for the page's action forms. Each page adds its own fields."""

    round: Round
    round_state: str
    stage_pages: list[StageLink]
    nonce: str


def round_header(request: Request, round_: Round, prospectus: Prospectus, here: str) -> RoundHeader:
    """The fields of `RoundPage` for the round's page `here` (a key of STAGE_PAGES)."""
    return {
        "round": round_,
        "round_state": ROUND_STATES.get(round_.state, round_.state),
        "stage_pages": [
            StageLink(path_for(request, name, slug=round_.slug), title, key == here)
            for name, title, key in STAGE_PAGES
            if has_page(prospectus, key)
        ],
        "nonce": new_nonce(),
    }


def council_names(session: Session) -> dict[str, str]:
    """Council code -> name, for the pages that list applications by council."""
    return dict(session.exec(select(Council.code, Council.name)).all())


def has_page(prospectus: Prospectus, key: str) -> bool:
    if key == "assessment":
        return prospectus.stages.assessment is not None
    if key == "implementation":
        return prospectus.stages.implementation is not None
    if key == "support":
        return bool(prospectus.support)
    if key == "adoptions":  # the rolling adoption route's
        replication = prospectus.stages.replication
        return replication is not None and replication.route_window is not None
    if key == "followers":
        return prospectus.stages.replication is not None
    return True
