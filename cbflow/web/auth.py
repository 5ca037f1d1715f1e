"""Signing in by e-mailed link, signing out, and who is signed in."""

from __future__ import annotations

import logging
import re
import time
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import RedirectResponse, Response
from sqlalchemy import delete
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlmodel import Session, col

from cbflow import demo_people
from cbflow.db import session_scope
from cbflow.forms import email_error
from cbflow.models import SignInAsks, User
from cbflow.services import accounts
from cbflow.settings import Settings
from cbflow.web import timeout
from cbflow.web.deps import CheckedField, ClockDep, PagesDep, SessionDep, SettingsDep, mail_after
from cbflow.web.security import SAFE_METHODS
from cbflow.web.templating import path_for, signed_in

router = APIRouter()
logger = logging.getLogger(__name__)

# the token of a sign-in link in a path (/sign-in/check-your-email is a page, not a token)
# the paths whose last part is a single-use token: sign-in links, and partners' links to confirm
# their contributions (cbflow.web.partner)
_TOKEN = re.compile(r"(/sign-in/|/partner/)(?!check-your-email(?:[\s/?#\"']|$))[^\s/?#\"']+")
REDACTED = "[token]"


def redact_link_tokens(text: str) -> str:
    """The text with the token of every sign-in or partner's link path in it replaced by
    [token]."""
    if "/sign-in/" not in text and "/partner/" not in text:
        return text
    return _TOKEN.sub(rf"\g<1>{REDACTED}", text)


class RedactLinkTokens(logging.Filter):
    """Keeps single-use links out of logs: the web server logs each request's path, and a
    sign-in link's path is its token, which signs in whoever reads the log (a partner's link
    answers for the partner). Replaces the token in a
    record's message and arguments; the record is kept."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = redact_link_tokens(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(_redacted(arg) for arg in record.args)
        elif isinstance(record.args, dict):
            record.args = {key: _redacted(arg) for key, arg in record.args.items()}
        return True


def _redacted(arg: object) -> object:
    if isinstance(arg, int | float) or arg is None:
        return arg  # numbers keep their type for %d
    text = arg if isinstance(arg, str) else str(arg)
    redacted = redact_link_tokens(text)
    return arg if redacted == text else redacted


# the loggers that write request paths: uvicorn's access log, and its error log's messages
# about refused connections
LOGGERS_OF_PATHS = ("uvicorn.access", "uvicorn.error")


def keep_link_tokens_out_of_logs() -> None:
    """Attach RedactLinkTokens to the web server's loggers (once, however often called).
    Filters on a logger outlast the server's own logging set-up, so this may run first."""
    for name in LOGGERS_OF_PATHS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactLinkTokens) for f in logger.filters):
            logger.addFilter(RedactLinkTokens())


def current_user(request: Request, session: SessionDep) -> User | None:
    shown = signed_in(request)
    if shown is None:
        return None
    user = session.get(User, shown.get("id"))
    if user is None or not _current(request, user, shown):
        # the account has gone, the person signed out (this is a copy of an ended session's
        # cookie), or the session has lasted its hours: it goes
        request.session.clear()
        user = None
    # The read's transaction ends here and its connection goes back to the pool: the route may
    # have to wait for a thread, and under a deadline surge on PostgreSQL the connections held
    # meanwhile by the waiting requests emptied the pool, while every thread waited for one.
    if session.in_transaction() and not (session.new or session.dirty or session.deleted):
        session.commit()
    return user


def _current(request: Request, user: User, shown: dict[str, Any]) -> bool:
    """Whether a session is still one of the person's: begun since they last signed out, and
    less than CBFLOW_SESSION_HOURS ago (counted from signing in, however busy it has been)."""
    settings: Settings = request.app.state.settings
    since = shown.get("since")
    if shown.get("generation") != user.session_generation or not isinstance(since, int | float):
        return False
    return bool(request.app.state.clock().timestamp() - since < settings.session_hours * 3600)


CurrentUser = Annotated[User | None, Depends(current_user)]


def require_role(*roles: str) -> Any:
    """A dependency: the signed-in user, if their role is one of `roles`; otherwise a redirect to
    sign in (not signed in) or 403 (signed in, not allowed). A page asked for before signing in
    is kept in the session, to go on to once signed in (a document linked from the Prefect UI,
    say)."""

    async def dependency(request: Request, user: CurrentUser) -> User:
        if user is None:
            path = timeout.local_path(request.url.path)
            if request.method in SAFE_METHODS and path:
                query = f"?{request.url.query}" if request.url.query else ""
                request.session[timeout.RETURN_TO] = path + query
            raise HTTPException(
                status_code=303, headers={"Location": path_for(request, "sign_in_page")}
            )
        if user.role not in roles:
            raise HTTPException(status_code=403)
        return user

    return Depends(dependency)


class AsksPerClient:
    """At most `most` sign-in asks from one client address in a minute of the clock (no limit
    if `most` is 0); further asks get the same answer and send nothing. Generous, because a
    council's staff may all reach the portal from one address.

    Counted in cbflow's database (`SignInAsks`), so that the portal's processes on every host
    share one count: an upsert that adds one and returns the total, atomic on PostgreSQL (ON
    CONFLICT) and on SQLite (one writer at a time). The first ask a process sees in each new
    minute deletes the minutes gone by."""

    def __init__(self, most: int, database_url: str | None = None) -> None:
        self.most, self.database_url = most, database_url
        self._pruned: datetime | None = None

    def allow(self, client: str, now: float) -> bool:
        """Count an ask from `client` at `now` (seconds since the epoch): whether it is within
        the limit."""
        if self.most <= 0:
            return True
        minute = datetime.fromtimestamp(now - now % 60, UTC)
        with session_scope(self.database_url) as session:
            postgres = session.get_bind().dialect.name == "postgresql"
            insert = pg_insert if postgres else sqlite_insert
            counted = (
                insert(SignInAsks)
                .values(client=client[:64], minute=minute, asks=1)
                .on_conflict_do_update(
                    index_elements=["client", "minute"], set_={"asks": col(SignInAsks.asks) + 1}
                )
                .returning(col(SignInAsks.asks))
            )
            asks = int(session.execute(counted).scalar_one())
            if self._pruned != minute:
                self._pruned = minute
                gone = delete(SignInAsks).where(
                    col(SignInAsks.minute) < minute - timedelta(minutes=1)
                )
                session.execute(gone)
        return asks <= self.most


@router.get("/sign-in")
def sign_in_page(
    request: Request, pages: PagesDep, session: SessionDep, settings: SettingsDep
) -> Response:
    idle = request.session.pop(timeout.NOTICE, False)
    notice = timeout.signed_out_message(settings) if idle else None
    return pages.render(
        request,
        "sign-in.html",
        email="",
        errors={},
        notice=notice,
        demo_people=_demo_people(session, settings),
        role_names=accounts.ROLES,
    )


def _demo_people(session: Session, settings: Settings) -> list[User]:
    """In demo mode, the people a visitor may sign in as with one press; otherwise none."""
    return demo_people.people(session) if settings.demo else []


@router.post("/sign-in")
def sign_in_request(
    request: Request,
    pages: PagesDep,
    session: SessionDep,
    settings: SettingsDep,
    clock: ClockDep,
    email: CheckedField = "",
) -> Response:
    email = email.strip()
    if not email:
        error = "Enter your email address"
    elif problem := email_error(email):
        error = problem
    else:
        client = request.client.host if request.client else ""
        limit: AsksPerClient = request.app.state.sign_in_asks
        message = None
        if limit.allow(client, time.time()):
            message = accounts.send_sign_in_link(
                session,
                email=email,
                base_url=settings.resolved_portal_base_url,
                settings=settings,
                now=clock(),
            )
        else:
            logger.warning("no sign-in link sent: too many asks from %s", client)
        request.session["sign_in_email"] = email
        return mail_after(
            RedirectResponse(path_for(request, "check_your_email"), status_code=303),
            message,
            settings,
        )
    return pages.render(
        request,
        "sign-in.html",
        status_code=400,
        email=email,
        errors={"email": error},
        demo_people=_demo_people(session, settings),
        role_names=accounts.ROLES,
    )


@router.get("/sign-in/check-your-email")
def check_your_email(request: Request, pages: PagesDep) -> Response:
    email = request.session.get("sign_in_email")
    return pages.render(request, "check-your-email.html", email=email)


@router.get("/sign-in/{token}")
def sign_in_confirm(
    request: Request, token: str, pages: PagesDep, session: SessionDep, clock: ClockDep
) -> Response:
    """The link's page only asks to continue: mail scanners that open links must not use up a
    single-use link (the sign-in itself is the POST)."""
    if not accounts.link_is_usable(session, token=token, now=clock()):
        return pages.render(request, "sign-in-failed.html", status_code=400)
    return pages.render(request, "sign-in-confirm.html", token=token)


@router.post("/sign-in/{token}")
def sign_in_with_link(
    request: Request, token: str, pages: PagesDep, session: SessionDep, clock: ClockDep
) -> Response:
    try:
        user = accounts.use_sign_in_link(session, token=token, now=clock())
    except accounts.SignInFailed:
        return pages.render(request, "sign-in-failed.html", status_code=400)
    back = timeout.local_path(request.session.get(timeout.RETURN_TO))
    _start_session(request, user, clock())
    return RedirectResponse(back or path_for(request, "home"), status_code=303)


def _start_session(request: Request, user: User, now: datetime) -> None:
    request.session.clear()  # a fresh session, with a fresh CSRF token
    request.session["user"] = {
        "id": user.id,
        "name": user.name,
        "email": user.email,
        "role": user.role,
        "generation": user.session_generation,  # signing out moves the person's on
        "since": now.timestamp(),  # the session's hours count from here
    }


@router.post("/demo/sign-in")
def demo_sign_in(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    clock: ClockDep,
    email: CheckedField = "",
) -> Response:
    """One press signs in as one of the demo people: in demo mode only, and only as them."""
    if not settings.demo:
        raise HTTPException(status_code=404)
    user = accounts.find_user(session, email) if demo_people.is_demo_email(email) else None
    if user is None:
        raise HTTPException(status_code=404)
    logger.info("demo sign-in as %s (%s)", user.email, user.role)
    _start_session(request, user, clock())
    return RedirectResponse(demo_people.start_page(user, session), status_code=303)


@router.post("/sign-out")
def sign_out(request: Request, session: SessionDep, clock: ClockDep) -> RedirectResponse:
    """Ends the session on the server too: a copy of its cookie is refused from now on."""
    shown = signed_in(request)
    user = session.get(User, shown.get("id")) if shown else None
    if shown and user is not None and _current(request, user, shown):
        accounts.end_sessions(session, user, now=clock())
    request.session.clear()
    return RedirectResponse(path_for(request, "signed_out"), status_code=303)


@router.get("/signed-out")
def signed_out(request: Request, pages: PagesDep) -> Response:
    return pages.render(request, "signed-out.html")
