"""A round as open data: its awarded grants as a 360Giving data package, and its stages as a
package of OCDS releases.

Both are built from what the database records (the round's audited stage changes, the
applications and their decisions), never from what the prospectus only planned, and both name
organisations by org-id.guide identifiers: councils by the Local Authorities for England register
(GB-LAE and the register's three-letter code, the code cbflow's council register uses), the
funder by the prospectus's `open_data.funder_id`.

Money is exact: amounts are written as JSON numbers with the pence they have, never through a
binary float's rounding (see `_amount`).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime, time
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlmodel import Session, col, select

from cbflow.errors import CbflowError
from cbflow.formatting import money
from cbflow.forms import money_to_pence
from cbflow.lifecycle import RoundState
from cbflow.models import Application, AuditEvent, Council, ReturnRecord, Round
from cbflow.prospectus import OpenData, Period, Prospectus
from cbflow.services import contributions, partnerships
from cbflow.services.rounds import applications_of, places_of, prospectus_of
from cbflow.settings import Settings
from cbflow.wording import and_list

GRANTS_VERSION = "1.4"  # 360Giving Data Standard, major.minor
OCDS_VERSION = "1.1"
LICENCE = "https://www.nationalarchives.gov.uk/doc/open-government-licence/version/3/"
COUNCIL_SCHEME = "GB-LAE"  # org-id.guide: Local Authorities for England register
# the ONS entity codes that start a council's GSS code, as 360Giving's geoCodeType names them
GEO_CODE_TYPES = {"E06": "UA", "E07": "NMD", "E08": "MD", "E09": "LONB", "E10": "CTY"}
KINDS = ("360giving", "ocds")


class OpenDataUnavailable(CbflowError):
    """The round cannot be published as this kind of open data yet, or at all; says why."""


def _identifiers(prospectus: Prospectus) -> OpenData:
    if prospectus.open_data is None:
        raise OpenDataUnavailable(
            f"the prospectus of {prospectus.id} has no open_data section: add open_data.funder_id "
            "(the org-id.guide identifier of the body issuing it), open_data.grant_prefix (its "
            "360Giving prefix) and open_data.ocid_prefix (its OCDS prefix) to publish open data"
        )
    return prospectus.open_data


def _amount(pence: int) -> int | float:
    """Pounds as a JSON number. A whole number of pounds is written as an integer; otherwise the
    float nearest to the exact decimal, whose shortest repr (what json writes) is that decimal
    for any amount under ten trillion pounds: 1234.56 stays 1234.56."""
    pounds = Decimal(pence) / 100
    if pounds == pounds.to_integral_value():
        return int(pounds)
    value = float(pounds)
    assert Decimal(repr(value)) == pounds, pence
    return value


def _local_date(moment: datetime, prospectus: Prospectus) -> str:
    return moment.astimezone(prospectus.zone).date().isoformat()


def _stamp(moment: datetime) -> str:
    """A date-time with its offset, to the second."""
    return moment.replace(microsecond=0).isoformat()


def _council_id(code: str) -> str:
    return f"{COUNCIL_SCHEME}-{code}"


def _scheme_and_id(identifier: str) -> tuple[str, str]:
    """An org-id ("GB-GOVUK-some-department") as its list ("GB-GOVUK") and its id in the list."""
    country, register, rest = identifier.split("-", 2)
    return f"{country}-{register}", rest


def _councils(session: Session, codes: set[str]) -> dict[str, Council]:
    found = session.exec(select(Council).where(col(Council.code).in_(codes)))
    return {c.code: c for c in found}


def _members(session: Session, applications: list[Application]) -> dict[int, list[str]]:
    """Each application's council codes, its lead first (one for a council on its own)."""
    return {
        a.id: partnerships.council_codes_of(session, a) for a in applications if a.id is not None
    }


def _place_title(application: Application, lead: Council) -> str:
    """A grant's or award's name for the place: a partnership's name, or its council's."""
    return application.place_name or lead.name


def _summary_text(prospectus: Prospectus) -> str:
    """The prospectus's summary as plain text: its first paragraph, without Markdown marks."""
    for paragraph in prospectus.summary.strip().split("\n\n"):
        text = " ".join(paragraph.split())
        if text and not text.startswith("#"):
            return re.sub(r"[*_`]+", "", text)
    return prospectus.title


def _funded(session: Session, round_: Round) -> list[Application]:
    """The places the round awarded a grant (rounds.places_of)."""
    chosen = [a for a in places_of(session, round_) if a.decided_at is not None]
    return sorted(chosen, key=lambda a: (a.rank or 0, a.council_code))


# ---------------------------------------------------------------------------------------------
# 360Giving


def grants_package(session: Session, round_: Round, *, now: datetime, url: str) -> dict[str, Any]:
    """The round's awarded grants as a 360Giving data package: one grant for each place
    selected, with the support it asked for and was awarded. `url` is where the package is
    published. Raises OpenDataUnavailable before the decisions are released."""
    prospectus = prospectus_of(round_)
    ids = _identifiers(prospectus)
    funded = _funded(session, round_)
    if not funded:
        raise OpenDataUnavailable(
            f"round {round_.slug} has awarded no grants yet ({round_.state}): a 360Giving file "
            "lists awarded grants, so export it once the decisions are released"
        )
    members = _members(session, funded)
    councils = _councils(session, {code for codes in members.values() for code in codes})
    funder = {"id": ids.funder_id, "name": prospectus.issued_by}
    period = prospectus.timetable.implementation
    about = _summary_text(prospectus)
    today = _local_date(now, prospectus)
    grants = []
    for application in funded:
        council = councils[application.council_code]
        assert application.decided_at is not None
        requested = application.support_requested_pence
        earned = sum(r.payment_pence or 0 for r in _payments(session, application))
        terms = ""
        if requested is None:  # paid by results: what it has earned so far is what it has
            terms = f" Paid by results: the amount is what the returns have earned by {today}."
        assert application.id is not None
        place = [councils[code] for code in members[application.id]]
        # one recipient per grant, as the standard expects: a partnership's grant is paid to
        # its lead council, which holds it for the place; the description names every member
        # council and the beneficiary locations are all of their areas
        recipient = f"awarded to {council.official_name}"
        if len(place) > 1:
            recipient += (
                f", lead council of {_place_title(application, council)}, a partnership of "
                f"{and_list([c.official_name for c in place])}"
            )
        pooled = ""
        if prospectus.partners is not None:  # what the place's partners confirmed they put in
            confirmed = contributions.confirmed_total_pence(session, application)
            pooled = f" Partners' confirmed contributions to the pooled budget: {money(confirmed)}."
        grant: dict[str, Any] = {
            "id": f"{ids.grant_prefix}-{round_.slug}-{council.code}",
            "title": f"{prospectus.title}: {_place_title(application, council)}",
            "description": f"{prospectus.title}, {recipient}. {about}{terms}{pooled}",
            "currency": "GBP",
            "amountAwarded": _amount(earned if requested is None else requested),
            "awardDate": _local_date(application.decided_at, prospectus),
            "recipientOrganization": [
                {"id": _council_id(council.code), "name": council.official_name}
            ],
            "beneficiaryLocation": [_location(member) for member in place],
            "fundingOrganization": [funder],
            "grantProgramme": [{"code": round_.slug, "title": prospectus.title}],
            "fromOpenCall": "Yes",
            "dateModified": _stamp(now),
        }
        if requested is None:
            grant["amountDisbursed"] = _amount(earned)
        else:
            grant["amountAppliedFor"] = _amount(requested)
        if period is not None:
            grant["plannedDates"] = [
                {"startDate": period.starts.isoformat(), "endDate": period.ends.isoformat()}
            ]
        grants.append(grant)
    return {
        "grants": grants,
        "version": GRANTS_VERSION,
        "title": f"{prospectus.title}: grants awarded",
        "description": f"The grants awarded by {prospectus.issued_by} in {prospectus.title}.",
        "identifier": f"{ids.grant_prefix}-{round_.slug}",
        "issued": _local_date(now, prospectus),
        "modified": _stamp(now),
        "publisher": {"identifier": ids.funder_id, "name": prospectus.issued_by},
        "downloadURL": url,
        "license": LICENCE,
    }


def _location(council: Council) -> dict[str, Any]:
    location: dict[str, Any] = {"name": council.name, "countryCode": "GB"}
    kind = GEO_CODE_TYPES.get(council.gss_code[:3])
    if kind is not None:
        location |= {"geoCode": council.gss_code, "geoCodeType": kind}
    return location


# ---------------------------------------------------------------------------------------------
# OCDS


@dataclass(frozen=True)
class _Stage:
    """A round's stage change, as one OCDS release: its tags and the tender's status."""

    tags: tuple[str, ...]
    tender_status: str
    name: str


STAGES: dict[str, _Stage] = {
    RoundState.LAUNCHED: _Stage(("tender",), "active", "launched: expressions of interest invited"),
    RoundState.EOI_CLOSED: _Stage(("tenderUpdate",), "active", "expressions of interest closed"),
    RoundState.BIDS_INVITED: _Stage(("tenderUpdate",), "active", "shortlist invited to bid"),
    RoundState.BIDS_CLOSED: _Stage(("tenderUpdate",), "active", "bids closed"),
    RoundState.ASSESSED: _Stage(("tenderUpdate",), "active", "assessment complete"),
    RoundState.DECIDED: _Stage(("award", "tenderUpdate"), "complete", "decisions released"),
    RoundState.IMPLEMENTING: _Stage(("contract",), "complete", "implementation started"),
    RoundState.COMPLETED: _Stage(("contractTermination",), "complete", "round completed"),
    RoundState.CANCELLED: _Stage(("tenderCancellation",), "cancelled", "round cancelled"),
}


def _stage_changes(session: Session, round_: Round) -> list[AuditEvent]:
    """The round's launch and every change of its state, in order."""
    assert round_.id is not None
    events = session.exec(
        select(AuditEvent)
        .where(AuditEvent.entity == "round", AuditEvent.entity_id == round_.id)
        .order_by(col(AuditEvent.at), col(AuditEvent.id))
    )
    return [e for e in events if e.to_state in STAGES]


def ocds_package(session: Session, round_: Round, *, now: datetime, url: str) -> dict[str, Any]:
    """The round's stages as an OCDS release package: one release for the launch and one for
    each later stage the round has reached, each as things stood at that moment (who had
    applied, who was awarded what, which agreements were running and what had been paid)."""
    prospectus = prospectus_of(round_)
    ids = _identifiers(prospectus)
    ocid = f"{ids.ocid_prefix}-{round_.slug}"
    scheme, uid = _scheme_and_id(ids.funder_id)
    # read once: each release takes from these what had happened by its moment
    applications = applications_of(session, round_)
    funded = _funded(session, round_)
    members = _members(session, applications)
    councils = _councils(session, {code for codes in members.values() for code in codes})
    releases = [
        _release(
            session, round_, prospectus, ids, ocid, event, applications, funded, councils, members
        )
        for event in _stage_changes(session, round_)
    ]
    if not releases:
        raise OpenDataUnavailable(f"round {round_.slug} has no recorded stages to publish")
    return {
        "uri": url,
        "version": OCDS_VERSION,
        "publishedDate": _stamp(now),
        "publisher": {"name": prospectus.issued_by, "scheme": scheme, "uid": uid},
        "license": LICENCE,
        "releases": releases,
    }


def _release(
    session: Session,
    round_: Round,
    prospectus: Prospectus,
    ids: OpenData,
    ocid: str,
    event: AuditEvent,
    applications: list[Application],
    funded: list[Application],
    councils: dict[str, Council],
    members: dict[int, list[str]],
) -> dict[str, Any]:
    """One stage change as an OCDS release. A partnership's bid is one bid by all of its
    councils: each is a tenderer (and, awarded, a supplier of the one award)."""
    stage = STAGES[str(event.to_state)]
    at = event.at
    eois = [a for a in applications if a.eoi_submitted_at and a.eoi_submitted_at <= at]
    bids = [a for a in applications if a.bid_submitted_at and a.bid_submitted_at <= at]
    awarded = [a for a in funded if a.decided_at is not None and a.decided_at <= at]
    funder = {"id": ids.funder_id, "name": prospectus.issued_by}
    scheme, uid = _scheme_and_id(ids.funder_id)
    tenderers = bids if prospectus.stages.bid and bids else eois
    parties = [
        {
            **funder,
            "identifier": {"scheme": scheme, "id": uid, "legalName": prospectus.issued_by},
            "roles": ["buyer", "procuringEntity"],
        }
    ]
    for application in eois:
        assert application.id is not None
        roles = ["tenderer"]
        if application in awarded:
            roles.append("supplier")
        for code in members[application.id]:
            council = councils[code]
            parties.append(
                {
                    "id": _council_id(council.code),
                    "name": council.official_name,
                    "identifier": {
                        "scheme": COUNCIL_SCHEME,
                        "id": council.code,
                        "legalName": council.official_name,
                    },
                    "roles": roles,
                }
            )
    window = prospectus.timetable.bid if at >= _bids_open(prospectus) else prospectus.timetable.eoi
    assert window is not None
    tender: dict[str, Any] = {
        "id": round_.slug,
        "title": prospectus.title,
        "description": _summary_text(prospectus),
        "status": stage.tender_status,
        "procuringEntity": funder,
        "procurementMethod": "open",
        "procurementMethodDetails": "Competitive grant round: expression of interest"
        + (", then full bids from a shortlist" if prospectus.stages.bid else ""),
        "submissionMethod": ["electronicSubmission"],
        "tenderPeriod": {
            "startDate": _stamp(window.opens_at(prospectus.zone)),
            "endDate": _stamp(window.closes_at(prospectus.zone)),
        },
        "numberOfTenderers": sum(len(members[a.id or 0]) for a in tenderers),
        "tenderers": [
            {"id": _council_id(code), "name": councils[code].official_name}
            for a in tenderers
            for code in members[a.id or 0]
        ],
    }
    budget = prospectus.capacity.budget_gbp
    if budget is not None:
        tender["value"] = {"amount": _amount(money_to_pence(budget)), "currency": "GBP"}
    if prospectus.stages.assessment:
        tender["awardCriteria"] = "ratedCriteria"
        tender["awardCriteriaDetails"] = "; ".join(
            f"{c.title} (weight {c.weight})" for c in prospectus.stages.assessment.criteria
        )
    release: dict[str, Any] = {
        "ocid": ocid,
        "id": f"{ocid}-{event.id}-{event.to_state}",
        "date": _stamp(at),
        "tag": list(stage.tags),
        "initiationType": "tender",
        "language": "en",
        "parties": parties,
        "buyer": funder,
        "tender": tender,
    }
    if awarded:
        release["awards"] = [_award(a, councils, members, prospectus) for a in awarded]
    if str(event.to_state) in (RoundState.IMPLEMENTING, RoundState.COMPLETED):
        ended = event.to_state == RoundState.COMPLETED
        release["contracts"] = [
            _contract(session, a, councils[a.council_code], prospectus, funder, ended=ended)
            for a in awarded
        ]
    return release


def _bids_open(prospectus: Prospectus) -> datetime:
    bid = prospectus.timetable.bid
    return bid.opens_at(prospectus.zone) if bid else datetime.max.replace(tzinfo=prospectus.zone)


def _award(
    application: Application,
    councils: dict[str, Council],
    members: dict[int, list[str]],
    prospectus: Prospectus,
) -> dict[str, Any]:
    council = councils[application.council_code]
    assert application.decided_at is not None and application.id is not None
    award: dict[str, Any] = {
        "id": application.reference,
        "title": f"{prospectus.title}: {_place_title(application, council)}",
        "status": "active",
        "date": _stamp(application.decided_at),
        "value": {"amount": _amount(application.support_requested_pence or 0), "currency": "GBP"},
        "suppliers": [
            {"id": _council_id(code), "name": councils[code].official_name}
            for code in members[application.id]
        ],
    }
    period = prospectus.timetable.implementation
    if period is not None:
        award["contractPeriod"] = _period(period, prospectus)
    return award


def _payments(session: Session, application: Application) -> list[ReturnRecord]:
    """The returns the place was paid for (payment by results), in order."""
    return list(
        session.exec(
            select(ReturnRecord)
            .where(
                ReturnRecord.application_id == application.id,
                col(ReturnRecord.payment_pence) > 0,
                col(ReturnRecord.submitted_at).is_not(None),
            )
            .order_by(col(ReturnRecord.period))
        )
    )


def _period(period: Period, prospectus: Prospectus) -> dict[str, str]:
    """The implementation period, from the start of its first day to the end of its last, in
    the round's time zone."""
    zone = prospectus.zone
    return {
        "startDate": _stamp(datetime.combine(period.starts, time(0, 0), zone)),
        "endDate": _stamp(datetime.combine(period.ends, time(23, 59, 59), zone)),
    }


def _contract(
    session: Session,
    application: Application,
    council: Council,
    prospectus: Prospectus,
    funder: dict[str, str],
    *,
    ended: bool,
) -> dict[str, Any]:
    contract: dict[str, Any] = {
        "id": f"{application.reference}/agreement",
        "awardID": application.reference,
        "title": f"{prospectus.title}: {_place_title(application, council)}",
        "status": "terminated" if ended else "active",
        "value": {"amount": _amount(application.support_requested_pence or 0), "currency": "GBP"},
    }
    period = prospectus.timetable.implementation
    if period is not None:
        contract["period"] = _period(period, prospectus)
    transactions = [
        {
            "id": f"{application.reference}/return-{r.period}",
            "date": _stamp(r.submitted_at),
            "value": {"amount": _amount(r.payment_pence or 0), "currency": "GBP"},
            "payer": funder,
            "payee": {"id": _council_id(council.code), "name": council.official_name},
        }
        for r in _payments(session, application)
        if r.submitted_at is not None
    ]
    if transactions:
        contract["implementation"] = {"transactions": transactions}
    return contract


# ---------------------------------------------------------------------------------------------


def package(
    session: Session, round_: Round, kind: str, *, now: datetime, url: str
) -> dict[str, Any]:
    """The round's open data of `kind` ("360giving" or "ocds")."""
    if kind == "360giving":
        return grants_package(session, round_, now=now, url=url)
    if kind == "ocds":
        return ocds_package(session, round_, now=now, url=url)
    raise CbflowError(f"unknown kind of open data {kind!r}: choose one of {', '.join(KINDS)}")


def unavailable(session: Session, round_: Round) -> dict[str, str | None]:
    """For each kind, why the round cannot be exported now, or None if it can. Cheap: it does
    not build the files."""
    prospectus = prospectus_of(round_)
    if prospectus.open_data is None:
        why = (
            "the prospectus has no open_data section (the funder's identifier and the "
            "publisher's 360Giving and OCDS prefixes)"
        )
        return dict.fromkeys(KINDS, why)
    awarded = any(a.decided_at is not None for a in places_of(session, round_))
    return {
        "360giving": None if awarded else "no grants have been awarded yet",
        "ocds": None,
    }


def download_url(settings: Settings, slug: str, kind: str) -> str:
    """Where the staff workspace offers the round's open data of `kind`."""
    return f"{settings.resolved_portal_base_url}/staff/rounds/{slug}/open-data/{kind}.json"


def to_json(data: dict[str, Any]) -> str:
    return json.dumps(data, ensure_ascii=False, indent=2) + "\n"


def write(data: dict[str, Any], path: Path) -> None:
    """Write the file whole or not at all: a reader never sees half of it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(to_json(data), encoding="utf-8")
    partial.replace(path)
