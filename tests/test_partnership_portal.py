"""A partnership through the portal's pages: the lead names the place and its member councils,
members' officers see the application in their own list, edit it and confirm their council's
membership; the expression of interest waits for all of them; nobody else sees it; a stale
rename never overwrites a colleague's; an over-long name is refused with a clear message."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from conftest import edit, example_text
from fastapi.testclient import TestClient
from test_portal_forms import DURING_EOI, csrf, launch, post, sign_in, submit

from cbflow.clock import FixedClock
from cbflow.db import session_scope
from cbflow.models import Application
from cbflow.services import partnerships
from cbflow.settings import Settings
from cbflow.web import create_app

PARTNERSHIPS = (
    "capacity:\n",
    "applicants:\n  partnership: {min_councils: 2, max_councils: 3}\ncapacity:\n",
)


@pytest.fixture
def clients(cbflow_env: Settings) -> Iterator[dict[str, TestClient]]:
    """One browser each: Westminster's officer (the lead), Kensington and Chelsea's (a member),
    Camden's (no part of it)."""
    app = create_app(cbflow_env, clock=FixedClock(DURING_EOI))
    with TestClient(app) as lead, TestClient(app) as member, TestClient(app) as other:
        sign_in(lead, "lee@westminster.gov.uk", council="WSM")
        sign_in(member, "kim@rbkc.gov.uk", council="KEC")
        sign_in(other, "cam@camden.gov.uk", council="CMD")
        yield {"lead": lead, "member": member, "other": other}


def start(client: TestClient, slug: str) -> tuple[int, str]:
    page = client.get("/applications")
    answer = client.post(
        "/applications/start",
        data={"round": slug, "csrf_token": csrf(page.text)},
        follow_redirects=False,
    )
    assert answer.status_code == 303
    base = str(answer.headers["location"])
    return int(base.split("/")[2]), base


def fill(client: TestClient, base: str, council: str = "WSM") -> None:
    saved = post(
        client,
        f"{base}/section/place",
        {
            "lead_council": council,
            "partners-rows": "2",
            "partners-0-organisation": "Metropolitan Police",
            "partners-0-role": "Community safety",
            "partners-1-organisation": "NHS North West London",
            "partners-1-role": "Health",
            "ambition": "One public service for the three boroughs.",
            "action": "save",
        },
    )
    assert saved.status_code == 303


def test_a_partnership_is_built_confirmed_and_submitted_through_its_pages(
    clients: dict[str, TestClient],
) -> None:
    slug = launch(edit(example_text(), PARTNERSHIPS))
    lead, member, other = clients["lead"], clients["member"], clients["other"]
    application_id, base = start(lead, slug)
    tasks = lead.get(base)
    assert "Your partnership" in tasks.text and "Optional" in tasks.text
    page = f"/applications/{application_id}/partnership"

    named = lead.post(
        f"{page}/name",
        data={
            "place_name": "West London Tri-borough",
            "shown_name": "",
            "csrf_token": csrf(lead.get(page).text),
        },
        follow_redirects=False,
    )
    assert named.status_code == 303
    added = lead.post(
        f"{page}/members",
        data={"council": "KEC", "csrf_token": csrf(lead.get(page).text)},
        follow_redirects=False,
    )
    assert added.status_code == 303
    shown = lead.get(page)
    assert "Kensington and Chelsea is added" in shown.text
    assert "Waiting for Kensington and Chelsea to confirm" in shown.text

    # the member's officer finds it in their own list, may edit it, and confirms
    home = member.get("/applications")
    assert "West London Tri-borough, led by Westminster" in home.text
    assert "Confirm your council’s membership" in home.text
    fill(member, base)
    confirmed = member.post(
        f"{page}/confirm",
        data={"csrf_token": csrf(member.get(page).text)},
        follow_redirects=False,
    )
    assert confirmed.status_code == 303
    assert "You have confirmed that your council is part of West London Tri-borough" in (
        member.get(page).text
    )
    # a member does not change the list: that is the lead's
    refused = member.post(
        f"{page}/members",
        data={"council": "HMF", "csrf_token": csrf(member.get(page).text)},
        follow_redirects=False,
    )
    assert refused.status_code == 403

    # a council that is no part of it sees nothing of it
    assert other.get(base).status_code == 404
    assert other.get(page).status_code == 404

    answer = submit(lead, base)
    assert answer.status_code == 303
    with session_scope() as session:
        application = session.get(Application, application_id)
        assert application is not None and application.state == "eoi_submitted"
        place = partnerships.place_of(session, application)
    assert [m.code for m in place.councils] == ["WSM", "KEC"]
    assert place.members[0].confirmed_by == "kim@rbkc.gov.uk"
    # settled once submitted: the lead can no longer add a council
    late = lead.post(
        f"{page}/members",
        data={"council": "HMF", "csrf_token": csrf(lead.get(page).text)},
        follow_redirects=False,
    )
    assert late.status_code == 409
    assert "only while the expression of interest is a draft" in late.text


def test_submission_waits_for_every_member_and_says_what_is_missing(
    clients: dict[str, TestClient],
) -> None:
    slug = launch(edit(example_text(), PARTNERSHIPS))
    lead = clients["lead"]
    application_id, base = start(lead, slug)
    page = f"/applications/{application_id}/partnership"
    lead.post(
        f"{page}/members",
        data={"council": "KEC", "csrf_token": csrf(lead.get(page).text)},
    )
    fill(lead, base)

    refused = submit(lead, base)
    assert refused.status_code == 400
    assert "Kensington and Chelsea has still to confirm its membership" in refused.text
    assert "The partnership&#39;s place has no name" in refused.text
    assert f'href="{page}"' in refused.text
    with session_scope() as session:
        application = session.get(Application, application_id)
        assert application is not None and application.state == "eoi_draft"


def test_a_council_in_one_place_cannot_be_added_to_another(
    clients: dict[str, TestClient],
) -> None:
    slug = launch(edit(example_text(), PARTNERSHIPS))
    lead, other = clients["lead"], clients["other"]
    application_id, _ = start(lead, slug)
    page = f"/applications/{application_id}/partnership"
    lead.post(f"{page}/members", data={"council": "KEC", "csrf_token": csrf(lead.get(page).text)})

    camden_id, _ = start(other, slug)
    camden = f"/applications/{camden_id}/partnership"
    refused = other.post(
        f"{camden}/members",
        data={"council": "KEC", "csrf_token": csrf(other.get(camden).text)},
    )
    assert refused.status_code == 400
    assert "Kensington and Chelsea already belongs to an application in this round" in refused.text

    # the member council's officer pressing "Start" is taken to the place it is part of
    member = clients["member"]
    page_of_home = member.get("/applications")
    started = member.post(
        "/applications/start",
        data={"round": slug, "csrf_token": csrf(page_of_home.text)},
        follow_redirects=False,
    )
    assert started.status_code == 303
    assert started.headers["location"] == f"/applications/{application_id}/eoi"


def test_a_stale_rename_never_overwrites_and_a_long_one_is_refused(
    clients: dict[str, TestClient],
) -> None:
    slug = launch(edit(example_text(), PARTNERSHIPS))
    lead = clients["lead"]
    application_id, _ = start(lead, slug)
    page = f"/applications/{application_id}/partnership"
    token = csrf(lead.get(page).text)
    first = lead.post(
        f"{page}/name",
        data={"place_name": "Tri-borough", "shown_name": "", "csrf_token": token},
        follow_redirects=False,
    )
    assert first.status_code == 303
    # a colleague's page, drawn before that rename, still shows no name
    stale = lead.post(
        f"{page}/name",
        data={"place_name": "West London", "shown_name": "", "csrf_token": token},
    )
    assert stale.status_code == 409
    assert "Someone else renamed the place to “Tri-borough”" in stale.text
    assert 'value="West London"' in stale.text  # what they typed is kept to save again

    long = lead.post(
        f"{page}/name",
        data={"place_name": "x" * 121, "shown_name": "Tri-borough", "csrf_token": token},
    )
    assert long.status_code == 400
    assert "The name must be 120 characters or fewer" in long.text
    huge = lead.post(
        f"{page}/name",
        data={"place_name": "x" * 100_000, "shown_name": "Tri-borough", "csrf_token": token},
    )
    assert huge.status_code == 400
    with session_scope() as session:
        application = session.get(Application, application_id)
        assert application is not None and application.place_name == "Tri-borough"


def test_a_round_for_councils_alone_has_no_partnership_page(
    clients: dict[str, TestClient],
) -> None:
    slug = launch(example_text())
    lead = clients["lead"]
    application_id, base = start(lead, slug)
    assert "Your partnership" not in lead.get(base).text
    assert lead.get(f"/applications/{application_id}/partnership").status_code == 404
