"""A selected council's implementation returns (cbflow.web.returns.shared says how they are
made): the list of returns, a return's form and check page, and its submission."""

from __future__ import annotations

from fastapi import APIRouter

from cbflow.web.returns import form, listing, submit, versions
from cbflow.web.returns.shared import Returns, Status, status_of

__all__ = ["Returns", "Status", "router", "status_of"]

router = APIRouter()
# each module's routes, in the order they were declared when they were one module (earlier routes
# win), as this router's own: the portal lists them as it did then, one router deep
for part in (listing, form, submit, versions):
    router.routes.extend(part.router.routes)
