"""Administrators' pages."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from cbflow.services import accounts
from cbflow.web.auth import require_role
from cbflow.web.deps import PagesDep, SessionDep

router = APIRouter(prefix="/admin", dependencies=[require_role("admin")])


@router.get("/outbox")
def outbox(request: Request, pages: PagesDep, session: SessionDep) -> Response:
    """Mail the portal kept instead of sending, when no SMTP server is configured."""
    return pages.render(request, "outbox.html", messages=accounts.outbox(session))
