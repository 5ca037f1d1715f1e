"""The 2011 whole-place round, reproduced: the six places shortlisted in December 2011 apply
under prospectus/whole-place-2011.yaml as they did (three councils alone, Blackburn with Darwen,
Cheshire West and Chester, Essex and Sunderland; Greater Manchester's ten councils; the West
London Tri-borough's three), are sifted, shortlisted, bid and are scored; and when the scores
rank them so, the engine selects the four places chosen on 21 December 2011: Cheshire West and
Chester, Essex, Greater Manchester and the Tri-borough. Each place's partners confirm their
contributions to its pooled budget through their own single-use links, and the decisions are
published as open data valid against the standards' schemas."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from conftest import ROOT, edit, london
from sqlmodel import col, select
from test_open_data import grants_validator, ocds_validator, problems

from cbflow import opendata, simulate
from cbflow.db import session_scope
from cbflow.lifecycle import AppState
from cbflow.models import Application, Council, OutboxMessage, User
from cbflow.services import (
    applications,
    assessment,
    contributions,
    partnerships,
    rounds,
    selection,
    sift,
)
from cbflow.services.councils import all_councils
from cbflow.settings import Settings, get_settings

PROSPECTUS = ROOT / "prospectus" / "whole-place-2011.yaml"
EOI_DAY = london(2011, 11, 3, 10, 0)
EOI_CLOSE = london(2011, 11, 10, 12, 0)
BID_DAY = london(2011, 12, 12, 10, 0)
BID_CLOSE = london(2011, 12, 14, 12, 0)
ASSESS_DAY = london(2011, 12, 15, 10, 0)
DECIDED = london(2011, 12, 21, 9, 0)
STAFF = "programme.team@communities.example"
SEED = 2011


# what cbflow adds to the 2011 file: each place's partners confirm what they put in, by year
PARTNERS = (
    "capacity:\n",
    'partners: {stage: bid, years: ["2012-13", "2013-14"], require_confirmed: true}\ncapacity:\n',
)
# each place's partners (illustrative: the bids named police, health and Jobcentre Plus among
# others) and what each confirmed per year, in pounds
PARTNER_SET = [
    ("police", "Police", "police", 400_000),
    ("health", "NHS", "health", 1_500_000),
    ("jobcentre_plus", "Jobcentre Plus", "dwp", 250_000),
]


@dataclass(frozen=True)
class Place:
    name: str
    lead: str
    members: tuple[str, ...] = ()
    quality: int = 3  # what every assessor gives it on every criterion (1 to 5)


SHORTLIST = [
    Place("Blackburn with Darwen", "BBD", quality=3),
    Place("Cheshire West and Chester", "CHW", quality=4),
    Place("Essex", "ESS", quality=5),
    Place(
        "Greater Manchester",
        "MAN",
        ("BOL", "BUR", "OLD", "RCH", "SLF", "SKP", "TAM", "TRF", "WGN"),
        quality=5,
    ),
    Place("Sunderland", "SND", quality=3),
    Place("West London Tri-borough", "WSM", ("HMF", "KEC"), quality=5),
]
CHOSEN_ON_21_DECEMBER_2011 = {
    "Cheshire West and Chester",
    "Essex",
    "Greater Manchester",
    "West London Tri-borough",
}


def apply(place: Place, minutes: int) -> int:
    """The place's lead starts the expression of interest, names the place and its members,
    each member confirms, and the lead submits it."""
    with session_scope() as session:
        round_ = rounds.get_round(session, "whole-place-2011")
        prospectus = rounds.prospectus_of(round_)
        lead = session.get(Council, place.lead)
        assert lead is not None
        at = EOI_DAY + timedelta(minutes=minutes)
        actor = f"officer@{place.lead.lower()}.gov.uk"
        application, _ = applications.start_application(
            session, round_=round_, council_code=place.lead, actor=actor, now=at
        )
        for code in place.members:
            partnerships.add_member(
                session, application=application, council_code=code, actor=actor, now=at
            )
            partnerships.confirm_membership(
                session,
                application=application,
                council_code=code,
                actor=f"officer@{code.lower()}.gov.uk",
                now=at,
            )
        if place.members:
            partnerships.name_place(
                session, application=application, name=place.name, actor=actor, now=at
            )
        answers = simulate.answers_for(
            prospectus.stages.eoi.form,
            lead,
            prospectus,
            seed=SEED,
            councils_by_type=simulate.councils_by_type(all_councils(session)),
        )
        answers |= {"lead_council": place.lead, "place_name": place.name}
        answers["chief_executive_signoff"] = True
        applications.submit(
            session, application=application, stage="eoi", answers=answers, actor=actor, now=at
        )
        assert application.id is not None
        return application.id


def partners_confirm(application_id: int, place: Place, at: datetime) -> int:
    """The place names its partners, each is asked by its single-use link and confirms.
    Returns the confirmed total in pence."""
    settings = get_settings()
    with session_scope() as session:
        application = session.get(Application, application_id)
        assert application is not None
        partners = rounds.prospectus_of(rounds.get_round(session, "whole-place-2011")).partners
        assert partners is not None
        for kind, organisation, domain, pounds in PARTNER_SET:
            entry = contributions.check_entry(
                partners,
                {
                    "organisation": f"{place.name} {organisation}",
                    "partner_type": kind,
                    "contact_name": f"{organisation} lead",
                    "contact_email": f"lead@{place.lead.lower()}.{domain}.example",
                    **{contributions.amount_field(year): str(pounds) for year in partners.years},
                },
            )
            row = contributions.add(
                session, application=application, entry=entry, actor="officer", now=at
            )
            assert row.id is not None
            contributions.send_request(
                session,
                application=application,
                contribution_id=row.id,
                version=row.version,
                place=place.name,
                actor="officer",
                now=at,
                settings=settings,
                base_url=settings.resolved_portal_base_url,
            )
    for _, organisation, domain, _ in PARTNER_SET:
        with session_scope() as session:
            body = session.exec(
                select(OutboxMessage.body)
                .where(OutboxMessage.to == f"lead@{place.lead.lower()}.{domain}.example")
                .order_by(col(OutboxMessage.id).desc())
            ).first()
            assert body is not None
            token = re.search(r"/partner/(\S+)", body)
            assert token is not None
            contributions.respond(
                session,
                token=token.group(1),
                confirm=True,
                name=f"{organisation} lead",
                reason="",
                now=at,
            )
    with session_scope() as session:
        application = session.get(Application, application_id)
        assert application is not None
        return contributions.confirmed_total_pence(session, application)


def bid(application_id: int, place: Place, minutes: int) -> None:
    with session_scope() as session:
        application = session.get(Application, application_id)
        assert application is not None
        prospectus = rounds.prospectus_of(rounds.get_round(session, "whole-place-2011"))
        assert prospectus.stages.bid is not None
        lead = session.get(Council, place.lead)
        assert lead is not None
        answers = simulate.answers_for(
            prospectus.stages.bid.form,
            lead,
            prospectus,
            seed=SEED,
            councils_by_type=simulate.councils_by_type(all_councils(session)),
            request=Decimal("900000"),
        )
        answers["support_requested_gbp"] = "900000"
        applications.submit(
            session,
            application=application,
            stage="bid",
            answers=answers,
            actor=f"officer@{place.lead.lower()}.gov.uk",
            now=BID_DAY + timedelta(minutes=minutes),
        )


def test_the_six_places_shortlisted_in_2011_and_the_four_chosen(cbflow_env: Settings) -> None:
    with session_scope() as session:
        rounds.launch_round(
            session,
            source=edit(PROSPECTUS.read_text(encoding="utf-8"), PARTNERS),
            path=str(PROSPECTUS.name),
            actor=STAFF,
            now=london(2011, 10, 17),
        )
    ids = {place.name: apply(place, n) for n, place in enumerate(SHORTLIST)}

    with session_scope() as session:
        round_ = rounds.get_round(session, "whole-place-2011")
        sift.close_eoi(session, round_=round_, actor=STAFF, now=EOI_CLOSE)
        for application in rounds.applications_of(session, round_, AppState.SIFT_REFER):
            sift.review_referral(
                session,
                application=application,
                passed=True,
                actor=STAFF,
                now=EOI_CLOSE,
                reason="the panel is satisfied with the partnership and the ambition",
            )
    with session_scope() as session:
        round_ = rounds.get_round(session, "whole-place-2011")
        proposed = sift.propose_shortlist(session, round_=round_)
        assert {a.id for a in proposed} == set(ids.values())  # six places, all through
        sift.confirm_shortlist(
            session,
            round_=round_,
            chosen=proposed,
            actor=STAFF,
            now=EOI_CLOSE + timedelta(days=20),
        )
    confirmed = {}
    for n, place in enumerate(SHORTLIST):
        confirmed[place.name] = partners_confirm(ids[place.name], place, BID_DAY)
        bid(ids[place.name], place, n)
    # three partners, each £X a year for two years, all confirmed through their links
    assert set(confirmed.values()) == {2 * (400_000 + 1_500_000 + 250_000) * 100}

    quality = {ids[p.name]: p.quality for p in SHORTLIST}
    with session_scope() as session:
        round_ = rounds.get_round(session, "whole-place-2011")
        sift.close_bids(session, round_=round_, actor=STAFF, now=BID_CLOSE)
        panel = [
            User(email=f"assessor{n}@assessors.example", name=f"Assessor {n}", role="assessor")
            for n in range(1, 6)
        ]
        session.add_all(panel)
        session.flush()
        assessment.assign_assessors(
            session, round_=round_, assessors=panel, actor=STAFF, now=ASSESS_DAY
        )
        stage = rounds.prospectus_of(round_).stages.assessment
        assert stage is not None
        for assignment in assessment.all_assignments(session, round_):
            given = quality[assignment.application_id]
            assessment.submit_scores(
                session,
                assignment=assignment,
                scores={c.id: (given, "Scored against the guidance.") for c in stage.criteria},
                actor=f"assessor:{assignment.assessor_id}",
                now=ASSESS_DAY,
            )
        assessment.finalise(session, round_=round_, actor=STAFF, now=ASSESS_DAY)
    with session_scope() as session:
        round_ = rounds.get_round(session, "whole-place-2011")
        decisions = selection.plan(session, round_)
        chosen = {
            partnerships.place_of(session, d.application).name
            for d in decisions
            if d.outcome == AppState.SELECTED
        }
        places = {
            partnerships.place_of(session, a).name: partnerships.place_of(session, a)
            for a in session.exec(select(Application))
        }
    assert chosen == CHOSEN_ON_21_DECEMBER_2011
    assert len(places["Greater Manchester"].councils) == 10
    assert [m.name for m in places["West London Tri-borough"].councils] == [
        "Westminster",
        "Hammersmith and Fulham",
        "Kensington and Chelsea",
    ]

    # decided on the day, and published as open data valid against the standards' schemas
    with session_scope() as session:
        round_ = rounds.get_round(session, "whole-place-2011")
        selection.decide(session, round_=round_, actor=STAFF, now=DECIDED)
    with session_scope() as session:
        round_ = rounds.get_round(session, "whole-place-2011")
        grants = opendata.grants_package(session, round_, now=DECIDED, url="https://example/g")
        ocds = opendata.ocds_package(session, round_, now=DECIDED, url="https://example/o")
    assert problems(grants_validator(), grants) == []
    assert problems(ocds_validator(), ocds) == []
    manchester = next(g for g in grants["grants"] if g["title"].endswith("Greater Manchester"))
    assert manchester["recipientOrganization"] == [
        {"id": "GB-LAE-MAN", "name": "Manchester City Council"}
    ]
    assert len(manchester["beneficiaryLocation"]) == 10
    assert (
        "Partners' confirmed contributions to the pooled budget: £4,300,000.00"
        in manchester["description"]
    )
    assert (
        "a partnership of Manchester City Council, Bolton Metropolitan Borough Council"
        in manchester["description"]
    )
    award = next(
        a for a in ocds["releases"][-1]["awards"] if a["title"].endswith("West London Tri-borough")
    )
    assert {s["id"] for s in award["suppliers"]} == {"GB-LAE-WSM", "GB-LAE-HMF", "GB-LAE-KEC"}
