"""A support provider's workspace: the requests councils made for its organisation's offers, in
every round, to accept or decline (with a reason). Each decision carries the version of the
request it was made from: a page older than the request is refused (409) and says so. A request
for another organisation's offer is 404, as if it did not exist."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import RedirectResponse, Response
from sqlmodel import Session

from cbflow.errors import NotFound, ValidationFailed
from cbflow.formatting import local_time
from cbflow.models import Application, Council, Round, User
from cbflow.services import partnerships, rounds, support
from cbflow.web.auth import require_role
from cbflow.web.clarifying import mail_after_all
from cbflow.web.deps import ClockDep, PagesDep, ReasonField, SessionDep, SettingsDep, ShortField
from cbflow.web.templating import errors_as_list, path_for

Provider = Annotated[User, require_role(support.ROLE)]

router = APIRouter(prefix="/support")


@dataclass(frozen=True)
class ProviderRow:
    id: int | None
    version: int
    offer: str  # what is offered
    place: str
    council: str
    round: str
    what_for: str
    asked: str
    state: str
    reason: str  # a decline's
    places: str  # the offer's places taken of its capacity
    can_decide: bool
    reason_typed: str
    errors: dict[str, str]


@dataclass(frozen=True)
class ProviderPage:
    organisation: str
    rows: list[ProviderRow]
    error_list: list[dict[str, str]]


def _rows(
    session: Session, user: User, failed: int | None, errors: dict[str, str], typed: str
) -> list[ProviderRow]:
    found = []
    councils: dict[str, str] = {}
    for row, offer in support.for_provider(session, user):
        round_ = session.get(Round, row.round_id)
        application = session.get(Application, row.application_id)
        assert round_ is not None and application is not None
        if row.council_code not in councils:
            council = session.get(Council, row.council_code)
            councils[row.council_code] = council.name if council else row.council_code
        prospectus = rounds.prospectus_of(round_)
        here = failed == row.id
        found.append(
            ProviderRow(
                id=row.id,
                version=row.version,
                offer=offer.what,
                place=partnerships.place_of(session, application).name,
                council=councils[row.council_code],
                round=round_.title,
                what_for=row.what_for,
                asked=local_time(row.requested_at, prospectus),
                state=support.STATE_NAMES[row.state],
                reason=row.reason if row.state == support.DECLINED else "",
                places=f"{support.places_taken(session, round_, offer.id)} of {offer.capacity}",
                can_decide=row.state == support.REQUESTED,
                reason_typed=typed if here else "",
                errors=errors if here else {},
            )
        )
    return found


def _show(
    request: Request,
    pages: PagesDep,
    session: Session,
    user: User,
    *,
    failed: int | None = None,
    errors: dict[str, str] | None = None,
    typed: str = "",
    status_code: int = 200,
) -> Response:
    errors = errors or {}
    listed = [{"text": message, "href": f"#{field}-{failed}"} for field, message in errors.items()]
    page = ProviderPage(
        organisation=user.provider or "",
        rows=_rows(session, user, failed, errors, typed),
        error_list=listed if failed is not None else errors_as_list(errors),
    )
    return pages.show(request, "support/index.html", page, status_code)


@router.get("")
def support_home(
    request: Request, user: Provider, session: SessionDep, pages: PagesDep
) -> Response:
    return _show(request, pages, session, user)


@router.post("/requests/{request_id}")
def decide_support(
    request: Request,
    request_id: int,
    user: Provider,
    session: SessionDep,
    pages: PagesDep,
    settings: SettingsDep,
    clock: ClockDep,
    answer: ShortField = "",
    reason: ReasonField = "",
    version: ShortField = "",
) -> Response:
    try:
        support.provider_request(session, user, request_id)
    except NotFound:
        raise HTTPException(status_code=404) from None
    if answer not in ("accept", "decline") or not version.isdigit() or len(version) > 12:
        return _show(
            request,
            pages,
            session,
            user,
            failed=request_id,
            errors={"answer": "Accept or decline the request, from its form on this page"},
            status_code=400,
        )
    now = clock()
    try:
        row = support.decide(
            session,
            user=user,
            request_id=request_id,
            accept=answer == "accept",
            reason=reason,
            version=int(version),
            now=now,
        )
    except ValidationFailed as exc:
        return _show(
            request,
            pages,
            session,
            user,
            failed=request_id,
            errors=exc.errors,
            typed=reason,
            status_code=400,
        )
    except (support.StaleDecision, support.SupportRefused) as exc:
        return _show(
            request,
            pages,
            session,
            user,
            failed=request_id,
            errors={"answer": f"{str(exc).rstrip('.')}. Nothing was changed."},
            typed=reason,
            status_code=409,
        )
    mail = support.tell(session, settings, row, "decided", now=now)
    back = path_for(request, "support_home") + f"#request-{row.id}"
    return mail_after_all(RedirectResponse(back, status_code=303), mail, settings)
