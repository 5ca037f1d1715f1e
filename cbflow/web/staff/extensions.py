"""Deadlines and extensions: when each stage closes, and more time for one council or for
everyone, with a reason. An extension is honoured everywhere at once (it is read wherever a
deadline is); the round's scheduled deadline runs are brought in line with it once it is saved.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import datetime, time
from typing import Annotated

from fastapi import Form, Request
from fastapi.responses import RedirectResponse, Response
from starlette.background import BackgroundTask

from cbflow import flowruns
from cbflow.errors import CbflowError
from cbflow.formatting import local_deadline, local_time
from cbflow.models import Application, Extension, Round
from cbflow.prospectus import Prospectus
from cbflow.services import deadlines, partnerships, rounds
from cbflow.settings import Settings
from cbflow.web.deps import (
    PagesDep,
    ReasonField,
    SessionDep,
    SettingsDep,
    ShortField,
    in_own_thread,
)
from cbflow.web.staff.shared import (
    DeskDep,
    RoundPage,
    Staff,
    application_or_404,
    round_header,
    round_or_404,
    stage_router,
)
from cbflow.web.templating import path_for
from cbflow.wording import opening

router = stage_router()
logger = logging.getLogger(__name__)
NOTICE = "deadlines_notice"
TIME = re.compile(r"^([01]?\d|2[0-3]):([0-5]\d)$")
KINDS = {
    deadlines.COUNCIL: "This council only",
    deadlines.EVERYONE: "Everyone, by hand",
    deadlines.DEGRADED: "Everyone: the portal was degraded before the deadline",
}
DayField = Annotated[str, Form(max_length=4)]


@dataclass(frozen=True)
class ExtensionRow:
    stage: str
    who: str
    closes: str
    kind: str
    reason: str
    granted: str
    evidence: str  # degraded minutes, for an automatic extension


@dataclass(frozen=True)
class StageRow:
    stage: str  # "eoi" | "bid"
    name: str
    planned: str  # as the prospectus says
    closes: str  # for everyone, as extended
    extended: bool
    open: bool  # the window has not closed for everyone: everyone may still be given more time


def _choice(value: str, text: str) -> dict[str, str]:
    """An option of the page's select, as GOV.UK Frontend's macro takes it."""
    return {"value": value, "text": text}


@dataclass(frozen=True, kw_only=True)
class DeadlinesPage(RoundPage):
    stages: tuple[StageRow, ...]
    extensions: tuple[ExtensionRow, ...]
    # who may be given more time: everyone, for a stage still open; each application still to
    # submit a stage's form
    choices: tuple[dict[str, str], ...]
    degraded_rule: str  # what the prospectus says about extending for a degraded portal
    errors: dict[str, str]
    form: dict[str, str]
    notice: str | None


def _stages(prospectus: Prospectus) -> list[deadlines.Stage]:
    return [s for s in deadlines.STAGES if s == "eoi" or prospectus.stages.bid is not None]


def _row(extension: Extension, places: dict[int, str], prospectus: Prospectus) -> ExtensionRow:
    evidence = ""
    if extension.kind == deadlines.DEGRADED:
        evidence = f"{extension.evidence.get('minutes_degraded', 0)} degraded minutes"
    return ExtensionRow(
        stage=opening(deadlines.STAGE_NAMES[extension.stage]),
        who=places.get(extension.application_id or 0, "Everyone"),
        closes=local_deadline(extension.closes_at, prospectus),
        kind=KINDS.get(extension.kind, extension.kind),
        reason=extension.reason,
        granted=f"{local_time(extension.granted_at, prospectus)} by {extension.granted_by}",
        evidence=evidence,
    )


def _page(
    request: Request,
    session: SessionDep,
    round_: Round,
    now: datetime,
    *,
    errors: dict[str, str] | None = None,
    form: dict[str, str] | None = None,
) -> DeadlinesPage:
    prospectus = rounds.prospectus_of(round_)
    extensions = deadlines.extensions_of(session, round_)
    places = {
        application_id: place.name
        for application_id, place in partnerships.places_where(
            session, Application.round_id == round_.id
        ).items()
    }
    stages = []
    everyone: list[dict[str, str]] = []
    drafts: list[dict[str, str]] = []
    for stage in _stages(prospectus):
        closes = deadlines.stage_closes(session, round_, stage)
        planned = deadlines.planned_close(prospectus, stage)
        stages.append(
            StageRow(
                stage=stage,
                name=opening(deadlines.STAGE_NAMES[stage]),
                planned=local_deadline(planned, prospectus),
                closes=local_deadline(closes, prospectus),
                extended=closes != planned,
                open=now < closes,
            )
        )
        if now < closes:
            everyone.append(
                _choice(f"everyone:{stage}", f"Everyone: {deadlines.STAGE_NAMES[stage]}")
            )
        drafts += [
            _choice(
                f"{stage}:{a.id}",
                f"{places.get(a.id or 0, a.reference)}: {deadlines.STAGE_NAMES[stage]}",
            )
            for a in deadlines.drafts_of(session, round_, stage)
        ]
    rule = prospectus.extend_if_degraded
    degraded_rule = (
        f"If the portal is degraded for {rule.minutes_degraded} minutes or more in the "
        f"{rule.within_hours} hours before a deadline, the deadline run extends it for everyone "
        f"by {rule.extend_by} instead of closing it (once per stage)."
        if rule
        else "The prospectus does not ask for deadlines to be extended when the portal is degraded."
    )
    return DeadlinesPage(
        **round_header(request, round_, prospectus, "deadlines"),
        stages=tuple(stages),
        extensions=tuple(_row(e, places, prospectus) for e in extensions),
        choices=(_choice("", "Choose"), *everyone, *drafts),
        degraded_rule=degraded_rule,
        errors=errors or {},
        form=form or {},
        notice=request.session.pop(NOTICE, None),
    )


@router.get("/rounds/{slug}/deadlines")
def deadlines_page(
    request: Request, slug: str, session: SessionDep, pages: PagesDep, desk: DeskDep
) -> Response:
    """When each stage closes, every extension given, and the forms to give more time."""
    round_ = round_or_404(session, slug)
    return pages.show(request, "staff/deadlines.html", _page(request, session, round_, desk.now))


def _new_deadline(
    prospectus: Prospectus, day: str, month: str, year: str, at: str
) -> tuple[datetime | None, dict[str, str]]:
    """The new deadline from the form's date and time, in the round's time zone."""
    try:
        when = datetime(int(year), int(month), int(day)).date()
    except ValueError:
        return None, {"closes": "Enter the new deadline as a real date, for example 11 1 2012"}
    found = TIME.match(at.strip() or "23:59")
    if found is None:
        return None, {"time": "Enter the time as hours and minutes, for example 17:00"}
    moment = datetime.combine(when, time(int(found.group(1)), int(found.group(2))))
    return moment.replace(tzinfo=prospectus.zone), {}


def _reschedule(settings: Settings, slug: str) -> None:
    """After the extension is saved: the round's deadline runs moved to match (logged when
    Prefect cannot be reached; the staff desk offers a missed deadline's run by hand)."""
    try:
        flowruns.reschedule(settings, slug)
    except CbflowError as exc:
        logger.warning("%s: the deadline runs were not rescheduled: %s", slug, exc)


@router.post("/rounds/{slug}/deadlines")
def extend_deadline(
    request: Request,
    slug: str,
    session: SessionDep,
    settings: SettingsDep,
    pages: PagesDep,
    desk: DeskDep,
    user: Staff,
    who: ShortField = "",
    day: DayField = "",
    month: DayField = "",
    year: DayField = "",
    at: ShortField = "",
    reason: ReasonField = "",
) -> Response:
    """Give one council (`who` "<stage>:<application id>") or everyone (`who` "everyone:<stage>")
    a new deadline for a stage, with a reason."""
    round_ = round_or_404(session, slug)
    prospectus = rounds.prospectus_of(round_)
    form = {"who": who, "day": day, "month": month, "year": year, "at": at, "reason": reason}
    closes, errors = _new_deadline(prospectus, day, month, year, at)
    kind, _, target = who.partition(":")
    if kind not in ("everyone", "eoi", "bid") or not target:
        errors["who"] = "Choose who to give more time"
    if not reason.strip():
        errors["reason"] = "Give the reason for the extension"
    try:
        if not errors and closes is not None:
            if kind == "everyone":
                if target not in _stages(prospectus):
                    raise CbflowError("choose a stage of this round")
                deadlines.extend_everyone(
                    session,
                    round_=round_,
                    stage=target,
                    closes=closes,
                    reason=reason,
                    actor=user.email,
                    now=desk.now,
                )
            else:
                if not target.isdigit() or len(target) > 12:
                    raise CbflowError("choose a council from the list")
                application = application_or_404(session, round_, int(target))
                deadlines.extend_application(
                    session,
                    application=application,
                    stage=kind,  # type: ignore[arg-type]
                    closes=closes,
                    reason=reason,
                    actor=user.email,
                    now=desk.now,
                )
    except CbflowError as exc:
        errors["closes"] = opening(str(exc))
    if errors:
        page = _page(request, session, round_, desk.now, errors=errors, form=form)
        return pages.show(request, "staff/deadlines.html", page, 400)
    assert closes is not None
    request.session[NOTICE] = (
        f"The new deadline, {local_deadline(closes, prospectus)}, is saved and applies at once. "
        "The round's deadline runs in Prefect are being moved to match."
    )
    answer = RedirectResponse(path_for(request, "deadlines_page", slug=slug), status_code=303)
    answer.background = BackgroundTask(in_own_thread, _reschedule, settings, slug)
    return answer
