"""A council applicant's pages: the rounds open to their council, their applications, and each
application's forms (task list, one page per section, autosave, check your answers, submit,
receipt).

Every page under /applications/{id} is for the application's own council only: anything else
is 404, so nobody learns whether another council's application exists."""

from __future__ import annotations

from fastapi import APIRouter

from cbflow.web.applications import autosave, home, sections, submit
from cbflow.web.applications.shared import (
    APP_STATES,
    BUSY,
    BUSY_ERRORS,
    RETURNS_STATES,
    own_application,
)

__all__ = ["APP_STATES", "BUSY", "BUSY_ERRORS", "RETURNS_STATES", "own_application", "router"]

router = APIRouter()
# in the order the routes were declared when they were one module: earlier routes win
router.include_router(home.router)
router.include_router(sections.router)
router.include_router(autosave.router)
router.include_router(submit.router)
