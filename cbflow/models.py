"""Storage: SQLModel tables. Money is integer pence; times are UTC in storage, aware in Python."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Dialect
from sqlmodel import JSON, Column, Field, SQLModel, UniqueConstraint


class UTCDateTime(sa.types.TypeDecorator[datetime]):
    """Aware datetimes only: stored as UTC (timestamptz on PostgreSQL), read back aware.

    SQLite keeps no offset, so a naive datetime read back is UTC by construction; a naive
    datetime written is a bug and is refused rather than guessed at.
    """

    impl = sa.DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime: cbflow stores time-zone-aware times only")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _when(nullable: bool = True) -> Any:
    return Field(default=None, sa_column=Column(UTCDateTime(timezone=True), nullable=nullable))


def _json() -> Any:
    return Field(default_factory=dict, sa_column=Column(JSON, nullable=False))


def _version() -> Any:
    """A counter (a draft's version, see cbflow.services.drafts; a person's session
    generation): rows made before it start at 0."""
    return Field(default=0, sa_column=Column(sa.Integer, nullable=False, server_default="0"))


def _from_one() -> Any:
    """A counter added to a table that had rows, which were all made under its first value (the
    prospectus version a round, an application or a document was made under)."""
    return Field(default=1, sa_column=Column(sa.Integer, nullable=False, server_default="1"))


def _list() -> Any:
    return Field(default_factory=list, sa_column=Column(JSON, nullable=False))


def _added_json() -> Any:
    """A JSON column added to a table that had rows: those start with an empty one."""
    return Field(
        default_factory=dict,
        sa_column=Column(JSON, nullable=False, server_default=sa.text("'{}'")),
    )


class Council(SQLModel, table=True):
    code: str = Field(primary_key=True, max_length=8)
    name: str
    official_name: str
    type: str = Field(index=True, max_length=8)
    type_name: str
    parent_county: str | None = None
    region: str = Field(index=True)
    gss_code: str
    ecode: str | None = None


class User(SQLModel, table=True):
    """A person: council applicant, assessor, programme staff or administrator."""

    id: int | None = Field(default=None, primary_key=True)
    email: str = Field(unique=True, index=True)
    name: str
    role: str = Field(index=True)
    council_code: str | None = Field(default=None, foreign_key="council.code")
    region: str | None = None
    # a support provider's organisation, as the prospectus's support offers name it (role
    # "provider"): they accept or decline requests for their organisation's offers only
    provider: str | None = None
    # sessions carry the generation they began in; signing out moves it on, ending every one
    session_generation: int = _version()


class Round(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    slug: str = Field(unique=True, index=True)
    title: str
    state: str = Field(index=True)
    prospectus_source: str  # the YAML as launched: a round is self-contained
    source_sha256: str
    launched_at: datetime = Field(sa_column=Column(UTCDateTime(timezone=True), nullable=False))
    launched_by: str
    # the prospectus in force: 1 as launched, N after N-1 amendments (see ProspectusVersion);
    # prospectus_source and source_sha256 are always those of this version
    prospectus_version: int = _from_one()


class Application(SQLModel, table=True):
    __table_args__ = (UniqueConstraint("reference"),)

    id: int | None = Field(default=None, primary_key=True)
    reference: str  # "<round>/<council>", or ".../adopts-<model>" for an adoption
    round_id: int = Field(foreign_key="round.id", index=True)
    council_code: str = Field(foreign_key="council.code", index=True)
    state: str = Field(index=True)
    eoi_answers: dict[str, Any] = _json()
    bid_answers: dict[str, Any] = _json()
    sift_results: dict[str, Any] = _json()  # rule id -> {"passed": bool, "on_fail": ...}
    # several people of the council edit the drafts at once: each save that changes a form's
    # answers adds one to its version and notes, per question, who changed it and when
    eoi_version: int = _version()
    bid_version: int = _version()
    # question id -> {"version", "by", "at"} of the answer's last change
    eoi_changes: dict[str, Any] = _added_json()
    bid_changes: dict[str, Any] = _added_json()
    eoi_submitted_at: datetime | None = _when()
    bid_submitted_at: datetime | None = _when()
    support_requested_pence: int | None = Field(default=None, sa_type=sa.BigInteger)
    total_score: str | None = None  # exact decimal as text, percentage of the maximum
    rank: int | None = None
    reserve_position: int | None = None
    decision_reason: str | None = None
    decided_at: datetime | None = _when()  # set by the selection, not by the shortlist
    # the grant offer's acceptance in the portal: when, and the email of the person who accepted
    offer_accepted_at: datetime | None = _when()
    offer_accepted_by: str | None = None
    # no foreign key: a model points back at its application, and a cycle of keys would make
    # table creation order ambiguous
    adopted_from_model_id: int | None = Field(default=None, index=True)
    created_at: datetime = Field(sa_column=Column(UTCDateTime(timezone=True), nullable=False))
    # a partnership's name for its place ("Greater Manchester"); None for a council on its own
    place_name: str | None = None
    # where the prospectus asks for sign-off: the certifier the council named, and who sent the
    # application to them when (cleared when the certifier approves or returns it)
    certifier_id: int | None = Field(default=None, foreign_key="user.id")
    sign_off_requested_at: datetime | None = _when()
    sign_off_requested_by: str | None = None
    # the prospectus version in force when the application was started
    prospectus_version: int = _from_one()
    # "competitive": through the round's windows; "adoption": a council adopting a model through
    # the rolling adoption route (its light form is the eoi_* columns; staff approve or return it)
    route: str = Field(
        default="competitive",
        sa_column=Column(sa.String(20), nullable=False, server_default="competitive"),
    )
    # a selected place shares its returns' figures with the councils following it, unless it
    # says otherwise
    share_returns: bool = Field(
        default=True, sa_column=Column(sa.Boolean, nullable=False, server_default=sa.true())
    )


class ApplicationMember(SQLModel, table=True):
    """A council in an application: its lead (the council that started it, also
    `Application.council_code`) or a member council the lead named, which confirms its
    membership itself. A council belongs to at most one application in a round."""

    __table_args__ = (UniqueConstraint("round_id", "council_code"),)

    id: int | None = Field(default=None, primary_key=True)
    round_id: int = Field(foreign_key="round.id", index=True)
    application_id: int = Field(foreign_key="application.id", index=True)
    council_code: str = Field(foreign_key="council.code", index=True)
    lead: bool = False
    added_at: datetime = Field(sa_column=Column(UTCDateTime(timezone=True), nullable=False))
    added_by: str
    # the lead is confirmed as it starts the application; a member when one of its officers says so
    confirmed_at: datetime | None = _when()
    confirmed_by: str | None = None


class PartnerContribution(SQLModel, table=True):
    """A partner organisation of an application's place (police, health, fire and rescue ...)
    and what it puts into the pooled budget each year, as the council entered it. The partner's
    named contact confirms or declines it through a single-use link; changing the amounts or the
    contact after that asks them again."""

    id: int | None = Field(default=None, primary_key=True)
    application_id: int = Field(foreign_key="application.id", index=True)
    organisation: str
    partner_type: str  # one of the prospectus's partner types
    contact_name: str
    contact_email: str
    # financial year ("2012-13") -> whole pence, as asked of the partner
    amounts: dict[str, Any] = _json()
    status: str = Field(default="awaiting", index=True)  # awaiting | confirmed | declined
    decline_reason: str | None = None
    # the single-use link's token, hashed (sha256 hex); None once used or before it is sent
    token_hash: str | None = Field(default=None, index=True)
    token_expires_at: datetime | None = _when()
    asked_at: datetime | None = _when()  # when the link was last sent
    responded_at: datetime | None = _when()
    responded_by: str | None = None  # the name the contact gave when answering
    version: int = _version()  # each change by the council; a stale edit is refused
    created_at: datetime = Field(sa_column=Column(UTCDateTime(timezone=True), nullable=False))
    created_by: str


class Assignment(SQLModel, table=True):
    __table_args__ = (UniqueConstraint("application_id", "assessor_id"),)

    id: int | None = Field(default=None, primary_key=True)
    application_id: int = Field(foreign_key="application.id", index=True)
    assessor_id: int = Field(foreign_key="user.id", index=True)
    submitted_at: datetime | None = _when()
    # scores saved to come back to, until submitted: criterion id -> {"score", "justification"}
    draft: dict[str, Any] = Field(
        default_factory=dict,
        sa_column=Column(JSON, nullable=False, server_default=sa.text("'{}'")),
    )


class Score(SQLModel, table=True):
    __table_args__ = (UniqueConstraint("assignment_id", "criterion_id"),)

    id: int | None = Field(default=None, primary_key=True)
    assignment_id: int = Field(foreign_key="assignment.id", index=True)
    criterion_id: str
    score: int
    justification: str = ""


class Conflict(SQLModel, table=True):
    """An assessor's declared conflict of interest with a council: they assess none of its
    applications."""

    __table_args__ = (UniqueConstraint("assessor_id", "council_code"),)

    id: int | None = Field(default=None, primary_key=True)
    assessor_id: int = Field(foreign_key="user.id", index=True)
    council_code: str = Field(foreign_key="council.code", index=True)
    reason: str
    declared_at: datetime = Field(sa_column=Column(UTCDateTime(timezone=True), nullable=False))


class ModerationTask(SQLModel, table=True):
    __table_args__ = (UniqueConstraint("application_id", "criterion_id"),)

    id: int | None = Field(default=None, primary_key=True)
    application_id: int = Field(foreign_key="application.id", index=True)
    criterion_id: str
    spread: int
    moderated_score: int | None = None
    reason: str | None = None
    moderated_by: str | None = None
    resolved_at: datetime | None = _when()


class MilestoneRecord(SQLModel, table=True):
    __table_args__ = (UniqueConstraint("application_id", "milestone_id"),)

    id: int | None = Field(default=None, primary_key=True)
    application_id: int = Field(foreign_key="application.id", index=True)
    milestone_id: str
    title: str
    due: date
    met_on: date | None = None


class ReturnRecord(SQLModel, table=True):
    __table_args__ = (UniqueConstraint("application_id", "period"),)

    id: int | None = Field(default=None, primary_key=True)
    application_id: int = Field(foreign_key="application.id", index=True)
    period: int  # 1, 2, ... in order
    period_start: date
    period_end: date
    due: datetime = Field(sa_column=Column(UTCDateTime(timezone=True), nullable=False))
    answers: dict[str, Any] = _json()  # as submitted
    draft: dict[str, Any] = _added_json()  # saved to come back to, until submitted
    draft_version: int = _version()
    draft_changes: dict[str, Any] = _added_json()  # as eoi_changes
    submitted_at: datetime | None = _when()
    chased_at: datetime | None = _when()
    payment_pence: int | None = Field(default=None, sa_type=sa.BigInteger)


class PublishedModel(SQLModel, table=True):
    __table_args__ = (UniqueConstraint("application_id", "version"),)

    id: int | None = Field(default=None, primary_key=True)
    application_id: int = Field(foreign_key="application.id", index=True)
    round_id: int = Field(foreign_key="round.id", index=True)
    version: int
    bundle: dict[str, Any] = _json()  # carried-over answers, milestones, documents
    # in the place's words: what changed since the version before (and the results so far)
    changes: str = Field(default="", sa_column=Column(sa.Text, nullable=False, server_default=""))
    # the milestone this version was published at; None for version 1 (at selection) and others
    milestone_id: str | None = None
    published_at: datetime = Field(sa_column=Column(UTCDateTime(timezone=True), nullable=False))
    published_by: str


class Document(SQLModel, table=True):
    """A rendered document. The key makes re-runs idempotent: one letter per key, ever."""

    id: int | None = Field(default=None, primary_key=True)
    key: str = Field(unique=True, index=True)  # "<round>/<kind>/<council or round>"
    round_id: int = Field(foreign_key="round.id", index=True)
    application_id: int | None = Field(default=None, foreign_key="application.id", index=True)
    kind: str = Field(index=True)
    title: str
    path: str  # relative to the documents folder
    created_at: datetime = Field(sa_column=Column(UTCDateTime(timezone=True), nullable=False))
    prospectus_version: int = _from_one()  # the round's prospectus version when it was issued


class AuditEvent(SQLModel, table=True):
    """Who changed what, when, from which state to which, and why. Written with the change."""

    id: int | None = Field(default=None, primary_key=True)
    entity: str = Field(index=True)  # "round" | "application" | ...
    entity_id: int = Field(index=True)
    action: str
    from_state: str | None = None
    to_state: str | None = None
    actor: str
    reason: str = ""
    at: datetime = Field(sa_column=Column(UTCDateTime(timezone=True), nullable=False))


class MagicLink(SQLModel, table=True):
    """A single-use sign-in link. Only the token's hash is stored: the database cannot sign in."""

    id: int | None = Field(default=None, primary_key=True)
    token_hash: str = Field(unique=True, index=True, max_length=64)
    user_id: int = Field(foreign_key="user.id", index=True)
    created_at: datetime = Field(sa_column=Column(UTCDateTime(timezone=True), nullable=False))
    expires_at: datetime = Field(sa_column=Column(UTCDateTime(timezone=True), nullable=False))
    used_at: datetime | None = _when()


class StartedRun(SQLModel, table=True):
    """A flow run the portal started (a staff action): the pages link to it in the Prefect UI."""

    id: int | None = Field(default=None, primary_key=True)
    flow_run_id: str = Field(unique=True, index=True, max_length=36)
    flow: str
    title: str
    round_id: int | None = Field(default=None, foreign_key="round.id", index=True)
    started_by: str
    started_at: datetime = Field(sa_column=Column(UTCDateTime(timezone=True), nullable=False))


class OutboxMessage(SQLModel, table=True):
    """An e-mail kept for administrators to read, when no SMTP server is configured."""

    id: int | None = Field(default=None, primary_key=True)
    to: str = Field(index=True)
    subject: str
    body: str
    created_at: datetime = Field(sa_column=Column(UTCDateTime(timezone=True), nullable=False))


class QueuedMail(SQLModel, table=True):
    """A message to send by SMTP, queued in the transaction that records what it tells of and
    sent by the stage's mail step once that has committed. The queue, not the step's memory,
    holds it: a mail server that is down fails the step, and its retry (on any worker) sends
    what is still unsent, each message once."""

    id: int | None = Field(default=None, primary_key=True)
    # what queued it: a round's slug, or "programme" (the digests): the mail step of any stage
    # of the round delivers what an earlier run of it left unsent
    batch: str = Field(index=True, max_length=120)
    to: str
    subject: str
    body: str
    # [{"filename", "path", "content_type"}]: documents, read when the message is sent
    attachments: list[dict[str, str]] = _list()
    created_at: datetime = Field(sa_column=Column(UTCDateTime(timezone=True), nullable=False))
    # a sender holds the message until then (a sender that died lets it go when it passes)
    claimed_until: datetime | None = _when()
    sent_at: datetime | None = _when()
    attempts: int = 0
    error: str = ""  # the last refusal; a message refused outright is not tried again
    refused: bool = False


class StageStep(SQLModel, table=True):
    """A step of a stage's flow run that finished, with what it returned: a retry of the run
    (after a crash, on another worker, or from the Prefect UI) resumes after it instead of doing
    it again. Kept for the Prefect runs only; the domain itself never reads them."""

    __table_args__ = (UniqueConstraint("run", "step"),)

    id: int | None = Field(default=None, primary_key=True)
    run: str = Field(index=True, max_length=64)  # the Prefect flow run's id
    step: str = Field(max_length=200)
    result: Any = Field(default=None, sa_column=Column(JSON, nullable=True))
    finished_at: datetime = Field(sa_column=Column(UTCDateTime(timezone=True), nullable=False))


class ProspectusVersion(SQLModel, table=True):
    """Every version of a round's prospectus, kept: version 1 as launched, then each amendment
    staff published, with what changed and why."""

    __table_args__ = (UniqueConstraint("round_id", "version"),)

    id: int | None = Field(default=None, primary_key=True)
    round_id: int = Field(foreign_key="round.id", index=True)
    version: int
    source: str = Field(sa_column=Column(sa.Text, nullable=False))
    sha256: str
    changes: list[str] = _list()  # what changed from the version before, as staff read it
    reason: str = ""
    published_at: datetime = Field(sa_column=Column(UTCDateTime(timezone=True), nullable=False))
    published_by: str


class Submission(SQLModel, table=True):
    """Each submission of an EOI or a bid, kept as submitted. A council that reopens its
    submission before the deadline (where the prospectus allows) and submits again makes
    version 2, which replaces version 1; a reopened version no longer counts."""

    __table_args__ = (UniqueConstraint("application_id", "stage", "version"),)

    id: int | None = Field(default=None, primary_key=True)
    application_id: int = Field(foreign_key="application.id", index=True)
    stage: str  # "eoi" | "bid"
    version: int  # 1, 2, ... in order
    answers: dict[str, Any] = _json()
    submitted_at: datetime = Field(sa_column=Column(UTCDateTime(timezone=True), nullable=False))
    submitted_by: str
    prospectus_version: int = 1
    reopened_at: datetime | None = _when()
    reopened_by: str | None = None


class Extension(SQLModel, table=True):
    """More time for a stage: for one application (`application_id`; seen only by its council
    and staff), or for everyone (no application), given by staff or by the deadline run when
    the portal was degraded in the hours before the deadline (`kind` "degraded", with the
    evidence)."""

    id: int | None = Field(default=None, primary_key=True)
    round_id: int = Field(foreign_key="round.id", index=True)
    stage: str  # "eoi" | "bid"
    application_id: int | None = Field(default=None, foreign_key="application.id", index=True)
    closes_at: datetime = Field(sa_column=Column(UTCDateTime(timezone=True), nullable=False))
    kind: str  # "council" | "everyone" | "degraded"
    reason: str
    evidence: dict[str, Any] = _json()
    granted_by: str
    granted_at: datetime = Field(sa_column=Column(UTCDateTime(timezone=True), nullable=False))


class Clarification(SQLModel, table=True):
    """A question an assessor or staff member asks a council about named questions of its
    submitted bid (or EOI, in a round without bids), with a date to answer by. The council may
    change only those answers and explains why; both versions are kept."""

    id: int | None = Field(default=None, primary_key=True)
    round_id: int = Field(foreign_key="round.id", index=True)
    application_id: int = Field(foreign_key="application.id", index=True)
    stage: str  # the form its questions belong to: "bid", or "eoi" in a round without bids
    question_ids: list[str] = _list()
    question: str = Field(sa_column=Column(sa.Text, nullable=False))
    answer_by: datetime = Field(sa_column=Column(UTCDateTime(timezone=True), nullable=False))
    # open | awaiting_sign_off | answered | lapsed
    state: str = Field(default="open", index=True)
    asked_by: str
    asked_at: datetime = Field(sa_column=Column(UTCDateTime(timezone=True), nullable=False))
    original: dict[str, Any] = _json()  # question id -> the answer as submitted, when asked
    draft: dict[str, Any] = _json()  # the council's changes saved to come back to
    version: int = _version()  # each save of the draft or explanation; a stale save is refused
    changed: dict[str, Any] = _json()  # question id -> the answer as the council changed it
    explanation: str = Field(default="", sa_column=Column(sa.Text, nullable=False))
    answered_at: datetime | None = _when()
    answered_by: str | None = None
    reminded_at: datetime | None = _when()
    lapsed_at: datetime | None = _when()


class Reminder(SQLModel, table=True):
    """An e-mail reminding someone of work still to do before a deadline. The key (round, kind,
    date, recipient and what it is about) makes it go once, whatever runs again."""

    id: int | None = Field(default=None, primary_key=True)
    key: str = Field(unique=True, index=True, max_length=400)
    round_id: int = Field(foreign_key="round.id", index=True)
    application_id: int | None = Field(default=None, foreign_key="application.id", index=True)
    kind: str  # "deadline" | "assessment" | "clarification"
    stage: str  # "eoi" | "bid" | "assessment" | "clarification"
    recipient: str
    on_date: date
    missing: list[str] = _list()  # what was still to do, as the e-mail said
    sent_at: datetime = Field(sa_column=Column(UTCDateTime(timezone=True), nullable=False))


class AvailabilityMinute(SQLModel, table=True):
    """What one portal process answered in one minute: how many requests, how many failed (an
    error of the service's own, 5xx) and how many were slow. A minute of a process that was
    running and answered nothing has a row with zeros: a minute with no row at all is a minute
    the portal was not running."""

    __table_args__ = (UniqueConstraint("minute", "process"),)

    id: int | None = Field(default=None, primary_key=True)
    minute: datetime = Field(
        sa_column=Column(UTCDateTime(timezone=True), nullable=False, index=True)
    )
    process: str = Field(max_length=120)  # host and process id
    requests: int = 0
    failed: int = 0
    slow: int = 0


class Follow(SQLModel, table=True):
    """A council following a selected place while it implements: it sees the place's plan,
    milestones, progress reports and (where the place shares them) its returns' figures, and is
    sent a digest of what is new. Its officers may say the council intends to adopt the model."""

    __table_args__ = (UniqueConstraint("application_id", "council_code"),)

    id: int | None = Field(default=None, primary_key=True)
    application_id: int = Field(foreign_key="application.id", index=True)  # the place followed
    council_code: str = Field(foreign_key="council.code", index=True)  # the follower
    followed_by: str
    followed_at: datetime = Field(sa_column=Column(UTCDateTime(timezone=True), nullable=False))
    intends_to_adopt_at: datetime | None = _when()
    intends_by: str | None = None
    # everything the place published before this moment has been in a digest to this council
    digested_until: datetime | None = _when()


class SupportRequest(SQLModel, table=True):
    """A council asking for one of the support offers of the round's prospectus, with what it is
    for; the offer's provider accepts or declines it."""

    id: int | None = Field(default=None, primary_key=True)
    round_id: int = Field(foreign_key="round.id", index=True)
    offer_id: str = Field(max_length=80, index=True)
    application_id: int = Field(foreign_key="application.id", index=True)
    council_code: str = Field(foreign_key="council.code", index=True)
    what_for: str = Field(sa_column=Column(sa.Text, nullable=False))
    # requested | accepted | declined | withdrawn
    state: str = Field(default="requested", index=True)
    requested_by: str
    requested_at: datetime = Field(sa_column=Column(UTCDateTime(timezone=True), nullable=False))
    decided_by: str | None = None
    decided_at: datetime | None = _when()
    reason: str = Field(default="", sa_column=Column(sa.Text, nullable=False))
    version: int = _version()


class BoardPack(SQLModel, table=True):
    """The programme board's pack across rounds: the figures as computed, and the PDF made of
    them. The key ("2026-12" for a month's scheduled pack) makes a re-run issue it once."""

    id: int | None = Field(default=None, primary_key=True)
    key: str = Field(unique=True, index=True, max_length=80)
    path: str  # relative to the documents folder
    figures: dict[str, Any] = _json()
    created_at: datetime = Field(sa_column=Column(UTCDateTime(timezone=True), nullable=False))
    created_by: str


class StoredFile(SQLModel, table=True):
    """A rendered document or an uploaded file kept in the database (CBFLOW_STORE=database),
    for a deployment whose hosts share only the database. The key is the file's path in the
    data folder ("documents/<round>/<kind>/<name>.pdf", "uploads/<application>/<sha256>")."""

    id: int | None = Field(default=None, primary_key=True)
    key: str = Field(unique=True, index=True, max_length=500)
    size: int
    sha256: str = Field(max_length=64)
    content: bytes = Field(sa_column=Column(sa.LargeBinary, nullable=False))
    created_at: datetime = Field(sa_column=Column(UTCDateTime(timezone=True), nullable=False))


class SignInAsks(SQLModel, table=True):
    """How many sign-in links one client address asked for in one minute, counted here so that
    the portal's processes on every host share the limit (CBFLOW_SIGN_IN_ASKS_PER_MINUTE).
    Minutes gone by are deleted."""

    __table_args__ = (UniqueConstraint("client", "minute"),)

    id: int | None = Field(default=None, primary_key=True)
    client: str = Field(max_length=64)
    minute: datetime = Field(
        sa_column=Column(UTCDateTime(timezone=True), nullable=False, index=True)
    )
    asks: int = 0
