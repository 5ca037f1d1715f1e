"""Selection and decisions: a fixed number of places within the budget.

Rule (documented for staff): the places go to the combination of applications with the highest
total weighted score (see `assessment.results`; without an assessment stage every application
counts the same, so as many as fit are chosen), within the places, the budget (the sum of the
support requested) and the prospectus's limits per region or council type. It is solved exactly
as an integer programme (`cbflow.solver`). Among combinations with equal totals, the one whose
places rank higher overall is chosen (by the sum of their ranks; see `assessment.ranking_key`;
without an assessment, the order of submission). An application below a gateway minimum is
unsuccessful. Every other application not chosen is told which limits keep it out: the ones it
would break if it were added to the chosen places. The reserve list takes them in rank order, up
to as many reserves as there are places (every one, when places are not limited); the rest are
unsuccessful.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from sqlmodel import Session, col, select

from cbflow.errors import CbflowError
from cbflow.formatting import money, pence_to_money
from cbflow.forms import money_to_pence
from cbflow.lifecycle import AppState, RoundState
from cbflow.models import Application, Council, Round
from cbflow.prospectus import GroupRule, Prospectus
from cbflow.services import partnerships
from cbflow.services.assessment import results
from cbflow.services.audit import transition
from cbflow.services.rounds import RELEASED, applications_of, places_of, prospectus_of
from cbflow.services.sift import drawn_lot
from cbflow.solver import GroupLimit, Infeasible, Item, choose
from cbflow.wording import and_list, number_word, ordinal, ordinal_word, plural, sentence


@dataclass(frozen=True)
class Decision:
    application: Application
    outcome: AppState  # SELECTED, RESERVE or UNSUCCESSFUL
    reason: str
    reserve_position: int | None = None


class SelectionImpossible(CbflowError):
    """No choice of places meets every limit of the prospectus (or of the what-if)."""


@dataclass(frozen=True)
class Scenario:
    """Other weights, places or budget for a what-if; None keeps the prospectus's."""

    places: int | None = None
    budget_pence: int | None = None
    weights: dict[str, Decimal] | None = None


@dataclass(frozen=True)
class _Candidate:
    application: Application
    rank: int
    score: Decimal | None  # the total weighted score, % of the maximum; None without assessment
    gateway_failed: list[str]

    @property
    def request(self) -> int:
        return self.application.support_requested_pence or 0

    def standing(self, of: int, noun: str) -> str:
        """`Your bid ranked 2nd of 6 with a score of 71.25%.`: where it stood among `of`."""
        if self.score is None:
            return f"Your {noun} was the {ordinal(self.rank)} of {of} to arrive."
        return f"Your {noun} ranked {ordinal(self.rank)} of {of} with a score of {self.score}%."


@dataclass(frozen=True)
class _Group:
    """One region or council type under one of the prospectus's limits."""

    rule: GroupRule
    name: str  # "North West", "County council"
    members: frozenset[int]  # application ids in the running

    def limit(self) -> GroupLimit:
        if self.rule.at_least is not None:  # each group with a candidate: as many as it has
            return GroupLimit(
                self.name, self.members, min(self.rule.at_least, len(self.members)), True
            )
        assert self.rule.at_most is not None
        return GroupLimit(self.name, self.members, self.rule.at_most)

    def full_text(self) -> str:
        """Why the group can take no more: `the North West region already has the one place
        allowed to any one region`."""
        allowed = plural(self.rule.at_most or 0, "place")
        if self.rule.per == "region":
            return f"the {self.name} region already has the {allowed} allowed to any one region"
        return f"{self.name} councils already have the {allowed} allowed to any one type of council"


def _candidates(
    session: Session, round_: Round, prospectus: Prospectus, scenario: Scenario
) -> list[_Candidate]:
    if prospectus.stages.assessment:
        return [
            _Candidate(r.application, rank, r.total, r.gateway_failed)
            for rank, r in enumerate(results(session, round_, weights=scenario.weights), 1)
        ]
    waiting = AppState.BID_SUBMITTED if prospectus.stages.bid else AppState.SIFT_PASS
    pending = applications_of(session, round_, waiting)
    pending.sort(key=lambda a: (a.bid_submitted_at or a.eoi_submitted_at, drawn_lot(round_, a)))
    return [_Candidate(a, rank, None, []) for rank, a in enumerate(pending, 1)]


def _groups(session: Session, prospectus: Prospectus, running: list[_Candidate]) -> list[_Group]:
    """The places each region or council type has in the running. A partnership counts in the
    region and the type of each of its councils: it takes one place from every group it
    touches (so Greater Manchester's ten councils are one place in the North West, and the
    Tri-borough's three one place in London)."""
    codes_of = {
        c.application.id: partnerships.council_codes_of(session, c.application) for c in running
    }
    codes = {code for these in codes_of.values() for code in these}
    councils = {
        c.code: c for c in session.exec(select(Council).where(col(Council.code).in_(codes)))
    }
    groups = []
    for rule in prospectus.selection.constraints:
        members: dict[str, set[int]] = defaultdict(set)
        for candidate in running:
            assert candidate.application.id is not None
            for code in codes_of[candidate.application.id]:
                council = councils[code]
                name = council.region if rule.per == "region" else council.type_name
                members[name].add(candidate.application.id)
        groups += [_Group(rule, name, frozenset(ids)) for name, ids in sorted(members.items())]
    return groups


def _kind(rule: GroupRule) -> str:
    return "region" if rule.per == "region" else "council type"


def rule_text(rule: GroupRule) -> str:
    if rule.at_most is not None:
        return f"at most {rule.at_most} per {_kind(rule)}"
    return f"at least {rule.at_least} of each {_kind(rule)} with an application in the running"


@dataclass(frozen=True)
class _Problem:
    """What the selection chooses among, and within what."""

    candidates: list[_Candidate]
    running: list[_Candidate]  # not barred by a gateway minimum
    groups: list[_Group]
    places: int | None
    budget_pence: int | None
    items: list[Item]

    @classmethod
    def of(
        cls, session: Session, round_: Round, prospectus: Prospectus, scenario: Scenario
    ) -> _Problem:
        candidates = _candidates(session, round_, prospectus, scenario)
        places = scenario.places if scenario.places is not None else prospectus.capacity.places
        budget = prospectus.capacity.budget_gbp
        budget_pence = money_to_pence(budget) if budget is not None else None
        if scenario.budget_pence is not None:
            budget_pence = scenario.budget_pence
        running = [c for c in candidates if not c.gateway_failed]
        items = [
            Item(
                key=c.application.id or 0,
                value=int(c.score * 100) if c.score is not None else 1,
                cost=c.request,
                priority=len(candidates) - c.rank,
            )
            for c in running
        ]
        groups = _groups(session, prospectus, running)
        return cls(candidates, running, groups, places, budget_pence, items)


def frontier(
    session: Session, round_: Round, *, points: int = 8
) -> list[tuple[int, Decimal | None]]:
    """The best total score the rule can reach within each of `points` budgets, evenly spaced
    up to everything the applications in the running ask for together, and within the
    prospectus's own budget: where more money stops buying a better selection. A budget no
    selection can meet every limit within has None."""
    prospectus = prospectus_of(round_)
    if prospectus.stages.assessment is None:  # no scores to trade money against
        return []
    problem = _Problem.of(session, round_, prospectus, Scenario())
    everything = sum(c.request for c in problem.running)
    if not problem.running or everything == 0:
        return []
    budgets = {everything * step // points for step in range(1, points + 1)}
    if problem.budget_pence is not None:
        budgets.add(problem.budget_pence)
    values = {item.key: item.value for item in problem.items}
    out: list[tuple[int, Decimal | None]] = []
    for budget in sorted(budgets):
        try:
            chosen = choose(
                problem.items,
                places=problem.places,
                budget=budget,
                groups=[g.limit() for g in problem.groups],
            )
        except Infeasible:
            out.append((budget, None))
            continue
        out.append((budget, Decimal(sum(values[key] for key in chosen)) / 100))
    return out


def plan(session: Session, round_: Round, scenario: Scenario | None = None) -> list[Decision]:
    """The decisions the rule gives, without changing anything; under `scenario`, the ones it
    would give with those weights, places or budget. Raises SelectionImpossible when no choice
    meets every limit."""
    prospectus = prospectus_of(round_)
    problem = _Problem.of(session, round_, prospectus, scenario or Scenario())
    candidates, running, groups = problem.candidates, problem.running, problem.groups
    places, budget_pence, items = problem.places, problem.budget_pence, problem.items
    try:
        chosen = choose(
            items, places=places, budget=budget_pence, groups=[g.limit() for g in groups]
        )
    except Infeasible:
        limits = [f"{places} places" if places else ""]
        limits.append(f"a budget of {money(budget_pence)}" if budget_pence else "")
        limits += [rule_text(rule) for rule in prospectus.selection.constraints]
        raise SelectionImpossible(
            "no choice of places meets every limit: "
            + "; ".join(x for x in limits if x)
            + f", among {len(running)} applications in the running"
        ) from None
    selected = [c for c in running if c.application.id in chosen]
    spent = sum(c.request for c in selected)
    noun, nouns = (
        ("bid", "bids")
        if prospectus.stages.bid
        else (
            "expression of interest",
            "expressions of interest",
        )
    )
    decisions: list[Decision] = []
    reserves = 0
    for candidate in candidates:
        application = candidate.application
        standing = candidate.standing(len(candidates), noun)
        if candidate.gateway_failed:
            below = and_list([f"“{title}”" for title in candidate.gateway_failed])
            decisions.append(
                Decision(
                    application,
                    AppState.UNSUCCESSFUL,
                    f"{standing} It scored below the minimum for {below}, so it could not "
                    "be selected.",
                )
            )
            continue
        if application.id in chosen:
            decisions.append(
                Decision(application, AppState.SELECTED, f"{standing} It has been selected.")
            )
            continue
        why = " ".join(
            sentence(clause)
            for clause in _why_not(candidate, selected, spent, places, budget_pence, groups, nouns)
        )
        if places is None or reserves < places:
            reserves += 1
            then = (
                "if a selected place withdraws, it will be offered the place."
                if reserves == 1
                else "if selected places withdraw, their places are offered to the reserve "
                "list in order."
            )
            decisions.append(
                Decision(
                    application,
                    AppState.RESERVE,
                    f"{standing} It was not selected. {why} It is {ordinal_word(reserves)} on "
                    f"the reserve list: {then}",
                    reserves,
                )
            )
        else:
            full = f"The reserve list holds {plural(reserves, noun, nouns)} and is full."
            decisions.append(
                Decision(
                    application,
                    AppState.UNSUCCESSFUL,
                    f"{standing} It was not selected. {why} {full}",
                )
            )
    return decisions


def _why_not(
    candidate: _Candidate,
    selected: list[_Candidate],
    spent: int,
    places: int | None,
    budget: int | None,
    groups: list[_Group],
    nouns: str,
) -> list[str]:
    """The limits the candidate would break if it were added to the chosen places, one clause
    each."""
    reasons = []
    if places is not None and len(selected) >= places:
        taken = {1: "the one place went", 2: "both places went"}.get(
            places, f"all {number_word(places)} places went"
        )
        reasons.append(
            f"{taken} to the combination of {nouns} with the highest total score"
            if candidate.score is not None
            else f"{taken} to {nouns} that arrived earlier"
        )
    if budget is not None and spent + candidate.request > budget:
        reasons.append(
            f"its request of {money(candidate.request)} is more than the "
            f"{money(budget - spent)} left in the budget"
        )
    chosen_ids = {c.application.id for c in selected}
    for group in groups:
        if group.rule.at_most is None or candidate.application.id not in group.members:
            continue
        if len(group.members & chosen_ids) >= group.rule.at_most:
            reasons.append(group.full_text())
    if not reasons:  # only when adding it would not raise the total
        reasons.append("choosing it as well would not have raised the total score")
    return reasons


def ready_state(prospectus: Prospectus) -> RoundState:
    """The state a round must be in before its decisions: assessed, or, without an assessment,
    its last window closed."""
    if prospectus.stages.assessment:
        return RoundState.ASSESSED
    return RoundState.BIDS_CLOSED if prospectus.stages.bid else RoundState.EOI_CLOSED


@dataclass(frozen=True)
class SelectionActions:
    """What the selection stage permits for a round in its state."""

    released: bool  # the decisions are released (decided, implementing or completed)
    ready: bool  # the round is where its decisions are planned and may be released
    ready_state: RoundState  # the state decisions follow
    can_release: bool
    shows_plan: bool  # decisions to show: the released ones, or the plan of a ready round


def selection_actions(round_: Round) -> SelectionActions:
    """The one place that says what may be done in the selection stage: the page shows, and
    `decide` and the release action refuse, by it."""
    ready_state_ = ready_state(prospectus_of(round_))
    released = round_.state in RELEASED
    ready = round_.state == ready_state_
    return SelectionActions(
        released=released,
        ready=ready,
        ready_state=ready_state_,
        can_release=ready,
        shows_plan=released or ready,
    )


def decide(session: Session, *, round_: Round, actor: str, now: datetime) -> list[Decision]:
    """Make and record the decisions. Persists each application's outcome, reason and reserve
    position with its state change, then the round's move to decided. Run again, it changes
    nothing and returns the recorded decisions."""
    actions = selection_actions(round_)
    if actions.released:
        return recorded(session, round_)
    prospectus = prospectus_of(round_)
    if not actions.can_release:
        raise CbflowError(
            f"round {round_.slug} is {round_.state}; decisions follow {actions.ready_state.value}"
        )
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
        session,
        round_,
        RoundState.DECIDED,
        actor=actor,
        now=now,
        reason=f"{plural(chosen, 'place').capitalize()} selected.",
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
    chosen = places_of(session, round_)
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
