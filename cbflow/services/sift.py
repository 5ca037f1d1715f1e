"""Closing the EOI window: the automatic sift, staff review of referrals, the shortlist."""

from __future__ import annotations

import hashlib
from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from sqlmodel import Session, col, select

from cbflow.db import lock_for_update
from cbflow.errors import CbflowError
from cbflow.formatting import long_deadline, long_moment
from cbflow.forms import money_to_pence
from cbflow.lifecycle import AppState, RoundState
from cbflow.models import Application, Council, Round
from cbflow.prospectus import SiftCheck, SiftRule
from cbflow.services import contributions, deadlines, reopening
from cbflow.services.applications import not_reached
from cbflow.services.audit import transition
from cbflow.services.rounds import applications_of, prospectus_of
from cbflow.wording import and_list, plural, sentence

# how every "not shortlisted" reason begins: the regret letters go to the applications it marks
NOT_SHORTLISTED = "Your expression of interest passed the sift but was not"


def not_shortlisted_reason(shortlisted: int) -> str:
    """Why a sift pass was not invited to bid, as its regret letter gives it."""
    if shortlisted == 0:
        return f"{NOT_SHORTLISTED} shortlisted: no place was shortlisted."
    if shortlisted == 1:
        return f"{NOT_SHORTLISTED} the one place shortlisted."
    return f"{NOT_SHORTLISTED} among the {plural(shortlisted, 'place')} shortlisted."


def was_not_shortlisted(application: Application) -> bool:
    return (application.decision_reason or "").startswith(NOT_SHORTLISTED)


def regretted(session: Session, round_: Round) -> list[Application]:
    """The applications told, with the invitations, that they are not invited to bid: those not
    shortlisted, and those that did not pass the sift."""
    return [
        a
        for a in applications_of(session, round_, AppState.UNSUCCESSFUL, AppState.SIFT_FAIL)
        if a.state == AppState.SIFT_FAIL or was_not_shortlisted(a)
    ]


def sift_reason(failed: list[SiftRule], target: AppState) -> str:
    """The sift's outcome in words, naming each check failed by its description."""
    if not failed:
        return "Your expression of interest passed every check of the sift."
    checks = and_list([f"“{rule.description.strip().rstrip('.')}”" for rule in failed])
    which = "check" if len(failed) == 1 else "checks"
    if target == AppState.SIFT_FAIL:
        return (
            "Your expression of interest did not pass the sift: it did not meet the "
            f"{which} {checks}."
        )
    return (
        f"Your expression of interest was referred to staff for a decision: it did not meet "
        f"the {which} {checks}."
    )


def check_passes(
    check: SiftCheck, answers: dict[str, Any], confirmed_pooled_pence: int = 0
) -> bool:
    """Whether every condition the check states holds for the answers (and, for
    `confirmed_pooled_min`, the partners' confirmed contributions over all years)."""
    value = answers.get(check.question) if check.question is not None else None
    stated = check.model_fields_set - {"question"}
    results: list[bool] = []
    if "confirmed_pooled_min" in stated:
        assert check.confirmed_pooled_min is not None
        results.append(confirmed_pooled_pence >= money_to_pence(check.confirmed_pooled_min))
    if "answered" in stated:
        results.append((value not in (None, "", [], {})) == check.answered)
    if "equals" in stated:
        results.append(value == check.equals)
    if "min_rows" in stated or "max_rows" in stated:
        rows = len(value) if isinstance(value, list) else 0
        if check.min_rows is not None:
            results.append(rows >= check.min_rows)
        if check.max_rows is not None:
            results.append(rows <= check.max_rows)
    if "min" in stated or "max" in stated:
        try:
            number = Decimal(str(value))
        except InvalidOperation:
            results.append(False)
        else:
            if check.min is not None:
                results.append(number >= check.min)
            if check.max is not None:
                results.append(number <= check.max)
    if "min_words" in stated:
        assert check.min_words is not None
        results.append(isinstance(value, str) and len(value.split()) >= check.min_words)
    return all(results)


def close_eoi(session: Session, *, round_: Round, actor: str, now: datetime) -> Counter[str]:
    """Close the EOI window and sift every submitted EOI; returns counts of the outcomes.

    Refused before the window closes for everyone (as extended, see services.deadlines).
    Persists, per submitted application: each rule's result, then its move to sift_pass,
    sift_refer (a failed `refer` rule) or sift_fail (a failed `fail` rule); then the round's
    move to eoi_closed. Run again (at the end of a council's own extension) it sifts the EOIs
    submitted since, and changes nothing else.
    """
    prospectus = prospectus_of(round_)
    closes = deadlines.stage_closes(session, round_, "eoi")
    if now < closes:
        raise not_reached(f"EOI deadline of {round_.slug}", closes, now, prospectus)
    lock_for_update(session, round_)  # a reopening waits for the close, then sees it done
    if round_.state == RoundState.CANCELLED:
        return Counter(a.state for a in applications_of(session, round_))
    outcomes: Counter[str] = Counter()
    pooled_checked = any(
        rule.check.confirmed_pooled_min is not None for rule in prospectus.stages.eoi.sift
    )
    for application in applications_of(session, round_, AppState.EOI_SUBMITTED):
        results = {}
        pooled = contributions.confirmed_total_pence(session, application) if pooled_checked else 0
        for rule in prospectus.stages.eoi.sift:
            passed = check_passes(rule.check, application.eoi_answers, pooled)
            results[rule.id] = {"passed": passed, "on_fail": rule.on_fail}
        failed = [rid for rid, r in results.items() if not r["passed"]]
        if any(results[rid]["on_fail"] == "fail" for rid in failed):
            target = AppState.SIFT_FAIL
        elif failed:
            target = AppState.SIFT_REFER
        else:
            target = AppState.SIFT_PASS
        application.sift_results = results
        rules = {rule.id: rule for rule in prospectus.stages.eoi.sift}
        reason = sift_reason([rules[rid] for rid in failed], target)
        if target == AppState.SIFT_FAIL:
            application.decision_reason = reason
        transition(session, application, target, actor=actor, now=now, reason=reason)
        outcomes[target.value] += 1
    if round_.state != RoundState.LAUNCHED:
        return outcomes if outcomes else Counter(a.state for a in applications_of(session, round_))
    transition(
        session, round_, RoundState.EOI_CLOSED, actor=actor, now=now, reason="EOI window closed"
    )
    return outcomes


def review_referral(
    session: Session,
    *,
    application: Application,
    passed: bool,
    actor: str,
    now: datetime,
    reason: str,
) -> Application:
    """Staff decide a referred EOI. A reason is required; it is audited with the decision."""
    if not reason.strip():
        raise CbflowError("give the reason for the decision on a referred EOI")
    target = AppState.SIFT_PASS if passed else AppState.SIFT_FAIL
    transition(session, application, target, actor=actor, now=now, reason=reason)
    if not passed:  # the council is told the staff's reason in its regret letter
        application.decision_reason = (
            f"Your expression of interest did not pass the sift. {sentence(reason)}"
        )
    return application


def referral_open(application: Application) -> bool:
    """Whether a referred EOI still awaits staff's decision."""
    return application.state == AppState.SIFT_REFER


@dataclass(frozen=True)
class SiftActions:
    """What the sift and shortlist stage permits for a round in its state."""

    eoi_open: bool  # expressions of interest are still open: the sift has not run
    has_bid: bool  # the round has a bid stage, so a shortlist to confirm
    referrals_waiting: int  # referred EOIs staff have still to decide
    can_confirm_shortlist: bool
    shortlist_refusal: str  # why the shortlist cannot be confirmed now ("" when it can)


def sift_actions(session: Session, round_: Round) -> SiftActions:
    """The one place that says what may be done in the sift: the page shows, and the
    shortlist's confirmation refuses, by it."""
    prospectus = prospectus_of(round_)
    referred = applications_of(session, round_, AppState.SIFT_REFER)
    refusal = ""
    if round_.state != RoundState.EOI_CLOSED or prospectus.stages.bid is None:
        refusal = "The shortlist can be confirmed once the sift is done, in a round with bids"
    elif referred:
        refusal = "Decide the referred expressions of interest first"
    return SiftActions(
        eoi_open=round_.state == RoundState.LAUNCHED,
        has_bid=prospectus.stages.bid is not None,
        referrals_waiting=len(referred),
        can_confirm_shortlist=not refusal,
        shortlist_refusal=refusal,
    )


def drawn_lot(round_: Round, application: Application) -> str:
    """A tie-break that favours no council: the same for the same round and application on
    every run, unrelated to the council's code or name. Ordering ties by code put the first
    codes of the alphabet on every shortlist (three of one county's councils in one round)."""
    return hashlib.sha256(f"{round_.slug}|{application.reference}".encode()).hexdigest()


def propose_shortlist(session: Session, *, round_: Round) -> list[Application]:
    """The applications staff are asked to confirm as the shortlist.

    Every EOI that passed the sift, in order of submission (earliest first), cut at the
    prospectus's shortlist size. EOIs submitted at the same moment are taken in turn from each
    region, as a panel spreads its places, each region's in the order of a lot drawn for the
    round (see `drawn_lot`): never in the order of the council codes. Staff may confirm a
    different choice.
    """
    prospectus = prospectus_of(round_)
    passed = applications_of(session, round_, AppState.SIFT_PASS)
    regions = {
        c.code: c.region
        for c in session.exec(
            select(Council).where(col(Council.code).in_({a.council_code for a in passed}))
        )
    }
    moments: dict[Any, list[Application]] = defaultdict(list)
    for application in sorted(passed, key=lambda a: drawn_lot(round_, a)):
        moments[application.eoi_submitted_at].append(application)
    ordered: list[Application] = []
    for moment in sorted(moments):
        by_region: dict[str, list[Application]] = defaultdict(list)
        for application in moments[moment]:
            by_region[regions.get(application.council_code, "")].append(application)
        queues = list(by_region.values())  # regions in the order of their first lot
        while queues:
            ordered += [queue.pop(0) for queue in queues]
            queues = [queue for queue in queues if queue]
    size = prospectus.stages.eoi.shortlist
    return ordered if size is None else ordered[:size]


def confirm_shortlist(
    session: Session, *, round_: Round, chosen: list[Application], actor: str, now: datetime
) -> tuple[list[Application], list[Application]]:
    """Invite the chosen applications to bid; the other sift passes are told they were not
    shortlisted. Returns (invited, regretted).

    Refused while referrals await review, if the choice exceeds the shortlist size or includes an
    application that did not pass the sift. Persists each application's move (invited or
    unsuccessful), then the round's move to bids_invited. Run again, it changes nothing.
    """
    prospectus = prospectus_of(round_)
    if prospectus.stages.bid is None:
        raise CbflowError(f"round {round_.slug} has no bid stage: there is no shortlist to invite")
    if round_.state not in (RoundState.LAUNCHED, RoundState.EOI_CLOSED):  # confirmed already
        return (applications_of(session, round_, AppState.INVITED), [])
    referred = applications_of(session, round_, AppState.SIFT_REFER)
    if referred:
        names = ", ".join(a.reference for a in referred)
        raise CbflowError(f"review the referred EOIs before confirming the shortlist: {names}")
    passed = applications_of(session, round_, AppState.SIFT_PASS)
    passed_ids = {a.id for a in passed}
    strangers = [a.reference for a in chosen if a.id not in passed_ids]
    if strangers:
        raise CbflowError(f"only EOIs that passed the sift can be shortlisted: {strangers}")
    size = prospectus.stages.eoi.shortlist
    if size is not None and len(chosen) > size:
        raise CbflowError(f"the shortlist holds at most {size}; {len(chosen)} were chosen")
    chosen_ids = {a.id for a in chosen}
    regret = not_shortlisted_reason(len(chosen_ids & passed_ids))
    invited, regretted = [], []
    for application in passed:
        if application.id in chosen_ids:
            transition(
                session,
                application,
                AppState.INVITED,
                actor=actor,
                now=now,
                reason="Shortlisted: invited to submit a full bid.",
            )
            invited.append(application)
        else:
            transition(
                session,
                application,
                AppState.UNSUCCESSFUL,
                actor=actor,
                now=now,
                reason=regret,
            )
            application.decision_reason = regret
            regretted.append(application)
    transition(
        session,
        round_,
        RoundState.BIDS_INVITED,
        actor=actor,
        now=now,
        reason=f"{plural(len(invited), 'place').capitalize()} invited to bid.",
    )
    return invited, regretted


def close_bids(session: Session, *, round_: Round, actor: str, now: datetime) -> int:
    """Close the bid window. Invited applications with no submitted bid become unsuccessful,
    except those whose council's own extension has not ended (a run at its end closes them).
    Returns how many bids were submitted. Refused before the window closes for everyone; run
    again, it changes nothing but the applications whose extension has ended since."""
    prospectus = prospectus_of(round_)
    assert prospectus.timetable.bid is not None
    closes = deadlines.stage_closes(session, round_, "bid")
    if now < closes:
        raise not_reached(f"bid deadline of {round_.slug}", closes, now, prospectus)
    lock_for_update(session, round_)  # a reopening waits for the close, then sees it done
    if round_.state in (RoundState.BIDS_INVITED, RoundState.BIDS_CLOSED):
        for application in applications_of(
            session, round_, AppState.INVITED, AppState.BID_DRAFT, AppState.BID_SIGN_OFF
        ):
            own = deadlines.closes_for(session, application, "bid")
            if own > now:
                continue  # more time for this council: it is closed when its extension ends
            deadline = long_deadline(own, prospectus.zone)
            application.decision_reason = f"No bid was received by the deadline, {deadline}."
            reopened = reopening.reopened(session, application, "bid")
            if reopened is not None and reopened.reopened_at is not None:
                application.decision_reason = (
                    f"The bid was reopened at {long_moment(reopened.reopened_at, prospectus.zone)} "
                    f"and not submitted again by the deadline, {deadline}, so no bid was received."
                )
            if application.state == AppState.BID_SIGN_OFF:
                application.decision_reason = (
                    f"The bid was still waiting for sign-off at the deadline, {deadline}, so it "
                    "was not submitted."
                )
            transition(
                session,
                application,
                AppState.UNSUCCESSFUL,
                actor=actor,
                now=now,
                reason=application.decision_reason,
            )
    if round_.state == RoundState.BIDS_INVITED:
        transition(
            session,
            round_,
            RoundState.BIDS_CLOSED,
            actor=actor,
            now=now,
            reason="bid window closed",
        )
    return len(applications_of(session, round_, AppState.BID_SUBMITTED))
