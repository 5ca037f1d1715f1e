"""A council applicant's pages: the rounds open to their council, their applications, and each
application's forms (task list, one page per section, autosave, check your answers, submit,
receipt).

Every page under /applications/{id} is for the application's own councils only (its lead and,
for a partnership, its member councils): anything else is 404, so nobody learns whether another
council's application exists."""

from __future__ import annotations

from fastapi import APIRouter

from cbflow.services.applications import RETURNS_STATES
from cbflow.web.applications import (
    autosave,
    clarifications,
    home,
    partners,
    partnership,
    reopen,
    sections,
    submit,
    support,
)
from cbflow.web.applications.shared import APP_STATES, BUSY, BUSY_ERRORS, own_application

__all__ = ["APP_STATES", "BUSY", "BUSY_ERRORS", "RETURNS_STATES", "own_application", "router"]

router = APIRouter()
# each module's routes, in the order they were declared when they were one module (earlier routes
# win), as this router's own: the portal lists them as it did then, one router deep
# (the partnership's pages and the clarifications' before the sections', whose /{id}/{stage}
# would take their address)
for part in (
    home,
    support,
    clarifications,
    partnership,
    partners,
    sections,
    autosave,
    submit,
    reopen,
):
    router.routes.extend(part.router.routes)
