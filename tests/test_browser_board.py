"""The programme board's view in a real browser: staff open it from /staff, read each round's
figures and the charts, and open the month's pack from its list. The page is axe-checked (no
serious or critical violation) and photographed."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import test_browser as harness
from portal import add_user, serving
from test_board import NOW, WAVE_TITLE, _programme
from test_browser_partnership import person

from cbflow import stages
from cbflow.clock import FixedClock
from cbflow.settings import Settings

pytestmark = pytest.mark.browser

browser = harness.browser
check_page = harness.check_page
STAFF = "lead@staff.example"


@pytest.fixture
def portal(cbflow_env: Settings) -> Iterator[str]:
    with serving(cbflow_env, FixedClock(NOW)) as url:
        yield url


def test_staff_read_the_boards_view_and_open_its_pack(
    browser: harness.Browser, portal: str
) -> None:
    _programme()
    stages.board_pack(now=NOW)
    add_user(STAFF, "staff", name="Lee Lead")
    with person(browser, portal, STAFF) as page:
        page.goto(f"{portal}/staff")
        page.click("text=The programme board's view")
        main = page.inner_text("main")
        assert "1 round behind its timetable" in main
        assert WAVE_TITLE in main and "No: Close expressions of interest and sift" in main
        assert page.locator("svg.chart[role=img]").count() == 4
        check_page(page, "board-staff")
        with page.expect_download() as download:
            page.click("text=Download the same figures as a spreadsheet (CSV)")
        assert download.value.suggested_filename.startswith("programme-board-")
        href = page.get_attribute("a:has-text('2013-05 (PDF)')", "href")
        response = page.request.get(f"{portal}{href}")
        assert response.status == 200 and response.body().startswith(b"%PDF")
