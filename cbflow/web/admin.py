"""Administrators' pages: the people who can sign in, and the outbox."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response

from cbflow.errors import ValidationFailed
from cbflow.models import User
from cbflow.services import accounts
from cbflow.web.auth import require_role
from cbflow.web.deps import CheckedField, ClockDep, PagesDep, SessionDep, ShortField
from cbflow.web.templating import path_for

router = APIRouter(prefix="/admin", dependencies=[require_role("admin")])
Admin = Annotated[User, require_role("admin")]


@router.get("/outbox")
def outbox(request: Request, pages: PagesDep, session: SessionDep) -> Response:
    """Mail the portal kept instead of sending, when no SMTP server is configured."""
    return pages.render(request, "outbox.html", messages=accounts.outbox(session))


@dataclass(frozen=True)
class PeoplePage:
    people: list[User]
    roles: dict[str, str]  # each role's name
    role_choices: tuple[dict[str, Any], ...]  # the role radios, the one posted chosen
    form: dict[str, str]
    errors: dict[str, str]


def _people_page(
    request: Request,
    pages: PagesDep,
    session: SessionDep,
    form: dict[str, str],
    errors: dict[str, str],
) -> Response:
    chosen = form.get("role", "")
    page = PeoplePage(
        people=accounts.people(session),
        roles=accounts.ROLES,
        role_choices=tuple(
            {"value": role, "text": name, "checked": role == chosen}
            for role, name in accounts.ROLES.items()
        ),
        form=form,
        errors=errors,
    )
    return pages.show(request, "people.html", page, 400 if errors else 200)


@router.get("/people")
def people(request: Request, pages: PagesDep, session: SessionDep) -> Response:
    return _people_page(request, pages, session, {"role": ""}, {})


@router.post("/people")
def add_person(
    request: Request,
    pages: PagesDep,
    session: SessionDep,
    clock: ClockDep,
    admin: Admin,
    email: CheckedField = "",
    name: CheckedField = "",
    role: ShortField = "",
    council: ShortField = "",
    provider: ShortField = "",
) -> Response:
    form = {"email": email, "name": name, "role": role, "council": council, "provider": provider}
    try:
        accounts.add_user(
            session,
            email=email,
            name=name,
            role=role,
            council_code=council,
            actor=admin.email,
            now=clock(),
            provider=provider,
        )
    except ValidationFailed as exc:
        return _people_page(request, pages, session, form, exc.errors)
    return RedirectResponse(path_for(request, "people"), status_code=303)
