"""Selection as a solved, explained decision: the places go to the combination with the highest
total weighted score within the places, the budget and the prospectus's limits per region and
council type, checked against every combination on small rounds; every application left out is
told which limits keep it out; limits that cannot all be met are refused with nothing changed."""

from __future__ import annotations

import itertools
import random
import re
from decimal import Decimal

import pytest
from sqlmodel import select
from test_sift_and_selection import (
    Entry,
    app,
    assessed_round,
    decide,
    outcome_of,
    round_state,
    scored,
)

from cbflow.db import session_scope
from cbflow.forms import money_to_pence
from cbflow.lifecycle import AppState, RoundState
from cbflow.models import Council
from cbflow.services import assessment, rounds, selection
from cbflow.services.selection import SelectionImpossible
from cbflow.settings import Settings
from cbflow.wording import ordinal

# councils of several regions and types: four metropolitan districts (two in the North West, two
# in Yorkshire), two counties, a London borough and a unitary
FIELD = ["BIR", "BOL", "BUR", "CLD", "BRD", "CAM", "DEV", "WSM", "CON"]
ONE_PER_REGION = "\nselection:\n  constraints:\n    - {per: region, at_most: 1}\n"
EACH_TYPE = "\nselection:\n  constraints:\n    - {per: council_type, at_least: 1}\n"
BOTH = (
    "\nselection:\n  constraints:\n    - {per: region, at_most: 1}\n"
    "    - {per: council_type, at_least: 1}\n"
)


def councils_of(codes: list[str]) -> dict[str, Council]:
    with session_scope() as session:
        found = {c.code: c for c in session.exec(select(Council))}
        for council in found.values():
            session.expunge(council)
    return {code: found[code] for code in codes}


def best_by_brute_force(
    candidates: list[tuple[str, Decimal, int]],
    councils: dict[str, Council],
    places: int,
    budget: int,
    one_per_region: bool,
    each_type: bool,
) -> Decimal | None:
    """The highest total score of any allowed combination (None when none is allowed)."""
    types = {councils[code].type for code, _, _ in candidates}
    best: Decimal | None = None
    for size in range(places + 1):
        for combo in itertools.combinations(candidates, size):
            if sum(request for _, _, request in combo) > budget:
                continue
            regions = [councils[code].region for code, _, _ in combo]
            if one_per_region and len(regions) != len(set(regions)):
                continue
            if each_type and {councils[code].type for code, _, _ in combo} != types:
                continue
            total = sum((score for _, score, _ in combo), Decimal(0))
            if best is None or total > best:
                best = total
    return best


@pytest.mark.parametrize("seed", range(8))
def test_the_selection_is_the_best_combination_and_every_exclusion_is_explained(
    cbflow_env: Settings, seed: int
) -> None:
    rng = random.Random(seed)
    codes = rng.sample(FIELD, rng.randint(4, 7))
    entries = [  # the first may fall below the partnership minimum of 2
        Entry(
            code,
            scored(rng.randint(1, 4), rng.randint(1 if n == 0 else 2, 4), rng.randint(1, 4)),
            request=f"{rng.randint(2, 15) * 100000}.00",
        )
        for n, code in enumerate(codes)
    ]
    places = rng.randint(1, 4)
    budget = rng.randint(10, 40) * 100000
    one_per_region, each_type = [(True, False), (False, True), (True, True), (False, False)][
        seed % 4
    ]
    rules = {(True, False): ONE_PER_REGION, (False, True): EACH_TYPE, (True, True): BOTH}
    slug, refs = assessed_round(
        entries, places=places, budget=str(budget), extra=rules.get((one_per_region, each_type), "")
    )
    councils = councils_of(codes)

    with session_scope() as session:
        try:
            decisions = selection.plan(session, rounds.get_round(session, slug))
        except SelectionImpossible:
            decisions = None
        ranked = assessment.results(session, rounds.get_round(session, slug))
    results = {r.application.council_code: r for r in ranked}
    ranks = {r.application.council_code: rank for rank, r in enumerate(ranked, 1)}

    running = [
        (code, results[code].total, money_to_pence(Decimal(e.request)))
        for code, e in zip(codes, entries, strict=True)
        if not results[code].gateway_failed
    ]
    best = best_by_brute_force(running, councils, places, budget * 100, one_per_region, each_type)
    if decisions is None:
        assert best is None, "refused although some combination meets every limit"
        return
    chosen = [d.application.council_code for d in decisions if d.outcome == AppState.SELECTED]
    assert sum((results[code].total for code in chosen), Decimal(0)) == best
    # every limit respected
    spent = sum(app(refs[code]).support_requested_pence or 0 for code in chosen)
    assert len(chosen) <= places and spent <= budget * 100
    if one_per_region:
        assert len({councils[c].region for c in chosen}) == len(chosen)
    if each_type:
        assert {councils[c].type for c in chosen} == {councils[c].type for c, _, _ in running}
    # every exclusion explained, by a limit it would in fact break
    for decision in decisions:
        code = decision.application.council_code
        standing = f"ranked {ordinal(ranks[code])} of {len(entries)} with a score of "
        assert f"{standing}{results[code].total}%." in decision.reason
        if decision.outcome == AppState.SELECTED:
            assert decision.reason.endswith(". It has been selected.")
            continue
        if results[code].gateway_failed:
            assert "below the minimum for “Partnership working”" in decision.reason
            continue
        body = decision.reason.split(" It was not selected. ", 1)[1]
        reasons = [
            sentence
            for sentence in re.split(r"(?<=\.) (?=[A-Z])", body)
            if not sentence.startswith(("It is ", "The reserve list "))
        ]
        request = app(refs[code]).support_requested_pence or 0
        for reason in reasons:
            assert reason.endswith(".")
            if reason.startswith(("All ", "Both places", "The one place")):
                assert len(chosen) == places
            elif reason.startswith("Its request"):
                assert spent + request > budget * 100
            else:
                region = councils[code].region
                assert reason == (
                    f"The {region} region already has the one place allowed to any one region."
                )
                assert region in {councils[c].region for c in chosen}
        assert reasons, decision.reason


def test_a_region_with_its_place_taken_is_given_as_the_reason(cbflow_env: Settings) -> None:
    entries = [
        Entry("BOL", scored(4, 4, 4)),  # North West, 100
        Entry("BUR", scored(4, 4, 3)),  # North West, 92.5: second best, same region
        Entry("CLD", scored(3, 3, 3)),  # Yorkshire and The Humber, 75
    ]
    slug, refs = assessed_round(entries, places=2, extra=ONE_PER_REGION)

    decide(slug)

    assert outcome_of(refs["BOL"])[0] == "selected"
    assert outcome_of(refs["CLD"])[0] == "selected"
    assert outcome_of(refs["BUR"]) == (
        "reserve",
        1,
        "Your bid ranked 2nd of 3 with a score of 92.50%. It was not selected. Both places "
        "went to the combination of bids with the highest total score. The North West region "
        "already has the one place allowed to any one region. It is first on the reserve list: "
        "if a selected place withdraws, it will be offered the place.",
    )


def test_a_place_is_kept_for_each_council_type_in_the_running(cbflow_env: Settings) -> None:
    entries = [
        Entry("BIR", scored(4, 4, 4)),  # metropolitan districts score best
        Entry("BOL", scored(4, 4, 3)),
        Entry("CLD", scored(4, 3, 3)),
        Entry("CAM", scored(2, 2, 2)),  # a county
        Entry("WSM", scored(3, 2, 2)),  # a London borough
    ]
    slug, refs = assessed_round(entries, places=3, extra=EACH_TYPE)

    decide(slug)

    chosen = sorted(c for c, r in refs.items() if app(r).state == AppState.SELECTED)
    assert chosen == ["BIR", "CAM", "WSM"]


def test_limits_that_cannot_all_be_met_are_refused_and_nothing_changes(
    cbflow_env: Settings,
) -> None:
    entries = [
        Entry("BIR", scored(4, 4, 4)),
        Entry("CAM", scored(3, 3, 3)),
        Entry("WSM", scored(3, 3, 3)),
    ]
    slug, refs = assessed_round(entries, places=2, extra=EACH_TYPE)

    with pytest.raises(SelectionImpossible) as refused:
        decide(slug)

    assert str(refused.value) == (
        "no choice of places meets every limit: 2 places; a budget of £4,800,000.00; at least "
        "1 of each council type with an application in the running, among 3 applications in "
        "the running"
    )
    assert round_state(slug) == RoundState.ASSESSED
    assert {app(r).state for r in refs.values()} == {AppState.MODERATED}


def test_the_frontier_gives_the_best_total_within_each_budget(cbflow_env: Settings) -> None:
    entries = [
        Entry("BIR", scored(4, 4, 4), request="1000000.00"),  # 100
        Entry("BOL", scored(3, 3, 3), request="400000.00"),  # 75
        Entry("CLD", scored(2, 2, 2), request="200000.00"),  # 50
    ]
    slug, _ = assessed_round(entries, places=2, budget="1200000")

    with session_scope() as session:
        points = dict(selection.frontier(session, rounds.get_round(session, slug), points=4))

    # everything asked for is £1.6m: budgets of £0.4m, £0.8m, £1.2m (also the budget), £1.6m
    assert points == {
        40_000_000: Decimal("75.00"),  # Bolton alone
        80_000_000: Decimal("125.00"),  # Bolton and Calderdale
        120_000_000: Decimal("150.00"),  # Birmingham and Calderdale
        160_000_000: Decimal("175.00"),  # Birmingham and Bolton: two places, whatever the money
    }
