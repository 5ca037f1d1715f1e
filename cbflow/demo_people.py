"""The demo's people: one or more for each role, so that a visitor can walk the demo round
through the portal as an administrator, programme staff, an assessor or a council officer.

Staff and assessors are added before the round runs (so the assessors are assigned bids and
score them); council officers after it, for the councils whose stories are worth following: a
selected place, a council that was not selected and the council that adopted a model. In demo
mode only (`CBFLOW_DEMO`, set by `cbflow serve --demo`), the sign-in page lists these people
with a one-press sign-in; nobody else can be signed in that way.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlmodel import Session, select

from cbflow.lifecycle import AppState
from cbflow.models import Application, Council, PublishedModel, Round, User
from cbflow.services import accounts, rounds
from cbflow.services.councils import all_councils

DOMAIN = "demo.example"  # a domain reserved for examples: no message can reach anyone
ACTOR = "demo:set-up"


@dataclass(frozen=True)
class DemoPerson:
    email: str
    name: str
    role: str
    what: str  # what they will find, in a few words
    start: str  # the page to open after signing in


@dataclass(frozen=True)
class TryThis:
    who: str
    what: str
    path: str


STAFF = [
    ("hannah.price", "Hannah Price", "admin", "the people who sign in, the outbox, every round"),
    (
        "priya.shah",
        "Priya Shah",
        "staff",
        "the round: applications, sift, assessment, selection, implementation",
    ),
]
ASSESSORS = [("jo.evans", "Jo Evans"), ("sam.okafor", "Sam Okafor"), ("ruth.hughes", "Ruth Hughes")]


def _email(local: str) -> str:
    return f"{local}@{DOMAIN}"


def is_demo_email(email: str) -> bool:
    return email.lower().endswith("@" + DOMAIN)


def _add(
    session: Session,
    *,
    local: str,
    name: str,
    role: str,
    council: str | None,
    now: datetime,
) -> User:
    """The person, added once (found again when the demo continues)."""
    existing = accounts.find_user(session, _email(local))
    if existing is not None:
        return existing
    return accounts.add_user(
        session,
        email=_email(local),
        name=name,
        role=role,
        council_code=council,
        actor=ACTOR,
        now=now,
    )


def add_staff_and_assessors(session: Session, *, now: datetime) -> None:
    """The administrator, programme staff and three assessors, before the round runs. The
    assessors work in different regions, as a real panel's would."""
    for local, name, role, _ in STAFF:
        _add(session, local=local, name=name, role=role, council=None, now=now)
    regions = sorted({c.region for c in all_councils(session)})
    for number, (local, name) in enumerate(ASSESSORS):
        user = _add(session, local=local, name=name, role="assessor", council=None, now=now)
        if user.region is None and regions:
            user.region = regions[(3 * number + 1) % len(regions)]
            session.add(user)
    session.flush()


@dataclass
class Cast:
    """Who the demo's council officers are, and what to try."""

    people: list[DemoPerson]
    tries: list[TryThis]


def _officer_local(council: Council) -> str:
    words = "".join(ch if ch.isalnum() else "-" for ch in council.name.lower()).strip("-")
    return "officer." + "-".join(part for part in words.split("-") if part)


def officer_email(council: Council) -> str:
    """The address of the council's officer in the demo (added once the round has run)."""
    return _email(_officer_local(council))


STAFF_EMAIL = _email("priya.shah")  # the programme staff member who takes staff's decisions


def add_council_officers(session: Session, *, round_slug: str, now: datetime) -> Cast:
    """After the round: an officer of a selected place, of a council that was not selected and
    of the council that adopted a model, with what to try as each."""
    round_ = rounds.get_round(session, round_slug)
    applications = rounds.applications_of(session, round_)
    ranked = sorted(applications, key=lambda a: (a.rank or 10**6, a.council_code))
    chosen = [a for a in ranked if rounds.is_place(a)]
    models = list(session.exec(select(PublishedModel).where(PublishedModel.round_id == round_.id)))
    model_ids = {m.id for m in models}
    adoption = next(
        (
            a
            for a in session.exec(select(Application).order_by(Application.id))  # type: ignore[arg-type]
            if a.adopted_from_model_id is not None and a.adopted_from_model_id in model_ids
        ),
        None,
    )
    not_chosen = [
        a
        for a in ranked
        if a.state in (AppState.UNSUCCESSFUL, AppState.RESERVE, AppState.SIFT_FAIL)
        and (adoption is None or a.council_code != adoption.council_code)
    ]
    stories: list[tuple[Application, str]] = []
    if chosen:
        stories.append((chosen[0], "a selected place: its bid, decision, grant offer and returns"))
    if not_chosen:
        stories.append((not_chosen[0], "a council that was not selected: its letters and why"))
    if adoption is not None and adoption.route == "adoption":
        stories.append(
            (
                adoption,
                "a council that adopted a published model through the rolling route: its "
                "approved adoption, with the model's milestones moved to its start",
            )
        )
    elif adoption is not None:
        stories.append((adoption, "a council that adopted a published model: its new bid"))
    staff_pages = {"admin": "/admin/people", "staff": f"/staff/rounds/{round_.slug}"}
    cast = [
        DemoPerson(_email(local), name, role, what, staff_pages[role])
        for local, name, role, what in STAFF
    ]
    cast += [
        DemoPerson(_email(local), name, "assessor", "the bids assigned to them to score", "/assess")
        for local, name in ASSESSORS
    ]
    for application, what in stories:
        council = session.get(Council, application.council_code)
        assert council is not None
        officer = _add(
            session,
            local=_officer_local(council),
            name=f"{_officer_name(council)} ({council.name})",
            role="applicant",
            council=council.code,
            now=now,
        )
        start = f"/applications/{application.id}"
        cast.append(DemoPerson(officer.email, officer.name, "applicant", what, start))
    return Cast(people=cast, tries=_tries(round_, stories, models))


OFFICER_NAMES = ["Chris Taylor", "Morgan Lee", "Jordan Patel", "Kim Walsh", "Robin Clarke"]


def _officer_name(council: Council) -> str:
    return OFFICER_NAMES[sum(map(ord, council.code)) % len(OFFICER_NAMES)]


def _tries(
    round_: Round, stories: list[tuple[Application, str]], models: list[PublishedModel]
) -> list[TryThis]:
    tries = [
        TryThis(
            "Priya Shah (programme staff)",
            "follow the round stage by stage, with each stage's flow run and documents",
            f"/staff/rounds/{round_.slug}",
        )
    ]
    if stories:
        application, _ = stories[0]
        tries.append(
            TryThis(
                "the selected place's officer",
                "read its decision letter and grant offer, then its returns",
                f"/applications/{application.id}",
            )
        )
    if models:
        model = models[-1]  # the latest version published (each place has one from selection)
        tries.append(
            TryThis(
                "Priya Shah (programme staff)",
                "see who adopted the published model and how they compare",
                f"/staff/rounds/{round_.slug}/models/{model.id}/lineage",
            )
        )
    else:
        tries.append(
            TryThis(
                "Jo Evans (assessor)",
                "read the bids assigned and the scores given, with their justifications",
                "/assess",
            )
        )
    return tries


def people(session: Session) -> list[User]:
    """The demo people, in the order the sign-in page lists them."""
    order = {"admin": 0, "staff": 1, "assessor": 2, "applicant": 3}
    found = [u for u in session.exec(select(User).where(User.email.endswith("@" + DOMAIN)))]
    return sorted(found, key=lambda u: (order.get(u.role, 9), u.name))


def start_page(user: User, session: Session) -> str:
    """Where a demo person lands after a one-press sign-in: their workspace."""
    if user.role == "admin":
        return "/admin/people"
    if user.role == "staff":
        newest = session.exec(select(Round).order_by(Round.id.desc())).first()  # type: ignore[union-attr]
        return f"/staff/rounds/{newest.slug}" if newest is not None else "/staff"
    if user.role == "assessor":
        return "/assess"
    if user.council_code:
        mine = session.exec(
            select(Application)
            .where(Application.council_code == user.council_code)
            .order_by(Application.id)  # type: ignore[arg-type]
        ).all()
        if mine:
            return f"/applications/{mine[-1].id}"
    return "/applications"
