"""The applications assigned to an assessor, and the disagreements of theirs that went to
moderation."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from cbflow.models import Council, Round
from cbflow.services import assessment
from cbflow.services.partnerships import place_label, place_of
from cbflow.web.assessor.shared import (
    STATUS_TAGS,
    Assessor,
    Assigned,
    AssignedPage,
    Disagreement,
    take_notice,
)
from cbflow.web.deps import PagesDep, SessionDep

router = APIRouter(prefix="/assess")


@router.get("")
def assigned(request: Request, user: Assessor, session: SessionDep, pages: PagesDep) -> Response:
    listed, disagreements = [], []
    for assignment, application in assessment.assigned_to(session, user):
        round_ = session.get(Round, application.round_id)
        council = session.get(Council, application.council_code)
        assert round_ is not None and council is not None and application.id is not None
        status = assessment.scoring_status(assignment)
        place = place_of(session, application)
        listed.append(
            Assigned(
                id=application.id,
                council=place_label(place),
                reference=application.reference,
                round=round_.title,
                tag=STATUS_TAGS[status],
                councils=", ".join([f"{place.lead.name} (lead)", *(m.name for m in place.members)])
                if place.is_partnership
                else "",
            )
        )
        if assignment.submitted_at is not None:
            tasks = assessment.disagreements(session, application)
            if tasks:
                disagreements.append(
                    Disagreement(
                        id=application.id,
                        council=place_label(place),
                        round=round_.title,
                        count=len(tasks),
                        open=sum(1 for task, _ in tasks if task.resolved_at is None),
                    )
                )
    page = AssignedPage(
        assignments=tuple(listed), disagreements=tuple(disagreements), notice=take_notice(request)
    )
    return pages.show(request, "assess/index.html", page)


# ---------------------------------------------------------------------------------------------
# scoring
