"""Selection: the plan, what-if scenarios and releasing the decisions."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from fastapi import Request
from fastapi.responses import RedirectResponse, Response
from markupsafe import Markup

from cbflow.charts import frontier_chart
from cbflow.errors import ValidationFailed
from cbflow.flowlist import DECIDE
from cbflow.formatting import money_or_blank
from cbflow.forms import money_to_pence, parse_money
from cbflow.lifecycle import AppState
from cbflow.models import Application
from cbflow.prospectus import Criterion, Prospectus
from cbflow.services import (
    rounds,
    selection,
)
from cbflow.web.deps import (
    PagesDep,
    SessionDep,
    SettingsDep,
    ShortField,
)
from cbflow.web.pages import ROUND_STATES
from cbflow.web.staff.places import place_names
from cbflow.web.staff.shared import (
    DeskDep,
    RoundPage,
    RunRow,
    Staff,
    round_header,
    round_or_404,
    runs_of,
    stage_router,
    started_runs,
)
from cbflow.web.templating import path_for

router = stage_router()


def _scenario(
    prospectus: Prospectus, places: str, budget: str, weights: dict[str, str]
) -> tuple[selection.Scenario | None, dict[str, str]]:
    errors: dict[str, str] = {}
    scenario_places: int | None = None
    budget_pence: int | None = None
    chosen: dict[str, Decimal] = {}
    if places := places.strip():
        # read as text first: isdigit() alone accepts "²", which int() then refuses
        if not (places.isascii() and places.isdigit() and len(places) <= 4) or int(places) < 1:
            errors["places"] = "Enter the number of places as a whole number from 1 to 9999"
        else:
            scenario_places = int(places)
    if budget.strip():
        try:
            amount = parse_money(budget)
        except ValueError:
            amount = None
        if amount is None or amount < 0:
            errors["budget"] = "Enter the budget in pounds, like 4800000 or 4,800,000.00"
        else:
            budget_pence = money_to_pence(amount)
    stage = prospectus.stages.assessment
    for criterion in stage.criteria if stage else []:
        text = weights.get(criterion.id, "").strip()
        if not text:
            continue
        try:
            weight = Decimal(text) if len(text) <= 20 and "e" not in text.lower() else Decimal(-1)
        except InvalidOperation:
            weight = Decimal(-1)
        if not weight.is_finite() or weight < 0 or weight > 1000:
            errors[f"weight-{criterion.id}"] = (
                f"Enter the weight of {criterion.title} as a number from 0 to 1000"
            )
        else:
            chosen[criterion.id] = weight
    if stage and chosen and sum(chosen.get(c.id, c.weight) for c in stage.criteria) <= 0:
        errors[f"weight-{stage.criteria[0].id}"] = "At least one weight must be above 0"
    if errors:
        return None, errors
    if scenario_places is None and budget_pence is None and not chosen:
        return None, {}
    return selection.Scenario(scenario_places, budget_pence, chosen or None), {}


# how each outcome shows: its name and its tag's colour
OUTCOME_TAGS = {
    AppState.SELECTED: ("Selected", "govuk-tag--green"),
    AppState.RESERVE: ("Reserve", "govuk-tag--yellow"),
    AppState.UNSUCCESSFUL: ("Not selected", "govuk-tag--grey"),
}


def outcome_tag(decision: selection.Decision) -> dict[str, str]:
    """A decision's outcome as a GOV.UK tag: 'Reserve 2', green for selected, and so on."""
    name, classes = OUTCOME_TAGS[decision.outcome]
    position = f" {decision.reserve_position}" if decision.reserve_position else ""
    return {"text": name + position, "classes": classes}


@dataclass(frozen=True)
class DecisionRow:
    decision: selection.Decision
    council: str
    tag: dict[str, str]


@dataclass(frozen=True)
class ChangeRow:
    change: selection.Change
    council: str
    before: dict[str, str]  # the outcome now, as a tag
    after: dict[str, str]  # the outcome under the scenario, as a tag


@dataclass(frozen=True, kw_only=True)
class SelectionPage(RoundPage):
    errors: dict[str, str]
    actions: selection.SelectionActions
    ready_state: str  # the state decisions follow, in words
    impossible: str  # why no decisions can be made ("" when they can)
    rules: list[str]
    decisions: list[DecisionRow]
    places: int | None
    budget: str
    awarded: str
    form: dict[str, Any]
    criteria: list[Criterion]
    scenario: selection.Scenario | None
    changed: list[ChangeRow]
    frontier: Markup | None
    runs: list[RunRow]


@router.get("/rounds/{slug}/selection")
def selection_page(
    request: Request,
    slug: str,
    session: SessionDep,
    settings: SettingsDep,
    pages: PagesDep,
    user: Staff,
    places: str = "",
    budget: str = "",
) -> Response:
    round_ = round_or_404(session, slug)
    prospectus = rounds.prospectus_of(round_)
    weights = {
        key.removeprefix("weight-"): value
        for key, value in request.query_params.items()
        if key.startswith("weight-")
    }
    scenario, errors = _scenario(prospectus, places, budget, weights)
    actions = selection.selection_actions(round_)
    ready = actions.ready_state
    names = place_names(session, round_.id)
    decisions: list[selection.Decision] = []
    changes: list[selection.Change] = []
    impossible = ""
    if actions.released:
        decisions = selection.recorded(session, round_)
    elif actions.ready:
        try:
            decisions = selection.plan(session, round_)
        except selection.SelectionImpossible as exc:
            impossible = str(exc)
    if scenario is not None and actions.shows_plan and not impossible:
        try:
            changes = selection.what_if(session, round_, scenario)
        except ValidationFailed as exc:
            errors = {"places": str(exc)}
        except selection.SelectionImpossible as exc:
            errors = {"places": f"With these figures, {exc}"}
    selected = [d for d in decisions if d.outcome == AppState.SELECTED]
    stage = prospectus.stages.assessment

    def council(application: Application) -> str:
        return names.of(application)

    return pages.show(
        request,
        "staff/selection.html",
        SelectionPage(
            **round_header(request, round_, prospectus, "selection"),
            errors=errors,
            actions=actions,
            ready_state=ROUND_STATES.get(ready.value, ready.value),
            impossible=impossible,
            rules=[selection.rule_text(rule) for rule in prospectus.selection.constraints],
            decisions=[DecisionRow(d, council(d.application), outcome_tag(d)) for d in decisions],
            places=prospectus.capacity.places,
            budget=money_or_blank(money_to_pence(prospectus.capacity.budget_gbp))
            if prospectus.capacity.budget_gbp is not None
            else "",
            awarded=money_or_blank(
                sum(d.application.support_requested_pence or 0 for d in selected)
            ),
            form={"places": places, "budget": budget, "weights": weights},
            criteria=stage.criteria if stage else [],
            scenario=scenario,
            changed=[
                ChangeRow(
                    c,
                    names.of(c.application, ""),
                    outcome_tag(c.before),
                    outcome_tag(c.after),
                )
                for c in changes
                if c.changed
            ],
            frontier=frontier_chart(
                selection.frontier(session, round_), prospectus.capacity.places or len(decisions)
            )
            if decisions
            else None,
            runs=runs_of(started_runs(session, settings, round_), DECIDE),
        ),
        400 if errors else 200,
    )


@router.post("/rounds/{slug}/selection/release")
def release_decisions(
    slug: str,
    desk: DeskDep,
    confirm: ShortField = "",
    nonce: ShortField = "",
) -> Response:
    round_ = round_or_404(desk.session, slug)
    actions = selection.selection_actions(round_)
    back = path_for(desk.request, "selection_page", slug=slug)
    if not actions.can_release:
        ready = actions.ready_state
        return desk.refuse(
            DECIDE,
            f"the round is {ROUND_STATES.get(round_.state, round_.state).lower()}; decisions "
            f"are released once it is {ROUND_STATES.get(ready.value, ready.value).lower()}",
            back,
        )
    if confirm != "yes":
        return RedirectResponse(f"{back}?confirm=missing#release", status_code=303)
    return desk.start(DECIDE, {"slug": slug}, round_=round_, nonce=nonce, back=back)
