"""Two officers of one council editing the same application at once, over real HTTP against the
portal running under uvicorn: saves of different sections at the same moment both stand, a save
from a page drawn before a colleague's save of the same answers is refused with a page (or, for
the autosave, JSON) naming who changed what and when, and nothing is changed until the person
chooses which answers to keep. Autosaves never stall the portal, and a save that cannot have the
draft's lock in time says it was not saved. On SQLite and on PostgreSQL."""

from __future__ import annotations

import html
import re
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any

import httpx
import pytest
from conftest import ROOT
from portal import serving
from sqlmodel import col, select
from test_portal_commits import sign_in_over_http
from test_portal_forms import DURING_EOI, launch

import cbflow.db
from cbflow.clock import FixedClock
from cbflow.db import lock_for_update, session_scope
from cbflow.models import Application, AuditEvent, User
from cbflow.settings import Settings

PAT = "pat@essex.gov.uk"
SAM = "sam@essex.gov.uk"
CONTACT = {
    "contact_email": "sam@essex.gov.uk",
    "chief_executive_signoff": "yes",
    "signoff_date-day": "3",
    "signoff_date-month": "11",
    "signoff_date-year": "2011",
}


@pytest.fixture
def officers(any_db_env: Settings) -> Iterator[tuple[str, httpx.Client, httpx.Client]]:
    """The portal serving a round with a four-section EOI, and two signed-in officers of Essex
    (Pat Jones, Sam Lee) whose EOI Pat has started; yields (EOI path, Pat, Sam)."""
    slug = launch((ROOT / "prospectus" / "whole-place-2011.yaml").read_text())
    with session_scope() as session:
        session.add(User(email=PAT, name="Pat Jones", role="applicant", council_code="ESS"))
        session.add(User(email=SAM, name="Sam Lee", role="applicant", council_code="ESS"))
    with serving(any_db_env, FixedClock(DURING_EOI)) as url:
        pat = httpx.Client(base_url=url, timeout=30)
        sam = httpx.Client(base_url=url, timeout=30)
        token = sign_in_over_http(pat, PAT)
        sign_in_over_http(sam, SAM)
        started = pat.post("/applications/start", data={"round": slug, "csrf_token": token})
        assert started.status_code == 303
        try:
            yield started.headers["location"], pat, sam
        finally:
            pat.close()
            sam.close()


def hidden_fields(page: str) -> dict[str, str]:
    """A page's hidden fields (its CSRF token, and the version and answers it shows)."""
    pairs = re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', page)
    return {name: html.unescape(value) for name, value in pairs}


def opened(client: httpx.Client, path: str) -> dict[str, str]:
    """Open a section's page as a browser does: what its form will post besides the answers."""
    page = client.get(path)
    assert page.status_code == 200
    return hidden_fields(page.text)


def stored() -> dict[str, Any]:
    with session_scope() as session:
        return dict(session.exec(select(Application)).one().eoi_answers)


def saves() -> list[AuditEvent]:
    with session_scope() as session:
        return list(
            session.exec(
                select(AuditEvent)
                .where(AuditEvent.action == "save_eoi")
                .order_by(col(AuditEvent.id))
            )
        )


def at_once(*work: Callable[[], int]) -> list[int]:
    """Run each piece of work in a thread of its own, all let go at the same moment."""
    start = threading.Barrier(len(work))

    def run(piece: Callable[[], int]) -> int:
        start.wait(timeout=30)
        return piece()

    with ThreadPoolExecutor(len(work)) as pool:
        return list(pool.map(run, work))


def autosave(client: httpx.Client, path: str, fields: dict[str, str], data: dict[str, Any]) -> Any:
    """Post as the page's script does: the answers with the page's version, the token in the
    header."""
    body = {k: v for k, v in fields.items() if k != "csrf_token"} | data
    return client.post(
        f"{path}/autosave",
        data=body,
        headers={"X-CSRF-Token": fields["csrf_token"], "Accept": "application/json"},
    )


def test_simultaneous_saves_of_different_sections_both_stand(
    officers: tuple[str, httpx.Client, httpx.Client],
) -> None:
    base, pat, sam = officers
    capacity, contact = f"{base}/section/capacity", f"{base}/section/contact"

    def save(client: httpx.Client, path: str, fields: dict[str, str], data: dict[str, str]) -> int:
        return client.post(path, data=fields | data | {"action": "save"}).status_code

    pairs = 50
    for n in range(pairs):
        # both pages are opened before either is saved: each save comes from a page that the
        # other's save makes out of date
        pat_page, sam_page = opened(pat, capacity), opened(sam, contact)
        outcomes = at_once(
            partial(save, pat, capacity, pat_page, {"capacity": f"A board, round {n}"}),
            partial(save, sam, contact, sam_page, {"contact_name": f"Sam Lee {n}", **CONTACT}),
        )
        assert outcomes == [303, 303], f"pair {n}: {outcomes}"
        answers = stored()
        assert answers["capacity"] == f"A board, round {n}", f"pair {n}: Pat's answer was lost"
        assert answers["contact_name"] == f"Sam Lee {n}", f"pair {n}: Sam's answer was lost"
    with session_scope() as session:
        application = session.exec(select(Application)).one()
        assert application.eoi_version == 2 * pairs
        assert application.eoi_changes["capacity"]["by"] == PAT
        assert application.eoi_changes["contact_name"]["by"] == SAM


def test_a_stale_save_is_refused_with_both_answers_and_changes_nothing(
    officers: tuple[str, httpx.Client, httpx.Client],
) -> None:
    base, pat, sam = officers
    path = f"{base}/section/capacity"
    pats_page = opened(pat, path)  # Pat opens the page, then Sam saves the same answer
    sams = sam.post(
        path, data=opened(sam, path) | {"capacity": "A board chaired by Sam", "action": "save"}
    )
    assert sams.status_code == 303
    before = (stored(), len(saves()))

    refused = pat.post(
        path, data=pats_page | {"capacity": "A board chaired by Pat", "action": "save"}
    )

    assert refused.status_code == 409
    page = refused.text
    assert "Sam Lee changed this answer while you were editing" in page
    assert "Your answers were not saved" in page
    assert "Changed by Sam Lee at 10:00 on 1 November 2011 (GMT)" in page
    assert "A board chaired by Pat" in page and "A board chaired by Sam" in page
    assert "Keep my answer" in page and "Keep Sam Lee’s answer" in page
    assert (stored(), len(saves())) == before  # nothing changed

    # without a choice the page asks again, with the error summary
    choice = hidden_fields(page) | {"action": "resolve"}
    unchosen = pat.post(path, data=choice)
    assert unchosen.status_code == 400
    assert "There is a problem" in unchosen.text
    assert 'href="#_keep-capacity"' in unchosen.text
    assert stored() == before[0]

    kept = pat.post(path, data=choice | {"_keep-capacity": "mine"})
    assert kept.status_code == 303
    assert stored()["capacity"] == "A board chaired by Pat"


def test_choosing_the_colleagues_answer_keeps_it_and_saves_the_rest(
    officers: tuple[str, httpx.Client, httpx.Client],
) -> None:
    base, pat, sam = officers
    path = f"{base}/section/contact"
    pats_page = opened(pat, path)
    sams_page = opened(sam, path)
    assert (
        sam.post(
            path, data=sams_page | CONTACT | {"contact_name": "Sam Lee", "action": "save"}
        ).status_code
        == 303
    )

    refused = pat.post(
        path,
        data=pats_page
        | CONTACT
        | {"contact_name": "Pat Jones", "contact_email": "pat@essex.gov.uk", "action": "save"},
    )
    assert refused.status_code == 409
    assert "Changed by Sam Lee" in refused.text
    choice = hidden_fields(refused.text) | {"action": "resolve"}
    assert choice["_asked"] == "contact_name,contact_email"

    kept = pat.post(
        path, data=choice | {"_keep-contact_name": "theirs", "_keep-contact_email": "mine"}
    )

    assert kept.status_code == 303
    answers = stored()
    assert answers["contact_name"] == "Sam Lee"  # theirs, as chosen
    assert answers["contact_email"] == "pat@essex.gov.uk"  # mine, as chosen


def test_a_stale_save_of_other_answers_of_the_same_section_merges(
    officers: tuple[str, httpx.Client, httpx.Client],
) -> None:
    """Pat's page is out of date, but Sam changed an answer Pat left alone: Sam's stands, and
    Pat's own change is saved with it."""
    base, pat, sam = officers
    path = f"{base}/section/contact"
    first = pat.post(
        path, data=opened(pat, path) | CONTACT | {"contact_name": "Pat Jones", "action": "save"}
    )
    assert first.status_code == 303
    pats_page = opened(pat, path)
    assert (
        sam.post(
            path, data=opened(sam, path) | CONTACT | {"contact_name": "Sam Lee", "action": "save"}
        ).status_code
        == 303
    )

    # Pat's page still shows "Pat Jones"; Pat changes only the e-mail address
    answer = autosave(
        pat, path, pats_page, CONTACT | {"contact_name": "Pat Jones", "contact_email": "p@x.org"}
    )

    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["saved"] is True
    assert "Sam Lee changed “Contact name” at 10:00" in body["message"]
    assert stored()["contact_name"] == "Sam Lee" and stored()["contact_email"] == "p@x.org"
    # the page stays at its version: were Pat now to change the name, that would conflict
    again = autosave(
        pat,
        path,
        pats_page | {"_version": str(body["version"]), "_base": body["base"]},
        CONTACT | {"contact_name": "Pat J", "contact_email": "p@x.org"},
    )
    assert again.status_code == 409
    assert stored()["contact_name"] == "Sam Lee"


def test_autosave_reports_a_conflict_and_saves_nothing(
    officers: tuple[str, httpx.Client, httpx.Client],
) -> None:
    base, pat, sam = officers
    path = f"{base}/section/capacity"
    pats_page = opened(pat, path)
    assert (
        sam.post(
            path, data=opened(sam, path) | {"capacity": "Sam's words", "action": "save"}
        ).status_code
        == 303
    )

    answer = autosave(pat, path, pats_page, {"capacity": "Pat's words"})

    assert answer.status_code == 409
    body = answer.json()
    assert body["saved"] is False
    assert body["message"].startswith("Not saved: changed by Sam Lee at 10:00")
    assert body["conflict"]["questions"] == [
        {
            "id": "capacity",
            "label": body["conflict"]["questions"][0]["label"],
            "by": "Sam Lee",
            "at": "2011-11-01T10:00:00+00:00",
        }
    ]
    assert stored()["capacity"] == "Sam's words"

    # a page that took the version from its autosave answers is not stale
    fresh = opened(pat, path)
    first = autosave(pat, path, fresh, {"capacity": "Pat's words"})
    assert first.status_code == 200
    carried = fresh | {"_version": str(first.json()["version"]), "_base": first.json()["base"]}
    second = autosave(pat, path, carried, {"capacity": "Pat's second words"})
    assert second.status_code == 200 and second.json()["saved"] is True
    assert stored()["capacity"] == "Pat's second words"


def test_the_audit_lists_the_questions_each_save_changed(
    officers: tuple[str, httpx.Client, httpx.Client],
) -> None:
    base, pat, _ = officers
    path = f"{base}/section/contact"
    answer = pat.post(
        path, data=opened(pat, path) | CONTACT | {"contact_name": "Pat Jones", "action": "save"}
    )
    assert answer.status_code == 303
    changed = CONTACT | {"contact_name": "Pat Jones", "contact_email": "p@x.org"}
    again = pat.post(path, data=opened(pat, path) | changed)
    assert again.status_code == 303

    events = saves()
    assert [e.reason for e in events] == [
        "changed: contact_name, contact_email, chief_executive_signoff, signoff_date",
        "changed: contact_email",
    ]
    assert {e.actor for e in events} == {PAT}


def test_a_save_that_cannot_have_the_lock_in_time_says_nothing_was_saved(
    officers: tuple[str, httpx.Client, httpx.Client], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another transaction holds the draft (on SQLite the database's writer lock, on PostgreSQL
    the application's row) for longer than a save waits: the save answers 503 at once, a page
    or JSON saying the answers were not saved, and the portal goes on answering."""
    monkeypatch.setattr(cbflow.db, "BUSY_SECONDS", 1)
    base, pat, _ = officers
    path = f"{base}/section/capacity"
    page = opened(pat, path)
    with session_scope() as session:
        application = session.exec(select(Application)).one()
        lock_for_update(session, application)  # held until this block ends

        began = time.monotonic()
        refused = pat.post(path, data=page | {"capacity": "Typed while busy", "action": "save"})
        autosaved = autosave(pat, path, page, {"capacity": "Typed while busy"})
        took = time.monotonic() - began

    assert refused.status_code == 503
    assert "Your answers were not saved: the service is busy" in refused.text
    assert "Typed while busy</textarea>" in refused.text  # nothing typed is lost
    assert autosaved.status_code == 503
    assert autosaved.json()["saved"] is False
    assert autosaved.json()["message"].startswith("Not saved: the service is busy")
    assert took < 10, f"{took:.1f} s"
    assert "capacity" not in stored()
    retried = pat.post(path, data=page | {"capacity": "Typed while busy", "action": "save"})
    assert retried.status_code == 303
    assert stored()["capacity"] == "Typed while busy"


@pytest.mark.slow
def test_simultaneous_autosaves_never_stop_the_portal_answering(
    officers: tuple[str, httpx.Client, httpx.Client],
) -> None:
    """500 rounds of two officers' autosaves at the same moment, while /healthz is asked every
    tenth of a second with a one-second time-out: every autosave is answered and saved, and the
    portal never stops answering."""
    base, pat, sam = officers
    capacity, contact = f"{base}/section/capacity", f"{base}/section/contact"
    pages = {"pat": opened(pat, capacity), "sam": opened(sam, contact)}
    url = str(pat.base_url)
    stop = threading.Event()
    slowest: list[float] = []
    failures: list[str] = []

    def health() -> None:
        with httpx.Client(base_url=url, timeout=1) as client:
            while not stop.is_set():
                began = time.monotonic()
                try:
                    assert client.get("/healthz").status_code == 200
                except (httpx.HTTPError, AssertionError) as exc:
                    failures.append(f"{type(exc).__name__} after {time.monotonic() - began:.1f} s")
                slowest.append(time.monotonic() - began)
                time.sleep(0.1)

    at_once = threading.Barrier(2)

    def autosaves(who: str, client: httpx.Client, path: str, rounds: int) -> list[int]:
        statuses = []
        for n in range(rounds):
            data = (
                {"capacity": f"Board {n}"}
                if who == "pat"
                else {"contact_name": f"Sam {n}", **CONTACT}
            )
            at_once.wait(timeout=60)
            answer = autosave(client, path, pages[who], data)
            statuses.append(answer.status_code)
            if answer.status_code == 200:
                body = answer.json()
                pages[who] |= {"_version": str(body["version"]), "_base": body["base"]}
        return statuses

    rounds = 500
    results: dict[str, list[int]] = {}
    poller = threading.Thread(target=health)
    poller.start()
    began = time.monotonic()
    try:
        racers = [
            threading.Thread(
                target=lambda: results.__setitem__("pat", autosaves("pat", pat, capacity, rounds))
            ),
            threading.Thread(
                target=lambda: results.__setitem__("sam", autosaves("sam", sam, contact, rounds))
            ),
        ]
        for racer in racers:
            racer.start()
        for racer in racers:
            racer.join(timeout=300)
        took = time.monotonic() - began
        time.sleep(1)  # and after the rounds
    finally:
        stop.set()
        poller.join(timeout=5)

    assert results["pat"] == [200] * rounds and results["sam"] == [200] * rounds
    assert not failures, failures[:5]
    assert max(slowest) < 1, f"/healthz took {max(slowest):.2f} s"
    answers = stored()
    assert answers["capacity"] == f"Board {rounds - 1}"
    assert answers["contact_name"] == f"Sam {rounds - 1}"
    print(f"{rounds} rounds in {took:.1f} s; slowest /healthz {max(slowest) * 1000:.0f} ms")
