"""Partners of a place and their contributions to its pooled budget.

Where the prospectus has `partners:`, the council names at that stage (EOI or bid) the public
services of its place (police, health, fire and rescue ...) and what each puts into the pooled
budget per financial year. Each partner's named contact is sent a single-use link, valid until
the stage's deadline, to confirm the amounts (giving their name) or decline them (giving a
reason). Only the link's token's sha256 is stored; opening the link only shows the amounts, and
only the answer spends it, so a mail scanner that opens links uses up nothing.

Changing a contribution's amounts or contact after it was asked sets it back to awaiting: the
old link no longer works and the council sends a new request. Every change is audited.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import update
from sqlmodel import Session, col, select

from cbflow import notify
from cbflow.db import lock_for_update
from cbflow.errors import CbflowError, DeadlinePassed, NotFound, ValidationFailed
from cbflow.formatting import local_deadline, money
from cbflow.forms import email_error, money_to_pence, parse_money
from cbflow.lifecycle import AppState
from cbflow.models import Application, AuditEvent, PartnerContribution, Round
from cbflow.prospectus import Partners, Prospectus, partner_type_name
from cbflow.services.audit import record
from cbflow.services.rounds import prospectus_of
from cbflow.settings import Settings
from cbflow.wording import and_list, plural

Stage = Literal["eoi", "bid"]

AWAITING, CONFIRMED, DECLINED = "awaiting", "confirmed", "declined"
NAME_MAX = 200  # characters of an organisation's or a person's name
REASON_MAX = 1000  # characters of a reason for declining
TOKEN_MAX = 100  # characters of a link's token (one minted is 43)
AMOUNT_MAX_PENCE = 10_000_000_000 * 100  # £10bn a year from one partner
ENTITY = "partner-contribution"


class ContributionChanged(CbflowError):
    """A change made from a page that showed an older version: someone else changed the
    contribution since. Nothing was changed."""


class LinkUnusable(CbflowError):
    """A partner's link that is unknown, used or expired. Nothing was changed."""


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def request_url(base_url: str, token: str) -> str:
    """The address of a partner's single-use link on the portal at `base_url`."""
    return f"{base_url}/partner/{token}"


def _settings(session: Session, application: Application) -> tuple[Round, Prospectus, Partners]:
    round_ = session.get(Round, application.round_id)
    assert round_ is not None
    prospectus = prospectus_of(round_)
    if prospectus.partners is None:
        raise NotFound(f"round {round_.slug} asks for no partners' contributions")
    return round_, prospectus, prospectus.partners


def deadline_of(prospectus: Prospectus, stage: Stage) -> datetime:
    window = prospectus.timetable.eoi if stage == "eoi" else prospectus.timetable.bid
    assert window is not None  # the prospectus has the stage it asks the partners at
    return window.closes_at(prospectus.zone)


def draft_of_stage(application: Application, stage: Stage) -> bool:
    """Whether the stage's form is still a draft (the window aside)."""
    state = AppState(application.state)
    if stage == "eoi":
        return state == AppState.EOI_DRAFT
    return state in (AppState.INVITED, AppState.BID_DRAFT)


def changeable(application: Application, prospectus: Prospectus, now: datetime) -> str | None:
    """Why the partners cannot change now (None: they can): only while the stage's form is a
    draft and before its deadline."""
    partners = prospectus.partners
    assert partners is not None
    stage = partners.stage
    what = "expression of interest" if stage == "eoi" else "bid"
    if not draft_of_stage(application, stage):
        return f"the partners can change only while the {what} is a draft"
    closes = deadline_of(prospectus, stage)
    if now >= closes:
        return (
            f"the {what} deadline passed at {local_deadline(closes, prospectus)}: "
            "the partners can no longer change"
        )
    return None


def _refuse_unless_changeable(
    application: Application, prospectus: Prospectus, now: datetime
) -> None:
    problem = changeable(application, prospectus, now)
    if problem is None:
        return
    assert prospectus.partners is not None
    if draft_of_stage(application, prospectus.partners.stage):
        raise DeadlinePassed(problem)  # a draft still: what stops it is the deadline
    raise CbflowError(problem)


# ---------------------------------------------------------------------------------------------
# what the council types


@dataclass(frozen=True)
class Entry:
    """A contribution as the council typed it, checked: amounts in whole pence per year."""

    organisation: str
    partner_type: str
    contact_name: str
    contact_email: str
    amounts: dict[str, int]


def _one_line(text: str) -> str:
    return " ".join(text.split())


def amount_field(year: str) -> str:
    """The form field of one year's amount."""
    return f"amount-{year}"


def check_entry(partners: Partners, typed: Mapping[str, str]) -> Entry:
    """The contribution as typed, checked field by field (ValidationFailed naming each field
    wrong: organisation, partner_type, contact_name, contact_email, amount-<year>)."""
    errors: dict[str, str] = {}
    organisation = _one_line(typed.get("organisation", "")[: NAME_MAX * 4])
    if not organisation:
        errors["organisation"] = "Enter the partner organisation’s name"
    elif len(organisation) > NAME_MAX:
        errors["organisation"] = f"The name must be {NAME_MAX} characters or fewer"
    partner_type = typed.get("partner_type", "").strip()
    if partner_type not in partners.types:
        errors["partner_type"] = "Choose the type of partner"
    contact_name = _one_line(typed.get("contact_name", "")[: NAME_MAX * 4])
    if not contact_name:
        errors["contact_name"] = "Enter the name of the partner’s contact"
    elif len(contact_name) > NAME_MAX:
        errors["contact_name"] = f"The name must be {NAME_MAX} characters or fewer"
    contact_email = typed.get("contact_email", "").strip()
    if not contact_email:
        errors["contact_email"] = "Enter the contact’s email address"
    elif problem := email_error(contact_email):
        errors["contact_email"] = problem
    amounts: dict[str, int] = {}
    for year in partners.years:
        field = amount_field(year)
        raw = typed.get(field, "").strip()
        if not raw:
            amounts[year] = 0
            continue
        try:
            amount = parse_money(raw)
        except ValueError as exc:
            errors[field] = f"{year}: {str(exc).capitalize()}"
            continue
        if amount < 0:
            errors[field] = f"{year}: the amount cannot be less than nothing"
        elif money_to_pence(amount) > AMOUNT_MAX_PENCE:
            errors[field] = f"{year}: the amount must be £10bn or less"
        else:
            amounts[year] = money_to_pence(amount)
    if not errors and not any(amounts.values()):
        errors[amount_field(partners.years[0])] = (
            "Enter what the partner puts in, in at least one year"
        )
    if errors:
        raise ValidationFailed(errors)
    return Entry(organisation, partner_type, contact_name, contact_email.lower(), amounts)


# ---------------------------------------------------------------------------------------------
# reading


def contributions_of(session: Session, application: Application) -> list[PartnerContribution]:
    """The application's contributions in the order they were added."""
    return list(
        session.exec(
            select(PartnerContribution)
            .where(PartnerContribution.application_id == application.id)
            .order_by(col(PartnerContribution.id))
        ).all()
    )


def get(session: Session, application: Application, contribution_id: int) -> PartnerContribution:
    row = session.get(PartnerContribution, contribution_id)
    if row is None or row.application_id != application.id:
        raise NotFound(f"no partner contribution {contribution_id} in {application.reference}")
    return row


def pence_of(row: PartnerContribution, year: str) -> int:
    value = row.amounts.get(year, 0)
    return value if isinstance(value, int) else 0


def total_pence(row: PartnerContribution) -> int:
    return sum(pence_of(row, year) for year in row.amounts)


@dataclass(frozen=True)
class Totals:
    """The confirmed contributions: per financial year and over all of them, in whole pence."""

    per_year: dict[str, int]
    overall: int


def totals(rows: Sequence[PartnerContribution], years: Sequence[str]) -> Totals:
    confirmed = [r for r in rows if r.status == CONFIRMED]
    per_year = {year: sum(pence_of(r, year) for r in confirmed) for year in years}
    return Totals(per_year, sum(total_pence(r) for r in confirmed))


def confirmed_total_pence(session: Session, application: Application) -> int:
    """The partners' confirmed contributions to the pooled budget, over all years."""
    return sum(
        total_pence(r) for r in contributions_of(session, application) if r.status == CONFIRMED
    )


def last_changed_by(session: Session, row: PartnerContribution) -> str:
    """Who made the contribution's latest change, as the audit has it."""
    assert row.id is not None
    actor = session.exec(
        select(AuditEvent.actor)
        .where(AuditEvent.entity == ENTITY, AuditEvent.entity_id == row.id)
        .order_by(col(AuditEvent.id).desc())
    ).first()
    return actor or row.created_by


def status_text(row: PartnerContribution) -> str:
    """The contribution's standing as the council's page says it."""
    if row.status == CONFIRMED:
        return f"Confirmed by {row.responded_by}" if row.responded_by else "Confirmed"
    if row.status == DECLINED:
        return f"Declined: {row.decline_reason}" if row.decline_reason else "Declined"
    if row.asked_at is None:
        return f"Not yet sent to {row.contact_name}"
    return f"Waiting for {row.contact_name}"


def submission_problems(session: Session, application: Application, stage: Stage) -> list[str]:
    """What about the partners stops the stage's form being submitted: too few partners; where
    every contribution must be confirmed, any still awaiting or declined. Empty when nothing
    does (or the round asks for no partners at this stage)."""
    round_ = session.get(Round, application.round_id)
    assert round_ is not None
    partners = prospectus_of(round_).partners
    if partners is None or partners.stage != stage:
        return []
    rows = contributions_of(session, application)
    problems = []
    if len(rows) < partners.min_partners:
        problems.append(
            f"this round needs at least {plural(partners.min_partners, 'partner')} "
            f"contributing to the pooled budget; you have named {len(rows)}"
        )
    if partners.require_confirmed:
        waiting = [r.organisation for r in rows if r.status == AWAITING]
        declined = [r.organisation for r in rows if r.status == DECLINED]
        if waiting:
            problems.append(
                f"{and_list(waiting)} {'has' if len(waiting) == 1 else 'have'} still to "
                "confirm their contribution to the pooled budget"
            )
        if declined:
            problems.append(
                f"{and_list(declined)} declined their contribution: change it and ask again, "
                "or remove it"
            )
    return problems


# ---------------------------------------------------------------------------------------------
# the council's changes


def _audit(
    session: Session, row: PartnerContribution, action: str, actor: str, now: datetime, reason: str
) -> None:
    assert row.id is not None
    record(
        session, entity=ENTITY, entity_id=row.id, action=action, actor=actor, now=now, reason=reason
    )


def add(
    session: Session, *, application: Application, entry: Entry, actor: str, now: datetime
) -> PartnerContribution:
    """Name a partner and its contribution, awaiting its request. Persists it and its audit
    event. Refused once the stage's form is no longer a draft or its deadline has passed."""
    _, prospectus, _ = _settings(session, application)
    _refuse_unless_changeable(application, prospectus, now)
    assert application.id is not None
    row = PartnerContribution(
        application_id=application.id,
        organisation=entry.organisation,
        partner_type=entry.partner_type,
        contact_name=entry.contact_name,
        contact_email=entry.contact_email,
        amounts=dict(entry.amounts),
        status=AWAITING,
        version=1,
        created_at=now,
        created_by=actor,
    )
    session.add(row)
    session.flush()
    _audit(session, row, "add", actor, now, f"{entry.organisation} named as a partner")
    session.flush()
    return row


def _check_version(session: Session, row: PartnerContribution, version: int) -> None:
    if row.version != version:
        who = last_changed_by(session, row)
        raise ContributionChanged(
            f"{who} changed {row.organisation}’s contribution while you were on this page, so "
            "your change was not saved. Check it as it is now and make your change again."
        )


def change(
    session: Session,
    *,
    application: Application,
    contribution_id: int,
    version: int,
    entry: Entry,
    actor: str,
    now: datetime,
) -> PartnerContribution:
    """Change a contribution as the page showing `version` of it had it. A stale change is
    refused (ContributionChanged, naming who changed it). Changing the amounts or the contact
    sets it back to awaiting: the link sent before no longer works, and a new request is
    needed. Persists the change and its audit event."""
    _, prospectus, _ = _settings(session, application)
    _refuse_unless_changeable(application, prospectus, now)
    row = get(session, application, contribution_id)
    lock_for_update(session, row)
    _check_version(session, row, version)
    asked_again = (
        row.amounts != entry.amounts
        or row.contact_email != entry.contact_email
        or row.contact_name != entry.contact_name
    )
    row.organisation, row.partner_type = entry.organisation, entry.partner_type
    row.contact_name, row.contact_email = entry.contact_name, entry.contact_email
    row.amounts = dict(entry.amounts)
    reason = f"{row.organisation}’s contribution changed"
    if asked_again and (row.status != AWAITING or row.asked_at is not None):
        row.status, row.decline_reason = AWAITING, None
        row.token_hash, row.token_expires_at, row.asked_at = None, None, None
        row.responded_at, row.responded_by = None, None
        reason += ": it must be confirmed again, and the link sent before no longer works"
    row.version += 1
    session.add(row)
    _audit(session, row, "change", actor, now, reason)
    session.flush()
    return row


def remove(
    session: Session,
    *,
    application: Application,
    contribution_id: int,
    version: int,
    actor: str,
    now: datetime,
) -> str:
    """Take a partner out (its link stops working with it). Returns its organisation. Persists
    the removal and its audit event."""
    _, prospectus, _ = _settings(session, application)
    _refuse_unless_changeable(application, prospectus, now)
    row = get(session, application, contribution_id)
    lock_for_update(session, row)
    _check_version(session, row, version)
    _audit(session, row, "remove", actor, now, f"{row.organisation} taken out of the partners")
    session.delete(row)
    session.flush()
    return row.organisation


def send_request(
    session: Session,
    *,
    application: Application,
    contribution_id: int,
    version: int,
    place: str,
    actor: str,
    now: datetime,
    settings: Settings,
    base_url: str,
) -> tuple[PartnerContribution, notify.Message | None]:
    """Send (or send again) the contact a single-use link to confirm or decline the
    contribution, valid until the stage's deadline. A link sent before stops working. A
    declined contribution asked again awaits the answer. Refused for one already confirmed.
    Persists the link's hash and the audit event, and the mail in the outbox without SMTP
    (with SMTP, returns the message to deliver once the transaction has committed)."""
    _, prospectus, partners = _settings(session, application)
    _refuse_unless_changeable(application, prospectus, now)
    row = get(session, application, contribution_id)
    lock_for_update(session, row)
    _check_version(session, row, version)
    if row.status == CONFIRMED:
        raise CbflowError(f"{row.organisation} has already confirmed its contribution")
    token = secrets.token_urlsafe(32)
    expires = deadline_of(prospectus, partners.stage)
    again = row.asked_at is not None
    row.token_hash, row.token_expires_at, row.asked_at = _hash(token), expires, now
    row.status, row.decline_reason = AWAITING, None
    row.responded_at, row.responded_by = None, None
    row.version += 1
    session.add(row)
    _audit(
        session,
        row,
        "resend-request" if again else "send-request",
        actor,
        now,
        f"{row.organisation} asked to confirm, by {row.contact_email}",
    )
    message = notify.compose(
        settings.templates_dir,
        "partner-request",
        to=row.contact_email,
        name=row.contact_name,
        organisation=row.organisation,
        place=place,
        round_title=prospectus.title,
        amounts=[(year, money(pence_of(row, year))) for year in partners.years],
        total=money(total_pence(row)),
        link=request_url(base_url, token),
        until=local_deadline(expires, prospectus),
    )
    session.flush()
    return row, notify.send_after_commit(message, settings=settings, session=session, now=now)


# ---------------------------------------------------------------------------------------------
# the partner's answer


def by_link(session: Session, token: str, now: datetime) -> PartnerContribution | None:
    """The contribution a link asks about, while the link can still be used."""
    if not token or len(token) > TOKEN_MAX:
        return None
    row = session.exec(
        select(PartnerContribution).where(PartnerContribution.token_hash == _hash(token))
    ).first()
    if row is None or row.token_expires_at is None or now >= row.token_expires_at:
        return None
    return row


def check_answer(confirm: bool, name: str, reason: str) -> tuple[str, str | None]:
    """The partner's name and reason, checked (ValidationFailed naming the field)."""
    name = _one_line(name[: NAME_MAX * 4])
    reason = " ".join(reason[: REASON_MAX * 4].split())
    if confirm:
        if not name:
            raise ValidationFailed({"name": "Enter your name to confirm"})
        if len(name) > NAME_MAX:
            raise ValidationFailed({"name": f"Your name must be {NAME_MAX} characters or fewer"})
        return name, None
    if not reason:
        raise ValidationFailed({"reason": "Say why you are declining"})
    if len(reason) > REASON_MAX:
        raise ValidationFailed({"reason": f"The reason must be {REASON_MAX} characters or fewer"})
    return name[:NAME_MAX], reason


def respond(
    session: Session, *, token: str, confirm: bool, name: str, reason: str, now: datetime
) -> PartnerContribution:
    """The partner's contact confirms (giving their name) or declines (giving a reason) through
    the link. It works once, before it expires: spent with one conditional UPDATE, so two
    answers at once count once (LinkUnusable for the other, or for an unknown, used or
    expired link). Persists the answer and its audit event."""
    if not token or len(token) > TOKEN_MAX:
        raise LinkUnusable("this link has been used or has expired")
    name, why = check_answer(confirm, name, reason)
    digest = _hash(token)
    values: dict[str, Any] = {
        "token_hash": None,
        "status": CONFIRMED if confirm else DECLINED,
        "decline_reason": why,
        "responded_at": now,
        "responded_by": name or None,
    }
    found = session.exec(
        select(PartnerContribution.id).where(PartnerContribution.token_hash == digest)
    ).first()
    if found is None:
        raise LinkUnusable("this link has been used or has expired")
    claimed = session.execute(
        update(PartnerContribution)
        .where(col(PartnerContribution.id) == found)
        .where(col(PartnerContribution.token_hash) == digest)
        .where(col(PartnerContribution.token_expires_at) > now)
        .values(**values)
    )
    if claimed.rowcount != 1:  # type: ignore[attr-defined]
        raise LinkUnusable("this link has been used or has expired")
    row = session.get(PartnerContribution, found)
    assert row is not None
    session.refresh(row)
    if confirm:
        said = f"{row.organisation} confirmed its contribution ({name})"
    else:
        said = f"{row.organisation} declined its contribution: {why}"
    _audit(
        session, row, "confirm" if confirm else "decline", f"partner:{row.contact_email}", now, said
    )
    session.flush()
    return row


# ---------------------------------------------------------------------------------------------
# the pooled budget as the assessors, staff and letters read it


@dataclass(frozen=True)
class PooledLine:
    """One partner's contribution: each year's amount and where its confirmation stands."""

    organisation: str
    type_name: str
    amounts: tuple[str, ...]  # each year's, in the order of the prospectus's years
    total: str
    status: str  # "Confirmed by ...", "Declined: <reason>", "Awaiting confirmation"
    confirmed: bool


@dataclass(frozen=True)
class PooledView:
    """The partners of a place and the pooled budget they confirmed, ready to print: the
    confirmed totals count only the contributions the partners confirmed."""

    years: tuple[str, ...]
    lines: tuple[PooledLine, ...]
    confirmed_per_year: tuple[str, ...]  # in the order of `years`
    confirmed_total: str
    confirmed_count: int

    @property
    def confirmed_lines(self) -> tuple[PooledLine, ...]:
        return tuple(line for line in self.lines if line.confirmed)

    @property
    def by_year(self) -> tuple[tuple[str, str], ...]:
        """Each year with the confirmed pooled budget of that year."""
        return tuple(zip(self.years, self.confirmed_per_year, strict=True))


def standing(row: PartnerContribution) -> str:
    """Where a contribution's confirmation stands, as an assessor or a letter's reader needs it."""
    if row.status == CONFIRMED:
        return f"Confirmed by {row.responded_by}" if row.responded_by else "Confirmed"
    if row.status == DECLINED:
        return f"Declined: {row.decline_reason}" if row.decline_reason else "Declined"
    return "Awaiting confirmation"


def pooled_view(
    session: Session, application: Application, prospectus: Prospectus
) -> PooledView | None:
    """The application's partners and its confirmed pooled budget per year and over all years;
    None where the round asks for no partners."""
    partners = prospectus.partners
    if partners is None:
        return None
    years = tuple(partners.years)
    rows = contributions_of(session, application)
    confirmed = totals(rows, years)
    lines = tuple(
        PooledLine(
            organisation=row.organisation,
            type_name=partner_type_name(row.partner_type),
            amounts=tuple(money(pence_of(row, year)) for year in years),
            total=money(sum(pence_of(row, year) for year in years)),
            status=standing(row),
            confirmed=row.status == CONFIRMED,
        )
        for row in rows
    )
    return PooledView(
        years=years,
        lines=lines,
        confirmed_per_year=tuple(money(confirmed.per_year[year]) for year in years),
        confirmed_total=money(sum(confirmed.per_year.values())),
        confirmed_count=sum(1 for line in lines if line.confirmed),
    )
