"""Signing out after a time without activity (CBFLOW_SESSION_IDLE_MINUTES).

Every request of a signed-in person is checked against the time of their last one. Past the
limit the session is cleared: a page request goes on to "sign in" (which then says why, and
brings them back to the page), a form or script that posts is answered with a page or JSON that
says nothing it sent was saved. The pages' script warns a little before the limit and offers to
stay signed in: it asks /session/status (which is not activity) and posts /session/keep-alive.
"""

from __future__ import annotations

import math
from datetime import timedelta
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response

from cbflow.settings import Settings
from cbflow.web.security import SAFE_METHODS
from cbflow.web.templating import Pages, path_for

router = APIRouter(prefix="/session")

SEEN = "seen"  # the time of the session's last request, as a POSIX timestamp
NOTICE = "signed_out_idle"  # set once the session is cleared, for the sign-in page to say why
RETURN_TO = "return_to"  # the page to go back to once signed in again
STATUS_PATH = "/session/status"
NOT_RETURNED_TO = ("/sign-in", "/signed-out", "/session")


class SignedOutForInactivity(Exception):
    """A post from a session that had been idle for too long: nothing it sent was used."""


def idle_limit(settings: Settings) -> timedelta:
    return timedelta(minutes=settings.session_idle_minutes)


def idle_minutes_text(settings: Settings) -> str:
    minutes = settings.session_idle_minutes
    if minutes < 1:
        return f"{round(minutes * 60)} seconds"
    shown = int(minutes) if float(minutes).is_integer() else minutes
    return f"{shown} minute{'' if shown == 1 else 's'}"


def local_path(value: Any) -> str | None:
    """A path on this site, never another site's address (no open redirect)."""
    if not isinstance(value, str) or not value.startswith("/") or value.startswith("//"):
        return None
    if "\\" in value or any(ord(c) < 32 for c in value):
        return None
    return value


def _remaining(request: Request) -> float:
    seen = request.session.get(SEEN)
    if "user" not in request.session or not isinstance(seen, int | float):
        return 0.0
    settings: Settings = request.app.state.settings
    now = request.app.state.clock().timestamp()
    return max(0.0, idle_limit(settings).total_seconds() - (now - seen))


async def check_activity(request: Request) -> None:
    """App-wide dependency, run before the CSRF check: clear an idle session, or note activity."""
    if "user" not in request.session or request.url.path == STATUS_PATH:
        return
    now = request.app.state.clock().timestamp()
    seen = request.session.get(SEEN)
    if isinstance(seen, int | float) and _remaining(request) <= 0:
        request.session.clear()
        request.session[NOTICE] = True
        path = local_path(request.url.path)
        if request.method in SAFE_METHODS and path and not path.startswith(NOT_RETURNED_TO):
            query = f"?{request.url.query}" if request.url.query else ""
            request.session[RETURN_TO] = path + query
        if request.method not in SAFE_METHODS:
            raise SignedOutForInactivity
        return
    request.session[SEEN] = now


def wants_json(request: Request) -> bool:
    return "application/json" in request.headers.get("accept", "")


def signed_out_message(settings: Settings) -> str:
    return (
        f"You were signed out because you had not done anything for {idle_minutes_text(settings)}."
    )


async def signed_out_response(request: Request, exc: Exception) -> Response:
    """The answer to a post from a session that timed out: 401, a page or JSON."""
    settings: Settings = request.app.state.settings
    message = signed_out_message(settings)
    if wants_json(request):
        return JSONResponse(
            {
                "saved": False,
                "signed_in": False,
                "message": f"Not saved: {message[0].lower()}{message[1:]} Sign in again.",
            },
            status_code=401,
        )
    pages: Pages = request.app.state.pages
    return pages.render(request, "timed-out.html", status_code=401, message=message)


@router.get("/status")
def status(request: Request) -> JSONResponse:
    """How long the session has left. Reading it is not activity: it does not extend it."""
    remaining = _remaining(request)  # rounded up: 0 only once the session has ended
    return JSONResponse({"signed_in": remaining > 0, "remaining_seconds": math.ceil(remaining)})


@router.post("/keep-alive")
def keep_alive(request: Request) -> JSONResponse:
    """'Stay signed in': the request itself is the activity (the CSRF check has run)."""
    remaining = _remaining(request)
    return JSONResponse(
        {"signed_in": remaining > 0, "remaining_seconds": math.ceil(remaining)},
        status_code=200 if remaining > 0 else 401,
    )


@router.get("/timed-out")
def timed_out(request: Request, back: str = "") -> Response:
    """Where the pages' script goes when the time is up. A session still in time (kept alive
    in another tab) goes back where it was; otherwise on to sign in again."""
    path = local_path(back)
    if "user" in request.session:
        return RedirectResponse(path or path_for(request, "home"), status_code=303)
    if path and not path.startswith(NOT_RETURNED_TO):
        request.session[RETURN_TO] = path
    return RedirectResponse(path_for(request, "sign_in_page"), status_code=303)
