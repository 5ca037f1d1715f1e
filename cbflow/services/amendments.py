"""Amending a launched round's prospectus: what changed, whether it may change, and the new
version in force.

Staff publish a revision of the prospectus file. `compare` lists what changed as staff and
councils read it; `check` refuses a revision that would move a deadline that has passed (or move
one into the past), invalidate answers already given, or change the rules of a stage that has
begun; `amend` keeps the new version (every version is kept) and makes it the one in force.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any

from sqlmodel import Session, col, func, select

from cbflow import notify
from cbflow.errors import CbflowError, ValidationFailed
from cbflow.formatting import local_deadline, long_date, long_moment
from cbflow.forms import validate_answers
from cbflow.lifecycle import AppState, RoundState
from cbflow.models import (
    Application,
    Assignment,
    ProspectusVersion,
    ReturnRecord,
    Round,
    Score,
    User,
)
from cbflow.prospectus import Form, Prospectus, Question, parse
from cbflow.services import deadlines, rounds
from cbflow.services.applications import council_codes
from cbflow.services.audit import record
from cbflow.services.partnerships import place_of
from cbflow.settings import Settings

REASON_LIMIT = 1000
# the parts of a round, in the order an application meets them: a change belongs to one of
# them (or to the round as a whole, "general")
STAGES = ("eoi", "bid", "assessment", "decision", "implementation", "replication")
GENERAL = "general"
FORM_NAMES = {
    "eoi": "the expression of interest form",
    "bid": "the bid form",
    "returns": "the returns form",
}
ANSWER_KINDS = {
    "text": "a short text",
    "textarea": "a written answer",
    "number": "a number",
    "money": "an amount in pounds",
    "date": "a date",
    "yes_no": "yes or no",
    "choice": "one option",
    "multichoice": "one or more options",
    "email": "an e-mail address",
    "council": "a council",
    "file": "a file",
    "table": "a table",
}


class AmendmentRefused(CbflowError):
    """A revision that may not be published, with every reason."""

    def __init__(self, reasons: Sequence[str]) -> None:
        super().__init__("the amendment cannot be published: " + "; ".join(reasons))
        self.reasons = list(reasons)


@dataclass(frozen=True)
class Change:
    """One change from a version of the prospectus to the next, as people read it, and the
    part of the round it concerns (one of STAGES, or GENERAL)."""

    text: str
    stage: str = GENERAL


# ---------------------------------------------------------------------------------------------
# what changed


@dataclass(frozen=True)
class Moment:
    label: str  # "Bids close"
    at: datetime
    shown: str  # as people read it
    stage: str


def _day_starts(day: date, prospectus: Prospectus) -> datetime:
    return datetime.combine(day, time(0), tzinfo=prospectus.zone)


def timetable_moments(prospectus: Prospectus) -> dict[str, Moment]:
    """Every date of the timetable by its key ("bid.closes"), as a moment."""
    zone, t = prospectus.zone, prospectus.timetable
    found: dict[str, Moment] = {}
    names = {
        "eoi": ("Expressions of interest open", "Expressions of interest close"),
        "bid": ("Bids open", "Bids close"),
        "assessment": ("Assessment opens", "Assessment closes"),
    }
    for stage, (opens, closes) in names.items():
        window = getattr(t, stage)
        if window is None:
            continue
        start, end = window.opens_at(zone), window.closes_at(zone)
        found[f"{stage}.opens"] = Moment(opens, start, long_moment(start, zone), stage)
        found[f"{stage}.closes"] = Moment(closes, end, local_deadline(end, prospectus), stage)
    if t.decision:
        by = t.decision.by_at(zone)
        found["decision.by"] = Moment(
            "Decisions by", by, local_deadline(by, prospectus), "decision"
        )
    if t.implementation:
        starts = _day_starts(t.implementation.starts, prospectus)
        ends = _day_starts(t.implementation.ends + timedelta(days=1), prospectus)
        found["implementation.starts"] = Moment(
            "Implementation starts", starts, long_date(t.implementation.starts), "implementation"
        )
        found["implementation.ends"] = Moment(
            "Implementation ends", ends, long_date(t.implementation.ends), "implementation"
        )
    return found


def _timetable(old: Prospectus, new: Prospectus) -> list[Change]:
    before, after = timetable_moments(old), timetable_moments(new)
    changes = []
    for key in [*after, *(k for k in before if k not in after)]:
        was, now = before.get(key), after.get(key)
        if was is not None and now is not None:
            if was.at != now.at:
                changes.append(Change(f"{now.label}: was {was.shown}, now {now.shown}", now.stage))
        elif now is not None:
            changes.append(Change(f"{now.label}: {now.shown} (new in the timetable)", now.stage))
        elif was is not None:
            changes.append(Change(f"{was.label}: no longer in the timetable", was.stage))
    return changes


def _quoted(text: str) -> str:
    return f"‘{text}’"


_QUESTION_WORDS = ("id", "label", "hint", "required", "type")


def _question_changes(form: str, stage: str, was: Question, now: Question) -> list[Change]:
    label = _quoted(now.label)
    changes = []
    if was.label != now.label:
        changes.append(
            Change(f"Question {_quoted(was.label)} of {form} reworded: now {label}", stage)
        )
    if (was.hint or "") != (now.hint or ""):
        if not was.hint:
            changes.append(Change(f"Guidance added to question {label}", stage))
        elif not now.hint:
            changes.append(Change(f"Guidance of question {label} removed", stage))
        else:
            changes.append(Change(f"Guidance of question {label} reworded", stage))
    if was.required != now.required:
        need = "required" if now.required else "optional"
        changes.append(Change(f"Question {label} of {form} is now {need}", stage))
    if was.type != now.type:
        changes.append(
            Change(
                f"Question {label} now asks for {ANSWER_KINDS.get(now.type, now.type)} "
                f"(it asked for {ANSWER_KINDS.get(was.type, was.type)})",
                stage,
            )
        )
        return changes
    rest_was = was.model_dump(mode="json", exclude=set(_QUESTION_WORDS))
    rest_now = now.model_dump(mode="json", exclude=set(_QUESTION_WORDS))
    if rest_was != rest_now:
        changes.append(Change(f"The limits or options of question {label} changed", stage))
    return changes


def _form(kind: str, stage: str, old: Form | None, new: Form | None) -> list[Change]:
    form = FORM_NAMES[kind]
    if old is None and new is None:
        return []
    if old is None:
        return [Change(f"{form[0].upper()}{form[1:]} added", stage)]
    if new is None:
        return [Change(f"{form[0].upper()}{form[1:]} removed", stage)]
    changes = []
    old_sections = {s.id: s for s in old.sections}
    for section in new.sections:
        was_section = old_sections.get(section.id)
        if was_section is None:
            changes.append(Change(f"Section {_quoted(section.title)} added to {form}", stage))
            continue
        if was_section.title != section.title:
            changes.append(
                Change(
                    f"Section {_quoted(was_section.title)} of {form} renamed "
                    f"{_quoted(section.title)}",
                    stage,
                )
            )
        if (was_section.hint or "") != (section.hint or ""):
            changes.append(Change(f"Guidance of section {_quoted(section.title)} reworded", stage))
    news = {s.id for s in new.sections}
    for section in old.sections:
        if section.id not in news:
            changes.append(Change(f"Section {_quoted(section.title)} removed from {form}", stage))
    old_questions = {q.id: q for q in old.questions()}
    new_questions = {q.id: q for q in new.questions()}
    for question in new.questions():
        was = old_questions.get(question.id)
        if was is None:
            need = "required" if question.required else "optional"
            changes.append(
                Change(f"Question {_quoted(question.label)} added to {form} ({need})", stage)
            )
        else:
            changes += _question_changes(form, stage, was, question)
    for question in old.questions():
        if question.id not in new_questions:
            changes.append(Change(f"Question {_quoted(question.label)} removed from {form}", stage))
    return changes


def _returns_form(p: Prospectus) -> Form | None:
    implementation = p.stages.implementation
    return implementation.returns.form if implementation and implementation.returns else None


def _forms(old: Prospectus, new: Prospectus) -> list[Change]:
    return (
        _form("eoi", "eoi", old.stages.eoi.form, new.stages.eoi.form)
        + _form(
            "bid",
            "bid",
            old.stages.bid.form if old.stages.bid else None,
            new.stages.bid.form if new.stages.bid else None,
        )
        + _form("returns", "implementation", _returns_form(old), _returns_form(new))
    )


def _assessment(old: Prospectus, new: Prospectus) -> list[Change]:
    was, now = old.stages.assessment, new.stages.assessment
    if was is None and now is None:
        return []
    if was is None or now is None:
        return [Change("Assessment " + ("added" if now else "removed"), "assessment")]
    changes = []
    before = {c.id: c for c in was.criteria}
    after = {c.id for c in now.criteria}
    for criterion in now.criteria:
        prior = before.get(criterion.id)
        title = _quoted(criterion.title)
        if prior is None:
            changes.append(
                Change(f"Criterion {title} added (weight {criterion.weight})", "assessment")
            )
            continue
        if prior.title != criterion.title or (prior.guidance or "") != (criterion.guidance or ""):
            changes.append(Change(f"Criterion {_quoted(prior.title)} reworded", "assessment"))
        if prior.weight != criterion.weight:
            changes.append(
                Change(
                    f"Weight of criterion {title}: was {prior.weight}, now {criterion.weight}",
                    "assessment",
                )
            )
        if prior.minimum != criterion.minimum:
            minimum = "none" if criterion.minimum is None else str(criterion.minimum)
            changes.append(
                Change(f"Minimum score of criterion {title}: now {minimum}", "assessment")
            )
        if prior.evidence != criterion.evidence:
            changes.append(
                Change(f"The answers assessors read for criterion {title} changed", "assessment")
            )
    for criterion in was.criteria:
        if criterion.id not in after:
            changes.append(Change(f"Criterion {_quoted(criterion.title)} removed", "assessment"))
    if was.scale != now.scale:
        changes.append(
            Change(
                f"Scoring scale: now {now.scale.min} to {now.scale.max}"
                + (" (its meanings changed)" if was.scale.labels != now.scale.labels else ""),
                "assessment",
            )
        )
    rest = {"criteria", "scale"}
    if was.model_dump(mode="json", exclude=rest) != now.model_dump(mode="json", exclude=rest):
        changes.append(
            Change("How bids are assessed changed (assessors, moderation)", "assessment")
        )
    return changes


def _sift(old: Prospectus, new: Prospectus) -> list[Change]:
    changes = []
    was, now = old.stages.eoi, new.stages.eoi
    if [r.model_dump(mode="json") for r in was.sift] != [
        r.model_dump(mode="json") for r in now.sift
    ]:
        changes.append(Change("The sift's checks of expressions of interest changed", "eoi"))
    if was.shortlist != now.shortlist:
        changes.append(
            Change(f"Councils invited to bid: was {was.shortlist}, now {now.shortlist}", "eoi")
        )
    return changes


def _capacity(old: Prospectus, new: Prospectus) -> list[Change]:
    changes = []
    was, now = old.capacity, new.capacity
    if was.places != now.places:
        changes.append(
            Change(
                f"Places: was {was.places or 'not fixed'}, now {now.places or 'not fixed'}",
                "decision",
            )
        )
    if was.budget_gbp != now.budget_gbp:
        changes.append(
            Change(
                "Budget: was "
                + (f"£{was.budget_gbp:,}" if was.budget_gbp is not None else "not fixed")
                + ", now "
                + (f"£{now.budget_gbp:,}" if now.budget_gbp is not None else "not fixed"),
                "decision",
            )
        )
    if was.requested_by != now.requested_by:
        changes.append(Change("The question giving each application's request changed", "decision"))
    if old.selection != new.selection:
        changes.append(Change("The limits on which places are selected changed", "decision"))
    return changes


def _general(old: Prospectus, new: Prospectus) -> list[Change]:
    changes = []
    if old.title != new.title:
        changes.append(Change(f"Title: now {_quoted(new.title)}"))
    if old.issued_by != new.issued_by:
        changes.append(Change(f"Issued by: now {new.issued_by}"))
    if old.summary != new.summary:
        changes.append(Change("Summary reworded"))
    if old.contact != new.contact:
        changes.append(Change("Contact changed"))
    return changes


# every part compared above by name; anything else that changed gets the generic line
_HANDLED: dict[str, Any] = {
    "title": True,
    "issued_by": True,
    "summary": True,
    "contact": True,
    "timetable": True,
    "capacity": True,
    "selection": True,
    "stages": {
        "eoi": {"form": True, "sift": True, "shortlist": True},
        "bid": {"form": True},
        "assessment": True,
        "implementation": {"returns": {"form": True}},
    },
}
_PARTS = {
    "eligibility": ("Who may apply", "eoi"),
    "applicants": ("Who may apply (councils alone or in partnerships)", "eoi"),
    "sign_off": ("Sign-off by the council's certifier", GENERAL),
    "partners": ("Partners and their contributions", GENERAL),
    "grant_offer": ("The grant offer's terms", "decision"),
    "open_data": ("The open data identifiers", GENERAL),
    "reminders": ("Reminders before deadlines", GENERAL),
    "reopening": ("Reopening a submission before the deadline", GENERAL),
    "extend_if_degraded": ("More time when this service is not working properly", GENERAL),
    "timezone": ("Time zone", GENERAL),
    "stages.implementation": ("Implementation: milestones, returns and payments", "implementation"),
    "stages.replication": ("Replication", "replication"),
}


def _without_handled(node: Any, handled: Any) -> Any:
    if handled is True:
        return None
    if not isinstance(node, dict) or not isinstance(handled, dict):
        return node
    return {k: _without_handled(v, handled.get(k, False)) for k, v in node.items()}


def _differences(old: Any, new: Any, path: str, out: list[str]) -> None:
    if old == new:
        return
    if isinstance(old, dict) and isinstance(new, dict) and path.count(".") < 1:
        for key in sorted(set(old) | set(new)):
            _differences(old.get(key), new.get(key), f"{path}.{key}" if path else key, out)
        return
    out.append(path)


def _others(old: Prospectus, new: Prospectus) -> list[Change]:
    before = _without_handled(old.model_dump(mode="json"), _HANDLED)
    after = _without_handled(new.model_dump(mode="json"), _HANDLED)
    paths: list[str] = []
    _differences(before, after, "", paths)
    changes = []
    for path in paths:
        name, stage = _PARTS.get(path, (None, GENERAL))
        if name is None and path.startswith("stages."):
            stage = path.split(".")[1]
            name = f"The {stage} stage's terms"
        changes.append(Change(f"{name or path} changed", stage if stage in STAGES else GENERAL))
    return changes


def compare(old: Prospectus, new: Prospectus) -> list[Change]:
    """What changed from `old` to `new`, as staff and councils read it: the dates, the forms'
    questions and guidance, the criteria, the sift, the places and budget, and a line for any
    other part that changed."""
    return (
        _general(old, new)
        + _timetable(old, new)
        + _forms(old, new)
        + _sift(old, new)
        + _assessment(old, new)
        + _capacity(old, new)
        + _others(old, new)
    )


# ---------------------------------------------------------------------------------------------
# whether it may change


def _dates_refused(old: Prospectus, new: Prospectus, now: datetime) -> list[str]:
    before, after = timetable_moments(old), timetable_moments(new)
    reasons = []
    for key in [*after, *(k for k in before if k not in after)]:
        was, then = before.get(key), after.get(key)
        if was is not None and then is not None and was.at == then.at:
            continue
        if was is not None and was.at <= now:
            reasons.append(f"{was.label} ({was.shown}) has passed: it can no longer be changed")
        elif then is not None and then.at <= now:
            reasons.append(
                f"{then.label} would be {then.shown}, which has passed: a date cannot be moved "
                "into the past"
            )
    return reasons


def _first_problem(failed: ValidationFailed) -> str:
    key, message = next(iter(failed.errors.items()))
    return message if ":" in message else f"{key}: {message}"


def _answers_refused(
    session: Session, round_: Round, old: Prospectus, new: Prospectus
) -> list[str]:
    """Answers already given that the new forms would not take: a submitted form's against
    the new form as a submission, a draft's as a draft."""
    apps = rounds.applications_of(session, round_)
    councils = council_codes(session)
    reasons = []
    pairs: list[tuple[str, Form | None, Form | None]] = [
        ("eoi", old.stages.eoi.form, new.stages.eoi.form),
        (
            "bid",
            old.stages.bid.form if old.stages.bid else None,
            new.stages.bid.form if new.stages.bid else None,
        ),
    ]
    for stage, was, form in pairs:
        if was is not None and form is not None and was == form:
            continue
        submitted, drafts, example = 0, 0, ""
        for application in apps:
            answers = application.eoi_answers if stage == "eoi" else application.bid_answers
            at = application.eoi_submitted_at if stage == "eoi" else application.bid_submitted_at
            if not answers and at is None:
                continue
            if form is None:
                submitted += at is not None
                drafts += at is None
                example = example or application.reference
                continue
            try:
                validate_answers(form, answers, complete=at is not None, councils=councils)
            except ValidationFailed as failed:
                submitted += at is not None
                drafts += at is None
                example = example or f"{application.reference}: {_first_problem(failed)}"
        if submitted or drafts:
            name = FORM_NAMES[stage]
            counted = []
            if submitted:
                counted.append(f"{submitted} submitted")
            if drafts:
                counted.append(f"{drafts} in draft")
            reasons.append(
                f"the changes to {name} would invalidate answers already given "
                f"({' and '.join(counted)}; for example {example})"
            )
    returns_was, returns_now = _returns_form(old), _returns_form(new)
    if returns_was != returns_now:
        made = session.exec(
            select(ReturnRecord)
            .join(Application, col(Application.id) == col(ReturnRecord.application_id))
            .where(Application.round_id == round_.id, col(ReturnRecord.submitted_at).is_not(None))
        ).all()
        broken = 0
        for return_ in made:
            if returns_now is None:
                broken += 1
                continue
            try:
                validate_answers(returns_now, return_.answers, complete=True, councils=councils)
            except ValidationFailed:
                broken += 1
        if broken:
            reasons.append(
                f"the changes to the returns form would invalidate {broken} returns already made"
            )
    return reasons


def _scores_exist(session: Session, round_: Round) -> bool:
    count = session.exec(
        select(func.count())
        .select_from(Score)
        .join(Assignment, col(Assignment.id) == col(Score.assignment_id))
        .join(Application, col(Application.id) == col(Assignment.application_id))
        .where(Application.round_id == round_.id)
    ).one()
    return bool(count)


def _rules_refused(
    session: Session, round_: Round, old: Prospectus, new: Prospectus, now: datetime
) -> list[str]:
    """The rules of a stage that has begun: the sift once expressions of interest have closed,
    the weights and scale once assessors have scored, the places and budget once decided."""
    reasons = []
    state = RoundState(round_.state)
    eoi_closed = state != RoundState.LAUNCHED or now >= deadlines.stage_closes(
        session, round_, "eoi"
    )
    was, then = old.stages, new.stages
    sift_changed = [r.model_dump() for r in was.eoi.sift] != [
        r.model_dump() for r in then.eoi.sift
    ] or was.eoi.shortlist != then.eoi.shortlist
    if sift_changed and eoi_closed:
        reasons.append(
            "the sift's checks and the number invited to bid cannot change once expressions "
            "of interest have closed"
        )
    if was.assessment != then.assessment and _scores_exist(session, round_):
        a, b = was.assessment, then.assessment
        words = {"title", "guidance"}
        if (
            a is None
            or b is None
            or [c.model_dump(exclude=words) for c in a.criteria]
            != [c.model_dump(exclude=words) for c in b.criteria]
            or a.model_dump(exclude={"criteria"}) != b.model_dump(exclude={"criteria"})
        ):
            reasons.append(
                "the criteria, their weights and the scoring scale cannot change once "
                "assessors have scored (only their wording can)"
            )
    decided = state in rounds.RELEASED or any(
        a.decided_at is not None for a in rounds.applications_of(session, round_)
    )
    if decided and (old.capacity != new.capacity or old.selection != new.selection):
        reasons.append(
            "the places, the budget and the selection's limits cannot change once decided"
        )
    return reasons


def check(session: Session, round_: Round, new: Prospectus, now: datetime) -> list[str]:
    """Why `new` may not replace the round's prospectus now (nothing: it may)."""
    old = rounds.prospectus_of(round_)
    if new.id != old.id:
        return [
            f"the file is the prospectus of {new.id!r}, not of this round ({old.id!r}): "
            "an amendment keeps the round's id"
        ]
    reasons = _dates_refused(old, new, now)
    reasons += _answers_refused(session, round_, old, new)
    reasons += _rules_refused(session, round_, old, new, now)
    if not reasons and not compare(old, new):
        reasons.append(
            "the file changes nothing in the prospectus (only its comments or layout differ)"
        )
    return reasons


# ---------------------------------------------------------------------------------------------
# the versions


def sha256_of(source: str) -> str:
    return hashlib.sha256(source.encode()).hexdigest()


def versions_of(session: Session, round_: Round) -> list[ProspectusVersion]:
    """Every version of the round's prospectus, the first (as launched) first."""
    return list(
        session.exec(
            select(ProspectusVersion)
            .where(ProspectusVersion.round_id == round_.id)
            .order_by(col(ProspectusVersion.version))
        )
    )


def version_of(session: Session, round_: Round, number: int) -> ProspectusVersion | None:
    return session.exec(
        select(ProspectusVersion).where(
            ProspectusVersion.round_id == round_.id, ProspectusVersion.version == number
        )
    ).first()


def prospectus_at(version: ProspectusVersion) -> Prospectus:
    """One version's prospectus (parsed once per process)."""
    return rounds._parsed(version.source, version.sha256)


def changes_of(session: Session, round_: Round, number: int) -> list[Change]:
    """What version `number` changed from the one before, with the stage of each change."""
    this, before = version_of(session, round_, number), version_of(session, round_, number - 1)
    if this is None or before is None:
        return []
    return compare(prospectus_at(before), prospectus_at(this))


def amend(
    session: Session,
    round_: Round,
    *,
    source: str,
    path: str,
    reason: str,
    actor: str,
    now: datetime,
) -> tuple[ProspectusVersion, bool]:
    """Publish `source` as the round's next prospectus version. Returns (version, created).

    The same file as the version in force changes nothing (and returns that version). A file
    refused by `check` raises AmendmentRefused with every reason. Persists the new version
    (with its changes and reason), makes it the round's prospectus, and audits it."""
    new = parse(source, path)
    sha256 = sha256_of(source)
    current = version_of(session, round_, round_.prospectus_version)
    if round_.source_sha256 == sha256 and current is not None:
        return current, False
    text = reason.strip()
    if not text:
        raise AmendmentRefused(["give the reason for the amendment"])
    if len(text) > REASON_LIMIT:
        raise AmendmentRefused([f"keep the reason to {REASON_LIMIT} characters"])
    reasons = check(session, round_, new, now)
    if reasons:
        raise AmendmentRefused(reasons)
    changes = compare(rounds.prospectus_of(round_), new)
    assert round_.id is not None
    number = round_.prospectus_version + 1
    version = ProspectusVersion(
        round_id=round_.id,
        version=number,
        source=source,
        sha256=sha256,
        changes=[c.text for c in changes],
        reason=text,
        published_at=now,
        published_by=actor,
    )
    session.add(version)
    round_.prospectus_source = source
    round_.source_sha256 = sha256
    round_.prospectus_version = number
    round_.title = new.title
    session.add(round_)
    session.flush()
    record(
        session,
        entity="round",
        entity_id=round_.id,
        action="amend_prospectus",
        actor=actor,
        now=now,
        reason=f"version {number} published from {path}: {text}",
    )
    return version, True


# ---------------------------------------------------------------------------------------------
# who is told what


_POSITION = {
    AppState.EOI_DRAFT: 0,
    AppState.EOI_SIGN_OFF: 0,
    AppState.EOI_SUBMITTED: 1,
    AppState.SIFT_PASS: 1,
    AppState.SIFT_REFER: 1,
    AppState.INVITED: 1,
    AppState.BID_DRAFT: 1,
    AppState.BID_SIGN_OFF: 1,
    AppState.BID_SUBMITTED: 2,
    AppState.UNDER_ASSESSMENT: 2,
    AppState.MODERATED: 2,
    AppState.SELECTED: 4,
    AppState.RESERVE: 3,
    AppState.IMPLEMENTING: 4,
    AppState.COMPLETED: 5,
    AppState.PUBLISHED: 5,
}


def for_application(application: Application, changes: Iterable[Change]) -> list[Change]:
    """The changes that concern an application from where it has got to: none of the stages
    it is past (the expression of interest's dates, say, once it is invited to bid), and
    nothing for one that is out of the round."""
    position = _POSITION.get(AppState(application.state))
    if position is None:
        return []
    return [c for c in changes if c.stage == GENERAL or STAGES.index(c.stage) >= position]


def messages(
    session: Session,
    round_: Round,
    version: ProspectusVersion,
    changes: Sequence[Change],
    settings: Settings,
) -> list[notify.Message]:
    """An e-mail to each officer of each council of each application in the round (its lead
    and its member councils) that the amendment concerns: what changed for it."""
    prospectus = rounds.prospectus_of(round_)
    base_url = settings.resolved_portal_base_url
    out = []
    sent: set[tuple[str, int | None]] = set()
    for application in rounds.applications_of(session, round_):
        theirs = for_application(application, changes)
        if not theirs:
            continue
        codes = [c.code for c in place_of(session, application).councils]
        officers = session.exec(
            select(User)
            .where(User.role == "applicant", col(User.council_code).in_(codes))
            .order_by(col(User.id))
        ).all()
        for officer in officers:
            if (officer.email, application.id) in sent:
                continue
            sent.add((officer.email, application.id))
            out.append(
                notify.compose(
                    settings.templates_dir,
                    "amendment",
                    to=officer.email,
                    name=officer.name,
                    round_title=prospectus.title,
                    reference=application.reference,
                    version=version.version,
                    published=long_date(version.published_at, prospectus.zone),
                    reason=version.reason,
                    changes=[c.text for c in theirs],
                    link=f"{base_url}/applications/{application.id}",
                    all_changes=f"{base_url}/rounds/{round_.slug}/changes",
                )
            )
    return out


@dataclass(frozen=True)
class Notice:
    """What a council's pages say of the amendments made since its application was started."""

    amended: str  # the day of the latest, as people read it
    changes: list[str]  # what changed for the application, oldest first


def notice_for(session: Session, application: Application) -> Notice | None:
    """The amendments published since the application was started that concern it (see
    for_application), or None when there are none."""
    round_ = session.get(Round, application.round_id)
    assert round_ is not None
    if round_.prospectus_version <= application.prospectus_version:
        return None
    theirs: list[str] = []
    for number in range(application.prospectus_version + 1, round_.prospectus_version + 1):
        theirs += [
            c.text for c in for_application(application, changes_of(session, round_, number))
        ]
    latest = version_of(session, round_, round_.prospectus_version)
    if not theirs or latest is None:
        return None
    zone = rounds.prospectus_of(round_).zone
    return Notice(long_date(latest.published_at, zone), theirs)
