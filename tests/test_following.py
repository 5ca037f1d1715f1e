"""Following a pilot: the format example's round walked to implementation (Birmingham and Bolton
selected, Bradford not), other councils following its places through the portal: who may follow
and what they see (a place that stops sharing its returns shows none of their figures; 404 to the
rest; a council of a type the round does not take is refused where the prospectus says `follow:
eligible`), intending to adopt and unfollowing, the staff's counts against the records, and the
digest through a real SMTP server: what is new, sent once, not again until due, nothing when
nothing is new, and once however many runs there are at the same time."""

from __future__ import annotations

import html
import re
import threading
from collections.abc import Iterator
from datetime import date, datetime, timedelta

import pytest
import round_walk
from conftest import edit, london
from fastapi.testclient import TestClient
from portal import add_user, csrf, sign_in
from round_walk import SLUG
from sqlmodel import col, func, select
from test_sign_in import Inbox, smtp  # noqa: F401  (the fixture)

from cbflow import stages
from cbflow.clock import FixedClock
from cbflow.db import session_scope
from cbflow.errors import ProspectusError
from cbflow.models import Application, AuditEvent, Council, Follow
from cbflow.prospectus import parse
from cbflow.services import assessment, following, implementation, rounds
from cbflow.settings import Settings, get_settings
from cbflow.web import create_app

DURING = london(2012, 7, 5, 9, 0)  # implementing: Birmingham's first return is open
NARRATIVE = "Forty families met their key worker."
FIGURES = {"families_attached": 41, "families_turned_around": 7, "narrative": NARRATIVE}
# the prospectus lets only the kinds of council it takes follow its places; shire districts
# (NMD) are left out of those it takes
ELIGIBLE_ONLY = (
    ("council_types: [CTY, UA, MD, LBO, CC, NMD]", "council_types: [CTY, UA, MD, LBO, CC]"),
    ("    open_to: all ", "    follow: eligible\n    open_to: all "),
)


def to_implementation(source: str = round_walk.SOURCE) -> dict[str, int]:
    """The round walked to implementation; council code -> application id."""
    ids = round_walk.to_assessment(source, assessors=3)
    round_walk.score_everything()
    stages.open_moderation(SLUG, now=round_walk.ASSESS_DAY)
    with session_scope() as session:
        for task in assessment.moderation_tasks(session, rounds.get_round(session, SLUG)):
            assessment.moderate(
                session,
                task=task,
                score=3,
                reason="agreed",
                actor="staff",
                now=round_walk.FINAL_DAY,
            )
    stages.finalise_assessment(SLUG, now=round_walk.FINAL_DAY)
    stages.decide(SLUG, now=round_walk.DECIDE_DAY)
    stages.start_implementation(SLUG, now=round_walk.START_DAY)
    return ids


def make_return(application_id: int, at: datetime) -> None:
    with session_scope() as session:
        application = session.get(Application, application_id)
        assert application is not None
        first = implementation.returns_of(session, application)[0]
        implementation.submit_return(
            session, record_=first, answers=FIGURES, actor="council", now=at
        )


def meet_milestone(application_id: int, on: date, at: datetime) -> None:
    with session_scope() as session:
        application = session.get(Application, application_id)
        assert application is not None
        (milestone,) = implementation.milestones_of(session, application)
        implementation.meet_milestone(session, milestone=milestone, met_on=on, actor="x", now=at)


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(DURING)


def client_for(settings: Settings, clock: FixedClock, email: str | None) -> TestClient:
    client = TestClient(create_app(settings, clock=clock))
    if email is not None:
        sign_in(client, email)
    return client


def post(client: TestClient, path: str, page: str, **data: str) -> int:
    answer = client.post(
        path, data={"csrf_token": csrf(client.get(page).text), **data}, follow_redirects=False
    )
    return answer.status_code


def test_a_council_follows_a_selected_place_and_sees_its_plan_and_shared_returns(
    cbflow_env: Settings, clock: FixedClock
) -> None:
    ids = to_implementation()
    bir, bol, brd = ids["BIR"], ids["BOL"], ids["BRD"]
    add_user("ann@leeds.example", "applicant", council="LDS", name="Ann Leeds")
    add_user("pat@birmingham.example", "applicant", council="BIR", name="Pat Birmingham")
    add_user("lead@staff.example", "staff")
    leeds = client_for(cbflow_env, clock, "ann@leeds.example")
    own = client_for(cbflow_env, clock, "pat@birmingham.example")
    staff = client_for(cbflow_env, clock, "lead@staff.example")

    listing = leeds.get("/pilots").text
    assert "Birmingham" in listing and "Bolton" in listing
    assert "Bradford" not in listing  # not selected
    assert "Pilots to follow" in leeds.get("/applications").text  # in the officer's navigation
    # 404 for a place not selected, for the place itself, 403 for staff (their own pages)
    assert leeds.get(f"/pilots/{brd}").status_code == 404
    assert own.get(f"/pilots/{bir}").status_code == 404
    assert staff.get(f"/pilots/{bir}").status_code == 403
    assert post(own, f"/pilots/{bir}/follow", "/pilots") == 404
    anonymous = client_for(cbflow_env, clock, None).get(f"/pilots/{bir}", follow_redirects=False)
    assert anonymous.status_code == 303

    page = f"/pilots/{bir}"
    assert post(leeds, f"{page}/follow", "/pilots", back="list") == 303
    assert post(leeds, f"{page}/follow", "/pilots", back="list") == 303  # again: one follow
    text = leeds.get(page).text
    assert "Leeds has followed Birmingham since" in text
    assert "Pooled budget" in text or "pooled" in text.lower()  # carried-over answers: the plan
    assert "Primary care trust" in text
    assert "Operational plan agreed" in text and "Not yet met" in text
    assert "has made no returns yet" in text

    make_return(bir, DURING)
    stages.returns_cycle(SLUG, now=DURING)  # each place's progress report
    text = leeds.get(page).text
    assert "Return 1:" in text and NARRATIVE in text
    report = re.search(rf'href="(/pilots/{bir}/documents/\d+)"', text)
    assert report is not None
    served = leeds.get(report.group(1))
    assert served.status_code == 200 and served.content.startswith(b"%PDF")

    # the place stops sharing its returns' figures, from its returns page
    returns_page = f"/applications/{bir}/returns"
    assert "Stop sharing our returns" in own.get(returns_page).text
    share = f"/applications/{bir}/returns/share"
    assert post(own, share, returns_page, share="no", shown="yes") == 303
    text = leeds.get(page).text
    assert "Birmingham does not share the figures from its returns." in text
    assert "Return 1:" not in text and NARRATIVE not in text
    assert "progress reports chart the figures from its returns, which it does not share" in (
        html.unescape(text)
    )
    assert leeds.get(report.group(1)).status_code == 404
    # a second change from a page that still showed it shared: refused, and says so
    stale = own.post(
        share,
        data={"csrf_token": csrf(own.get(returns_page).text), "share": "no", "shown": "yes"},
    )
    assert stale.status_code == 409
    assert "your returns' figures are now not shared" in html.unescape(stale.text)
    assert leeds.post(share, data={"csrf_token": csrf(leeds.get("/pilots").text)}).status_code == (
        404
    )  # another council's setting
    assert post(own, share, returns_page, share="yes", shown="no") == 303
    assert NARRATIVE in leeds.get(page).text

    # intending to adopt, then unfollowing
    assert post(leeds, f"{page}/intend", page, intends="yes") == 303
    assert "Leeds intends to adopt this model" in leeds.get(page).text
    assert "Following; you intend to adopt it" in leeds.get("/pilots").text
    followers = staff.get(f"/staff/rounds/{SLUG}/followers").text
    assert "Leeds" in followers
    assert post(leeds, f"{page}/unfollow", page) == 303
    assert "Follow Birmingham" in leeds.get(page).text
    assert post(leeds, f"{page}/intend", page, intends="yes") == 409  # follow first
    with session_scope() as session:
        assert session.exec(select(Follow)).all() == []
        actions = list(
            session.exec(
                select(AuditEvent.action)
                .where(AuditEvent.entity == "application", AuditEvent.entity_id == bir)
                .order_by(col(AuditEvent.id))
            )
        )
    assert [a for a in actions if a not in ("transition", "return_submitted")][-5:] == [
        "followed",
        "stop_sharing_returns",
        "share_returns",
        "intends_to_adopt",
        "unfollowed",
    ]
    assert bol  # Bolton, the other place, stays followable
    assert f'href="/pilots/{bol}"' in leeds.get("/pilots").text


def test_under_follow_eligible_a_council_the_round_does_not_take_is_refused(
    cbflow_env: Settings, clock: FixedClock
) -> None:
    ids = to_implementation(edit(round_walk.SOURCE, *ELIGIBLE_ONLY))
    add_user("ada@adur.example", "applicant", council="ADU", name="Ada Adur")  # a shire district
    add_user("ann@leeds.example", "applicant", council="LDS", name="Ann Leeds")
    adur = client_for(cbflow_env, clock, "ada@adur.example")
    assert "No place that Adur can follow has been selected yet." in adur.get("/pilots").text
    assert adur.get(f"/pilots/{ids['BIR']}").status_code == 404
    assert post(adur, f"/pilots/{ids['BIR']}/follow", "/pilots") == 404
    leeds = client_for(cbflow_env, clock, "ann@leeds.example")
    assert post(leeds, f"/pilots/{ids['BIR']}/follow", "/pilots") == 303
    with session_scope() as session:
        (only,) = session.exec(select(Follow))
        assert only.council_code == "LDS"
        place = session.get(Application, ids["BIR"])
        council = session.get(Council, "ADU")
        assert place is not None and council is not None
        said = following.refusal(session, place, council)
    assert said is not None and "Adur (non-metropolitan district) is not one of them" in said


def test_under_follow_all_any_council_may_follow(cbflow_env: Settings) -> None:
    ids = to_implementation()
    with session_scope() as session:
        place = session.get(Application, ids["BIR"])
        adur = session.get(Council, "ADU")
        assert place is not None and adur is not None
        assert following.refusal(session, place, adur) is None
        assert [a.id for a in following.followable(session, adur)] == [ids["BIR"], ids["BOL"]]


FOLLOWERS = {  # council -> (place, intends to adopt)
    "LDS": [("BIR", True), ("BOL", False)],
    "MAN": [("BIR", True)],
    "KEN": [("BIR", False)],
    "WSM": [("BOL", True)],
    "ADU": [("BOL", False)],
}


def test_the_staff_followers_page_counts_what_the_records_hold(
    cbflow_env: Settings, clock: FixedClock
) -> None:
    ids = to_implementation()
    with session_scope() as session:
        for code, places in FOLLOWERS.items():
            council = session.get(Council, code)
            assert council is not None
            for place_code, intends in places:
                place = session.get(Application, ids[place_code])
                assert place is not None
                following.follow(
                    session, application=place, council=council, actor=code, now=DURING
                )
                if intends:
                    following.intend(
                        session,
                        application=place,
                        council=council,
                        intends=True,
                        actor=code,
                        now=DURING,
                    )
    add_user("lead@staff.example", "staff")
    staff = client_for(cbflow_env, clock, "lead@staff.example")
    round_page = staff.get(f"/staff/rounds/{SLUG}").text
    assert f'href="/staff/rounds/{SLUG}/followers"' in round_page  # in the round's navigation
    text = staff.get(f"/staff/rounds/{SLUG}/followers").text
    flat = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", text))
    with session_scope() as session:
        rows = list(session.exec(select(Follow, Council).join(Council)))
        total = session.exec(select(func.count()).select_from(Follow)).one()
    assert f"{total} follows in all, 3 with an intention to adopt" in flat
    for code, name in (("BIR", "Birmingham"), ("BOL", "Bolton")):
        mine = [(f, c) for f, c in rows if f.application_id == ids[code]]
        intends = sum(1 for f, _ in mine if f.intends_to_adopt_at is not None)
        assert f"{name} {len(mine)} {intends} " in flat
    regions: dict[str, list[Follow]] = {}
    for f, c in rows:
        regions.setdefault(c.region, []).append(f)
    for region, found in regions.items():
        intends = sum(1 for f in found if f.intends_to_adopt_at is not None)
        assert f"{region} {len(found)} {intends}" in flat
    assert "Yorkshire and The Humber 2 1" in flat  # Leeds: both places, one intention
    assert "Bradford" not in flat  # not selected: not followed


@pytest.fixture
def by_smtp(
    any_db_env: Settings,
    smtp: tuple[Inbox, int],  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Inbox]:
    inbox, port = smtp
    monkeypatch.setenv("CBFLOW_SMTP_HOST", "127.0.0.1")
    monkeypatch.setenv("CBFLOW_SMTP_PORT", str(port))
    get_settings.cache_clear()
    yield inbox
    get_settings.cache_clear()


def mail_to(inbox: Inbox, address: str) -> list[str]:
    found = []
    for message in inbox.messages:
        if message["To"] == address:
            body = message.get_payload(decode=True)
            assert isinstance(body, bytes)
            found.append(f"{message['Subject']}\n{body.decode()}".replace("\r\n", "\n"))
    return found


def test_the_digest_tells_followers_what_is_new_once_and_not_again_until_due(
    by_smtp: Inbox,
) -> None:
    inbox = by_smtp
    ids = to_implementation()
    bir = ids["BIR"]
    for email, code in (
        ("ann@leeds.example", "LDS"),
        ("bob@leeds.example", "LDS"),
        ("max@manchester.example", "MAN"),
    ):
        add_user(email, "applicant", council=code, name=email.split("@")[0].title())
    followed = DURING - timedelta(days=1)
    with session_scope() as session:
        place = session.get(Application, bir)
        assert place is not None
        for code in ("LDS", "MAN"):
            council = session.get(Council, code)
            assert council is not None
            following.follow(session, application=place, council=council, actor=code, now=followed)

    assert stages.send_digests(now=DURING).counts == {"follows with news": 0}
    assert inbox.messages == []  # nothing new since they followed: nothing sent

    make_return(bir, DURING + timedelta(hours=2))
    stages.returns_cycle(SLUG, now=DURING + timedelta(hours=3))
    first_run = DURING + timedelta(days=1)
    outcome = stages.send_digests(now=first_run)
    assert outcome.counts == {"follows with news": 2, "e-mailed": 3}
    (ann,) = mail_to(inbox, "ann@leeds.example")
    assert len(mail_to(inbox, "bob@leeds.example")) == 1
    assert len(mail_to(inbox, "max@manchester.example")) == 1
    assert ann.startswith("What is new at the one place Leeds follows")
    assert "Birmingham\n- Progress report published: " in ann
    assert "- Return 1 made, for 1 April 2012 to 30 June 2012" in ann
    assert f"See it here: {get_settings().resolved_portal_base_url}/pilots/{bir}" in ann
    assert "Milestone" not in ann

    # run again at once: nothing; something new two days on is kept until seven days have
    # passed since the last digest (the round's digest_every_days)
    assert stages.send_digests(now=first_run).counts == {"follows with news": 0}
    meet_milestone(bir, date(2012, 7, 6), first_run + timedelta(days=2))
    assert stages.send_digests(now=first_run + timedelta(days=3)).counts == {"follows with news": 0}
    assert len(inbox.messages) == 3
    week_on = first_run + timedelta(days=7)
    assert stages.send_digests(now=week_on).counts == {"follows with news": 2, "e-mailed": 3}
    second = mail_to(inbox, "ann@leeds.example")[1]
    assert "- Milestone met: Operational plan agreed, on 6 July 2012" in second
    assert "Return 1" not in second

    # the place stops sharing its returns' figures: its next return is no news to followers
    with session_scope() as session:
        place = session.get(Application, bir)
        assert place is not None
        following.set_share_returns(
            session, application=place, share=False, shown=True, actor="x", now=week_on
        )
        record_ = implementation.returns_of(session, place)[1]
        implementation.submit_return(
            session, record_=record_, answers=FIGURES, actor="x", now=london(2012, 10, 2, 9, 0)
        )
    assert stages.send_digests(now=london(2012, 10, 3, 8, 0)).counts == {"follows with news": 0}
    assert len(inbox.messages) == 6

    # a new version of the place's model is news; two runs at once send it once
    stages.complete(SLUG, now=round_walk.END_DAY)
    published_at = round_walk.PUBLISH_DAY
    stages.publish(session_reference(bir), now=published_at)
    at = published_at + timedelta(hours=1)
    results = []
    runs = [
        threading.Thread(target=lambda: results.append(stages.send_digests(now=at)))
        for _ in range(2)
    ]
    for run in runs:
        run.start()
    for run in runs:
        run.join()
    assert sorted(r.counts.get("follows with news", 0) for r in results) == [0, 2]
    later = mail_to(inbox, "ann@leeds.example")
    assert len(later) == 3 and len(inbox.messages) == 9
    # version 1 came at the decisions, before Leeds followed: completion publishes version 2
    assert "- Version 2 of its model published at 09:00 on 2 April 2013 (BST)" in later[2]
    assert "Milestone met" not in later[2]


def session_reference(application_id: int) -> str:
    with session_scope() as session:
        application = session.get(Application, application_id)
        assert application is not None
        return application.reference


@pytest.mark.parametrize(
    ("given", "said"),
    [
        ("follow: some", "stages.replication.follow: Input should be 'all' or 'eligible'"),
        ("digest_every_days: 0", "stages.replication.digest_every_days: Input should be greater"),
        ("digest_every_days: 93", "stages.replication.digest_every_days: Input should be less"),
    ],
)
def test_the_prospectus_names_a_wrong_follow_key_and_its_line(given: str, said: str) -> None:
    source = edit(round_walk.SOURCE, ("    open_to: all ", f"    {given}\n    open_to: all "))
    with pytest.raises(ProspectusError) as refused:
        parse(source)
    assert f":112: {said}" in str(refused.value)
