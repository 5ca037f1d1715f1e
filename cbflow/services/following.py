"""Following a pilot: from the moment places are selected, other councils follow a place while it
implements, see its plan and progress, say they intend to adopt it, and are sent a digest of
what is new.

Who may follow: a council officer (role applicant) of any council, when the place's round has a
replication stage with `follow: all` (the default); only councils of the round's eligible types
with `follow: eligible`; never one of the place's own councils. The places: applications
selected for funding, wherever they have got to since (cbflow.lifecycle.FUNDED).

What a follower sees: the plan (the milestones as planned and the answers the prospectus's
`replication.carry_over` names), the milestones met and due, and, only where the place shares its
returns' figures (`Application.share_returns`, on unless its officers switch it off), the figures
of its submitted returns and its progress reports (which chart them).

The digest: each follow is due one when none was sent yet, or the last was sent at least
`digest_every_days` (the round's prospectus) ago, and only when something was published since:
milestones met, progress reports, returns submitted (where shared), new versions of its model.
`Follow.digested_until` moves on in the transaction that keeps the messages in the outbox, with
the follow's row locked first, so two runs at once send each digest once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from sqlmodel import Session, col, select

from cbflow import notify
from cbflow.db import lock_for_update
from cbflow.errors import CbflowError, NotFound
from cbflow.formatting import local_time, long_date
from cbflow.lifecycle import FUNDED
from cbflow.models import (
    Application,
    AuditEvent,
    Council,
    Document,
    Follow,
    MilestoneRecord,
    PublishedModel,
    ReturnRecord,
    Round,
    User,
)
from cbflow.prospectus import Prospectus, ReplicationStage
from cbflow.services import partnerships
from cbflow.services.applications import all_answers
from cbflow.services.audit import record_application
from cbflow.services.implementation import milestones_of, returns_of
from cbflow.services.rounds import prospectus_of
from cbflow.settings import Settings
from cbflow.wording import plural

APPLICANT = "applicant"
PROGRESS_REPORT = "progress_report"
SYSTEM = "system:cbflow"


class StaleSetting(CbflowError):
    """A change made from a page showing a setting that has changed since."""


def _replication(round_: Round) -> ReplicationStage | None:
    return prospectus_of(round_).stages.replication


def refusal(session: Session, application: Application, council: Council) -> str | None:
    """Why the council may not follow the place, or None if it may."""
    if application.state not in FUNDED:
        return "only places selected for funding can be followed"
    round_ = session.get(Round, application.round_id)
    assert round_ is not None
    prospectus = prospectus_of(round_)
    replication = prospectus.stages.replication
    if replication is None:
        return f"{round_.title} does not share its places with other councils"
    if council.code in partnerships.council_codes_of(session, application):
        return "a place does not follow itself"
    types = prospectus.eligibility.council_types
    if replication.follow == "eligible" and types is not None and council.type not in types:
        return (
            f"{round_.title} lets only the councils eligible for it follow its places, and "
            f"{council.name} ({council.type_name.lower()}) is not one of them"
        )
    return None


def followable(session: Session, council: Council) -> list[Application]:
    """The places the council may follow, across every round, in order of selection."""
    places = session.exec(
        select(Application)
        .where(col(Application.state).in_([s.value for s in FUNDED]))
        .order_by(col(Application.round_id), col(Application.id))
    )
    return [a for a in places if refusal(session, a, council) is None]


def place_for(session: Session, application_id: int, council: Council) -> Application:
    """The place, if the council may follow it; NotFound otherwise (it learns nothing more)."""
    application = session.get(Application, application_id)
    if application is None or refusal(session, application, council) is not None:
        raise NotFound(f"no place {application_id} to follow")
    return application


def follow_of(session: Session, application: Application, council_code: str) -> Follow | None:
    return session.exec(
        select(Follow).where(
            Follow.application_id == application.id, Follow.council_code == council_code
        )
    ).first()


def follows_of(session: Session, council_code: str) -> dict[int, Follow]:
    """The council's follows, by the place's application id."""
    rows = session.exec(select(Follow).where(Follow.council_code == council_code))
    return {row.application_id: row for row in rows}


def follow(
    session: Session, *, application: Application, council: Council, actor: str, now: datetime
) -> tuple[Follow, bool]:
    """The council follows the place; returns (follow, created). Following again changes
    nothing. Refused (NotFound) where the council may not follow it."""
    if refusal(session, application, council) is not None:
        raise NotFound(f"no place {application.id} to follow")
    existing = follow_of(session, application, council.code)
    if existing is not None:
        return existing, False
    assert application.id is not None
    row = Follow(
        application_id=application.id,
        council_code=council.code,
        followed_by=actor,
        followed_at=now,
    )
    session.add(row)
    record_application(session, application, "followed", actor, now, f"followed by {council.name}")
    session.flush()
    return row, True


def unfollow(
    session: Session, *, application: Application, council: Council, actor: str, now: datetime
) -> bool:
    """The council stops following the place (and with it any intention to adopt); returns
    whether it was following."""
    existing = follow_of(session, application, council.code)
    if existing is None:
        return False
    session.delete(existing)
    record_application(
        session, application, "unfollowed", actor, now, f"no longer followed by {council.name}"
    )
    session.flush()
    return True


def intend(
    session: Session,
    *,
    application: Application,
    council: Council,
    intends: bool,
    actor: str,
    now: datetime,
) -> Follow:
    """Say the following council intends to adopt the place's model, or no longer does.
    The council must follow the place (NotFound otherwise); saying it again changes nothing."""
    row = follow_of(session, application, council.code)
    if row is None:
        raise NotFound(f"{council.name} does not follow place {application.id}")
    if intends == (row.intends_to_adopt_at is not None):
        return row
    row.intends_to_adopt_at = now if intends else None
    row.intends_by = actor if intends else None
    session.add(row)
    record_application(
        session,
        application,
        "intends_to_adopt" if intends else "no_longer_intends_to_adopt",
        actor,
        now,
        f"{council.name} {'intends' if intends else 'no longer intends'} to adopt this model",
    )
    session.flush()
    return row


def set_share_returns(
    session: Session,
    *,
    application: Application,
    share: bool,
    shown: bool,
    actor: str,
    now: datetime,
) -> bool:
    """The place shares its returns' figures with its followers, or stops. `shown` is the
    setting as the officer's page showed it: where it has changed since (a colleague changed it),
    StaleSetting, with nothing changed. Returns whether it changed."""
    lock_for_update(session, application)
    if application.share_returns != shown:
        now_is = "shared" if application.share_returns else "not shared"
        raise StaleSetting(
            f"someone else changed this setting after your page was shown: your returns' "
            f"figures are now {now_is} with the councils following you"
        )
    if share == application.share_returns:
        return False
    application.share_returns = share
    session.add(application)
    record_application(
        session,
        application,
        "share_returns" if share else "stop_sharing_returns",
        actor,
        now,
        "returns' figures shared with followers"
        if share
        else "returns' figures no longer shared with followers",
    )
    session.flush()
    return True


# ---------------------------------------------------------------------------------------------
# what a follower sees


@dataclass(frozen=True)
class Milestone:
    title: str
    due: date
    met_on: date | None


@dataclass(frozen=True)
class SharedReturn:
    period: int
    start: date
    end: date
    submitted_at: datetime
    answers: dict[str, Any]


@dataclass(frozen=True)
class PlaceView:
    """What a following council sees of a place."""

    application: Application
    round: Round
    prospectus: Prospectus
    name: str  # the place's name
    answers: dict[str, Any]  # the carried-over answers, by question id, in the prospectus's order
    milestones: tuple[Milestone, ...]  # as planned, each with the day it was met
    # its progress reports, oldest first; they chart its returns' figures, so a place that does
    # not share those shares none
    reports: tuple[Document, ...]
    returns: tuple[SharedReturn, ...] | None  # None: the place does not share them
    models: tuple[PublishedModel, ...]  # the versions of its model published


def place_name(session: Session, application: Application) -> str:
    if application.place_name:
        return application.place_name
    council = session.get(Council, application.council_code)
    return council.name if council is not None else application.council_code


def view(session: Session, application: Application) -> PlaceView:
    round_ = session.get(Round, application.round_id)
    assert round_ is not None
    prospectus = prospectus_of(round_)
    carry = prospectus.stages.replication.carry_over if prospectus.stages.replication else []
    given = all_answers(application)
    recorded = milestones_of(session, application)
    if recorded:
        milestones = tuple(Milestone(m.title, m.due, m.met_on) for m in recorded)
    else:  # selected, implementation not yet begun: the plan as the prospectus sets it
        stage = prospectus.stages.implementation
        planned = stage.milestones if stage is not None else []
        milestones = tuple(Milestone(m.title, m.due, None) for m in planned)
    returns = None
    if application.share_returns:
        returns = tuple(
            SharedReturn(r.period, r.period_start, r.period_end, r.submitted_at, r.answers)
            for r in returns_of(session, application)
            if r.submitted_at is not None
        )
    return PlaceView(
        application=application,
        round=round_,
        prospectus=prospectus,
        name=place_name(session, application),
        answers={q: given[q] for q in carry if q in given},
        milestones=milestones,
        reports=tuple(reports_of(session, application)) if application.share_returns else (),
        returns=returns,
        models=tuple(
            session.exec(
                select(PublishedModel)
                .where(PublishedModel.application_id == application.id)
                .order_by(col(PublishedModel.version))
            )
        ),
    )


def reports_of(session: Session, application: Application) -> list[Document]:
    return list(
        session.exec(
            select(Document)
            .where(Document.application_id == application.id, Document.kind == PROGRESS_REPORT)
            .order_by(col(Document.created_at), col(Document.id))
        )
    )


# ---------------------------------------------------------------------------------------------
# demand, for staff


@dataclass(frozen=True)
class DemandRow:
    name: str  # a place, or a region
    follows: int
    intentions: int
    followers: tuple[str, ...] = ()  # the following councils' names (by place)


@dataclass(frozen=True)
class Demand:
    places: tuple[DemandRow, ...]  # each funded place of the round, most followed first
    regions: tuple[DemandRow, ...]  # by the followers' region, most following first
    follows: int
    intentions: int


def demand(session: Session, round_: Round) -> Demand:
    """Follows and intentions to adopt of the round's places, by place and by the region of the
    councils following."""
    places = list(
        session.exec(
            select(Application)
            .where(
                Application.round_id == round_.id,
                col(Application.state).in_([s.value for s in FUNDED]),
            )
            .order_by(col(Application.id))
        )
    )
    rows = list(
        session.exec(
            select(Follow, Council)
            .join(Council, col(Council.code) == Follow.council_code)
            .where(col(Follow.application_id).in_([p.id for p in places]))
            .order_by(col(Council.name))
        )
    )
    by_place: list[DemandRow] = []
    for place in places:
        mine = [(f, c) for f, c in rows if f.application_id == place.id]
        by_place.append(
            DemandRow(
                place_name(session, place),
                len(mine),
                sum(1 for f, _ in mine if f.intends_to_adopt_at is not None),
                tuple(c.name for _, c in mine),
            )
        )
    regions: dict[str, list[Follow]] = {}
    for follow_row, council in rows:
        regions.setdefault(council.region, []).append(follow_row)
    by_region = [
        DemandRow(region, len(found), sum(1 for f in found if f.intends_to_adopt_at is not None))
        for region, found in regions.items()
    ]
    return Demand(
        places=tuple(sorted(by_place, key=lambda r: (-r.follows, -r.intentions, r.name))),
        regions=tuple(sorted(by_region, key=lambda r: (-r.follows, -r.intentions, r.name))),
        follows=len(rows),
        intentions=sum(1 for f, _ in rows if f.intends_to_adopt_at is not None),
    )


# ---------------------------------------------------------------------------------------------
# the digest


@dataclass(frozen=True)
class News:
    """What a place published in a span, for one follower's digest."""

    place: str
    link: str
    items: tuple[str, ...]


def _news(
    session: Session,
    application: Application,
    prospectus: Prospectus,
    since: datetime,
    until: datetime,
) -> list[str]:
    """What the place published after `since`, up to `until`: each a line of the digest."""
    assert application.id is not None
    items: list[str] = []
    titles = {m.milestone_id: m for m in milestones_of(session, application)}
    for event in session.exec(
        select(AuditEvent)
        .where(
            AuditEvent.entity == "application",
            AuditEvent.entity_id == application.id,
            AuditEvent.action == "milestone_met",
            col(AuditEvent.at) > since,
            col(AuditEvent.at) <= until,
        )
        .order_by(col(AuditEvent.id))
    ):
        milestone: MilestoneRecord | None = titles.get(event.reason.split(" on ")[0])
        if milestone is not None and milestone.met_on is not None:
            items.append(f"Milestone met: {milestone.title}, on {long_date(milestone.met_on)}")
    reports = session.exec(
        select(Document)
        .where(
            Document.application_id == application.id,
            Document.kind == PROGRESS_REPORT,
            col(Document.created_at) > since,
            col(Document.created_at) <= until,
        )
        .order_by(col(Document.id))
    )
    if application.share_returns:  # the reports chart the returns' figures
        items += [f"Progress report published: {report.title}" for report in reports]
        for made in session.exec(
            select(ReturnRecord)
            .where(
                ReturnRecord.application_id == application.id,
                col(ReturnRecord.submitted_at) > since,
                col(ReturnRecord.submitted_at) <= until,
            )
            .order_by(col(ReturnRecord.period))
        ):
            items.append(
                f"Return {made.period} made, for {long_date(made.period_start)} to "
                f"{long_date(made.period_end)}"
            )
    for model in session.exec(
        select(PublishedModel)
        .where(
            PublishedModel.application_id == application.id,
            col(PublishedModel.published_at) > since,
            col(PublishedModel.published_at) <= until,
        )
        .order_by(col(PublishedModel.version))
    ):
        items.append(
            f"Version {model.version} of its model published at "
            f"{local_time(model.published_at, prospectus)}"
        )
    return items


def _council_name(session: Session, code: str) -> str:
    council = session.get(Council, code)
    return council.name if council is not None else code


def due(follow_row: Follow, prospectus: Prospectus, now: datetime) -> bool:
    """Whether the follow's digest is due at `now`: never sent, or sent at least the round's
    `digest_every_days` ago."""
    if follow_row.digested_until is None:
        return True
    replication = prospectus.stages.replication
    every = replication.digest_every_days if replication else 7
    return now - follow_row.digested_until >= timedelta(days=every)


@dataclass
class Digests:
    """What a digest run did: the follows it covered, and the messages (one per officer)."""

    follows: list[Follow] = field(default_factory=list)
    messages: list[notify.Message] = field(default_factory=list)


def send_digests(session: Session, now: datetime, settings: Settings) -> Digests:
    """Every digest due at `now` with something new in it: the follows' `digested_until` moved
    to `now` and one message for each officer of each following council, listing what is new
    at every place it follows, for the caller to put in the outbox in this transaction (or send
    by SMTP once committed). Each follow's row is locked before it is read, so a run at the same
    time waits and then finds the digest sent."""
    done = Digests()
    news_by_council: dict[str, list[News]] = {}
    base = settings.resolved_portal_base_url
    ids = list(session.exec(select(Follow.id).order_by(col(Follow.council_code), col(Follow.id))))
    for follow_id in ids:
        row = session.get(Follow, follow_id)
        if row is None:
            continue
        lock_for_update(session, row)
        application = session.get(Application, row.application_id)
        assert application is not None
        round_ = session.get(Round, application.round_id)
        assert round_ is not None
        prospectus = prospectus_of(round_)
        if not due(row, prospectus, now):
            continue
        since = row.digested_until or row.followed_at
        items = _news(session, application, prospectus, since, now)
        if not items:
            continue
        row.digested_until = now
        session.add(row)
        record_application(
            session,
            application,
            "digest_sent",
            SYSTEM,
            now,
            f"digest of {plural(len(items), 'new item')} for the officers of "
            f"{_council_name(session, row.council_code)}",
        )
        done.follows.append(row)
        news_by_council.setdefault(row.council_code, []).append(
            News(place_name(session, application), f"{base}/pilots/{application.id}", tuple(items))
        )
    for code, news in news_by_council.items():
        council = session.get(Council, code)
        assert council is not None
        officers: Sequence[User] = list(
            session.exec(
                select(User)
                .where(User.role == APPLICANT, User.council_code == code)
                .order_by(col(User.id))
            )
        )
        for officer in officers:
            done.messages.append(
                notify.compose(
                    settings.templates_dir,
                    "digest",
                    to=officer.email,
                    name=officer.name,
                    council=council.name,
                    news=news,
                    places=plural(len(news), "place"),
                    link=f"{base}/pilots",
                )
            )
    session.flush()
    return done
