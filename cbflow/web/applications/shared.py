"""What every applicant page under /applications/{id} shares: the application of the person's
own council (anything else is 404, so nobody learns whether another council's application
exists), an application at one stage with what the council may do with it, and the pages'
common typed context."""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from datetime import datetime
from typing import Annotated, Any, TypeVar

from fastapi import HTTPException, Request
from sqlalchemy.exc import OperationalError
from sqlalchemy.exc import TimeoutError as SQLAlchemyTimeoutError
from sqlmodel import Session

from cbflow.errors import CbflowError, ValidationFailed
from cbflow.formatting import local_deadline
from cbflow.forms import validate_answers
from cbflow.models import Application, Round, User
from cbflow.prospectus import Form as ProspectusForm
from cbflow.prospectus import Prospectus, Section
from cbflow.services import (
    amendments,
    clarifications,
    deadlines,
    drafts,
    partnerships,
    reopening,
    replication,
    rounds,
    signoff,
)
from cbflow.services import applications as service
from cbflow.services.applications import STAGE_NAMES, ApplicantActions, Stage
from cbflow.web.auth import require_role
from cbflow.web.templating import path_for

Applicant = Annotated[User, require_role("applicant")]
P = TypeVar("P")

APP_STATES = {
    "eoi_draft": "Expression of interest in progress",
    "eoi_awaiting_sign_off": "Expression of interest waiting for sign-off",
    "eoi_submitted": "Expression of interest submitted",
    "sift_pass": "Expression of interest passed the sift",
    "sift_refer": "Expression of interest with staff",
    "sift_fail": "Not taken forward",
    "invited": "Invited to bid",
    "bid_draft": "Bid in progress",
    "bid_awaiting_sign_off": "Bid waiting for sign-off",
    "bid_submitted": "Bid submitted",
    "under_assessment": "Bid being assessed",
    "moderated": "Bid assessed",
    "selected": "Selected",
    "reserve": "On the reserve list",
    "unsuccessful": "Not selected",
    "implementing": "Implementing",
    "completed": "Completed",
    "published": "Published as a model",
    "withdrawn": "Withdrawn",
    "adoption_draft": "Adoption in progress",
    "adoption_submitted": "Adoption waiting for approval",
}

# an adoption through the rolling route shows its own light form in these states
ROUTE_STATES = frozenset({"adoption_draft", "adoption_submitted", "withdrawn"})

# a save that could not have the draft's lock in time (cbflow.db's "database is locked", or
# PostgreSQL's lock or pool time-out): nothing was saved, and the person is told so
BUSY_ERRORS = (OperationalError, SQLAlchemyTimeoutError)
BUSY = (
    "Your answers were not saved: the service is busy. Wait a moment, then select "
    "Save and continue again."
)


def council_of(user: User) -> str:
    if not user.council_code:  # an applicant account without a council can do nothing here
        raise HTTPException(status_code=403)
    return user.council_code


def own_application(session: Session, user: User, application_id: int) -> Application:
    """The application, if the person's council is its lead or one of its member councils."""
    application = session.get(Application, application_id)
    if application is None or not partnerships.belongs(session, application, council_of(user)):
        raise HTTPException(status_code=404)
    return application


def home_of(request: Request, application: Application) -> str:
    """An application's page: its returns once implementing, its grant offer once selected,
    otherwise its current form; an adoption through the rolling route, its light form until
    it is implementing."""
    if application.route == "adoption" and application.state in ROUTE_STATES:
        return path_for(request, "adoption_page", application_id=application.id)
    match service.applicant_page(application):
        case "returns":
            return path_for(request, "returns_list", application_id=application.id)
        case "offer":
            return path_for(request, "offer_page", application_id=application.id)
    stage = service.current_stage(application)
    return path_for(request, "task_list", application_id=application.id, stage=stage)


class Context:
    """An application at one stage: its round, prospectus, form and answers."""

    def __init__(
        self, request: Request, session: Session, application: Application, stage: Stage
    ) -> None:
        if not service.has_stage(application, stage):
            raise HTTPException(status_code=404)
        round_ = session.get(Round, application.round_id)
        assert round_ is not None
        self.request = request
        self.session = session
        self.application = application
        # read now: addresses are built after a failed save too, when reading the application
        # again would be refused until its transaction is rolled back
        assert application.id is not None
        self.application_id: int = application.id
        self.stage = stage
        self.round = round_
        self.prospectus: Prospectus = rounds.prospectus_of(round_)
        try:
            self.form: ProspectusForm = service.form_of(self.prospectus, stage)
        except CbflowError:
            raise HTTPException(status_code=404) from None
        self.place = partnerships.place_of(session, application).name
        # the deadline that applies to this application (an extension, its own or everyone's)
        self.standing = deadlines.standing(session, application, stage)

    def url(self, name: str, /, **params: object) -> str:
        """The address of one of this application's stage's pages."""
        return path_for(
            self.request, name, application_id=self.application_id, stage=self.stage, **params
        )

    def url_of_partnership(self) -> str:
        """The application's partnership page (its councils and their confirmations)."""
        return path_for(self.request, "partnership_page", application_id=self.application_id)

    def url_of_concern(self, concern: service.Concern) -> str:
        """The page that puts right what stops a submission besides its answers."""
        if concern == "partners":
            return path_for(self.request, "partners_page", application_id=self.application_id)
        return self.url_of_partnership()

    @property
    def base(self) -> str:
        """The stage's task list."""
        return self.url("task_list")

    def actions(self, now: datetime) -> ApplicantActions:
        """What the council may do with this stage's form now."""
        return service.applicant_actions(
            self.prospectus, self.application, self.stage, now, self.standing.closes
        )

    @property
    def answers(self) -> dict[str, Any]:
        """The answers as last read (a save reads them afresh under its lock)."""
        a = self.application
        return a.eoi_answers if self.stage == "eoi" else a.bid_answers

    def shown(self, section: Section) -> drafts.Base:
        """What a page of this section drawn now shows: the version and its answers."""
        stored = service.stored_draft(self.application, self.stage)
        ids = [q.id for q in section.questions]
        return drafts.Base(stored.version, drafts.digests(stored.answers, ids))

    @property
    def stage_name(self) -> str:
        return STAGE_NAMES[self.stage]

    def section(self, section_id: str) -> Section:
        for section in self.form.sections:
            if section.id == section_id:
                return section
        raise HTTPException(status_code=404)

    def page(self, now: datetime, *, closed: bool | None = None) -> FormPage:
        """What every page of the stage shows; `closed` as the page is to say it, where that is
        not what the clock says."""
        actions = self.actions(now)
        if closed is not None:
            actions = replace(actions, closed=closed)
        return FormPage(
            application=self.application,
            stage=self.stage,
            stage_name=self.stage_name,
            round=self.round,
            place=self.place,
            deadline=actions.deadline,
            actions=actions,
            sign_off=self.sign_off(now, actions),
            extension_note=self.standing.note,
            reopened=reopening.reopened_warning(
                self.session, self.application, self.stage, now, self.standing.closes
            ),
            amendment=amendments.notice_for(self.session, self.application),
            clarifications=self.clarifications_open(),
            newer_model=replication.newer_version(self.session, self.application),
        )

    def clarifications_open(self) -> tuple[tuple[str, str], ...]:
        """The requests the council has still to answer, for the notice at the top of its
        task list."""
        return tuple(
            (
                path_for(
                    self.request,
                    "clarification_page",
                    application_id=self.application_id,
                    clarification_id=c.id,
                ),
                local_deadline(c.answer_by, self.prospectus),
            )
            for c in clarifications.pending_of(self.session, self.application)
            if c.state == clarifications.OPEN
        )

    def sign_off(self, now: datetime, actions: ApplicantActions) -> SignOffView | None:
        """The sign-off the prospectus asks of this stage, as the pages show it."""
        if not actions.needs_sign_off:
            return None
        application = self.application
        certifier = signoff.certifier_of(self.session, application)
        choices = signoff.certifiers(self.session, application.council_code)
        return SignOffView(
            role=signoff.role_asked(self.prospectus),
            waiting=actions.awaiting_sign_off,
            certifier=certifier.name if certifier and actions.awaiting_sign_off else "",
            requested=signoff.requested_words(self.prospectus, application),
            warning=signoff.deadline_warning(
                self.prospectus, application, self.stage, now, self.standing.closes
            ),
            choices=tuple(
                {"value": str(c.id), "text": c.name, "hint": {"text": c.email}} for c in choices
            ),
        )


@dataclass(frozen=True)
class SignOffView:
    """The certifier's sign-off a stage asks for, as its pages show it."""

    role: str  # the role the prospectus asks to sign off
    waiting: bool  # sent, and not yet answered
    certifier: str  # whom it waits for
    requested: str  # who sent it when
    warning: str | None  # from 48 hours before the deadline: what the deadline means for it
    choices: tuple[dict[str, Any], ...]  # the council's certifiers, as radio items


@dataclass(frozen=True)
class FormPage:
    """What every page of a stage's form shows."""

    application: Application
    stage: Stage
    stage_name: str
    round: Round
    place: str
    deadline: str
    actions: ApplicantActions
    sign_off: SignOffView | None
    extension_note: str  # why the deadline is later than the prospectus says ("" if it is not)
    reopened: str  # the warning while the council has reopened it ("" when it has not)
    amendment: amendments.Notice | None  # the prospectus amended since it was started
    # the clarification requests waiting for the council's reply: (its page, answer by)
    clarifications: tuple[tuple[str, str], ...]
    # a newer version of the model the application adopted, published since
    newer_model: replication.NewerVersion | None


def complete_errors(session: Session, ctx: Context) -> dict[str, str]:
    try:
        validate_answers(
            ctx.form, ctx.answers, complete=True, councils=service.council_codes(session)
        )
    except ValidationFailed as failed:
        return failed.errors
    return {}


def page_of(cls: type[P], common: FormPage, **extra: Any) -> P:
    """A stage's page of type `cls`: what every page of the stage shows, and its own."""
    shared = {f.name: getattr(common, f.name) for f in fields(common)}
    return cls(**shared, **extra)
