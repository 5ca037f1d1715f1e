"""Places made of several councils: a lead names its member councils, each confirms, a council
is part of one application in a round, assessors are kept off a partnership they have a
conflict with through any member, and the selection's limits count a partnership in each of its
councils' regions. Real SQLite (and PostgreSQL where marked through `any_db_env`)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from conftest import edit, example_text
from sqlalchemy.exc import IntegrityError
from sqlmodel import select
from test_sift_and_selection import (
    ASSESS_DAY,
    BID_CLOSE,
    BID_DAY,
    EOI_DAY,
    STAFF,
    close_eoi,
    confirm,
    eoi_answers,
    launch,
)

from cbflow.db import session_scope
from cbflow.errors import CbflowError, ValidationFailed
from cbflow.models import Application, ApplicationMember, Assignment, AuditEvent, Conflict, User
from cbflow.prospectus import ProspectusError, parse
from cbflow.services import applications, assessment, partnerships, rounds, selection, sift
from cbflow.services.applications import NotReadyToSubmit
from cbflow.settings import Settings

PARTNERSHIPS = (
    "capacity:\n",
    "applicants:\n  partnership: {min_councils: 2, max_councils: 3}\ncapacity:\n",
)
OWN_REGION = (
    "justification_required: true",
    "justification_required: true\n    exclude_own_region: true",
)
LEAD = "council:WSM"


def partnership_round(*edits: tuple[str, str]) -> str:
    return launch(edit(example_text(), PARTNERSHIPS, *edits))


def start(slug: str, council: str, at_minutes: int = 0) -> int:
    with session_scope() as session:
        application, _ = applications.start_application(
            session,
            round_=rounds.get_round(session, slug),
            council_code=council,
            actor=f"council:{council}",
            now=EOI_DAY + timedelta(minutes=at_minutes),
        )
        assert application.id is not None
        return application.id


def add(application_id: int, council: str) -> None:
    with session_scope() as session:
        application = session.get(Application, application_id)
        assert application is not None
        partnerships.add_member(
            session, application=application, council_code=council, actor=LEAD, now=EOI_DAY
        )


def confirm_member(application_id: int, council: str) -> bool:
    with session_scope() as session:
        application = session.get(Application, application_id)
        assert application is not None
        return partnerships.confirm_membership(
            session,
            application=application,
            council_code=council,
            actor=f"officer@{council.lower()}.gov.uk",
            now=EOI_DAY + timedelta(hours=1),
        )


def name(application_id: int, place: str) -> None:
    with session_scope() as session:
        application = session.get(Application, application_id)
        assert application is not None
        partnerships.name_place(
            session, application=application, name=place, actor=LEAD, now=EOI_DAY
        )


def submit_eoi(application_id: int, council: str) -> None:
    with session_scope() as session:
        application = session.get(Application, application_id)
        assert application is not None
        applications.submit(
            session,
            application=application,
            stage="eoi",
            answers=eoi_answers(council),
            actor=f"council:{council}",
            now=EOI_DAY + timedelta(hours=2),
        )


def tri_borough(slug: str) -> int:
    """Westminster leads, with Kensington and Chelsea and Hammersmith and Fulham confirmed."""
    application_id = start(slug, "WSM")
    add(application_id, "KEC")
    add(application_id, "HMF")
    confirm_member(application_id, "KEC")
    confirm_member(application_id, "HMF")
    name(application_id, "West London Tri-borough")
    return application_id


def test_a_prospectus_says_who_may_apply_and_refuses_a_partnership_that_cannot_be(
    cbflow_env: Settings,
) -> None:
    plain = parse(example_text(), "example.yaml")
    assert plain.applicants.single_council and plain.applicants.partnership is None

    both = parse(edit(example_text(), PARTNERSHIPS), "p.yaml")
    assert both.applicants.partnership is not None
    assert both.applicants.partnership.max_councils == 3

    with pytest.raises(ProspectusError, match="max_councils must be at least min_councils"):
        parse(
            edit(
                example_text(),
                (
                    "capacity:\n",
                    "applicants:\n  partnership: {min_councils: 4, max_councils: 3}\ncapacity:\n",
                ),
            ),
            "bad.yaml",
        )
    with pytest.raises(ProspectusError, match="describe the partnership"):
        parse(
            edit(
                example_text(), ("capacity:\n", "applicants: {single_council: false}\ncapacity:\n")
            ),
            "bad.yaml",
        )


def test_a_lead_names_members_who_confirm_and_the_place_submits_once_all_have(
    cbflow_env: Settings,
) -> None:
    slug = partnership_round()
    application_id = start(slug, "WSM")
    add(application_id, "KEC")
    add(application_id, "HMF")

    with pytest.raises(NotReadyToSubmit) as refused:
        submit_eoi(application_id, "WSM")
    assert refused.value.problems == [
        "Kensington and Chelsea and Hammersmith and Fulham have still to confirm their "
        "membership in the portal",
        "the partnership's place has no name",
    ]

    assert confirm_member(application_id, "KEC") is True
    assert confirm_member(application_id, "KEC") is False  # a second press changes nothing
    confirm_member(application_id, "HMF")
    name(application_id, "  West London   Tri-borough ")
    submit_eoi(application_id, "WSM")

    with session_scope() as session:
        application = session.get(Application, application_id)
        assert application is not None
        assert application.state == "eoi_submitted"
        place = partnerships.place_of(session, application)
        assert place.name == "West London Tri-borough"
        assert [m.code for m in place.councils] == ["WSM", "KEC", "HMF"]
        assert place.summary == (
            "West London Tri-borough: Westminster (lead), Kensington and Chelsea, "
            "Hammersmith and Fulham"
        )
        actions = [
            e.action
            for e in session.exec(select(AuditEvent).where(AuditEvent.entity_id == application_id))
            if e.entity == "application"
        ]
    assert actions.count("add-member") == 2
    assert actions.count("confirm-membership") == 2
    assert "name-place" in actions


def test_a_council_is_part_of_one_application_in_a_round(cbflow_env: Settings) -> None:
    slug = partnership_round()
    westminster = start(slug, "WSM")
    add(westminster, "KEC")

    # a member council cannot lead a bid of its own in the same round, nor join another
    with pytest.raises(partnerships.AlreadyApplying, match="Kensington and Chelsea already"):
        start(slug, "KEC")
    manchester = start(slug, "MAN", at_minutes=1)
    with pytest.raises(ValidationFailed, match="reference whole-place-2011/WSM"):
        add(manchester, "KEC")
    with pytest.raises(ValidationFailed, match="already belongs"):
        add(manchester, "WSM")  # nor may a lead
    # the unique key holds whatever the checks above miss
    with pytest.raises(IntegrityError), session_scope() as session:
        round_ = rounds.get_round(session, slug)
        assert round_.id is not None
        session.add(
            ApplicationMember(
                round_id=round_.id,
                application_id=manchester,
                council_code="KEC",
                added_at=EOI_DAY,
                added_by="x",
            )
        )
        session.flush()

    # over the maximum, of a type not admitted, or after submission: refused, nothing changes
    add(westminster, "HMF")
    with pytest.raises(ValidationFailed, match="at most three councils"):
        add(westminster, "BOL")
    with session_scope() as session:
        application = session.get(Application, westminster)
        assert application is not None
        assert partnerships.council_codes_of(session, application) == ["WSM", "KEC", "HMF"]

    # taken out, a council is free to apply again
    with session_scope() as session:
        application = session.get(Application, westminster)
        assert application is not None
        partnerships.remove_member(
            session, application=application, council_code="HMF", actor=LEAD, now=EOI_DAY
        )
    start(slug, "HMF", at_minutes=2)


def test_a_round_for_single_councils_admits_no_members(cbflow_env: Settings) -> None:
    slug = launch(example_text())
    application_id = start(slug, "WSM")
    with pytest.raises(CbflowError, match="for councils applying on their own"):
        add(application_id, "KEC")
    submit_eoi(application_id, "WSM")  # a council alone submits as before


def test_a_round_only_for_partnerships_refuses_a_council_alone(cbflow_env: Settings) -> None:
    slug = launch(
        edit(
            example_text(),
            (
                "capacity:\n",
                "applicants:\n  single_council: false\n  partnership: {min_councils: 3}\n"
                "capacity:\n",
            ),
        )
    )
    application_id = start(slug, "MAN")
    with pytest.raises(NotReadyToSubmit, match="at least three councils"):
        submit_eoi(application_id, "MAN")
    add(application_id, "BOL")
    confirm_member(application_id, "BOL")
    name(application_id, "Greater Manchester")
    with pytest.raises(NotReadyToSubmit, match="at least three councils, the lead included"):
        submit_eoi(application_id, "MAN")


TWO_EACH = ("assessors_per_application: 3", "assessors_per_application: 2")


def assessed_partnerships(
    *edits: tuple[str, str],
    assessors: list[User],
    conflicts: tuple[tuple[str, str], ...] = (),
    extra: str = "",
) -> dict[str, int]:
    """A partnership round taken to assessment: the Tri-borough (London), a partnership of
    Sunderland and Manchester (North East and North West) and Bury alone (North West), with
    assessors assigned by load from those given, after any conflicts (assessor email, council)
    are declared."""
    slug = launch(edit(example_text(), PARTNERSHIPS, TWO_EACH, *edits) + extra)
    tri = tri_borough(slug)
    submit_eoi(tri, "WSM")
    north = start(slug, "SND", at_minutes=5)
    add(north, "MAN")
    confirm_member(north, "MAN")
    name(north, "North of England")
    submit_eoi(north, "SND")
    bury = start(slug, "BUR", at_minutes=6)
    submit_eoi(bury, "BUR")
    ids = {"tri": tri, "north": north, "bury": bury}
    close_eoi(slug)
    with session_scope() as session:
        round_ = rounds.get_round(session, slug)
        refs = [a.reference for a in rounds.applications_of(session, round_)]
    confirm(slug, refs)
    for n, application_id in enumerate(ids.values()):
        with session_scope() as session:
            application = session.get(Application, application_id)
            assert application is not None
            applications.submit(
                session,
                application=application,
                stage="bid",
                answers={
                    "pooled_budget": [
                        {"organisation": "Police", "year": "2012-13", "amount_gbp": "50000.00"}
                    ],
                    "support_requested_gbp": "100000",
                },
                actor="council",
                now=BID_DAY + timedelta(minutes=n),
            )
    with session_scope() as session:
        round_ = rounds.get_round(session, slug)
        sift.close_bids(session, round_=round_, actor=STAFF, now=BID_CLOSE)
        session.add_all(assessors)
        session.flush()
        for email, council in conflicts:
            assessor = next(a for a in assessors if a.email == email)
            assert assessor.id is not None
            session.add(
                Conflict(
                    assessor_id=assessor.id,
                    council_code=council,
                    reason="declared before assignment",
                    declared_at=ASSESS_DAY,
                )
            )
        session.flush()
        assessment.assign_assessors(
            session, round_=round_, assessors=assessors, actor=STAFF, now=ASSESS_DAY
        )
    return ids


def assessors_of(application_id: int) -> set[str]:
    with session_scope() as session:
        return {
            assessor.name
            for assignment in session.exec(
                select(Assignment).where(Assignment.application_id == application_id)
            )
            if (assessor := session.get(User, assignment.assessor_id)) is not None
        }


def panel(*names: str, **extra: dict[str, str]) -> list[User]:
    return [
        User(
            email=f"{n.split()[0].lower()}@assessors.example",
            name=n,
            role="assessor",
            **extra.get(n, {}),  # type: ignore[arg-type]
        )
        for n in names
    ]


def test_no_assessor_from_a_member_council_or_its_region_assesses_the_partnership(
    cbflow_env: Settings,
) -> None:
    people = panel(
        "Kim Kensington",
        "Lou London",
        "Nat North",
        "Sam South",
        **{
            "Kim Kensington": {"council_code": "KEC"},
            "Lou London": {"region": "London"},
            "Nat North": {"region": "North West"},
            "Sam South": {"region": "South West"},
        },
    )
    ids = assessed_partnerships(OWN_REGION, assessors=people)
    # Kim works for a member council (not the lead); Lou is from the members' region
    assert assessors_of(ids["tri"]) == {"Nat North", "Sam South"}
    # Nat is from Manchester's region: Manchester is a member of the North of England bid
    assert "Nat North" not in assessors_of(ids["north"])

    # nor can staff move an assessment of the Tri-borough to Kim
    with session_scope() as session:
        assignment = session.exec(
            select(Assignment).where(Assignment.application_id == ids["tri"])
        ).first()
        kim = session.exec(select(User).where(User.name == "Kim Kensington")).one()
        assert assignment is not None
        with pytest.raises(
            CbflowError, match="works for Kensington and Chelsea, one of the applying councils"
        ):
            assessment.reassign(
                session, assignment=assignment, to=kim, actor=STAFF, now=ASSESS_DAY, reason="cover"
            )


def test_a_conflict_with_any_member_council_keeps_the_assessor_off_the_place(
    cbflow_env: Settings,
) -> None:
    people = panel("Ann One", "Ben Two", "Cat Three")
    ids = assessed_partnerships(assessors=people, conflicts=(("ann@assessors.example", "HMF"),))
    assert "Ann One" not in assessors_of(ids["tri"])
    assert len(assessors_of(ids["tri"])) == 2

    # a conflict declared afterwards with a member hides the place from the assessor's list
    with session_scope() as session:
        ben = session.exec(select(User).where(User.name == "Ben Two")).one()
        assert ben.id is not None
        assert assessment.assignment_of(session, ben, ids["tri"]) is not None
        session.add(
            Conflict(
                assessor_id=ben.id, council_code="KEC", reason="a relative", declared_at=ASSESS_DAY
            )
        )
        session.flush()
        assert assessment.assignment_of(session, ben, ids["tri"]) is None
        assert ids["tri"] not in {app.id for _, app in assessment.assigned_to(session, ben)}


REGION_LIMIT = "selection:\n  constraints:\n    - {per: region, at_most: 1}\n"


def test_a_partnership_takes_a_place_from_each_region_of_its_councils(
    cbflow_env: Settings,
) -> None:
    """At most one place per region, three places: the Tri-borough (London) and the North of
    England partnership (North East and North West) fill their regions, so Bury (North West),
    third, is not chosen though a place is left."""
    ids = assessed_partnerships(
        ("places: 4 ", "places: 3 "),
        assessors=panel("Ann One", "Ben Two", "Cat Three"),
        extra=REGION_LIMIT,
    )
    quality = {ids["tri"]: 4, ids["north"]: 3, ids["bury"]: 2}
    with session_scope() as session:
        for assignment in session.exec(select(Assignment)):
            given = quality[assignment.application_id]
            assessment.submit_scores(
                session,
                assignment=assignment,
                scores={
                    c: (given, "Justified.") for c in ("ambition", "partnership", "replicability")
                },
                actor="assessor",
                now=ASSESS_DAY,
            )
    with session_scope() as session:
        round_ = rounds.get_round(session, "whole-place-2011")
        assessment.finalise(session, round_=round_, actor=STAFF, now=ASSESS_DAY)
    with session_scope() as session:
        decisions = {
            d.application.id: d
            for d in selection.plan(session, rounds.get_round(session, "whole-place-2011"))
        }
    assert decisions[ids["tri"]].outcome == "selected"
    assert decisions[ids["north"]].outcome == "selected"
    assert decisions[ids["bury"]].outcome != "selected"
    assert "North West" in (decisions[ids["bury"]].reason or "")
