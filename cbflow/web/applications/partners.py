"""Partners and contributions: the public services of the place and what each puts into the
pooled budget per year, on a page of the stage the prospectus asks for them at. Officers of
every council of the application add, change and remove partners and send each partner's
contact a single-use link to confirm or decline (the public page is cbflow.web.partner); the
page totals what is confirmed. Every form works without JavaScript; a change made from a page
showing an older version of a contribution is refused, naming who changed it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import RedirectResponse, Response
from sqlmodel import Session

from cbflow.errors import CbflowError, NotFound, ValidationFailed
from cbflow.formatting import money, pence_to_money
from cbflow.models import Application, PartnerContribution, Round
from cbflow.prospectus import Partners, Prospectus, partner_type_name
from cbflow.services import contributions, partnerships, rounds
from cbflow.services.applications import STAGE_NAMES, has_stage
from cbflow.services.contributions import CONFIRMED, DECLINED
from cbflow.web.applications.shared import Applicant, Context, own_application
from cbflow.web.deps import (
    ClockDep,
    FormDep,
    PagesDep,
    SessionDep,
    SettingsDep,
    ShortField,
    mail_after,
)
from cbflow.web.templating import Pages, errors_as_list, path_for
from cbflow.wording import opening

router = APIRouter(prefix="/applications")

NOTICE = "partners_notice"  # what the last change did, for the next page to say once
FIELDS = ("organisation", "partner_type", "contact_name", "contact_email")


@dataclass(frozen=True)
class PartnerRow:
    id: int
    version: int
    organisation: str
    type_name: str
    contact_name: str
    contact_email: str
    amounts: tuple[str, ...]  # each year's, in the order of the years
    total: str
    status: str  # Confirmed by ..., Declined: reason, Waiting for <contact>
    tag: str  # the status tag's colour class
    asked: bool  # a request has been sent
    confirmed: bool  # nothing left to ask


@dataclass(frozen=True)
class PartnersPage:
    application: Application
    round: Round
    place: str
    stage_name: str
    years: tuple[str, ...]
    rows: tuple[PartnerRow, ...]
    confirmed_per_year: tuple[str, ...]  # in the order of the years
    confirmed_total: str
    rules: tuple[str, ...]  # what the round asks of the partners, in words
    problems: tuple[str, ...]  # what about the partners still stops the submission
    can_change: bool
    closed_reason: str | None  # why the partners can no longer change
    editing: PartnerRow | None  # the partner the form below changes (None: it adds one)
    values: dict[str, str]  # the form's fields, as typed or as stored
    type_items: tuple[dict[str, Any], ...]
    amount_fields: tuple[tuple[str, str], ...]  # (year, field name)
    errors: dict[str, str]
    error_list: list[dict[str, str]]
    problem: str | None
    notice: str | None
    back: str


def _partners_or_404(session: Session, application: Application) -> tuple[Round, Prospectus]:
    round_ = session.get(Round, application.round_id)
    assert round_ is not None
    prospectus = rounds.prospectus_of(round_)
    partners = prospectus.partners
    if partners is None or not has_stage(application, partners.stage):
        raise HTTPException(status_code=404)
    return round_, prospectus


def _row(row: PartnerContribution, years: tuple[str, ...]) -> PartnerRow:
    assert row.id is not None
    tag = {CONFIRMED: "govuk-tag--green", DECLINED: "govuk-tag--red"}.get(
        row.status, "govuk-tag--yellow"
    )
    return PartnerRow(
        id=row.id,
        version=row.version,
        organisation=row.organisation,
        type_name=partner_type_name(row.partner_type),
        contact_name=row.contact_name,
        contact_email=row.contact_email,
        amounts=tuple(money(contributions.pence_of(row, y)) for y in years),
        total=money(contributions.total_pence(row)),
        status=contributions.status_text(row),
        tag=tag,
        asked=row.asked_at is not None,
        confirmed=row.status == CONFIRMED,
    )


def _rules(partners: Partners) -> tuple[str, ...]:
    rules = []
    if partners.min_partners:
        rules.append(f"Name at least {partners.min_partners} partner organisations.")
    if partners.require_confirmed:
        rules.append(
            "Every partner must confirm its contribution before you can submit: send each one "
            "its request."
        )
    return tuple(rules)


def _stored_values(row: PartnerContribution, partners: Partners) -> dict[str, str]:
    values = {
        "organisation": row.organisation,
        "partner_type": row.partner_type,
        "contact_name": row.contact_name,
        "contact_email": row.contact_email,
    }
    for year in partners.years:
        pence = contributions.pence_of(row, year)
        values[contributions.amount_field(year)] = str(pence_to_money(pence)) if pence else ""
    return values


def _render(
    request: Request,
    pages: Pages,
    session: Session,
    application: Application,
    now: datetime,
    *,
    editing_id: int | None = None,
    typed: dict[str, str] | None = None,
    errors: dict[str, str] | None = None,
    problem: str | None = None,
    status_code: int = 200,
) -> Response:
    round_, prospectus = _partners_or_404(session, application)
    partners = prospectus.partners
    assert partners is not None
    years = tuple(partners.years)
    stored = contributions.contributions_of(session, application)
    rows = tuple(_row(r, years) for r in stored)
    closed_reason = contributions.changeable(application, prospectus, now)
    editing = next((r for r in rows if r.id == editing_id), None)
    values: dict[str, str] = {}
    if typed is not None:
        values = typed
    elif editing is not None:
        values = _stored_values(next(r for r in stored if r.id == editing.id), partners)
    blank = dict.fromkeys([*FIELDS, *(contributions.amount_field(y) for y in years)], "")
    values = blank | values
    totals = contributions.totals(stored, years)
    errors = errors or {}
    chosen = values.get("partner_type", "")
    type_items: tuple[dict[str, Any], ...] = (
        {"value": "", "text": "Choose the type of partner"},
        *(
            {"value": t, "text": partner_type_name(t), "selected": t == chosen}
            for t in partners.types
        ),
    )
    page = PartnersPage(
        application=application,
        round=round_,
        place=partnerships.place_of(session, application).name,
        stage_name=STAGE_NAMES[partners.stage],
        years=years,
        rows=rows,
        confirmed_per_year=tuple(money(totals.per_year[y]) for y in years),
        confirmed_total=money(totals.overall),
        rules=_rules(partners),
        problems=tuple(
            opening(p)
            for p in contributions.submission_problems(session, application, partners.stage)
        ),
        can_change=closed_reason is None,
        closed_reason=closed_reason,
        editing=editing,
        values=values,
        type_items=type_items,
        amount_fields=tuple((y, contributions.amount_field(y)) for y in years),
        errors=errors,
        error_list=errors_as_list(errors),
        problem=problem,
        notice=request.session.pop(NOTICE, None),
        back=path_for(request, "task_list", application_id=application.id, stage=partners.stage),
    )
    return pages.show(request, "application/partners.html", page, status_code)


def _again(request: Request, application: Application, notice: str) -> Response:
    request.session[NOTICE] = notice
    address = path_for(request, "partners_page", application_id=application.id)
    return RedirectResponse(address, status_code=303)


def _typed(form: Any, partners: Partners) -> dict[str, str]:
    """The form's fields as typed (each cut to a length no check needs to see past)."""
    names = [*FIELDS, *(contributions.amount_field(y) for y in partners.years)]
    typed = {}
    for name in names:
        value = form.get(name, "")
        typed[name] = value[:2000] if isinstance(value, str) else ""
    return typed


def _version(text: str) -> int:
    if not text.isdigit() or len(text) > 9:
        raise HTTPException(status_code=400)
    return int(text)


def partners_task(session: Session, ctx: Context) -> dict[str, Any] | None:
    """The task list's row for the partners' page, at the stage the prospectus asks for them."""
    partners = ctx.prospectus.partners
    if partners is None or ctx.stage != partners.stage:
        return None
    rows = contributions.contributions_of(session, ctx.application)
    problems = contributions.submission_problems(session, ctx.application, ctx.stage)
    if not rows and not problems:
        status: dict[str, Any] = {"text": "Optional"}
    elif not rows:
        status = {"tag": {"text": "Not started", "classes": "govuk-tag--blue"}}
    elif problems:
        status = {"tag": {"text": "In progress", "classes": "govuk-tag--light-blue"}}
    else:
        status = {"text": "Completed"}
    confirmed = sum(1 for r in rows if r.status == CONFIRMED)
    task: dict[str, Any] = {
        "title": {"text": "Partners and contributions"},
        "href": path_for(ctx.request, "partners_page", application_id=ctx.application.id),
        "status": status,
    }
    if rows:
        task["hint"] = {"text": f"{confirmed} of {len(rows)} partners confirmed"}
    return task


@router.get("/{application_id}/partners")
def partners_page(
    request: Request,
    application_id: int,
    user: Applicant,
    session: SessionDep,
    pages: PagesDep,
    clock: ClockDep,
    change: int | None = None,
) -> Response:
    application = own_application(session, user, application_id)
    return _render(request, pages, session, application, clock(), editing_id=change)


@router.post("/{application_id}/partners")
def add_partner(
    request: Request,
    application_id: int,
    user: Applicant,
    session: SessionDep,
    pages: PagesDep,
    clock: ClockDep,
    form: FormDep,
) -> Response:
    application = own_application(session, user, application_id)
    _, prospectus = _partners_or_404(session, application)
    assert prospectus.partners is not None
    typed = _typed(form, prospectus.partners)
    now = clock()
    try:
        entry = contributions.check_entry(prospectus.partners, typed)
        row = contributions.add(
            session, application=application, entry=entry, actor=user.email, now=now
        )
    except ValidationFailed as failed:
        return _render(
            request,
            pages,
            session,
            application,
            now,
            typed=typed,
            errors=failed.errors,
            status_code=400,
        )
    except CbflowError as exc:
        return _render(request, pages, session, application, now, problem=str(exc), status_code=409)
    return _again(
        request,
        application,
        f"{row.organisation} is added. Send its request so that {row.contact_name} can "
        "confirm the amounts.",
    )


@router.post("/{application_id}/partners/{contribution_id}")
def change_partner(
    request: Request,
    application_id: int,
    contribution_id: int,
    user: Applicant,
    session: SessionDep,
    pages: PagesDep,
    clock: ClockDep,
    form: FormDep,
) -> Response:
    application = own_application(session, user, application_id)
    _, prospectus = _partners_or_404(session, application)
    assert prospectus.partners is not None
    typed = _typed(form, prospectus.partners)
    version = _version(str(form.get("version", ""))[:20])
    now = clock()
    try:
        entry = contributions.check_entry(prospectus.partners, typed)
        row = contributions.change(
            session,
            application=application,
            contribution_id=contribution_id,
            version=version,
            entry=entry,
            actor=user.email,
            now=now,
        )
    except ValidationFailed as failed:
        return _render(
            request,
            pages,
            session,
            application,
            now,
            editing_id=contribution_id,
            typed=typed,
            errors=failed.errors,
            status_code=400,
        )
    except NotFound:
        raise HTTPException(status_code=404) from None
    except CbflowError as exc:
        return _render(
            request,
            pages,
            session,
            application,
            now,
            editing_id=contribution_id,
            typed=typed,
            problem=str(exc),
            status_code=409,
        )
    said = f"{row.organisation}’s contribution is changed."
    if row.asked_at is None:
        said += f" Send its request so that {row.contact_name} can confirm the amounts."
    return _again(request, application, said)


@router.post("/{application_id}/partners/{contribution_id}/remove")
def remove_partner(
    request: Request,
    application_id: int,
    contribution_id: int,
    user: Applicant,
    session: SessionDep,
    pages: PagesDep,
    clock: ClockDep,
    version: ShortField = "",
) -> Response:
    application = own_application(session, user, application_id)
    _partners_or_404(session, application)
    now = clock()
    try:
        organisation = contributions.remove(
            session,
            application=application,
            contribution_id=contribution_id,
            version=_version(version),
            actor=user.email,
            now=now,
        )
    except NotFound:
        raise HTTPException(status_code=404) from None
    except CbflowError as exc:
        return _render(request, pages, session, application, now, problem=str(exc), status_code=409)
    return _again(request, application, f"{organisation} is taken out.")


@router.post("/{application_id}/partners/{contribution_id}/send")
def send_partner_request(
    request: Request,
    application_id: int,
    contribution_id: int,
    user: Applicant,
    session: SessionDep,
    pages: PagesDep,
    clock: ClockDep,
    settings: SettingsDep,
    version: ShortField = "",
) -> Response:
    application = own_application(session, user, application_id)
    _partners_or_404(session, application)
    now = clock()
    try:
        row, message = contributions.send_request(
            session,
            application=application,
            contribution_id=contribution_id,
            version=_version(version),
            place=partnerships.place_of(session, application).name,
            actor=user.email,
            now=now,
            settings=settings,
            base_url=settings.resolved_portal_base_url,
        )
    except NotFound:
        raise HTTPException(status_code=404) from None
    except CbflowError as exc:
        return _render(request, pages, session, application, now, problem=str(exc), status_code=409)
    said = f"The request is sent to {row.contact_name} at {row.contact_email}."
    return mail_after(_again(request, application, said), message, settings)
