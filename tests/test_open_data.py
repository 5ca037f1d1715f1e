"""A round published as open data: its awarded grants as a 360Giving data package and its stages
as OCDS releases, each valid against the standard's official schema (the pinned copies beside
this repository, with format checking on), on a whole demo round; from the command line and
from the staff workspace."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from conftest import EXAMPLE, ROOT
from fastapi.testclient import TestClient
from jsonschema import Draft4Validator, Draft202012Validator
from portal import add_user, sign_in
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT4, DRAFT202012
from sqlmodel import select
from typer.testing import CliRunner

from cbflow import demo, opendata, stages
from cbflow.cli import app as cli
from cbflow.clock import FixedClock
from cbflow.db import session_scope
from cbflow.lifecycle import FUNDED
from cbflow.models import Application, AuditEvent, ReturnRecord
from cbflow.services import rounds
from cbflow.settings import Settings
from cbflow.web import create_app

SCHEMAS = ROOT / "tests" / "data" / "schemas"  # the standards' own schemas, pinned (README there)
WHOLE_PLACE = ROOT / "prospectus" / "whole-place-2011.yaml"
SLUG = "whole-place-2011"
NOW = datetime(2013, 5, 1, 12, 0, tzinfo=UTC)
LONDON = ZoneInfo("Europe/London")


def _schema(path: Path) -> dict[str, Any]:
    assert path.is_file(), f"the pinned schema {path} is missing (tests/data/schemas)"
    loaded: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return loaded


Validator = Draft4Validator | Draft202012Validator


def package_validator(folder: str, package_file: str, item_file: str, items: str) -> Validator:
    """A package schema whose items (`items`: grants, releases) name the item schema by URL:
    that URL resolves to the local copy, and the validator is of the package schema's draft,
    with format checking on."""
    package = _schema(SCHEMAS / folder / package_file)
    item = _schema(SCHEMAS / folder / item_file)
    url = package["properties"][items]["items"]["$ref"]
    draft4 = "draft-04" in package["$schema"]
    validator = Draft4Validator if draft4 else Draft202012Validator
    resource = Resource.from_contents(item, DRAFT4 if draft4 else DRAFT202012)
    registry: Registry[Any] = Registry().with_resource(url, resource)
    return validator(package, registry=registry, format_checker=validator.FORMAT_CHECKER)


def grants_validator() -> Validator:
    """360Giving 1.4.3 (JSON Schema 2020-12)."""
    return package_validator(
        "360giving-1.4.3", "360-giving-package-schema.json", "360-giving-schema.json", "grants"
    )


def ocds_validator() -> Validator:
    """OCDS 1.1.5 (JSON Schema draft 4)."""
    return package_validator(
        "ocds-1.1.5", "release-package-schema.json", "release-schema.json", "releases"
    )


def problems(validator: Validator, data: Any) -> list[str]:
    return [
        f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(data)
    ]


def run_demo(path: Path) -> None:
    asyncio.run(demo.run(path, stages=stages, council_count=6, log=lambda _: None))


@pytest.fixture
def whole_round(cbflow_env: Settings) -> Settings:
    """The whole-place prospectus run by the demo from launch to replication."""
    run_demo(WHOLE_PLACE)
    return cbflow_env


def export(kind: str, path: Path, slug: str = SLUG) -> Any:
    return CliRunner().invoke(cli, ["export", kind, slug, "--output", str(path)])


def test_the_validators_catch_what_the_standards_forbid() -> None:
    """The schemas are read as the standards mean them: a grant without its funder, or a
    release with a tag outside the closed codelist, is invalid."""
    grant = {
        "id": "360G-x-1",
        "title": "t",
        "description": "d",
        "currency": "GBP",
        "amountAwarded": 1,
        "awardDate": "2011-12-20",
        "recipientOrganization": [{"id": "GB-LAE-BIR", "name": "Birmingham"}],
        "fundingOrganization": [{"id": "GB-GOVUK-x", "name": "Funder"}],
    }
    assert problems(grants_validator(), {"grants": [grant]}) == []
    assert problems(grants_validator(), {"grants": [grant | {"fundingOrganization": []}]})
    assert problems(grants_validator(), {"grants": [grant | {"awardDate": "20 December 2011"}]})
    release = {
        "ocid": "ocds-cbflow-r",
        "id": "1",
        "date": "2011-10-17T09:00:00+01:00",
        "tag": ["tender"],
        "initiationType": "tender",
    }
    package = {
        "uri": "http://127.0.0.1/x.json",
        "version": "1.1",
        "publishedDate": "2013-05-01T12:00:00+00:00",
        "publisher": {"name": "Funder"},
        "releases": [release],
    }
    assert problems(ocds_validator(), package) == []
    assert problems(ocds_validator(), package | {"releases": [release | {"tag": ["grant"]}]})
    assert problems(ocds_validator(), package | {"publishedDate": "1 May 2013"})


@pytest.mark.parametrize(
    ("path", "paying"),
    [(WHOLE_PLACE, False), (ROOT / "prospectus" / "troubled-families-2012.yaml", True)],
    ids=["whole-place", "troubled-families-paid-by-results"],
)
def test_a_whole_demo_round_exports_valid_360giving_and_ocds(
    cbflow_env: Settings, tmp_path: Path, path: Path, paying: bool
) -> None:
    run_demo(path)
    slug = path.stem
    grants_file, ocds_file = tmp_path / "grants.json", tmp_path / "releases.json"

    grants_run = export("360giving", grants_file, slug)
    ocds_run = export("ocds", ocds_file, slug)

    assert grants_run.exit_code == 0, grants_run.output
    assert ocds_run.exit_code == 0, ocds_run.output
    grants = json.loads(grants_file.read_text(encoding="utf-8"))
    releases = json.loads(ocds_file.read_text(encoding="utf-8"))
    assert problems(grants_validator(), grants) == []
    assert problems(ocds_validator(), releases) == []

    with session_scope() as session:
        round_ = rounds.get_round(session, slug)
        # a council that adopted a model through the rolling route implements without an award
        funded = [
            a for a in rounds.applications_of(session, round_, *FUNDED) if a.route != "adoption"
        ]
        changes = session.exec(
            select(AuditEvent).where(
                AuditEvent.entity == "round", AuditEvent.entity_id == round_.id
            )
        ).all()
        paid = session.exec(
            select(ReturnRecord).where(ReturnRecord.payment_pence.is_not(None))  # type: ignore[union-attr]
        ).all()
    # one grant for each place funded, for exactly the support it asked for
    assert f"{len(funded)} grants (360giving)" in grants_run.output
    awarded = {g["recipientOrganization"][0]["id"]: g for g in grants["grants"]}
    assert awarded.keys() == {f"GB-LAE-{a.council_code}" for a in funded}
    for application in funded:
        grant = awarded[f"GB-LAE-{application.council_code}"]
        amount = Decimal(str(grant["amountAwarded"])) * 100
        if paying:  # paid by results: awarded what its returns have earned
            earned = sum(r.payment_pence or 0 for r in paid if r.application_id == application.id)
            assert amount == earned and grant["amountDisbursed"] == grant["amountAwarded"]
            assert "Paid by results" in grant["description"]
        else:
            assert amount == application.support_requested_pence
        assert grant["fundingOrganization"][0]["name"] == (
            "Department for Communities and Local Government"
        )
        assert application.decided_at is not None  # the decision's day, in London's calendar
        assert grant["awardDate"] == application.decided_at.astimezone(LONDON).date().isoformat()
        assert grant["id"] == f"360G-cbflow-{slug}-{application.council_code}"
    # a release for the launch and for every stage since, in order, all of one process
    tags = [r["tag"] for r in releases["releases"]]
    assert len(tags) == len([c for c in changes if c.to_state]) and len(tags) >= 5
    assert tags[0] == ["tender"]
    assert ["award", "tenderUpdate"] in tags
    assert tags[-1] == ["contractTermination"]
    assert {r["ocid"] for r in releases["releases"]} == {f"ocds-cbflow-{slug}"}
    assert len({r["id"] for r in releases["releases"]}) == len(tags)
    launch, last = releases["releases"][0], releases["releases"][-1]
    assert "awards" not in launch and launch["tender"]["status"] == "active"
    budget = rounds.prospectus_of(round_).capacity.budget_gbp
    assert launch["tender"].get("value") == (
        {"amount": int(budget), "currency": "GBP"} if budget else None
    )
    assert {a["suppliers"][0]["id"] for a in last["awards"]} == awarded.keys()
    # the payments made on the returns, each once, with their exact amounts
    transactions = [
        t for c in last["contracts"] for t in c.get("implementation", {}).get("transactions", [])
    ]
    assert sorted(Decimal(str(t["value"]["amount"])) * 100 for t in transactions) == sorted(
        r.payment_pence
        for r in paid
        if r.payment_pence  # a return that earned nothing paid nothing
    )
    assert bool(transactions) == paying


def test_nothing_is_written_when_a_round_cannot_be_exported(
    cbflow_env: Settings, tmp_path: Path
) -> None:
    stages.launch(EXAMPLE.read_text(encoding="utf-8"), "round.yaml", now=NOW)  # no open_data
    target = tmp_path / "grants.json"

    missing = export("360giving", target)
    unknown = CliRunner().invoke(cli, ["export", "ocds", "no-such-round"])

    assert missing.exit_code == 1
    assert "has no open_data section: add open_data.funder_id" in missing.output
    assert not target.exists()
    assert unknown.exit_code == 1 and "no-such-round" in unknown.output


def test_360giving_waits_for_the_decisions(cbflow_env: Settings, tmp_path: Path) -> None:
    stages.launch(WHOLE_PLACE.read_text(encoding="utf-8"), "whole-place.yaml", now=NOW)
    target = tmp_path / "grants.json"

    early = export("360giving", target)
    stages_so_far = export("ocds", tmp_path / "releases.json")

    assert early.exit_code == 1
    assert "has awarded no grants yet (launched)" in early.output
    assert not target.exists()
    assert stages_so_far.exit_code == 0, stages_so_far.output
    assert "1 releases (ocds)" in stages_so_far.output


def test_amounts_are_written_exactly() -> None:
    assert opendata.to_json({"a": opendata._amount(123456)}) == '{\n  "a": 1234.56\n}\n'
    assert opendata.to_json({"a": opendata._amount(400_000_00)}) == '{\n  "a": 400000\n}\n'
    assert opendata._amount(1) == 0.01 and opendata._amount(99_999_999_999_99) == 99999999999.99


def test_staff_download_the_same_files_from_the_round_page_and_nobody_else_can(
    whole_round: Settings,
) -> None:
    add_user("sam@staff.example", "staff", name="Sam Staff")
    add_user("pat@essex.example", "applicant", council="ESS")
    app = create_app(whole_round, clock=FixedClock(NOW))
    with TestClient(app) as staff, TestClient(app) as council:
        sign_in(staff, "sam@staff.example")
        sign_in(council, "pat@essex.example")
        page = staff.get(f"/staff/rounds/{SLUG}").text
        grants = staff.get(f"/staff/rounds/{SLUG}/open-data/360giving.json")
        releases = staff.get(f"/staff/rounds/{SLUG}/open-data/ocds.json")
        unknown = staff.get(f"/staff/rounds/{SLUG}/open-data/iati.json")
        refused = council.get(f"/staff/rounds/{SLUG}/open-data/360giving.json")

    assert f'href="/staff/rounds/{SLUG}/open-data/360giving.json"' in page
    assert f'href="/staff/rounds/{SLUG}/open-data/ocds.json"' in page
    assert grants.status_code == 200 and releases.status_code == 200
    assert grants.headers["content-disposition"] == (
        f'attachment; filename="{SLUG}-360giving.json"'
    )
    assert problems(grants_validator(), grants.json()) == []
    assert problems(ocds_validator(), releases.json()) == []
    assert grants.json()["downloadURL"].endswith(f"/staff/rounds/{SLUG}/open-data/360giving.json")
    assert unknown.status_code == 404
    assert refused.status_code == 403 and "grants" not in refused.text


def test_the_round_page_says_why_a_file_is_not_ready(cbflow_env: Settings) -> None:
    stages.launch(WHOLE_PLACE.read_text(encoding="utf-8"), "whole-place.yaml", now=NOW)
    add_user("sam@staff.example", "staff", name="Sam Staff")
    with TestClient(create_app(cbflow_env, clock=FixedClock(NOW))) as client:
        sign_in(client, "sam@staff.example")
        page = client.get(f"/staff/rounds/{SLUG}").text
        early = client.get(f"/staff/rounds/{SLUG}/open-data/360giving.json")

    assert "Grants awarded, as 360Giving data (JSON): not yet, no grants have been awarded" in page
    assert early.status_code == 409
    assert "has awarded no grants yet" in early.text
    with session_scope() as session:
        assert session.exec(select(Application)).all() == []
