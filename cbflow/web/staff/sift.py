"""The sift: referred expressions of interest decided by staff, and the shortlist confirmed."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from fastapi import Request
from fastapi.responses import RedirectResponse, Response
from sqlmodel import Session

from cbflow.flowlist import CLOSE_EOI, INVITE_TO_BID
from cbflow.formatting import local_when
from cbflow.lifecycle import AppState
from cbflow.models import (
    Application,
    Round,
)
from cbflow.services import (
    rounds,
    sift,
)
from cbflow.settings import Settings
from cbflow.web.deps import (
    ClockDep,
    FormDep,
    PagesDep,
    ReasonField,
    SessionDep,
    SettingsDep,
    ShortField,
)
from cbflow.web.staff.places import place_names
from cbflow.web.staff.shared import (
    DeskDep,
    RoundPage,
    RunRow,
    Staff,
    application_or_404,
    round_header,
    round_or_404,
    runs_of,
    stage_router,
    started_runs,
)
from cbflow.web.templating import Pages, path_for

router = stage_router()


@router.get("/rounds/{slug}/sift")
def sift_page(
    request: Request,
    slug: str,
    session: SessionDep,
    settings: SettingsDep,
    pages: PagesDep,
    user: Staff,
) -> Response:
    round_ = round_or_404(session, slug)
    return _render_sift(request, session, settings, pages, round_, errors={})


@dataclass(frozen=True)
class Referral:
    application: Application
    council: str
    failed: list[str]  # the checks it did not meet, as the prospectus describes them


@dataclass(frozen=True)
class Candidate:
    application: Application
    council: str
    submitted: str
    checked: bool  # on the proposed shortlist (or chosen, when the form comes back)


@dataclass(frozen=True, kw_only=True)
class SiftPage(RoundPage):
    errors: dict[str, str]
    actions: sift.SiftActions
    referred: list[Referral]
    candidates: list[Candidate]
    shortlist_size: int | None
    invited: list[tuple[Application, str]]
    runs: list[RunRow]


def _render_sift(
    request: Request,
    session: Session,
    settings: Settings,
    pages: Pages,
    round_: Round,
    errors: dict[str, str],
    status_code: int = 200,
    chosen: Iterable[str] | None = None,
) -> Response:
    prospectus = rounds.prospectus_of(round_)
    names = place_names(session, round_.id)
    rules = {r.id: r.description for r in prospectus.stages.eoi.sift}
    referred = [
        Referral(
            application=a,
            council=names.of(a),
            failed=[
                rules.get(rule, rule)
                for rule, result in a.sift_results.items()
                if not result.get("passed")
            ],
        )
        for a in rounds.applications_of(session, round_, AppState.SIFT_REFER)
    ]
    passed = rounds.applications_of(session, round_, AppState.SIFT_PASS)
    passed.sort(key=lambda a: (a.eoi_submitted_at or a.created_at, a.council_code))
    proposed = {a.reference for a in sift.propose_shortlist(session, round_=round_)}
    ticked = set(chosen) if chosen is not None else proposed
    invited = rounds.applications_of(
        session, round_, AppState.INVITED, AppState.BID_DRAFT, AppState.BID_SUBMITTED
    )
    return pages.show(
        request,
        "staff/sift.html",
        SiftPage(
            **round_header(request, round_, prospectus, "sift"),
            errors=errors,
            actions=sift.sift_actions(session, round_),
            referred=referred,
            candidates=[
                Candidate(
                    application=a,
                    council=names.of(a),
                    submitted=local_when(a.eoi_submitted_at, prospectus),
                    checked=a.reference in ticked,
                )
                for a in passed
            ],
            shortlist_size=prospectus.stages.eoi.shortlist,
            invited=[(a, names.of(a)) for a in invited],
            runs=runs_of(started_runs(session, settings, round_), INVITE_TO_BID, CLOSE_EOI),
        ),
        status_code,
    )


@router.post("/rounds/{slug}/sift/referrals/{application_id}")
def review_referral(
    request: Request,
    slug: str,
    application_id: int,
    session: SessionDep,
    settings: SettingsDep,
    clock: ClockDep,
    pages: PagesDep,
    user: Staff,
    decision: ShortField = "",
    reason: ReasonField = "",
) -> Response:
    round_ = round_or_404(session, slug)
    application = application_or_404(session, round_, application_id)
    errors = {}
    if decision not in ("pass", "fail"):
        errors[f"decision-{application.id}"] = "Select whether the expression of interest passes"
    if not reason.strip():
        errors[f"reason-{application.id}"] = "Enter the reason for the decision"
    if not sift.referral_open(application):
        errors[f"decision-{application.id}"] = "This referral has already been decided"
    if errors:
        return _render_sift(request, session, settings, pages, round_, errors, 400)
    sift.review_referral(
        session,
        application=application,
        passed=decision == "pass",
        actor=user.email,
        now=clock(),
        reason=reason.strip(),
    )
    return RedirectResponse(path_for(request, "sift_page", slug=slug), status_code=303)


@router.post("/rounds/{slug}/sift/shortlist")
def confirm_shortlist(slug: str, desk: DeskDep, form: FormDep) -> Response:
    request, session = desk.request, desk.session
    round_ = round_or_404(session, slug)
    prospectus = rounds.prospectus_of(round_)
    chosen = [str(v) for v in form.getlist("chosen")]
    nonce = str(form.get("nonce", ""))
    passed = {a.reference for a in rounds.applications_of(session, round_, AppState.SIFT_PASS)}
    size = prospectus.stages.eoi.shortlist
    # the stage's rules first (the state, the referrals), then the choice itself
    error = sift.sift_actions(session, round_).shortlist_refusal
    if not error and not chosen:
        error = "Select the places to invite to bid"
    elif not error and any(c not in passed for c in chosen):
        error = "Only expressions of interest that passed the sift can be shortlisted"
    elif not error and size is not None and len(chosen) > size:
        error = f"Select at most {size} places: the prospectus shortlists {size}"
    if error:
        return _render_sift(
            request, session, desk.settings, desk.pages, round_, {"chosen": error}, 400, chosen
        )
    return desk.start(
        INVITE_TO_BID,
        {"slug": slug, "chosen": sorted(chosen)},
        round_=round_,
        nonce=nonce,
        back=path_for(request, "sift_page", slug=slug),
    )
