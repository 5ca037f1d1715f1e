"""Accounts: signing in by e-mailed link, and councils inviting their colleagues."""

from __future__ import annotations

import hashlib
import logging
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from cbflow import notify
from cbflow.db import lock_for_update
from cbflow.errors import CbflowError, ValidationFailed
from cbflow.forms import email_error
from cbflow.models import Council, MagicLink, OutboxMessage, User
from cbflow.services.audit import record
from cbflow.settings import Settings

LINK_LIFETIME = timedelta(minutes=15)
# live links one address may have: asking again and again (30 asks in a second made 30 links)
# mints no more until one is used or expires
LIVE_LINKS_AT_MOST = 3
NAME_MAX = 200  # characters of a person's name

logger = logging.getLogger(__name__)


class SignInFailed(CbflowError):
    """A sign-in link that is unknown, used or expired. Nothing was changed."""


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def normalise_email(email: str) -> str:
    return email.strip().lower()


def find_user(session: Session, email: str) -> User | None:
    return session.exec(select(User).where(User.email == normalise_email(email))).first()


def sign_in_url(base_url: str, token: str) -> str:
    """The address of a sign-in link on the portal at `base_url`."""
    return f"{base_url}/sign-in/{token}"


def _new_link(session: Session, user: User, now: datetime) -> str:
    """A single-use sign-in link for the user: persisted as the token's hash; returns the token."""
    assert user.id is not None
    token = secrets.token_urlsafe(32)
    session.add(
        MagicLink(
            token_hash=_hash(token), user_id=user.id, created_at=now, expires_at=now + LINK_LIFETIME
        )
    )
    return token


def send_sign_in_link(
    session: Session, *, email: str, base_url: str, settings: Settings, now: datetime
) -> notify.Message | None:
    """A single-use sign-in link for the user with this address. Callers must not tell the
    person whether there is one, so as to leak nothing about who has an account.

    Persists the link (only the token's hash) and, without SMTP, the message in the outbox.
    With SMTP, returns the message for the caller to `notify.deliver` after its transaction
    commits (`notify.send_after_commit`); None when there is no such user or nothing is left
    to send.
    """
    user = find_user(session, email)
    if user is None or user.id is None:
        return None
    lock_for_update(session, user)  # asks at the same moment count one after the other
    live = session.exec(
        select(func.count())
        .select_from(MagicLink)
        .where(
            MagicLink.user_id == user.id,
            col(MagicLink.used_at).is_(None),
            col(MagicLink.expires_at) > now,
        )
    ).one()
    if live >= LIVE_LINKS_AT_MOST:
        logger.warning(
            "no sign-in link sent to %s: %d sent in the last %d minutes are still unused",
            user.email,
            live,
            int(LINK_LIFETIME.total_seconds() // 60),
        )
        return None
    token = _new_link(session, user, now)
    message = notify.compose(
        settings.templates_dir,
        "sign-in-link",
        to=user.email,
        name=user.name,
        link=sign_in_url(base_url, token),
        minutes=int(LINK_LIFETIME.total_seconds() // 60),
        sign_in_page=f"{base_url}/sign-in",
    )
    return notify.send_after_commit(message, settings=settings, session=session, now=now)


def end_sessions(session: Session, user: User, *, now: datetime) -> None:
    """Sign the person out everywhere: every session begun so far is refused from now on,
    whoever holds a copy of its cookie. Persists the new generation, then the audit event."""
    assert user.id is not None
    user.session_generation += 1
    session.add(user)
    record(session, entity="user", entity_id=user.id, action="sign-out", actor=user.email, now=now)


class UnknownPerson(CbflowError):
    """An address no account has. Nothing was changed."""


@dataclass(frozen=True)
class HandedLink:
    """A sign-in link given to whoever asked for it, rather than mailed to the person."""

    email: str
    name: str
    url: str
    expires_at: datetime


def hand_over_sign_in_link(
    session: Session, *, email: str, base_url: str, actor: str, now: datetime
) -> HandedLink:
    """A fresh single-use sign-in link for the person with this address, returned to the caller
    (the command line prints it) instead of being mailed: the way in for the first
    administrator when there is no mail server.

    Persists the link (only its token's hash) and an audit event `sign_in_link_handed_over` by
    `actor`: unlike a link the person asks for at /sign-in, this one reaches someone else
    first. Refused with UnknownPerson, nothing changed, for an address no account has."""
    user = find_user(session, email)
    if user is None or user.id is None:
        raise UnknownPerson(f"nobody signs in as {normalise_email(email)}")
    token = _new_link(session, user, now)
    record(
        session,
        entity="user",
        entity_id=user.id,
        action="sign_in_link_handed_over",
        actor=actor,
        now=now,
    )
    return HandedLink(
        email=user.email,
        name=user.name,
        url=sign_in_url(base_url, token),
        expires_at=now + LINK_LIFETIME,
    )


class AccountExists(CbflowError):
    """An address that already belongs to an account. Nothing was changed."""


def council_team(session: Session, council_code: str) -> list[User]:
    """The council's own people, by name."""
    statement = select(User).where(User.council_code == council_code)
    return list(session.exec(statement.order_by(col(User.name), col(User.id))))


def invite_colleague(
    session: Session,
    *,
    inviter: User,
    name: str,
    email: str,
    base_url: str,
    settings: Settings,
    now: datetime,
    role: str = "applicant",
) -> tuple[User, notify.Message | None]:
    """An applicant invites a colleague from their own council, as an applicant or as a
    certifier (who signs off the council's applications): persists the new account for the
    council, then the audit event and a sign-in link, and the invitation with the link,
    as for sign-in links: in the outbox, or returned to be mailed after the transaction commits.
    An address any account already has is refused with AccountExists."""
    if inviter.role != "applicant" or not inviter.council_code:
        raise CbflowError("only a council's applicants can invite colleagues")
    if role not in ("applicant", "certifier"):
        raise ValidationFailed({"role": "Choose what your colleague will do"})
    council = session.get(Council, inviter.council_code)
    assert council is not None
    address = normalise_email(email)
    if find_user(session, address) is not None:
        raise AccountExists(f"{address} already has an account")
    user = User(email=address, name=name.strip(), role=role, council_code=council.code)
    try:
        with session.begin_nested():  # two invitations racing: the second is refused
            session.add(user)
            session.flush()
    except IntegrityError:
        raise AccountExists(f"{address} already has an account") from None
    assert user.id is not None
    record(
        session,
        entity="user",
        entity_id=user.id,
        action="invited",
        actor=inviter.email,
        now=now,
        reason=f"{role} for {council.code}",
    )
    token = _new_link(session, user, now)
    message = notify.compose(
        settings.templates_dir,
        "invitation",
        to=user.email,
        name=user.name,
        inviter=inviter.name,
        council=council.name,
        as_certifier=role == "certifier",
        link=sign_in_url(base_url, token),
        minutes=int(LINK_LIFETIME.total_seconds() // 60),
        sign_in_page=f"{base_url}/sign-in",
    )
    return user, notify.send_after_commit(message, settings=settings, session=session, now=now)


def link_is_usable(session: Session, *, token: str, now: datetime) -> bool:
    link = session.exec(select(MagicLink).where(MagicLink.token_hash == _hash(token))).first()
    return link is not None and link.used_at is None and now < link.expires_at


def use_sign_in_link(session: Session, *, token: str, now: datetime) -> User:
    """Sign in with a link: it works once, before it expires.

    Marks the link used with one conditional UPDATE (so two clicks at once sign in once), then
    writes the audit event.
    """
    claimed = session.execute(
        update(MagicLink)
        .where(col(MagicLink.token_hash) == _hash(token))
        .where(col(MagicLink.used_at).is_(None))
        .where(col(MagicLink.expires_at) > now)
        .values(used_at=now)
    )
    if claimed.rowcount != 1:  # type: ignore[attr-defined]
        raise SignInFailed("this sign-in link has expired or has already been used")
    link = session.exec(select(MagicLink).where(MagicLink.token_hash == _hash(token))).one()
    user = session.get(User, link.user_id)
    assert user is not None and user.id is not None
    record(session, entity="user", entity_id=user.id, action="sign-in", actor=user.email, now=now)
    return user


def outbox(session: Session, limit: int = 200) -> list[OutboxMessage]:
    """Mail kept for administrators when no SMTP server is configured, newest first."""
    statement = select(OutboxMessage).order_by(col(OutboxMessage.id).desc()).limit(limit)
    return list(session.exec(statement))


ROLES = {
    "applicant": "Council applicant",
    "certifier": "Council certifier (signs off applications)",
    "assessor": "Assessor",
    "staff": "Programme staff",
    "admin": "Administrator",
    "provider": "Support provider (answers requests for its organisation's offers)",
}
PROVIDER_MAX = 120  # characters of a provider's organisation, as the prospectus's offers name it


def add_user(
    session: Session,
    *,
    email: str,
    name: str,
    role: str,
    council_code: str | None,
    actor: str,
    now: datetime,
    provider: str | None = None,
) -> User:
    """A new person who can sign in. Applicants belong to a council; an assessor may name the
    council they work for (never assigned its applications). Refused, with nothing changed, for
    an address already in use, an unknown role or council. Persists the user, then the audit
    event."""
    errors: dict[str, str] = {}
    email = normalise_email(email)
    if problem := email_error(email):
        errors["email"] = problem
    elif find_user(session, email) is not None:
        errors["email"] = "Someone already uses this email address"
    if not name.strip():
        errors["name"] = "Enter the person's name"
    elif len(name) > NAME_MAX:
        errors["name"] = f"The person's name must be {NAME_MAX} characters or fewer"
    if role not in ROLES:
        errors["role"] = "Select the person's role"
    code = (council_code or "").strip().upper() or None
    if code is not None and session.get(Council, code) is None:
        errors["council"] = "Enter a council code from the register, like ESS"
    if role in ("applicant", "certifier") and code is None:
        errors["council"] = (
            f"Enter the council the {role} {'applies' if role == 'applicant' else 'signs off'} for"
        )
    organisation = " ".join((provider or "").split()) if role == "provider" else ""
    if role == "provider" and not organisation:
        errors["provider"] = "Enter the organisation they answer for, as its support offers name it"
    elif len(organisation) > PROVIDER_MAX:
        errors["provider"] = f"The organisation must be {PROVIDER_MAX} characters or fewer"
    if errors:
        raise ValidationFailed(errors)
    user = User(
        email=email,
        name=name.strip(),
        role=role,
        council_code=code,
        provider=organisation or None,
    )
    session.add(user)
    session.flush()
    assert user.id is not None
    record(
        session,
        entity="user",
        entity_id=user.id,
        action="user_added",
        actor=actor,
        now=now,
        reason=f"{ROLES[role]}{' for ' + code if code else ''}"
        + (f" for {organisation}" if organisation else ""),
    )
    return user


def people(session: Session) -> list[User]:
    return list(session.exec(select(User).order_by(col(User.role), col(User.name))))
