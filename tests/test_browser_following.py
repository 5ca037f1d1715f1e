"""Following a pilot in a real browser: a Leeds officer finds Pilots to follow in the navigation,
follows Birmingham from the list, reads its page (its plan, its milestone, its first return),
says Leeds intends to adopt it; Birmingham's officer stops sharing its returns' figures from its
returns page, and the Leeds page then says so and shows none; staff read the demand on the
round's Followers page. Every page is axe-checked (no serious or critical violation) and
photographed."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import test_browser as harness
from portal import add_user, serving
from test_browser_partnership import person
from test_following import DURING, NARRATIVE, make_return, to_implementation

from cbflow.clock import FixedClock
from cbflow.settings import Settings

pytestmark = pytest.mark.browser

browser = harness.browser
check_page = harness.check_page
STAFF = "lead@staff.example"
LEEDS = "ann@leeds.example"
BIRMINGHAM = "pat@birmingham.example"


@pytest.fixture
def portal(cbflow_env: Settings) -> Iterator[str]:
    with serving(cbflow_env, FixedClock(DURING)) as url:
        yield url


def test_a_council_follows_a_pilot_and_staff_see_the_demand(
    browser: harness.Browser, portal: str
) -> None:
    ids = to_implementation()
    make_return(ids["BIR"], DURING)
    add_user(STAFF, "staff", name="Lee Lead")
    add_user(LEEDS, "applicant", council="LDS", name="Ann Leeds")
    add_user(BIRMINGHAM, "applicant", council="BIR", name="Pat Birmingham")

    with person(browser, portal, LEEDS) as page:
        page.goto(f"{portal}/applications")
        page.get_by_role("link", name="Pilots to follow").click()
        page.wait_for_load_state()
        check_page(page, "pilots-list")
        page.get_by_role("button", name="Follow Birmingham").click()
        page.wait_for_load_state()
        row = page.get_by_role("row", name="Birmingham")
        assert "Following" in row.inner_text()
        row.get_by_role("link", name="Birmingham").click()
        page.wait_for_load_state()
        main = page.inner_text("main")
        assert "Leeds has followed Birmingham since" in main
        assert "Operational plan agreed" in main and "Primary care trust" in main
        assert NARRATIVE in main
        check_page(page, "pilots-place")
        page.get_by_role("button", name="We intend to adopt this").click()
        page.wait_for_load_state()
        assert "Leeds intends to adopt this model" in page.inner_text("main")
        check_page(page, "pilots-place-intends")

    with person(browser, portal, BIRMINGHAM) as page:
        page.goto(f"{portal}/applications/{ids['BIR']}/returns")
        check_page(page, "returns-sharing")
        page.get_by_role("button", name="Stop sharing our returns' figures").click()
        page.wait_for_load_state()
        assert "You do not share the figures from your returns" in page.inner_text("main")

    with person(browser, portal, LEEDS) as page:
        page.goto(f"{portal}/pilots/{ids['BIR']}")
        main = page.inner_text("main")
        assert "Birmingham does not share the figures from its returns." in main
        assert NARRATIVE not in main

    with person(browser, portal, STAFF) as page:
        page.goto(f"{portal}/staff/rounds/whole-place-2011")
        page.get_by_role("link", name="Followers").click()
        page.wait_for_load_state()
        row = page.get_by_role("row", name="Birmingham")
        assert row.inner_text().split("\t")[:3] == ["Birmingham", "1", "1"]
        assert "Leeds" in row.inner_text()
        region = page.get_by_role("row", name="Yorkshire and The Humber")
        assert region.inner_text().split("\t") == ["Yorkshire and The Humber", "1", "1"]
        check_page(page, "followers-staff")
