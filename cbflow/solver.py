"""The selection as an integer programme: choose the items with the greatest total value within
a number of places, a budget and limits on groups (at most or at least so many per region, say),
solved exactly by HiGHS through `scipy.optimize.milp`.

Values, costs and priorities are integers (scores in hundredths of a percent, money in pence), so
the optimum is exact rather than within a floating-point tolerance. Among selections of equal
value, the one with the best total priority is chosen (a second solve, holding the value at its
optimum), so the result does not depend on the solver's search order.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Item:
    key: int
    value: int  # what the selection maximises: the sum of the chosen items' values
    cost: int = 0  # counted against the budget
    priority: int = 0  # breaks ties between selections of equal value: higher is preferred


@dataclass(frozen=True)
class GroupLimit:
    """At most (or at least) `count` items from `members`."""

    name: str
    members: frozenset[int]
    count: int
    at_least: bool = False


class Infeasible(ValueError):
    """No selection meets every limit."""


def choose(
    items: Sequence[Item],
    *,
    places: int | None = None,
    budget: int | None = None,
    groups: Sequence[GroupLimit] = (),
) -> frozenset[int]:
    """The keys of the best selection: greatest total value, then greatest total priority.
    Raises Infeasible when no selection meets every limit (at-least limits can conflict with
    the places or the budget)."""
    if not items:
        if any(g.at_least and g.count > 0 for g in groups):
            raise Infeasible("nothing can be selected, so no group can have its minimum")
        return frozenset()
    n = len(items)
    index = {item.key: i for i, item in enumerate(items)}
    rows: list[np.ndarray[Any, Any]] = []
    lower: list[float] = []
    upper: list[float] = []

    def limit(coefficients: np.ndarray[Any, Any], low: float, high: float) -> None:
        rows.append(coefficients)
        lower.append(low)
        upper.append(high)

    if places is not None:
        limit(np.ones(n), 0, places)
    if budget is not None:
        limit(np.array([float(item.cost) for item in items]), 0, budget)
    for group in groups:
        row = np.zeros(n)
        for key in group.members:
            if key in index:
                row[index[key]] = 1
        if group.at_least:
            limit(row, group.count, np.inf)
        else:
            limit(row, 0, group.count)

    def allowed(chosen: list[Item]) -> bool:
        """Every limit, checked exactly in integers: the solver's own check is within a
        floating-point tolerance, which on a budget of millions of pounds can be a penny."""
        keys = {item.key for item in chosen}
        if places is not None and len(chosen) > places:
            return False
        if budget is not None and sum(item.cost for item in chosen) > budget:
            return False
        for group in groups:
            inside = len(keys & group.members)
            if (inside < group.count) if group.at_least else (inside > group.count):
                return False
        return True

    values = np.array([float(item.value) for item in items])
    best = _solve(items, values, rows, lower, upper, allowed)
    optimum = sum(item.value for item in best)
    # among the selections worth the optimum, the one with the best priority
    limit(values, optimum, np.inf)
    priorities = np.array([float(item.priority) for item in items])
    chosen = _solve(
        items,
        priorities,
        rows,
        lower,
        upper,
        lambda c: allowed(c) and sum(item.value for item in c) == optimum,
    )
    return frozenset(item.key for item in chosen)


def _solve(
    items: Sequence[Item],
    objective: np.ndarray[Any, Any],
    rows: list[np.ndarray[Any, Any]],
    lower: list[float],
    upper: list[float],
    allowed: Callable[[list[Item]], bool],
) -> list[Item]:
    """Maximise `objective` within the rows' bounds. A solution that `allowed` refuses (within
    the solver's tolerance, not exactly) is cut off and the problem solved again."""
    from scipy.optimize import Bounds, LinearConstraint, milp

    n = len(items)
    rows, lower, upper = list(rows), list(lower), list(upper)
    while True:
        constraints = [LinearConstraint(np.vstack(rows), lower, upper)] if rows else []
        result = milp(
            -objective,  # milp minimises
            integrality=np.ones(n),
            bounds=Bounds(0, 1),
            constraints=constraints,
            options={"mip_rel_gap": 0},  # the optimum, not one within HiGHS's default 0.01 %
        )
        if result.status == 2:
            raise Infeasible("no selection meets every limit")
        if not result.success:
            raise RuntimeError(f"the selection could not be solved: {result.message}")
        taken = np.round(result.x)
        chosen = [item for item, x in zip(items, taken, strict=True) if x > 0.5]
        if allowed(chosen):
            return chosen
        # not this selection: at most all but one of its items together
        rows.append(taken)
        lower.append(-np.inf)
        upper.append(len(chosen) - 1)
