"""Selection and decisions: a fixed number of places within the budget.

Rule (documented for staff): applications are taken in ranking order (see
`assessment.ranking_key`; without an assessment stage, in order of submission). An application
below a gateway minimum is unsuccessful. Otherwise it is selected while places remain and its
request fits in the budget left; one that does not fit goes on the reserve list, in order, up to
as many reserves as there are places (every one, when places are not limited); the rest are
unsuccessful. Each decision carries its reason.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from sqlmodel import Session

from cbflow.errors import CbflowError
from cbflow.forms import money_to_pence, pence_to_money
from cbflow.lifecycle import FUNDED, AppState, RoundState
from cbflow.models import Application, Round
from cbflow.prospectus import Prospectus
from cbflow.services.assessment import results
from cbflow.services.audit import transition
from cbflow.services.rounds import applications_of, prospectus_of


@dataclass(frozen=True)
class Decision:
    application: Application
    outcome: AppState  # SELECTED, RESERVE or UNSUCCESSFUL
    reason: str
    reserve_position: int | None = None


def _pounds(pence: int) -> str:
    return f"£{pence_to_money(pence):,.2f}"


@dataclass(frozen=True)
class Scenario:
    """Other weights, places or budget for a what-if; None keeps the prospectus's."""

    places: int | None = None
    budget_pence: int | None = None
    weights: dict[str, Decimal] | None = None


def plan(session: Session, round_: Round, scenario: Scenario | None = None) -> list[Decision]:
    """The decisions the rule gives, without changing anything; under `scenario`, the ones it
    would give with those weights, places or budget."""
    prospectus = prospectus_of(round_)
    scenario = scenario or Scenario()
    if prospectus.stages.assessment:
        ordered = [
            (r.application, r.gateway_failed)
            for r in results(session, round_, weights=scenario.weights)
        ]
    else:
        waiting = AppState.BID_SUBMITTED if prospectus.stages.bid else AppState.SIFT_PASS
        pending = applications_of(session, round_, waiting)
        pending.sort(key=lambda a: (a.bid_submitted_at or a.eoi_submitted_at, a.council_code))
        ordered = [(a, []) for a in pending]
    places = scenario.places if scenario.places is not None else prospectus.capacity.places
    budget = prospectus.capacity.budget_gbp
    budget_left = money_to_pence(budget) if budget is not None else None
    if scenario.budget_pence is not None:
        budget_left = scenario.budget_pence
    decisions: list[Decision] = []
    selected = reserves = 0
    for application, gateway_failed in ordered:
        request = application.support_requested_pence or 0
        if gateway_failed:
            decisions.append(
                Decision(
                    application,
                    AppState.UNSUCCESSFUL,
                    "Below the minimum score on " + ", ".join(gateway_failed),
                )
            )
            continue
        full = places is not None and selected >= places
        too_dear = budget_left is not None and request > budget_left
        if not full and not too_dear:
            selected += 1
            if budget_left is not None:
                budget_left -= request
            decisions.append(
                Decision(
                    application,
                    AppState.SELECTED,
                    f"Selected: place {selected}" + (f" of {places}" if places else ""),
                )
            )
            continue
        why = (
            f"All {places} places were filled by higher-ranked applications"
            if full
            else f"The request of {_pounds(request)} exceeds the "
            f"{_pounds(budget_left or 0)} of the budget left"
        )
        if places is None or reserves < places:
            reserves += 1
            decisions.append(
                Decision(application, AppState.RESERVE, f"Reserve {reserves}: {why}", reserves)
            )
        else:
            decisions.append(Decision(application, AppState.UNSUCCESSFUL, why))
    return decisions


def ready_state(prospectus: Prospectus) -> RoundState:
    """The state a round must be in before its decisions: assessed, or, without an assessment,
    its last window closed."""
    if prospectus.stages.assessment:
        return RoundState.ASSESSED
    return RoundState.BIDS_CLOSED if prospectus.stages.bid else RoundState.EOI_CLOSED


RELEASED = frozenset({RoundState.DECIDED, RoundState.IMPLEMENTING, RoundState.COMPLETED})


def decide(session: Session, *, round_: Round, actor: str, now: datetime) -> list[Decision]:
    """Make and record the decisions. Persists each application's outcome, reason and reserve
    position with its state change, then the round's move to decided. Run again, it changes
    nothing and returns the recorded decisions."""
    if round_.state in RELEASED:
        return recorded(session, round_)
    prospectus = prospectus_of(round_)
    ready = ready_state(prospectus)
    if round_.state != ready:
        raise CbflowError(f"round {round_.slug} is {round_.state}; decisions follow {ready.value}")
    if not prospectus.stages.bid and applications_of(session, round_, AppState.SIFT_REFER):
        raise CbflowError("review the referred EOIs before making decisions")
    decisions = plan(session, round_)
    for decision in decisions:
        application = decision.application
        application.decision_reason = decision.reason
        application.reserve_position = decision.reserve_position
        application.decided_at = now
        transition(
            session, application, decision.outcome, actor=actor, now=now, reason=decision.reason
        )
    chosen = sum(1 for d in decisions if d.outcome == AppState.SELECTED)
    transition(
        session, round_, RoundState.DECIDED, actor=actor, now=now, reason=f"{chosen} selected"
    )
    return decisions


def recorded(session: Session, round_: Round) -> list[Decision]:
    decided = [a for a in applications_of(session, round_) if a.decided_at is not None]
    return [
        Decision(
            a,
            AppState.SELECTED
            if a.state not in (AppState.RESERVE, AppState.UNSUCCESSFUL)
            else AppState(a.state),
            a.decision_reason or "",
            a.reserve_position,
        )
        for a in decided
    ]


def total_awarded(session: Session, round_: Round) -> Decimal:
    chosen = applications_of(session, round_, *FUNDED)
    return pence_to_money(sum(a.support_requested_pence or 0 for a in chosen))


@dataclass(frozen=True)
class Change:
    """How one application's outcome differs between the plan and a what-if."""

    application: Application
    before: Decision
    after: Decision

    @property
    def changed(self) -> bool:
        return (self.before.outcome, self.before.reserve_position) != (
            self.after.outcome,
            self.after.reserve_position,
        )


def what_if(session: Session, round_: Round, scenario: Scenario) -> list[Change]:
    """Each application's outcome now (the released decisions, or the plan before release)
    beside its outcome under the scenario. Changes nothing: released decisions stay as they are
    until staff release others."""
    before = recorded(session, round_) if round_.state in RELEASED else plan(session, round_)
    after = {d.application.id: d for d in plan(session, round_, scenario)}
    return [
        Change(d.application, d, after[d.application.id])
        for d in before
        if d.application.id in after
    ]
