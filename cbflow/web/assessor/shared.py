"""What the assessor's pages share: who may see them, the assignment a page is about (or 404)
and the pages' typed contexts."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Annotated, Any, TypedDict

from fastapi import HTTPException, Request
from markupsafe import Markup
from sqlmodel import Session

from cbflow.lifecycle import AppState
from cbflow.models import Application, Assignment, Council, Round, User
from cbflow.prospectus import AssessmentStage, Prospectus
from cbflow.services import assessment, rounds
from cbflow.services.contributions import PooledView
from cbflow.services.partnerships import Place, place_of
from cbflow.web.auth import require_role
from cbflow.web.clarifying import RequestView
from cbflow.web.templating import path_for

Assessor = Annotated[User, require_role("assessor")]

NOTICE = "assess_notice"  # a one-off message for the next page, kept in the session
STATUS_TAGS = {
    "not started": {"text": "Not started", "classes": "govuk-tag--blue"},
    "in progress": {"text": "In progress", "classes": "govuk-tag--light-blue"},
    "submitted": {"text": "Submitted", "classes": "govuk-tag--green"},
}


def take_notice(request: Request) -> str | None:
    notice = request.session.pop(NOTICE, None)
    return notice if isinstance(notice, str) else None


class Work:
    """One assessor's assignment to one application, with its round and assessment stage."""

    def __init__(self, session: Session, user: User, application_id: int) -> None:
        assignment = assessment.assignment_of(session, user, application_id)
        application = session.get(Application, application_id)
        if assignment is None or application is None:
            raise HTTPException(status_code=404)
        round_ = session.get(Round, application.round_id)
        council = session.get(Council, application.council_code)
        assert round_ is not None and council is not None
        prospectus = rounds.prospectus_of(round_)
        if prospectus.stages.assessment is None:
            raise HTTPException(status_code=404)
        self.session = session
        self.user = user
        self.assignment: Assignment = assignment
        self.application = application
        self.round = round_
        self.council = council
        self.place: Place = place_of(session, application)
        self.prospectus: Prospectus = prospectus
        self.stage: AssessmentStage = prospectus.stages.assessment

    @property
    def submitted(self) -> bool:
        return self.assignment.submitted_at is not None

    @property
    def open(self) -> bool:
        """Scores can still be saved or submitted."""
        return not self.submitted and self.application.state == AppState.UNDER_ASSESSMENT

    def header(self) -> Header:
        """What every page about the application shows."""
        return Header(
            application=self.application,
            round=self.round,
            council=self.council,
            place=self.place,
            submitted=self.submitted,
            open=self.open,
        )

    def address(self, request: Request) -> str:
        """The scoring page's address: where the assessor comes back to."""
        return path_for(request, "scoring_page", application_id=self.application.id)


class Header(TypedDict):
    """The fields every page about one application has first: its round and council, and
    whether the assessor has submitted their scores and can still change anything."""

    application: Application
    round: Round
    council: Council
    place: Place  # the lead council alone, or a partnership of it and its member councils
    submitted: bool
    open: bool


# ---------------------------------------------------------------------------------------------
# the pages' contexts


@dataclass(frozen=True)
class Assigned:
    """An application assigned to the assessor, in their list."""

    id: int
    council: str  # the council, or the partnership's place, its lead and how many others
    reference: str
    round: str
    tag: dict[str, str]  # GOV.UK tag: how far their scoring has gone
    councils: str = ""  # a partnership's councils (`Westminster (lead), Kensington ...`)


@dataclass(frozen=True)
class Disagreement:
    """An application whose assessors' scores went to moderation, for an assessor who has
    given theirs."""

    id: int
    council: str
    round: str
    count: int  # criteria sent to moderation
    open: int  # of which not yet moderated


@dataclass(frozen=True)
class AssignedPage:
    assignments: tuple[Assigned, ...]
    disagreements: tuple[Disagreement, ...]
    notice: str | None


@dataclass(frozen=True)
class Evidence:
    """A council's answer to a question a criterion is scored on."""

    label: str
    view: dict[str, Any]  # cbflow.web.answers.answer_view


@dataclass(frozen=True)
class Criterion:
    """A criterion to score: its guidance, the council's evidence, and the assessor's score
    (the form's values, or the one submitted)."""

    id: str
    title: str
    share: Decimal  # per cent of the total score
    minimum: int | None
    guidance: Markup | None
    evidence: tuple[Evidence, ...]
    justification: str  # in the form
    choices: tuple[dict[str, Any], ...]  # the scale's radio items, the chosen one checked
    score_text: str  # the score submitted, with its label
    justification_lines: tuple[str, ...]  # the reason submitted


@dataclass(frozen=True)
class ApplicationPage:
    application: Application
    round: Round
    council: Council
    place: Place  # the lead council alone, or a partnership of it and its member councils
    submitted: bool
    open: bool


@dataclass(frozen=True)
class ScoringPage(ApplicationPage):
    criteria: tuple[Criterion, ...]
    errors: dict[str, str]
    error_list: list[dict[str, str]]
    problem: str | None
    notice: str | None
    scale_hint: str
    justification_required: bool
    submitted_at: str | None
    pooled: PooledView | None  # the partners and the confirmed pooled budget, where asked for
    # the clarification requests of the application, the latest first
    clarifications: tuple[RequestView, ...] = ()
    waiting: bool = False  # a request is still waiting for the council: scores wait for it


@dataclass(frozen=True)
class ConflictPage(ApplicationPage):
    reason: str
    errors: dict[str, str]
    error_list: list[dict[str, str]]
    problem: str | None


@dataclass(frozen=True)
class GivenScore:
    who: str  # "Assessor 2 (you)"
    score: str  # with its label
    justification: tuple[str, ...]


@dataclass(frozen=True)
class ModerationItem:
    criterion: str
    spread: int
    scores: tuple[GivenScore, ...]
    moderated: int | None
    reason: str | None
    resolved: bool


@dataclass(frozen=True)
class ModerationPage(ApplicationPage):
    items: tuple[ModerationItem, ...]
    threshold: int | None


# ---------------------------------------------------------------------------------------------
# the list of assigned applications
