"""Support on offer through the portal, with mail through a real local SMTP server: a council
asks from its applications page, the provider's people and the offer's contact are mailed; the
provider accepts or declines in its workspace and the council is mailed; a provider sees only
its organisation's requests (404 otherwise); staff's matrix and its CSV say what the records
say; bad input is 4xx with a clear message and nothing changed."""

from __future__ import annotations

import csv
import io
import re
from collections import Counter
from collections.abc import Iterator
from email.message import Message
from typing import Any

import pytest
import round_walk
import test_sign_in as mail
from conftest import london
from fastapi.testclient import TestClient
from portal import add_user, csrf
from portal import sign_in as outbox_sign_in
from sqlmodel import func, select
from support_walk import PROVIDERS, add_providers, to_implementation

from cbflow.clock import FixedClock
from cbflow.db import session_scope
from cbflow.models import Application, AuditEvent, SupportRequest, User
from cbflow.settings import Settings
from cbflow.web import create_app

smtp = mail.smtp  # a real SMTP server on this machine, keeping what it is sent
NOW = london(2012, 5, 14, 10, 0)  # the places implementing
LGA = PROVIDERS["Local Government Association"]
LP = PROVIDERS["Local Partnerships"]


def body(message: Message) -> str:
    payload = message.get_payload(decode=True)
    assert isinstance(payload, bytes)
    return payload.decode()


def sign_in(client: TestClient, inbox: mail.Inbox, email: str) -> None:
    """Sign in by the link the SMTP server received for the address."""
    page = client.get("/sign-in")
    client.post("/sign-in", data={"email": email, "csrf_token": csrf(page.text)})
    sent = [m for m in inbox.messages if m["To"] == email]
    assert sent, f"no sign-in link was mailed to {email}"
    assert mail.follow_link(client, mail.link_in(sent[-1])).status_code == 303


@pytest.fixture
def world(
    cbflow_env: Settings, smtp: tuple[mail.Inbox, int]
) -> Iterator[tuple[dict[str, TestClient], dict[str, int], mail.Inbox]]:
    ids = to_implementation()
    add_providers()
    add_user("bids@birmingham.example", "applicant", council="BIR")
    add_user("bids@bolton.example", "applicant", council="BOL")
    add_user("lead@staff.example", "staff")
    settings = cbflow_env.model_copy(update={"smtp_host": "127.0.0.1", "smtp_port": smtp[1]})
    people = {
        "birmingham": "bids@birmingham.example",
        "bolton": "bids@bolton.example",
        "lga": LGA,
        "lp": LP,
        "staff": "lead@staff.example",
    }
    clients = {}
    for who, email in people.items():
        client = TestClient(create_app(settings, clock=FixedClock(NOW)))
        client.__enter__()
        sign_in(client, smtp[0], email)
        clients[who] = client
    yield clients, ids, smtp[0]
    for client in clients.values():
        client.__exit__(None, None, None)


def ask(client: TestClient, application_id: int, offer: str, what_for: str) -> Any:
    page = client.get("/applications")
    return client.post(
        f"/applications/{application_id}/support",
        data={"offer": offer, "what_for": what_for, "csrf_token": csrf(page.text)},
        follow_redirects=False,
    )


def request_id(council: str, offer: str) -> tuple[int, int]:
    with session_scope() as session:
        row = session.exec(
            select(SupportRequest).where(
                SupportRequest.council_code == council, SupportRequest.offer_id == offer
            )
        ).one()
        assert row.id is not None
        return row.id, row.version


def answer(client: TestClient, rid: int, version: int, **data: str) -> Any:
    page = client.get("/support")
    return client.post(
        f"/support/requests/{rid}",
        data={"version": str(version), "csrf_token": csrf(page.text), **data},
        follow_redirects=False,
    )


def snapshot() -> tuple[list[tuple[Any, ...]], int]:
    with session_scope() as session:
        rows = [
            (r.id, r.state, r.version, r.what_for, r.reason)
            for r in session.exec(select(SupportRequest))
        ]
        events = session.exec(select(func.count()).select_from(AuditEvent)).one()
    return sorted(rows), events


def test_a_council_asks_the_provider_accepts_and_each_side_is_mailed(
    world: tuple[dict[str, TestClient], dict[str, int], mail.Inbox],
) -> None:
    clients, ids, inbox = world
    birmingham, lga = clients["birmingham"], clients["lga"]
    home = birmingham.get("/applications").text
    # implementing, a metropolitan district: the peer review and the mentor, not the county
    # network nor the bid clinic
    assert "Support on offer" in home
    assert "A peer review by officers of a place that pooled its budgets." in home
    assert "A mentor for the joint team through its first year." in home
    assert "two tiers" not in home and "half-day clinic" not in home
    sent = len(inbox.messages)
    answer_ = ask(
        birmingham, ids["BIR"], "peer-review", "To review our pooled budget's governance."
    )
    assert answer_.status_code == 303
    new = inbox.messages[sent:]
    assert sorted(m["To"] for m in new) == sorted(["peers@lga.example.gov.uk", LGA])
    assert "Birmingham asks Local Government Association" in body(new[0])
    assert "To review our pooled budget's governance." in body(new[0])
    assert "/support" in body(new[0])
    home = birmingham.get("/applications").text
    assert "Requested: waiting for the provider" in home
    # the offer asked for is not offered again while the request is open
    assert home.count('name="offer" value="peer-review"') == 0

    workspace = lga.get("/support")
    assert workspace.status_code == 200
    assert "To review our pooled budget&#39;s governance." in workspace.text
    assert "0 of 2" in workspace.text
    rid, version = request_id("BIR", "peer-review")
    sent = len(inbox.messages)
    assert answer(lga, rid, version, answer="accept").status_code == 303
    decided = inbox.messages[sent:]
    assert [m["To"] for m in decided] == ["bids@birmingham.example"]
    assert "Local Government Association has accepted" in body(decided[0])
    assert "peers@lga.example.gov.uk" in body(decided[0])
    assert "1 of 2" in lga.get("/support").text
    home = birmingham.get("/applications").text
    assert "Accepted" in home and "mailto:peers@lga.example.gov.uk" in home

    # a decline tells the council why
    ask(birmingham, ids["BIR"], "mentor", "A mentor for our new joint team.")
    rid, version = request_id("BIR", "mentor")
    sent = len(inbox.messages)
    said = "Our mentors are all placed until the autumn."
    assert answer(clients["lp"], rid, version, answer="decline", reason=said).status_code == 303
    declined = inbox.messages[sent:]
    assert [m["To"] for m in declined] == ["bids@birmingham.example"]
    assert "declined" in declined[0]["Subject"] and said in body(declined[0])
    assert f"Their reason: {said}" in birmingham.get("/applications").text

    # Birmingham withdraws the accepted review: the provider hears, and the place is free
    page = birmingham.get("/applications")
    rid, _ = request_id("BIR", "peer-review")
    sent = len(inbox.messages)
    withdrawn = birmingham.post(
        f"/applications/{ids['BIR']}/support/{rid}/withdraw",
        data={"csrf_token": csrf(page.text)},
        follow_redirects=False,
    )
    assert withdrawn.status_code == 303
    assert sorted(m["To"] for m in inbox.messages[sent:]) == sorted(
        ["peers@lga.example.gov.uk", LGA]
    )
    assert "0 of 2" in lga.get("/support").text


def test_a_provider_sees_and_decides_only_its_own_organisations_requests(
    world: tuple[dict[str, TestClient], dict[str, int], mail.Inbox],
) -> None:
    clients, ids, _ = world
    ask(clients["birmingham"], ids["BIR"], "peer-review", "Peer review, please.")
    rid, version = request_id("BIR", "peer-review")
    lp = clients["lp"]
    assert "Peer review, please." not in lp.get("/support").text
    before = snapshot()
    assert answer(lp, rid, version, answer="accept").status_code == 404
    assert answer(lp, rid, version, answer="decline", reason="Not ours").status_code == 404
    # nor may another council withdraw it, nor anyone but a provider reach the workspace
    bolton = clients["bolton"]
    page = bolton.get("/applications")
    for address in (
        f"/applications/{ids['BIR']}/support/{rid}/withdraw",
        f"/applications/{ids['BOL']}/support/{rid}/withdraw",
    ):
        refused = bolton.post(address, data={"csrf_token": csrf(page.text)})
        assert refused.status_code == 404
    assert bolton.get(f"/applications/{ids['BIR']}/support/peer-review").status_code == 404
    assert bolton.get("/support").status_code == 403
    assert clients["staff"].get("/support").status_code == 403
    assert snapshot() == before


def test_bad_input_is_refused_clearly_and_changes_nothing(
    world: tuple[dict[str, TestClient], dict[str, int], mail.Inbox],
) -> None:
    clients, ids, inbox = world
    birmingham, lga = clients["birmingham"], clients["lga"]
    before, sent = snapshot(), len(inbox.messages)
    empty = ask(birmingham, ids["BIR"], "peer-review", "  ")
    assert empty.status_code == 400 and "Say what you want the support for" in empty.text
    long = ask(birmingham, ids["BIR"], "peer-review", "x" * 1001)
    assert long.status_code == 400 and "1,000 characters or fewer" in long.text
    huge = ask(birmingham, ids["BIR"], "peer-review", "x" * 6000)
    assert huge.status_code == 400 and "longer than 5,000 characters" in huge.text
    assert ask(birmingham, ids["BIR"], "no-such-offer", "Help").status_code == 404
    closed = ask(birmingham, ids["BIR"], "bid-clinic", "Help with the bid")
    assert closed.status_code == 409 and "not on offer to your council at this stage" in closed.text
    # Bradford's application is not Birmingham's
    assert ask(birmingham, ids["BRD"], "peer-review", "Help").status_code == 404
    assert snapshot() == before and len(inbox.messages) == sent

    ask(birmingham, ids["BIR"], "peer-review", "Peer review of our plan.")
    twice = ask(birmingham, ids["BIR"], "peer-review", "Again")
    assert twice.status_code == 409 and "already asked" in twice.text
    rid, version = request_id("BIR", "peer-review")
    before, sent = snapshot(), len(inbox.messages)
    no_reason = answer(lga, rid, version, answer="decline", reason="")
    assert no_reason.status_code == 400 and "Say why you are declining it" in no_reason.text
    odd = answer(lga, rid, version, answer="maybe")
    assert odd.status_code == 400 and "Accept or decline the request" in odd.text
    assert snapshot() == before and len(inbox.messages) == sent
    # two tabs open on the same request: accepted in one, declined from the other (its page
    # older than the request now)
    assert answer(lga, rid, version, answer="accept").status_code == 303
    before, sent = snapshot(), len(inbox.messages)
    stale = answer(lga, rid, version, answer="decline", reason="No room after all.")
    assert stale.status_code == 409
    assert "changed since you opened the page: it is now accepted" in stale.text
    assert snapshot() == before and len(inbox.messages) == sent


def test_the_matrix_shows_gaps_overlaps_and_capacity_as_the_records_say(
    world: tuple[dict[str, TestClient], dict[str, int], mail.Inbox],
) -> None:
    clients, ids, _ = world
    birmingham = clients["birmingham"]
    # Birmingham asks for two offers of one kind (peer support): an overlap; Bolton asks for
    # nothing: a gap
    ask(birmingham, ids["BIR"], "peer-review", "Peer review of our plan.")
    ask(birmingham, ids["BIR"], "mentor", "A mentor for the joint team.")
    rid, version = request_id("BIR", "peer-review")
    assert answer(clients["lga"], rid, version, answer="accept").status_code == 303
    staff = clients["staff"]
    page = staff.get(f"/staff/rounds/{round_walk.SLUG}/support")
    assert page.status_code == 200
    # the round's stage pages name it, marked as the page shown
    assert 'href="/staff/rounds/whole-place-2011/support" aria-current="page">Support' in page.text
    text = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", page.text))
    assert "Places with no support (gaps) 1" in text
    assert "Places with overlapping support 1" in text
    table = staff.get(f"/staff/rounds/{round_walk.SLUG}/support.csv")
    assert table.status_code == 200 and table.headers["content-type"].startswith("text/csv")
    lines = list(csv.DictReader(io.StringIO(table.text)))
    # what the records say
    with session_scope() as session:
        rows = list(session.exec(select(SupportRequest)))
        applications = {a.id: a for a in session.exec(select(Application))}
    accepted = Counter(r.offer_id for r in rows if r.state == "accepted")
    live = [r for r in rows if r.state in ("requested", "accepted")]
    kinds = {"peer-review": "peer-support", "mentor": "peer-support"}
    places = {a.reference for a in applications.values() if a.state == "implementing"}
    places |= {applications[r.application_id].reference for r in rows}
    expected_gaps = {
        a.reference
        for a in applications.values()
        if a.state == "implementing" and not any(r.application_id == a.id for r in live)
    }
    per_place = Counter(
        (applications[r.application_id].reference, kinds.get(r.offer_id, r.offer_id)) for r in live
    )
    expected_overlaps = {ref for (ref, _), n in per_place.items() if n > 1}
    assert {line["Reference"] for line in lines} == places
    assert {line["Reference"] for line in lines if line["Gap"] == "yes"} == expected_gaps
    assert {line["Reference"] for line in lines if line["Overlapping kinds"]} == expected_overlaps
    taken = {line["Offer"]: int(line["Places taken"]) for line in lines}
    assert taken == {o: accepted[o] for o in ("bid-clinic", "peer-review", "mentor", "two-tier")}
    # and what that is here: Bolton a gap, Birmingham overlapping, one review place taken
    bir = applications[ids["BIR"]].reference
    bol = applications[ids["BOL"]].reference
    assert expected_gaps == {bol} and expected_overlaps == {bir} and taken["peer-review"] == 1
    cells = {(line["Reference"], line["Offer"]): line["Requests"] for line in lines}
    assert cells[(bir, "peer-review")] == "Accepted"
    assert cells[(bir, "mentor")] == "Requested: waiting for the provider"
    assert cells[(bol, "mentor")] == ""


def test_an_administrator_adds_a_provider_with_its_organisation(cbflow_env: Settings) -> None:
    add_user("admin@cbflow.example", "admin")
    with TestClient(create_app(cbflow_env, clock=FixedClock(NOW))) as admin:
        outbox_sign_in(admin, "admin@cbflow.example")
        form = {"email": "kim@lp.example.gov.uk", "name": "Kim Lee", "role": "provider"}
        page = admin.get("/admin/people")
        missing = admin.post("/admin/people", data={**form, "csrf_token": csrf(page.text)})
        assert missing.status_code == 400
        assert "Enter the organisation they answer for" in missing.text
        added = admin.post(
            "/admin/people",
            data={**form, "provider": "Local Partnerships", "csrf_token": csrf(page.text)},
        )
        assert added.status_code == 200 and "Local Partnerships" in added.text
    with session_scope() as session:
        kim = session.exec(select(User).where(User.email == "kim@lp.example.gov.uk")).one()
    assert (kim.role, kim.provider, kim.council_code) == ("provider", "Local Partnerships", None)
