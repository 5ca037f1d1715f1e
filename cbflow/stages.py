"""Stage events: each one a business step with the documents it issues.

These are what the Prefect flows in `flows/` run, what the demo and the benchmark drive, and
what the portal will start. Each event commits its state changes in one transaction, then
renders its pending documents (outside any transaction: rendering is slow), then records them.
Every event is safe to run again: nothing is done or issued twice.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from cbflow import notify
from cbflow.db import session_scope
from cbflow.errors import CbflowError, NotFound
from cbflow.flowlist import (
    BOARD_PACK,
    CLOSE_BIDS,
    CLOSE_EOI,
    COMPLETE_ROUND,
    DECIDE,
    RETURNS_CYCLE,
    SEND_REMINDERS,
    FlowSpec,
)
from cbflow.formatting import long_date
from cbflow.lifecycle import AppState
from cbflow.models import Application, BoardPack, Council, Document, PublishedModel, Round, User
from cbflow.prospectus import Prospectus
from cbflow.render import render_many, render_pdf
from cbflow.services import (
    adoption_route,
    amendments,
    assessment,
    availability,
    board,
    clarifications,
    deadlines,
    following,
    implementation,
    mail,
    reminders,
    replication,
    rounds,
    selection,
    sift,
)
from cbflow.services.audit import record
from cbflow.services.documents import Amendment, Issuer, Pending, record_rendered
from cbflow.services.implementation import return_periods
from cbflow.services.receipts import receipt_messages
from cbflow.settings import Settings, get_settings
from cbflow.steps import DIRECT, Steps
from cbflow.store import get_store
from cbflow.workdays import parse_time_of_day

Progress = Callable[[int], None] | None
SYSTEM = "system:cbflow"
logger = logging.getLogger(__name__)


@dataclass
class Outcome:
    """What a stage event did: counts for the log and the documents it issued."""

    round: str
    stage: str
    counts: dict[str, int] = field(default_factory=dict)
    documents: list[Path] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    # the round's timetable changed (an extension, an amendment): its scheduled runs are to be
    # brought in line with it (flows.deployments.schedule_round)
    timetable_changed: bool = False


def issue(pendings: Sequence[Pending], now: datetime, progress: Progress = None) -> list[Path]:
    """Render pending documents in parallel, then record them (each key once)."""
    if not pendings:
        return []
    paths = render_many([p.job for p in pendings], progress=progress)
    with session_scope() as session:
        record_rendered(session, pendings, now)
    return paths


Build = Callable[[Session, Round, Issuer], list[Pending]]


def _documents(
    steps: Steps, name: str, slug: str, now: datetime, build: Build, progress: Progress
) -> list[Path]:
    """The documents step: those `build` finds still to issue in the round (an issuer skips a
    key already recorded), rendered and recorded a batch at a time."""

    def plan() -> list[Pending]:
        with session_scope() as session:
            round_ = rounds.get_round(session, slug)
            return build(session, round_, Issuer(session, round_, now))

    def issue_batch(pendings: Sequence[Pending]) -> list[str]:
        return [str(path) for path in issue(pendings, now, progress)]

    return [Path(path) for path in steps.documents(name, plan, issue_batch)]


def _mail(outcome: Outcome, steps: Steps, settings: Settings, now: datetime, what: str) -> None:
    """The mail step: send what the stage queued (and anything an earlier run of the round's
    stages left unsent); count those sent, and note each refused and any still waiting."""
    if notify.uses_outbox(settings):
        return
    done = steps.mail("mail", lambda: mail.deliver(settings, outcome.round, now))
    if done.sent:
        outcome.counts["e-mailed"] = outcome.counts.get("e-mailed", 0) + done.sent
    for to, reason in done.refused:
        outcome.notes.append(f"the {what} to {to} was not sent: {reason}")
    if done.waiting:
        note = (
            f"{done.waiting} messages wait to be sent: the mail server could not be reached "
            f"({done.unreachable}); the next run of a stage of this round sends them"
        )
        logger.warning("%s: %s", outcome.round, note)
        outcome.notes.append(note)


def _outboxed(outcome: Outcome, messages: int, settings: Settings) -> None:
    """Without SMTP the messages are in the outbox once the domain step has committed."""
    if messages and notify.uses_outbox(settings):
        outcome.counts["e-mailed"] = outcome.counts.get("e-mailed", 0) + messages


def launch(
    source: str,
    path: str,
    *,
    now: datetime,
    actor: str = SYSTEM,
    progress: Progress = None,
    steps: Steps = DIRECT,
) -> Outcome:
    def launch_round() -> list[Any]:
        with session_scope() as session:
            round_, created = rounds.launch_round(
                session, source=source, path=path, actor=actor, now=now
            )
            return [round_.slug, created]

    slug, created = steps.domain("launch the round", launch_round)
    outcome = Outcome(slug, "launch", {"created": int(created)})
    outcome.documents = _documents(
        steps,
        "the prospectus",
        slug,
        now,
        lambda session, round_, issuer: issuer.prospectus_document(),
        progress,
    )
    return outcome


def amend_prospectus(
    slug: str,
    source: str,
    path: str,
    reason: str,
    *,
    now: datetime,
    actor: str = SYSTEM,
    progress: Progress = None,
    steps: Steps = DIRECT,
) -> Outcome:
    """Publish an amendment to the round's prospectus: the new version in force, its document
    (version N, with its list of changes; earlier versions' documents are kept), and an e-mail
    to each council officer of each application that the changes concern, saying what changed
    for it. The same file again publishes nothing new (a document not yet issued is issued).
    The caller reschedules the round's deadline runs (flows.deployments.schedule_round)."""
    settings = get_settings()

    def publish_amendment() -> list[int]:
        with session_scope() as session:
            round_ = rounds.get_round(session, slug)
            version, created = amendments.amend(
                session, round_, source=source, path=path, reason=reason, actor=actor, now=now
            )
            messages: list[notify.Message] = []
            if created:
                changes = amendments.changes_of(session, round_, version.version)
                messages = amendments.messages(session, round_, version, changes, settings)
                mail.queue(messages, settings=settings, session=session, now=now, batch=slug)
            return [version.version, int(created), len(messages)]

    number, created, messages = steps.domain("publish the amendment", publish_amendment)

    def document(session: Session, round_: Round, issuer: Issuer) -> list[Pending]:
        version = amendments.version_of(session, round_, number)
        amendment = (
            Amendment(version.version, version.published_at, version.changes)
            if version is not None and version.version > 1
            else None
        )
        return issuer.prospectus_document(amendment)

    outcome = Outcome(slug, "amendment", {"version": number, "new": created})
    outcome.documents = _documents(
        steps, "the prospectus as amended", slug, now, document, progress
    )
    _outboxed(outcome, messages, settings)
    _mail(outcome, steps, settings, now, "amendment e-mail")
    return outcome


def issue_receipts(
    slug: str, *, now: datetime, progress: Progress = None, steps: Steps = DIRECT
) -> Outcome:
    """Receipts for every EOI and bid submitted and not yet acknowledged, in batches.

    Each receipt issued for the first time is e-mailed to whoever submitted, the PDF attached:
    the message is queued (or, without SMTP, put in the outbox) in the transaction that records
    the receipt, and sent by the mail step after. A re-run, which finds the receipt recorded,
    never queues it again; a message the mail server could not take waits for the next run.
    """
    settings = get_settings()
    queued: list[int] = []  # messages queued by each batch (batches may run side by side)

    def plan(session: Session, round_: Round, issuer: Issuer) -> list[Pending]:
        apps = rounds.applications_of(session, round_)
        pendings = issuer.receipts("eoi", [a for a in apps if a.eoi_submitted_at is not None])
        if issuer.prospectus.stages.bid:
            pendings += issuer.receipts("bid", [a for a in apps if a.bid_submitted_at is not None])
        return pendings

    def issue_batch(pendings: Sequence[Pending]) -> list[str]:
        paths = render_many([p.job for p in pendings], progress=progress)
        with session_scope() as session:
            recorded = record_rendered(session, pendings, now)
            composed = receipt_messages(session, recorded, settings)
            mail.queue(composed, settings=settings, session=session, now=now, batch=slug)
        queued.append(len(composed))
        return [str(path) for path in paths]

    def planned() -> list[Pending]:
        with session_scope() as session:
            round_ = rounds.get_round(session, slug)
            return plan(session, round_, Issuer(session, round_, now))

    documents = steps.documents("receipts", planned, issue_batch)
    outcome = Outcome(slug, "receipts", {"receipts": len(documents)})
    outcome.documents = [Path(path) for path in documents]
    _outboxed(outcome, sum(queued), settings)
    _mail(outcome, steps, settings, now, "receipt e-mail")
    return outcome


def extend_if_degraded(
    slug: str,
    stage: deadlines.Stage,
    *,
    now: datetime,
    actor: str = SYSTEM,
    steps: Steps = DIRECT,
) -> Outcome | None:
    """At a stage's deadline, where the prospectus asks and the portal was degraded before it
    (see services.availability): extend the window for everyone instead of closing it, and
    tell every council with the form still to submit. Returns what it did, or None (nothing
    done: the deadline is to close as usual)."""
    settings = get_settings()

    def extend() -> list[Any] | None:
        with session_scope() as session:
            round_ = rounds.get_round(session, slug)
            original = deadlines.stage_closes(session, round_, stage)
            extension = availability.degraded_extension(session, round_, stage, now, actor)
            if extension is None:
                return None
            messages = deadlines.everyone_told(
                session, round_, stage, extension, original, settings
            )
            mail.queue(messages, settings=settings, session=session, now=now, batch=slug)
            return [f"{stage} deadline extended for everyone: {extension.reason}", len(messages)]

    label = "EOI" if stage == "eoi" else stage
    done = steps.domain(f"extend the {label} deadline if the portal was degraded", extend)
    if done is None:
        return None
    note, messages = done
    logger.warning("%s: %s", slug, note)
    outcome = Outcome(slug, f"{stage}-extended", notes=[note], timetable_changed=True)
    _outboxed(outcome, messages, settings)
    _mail(outcome, steps, settings, now, "e-mail")
    return outcome


def send_reminders(slug: str, *, now: datetime, steps: Steps = DIRECT) -> Outcome:
    """E-mail the reminders due at `now` (see services.reminders): to the officers of every
    council whose EOI or bid is still a draft (and its certifier, where sign-off is awaited) and
    to every assessor with scores unsubmitted. Each reminder is recorded with its message (in
    the outbox, or queued for SMTP) in one transaction, so a re-run sends nothing again."""
    settings = get_settings()

    def remind() -> list[Any]:
        with session_scope() as session:
            round_ = rounds.get_round(session, slug)
            rows, messages = reminders.send(session, round_, now, settings)
            mail.queue(messages, settings=settings, session=session, now=now, batch=slug)
            return [[row.stage for row in rows], len(messages)]

    stages_reminded, messages = steps.domain("reminders due", remind)
    counts: dict[str, int] = {}
    for stage in stages_reminded:
        counts[f"reminders ({stage})"] = counts.get(f"reminders ({stage})", 0) + 1
    outcome = Outcome(slug, "reminders", counts)
    _outboxed(outcome, messages, settings)
    _mail(outcome, steps, settings, now, "reminder")
    return outcome


def send_digests(*, now: datetime, steps: Steps = DIRECT) -> Outcome:
    """E-mail each follower council's officers what is new at the places it follows, where its
    digest is due (see services.following): recorded with the messages (outbox or queue) in one
    transaction, so a re-run sends nothing again."""
    settings = get_settings()

    def digests() -> list[int]:
        with session_scope() as session:
            done = following.send_digests(session, now, settings)
            mail.queue(done.messages, settings=settings, session=session, now=now, batch=BOARD)
            return [len(done.follows), len(done.messages)]

    follows, messages = steps.domain("digests due", digests)
    outcome = Outcome(BOARD, "digests", {"follows with news": follows})
    _outboxed(outcome, messages, settings)
    _mail(outcome, steps, settings, now, "digest")
    return outcome


def close_eoi(
    slug: str,
    *,
    now: datetime,
    actor: str = SYSTEM,
    progress: Progress = None,
    steps: Steps = DIRECT,
) -> Outcome:
    """Close expressions of interest and sift them, unless the portal's degraded minutes before
    the deadline extend it instead."""
    extended = extend_if_degraded(slug, "eoi", now=now, actor=actor, steps=steps)
    if extended is not None:
        return extended

    def close() -> dict[str, int]:
        with session_scope() as session:
            round_ = rounds.get_round(session, slug)
            return dict(sift.close_eoi(session, round_=round_, actor=actor, now=now))

    counts = steps.domain("close EOI and sift", close)
    receipts = issue_receipts(slug, now=now, progress=progress, steps=steps)
    outcome = Outcome(slug, "eoi-close", counts, receipts.documents, receipts.notes)
    return outcome


def invite_to_bid(
    slug: str,
    *,
    now: datetime,
    chosen: Sequence[str] | None = None,
    actor: str = SYSTEM,
    progress: Progress = None,
    steps: Steps = DIRECT,
) -> Outcome:
    """Confirm the shortlist (the references staff chose, or the proposed shortlist) and issue
    invitations and regret letters."""

    def confirm() -> list[int]:
        with session_scope() as session:
            round_ = rounds.get_round(session, slug)
            if chosen is None:
                picked = sift.propose_shortlist(session, round_=round_)
            else:
                picked = [
                    a for a in rounds.applications_of(session, round_) if a.reference in set(chosen)
                ]
            invited, regretted = sift.confirm_shortlist(
                session, round_=round_, chosen=picked, actor=actor, now=now
            )
            return [len(invited), len(regretted)]

    invited, regretted = steps.domain("confirm the shortlist", confirm)

    def letters(session: Session, round_: Round, issuer: Issuer) -> list[Pending]:
        pendings = issuer.invitations(
            rounds.applications_of(
                session, round_, AppState.INVITED, AppState.BID_DRAFT, AppState.BID_SUBMITTED
            )
        )
        return pendings + issuer.regrets(sift.regretted(session, round_))

    outcome = Outcome(slug, "invite", {"invited": invited, "not shortlisted": regretted})
    outcome.documents = _documents(
        steps, "invitations and regret letters", slug, now, letters, progress
    )
    return outcome


def close_bids(
    slug: str,
    *,
    now: datetime,
    actor: str = SYSTEM,
    progress: Progress = None,
    steps: Steps = DIRECT,
) -> Outcome:
    """Close bids, unless the portal's degraded minutes before the deadline extend it instead."""
    extended = extend_if_degraded(slug, "bid", now=now, actor=actor, steps=steps)
    if extended is not None:
        return extended

    def close() -> int:
        with session_scope() as session:
            round_ = rounds.get_round(session, slug)
            return sift.close_bids(session, round_=round_, actor=actor, now=now)

    submitted = steps.domain("close bids", close)
    receipts = issue_receipts(slug, now=now, progress=progress, steps=steps)
    return Outcome(slug, "bids-close", {"bids": submitted}, receipts.documents, receipts.notes)


def _assessors(session: Session) -> list[User]:
    return list(session.exec(select(User).where(User.role == "assessor").order_by(col(User.id))))


def assign_assessors(
    slug: str, *, now: datetime, actor: str = SYSTEM, steps: Steps = DIRECT
) -> Outcome:
    def assign() -> list[int]:
        with session_scope() as session:
            round_ = rounds.get_round(session, slug)
            assessors = _assessors(session)
            assigned = assessment.assign_assessors(
                session, round_=round_, assessors=assessors, actor=actor, now=now
            )
            return [len(assigned), len(assessors)]

    applications, assessors = steps.domain("assign assessors", assign)
    return Outcome(
        slug, "assessment-assign", {"applications": applications, "assessors": assessors}
    )


def open_moderation(
    slug: str, *, now: datetime, actor: str = SYSTEM, steps: Steps = DIRECT
) -> Outcome:
    def moderation() -> int:
        with session_scope() as session:
            round_ = rounds.get_round(session, slug)
            return len(assessment.open_moderation(session, round_=round_, actor=actor, now=now))

    tasks = steps.domain("open moderation", moderation)
    return Outcome(slug, "moderation", {"open moderation tasks": tasks})


def finalise_assessment(
    slug: str,
    *,
    now: datetime,
    actor: str = SYSTEM,
    progress: Progress = None,
    steps: Steps = DIRECT,
) -> Outcome:
    def finalise() -> int:
        with session_scope() as session:
            round_ = rounds.get_round(session, slug)
            return len(assessment.finalise(session, round_=round_, actor=actor, now=now))

    ranked = steps.domain("totals and ranking", finalise)

    def summary(session: Session, round_: Round, issuer: Issuer) -> list[Pending]:
        return issuer.assessment_documents(assessment.results(session, round_), _assessors(session))

    outcome = Outcome(slug, "assessment-finalise", {"ranked": ranked})
    outcome.documents = _documents(
        steps, "assessment summary and moderation pack", slug, now, summary, progress
    )
    return outcome


def decide(
    slug: str,
    *,
    now: datetime,
    actor: str = SYSTEM,
    progress: Progress = None,
    steps: Steps = DIRECT,
) -> Outcome:
    def select_places() -> dict[str, int]:
        with session_scope() as session:
            round_ = rounds.get_round(session, slug)
            decisions = selection.decide(session, round_=round_, actor=actor, now=now)
            # each selected place's model, version 1: its plan as selected
            first = replication.first_versions(session, round_=round_, actor=actor, now=now)
        counts: dict[str, int] = {}
        for d in decisions:
            counts[d.outcome.value] = counts.get(d.outcome.value, 0) + 1
        if first:
            counts["model versions"] = len(first)
        return counts

    counts = steps.domain("selection and decisions", select_places)

    def letters(session: Session, round_: Round, issuer: Issuer) -> list[Pending]:
        decided = [a for a in rounds.applications_of(session, round_) if a.decided_at is not None]
        pendings = issuer.decisions(decided) + issuer.grant_offers(
            a for a in decided if a.state == AppState.SELECTED
        )
        return pendings + issuer.replication_packs(replication.published_models(session, round_))

    outcome = Outcome(slug, "decisions", counts)
    outcome.documents = _documents(
        steps, "decision letters, grant offers and model packs", slug, now, letters, progress
    )
    return outcome


def start_implementation(
    slug: str, *, now: datetime, actor: str = SYSTEM, steps: Steps = DIRECT
) -> Outcome:
    def start() -> int:
        with session_scope() as session:
            round_ = rounds.get_round(session, slug)
            # a place selected since the decisions (a reserve promoted) has its version 1 too
            replication.first_versions(session, round_=round_, actor=actor, now=now)
            return implementation.start_implementation(session, round_=round_, actor=actor, now=now)

    started = steps.domain("start implementation", start)
    return Outcome(slug, "implementation-start", {"places": started})


def returns_cycle(
    slug: str,
    *,
    now: datetime,
    actor: str = SYSTEM,
    progress: Progress = None,
    steps: Steps = DIRECT,
) -> Outcome:
    """Chase overdue returns (one reminder each) and issue each place's progress report."""

    def chase() -> int:
        with session_scope() as session:
            round_ = rounds.get_round(session, slug)
            return len(implementation.chase_overdue(session, round_=round_, actor=actor, now=now))

    chased = steps.domain("chase overdue returns", chase)

    def reports(session: Session, round_: Round, issuer: Issuer) -> list[Pending]:
        places = rounds.applications_of(session, round_, AppState.IMPLEMENTING)
        # every chased return has its chaser (an issuer skips those issued before)
        overdue = [
            record_
            for place in places
            for record_ in implementation.returns_of(session, place)
            if record_.chased_at is not None
        ]
        pendings = issuer.chasers(overdue) + issuer.progress_reports(places)
        # the pack of each version of a model published since (at a milestone, in the portal)
        return pendings + issuer.replication_packs(replication.published_models(session, round_))

    outcome = Outcome(slug, RETURNS_CYCLE.name, {"chased": chased})
    outcome.documents = _documents(
        steps, "chasers, progress reports and model packs", slug, now, reports, progress
    )
    return outcome


def complete(slug: str, *, now: datetime, actor: str = SYSTEM, steps: Steps = DIRECT) -> Outcome:
    def finish() -> int:
        with session_scope() as session:
            round_ = rounds.get_round(session, slug)
            return implementation.complete(session, round_=round_, actor=actor, now=now)

    done = steps.domain("complete the round", finish)
    return Outcome(slug, "complete", {"completed": done})


def publish(
    reference: str,
    *,
    now: datetime,
    actor: str = SYSTEM,
    progress: Progress = None,
    steps: Steps = DIRECT,
) -> Outcome:
    """Publish a place's model (a completed place's final version), issue the pack of each of
    its versions not yet issued, and tell the councils that adopted an earlier version."""
    settings = get_settings()

    def publish_model() -> list[Any]:
        with session_scope() as session:
            application = session.exec(
                select(Application).where(Application.reference == reference)
            ).one()
            round_ = session.get(Round, application.round_id)
            assert round_ is not None and application.id is not None
            model, created = replication.publish_model(
                session, application=application, actor=actor, now=now
            )
            # the councils that adopted an earlier version hear of this one
            messages = replication.newer_messages(session, model, settings) if created else []
            mail.queue(messages, settings=settings, session=session, now=now, batch=round_.slug)
            return [round_.slug, model.version, application.id, len(messages)]

    slug, version, application_id, messages = steps.domain("publish the model", publish_model)

    def packs(session: Session, round_: Round, issuer: Issuer) -> list[Pending]:
        return issuer.replication_packs(replication.versions_of(session, application_id))

    outcome = Outcome(slug, "publish", {"version": version})
    outcome.documents = _documents(steps, "model packs", slug, now, packs, progress)
    _outboxed(outcome, messages, settings)
    _mail(outcome, steps, settings, now, "new version e-mail")
    return outcome


def adopt(
    model_id: int,
    council_code: str,
    *,
    now: datetime,
    actor: str = SYSTEM,
    steps: Steps = DIRECT,
) -> Outcome:
    """A council adopts a published model: through the rolling adoption route while the model's
    round keeps it open (a light form pre-filled with the carried-over answers), otherwise into
    the first round open for expressions of interest that takes the council (a later wave).
    Never into a round whose windows have closed, where the application could never be
    submitted: with neither open, nothing is started (CbflowError, saying why)."""

    def start() -> list[Any]:
        with session_scope() as session:
            model = session.get(PublishedModel, model_id)
            council = session.get(Council, council_code)
            if model is None or council is None:
                raise NotFound(f"no published model {model_id} or no council {council_code!r}")
            route_refused = adoption_route.route_refusal(session, model, council, now)
            if route_refused is None:
                application, created = adoption_route.start(
                    session, model_id=model_id, council_code=council_code, actor=actor, now=now
                )
            else:
                offered = replication.adoption_rounds(session, model, council, now)
                if not offered:
                    raise CbflowError(
                        f"{council.name} cannot adopt model {model_id} now: {route_refused}, "
                        "and no round that takes it is open for expressions of interest"
                    )
                application, created = replication.adopt_model(
                    session,
                    model_id=model_id,
                    council_code=council_code,
                    actor=actor,
                    now=now,
                    into=offered[0],
                )
            round_ = session.get(Round, application.round_id)
            assert round_ is not None
            carried = len(application.eoi_answers) + len(application.bid_answers)
            return [round_.slug, int(created), carried, application.reference]

    slug, created, carried, reference = steps.domain("adopt the model", start)
    outcome = Outcome(slug, "adopt", {"created": created, "answers carried over": carried})
    outcome.notes.append(reference)
    return outcome


def clarifications_due(
    slug: str, *, now: datetime, actor: str = SYSTEM, steps: Steps = DIRECT
) -> Outcome:
    """Remind the councils of the round's clarification requests whose reminder is due (once
    each), and lapse those past their date to answer by, mailing the councils' officers. The
    mail is kept (outbox, or queue for SMTP) in the same transaction and sent by the mail step.
    Run again, it does and sends nothing more."""
    settings = get_settings()

    def due() -> list[int]:
        with session_scope() as session:
            round_ = rounds.get_round(session, slug)
            done = clarifications.due(session, round_=round_, now=now, actor=actor)
            messages = [
                message
                for kind, found in (("reminder", done.reminded), ("lapsed", done.lapsed))
                for clarification in found
                for message in clarifications.messages(session, settings, clarification, kind)
            ]
            mail.queue(messages, settings=settings, session=session, now=now, batch=slug)
            return [len(done.reminded), len(done.lapsed), len(messages)]

    reminded, lapsed, messages = steps.domain("clarification requests due", due)
    outcome = Outcome(slug, "clarifications", {"reminded": reminded, "lapsed": lapsed})
    _outboxed(outcome, messages, settings)
    _mail(outcome, steps, settings, now, "e-mail")
    return outcome


def documents_summary(slug: str) -> dict[str, Any]:
    with session_scope() as session:
        round_ = rounds.get_round(session, slug)
        docs = list(session.exec(select(Document).where(Document.round_id == round_.id)))
    by_kind: dict[str, int] = {}
    for doc in docs:
        by_kind[doc.kind] = by_kind.get(doc.kind, 0) + 1
    return {
        "folder": str(get_settings().documents_dir / slug),
        "by_kind": by_kind,
        "total": len(docs),
    }


LATE = timedelta(minutes=1)  # a deadline run later than this says so in the round's audit


def _duration(span: timedelta) -> str:
    minutes, seconds = divmod(int(span.total_seconds()), 60)
    hours, minutes = divmod(minutes, 60)
    days, hours = divmod(hours, 24)
    parts = [(days, "day"), (hours, "hour"), (minutes, "min"), (seconds, "s")]
    shown = [
        f"{n} {unit}{'s' if n != 1 and unit in ('day', 'hour') else ''}" for n, unit in parts if n
    ]
    return " ".join(shown[:2]) or "0 s"


def record_late_run(slug: str, event: str, due: datetime, ran: datetime) -> str | None:
    """Audit a deadline run that started more than LATE after its time (the flow runner was
    stopped over the deadline and caught up when it came back); returns what was recorded.
    Persists one audit event on the round, before the run's work."""
    if ran - due <= LATE:
        return None
    with session_scope() as session:
        round_ = rounds.get_round(session, slug)
        assert round_.id is not None
        local = due.astimezone(rounds.prospectus_of(round_).zone)
        note = (
            f"{event} ran {_duration(ran - due)} late: it was due at {local:%H:%M:%S} on "
            f"{long_date(local)} ({local:%Z}), when no flow runner was running"
        )
        record(
            session,
            entity="round",
            entity_id=round_.id,
            action="deadline_run_late",
            actor=SYSTEM,
            now=ran,
            reason=note,
        )
    logger.warning("%s: %s", slug, note)
    return note


def deadline_events(prospectus: Prospectus) -> list[tuple[FlowSpec, datetime]]:
    """The events a round's dates trigger, as (flow, when): closing the EOI window and the
    bid window, the decisions, each returns cycle, and the end of implementation."""
    zone = prospectus.zone
    events = [(CLOSE_EOI, prospectus.timetable.eoi.closes_at(zone))]
    if prospectus.stages.bid and prospectus.timetable.bid:
        events.append((CLOSE_BIDS, prospectus.timetable.bid.closes_at(zone)))
    if prospectus.timetable.decision:
        events.append((DECIDE, prospectus.timetable.decision.by_at(zone) - timedelta(hours=12)))
    events += [(RETURNS_CYCLE, due) for _, _, due in return_periods(prospectus)]
    period = prospectus.timetable.implementation
    if period:
        events.append(
            (
                COMPLETE_ROUND,
                datetime.combine(period.ends + timedelta(days=1), time(0), tzinfo=zone),
            )
        )
    return events


# the flows a round's timetable schedules (see round_events): rescheduling a round (an
# amendment, an extension) cancels their scheduled runs that no longer fit and adds the new
TIMETABLE_FLOWS: tuple[FlowSpec, ...] = (
    CLOSE_EOI,
    CLOSE_BIDS,
    DECIDE,
    RETURNS_CYCLE,
    COMPLETE_ROUND,
    SEND_REMINDERS,
)


def round_events(session: Session, round_: Round) -> list[tuple[FlowSpec, datetime]]:
    """The round's deadline events as its prospectus (as amended) and its extensions make them:
    each stage closes at everyone's deadline (extended, where it was) and again at the end of
    each council's own extension, for that application alone. Before each of those deadlines,
    and before the assessment closes, a reminders run at each moment the prospectus's
    `reminders` names (while the window is open)."""
    prospectus = rounds.prospectus_of(round_)
    closes = deadlines.close_moments(session, round_)
    events: list[tuple[FlowSpec, datetime]] = []
    for flow, when in deadline_events(prospectus):
        if flow is CLOSE_EOI or flow is CLOSE_BIDS:
            stage: deadlines.Stage = "eoi" if flow is CLOSE_EOI else "bid"
            events += [(flow, moment) for moment in closes.get(stage, [when])]
        else:
            events.append((flow, when))
    return events + [(SEND_REMINDERS, when) for when in reminder_moments(prospectus, closes)]


def reminder_moments(
    prospectus: Prospectus, closes: dict[deadlines.Stage, list[datetime]]
) -> list[datetime]:
    """Each moment a reminder is due before a deadline (everyone's, and each council's own
    extension), and before the assessment closes; once each, in order."""
    at = parse_time_of_day(get_settings().reminder_time)
    zone, timetable = prospectus.zone, prospectus.timetable
    windows = [(deadlines.window(prospectus, stage), closes[stage]) for stage in closes]
    if timetable.assessment and prospectus.stages.assessment:
        windows.append((timetable.assessment, [timetable.assessment.closes_at(zone)]))
    found: set[datetime] = set()
    for window, ends in windows:
        for end in ends:
            found.update(
                when for _, when in reminders.moments(prospectus, window.opens_at(zone), end, at)
            )
    return sorted(found)


def schedule_generation(session: Session, round_: Round) -> int:
    """How many times the round's timetable has changed (amendments and extensions): part of
    the scheduled runs' idempotency keys, so a moment the timetable comes back to is scheduled
    afresh rather than matched to a run cancelled before."""
    return round_.prospectus_version - 1 + len(deadlines.extensions_of(session, round_))


BOARD = "programme"  # what a board pack's outcome is about: every round, not one


def board_pack(
    key: str = "", *, now: datetime, actor: str = SYSTEM, steps: Steps = DIRECT
) -> Outcome:
    """The programme board's pack: the figures across every round as they stand at `now`, as a
    PDF, kept with them as a `BoardPack`. The key ("2026-12": the month's scheduled pack, in
    the portal's time zone, when none is given) makes a run again issue nothing new."""
    settings = get_settings()
    zone = ZoneInfo(settings.timezone)
    key = key or board.scheduled_key(now, zone)
    outcome = Outcome(BOARD, BOARD_PACK.name, {"issued": 0})

    def plan() -> list[str]:
        with session_scope() as session:
            issued = session.exec(select(BoardPack).where(BoardPack.key == key)).first()
        return [] if issued is not None else [key]

    def issue_pack(keys: Sequence[str]) -> list[str]:
        with session_scope() as session:
            figures = board.figures(session, now)
            context = board.pack_context(session, figures, key, zone)
        relative = board.pack_file(key)
        path = render_pdf(board.PACK_TEMPLATE, context, settings.documents_dir / relative)
        get_store().keep("documents", relative, path)  # served by the portal on any host
        try:
            with session_scope() as session:
                pack = BoardPack(
                    key=key,
                    path=relative,
                    figures=board.stored(figures),
                    created_at=now,
                    created_by=actor,
                )
                session.add(pack)
                session.flush()
                assert pack.id is not None
                record(
                    session,
                    entity="board_pack",
                    entity_id=pack.id,
                    action="issued",
                    actor=actor,
                    now=now,
                    reason=(
                        f"The programme board's pack {key}, across {len(figures.rounds)} rounds."
                    ),
                )
        except IntegrityError:  # another run issued this key a moment before: theirs stands
            return []
        outcome.counts = {"issued": 1, "rounds": len(figures.rounds)}
        return [str(path)]

    issued = steps.documents("the board pack", plan, issue_pack)
    if issued:
        outcome.notes.append(f"{key}: {Path(issued[0]).name}")
        if outcome.counts["issued"] == 0:  # issued by an earlier attempt of this run
            outcome.counts["issued"] = 1
    else:
        outcome.notes.append(f"the pack {key} was issued before")
    return outcome
