"""The Prefect flows: runs named by round and stage, documents linked as artifacts, deadline runs
scheduled at the prospectus's dates. One Prefect test server for the whole module."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlparse

import pytest
import round_walk
from conftest import ROUTE_OPEN, edit, example_text, london
from fastapi.testclient import TestClient
from portal import add_user, csrf, sign_in
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterKey,
    FlowRunFilter,
    FlowRunFilterTags,
)
from prefect.client.schemas.sorting import ArtifactSort
from prefect.testing.utilities import prefect_test_harness
from sqlmodel import col, select

from cbflow.db import session_scope
from cbflow.models import Application, Document
from cbflow.services import accounts
from cbflow.settings import Settings, get_settings
from cbflow.web import create_app

pytestmark = pytest.mark.slow
HTTPS = "https://testserver"


@pytest.fixture(scope="module")
def prefect_server() -> Iterator[None]:
    with prefect_test_harness(server_startup_timeout=60):
        yield


def links_in(markdown: str) -> list[str]:
    """The targets of the markdown links in an artifact."""
    return [part.split(")")[0] for part in markdown.split("](")[1:]]


async def _latest_artifact(key: str) -> str:
    """The markdown of the newest artifact with this key (the demo's runs made some too)."""
    async with get_client() as client:
        (newest,) = await client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key])),
            sort=ArtifactSort.CREATED_DESC,
            limit=1,
        )
    return str(newest.data)


async def _runs_and_artifacts() -> tuple[list[str], dict[str, str]]:
    async with get_client() as client:
        runs = await client.read_flow_runs()
        artifacts = await client.read_artifacts()
    return [r.name for r in runs], {a.key: str(a.data) for a in artifacts if a.key}


def test_demo_flow_names_runs_by_round_and_stage_and_links_documents(
    prefect_server: None, cbflow_env: Settings, tmp_path: Path
) -> None:
    from flows.demo import demo_round

    path = tmp_path / "format-example.yaml"  # with the rolling route, for the adoption's run
    path.write_text(edit(example_text(), ROUTE_OPEN), encoding="utf-8")
    summary = asyncio.run(demo_round(str(path), councils=5))

    names, artifacts = asyncio.run(_runs_and_artifacts())
    assert summary["selected"]
    for expected in (  # each followed by the date the stage acted on
        "whole-place-2011 · EOI close and sift",
        "whole-place-2011 · selection and decisions",
        "whole-place-2011 · invite to bid",
        "format-example · launch",
    ):
        assert any(name.startswith(expected + " · ") for name in names), expected
    assert any(name.startswith("model ") and "adopted by" in name for name in names)
    decisions = artifacts["whole-place-2011-decisions"]
    links = links_in(decisions)
    assert links, "the decisions artifact links each letter"
    with session_scope() as session:
        for link in links:
            assert link.startswith(f"{cbflow_env.resolved_portal_base_url}/staff/documents/")
            document = session.get(Document, int(link.rsplit("/", 1)[1]))
            assert document is not None
            assert (cbflow_env.documents_dir / document.path).is_file()


def test_schedule_round_creates_one_run_per_future_deadline_when_called_twice(
    prefect_server: None, cbflow_env: Settings
) -> None:
    from cbflow import stages
    from flows.deployments import ensure_deployments, schedule_round

    source = edit(
        example_text(),
        ("id: whole-place-2011", "id: future-round"),
        (
            'eoi:        {opens: 2011-10-17, closes: "2011-11-10T12:00"}',
            'eoi:        {opens: 2031-10-17, closes: "2031-11-10T12:00"}',
        ),
        (
            "bid:        {opens: 2011-11-21, closes: 2011-12-09}",
            "bid:        {opens: 2031-11-21, closes: 2031-12-09}",
        ),
        (
            "assessment: {opens: 2011-12-10, closes: 2011-12-16}",
            "assessment: {opens: 2031-12-10, closes: 2031-12-16}",
        ),
        ("decision:   {by: 2011-12-21}", "decision:   {by: 2031-12-21}"),
        (
            "implementation: {starts: 2012-04-01, ends: 2013-03-31}",
            "implementation: {starts: 2032-04-01, ends: 2032-09-30}",
        ),
        ("due: 2012-10-31}", "due: 2032-10-31}"),
    )
    stages.launch(source, "future-round.yaml", now=datetime(2031, 10, 1, tzinfo=UTC))

    async def schedule_twice() -> list[tuple[str, datetime]]:
        await ensure_deployments()
        first = await schedule_round("future-round", now=datetime(2031, 10, 1, tzinfo=UTC))
        await schedule_round("future-round", now=datetime(2031, 10, 1, tzinfo=UTC))
        async with get_client() as client:
            runs = await client.read_flow_runs(
                flow_run_filter=FlowRunFilter(tags=FlowRunFilterTags(all_=["future-round"]))
            )
        assert len(runs) == len(first)
        return [(r.name, r.state.state_details.scheduled_time) for r in runs]  # type: ignore[union-attr,misc]

    scheduled = asyncio.run(schedule_twice())

    by_name = dict(scheduled)
    eoi_close = next(when for name, when in by_name.items() if "close-eoi" in name)
    assert eoi_close == london(2031, 11, 10, 12, 0)
    bids_close = next(when for name, when in by_name.items() if "close-bids" in name)
    assert bids_close == london(2031, 12, 10, 0, 0)  # a date alone: the end of that day
    returns = [name for name in by_name if "returns-cycle" in name]
    assert len(returns) == 2  # two quarters of implementation
    # reminders 10, 3 and 1 working days before each deadline, while its window is open: three
    # before the EOI and the bid deadlines, two before the assessment closes
    reminders = sorted(when for name, when in by_name.items() if "send-reminders" in name)
    assert len(reminders) == 8
    assert reminders[0] == london(2031, 10, 27, 9, 0) and reminders[-1] == london(
        2031, 12, 15, 9, 0
    )


def test_a_stage_run_links_each_document_it_issued_to_the_portal_which_serves_it_to_staff(
    prefect_server: None, cbflow_env: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The Prefect UI opens the artifact's links in the browser: they are the portal's
    addresses (a browser refuses file:// links from a web page), and the portal serves each
    document to staff and administrators, and to nobody else."""
    from flows.stages import close_eoi, launch

    monkeypatch.setenv("CBFLOW_PORTAL_BASE_URL", "https://portal.example/")
    get_settings.cache_clear()
    slug = round_walk.SLUG
    asyncio.run(launch(round_walk.SOURCE, f"{slug}.yaml", now=round_walk.LAUNCH_AT))
    for n, council in enumerate(round_walk.COUNCILS):
        round_walk.submit_eoi(slug, council, round_walk.EOI_DAY, f"Ambition {n}")

    asyncio.run(close_eoi(slug, now=round_walk.EOI_CLOSE))

    launched = links_in(asyncio.run(_latest_artifact(f"{slug}-launch")))
    receipts = links_in(asyncio.run(_latest_artifact(f"{slug}-eoi-close")))
    assert len(launched) == 1 and len(receipts) == len(round_walk.COUNCILS)
    for link in launched + receipts:
        assert link.startswith("https://portal.example/staff/documents/"), link
    add_user("lead@staff.example", "staff")
    add_user("admin@cbflow.example", "admin")
    add_user("bids@essex.example", "applicant", council="ESS")
    add_user("bids@birmingham.example", "applicant", council="BIR")
    add_user("ann@assessors.example", "assessor")
    app = create_app(get_settings())  # its cookies are https-only, as its address says
    for email in ("lead@staff.example", "admin@cbflow.example"):
        with TestClient(app, base_url=HTTPS) as client:
            sign_in(client, email)
            for link in launched + receipts:
                answer = client.get(urlparse(link).path)
                assert answer.status_code == 200, link
                assert answer.headers["content-type"] == "application/pdf"
                assert answer.content.startswith(b"%PDF")
    with session_scope() as session:
        own = session.exec(
            select(Document.id)
            .join(Application, col(Application.id) == Document.application_id)
            .where(Application.council_code == "BIR", Document.kind == "eoi_receipt")
        ).one()
    birmingham_receipt = urlparse(next(link for link in receipts if link.endswith(f"/{own}"))).path
    for email in ("bids@essex.example", "bids@birmingham.example", "ann@assessors.example"):
        with TestClient(app, base_url=HTTPS) as client:
            sign_in(client, email)
            # the staff's copy, even of the council's own receipt: councils have theirs on
            # their application's page
            refused = client.get(birmingham_receipt, follow_redirects=False)
            assert refused.status_code == 403, email
            assert b"%PDF" not in refused.content
    with TestClient(app, base_url=HTTPS) as browser:
        answer = browser.get(birmingham_receipt, follow_redirects=False)
        assert answer.status_code == 303 and answer.headers["location"] == "/sign-in"
        with session_scope() as session:
            handed = accounts.hand_over_sign_in_link(
                session,
                email="lead@staff.example",
                base_url="",
                actor="test",
                now=datetime.now(UTC),
            )
        page = browser.get(handed.url)
        signed_in = browser.post(
            handed.url, data={"csrf_token": csrf(page.text)}, follow_redirects=False
        )
        assert signed_in.headers["location"] == birmingham_receipt  # on to what was asked for
        assert browser.get(birmingham_receipt).content.startswith(b"%PDF")
