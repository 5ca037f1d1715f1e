"""`./dev demo` as a visitor meets it: `cbflow serve --demo` prints the demo's people, each signs
in with one press in a real browser and lands in their workspace with the demo round's data,
and the next demo starts afresh (or continues, when asked) and says which."""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

import pytest
from conftest import EXAMPLE, ROOT
from playwright.sync_api import sync_playwright
from served import Served, wait_for
from test_browser import CHROMIUM, CHROMIUM_ARGS

pytestmark = [pytest.mark.slow, pytest.mark.browser]

ARTIFACTS = ROOT / "test-artifacts" / "demo"
PERSON = re.compile(
    r"^\s{2}(Administrator|Programme staff|Assessor|Council applicant)\s+"
    r"(.+?)\s{2,}(\S+@demo\.example)$"
)
WHERE = re.compile(r"(http://127\.0\.0\.1:\d+(/\S*))$")


def _printed(served: Served, since: int, text: str, timeout: float) -> str:
    """What serve printed after its first `since` characters, once it includes `text`."""

    def done() -> str | None:
        out = served.output.read_text()[since:]
        assert served.process is not None
        if served.process.poll() is not None and text not in out:
            raise AssertionError(f"cbflow serve stopped:\n{out}")
        return out if text in out else None

    return wait_for(done, timeout, f"'{text}' from cbflow serve")


def _people(printed: str) -> list[tuple[str, str, str, str]]:
    """(role, name, email, start path) of each demo person printed."""
    lines = printed.splitlines()
    found = []
    for number, line in enumerate(lines):
        match = PERSON.match(line)
        if match:
            where = WHERE.search(lines[number + 1].strip())
            assert where is not None, lines[number + 1]
            found.append((match.group(1), match.group(2), match.group(3), where.group(2)))
    return found


def _counts(data: Path) -> tuple[int, int]:
    with sqlite3.connect(data / "demo" / "cbflow.db") as db:
        applications = db.execute("select count(*) from application").fetchone()[0]
        people = db.execute("select count(*) from user where email like '%@demo.example'")
        return applications, people.fetchone()[0]


def test_demo_people_sign_in_in_a_browser_and_the_next_demo_starts_fresh(tmp_path: Path) -> None:
    data = tmp_path / "data"
    served = Served(data)
    demo = ["--demo", "--prospectus", str(EXAMPLE), "--councils", "8"]
    served.start(*demo)
    try:
        printed = _printed(served, 0, "Three things to try", 600)
        assert "Starting a fresh demo in" in printed
        for step in (
            "Preparing the database",
            "Starting the portal",
            "Starting the Prefect server",
        ):
            assert step in printed, f"serve says what it is doing: {step}"
        assert "close EOI and sift" in printed, "each of the round's stages is printed"
        people = _people(printed)
        roles = [role for role, *_ in people]
        assert roles.count("Administrator") == 1 and roles.count("Programme staff") == 1
        assert roles.count("Assessor") == 3 and roles.count("Council applicant") >= 2
        tries = re.findall(r"^\s{2}\d\. As .+: (http\S+)$", printed, re.MULTILINE)
        assert len(tries) == 3

        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
            )
            for number, (role, name, _, start) in enumerate(people):
                context = browser.new_context(viewport={"width": 1280, "height": 900})
                page = context.new_page()
                page.goto(f"{served.portal}/sign-in")
                if number == 0:
                    page.screenshot(path=str(ARTIFACTS / "sign-in.png"), full_page=True)
                page.get_by_role("button", name=f"Sign in as {name}").click()
                page.wait_for_load_state()
                assert page.url.startswith(f"{served.portal}{start}"), (role, name, page.url)
                assert page.locator("h1").first.is_visible()
                body = page.locator("main").inner_text()
                assert "Sign in" not in page.locator("h1").first.inner_text()
                if role == "Programme staff":
                    assert "Whole-place community budgets" in body
                if role == "Council applicant":
                    council = name.split(" (", 1)[1].rstrip(")")
                    assert council in body, (name, body[:400])
                page.screenshot(
                    path=str(ARTIFACTS / f"{number}-{role.lower().replace(' ', '-')}.png"),
                    full_page=True,
                )
                for address in tries:  # the three things to try open for whoever they name
                    answer = page.request.get(address)
                    assert answer.status < 500
                context.close()
            browser.close()
    finally:
        assert served.stop() == 0
    first = _counts(data)

    # the next demo starts from nothing, and says so: nothing twice over
    mark = len(served.output.read_text())
    served.start(*demo, "--exit-after-demo")
    printed = _printed(served, mark, "Three things to try", 600)
    served.process.wait(timeout=60)  # type: ignore[union-attr]
    served.process = None
    assert "the previous demo's data is removed" in printed
    assert _counts(data) == first

    # asked to continue, it serves the same data again without running the round twice
    mark = len(served.output.read_text())
    served.start(*demo, "--continue", "--exit-after-demo")
    printed = _printed(served, mark, "Three things to try", 300)
    served.process.wait(timeout=60)  # type: ignore[union-attr]
    served.process = None
    assert "Continuing the previous demo" in printed
    assert "has already run" in printed
    assert _counts(data) == first
