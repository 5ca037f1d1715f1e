"""A council's application: drafts, submissions against the deadline, withdrawal."""

from __future__ import annotations

from collections.abc import Collection, Container, Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Literal

from sqlmodel import Session, select

from cbflow.db import lock_for_update
from cbflow.errors import CbflowError, NotFound, NotYet
from cbflow.formatting import local_deadline, long_date
from cbflow.forms import money_to_pence, parse_money, validate_answers
from cbflow.lifecycle import APP_TRANSITIONS, AppState
from cbflow.models import Application, Council, Round
from cbflow.prospectus import Form, Prospectus, Window
from cbflow.services import contributions, deadlines, drafts, partnerships
from cbflow.services.audit import record, transition
from cbflow.services.rounds import prospectus_of

Stage = Literal["eoi", "bid"]


def not_reached(deadline: str, moment: datetime, now: datetime, prospectus: Prospectus) -> NotYet:
    """The refusal of a deadline's work before its moment, to the second: a run that starts a
    moment early is told exactly when the deadline is, not that it 'passed'."""
    local, current = moment.astimezone(prospectus.zone), now.astimezone(prospectus.zone)
    when = (
        local_deadline(moment, prospectus)
        if (local.hour, local.minute, local.second) == (0, 0, 0)
        else f"{local:%H:%M:%S} on {long_date(local)} ({local:%Z})"
    )
    return NotYet(
        f"the {deadline} had not yet passed: it is at {when}, and the time was "
        f"{current:%H:%M:%S} on {long_date(current)}"
    )


def window_of(prospectus: Prospectus, stage: Stage) -> Window:
    return deadlines.window(prospectus, stage)


def form_of(prospectus: Prospectus, stage: Stage) -> Form:
    """The form a council fills in at this stage."""
    if stage == "eoi":
        return prospectus.stages.eoi.form
    if prospectus.stages.bid is None:
        raise CbflowError(f"round {prospectus.id} has no bid stage")
    return prospectus.stages.bid.form


def check_window(
    prospectus: Prospectus, stage: Stage, now: datetime, closes: datetime | None = None
) -> None:
    """Refuse an action outside the stage's window (opens <= now < closes, local time), where
    `closes` is the deadline that applies to the application (see deadlines.closes_for)."""
    deadlines.check_open(prospectus, stage, now, closes)


def reference_for(round_: Round, council_code: str, adopted_from_model_id: int | None) -> str:
    base = f"{round_.slug}/{council_code}"
    return base if adopted_from_model_id is None else f"{base}/adopts-{adopted_from_model_id}"


def start_application(
    session: Session,
    *,
    round_: Round,
    council_code: str,
    actor: str,
    now: datetime,
    answers: dict[str, Any] | None = None,
    bid_answers: dict[str, Any] | None = None,
    adopted_from_model_id: int | None = None,
) -> tuple[Application, bool]:
    """Open a draft EOI for a council; returns (application, created).

    Persists the application in EOI_DRAFT with any starting answers (validated as a draft),
    then its audit event. Starting again returns the existing application unchanged.
    """
    prospectus = prospectus_of(round_)
    council = session.get(Council, council_code)
    if council is None:
        raise NotFound(f"no council with code {council_code!r} in the register")
    types = prospectus.eligibility.council_types
    if adopted_from_model_id is None and types is not None and council.type not in types:
        raise CbflowError(
            f"{council.name} ({council.type_name}) is not eligible for {prospectus.id}: "
            f"the round is open to {', '.join(types)}"
        )
    reference = reference_for(round_, council_code, adopted_from_model_id)
    existing = session.exec(select(Application).where(Application.reference == reference)).first()
    if existing is not None:
        return existing, False
    councils = council_codes(session)
    eoi = validate_answers(
        prospectus.stages.eoi.form, answers or {}, complete=False, councils=councils
    )
    bid = (
        validate_answers(
            prospectus.stages.bid.form, bid_answers or {}, complete=False, councils=councils
        )
        if prospectus.stages.bid
        else {}
    )
    assert round_.id is not None
    application = Application(
        reference=reference,
        round_id=round_.id,
        council_code=council_code,
        state=AppState.EOI_DRAFT.value,
        eoi_answers=eoi,
        bid_answers=bid,
        adopted_from_model_id=adopted_from_model_id,
        created_at=now,
        prospectus_version=round_.prospectus_version,
    )
    session.add(application)
    session.flush()
    assert application.id is not None
    if adopted_from_model_id is None:  # an adoption is a route of its own, beside the round's
        partnerships.add_lead(session, application=application, round_=round_, actor=actor, now=now)
    record(
        session,
        entity="application",
        entity_id=application.id,
        action="start",
        actor=actor,
        now=now,
        to_state=AppState.EOI_DRAFT.value,
        reason=f"adopting model {adopted_from_model_id}" if adopted_from_model_id else "",
    )
    return application, True


class CouncilCodes(Container[str]):
    """The council register as the forms check answers against it: each code an answer names
    is looked up once, by its key, rather than the whole register read for every submission."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self._known: dict[str, bool] = {}

    def __contains__(self, code: object) -> bool:
        if not isinstance(code, str):
            return False
        if code not in self._known:
            self._known[code] = self.session.get(Council, code) is not None
        return self._known[code]


def council_codes(session: Session) -> CouncilCodes:
    """The register's codes for this session (a batch of submissions shares the lookups)."""
    codes: CouncilCodes | None = session.info.get("council_codes")
    if codes is None:
        codes = session.info["council_codes"] = CouncilCodes(session)
    return codes


def stored_draft(application: Application, stage: Stage) -> drafts.Stored:
    """A form's draft as the application holds it: answers, version, each answer's last change."""
    if stage == "eoi":
        answers, version, changes = (
            application.eoi_answers,
            application.eoi_version,
            application.eoi_changes,
        )
    else:
        answers, version, changes = (
            application.bid_answers,
            application.bid_version,
            application.bid_changes,
        )
    return drafts.Stored(dict(answers), version, dict(changes))


def _editable(session: Session, application: Application, stage: Stage, now: datetime) -> Form:
    """The stage's form, if its draft can be changed now."""
    round_ = session.get(Round, application.round_id)
    assert round_ is not None
    prospectus = prospectus_of(round_)
    form = form_of(prospectus, stage)
    if not stage_open_to_change(application, stage):
        if stage == "eoi":
            raise CbflowError(f"{application.reference}: the EOI can no longer be changed")
        raise CbflowError(
            f"{application.reference}: no bid can be drafted in state {application.state}"
        )
    check_window(prospectus, stage, now, deadlines.closes_for(session, application, stage))
    return form


def save_answers(
    session: Session,
    *,
    application: Application,
    stage: Stage,
    answers: Mapping[str, Any],
    questions: Collection[str],
    base: drafts.Base | None,
    actor: str,
    now: datetime,
) -> drafts.Saved:
    """Save a page's answers to `questions` (absent or None in `answers`: no answer) into the
    draft, merged as cbflow.services.drafts describes: only the answers the person changed are
    written, into the answers as they are in the database now; an answer a colleague changed
    since the page's `base` as well raises EditConflict and nothing is written.

    Checks the draft can still be changed and the window is open, validates the answers as a
    draft (ValidationFailed, per question) and merges them, all from the application as read
    before; then reads it afresh under a lock (waiting a bounded time: past it, sqlalchemy's
    OperationalError), checks again, and merges again only if a colleague's save changed the
    version meanwhile: the lock, which every save of the database waits for on SQLite, is held
    for the writing alone. Persists, when an answer changed: the move of an invited
    application to BID_DRAFT with its audit event, the answers with the form's next version and
    each changed answer's version, author and time, then an audit event `save_<stage>` whose
    reason lists the questions changed. A save that changes nothing writes nothing."""
    form = _editable(session, application, stage, now)
    planned = _merged(session, application, form, stage, answers, questions, base, actor)
    lock_for_update(session, application)
    form = _editable(session, application, stage, now)
    merge = planned
    if stored_draft(application, stage).version != planned.stored.version:
        merge = _merged(session, application, form, stage, answers, questions, base, actor)
    saved = _store(
        session,
        application,
        form,
        stage,
        merge.stored,
        merge.cleaned,
        base,
        merge.unseen,
        actor,
        now,
    )
    return replace(saved, digests=drafts.digests(merge.given, questions))


@dataclass(frozen=True)
class _Merge:
    stored: drafts.Stored
    given: dict[str, Any]  # the person's answers as the draft would store them
    cleaned: dict[str, Any]  # the draft to store
    unseen: list[drafts.Change]


def _merged(
    session: Session,
    application: Application,
    form: Form,
    stage: Stage,
    answers: Mapping[str, Any],
    questions: Collection[str],
    base: drafts.Base | None,
    actor: str,
) -> _Merge:
    """The page's answers merged into the draft as `application` holds it (EditConflict,
    ValidationFailed as save_answers says); writes nothing."""
    councils = council_codes(session)
    stored = stored_draft(application, stage)
    # the person's answers as the draft would store them (hidden ones dropped, money tidied)
    proposed = {q: v for q, v in stored.answers.items() if q not in questions}
    proposed |= {q: answers[q] for q in questions if answers.get(q) is not None}
    given = validate_answers(form, proposed, complete=False, councils=councils)
    merged, unseen = drafts.merge(stored, given, questions, base, actor)
    cleaned = validate_answers(form, merged, complete=False, councils=councils)
    return _Merge(stored, given, cleaned, unseen)


def _store(
    session: Session,
    application: Application,
    form: Form,
    stage: Stage,
    stored: drafts.Stored,
    cleaned: dict[str, Any],
    base: drafts.Base | None,
    unseen: list[drafts.Change],
    actor: str,
    now: datetime,
) -> drafts.Saved:
    changed = drafts.changed_questions(stored.answers, cleaned, [q.id for q in form.questions()])
    if not changed:
        return drafts.Saved(drafts.page_version(base, unseen, stored.version), [], unseen)
    if stage == "bid" and application.state == AppState.INVITED:
        transition(
            session, application, AppState.BID_DRAFT, actor=actor, now=now, reason="bid started"
        )
    version, changes = drafts.next_changes(stored, changed, actor, now)
    if stage == "eoi":
        application.eoi_answers, application.eoi_version = cleaned, version
        application.eoi_changes = changes
    else:
        application.bid_answers, application.bid_version = cleaned, version
        application.bid_changes = changes
    session.add(application)
    assert application.id is not None
    record(
        session,
        entity="application",
        entity_id=application.id,
        action=f"save_{stage}",
        actor=actor,
        now=now,
        reason=drafts.reason(changed),
    )
    session.flush()
    return drafts.Saved(drafts.page_version(base, unseen, version), changed, unseen)


def save_draft(
    session: Session,
    *,
    application: Application,
    stage: Stage,
    answers: dict[str, Any],
    actor: str,
    now: datetime,
) -> Application:
    """Replace a draft's answers (validated as a draft), as a script does: no page, so no
    version to check. Reads the application afresh under a lock; persists, when an answer
    changed, what save_answers persists (an invited application's move to BID_DRAFT, the
    answers with the next version and the history of the changed answers, the audit event)."""
    lock_for_update(session, application)
    form = _editable(session, application, stage, now)
    cleaned = validate_answers(form, answers, complete=False, councils=council_codes(session))
    stored = stored_draft(application, stage)
    _store(session, application, form, stage, stored, cleaned, None, [], actor, now)
    return application


Concern = Literal["partnership", "partners"]  # the page where a problem is put right


def readiness(
    session: Session, application: Application, stage: Stage
) -> list[tuple[str, Concern]]:
    """What, beyond its answers, stops the stage's form being submitted, each with the page
    that puts it right: the partnership's councils (at the EOI), the partners' contributions
    (at the stage the prospectus asks for them). Each is a sentence without its full stop."""
    found: list[tuple[str, Concern]] = []
    if stage == "eoi":
        found += [
            (p, "partnership") for p in partnerships.submission_problems(session, application)
        ]
    found += [
        (p, "partners") for p in contributions.submission_problems(session, application, stage)
    ]
    return found


class SignOffRequired(CbflowError):
    """The form is submitted by the council's certifier's approval, not by an applicant."""


class NotReadyToSubmit(CbflowError):
    """The application is not ready to submit: the reasons, in order, and for each the page
    that puts it right."""

    def __init__(self, found: list[tuple[str, Concern]]) -> None:
        self.problems = [text for text, _ in found]
        self.concerns = [concern for _, concern in found]
        super().__init__("; ".join(self.problems))


def submit(
    session: Session,
    *,
    application: Application,
    stage: Stage,
    actor: str,
    now: datetime,
    answers: dict[str, Any] | None = None,
    certified: bool = False,
) -> tuple[Application, bool]:
    """Submit the EOI or the bid; returns (application, newly_submitted). Where the
    prospectus asks for sign-off, only the certifier's approval submits (`certified`, from
    services.signoff); anyone else is refused with SignOffRequired.

    Checks, in order: the window is open in the round's time zone, the answers are complete
    and valid. Persists the answers, the submission time, the requested support (pence) and the
    state change with its audit event. Submitting again after success changes nothing: a retried
    or double-clicked submission is one submission.
    """
    submitted_state = AppState.EOI_SUBMITTED if stage == "eoi" else AppState.BID_SUBMITTED
    # a second request racing this one then sees this submission instead of making another
    lock_for_update(session, application)
    already = application.eoi_submitted_at if stage == "eoi" else application.bid_submitted_at
    if already is not None:
        return application, False
    round_ = session.get(Round, application.round_id)
    assert round_ is not None
    prospectus = prospectus_of(round_)
    check_window(prospectus, stage, now, deadlines.closes_for(session, application, stage))
    if prospectus.sign_off is not None and stage in prospectus.sign_off.stages and not certified:
        raise SignOffRequired(
            f"{prospectus.title} asks for sign-off by the council's "
            f"{prospectus.sign_off.role.lower()}: send it to your certifier to approve"
        )
    found = readiness(session, application, stage)
    if found:
        raise NotReadyToSubmit(found)
    if stage == "bid" and application.state == AppState.INVITED:
        transition(
            session, application, AppState.BID_DRAFT, actor=actor, now=now, reason="bid started"
        )
    form = form_of(prospectus, stage)
    given = (
        answers
        if answers is not None
        else (application.eoi_answers if stage == "eoi" else application.bid_answers)
    )
    cleaned = validate_answers(form, given, complete=True, councils=council_codes(session))
    if stage == "eoi":
        application.eoi_answers, application.eoi_submitted_at = cleaned, now
    else:
        application.bid_answers, application.bid_submitted_at = cleaned, now
    support = prospectus.support_question()
    if support is not None and support in cleaned:
        application.support_requested_pence = money_to_pence(parse_money(cleaned[support]))
    # the state change flushes the answers with it, and with its audit event
    transition(
        session, application, submitted_state, actor=actor, now=now, reason=f"{stage} submitted"
    )
    return application, True


def withdraw(
    session: Session, *, application: Application, actor: str, now: datetime, reason: str
) -> Application:
    """Withdraw an application at the council's request. Persists the state change and audit."""
    transition(
        session,
        application,
        AppState.WITHDRAWN,
        actor=actor,
        now=now,
        reason=reason or "withdrawn by the council",
    )
    return application


def get_application(session: Session, reference: str) -> Application:
    application = session.exec(
        select(Application).where(Application.reference == reference)
    ).first()
    if application is None:
        raise NotFound(f"no application {reference!r}")
    return application


def all_answers(application: Application) -> dict[str, Any]:
    """EOI and bid answers together (question ids are unique across a round's applicant forms)."""
    return {**application.eoi_answers, **application.bid_answers}


# ---------------------------------------------------------------------------------------------
# what a council may do with its application now: the portal's pages show these, and its
# posts are refused by them, so a page never offers what its post would refuse

# the states whose bid form is being filled in
BID_STATES = frozenset({AppState.INVITED, AppState.BID_DRAFT})
# returns are made while implementing; afterwards they can still be read
RETURNS_STATES = frozenset({AppState.IMPLEMENTING, AppState.COMPLETED, AppState.PUBLISHED})
STAGE_NAMES: dict[Stage, str] = {"eoi": "Expression of interest", "bid": "Bid"}

ApplicantPage = Literal["returns", "offer", "form"]


def current_stage(application: Application) -> Stage:
    """The form a council is working on: the bid once invited, otherwise the EOI."""
    bid = application.state in BID_STATES or application.state == AppState.BID_SIGN_OFF
    return "bid" if bid or application.bid_answers else "eoi"


def has_stage(application: Application, stage: Stage) -> bool:
    """Whether the council has this stage's form to read or fill in: the EOI always, the bid
    once invited to make one."""
    waiting = application.state == AppState.BID_SIGN_OFF
    return (
        stage == "eoi"
        or application.state in BID_STATES
        or waiting
        or bool(application.bid_answers)
    )


def applicant_page(application: Application) -> ApplicantPage:
    """Where an application's page is: its returns once implementing, its grant offer once
    selected by a released decision, otherwise its current form."""
    if application.state in RETURNS_STATES:
        return "returns"
    if application.state == AppState.SELECTED and application.decided_at is not None:
        return "offer"
    return "form"


def stage_open_to_change(application: Application, stage: Stage) -> bool:
    """Whether the application's state lets the stage's draft change (the window aside)."""
    state = AppState(application.state)
    return state == AppState.EOI_DRAFT if stage == "eoi" else state in BID_STATES


@dataclass(frozen=True)
class ApplicantActions:
    """What the council may do with one stage's form of its application at one moment."""

    stage: Stage
    submitted: bool  # its confirmation and receipt can be seen
    open_to_change: bool  # its state lets the draft change
    closed: bool  # the stage's deadline has passed
    deadline: str  # the deadline as people say it
    can_withdraw: bool  # the application can still be withdrawn
    needs_sign_off: bool = False  # submitted by the council's certifier's approval
    awaiting_sign_off: bool = False  # sent to the certifier, who has not yet answered

    @property
    def stage_name(self) -> str:
        return STAGE_NAMES[self.stage]

    @property
    def can_edit(self) -> bool:
        """Answers can be saved now."""
        return self.open_to_change and not self.closed

    @property
    def can_submit(self) -> bool:
        """An applicant submits it themselves (no sign-off asked for)."""
        return self.can_edit and not self.submitted and not self.needs_sign_off

    @property
    def can_send_for_sign_off(self) -> bool:
        return self.can_edit and not self.submitted and self.needs_sign_off

    @property
    def can_see_receipt(self) -> bool:
        return self.submitted

    @property
    def refusal(self) -> str | None:
        """Why answers cannot be saved now, if they cannot."""
        if self.awaiting_sign_off:
            return (
                f"this {self.stage_name.lower()} is waiting for sign-off: it can be changed "
                "again if the certifier returns it"
            )
        if not self.open_to_change:
            return f"this {self.stage_name.lower()} can no longer be changed"
        if self.closed:
            return f"the deadline has passed: it was {self.deadline}"
        return None


def applicant_actions(
    prospectus: Prospectus,
    application: Application,
    stage: Stage,
    now: datetime,
    closes: datetime | None = None,
) -> ApplicantActions:
    """What the council may do with the stage's form now (CbflowError if the round or the
    application has no such form). `closes`: the deadline that applies to the application
    (deadlines.closes_for), the prospectus's when not given."""
    if not has_stage(application, stage):
        raise CbflowError(f"{application.reference} has no {stage} form")
    form_of(prospectus, stage)
    closes = closes or window_of(prospectus, stage).closes_at(prospectus.zone)
    submitted_at = application.eoi_submitted_at if stage == "eoi" else application.bid_submitted_at
    return ApplicantActions(
        stage=stage,
        submitted=submitted_at is not None,
        open_to_change=stage_open_to_change(application, stage),
        closed=now >= closes,
        deadline=local_deadline(closes, prospectus),
        can_withdraw=AppState.WITHDRAWN in APP_TRANSITIONS[AppState(application.state)],
        needs_sign_off=prospectus.sign_off is not None and stage in prospectus.sign_off.stages,
        awaiting_sign_off=application.state
        == (AppState.EOI_SIGN_OFF if stage == "eoi" else AppState.BID_SIGN_OFF),
    )
