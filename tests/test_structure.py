"""The shape of the code that keeps the portal easy to change: small route modules, addresses
from route names. Run on its own with `pytest tests/test_structure.py`."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from cbflow.flowlist import DEADLINE_FLOWS, FLOWS
from cbflow.settings import Settings
from cbflow.web.app import create_app


def _routes(routes: list[Any]) -> Iterator[Any]:
    for route in routes:
        included = getattr(route, "original_router", None)  # an included router, not yet flat
        inner = included.routes if included is not None else getattr(route, "routes", None)
        if inner is not None and not hasattr(route, "app"):
            yield from _routes(inner)
        else:
            yield route


def test_every_route_has_a_name_of_its_own_so_addresses_come_from_names(
    cbflow_env: Settings,
) -> None:
    app = create_app(cbflow_env)
    names = Counter(route.name for route in _routes(app.routes))
    assert len(names) > 50, "the portal's routes are all found"
    assert [name for name, count in names.items() if count > 1] == []
    assert (
        app.url_path_for("round_page", slug="whole-place-2011") == "/staff/rounds/whole-place-2011"
    )


ROOT = Path(__file__).resolve().parent.parent
CODE = ("cbflow", "flows", "bench", "templates")


def _sources() -> Iterator[Path]:
    for top in CODE:
        for path in sorted((ROOT / top).rglob("*")):
            if path.suffix in (".py", ".html") and path.is_file():
                yield path


def test_each_flow_is_named_in_one_place_only() -> None:
    """Flow names live in cbflow.flowlist; everything else refers to its entries, so a renamed
    flow cannot leave a page, a schedule or a deployment asking for the old name."""
    quoted = re.compile("|".join(rf"""["']{re.escape(name)}["']""" for name in FLOWS))
    spelled = [
        f"{path.relative_to(ROOT)}:{number}: {line.strip()}"
        for path in _sources()
        if path != ROOT / "cbflow" / "flowlist.py"
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if quoted.search(line)
    ]
    assert spelled == []
    assert {spec.name for spec in DEADLINE_FLOWS} <= set(FLOWS)


LONGEST_ROUTE_MODULE = 500  # lines: past this a module of routes holds more than one job


def test_no_module_of_the_portal_is_past_five_hundred_lines() -> None:
    long = {
        str(path.relative_to(ROOT)): lines
        for path in sorted((ROOT / "cbflow" / "web").rglob("*.py"))
        if (lines := len(path.read_text(encoding="utf-8").splitlines())) > LONGEST_ROUTE_MODULE
    }
    assert long == {}
