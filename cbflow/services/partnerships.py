"""Places made of several councils: an application's lead and member councils.

Every application has its councils in `ApplicationMember`: the lead (the council that started
it, `Application.council_code`) and, where the prospectus admits partnerships, the member
councils the lead names. Each member confirms its own membership. A council belongs to at most
one application in a round, as lead or member (a unique key on the round and the council). An
adoption of a published model is a route of its own beside the round's competition: it is its
council's alone and does not count against that rule.

A partnership spanning regions or council types counts in each region and type of its
councils: against an `at_most` limit it takes a place from every one of them, and it fills an
`at_least` for every one of them (see cbflow.services.selection).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from cbflow.errors import CbflowError, NotFound, ValidationFailed
from cbflow.lifecycle import AppState
from cbflow.models import Application, ApplicationMember, Council, Round
from cbflow.prospectus import Prospectus
from cbflow.services.audit import record
from cbflow.services.rounds import prospectus_of
from cbflow.wording import and_list, plural

MAX_PLACE_NAME = 120


class AlreadyApplying(CbflowError):
    """The council already belongs to an application in the round."""


@dataclass(frozen=True)
class MemberView:
    code: str
    name: str
    region: str
    type_name: str
    lead: bool
    confirmed_at: datetime | None
    confirmed_by: str | None


@dataclass(frozen=True)
class Place:
    """An application's place as pages, documents and exports name it."""

    name: str  # the partnership's name, or the council's for a council on its own
    lead: MemberView
    members: tuple[MemberView, ...]  # the other councils, in the order named

    @property
    def councils(self) -> tuple[MemberView, ...]:
        return (self.lead, *self.members)

    @property
    def is_partnership(self) -> bool:
        return bool(self.members)

    @property
    def unconfirmed(self) -> tuple[MemberView, ...]:
        return tuple(m for m in self.members if m.confirmed_at is None)

    @property
    def codes(self) -> tuple[str, ...]:
        return tuple(m.code for m in self.councils)

    @property
    def summary(self) -> str:
        """`Greater Manchester: Manchester (lead), Bolton, Bury ...`; a council alone: its
        name."""
        if not self.members:
            return self.name
        names = [f"{self.lead.name} (lead)"] + [m.name for m in self.members]
        return f"{self.name}: {', '.join(names)}"


def rows_of(session: Session, application: Application) -> list[ApplicationMember]:
    """The application's councils: the lead first, then the members in the order named."""
    rows = session.exec(
        select(ApplicationMember)
        .where(ApplicationMember.application_id == application.id)
        .order_by(col(ApplicationMember.lead).desc(), col(ApplicationMember.id))
    ).all()
    return list(rows)


def council_codes_of(session: Session, application: Application) -> list[str]:
    """The codes of the application's councils, the lead first. An application made before
    partnerships has its lead alone."""
    codes = [row.council_code for row in rows_of(session, application)]
    return codes or [application.council_code]


def _views(session: Session, rows: Sequence[ApplicationMember]) -> list[MemberView]:
    codes = [row.council_code for row in rows]
    councils = {
        c.code: c for c in session.exec(select(Council).where(col(Council.code).in_(codes)))
    }
    return [
        MemberView(
            code=row.council_code,
            name=councils[row.council_code].name,
            region=councils[row.council_code].region,
            type_name=councils[row.council_code].type_name,
            lead=row.lead,
            confirmed_at=row.confirmed_at,
            confirmed_by=row.confirmed_by,
        )
        for row in rows
    ]


def place_of(session: Session, application: Application) -> Place:
    rows = rows_of(session, application)
    if not rows:  # made before partnerships and not migrated: the lead alone
        council = session.get(Council, application.council_code)
        assert council is not None
        lead = MemberView(
            council.code, council.name, council.region, council.type_name, True, None, None
        )
        return Place(application.place_name or council.name, lead, ())
    views = _views(session, rows)
    lead, members = views[0], tuple(views[1:])
    return Place(application.place_name or lead.name, lead, members)


def places_where(session: Session, *where: Any) -> dict[int, Place]:
    """The places of the applications whose councils meet `where` (conditions on
    ApplicationMember), by application id, read in one query."""
    rows = session.exec(
        select(ApplicationMember, Council, Application.place_name)
        .join(Council, col(Council.code) == ApplicationMember.council_code)
        .join(Application, col(Application.id) == ApplicationMember.application_id)
        .where(*where)
        .order_by(
            col(ApplicationMember.application_id),
            col(ApplicationMember.lead).desc(),
            col(ApplicationMember.id),
        )
    ).all()
    grouped: dict[int, tuple[str | None, list[MemberView]]] = {}
    for member, council, place_name in rows:
        _, views = grouped.setdefault(member.application_id, (place_name, []))
        views.append(
            MemberView(
                code=council.code,
                name=council.name,
                region=council.region,
                type_name=council.type_name,
                lead=member.lead,
                confirmed_at=member.confirmed_at,
                confirmed_by=member.confirmed_by,
            )
        )
    return {
        ident: Place(place_name or views[0].name, views[0], tuple(views[1:]))
        for ident, (place_name, views) in grouped.items()
        if views[0].lead
    }


def application_of_council(
    session: Session, round_id: int, council_code: str
) -> Application | None:
    """The application the council belongs to in the round, as lead or member."""
    row = session.exec(
        select(ApplicationMember).where(
            ApplicationMember.round_id == round_id,
            ApplicationMember.council_code == council_code,
        )
    ).first()
    if row is not None:
        return session.get(Application, row.application_id)
    return session.exec(
        select(Application).where(
            Application.round_id == round_id,
            Application.council_code == council_code,
            col(Application.adopted_from_model_id).is_(None),
        )
    ).first()


def applications_of_council(session: Session, council_code: str) -> list[Application]:
    """Every application the council belongs to, in any round, as lead or member."""
    ids = set(
        session.exec(
            select(ApplicationMember.application_id).where(
                ApplicationMember.council_code == council_code
            )
        ).all()
    )
    led = session.exec(select(Application).where(Application.council_code == council_code)).all()
    ids |= {a.id for a in led if a.id is not None}
    if not ids:
        return []
    return list(
        session.exec(
            select(Application).where(col(Application.id).in_(ids)).order_by(col(Application.id))
        ).all()
    )


def belongs(session: Session, application: Application, council_code: str | None) -> bool:
    """Whether the council is the application's lead or one of its member councils."""
    if council_code is None:
        return False
    return council_code in council_codes_of(session, application)


def _held_by(
    session: Session, round_id: int, council: Council, asking: Application
) -> AlreadyApplying | None:
    other = application_of_council(session, round_id, council.code)
    if other is None or other.id == asking.id:
        return None
    place = place_of(session, other)
    return AlreadyApplying(
        f"{council.name} already belongs to an application in this round "
        f"({place.name}, reference {other.reference}): a council may be part of one "
        "application in a round"
    )


def add_lead(
    session: Session, *, application: Application, round_: Round, actor: str, now: datetime
) -> None:
    """Record the council starting an application as its lead (confirmed as it starts it).
    Refused when the council already belongs to another application in the round."""
    council = session.get(Council, application.council_code)
    assert council is not None and round_.id is not None and application.id is not None
    problem = _held_by(session, round_.id, council, application)
    if problem is not None:
        raise problem
    session.add(
        ApplicationMember(
            round_id=round_.id,
            application_id=application.id,
            council_code=council.code,
            lead=True,
            added_at=now,
            added_by=actor,
            confirmed_at=now,
            confirmed_by=actor,
        )
    )
    _flush_or_refuse(session, council)


def _flush_or_refuse(session: Session, council: Council) -> None:
    """Flush the new membership; two requests naming the same council at once meet the unique
    key, and the second is told so rather than failing."""
    try:
        with session.begin_nested():
            session.flush()
    except IntegrityError:
        raise AlreadyApplying(
            f"{council.name} already belongs to an application in this round: a council may "
            "be part of one application in a round"
        ) from None


def _round_and_prospectus(session: Session, application: Application) -> tuple[Round, Prospectus]:
    round_ = session.get(Round, application.round_id)
    assert round_ is not None
    return round_, prospectus_of(round_)


def _changeable(application: Application, what: str) -> None:
    if application.state != AppState.EOI_DRAFT:
        raise CbflowError(
            f"the councils of {application.reference} cannot change now: {what} only while "
            "the expression of interest is a draft"
        )


def member_types(prospectus: Prospectus) -> list[str] | None:
    """The council types that may be members of a partnership (None: any)."""
    partnership = prospectus.applicants.partnership
    if partnership is not None and partnership.council_types is not None:
        return partnership.council_types
    return prospectus.eligibility.council_types


def add_member(
    session: Session,
    *,
    application: Application,
    council_code: str,
    actor: str,
    now: datetime,
) -> ApplicationMember:
    """Name a member council of the application's partnership (the lead's applicants do).
    Persists the membership, unconfirmed, and its audit event. Refused, with the reason, when
    the round admits no partnerships, the partnership is full, the council is not of a type
    that may join, or it already belongs to an application in the round."""
    _changeable(application, "members can be added")
    round_, prospectus = _round_and_prospectus(session, application)
    partnership = prospectus.applicants.partnership
    if partnership is None:
        raise CbflowError(f"{prospectus.title} is for councils applying on their own")
    council = session.get(Council, council_code)
    if council is None:
        raise NotFound(f"no council with code {council_code!r} in the register")
    types = member_types(prospectus)
    if types is not None and council.type not in types:
        raise ValidationFailed(
            {
                "council": f"{council.name} ({council.type_name}) cannot be a member: "
                f"partnerships in this round are of {', '.join(types)} councils"
            }
        )
    codes = council_codes_of(session, application)
    if partnership.max_councils is not None and len(codes) >= partnership.max_councils:
        raise ValidationFailed(
            {
                "council": f"a partnership in this round has at most "
                f"{plural(partnership.max_councils, 'council')}, and this one has them all"
            }
        )
    assert round_.id is not None and application.id is not None
    problem = _held_by(session, round_.id, council, application)
    if problem is not None:
        raise ValidationFailed({"council": str(problem)})
    member = ApplicationMember(
        round_id=round_.id,
        application_id=application.id,
        council_code=council.code,
        lead=False,
        added_at=now,
        added_by=actor,
    )
    session.add(member)
    try:
        _flush_or_refuse(session, council)
    except AlreadyApplying as exc:
        raise ValidationFailed({"council": str(exc)}) from None
    record(
        session,
        entity="application",
        entity_id=application.id,
        action="add-member",
        actor=actor,
        now=now,
        reason=f"{council.name} ({council.code}) named as a member council",
    )
    return member


def remove_member(
    session: Session, *, application: Application, council_code: str, actor: str, now: datetime
) -> None:
    """Take a member council out of the partnership (never the lead). Persists the removal
    and its audit event."""
    _changeable(application, "members can be removed")
    row = next((r for r in rows_of(session, application) if r.council_code == council_code), None)
    if row is None or row.lead:
        raise NotFound(f"{council_code!r} is not a member council of {application.reference}")
    session.delete(row)
    assert application.id is not None
    record(
        session,
        entity="application",
        entity_id=application.id,
        action="remove-member",
        actor=actor,
        now=now,
        reason=f"{council_code} taken out of the partnership",
    )
    session.flush()


def confirm_membership(
    session: Session, *, application: Application, council_code: str, actor: str, now: datetime
) -> bool:
    """A member council's officer confirms its membership. Returns whether this call confirmed
    it (False: it already was). Persists the confirmation and its audit event."""
    row = next((r for r in rows_of(session, application) if r.council_code == council_code), None)
    if row is None or row.lead:
        raise NotFound(f"{council_code!r} is not a member council of {application.reference}")
    if row.confirmed_at is not None:
        return False
    row.confirmed_at, row.confirmed_by = now, actor
    session.add(row)
    assert application.id is not None
    record(
        session,
        entity="application",
        entity_id=application.id,
        action="confirm-membership",
        actor=actor,
        now=now,
        reason=f"{council_code} confirmed its membership of the partnership",
    )
    session.flush()
    return True


def name_place(
    session: Session, *, application: Application, name: str, actor: str, now: datetime
) -> None:
    """Name the partnership's place ("Greater Manchester"). Persists it and its audit event."""
    _changeable(application, "the place can be renamed")
    name = " ".join(name.split())
    if not name:
        raise ValidationFailed({"place_name": "Enter the name of your place"})
    if len(name) > MAX_PLACE_NAME:
        raise ValidationFailed(
            {"place_name": f"The name must be {MAX_PLACE_NAME} characters or fewer"}
        )
    application.place_name = name
    session.add(application)
    assert application.id is not None
    record(
        session,
        entity="application",
        entity_id=application.id,
        action="name-place",
        actor=actor,
        now=now,
        reason=f"the place is named {name!r}",
    )
    session.flush()


def submission_problems(session: Session, application: Application) -> list[str]:
    """What stops the application's councils being submitted as they stand: a council alone
    where the round wants partnerships, too few or too many councils, members still to
    confirm, a partnership with no name. Empty when nothing does."""
    _, prospectus = _round_and_prospectus(session, application)
    applicants = prospectus.applicants
    place = place_of(session, application)
    count = len(place.councils)
    if count == 1:
        if applicants.single_council:
            return []
        assert applicants.partnership is not None
        return [
            f"this round is for partnerships of at least "
            f"{plural(applicants.partnership.min_councils, 'council')}: name your member councils"
        ]
    partnership = applicants.partnership
    if partnership is None:
        return [f"{prospectus.title} is for councils applying on their own"]
    problems = []
    if count < partnership.min_councils:
        problems.append(
            f"a partnership needs at least {plural(partnership.min_councils, 'council')}, "
            f"the lead included; this one has {count}"
        )
    if partnership.max_councils is not None and count > partnership.max_councils:
        problems.append(
            f"a partnership has at most {plural(partnership.max_councils, 'council')}; "
            f"this one has {count}"
        )
    if place.unconfirmed:
        waiting = and_list([m.name for m in place.unconfirmed])
        one = len(place.unconfirmed) == 1
        problems.append(
            f"{waiting} {'has' if one else 'have'} still to confirm "
            f"{'its' if one else 'their'} membership in the portal"
        )
    if not application.place_name:
        problems.append("the partnership's place has no name")
    return problems


def place_label(place: Place) -> str:
    """How a list names an application: a council alone by its name; a partnership by its
    place, its lead and how many others (`Greater Manchester (Manchester and 9 other
    councils)`)."""
    if not place.is_partnership:
        return place.lead.name
    others = len(place.members)
    return (
        f"{place.name} ({place.lead.name} and {others} other council{'' if others == 1 else 's'})"
    )


def on_behalf_of(place: Place, lead: Council) -> str | None:
    """A partnership's line in its documents: `Greater Manchester: a partnership of Bolton,
    Bury and Wigan, led by Manchester City Council`. None for a council alone."""
    if not place.is_partnership:
        return None
    members = and_list([m.name for m in place.members])
    return f"{place.name}: a partnership of {members}, led by {lead.official_name}"
