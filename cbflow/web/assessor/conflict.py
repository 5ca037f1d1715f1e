"""Declaring a conflict of interest with an assigned application's council (or any council
of a partnership)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response

from cbflow.errors import CbflowError
from cbflow.services import assessment
from cbflow.web.assessor.shared import (
    NOTICE,
    Assessor,
    ConflictPage,
    Work,
)
from cbflow.web.deps import ClockDep, PagesDep, ReasonField, SessionDep
from cbflow.web.templating import Pages, errors_as_list, path_for

router = APIRouter(prefix="/assess")


def _render_conflict(
    request: Request,
    pages: Pages,
    work: Work,
    reason: str = "",
    errors: dict[str, str] | None = None,
    problem: str | None = None,
    status_code: int = 200,
) -> Response:
    errors = errors or {}
    page = ConflictPage(
        **work.header(),
        reason=reason,
        errors=errors,
        error_list=errors_as_list(errors),
        problem=problem,
    )
    return pages.show(request, "assess/conflict.html", page, status_code)


@router.get("/{application_id}/conflict")
def conflict_page(
    request: Request, application_id: int, user: Assessor, session: SessionDep, pages: PagesDep
) -> Response:
    return _render_conflict(request, pages, Work(session, user, application_id))


@router.post("/{application_id}/conflict")
def declare_conflict(
    request: Request,
    application_id: int,
    user: Assessor,
    session: SessionDep,
    pages: PagesDep,
    clock: ClockDep,
    reason: ReasonField = "",
) -> Response:
    work = Work(session, user, application_id)
    if not work.open:
        return _render_conflict(request, pages, work, reason, status_code=400)
    if not reason.strip():
        errors = {"reason": f"Enter why you have a conflict of interest with {work.council.name}"}
        return _render_conflict(request, pages, work, reason, errors, status_code=400)
    try:
        assessment.declare_conflict(
            session, assignment=work.assignment, reason=reason, actor=user.email, now=clock()
        )
    except assessment.NoAssessorFree:
        problem = (
            "No other assessor is free to take this application, so it is still assigned to "
            "you and your conflict has not been recorded. Contact the programme team: they "
            "will find another assessor."
        )
        return _render_conflict(request, pages, work, reason, problem=problem, status_code=400)
    except CbflowError as exc:
        return _render_conflict(request, pages, work, reason, problem=str(exc), status_code=400)
    request.session[NOTICE] = (
        f"You have declared a conflict of interest with {work.council.name}. Their application "
        "has been passed to another assessor."
    )
    return RedirectResponse(path_for(request, "assigned"), status_code=303)


# ---------------------------------------------------------------------------------------------
# disagreements sent to moderation (read only: staff moderate)
