"""A council's team: its people on cbflow, and inviting a colleague by e-mail.

An applicant sees and invites only their own council's people; a colleague invited becomes an
applicant for the same council, signs in by the link in the invitation and sees the council's
applications."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import RedirectResponse, Response

from cbflow.forms import email_error
from cbflow.models import Council, User
from cbflow.services import accounts
from cbflow.web.auth import require_role
from cbflow.web.deps import (
    CheckedField,
    ClockDep,
    PagesDep,
    SessionDep,
    SettingsDep,
    ShortField,
    mail_after,
)
from cbflow.web.templating import path_for

router = APIRouter(prefix="/applications/team")

Applicant = Annotated[User, require_role("applicant")]
INVITED = "team_invited"  # the address just invited, for the page to confirm once
NAME_LIMIT = 200


def _council(session: SessionDep, user: User) -> Council:
    council = session.get(Council, user.council_code) if user.council_code else None
    if council is None:
        raise HTTPException(status_code=403)
    return council


def _render(
    request: Request,
    pages: PagesDep,
    session: SessionDep,
    user: User,
    *,
    name: str = "",
    email: str = "",
    role: str = "applicant",
    errors: dict[str, str] | None = None,
    status_code: int = 200,
) -> Response:
    council = _council(session, user)
    errors = errors or {}
    return pages.render(
        request,
        "application/team.html",
        status_code=status_code,
        council=council,
        people=accounts.council_team(session, council.code),
        me=user,
        typed={"name": name, "email": email},
        role_items=[
            {
                "value": value,
                "text": text,
                "hint": {"text": hint},
                "checked": value == role,
            }
            for value, text, hint in (
                ("applicant", "Fill in applications", "Start, fill in and submit applications"),
                (
                    "certifier",
                    "Sign off applications",
                    "Approve applications before they are submitted, where a round asks for "
                    "sign-off by, say, the chief executive or section 151 officer",
                ),
            )
        ],
        errors=errors,
        error_list=[{"text": message, "href": f"#{key}"} for key, message in errors.items()],
        invited=request.session.pop(INVITED, None),
    )


@router.get("")
def team(request: Request, user: Applicant, session: SessionDep, pages: PagesDep) -> Response:
    return _render(request, pages, session, user)


@router.post("")
def invite(
    request: Request,
    user: Applicant,
    session: SessionDep,
    pages: PagesDep,
    settings: SettingsDep,
    clock: ClockDep,
    name: CheckedField = "",
    email: CheckedField = "",
    role: ShortField = "applicant",
) -> Response:
    _council(session, user)
    name, email = name.strip(), email.strip()
    errors: dict[str, str] = {}
    if not name:
        errors["name"] = "Enter your colleague’s full name"
    elif len(name) > NAME_LIMIT:
        errors["name"] = f"Full name must be {NAME_LIMIT} characters or fewer"
    if not email:
        errors["email"] = "Enter your colleague’s email address"
    elif problem := email_error(email):
        errors["email"] = problem
    if role not in ("applicant", "certifier"):
        errors["role"] = "Choose what your colleague will do"
    if not errors:
        try:
            invited, message = accounts.invite_colleague(
                session,
                inviter=user,
                name=name,
                email=email,
                base_url=settings.resolved_portal_base_url,
                settings=settings,
                now=clock(),
                role=role,
            )
        except accounts.AccountExists:
            errors["email"] = (
                "This email address already has an account on cbflow: "
                "enter a different email address"
            )
        else:
            request.session[INVITED] = invited.email
            return mail_after(
                RedirectResponse(path_for(request, "team"), status_code=303), message, settings
            )
    return _render(
        request,
        pages,
        session,
        user,
        name=name,
        email=email,
        role=role if role in ("applicant", "certifier") else "applicant",
        errors=errors,
        status_code=400,
    )
