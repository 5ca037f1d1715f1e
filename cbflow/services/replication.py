"""Replication: a place publishes its model; other councils adopt it and start from its answers."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from sqlmodel import Session, col, select

from cbflow import notify
from cbflow.errors import CbflowError, NotFound, ValidationFailed
from cbflow.formatting import long_date
from cbflow.forms import validate_answers
from cbflow.lifecycle import AppState
from cbflow.models import (
    Application,
    Council,
    Document,
    MilestoneRecord,
    PublishedModel,
    Round,
    User,
)
from cbflow.prospectus import Prospectus
from cbflow.services.applications import all_answers, council_codes, start_application
from cbflow.services.audit import record, transition
from cbflow.services.implementation import milestones_of, returns_of
from cbflow.services.rounds import all_rounds, applications_of, prospectus_of
from cbflow.settings import Settings

# The place's documents a model publishes to every council: those that hold no more than the
# model shows anyway (its milestones and returns). Not its receipts, which hold every answer of
# its expression of interest and bid, nor the letters addressed to it (nor the packs of earlier
# versions, each of which would make the next publication a new version).
PUBLISHED_KINDS = ("progress_report",)


class Stale(CbflowError):
    """Another version was published since the writer was shown the latest. Nothing changed."""


# the states of a place that publishes versions of its model: from selection (version 1, its
# plan as selected) through implementation (a version at each milestone it chooses) to the end
MODEL_STATES = (AppState.SELECTED, AppState.IMPLEMENTING, AppState.COMPLETED, AppState.PUBLISHED)
FIRST_VERSION = "Version 1: the plan as selected"
COMPLETED_VERSION = "The place completed its implementation: every milestone and return as made"
PROGRESS_VERSION = "The milestones and returns as they stand"
CHANGES_LIMIT = 4000  # characters of what changed, in the place's words


def _bundle(
    session: Session, application: Application, round_: Round, prospectus: Prospectus
) -> dict[str, Any]:
    """What a version publishes: the answers the prospectus marks to carry over, the milestones
    (as planned until implementation starts, then as met), the returns made and the place's
    published documents."""
    carry = prospectus.stages.replication.carry_over if prospectus.stages.replication else []
    answers = all_answers(application)
    council = session.get(Council, application.council_code)
    assert council is not None
    records = milestones_of(session, application)
    stage = prospectus.stages.implementation
    if records:
        milestones = [
            {
                "id": m.milestone_id,
                "title": m.title,
                "due": m.due.isoformat(),
                "met_on": m.met_on.isoformat() if m.met_on else None,
            }
            for m in records
        ]
    else:  # selected, not yet implementing: the plan as the prospectus sets it
        milestones = [
            {"id": m.id, "title": m.title, "due": m.due.isoformat(), "met_on": None}
            for m in sorted(stage.milestones if stage else [], key=lambda m: m.due)
        ]
    return {
        "council": {"code": council.code, "name": council.name},
        "round": {"id": round_.slug, "title": round_.title},
        "answers": {q: answers[q] for q in carry if q in answers},
        "milestones": milestones,
        "returns": [
            {
                "period": r.period,
                "start": r.period_start.isoformat(),
                "end": r.period_end.isoformat(),
                "answers": r.answers,
                "submitted_at": r.submitted_at.isoformat() if r.submitted_at else None,
            }
            for r in returns_of(session, application)
        ],
        "documents": [
            {"kind": d.kind, "title": d.title, "path": d.path}
            for d in session.exec(
                select(Document)
                .where(
                    Document.application_id == application.id,
                    col(Document.kind).in_(PUBLISHED_KINDS),
                )
                .order_by(col(Document.id))
            )
        ],
    }


def publish_model(
    session: Session,
    *,
    application: Application,
    actor: str,
    now: datetime,
    changes: str = "",
    milestone_id: str | None = None,
) -> tuple[PublishedModel, bool]:
    """Publish the next version of a place's model; returns (model, created).

    A place publishes from selection on: version 1 is its plan as selected, later versions come
    at its milestones (`milestone_id`, with what changed in its words) and at the end. Persists
    the version with what changed and its audit event; a completed place then moves to
    published (the move is for completion only). Publishing again with nothing changed and no
    milestone returns the latest version."""
    if application.state not in MODEL_STATES:
        raise CbflowError(
            f"{application.reference} is {application.state}: a place publishes its model "
            "once it has been selected"
        )
    round_ = session.get(Round, application.round_id)
    assert round_ is not None and round_.id is not None and application.id is not None
    bundle = _bundle(session, application, round_, prospectus_of(round_))
    latest = latest_model(session, application)
    if latest is not None and latest.bundle == bundle and milestone_id is None:
        _completed(session, application, latest, actor, now)
        return latest, False
    version = (latest.version + 1) if latest else 1
    if not changes:  # at selection, or at completion (a place selected before versions began
        # publishes its first at completion)
        if application.state == AppState.COMPLETED:
            changes = COMPLETED_VERSION
        else:
            changes = FIRST_VERSION if version == 1 else PROGRESS_VERSION
    model = PublishedModel(
        application_id=application.id,
        round_id=round_.id,
        version=version,
        bundle=bundle,
        changes=changes,
        milestone_id=milestone_id,
        published_at=now,
        published_by=actor,
    )
    session.add(model)
    session.flush()
    if not _completed(session, application, model, actor, now):
        at = f" at milestone {milestone_id}" if milestone_id else ""
        record(
            session,
            entity="application",
            entity_id=application.id,
            action="model_published" if version == 1 else "model_republished",
            actor=actor,
            now=now,
            reason=f"version {version}{at}",
        )
    return model, True


def _completed(
    session: Session, application: Application, model: PublishedModel, actor: str, now: datetime
) -> bool:
    """A completed place moves to published with the version published at its completion."""
    if application.state != AppState.COMPLETED:
        return False
    transition(
        session,
        application,
        AppState.PUBLISHED,
        actor=actor,
        now=now,
        reason=f"model version {model.version} published",
    )
    return True


def first_versions(
    session: Session, *, round_: Round, actor: str, now: datetime
) -> list[PublishedModel]:
    """Version 1 of every selected place of a round that publishes models and has none yet: the
    plan as selected. Returns the versions made; run again, it makes none."""
    if prospectus_of(round_).stages.replication is None:
        return []
    made = []
    for application in applications_of(session, round_, AppState.SELECTED):
        if latest_model(session, application) is None:
            model, _ = publish_model(session, application=application, actor=actor, now=now)
            made.append(model)
    return made


def open_milestones(session: Session, application: Application) -> list[MilestoneRecord]:
    """The milestones the place has met that no version of its model was published at."""
    published = set(
        session.exec(
            select(PublishedModel.milestone_id).where(
                PublishedModel.application_id == application.id
            )
        )
    )
    return [
        m
        for m in milestones_of(session, application)
        if m.met_on is not None and m.milestone_id not in published
    ]


def version_refusal(session: Session, application: Application) -> str | None:
    """Why the place cannot publish a version at a milestone now, or None if it can."""
    round_ = session.get(Round, application.round_id)
    assert round_ is not None
    if prospectus_of(round_).stages.replication is None:
        return "this round does not publish its places as models"
    if application.state not in (AppState.IMPLEMENTING, AppState.COMPLETED):
        return "a place publishes a version at a milestone while it implements"
    if latest_model(session, application) is None:
        return "the place has no version 1 to follow"
    if not open_milestones(session, application):
        return "every milestone met so far has a version"
    return None


def publish_version(
    session: Session,
    *,
    application: Application,
    milestone_id: str,
    changes: str,
    seen: int,
    actor: str,
    now: datetime,
) -> PublishedModel:
    """A place (or staff for it) publishes the next version of its model at a milestone it has
    met, saying what changed. `seen` is the latest version the writer was shown: if another has
    been published since, nothing is published (Stale). The results so far are the returns made,
    which the version carries."""
    latest = latest_model(session, application)
    if latest is not None and latest.version != seen:
        raise Stale(
            f"version {latest.version} was published since you opened this page: "
            "read it, then write what changed since it"
        )
    refusal = version_refusal(session, application)
    if refusal is not None:
        raise CbflowError(refusal)
    errors = {}
    if milestone_id not in {m.milestone_id for m in open_milestones(session, application)}:
        errors["milestone"] = "Select a milestone you have met"
    text = changes.strip()
    if not text:
        errors["changes"] = "Enter what changed since the last version"
    elif len(text) > CHANGES_LIMIT:
        errors["changes"] = f"What changed must be {CHANGES_LIMIT:,} characters or fewer"
    if errors:
        raise ValidationFailed(errors)
    model, _ = publish_model(
        session,
        application=application,
        actor=actor,
        now=now,
        changes=text,
        milestone_id=milestone_id,
    )
    return model


def versions_of(session: Session, application_id: int) -> list[PublishedModel]:
    """Every version of a place's model, first to latest."""
    return list(
        session.exec(
            select(PublishedModel)
            .where(PublishedModel.application_id == application_id)
            .order_by(col(PublishedModel.version))
        )
    )


@dataclass(frozen=True)
class NewerVersion:
    """A newer version of the model an application adopted: what its pages tell the council."""

    taken: int  # the version adopted
    latest: PublishedModel

    @property
    def sentence(self) -> str:
        return (
            f"Version {self.latest.version} has been published since you adopted "
            f"version {self.taken}"
        )


def newer_version(session: Session, adoption: Application) -> NewerVersion | None:
    """For an application adopting a model: the latest version, when it is newer than the
    version adopted; else None."""
    if adoption.adopted_from_model_id is None:
        return None
    taken = session.get(PublishedModel, adoption.adopted_from_model_id)
    if taken is None:
        return None
    latest = versions_of(session, taken.application_id)[-1]
    return NewerVersion(taken.version, latest) if latest.version > taken.version else None


def newer_messages(
    session: Session, model: PublishedModel, settings: Settings
) -> list[notify.Message]:
    """An e-mail to each officer of each council that adopted an earlier version of the place's
    model: the new version, what changed, and where to read it."""
    earlier = [m.id for m in versions_of(session, model.application_id) if m.id != model.id]
    adoptions = session.exec(
        select(Application)
        .where(col(Application.adopted_from_model_id).in_(earlier))
        .order_by(col(Application.id))
    )
    round_ = session.get(Round, model.round_id)
    assert round_ is not None
    prospectus = prospectus_of(round_)
    base_url = settings.resolved_portal_base_url
    taken = {m.id: m.version for m in versions_of(session, model.application_id)}
    out = []
    for adoption in adoptions:
        officers = session.exec(
            select(User)
            .where(User.role == "applicant", User.council_code == adoption.council_code)
            .order_by(col(User.id))
        )
        for officer in officers:
            out.append(
                notify.compose(
                    settings.templates_dir,
                    "model-version",
                    to=officer.email,
                    name=officer.name,
                    place=model.bundle["council"]["name"],
                    round_title=prospectus.title,
                    version=model.version,
                    taken=taken.get(adoption.adopted_from_model_id or 0),
                    published=long_date(model.published_at, prospectus.zone),
                    changes=model.changes,
                    reference=adoption.reference,
                    link=f"{base_url}/models/{model.id}",
                    application_link=f"{base_url}/applications/{adoption.id}",
                )
            )
    return out


@dataclass(frozen=True)
class PublishActions:
    """Whether a place may be published as a model by staff now, and why not."""

    can_publish: bool
    refusal: str  # "" when it can


def publish_actions(application: Application, prospectus: Prospectus) -> PublishActions:
    """The one place that says whether staff may publish a completed place's model: once it has
    completed, and only once, in a round with a replication stage (its versions during
    implementation are published at its milestones)."""
    if prospectus.stages.replication is None:
        return PublishActions(False, "this round does not publish its places as models")
    if application.state != AppState.COMPLETED:
        return PublishActions(
            False, "a place is published as a model once it has completed, and only once"
        )
    return PublishActions(True, "")


def latest_model(session: Session, application: Application) -> PublishedModel | None:
    statement = (
        select(PublishedModel)
        .where(PublishedModel.application_id == application.id)
        .order_by(col(PublishedModel.version).desc())
    )
    return session.exec(statement).first()


def published_models(session: Session, round_: Round | None = None) -> list[PublishedModel]:
    statement = select(PublishedModel)
    if round_ is not None:
        statement = statement.where(PublishedModel.round_id == round_.id)
    return list(session.exec(statement.order_by(col(PublishedModel.id))))


def adopt_model(
    session: Session,
    *,
    model_id: int,
    council_code: str,
    actor: str,
    now: datetime,
    into: Round | None = None,
) -> tuple[Application, bool]:
    """A council adopts a published model: a new draft application, in the model's round or in
    `into` (a later wave), pre-filled with the carried-over answers that the target round's forms
    ask, with the model it came from recorded. Returns (application, created); adopting the same
    model again returns the same application."""
    model = session.get(PublishedModel, model_id)
    if model is None:
        raise NotFound(f"no published model {model_id}")
    source_round = session.get(Round, model.round_id)
    target = into or source_round
    assert source_round is not None and target is not None
    council = session.get(Council, council_code)
    if council is None:
        raise NotFound(f"no council with code {council_code!r} in the register")
    refusal = adoption_refusal(session, model, council, into=target)
    if refusal is not None:
        raise CbflowError(refusal)
    prospectus = prospectus_of(target)
    carried: dict[str, Any] = model.bundle["answers"]
    eoi_ids = {q.id for q in prospectus.stages.eoi.form.questions()}
    bid_ids = (
        {q.id for q in prospectus.stages.bid.form.questions()} if prospectus.stages.bid else set()
    )
    return start_application(
        session,
        round_=target,
        council_code=council_code,
        actor=actor,
        now=now,
        answers={k: v for k, v in carried.items() if k in eoi_ids},
        bid_answers={k: v for k, v in carried.items() if k in bid_ids},
        adopted_from_model_id=model.id,
    )


def adoption_refusal(
    session: Session, model: PublishedModel, council: Council, into: Round | None = None
) -> str | None:
    """Why the council may not adopt the model (into the model's round, or `into`), or None if
    it may: the round must publish models for adoption, a round open to eligible councils only
    takes the council types of its prospectus, and a place does not adopt its own model."""
    source_round = session.get(Round, model.round_id)
    assert source_round is not None
    target = into or source_round
    replication = prospectus_of(source_round).stages.replication
    if replication is None:
        return f"round {source_round.slug} publishes no models for adoption"
    types = prospectus_of(target).eligibility.council_types
    if replication.open_to == "eligible" and types is not None and council.type not in types:
        kinds = sorted(
            set(session.exec(select(Council.type_name).where(col(Council.type).in_(types))))
        )
        return (
            f"{council.name} ({council.type_name.lower()}) is not eligible to adopt models of "
            f"{source_round.title}: they are open to these kinds of council only: "
            f"{', '.join(k.lower() for k in kinds)}"
        )
    if council.code == model.bundle["council"]["code"]:
        return "a place cannot adopt its own model"
    if target.id != source_round.id:  # a later round takes whom its own prospectus takes
        types = prospectus_of(target).eligibility.council_types
        if types is not None and council.type not in types:
            kind = council.type_name.lower()
            return f"{council.name} ({kind}) is not eligible for {target.title}"
    return None


def adoption_rounds(
    session: Session, model: PublishedModel, council: Council, now: datetime
) -> list[Round]:
    """The rounds the council may adopt the model into: those whose expressions of interest are
    open at `now` and that take the council, the model's own round first (a round whose windows
    have closed is never offered: its application could never be submitted). Empty when the
    council may not adopt the model at all, or no such round is open."""
    if adoption_refusal(session, model, council) is not None:
        return []
    offered: list[Round] = []
    for round_ in all_rounds(session):
        prospectus = prospectus_of(round_)
        if not prospectus.timetable.eoi.is_open(prospectus.zone, now):
            continue
        if round_.id == model.round_id:
            offered.insert(0, round_)
        elif adoption_refusal(session, model, council, into=round_) is None:
            offered.append(round_)
    return offered


def latest_models(session: Session) -> list[PublishedModel]:
    """The latest version of every published model, in order of first publication."""
    latest: dict[int, PublishedModel] = {}
    for model in published_models(session):  # by id, so each place's versions come in order
        latest[model.application_id] = model  # a later version keeps the first one's place
    return list(latest.values())


def adoption_of(session: Session, model: PublishedModel, council_code: str) -> Application | None:
    """The council's adoption of any version of the model, if it has adopted one."""
    versions = session.exec(
        select(PublishedModel.id).where(PublishedModel.application_id == model.application_id)
    )
    return session.exec(
        select(Application)
        .where(
            Application.council_code == council_code,
            col(Application.adopted_from_model_id).in_(list(versions)),
        )
        .order_by(col(Application.id))
    ).first()


# ---------------------------------------------------------------------------------------------
# lineage: who adopted a model, how their applications stand, and how their results compare


@dataclass(frozen=True)
class CarriedAnswer:
    question_id: str
    label: str
    problem: str | None  # None: valid as the adopter's form asks it


@dataclass(frozen=True)
class Adoption:
    application: Application
    council: Council
    round: Round
    version: int  # the version of the model adopted
    started_at: datetime
    submitted_at: datetime | None  # the expression of interest
    carried: list[CarriedAnswer]
    results: dict[int, Decimal]  # return period -> the measure, as made
    # "competitive" (into a round's windows) or "adoption" (the rolling route), and the answers
    # the adopter typed (changed or filled) rather than took as the model gave them
    route: str = "competitive"
    typed: int = 0

    @property
    def seconds_to_submit(self) -> int | None:
        if self.submitted_at is None:
            return None
        return round((self.submitted_at - self.started_at).total_seconds())

    @property
    def days_to_submit(self) -> Decimal | None:
        return _days(self.started_at, self.submitted_at)

    @property
    def carried_valid(self) -> bool:
        return all(c.problem is None for c in self.carried)


@dataclass(frozen=True)
class Lineage:
    """A model, every adoption of any of its versions, and how they compare."""

    model: PublishedModel
    latest: int  # the latest version of the place's model
    place: Council
    round: Round
    measure: str | None  # the label of the returns measure compared, or None without returns
    original: dict[int, Decimal]  # the place's own results: return period -> the measure
    adoptions: list[Adoption]
    # median days from starting an application to submitting it: adopters, and the other
    # applications of the rounds adopters have submitted in
    adopted_days: Decimal | None
    scratch_days: Decimal | None
    scratch_count: int


def _days(start: datetime, end: datetime | None) -> Decimal | None:
    if end is None:
        return None
    return (Decimal((end - start).total_seconds()) / 86400).quantize(Decimal("0.1"))


def _median(values: list[Decimal]) -> Decimal | None:
    if not values:
        return None
    ordered, middle = sorted(values), len(values) // 2
    if len(ordered) % 2:
        return ordered[middle]
    return ((ordered[middle - 1] + ordered[middle]) / 2).quantize(Decimal("0.1"))


def _measure(prospectus: Prospectus) -> tuple[str, str] | None:
    """The returns question the results are compared on: the first number question."""
    stage = prospectus.stages.implementation
    if stage is None or stage.returns is None:
        return None
    for question in stage.returns.form.questions():
        if question.type in ("number", "money"):
            return question.id, question.label
    return None


def _results(session: Session, application: Application, question_id: str) -> dict[int, Decimal]:
    made = {}
    for record_ in returns_of(session, application):
        value = record_.answers.get(question_id)
        if record_.submitted_at is not None and value is not None:
            made[record_.period] = Decimal(str(value))
    return made


def _carried(
    session: Session, application: Application, prospectus: Prospectus, carried_ids: list[str]
) -> list[CarriedAnswer]:
    """Each carried-over answer the adopter's forms ask, checked as a submission would be."""
    out = []
    forms = [(prospectus.stages.eoi.form, application.eoi_answers)]
    if prospectus.stages.bid:
        forms.append((prospectus.stages.bid.form, application.bid_answers))
    for form, answers in forms:
        try:
            validate_answers(form, answers, complete=True, councils=council_codes(session))
            problems: dict[str, str] = {}
        except ValidationFailed as failed:
            problems = failed.errors
        for question in form.questions():
            if question.id in carried_ids and question.id in answers:
                out.append(CarriedAnswer(question.id, question.label, problems.get(question.id)))
    return out


def lineage(session: Session, model: PublishedModel) -> Lineage:
    """Every adoption of any version of the model, with its carried-over answers checked, how
    long it took to submit against applying from scratch, and its results beside the place's."""
    versions = {
        m.id: m.version
        for m in session.exec(
            select(PublishedModel).where(PublishedModel.application_id == model.application_id)
        )
    }
    source = session.get(Application, model.application_id)
    round_ = session.get(Round, model.round_id)
    assert source is not None and round_ is not None
    place = session.get(Council, source.council_code)
    assert place is not None
    measure = _measure(prospectus_of(round_))
    carried_ids = list(model.bundle.get("answers", {}))
    adopted = session.exec(
        select(Application)
        .where(col(Application.adopted_from_model_id).in_(list(versions)))
        .order_by(col(Application.created_at), col(Application.id))
    )
    adoptions = []
    from cbflow.services import adoption_route  # it builds on this module

    for application in adopted:
        target = session.get(Round, application.round_id)
        council = session.get(Council, application.council_code)
        assert target is not None and council is not None
        on_route = application.route == adoption_route.ROUTE
        adoptions.append(
            Adoption(
                application=application,
                council=council,
                round=target,
                version=versions[application.adopted_from_model_id or 0],
                started_at=application.created_at,
                submitted_at=application.eoi_submitted_at,
                carried=(
                    adoption_route.carried_answers(session, application)
                    if on_route
                    else _carried(session, application, prospectus_of(target), carried_ids)
                ),
                results=_results(session, application, measure[0]) if measure else {},
                route=application.route,
                typed=adoption_route.typed(application),
            )
        )
    # applying from scratch: the other applications of the rounds adopters have submitted in
    rounds_in = {a.round.id for a in adoptions if a.submitted_at is not None}
    scratch = [
        days
        for a in session.exec(
            select(Application).where(
                col(Application.round_id).in_(rounds_in),
                col(Application.adopted_from_model_id).is_(None),
            )
        )
        if (days := _days(a.created_at, a.eoi_submitted_at)) is not None
    ]
    adopted_days = [d for a in adoptions if (d := a.days_to_submit) is not None]
    return Lineage(
        model=model,
        latest=max(versions.values()),
        place=place,
        round=round_,
        measure=measure[1] if measure else None,
        original=_results(session, source, measure[0]) if measure else {},
        adoptions=adoptions,
        adopted_days=_median(adopted_days),
        scratch_days=_median(scratch),
        scratch_count=len(scratch),
    )


def zone_of(session: Session, model: PublishedModel) -> ZoneInfo:
    """The time zone the model's round shows its times in."""
    round_ = session.get(Round, model.round_id)
    assert round_ is not None
    return prospectus_of(round_).zone
