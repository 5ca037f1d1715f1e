"""Partners and contributions through the portal's pages: the council adds a partner, is told
what stops its submission, sends the request (the mail waits in the outbox); the partner's
contact opens the link (spending nothing), confirms once, and the link then says it has been
used; a decline shows its reason; a stale change is refused; bounded input is refused at once
with the field named and nothing changed."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator

import pytest
from conftest import edit, example_text
from fastapi.testclient import TestClient
from sqlmodel import col, func, select
from test_partnership_portal import fill, start
from test_portal_forms import DURING_EOI, csrf, launch, sign_in, submit

from cbflow.clock import FixedClock
from cbflow.db import session_scope
from cbflow.models import Application, OutboxMessage, PartnerContribution
from cbflow.settings import Settings
from cbflow.web import create_app

PARTNERS = (
    "capacity:\n",
    "partners: {stage: eoi, years: [2012-13, 2013-14], require_confirmed: true}\ncapacity:\n",
)
POLICE = {
    "organisation": "Metropolitan Police",
    "partner_type": "police",
    "contact_name": "Pat Jones",
    "contact_email": "pat.jones@met.example",
    "amount-2012-13": "1,000,000",
    "amount-2013-14": "250000.50",
}


@pytest.fixture
def clients(cbflow_env: Settings) -> Iterator[dict[str, TestClient]]:
    """Westminster's officer, and a partner's contact who is signed in to nothing."""
    app = create_app(cbflow_env, clock=FixedClock(DURING_EOI))
    with TestClient(app) as council, TestClient(app) as partner:
        sign_in(council, "lee@westminster.gov.uk", council="WSM")
        yield {"council": council, "partner": partner}


def post(client: TestClient, page: str, action: str, data: dict[str, str]) -> object:
    return client.post(
        action,
        data={**data, "csrf_token": csrf(client.get(page).text)},
        follow_redirects=False,
    )


def link_in_outbox(to: str) -> str:
    with session_scope() as session:
        body = session.exec(
            select(OutboxMessage.body)
            .where(OutboxMessage.to == to)
            .order_by(col(OutboxMessage.id).desc())
        ).first()
    assert body is not None, f"no request was sent to {to}"
    found = re.search(r"/partner/[\w-]+", body)
    assert found is not None
    assert "2012-13: £1,000,000.00" in body and "2013-14: £250,000.50" in body
    return found.group(0)


def only_contribution() -> PartnerContribution:
    with session_scope() as session:
        row = session.exec(select(PartnerContribution)).one()
        session.expunge(row)
        return row


def test_a_partner_is_added_asked_confirms_once_and_the_eoi_is_submitted(
    clients: dict[str, TestClient],
) -> None:
    slug = launch(edit(example_text(), PARTNERS))
    council, partner = clients["council"], clients["partner"]
    application_id, base = start(council, slug)
    assert "Partners and contributions" in council.get(base).text
    page = f"/applications/{application_id}/partners"
    shown = council.get(page)
    assert shown.status_code == 200 and "No partners yet." in shown.text

    added = post(council, page, page, POLICE)
    assert added.status_code == 303  # type: ignore[attr-defined]
    shown = council.get(page)
    assert "Metropolitan Police is added" in shown.text
    assert "Not yet sent to Pat Jones" in shown.text and "£1,250,000.50" in shown.text

    fill(council, base)
    refused = submit(council, base)
    assert refused.status_code == 400
    assert "Metropolitan Police has still to confirm their contribution" in refused.text
    assert f'href="{page}"' in refused.text  # the summary leads to the page that puts it right

    row = only_contribution()
    sent = post(council, page, f"{page}/{row.id}/send", {"version": str(row.version)})
    assert sent.status_code == 303  # type: ignore[attr-defined]
    assert "Waiting for Pat Jones" in council.get(page).text
    link = link_in_outbox("pat.jones@met.example")

    # opening the link spends nothing: it can be opened again
    assert partner.get(link).status_code == 200
    opened = partner.get(link)
    assert "Confirm Metropolitan Police’s contribution to Westminster" in opened.text
    assert "£250,000.50" in opened.text
    no_name = partner.post(
        link, data={"answer": "confirm", "name": " ", "csrf_token": csrf(opened.text)}
    )
    assert no_name.status_code == 400 and "Enter your name to confirm" in no_name.text
    thanked = partner.post(
        link, data={"answer": "confirm", "name": "Pat Jones", "csrf_token": csrf(opened.text)}
    )
    assert thanked.status_code == 200 and "Contribution confirmed" in thanked.text
    used = partner.get(link)
    assert used.status_code == 400 and "This link has been used or has expired" in used.text
    again = partner.post(
        link, data={"answer": "decline", "reason": "No", "csrf_token": csrf(opened.text)}
    )
    assert again.status_code == 400
    assert only_contribution().status == "confirmed"

    shown = council.get(page)
    assert "Confirmed by Pat Jones" in shown.text
    assert "<strong>£1,250,000.50</strong>" in shown.text
    assert submit(council, base).status_code == 303
    with session_scope() as session:
        application = session.get(Application, application_id)
        assert application is not None and application.state == "eoi_submitted"
    # settled once submitted
    late = post(council, page, page, POLICE | {"organisation": "London Fire Brigade"})
    assert late.status_code == 409  # type: ignore[attr-defined]


def test_a_decline_shows_its_reason_and_a_change_asks_again(
    clients: dict[str, TestClient],
) -> None:
    slug = launch(edit(example_text(), PARTNERS))
    council, partner = clients["council"], clients["partner"]
    application_id, _ = start(council, slug)
    page = f"/applications/{application_id}/partners"
    post(council, page, page, POLICE)
    row = only_contribution()
    post(council, page, f"{page}/{row.id}/send", {"version": str(row.version)})
    link = link_in_outbox("pat.jones@met.example")
    opened = partner.get(link)
    declined = partner.post(
        link,
        data={"answer": "decline", "reason": "Not agreed yet", "csrf_token": csrf(opened.text)},
    )
    assert declined.status_code == 200 and "Contribution declined" in declined.text
    assert "Declined: Not agreed yet" in council.get(page).text

    row = only_contribution()
    form = council.get(f"{page}?change={row.id}")
    assert "Change Metropolitan Police" in form.text and 'value="250000.50"' in form.text
    changed = post(
        council,
        page,
        f"{page}/{row.id}",
        POLICE | {"amount-2013-14": "100000", "version": str(row.version)},
    )
    assert changed.status_code == 303  # type: ignore[attr-defined]
    assert "Not yet sent to Pat Jones" in council.get(page).text
    # a page drawn before that change is refused, naming who made it
    stale = post(
        council,
        page,
        f"{page}/{row.id}",
        POLICE | {"amount-2013-14": "5", "version": str(row.version)},
    )
    assert stale.status_code == 409  # type: ignore[attr-defined]
    assert "lee@westminster.gov.uk changed" in stale.text  # type: ignore[attr-defined]
    assert only_contribution().amounts["2013-14"] == 10_000_000

    removed = post(council, page, f"{page}/{row.id}/remove", {"version": str(row.version + 1)})
    assert removed.status_code == 303  # type: ignore[attr-defined]
    assert "Metropolitan Police is taken out" in council.get(page).text


def test_bounded_input_is_refused_at_once_with_the_field_named(
    clients: dict[str, TestClient],
) -> None:
    slug = launch(edit(example_text(), PARTNERS))
    council, partner = clients["council"], clients["partner"]
    application_id, _ = start(council, slug)
    page = f"/applications/{application_id}/partners"
    for typed, said in (
        ({"organisation": "x" * 100_000}, "The name must be 200 characters or fewer"),
        ({"contact_email": "a@" + "." * 40_000 + "@"}, "Email address must be 254 characters"),
        ({"amount-2012-13": "9" * 5000}, "2012-13: Enter an amount of at most"),
        ({"amount-2013-14": "10000000000.01"}, "2013-14: the amount must be £10bn or less"),
        ({"partner_type": "army"}, "Choose the type of partner"),
    ):
        began = time.monotonic()
        answer = post(council, page, page, POLICE | typed)
        assert time.monotonic() - began < 1
        assert answer.status_code == 400, typed  # type: ignore[attr-defined]
        assert said in answer.text  # type: ignore[attr-defined]
    with session_scope() as session:
        assert session.exec(select(func.count()).select_from(PartnerContribution)).one() == 0

    began = time.monotonic()
    long_link = partner.get("/partner/" + "a" * 5000)
    assert long_link.status_code == 400 and time.monotonic() - began < 1
    assert "ask the council that sent it for a new link" in long_link.text
    assert council.get(f"/applications/{application_id}/partners/1/nothing").status_code in (
        404,
        405,
    )


def test_a_round_without_partners_has_no_partners_page(clients: dict[str, TestClient]) -> None:
    slug = launch(example_text())
    council = clients["council"]
    application_id, base = start(council, slug)
    assert "Partners and contributions" not in council.get(base).text
    assert council.get(f"/applications/{application_id}/partners").status_code == 404


def test_a_partners_link_is_kept_out_of_the_logs() -> None:
    import logging

    from cbflow.web.auth import RedactLinkTokens as RedactPartnerTokens

    record = logging.LogRecord(
        "uvicorn.access",
        logging.INFO,
        "",
        0,
        '%s - "%s %s HTTP/1.1" %d',
        ("127.0.0.1", "GET", "/partner/abc-DEF_123?x=1", 200),
        None,
    )
    RedactPartnerTokens().filter(record)
    assert record.getMessage() == '127.0.0.1 - "GET /partner/[token]?x=1 HTTP/1.1" 200'
