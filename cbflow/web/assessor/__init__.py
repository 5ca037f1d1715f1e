"""An assessor's pages: the applications assigned to them, scoring one against the prospectus's
criteria (a draft to come back to, then one submission), declaring a conflict of interest, and
reading the disagreements that went to moderation.

Every page under /assess/{application} is for an assessor assigned to the application who has
not declared a conflict with its council: anything else is 404, so nobody learns what others
are assessing."""

from __future__ import annotations

from fastapi import APIRouter

from cbflow.web.assessor import clarify, conflict, listing, moderation, scoring

__all__ = ["router"]

router = APIRouter()
# each module's routes, in the order they were declared when they were one module (earlier
# routes win), as this router's own: the portal lists them one router deep
for part in (listing, scoring, conflict, moderation, clarify):
    router.routes.extend(part.router.routes)
