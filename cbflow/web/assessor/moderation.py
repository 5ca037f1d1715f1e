"""Reading the disagreements on an application that went to moderation, and how they were
settled."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import Response

from cbflow.prospectus import AssessmentStage
from cbflow.services import assessment
from cbflow.web.assessor.shared import (
    Assessor,
    GivenScore,
    ModerationItem,
    ModerationPage,
    Work,
)
from cbflow.web.deps import PagesDep, SessionDep

router = APIRouter(prefix="/assess")


@router.get("/{application_id}/moderation")
def moderation_page(
    request: Request, application_id: int, user: Assessor, session: SessionDep, pages: PagesDep
) -> Response:
    work = Work(session, user, application_id)
    if not work.submitted:  # others' scores are shown only to an assessor who has given theirs
        raise HTTPException(status_code=404)
    titles = {c.id: c.title for c in work.stage.criteria}
    labels = work.stage.scale.labels
    items = []
    for task, given in assessment.disagreements(session, work.application):
        items.append(
            ModerationItem(
                criterion=titles.get(task.criterion_id, task.criterion_id),
                spread=task.spread,
                scores=tuple(
                    GivenScore(
                        who=f"Assessor {n}" + (" (you)" if assessor_id == user.id else ""),
                        score=f"{score.score} – {labels[score.score]}"
                        if score.score in labels
                        else str(score.score),
                        justification=tuple(score.justification.splitlines()),
                    )
                    for n, (assessor_id, score) in enumerate(given, start=1)
                ),
                moderated=task.moderated_score,
                reason=task.reason,
                resolved=task.resolved_at is not None,
            )
        )
    page = ModerationPage(**work.header(), items=tuple(items), threshold=_threshold(work.stage))
    return pages.show(request, "assess/moderation.html", page)


def _threshold(stage: AssessmentStage) -> int | None:
    return stage.moderation.spread_at_least if stage.moderation else None
