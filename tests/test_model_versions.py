"""Interim models: a selected place publishes its model from the decisions on, version 1 being
its plan as selected; a later version at a milestone it has met, in its own words (by its
officer from its implementation pages, or by staff for it); the councils that adopted an earlier
version are told on their pages and by e-mail (through a real local SMTP server); and a model is
never offered for adoption into a round whose windows have closed."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import test_sign_in as mail
from conftest import edit, london
from fastapi.testclient import TestClient
from portal import add_user
from round_walk import BID_ANSWERS, DECIDE_DAY, SECOND_WAVE, SLUG, START_DAY, to_decisions
from sqlmodel import col, select
from test_portal_forms import csrf, sign_in_as_existing

from cbflow import stages
from cbflow.clock import FixedClock
from cbflow.db import session_scope
from cbflow.models import (
    Application,
    AuditEvent,
    Document,
    MilestoneRecord,
    PublishedModel,
)
from cbflow.services import implementation, replication
from cbflow.settings import Settings
from cbflow.web import create_app

smtp = mail.smtp  # a real SMTP server on this machine, keeping what it is sent

MET_DAY = london(2012, 10, 30, 15, 0)  # Birmingham agrees its operational plan
AFTER_MET = london(2012, 11, 1, 10, 0)
ADOPT_DAY = london(2012, 9, 10, 10, 0)
# a later wave whose expressions of interest are open in the autumn of 2012, while the first
# round's places implement
AUTUMN_WAVE = edit(
    SECOND_WAVE,
    ("{opens: 2013-03-18, closes: 2013-04-30}", "{opens: 2012-09-03, closes: 2012-12-14}"),
)
WAVE = "whole-place-2013"
CHANGES = "We pooled the police budget a quarter early; the health partners joined in month 5."


def models_of(application_id: int) -> list[PublishedModel]:
    with session_scope() as session:
        return list(
            session.exec(
                select(PublishedModel)
                .where(PublishedModel.application_id == application_id)
                .order_by(col(PublishedModel.version))
            )
        )


def audit(action: str) -> list[AuditEvent]:
    with session_scope() as session:
        return list(
            session.exec(
                select(AuditEvent).where(AuditEvent.action == action).order_by(col(AuditEvent.id))
            )
        )


def meet_milestone(application_id: int) -> None:
    with session_scope() as session:
        milestone = session.exec(
            select(MilestoneRecord).where(MilestoneRecord.application_id == application_id)
        ).one()
        implementation.meet_milestone(
            session, milestone=milestone, met_on=MET_DAY.date(), actor="staff", now=MET_DAY
        )


def applicant(app: Any, email: str, council: str) -> TestClient:
    add_user(email, "applicant", council=council)
    client = TestClient(app)
    sign_in_as_existing(client, email)
    return client


def test_version_1_of_each_selected_place_is_made_at_the_decisions_once(
    cbflow_env: Settings,
) -> None:
    ids = to_decisions()

    models = [m for council in ("BIR", "BOL") for m in models_of(ids[council])]
    assert [(m.application_id, m.version) for m in models] == [(ids["BIR"], 1), (ids["BOL"], 1)]
    for model in models:
        assert model.changes == "Version 1: the plan as selected"
        assert model.milestone_id is None and model.published_at == DECIDE_DAY
        # the bid's carried-over answers and the plan: the milestones as the prospectus sets them
        assert model.bundle["answers"]["pooled_budget"] == BID_ANSWERS["pooled_budget"]
        assert model.bundle["milestones"] == [
            {
                "id": "operational-plan",
                "title": "Operational plan agreed",
                "due": "2012-10-31",
                "met_on": None,
            }
        ]
        assert model.bundle["returns"] == []
    published = audit("model_published")
    assert [(e.entity_id, e.reason) for e in published] == [
        (ids["BIR"], "version 1"),
        (ids["BOL"], "version 1"),
    ]
    with session_scope() as session:
        packs = list(session.exec(select(Document).where(Document.kind == "replication_pack")))
        folder = cbflow_env.documents_dir
    assert len(packs) == 2
    assert all(d.key.endswith("/replication_pack/v1") for d in packs)
    text = subprocess.run(
        ["pdftotext", "-layout", str(Path(folder) / packs[0].path), "-"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "What changed in version 1" in text and "the plan as selected" in text
    assert "Operational plan agreed" in text

    # the decisions again, and implementation starting, make nothing new
    stages.decide(SLUG, now=DECIDE_DAY + timedelta(days=1))
    stages.start_implementation(SLUG, now=START_DAY)
    assert [len(models_of(ids[c])) for c in ("BIR", "BOL")] == [1, 1]
    assert len(audit("model_published")) == 2


def test_the_place_publishes_a_version_at_a_milestone_it_has_met(cbflow_env: Settings) -> None:
    ids = to_decisions()
    stages.start_implementation(SLUG, now=START_DAY)
    birmingham = ids["BIR"]
    app = create_app(cbflow_env, clock=FixedClock(AFTER_MET))
    officer = applicant(app, "lead@bir.gov.uk", "BIR")
    returns = f"/applications/{birmingham}/returns"
    model = f"/applications/{birmingham}/model"

    # no milestone met yet: nothing to publish
    assert "Publish a new version of your model" not in officer.get(returns).text
    before = officer.get(model)
    assert before.status_code == 200
    assert "A new version cannot be published now: every milestone met so far has a version" in (
        before.text
    )

    meet_milestone(birmingham)
    listed = officer.get(returns).text
    assert f'href="{model}">Publish a new version of your model</a>' in listed
    page = officer.get(model).text
    assert "Operational plan agreed" in page and "Met on 30 October 2012" in page
    assert 'name="seen" value="1"' in page
    token = csrf(page)

    def post(**fields: str) -> Any:
        data = {"csrf_token": token, "seen": "1", "milestone": "operational-plan"}
        return officer.post(model, data={**data, **fields}, follow_redirects=False)

    empty = post(changes="   ")
    assert empty.status_code == 400
    assert "Enter what changed since the last version" in empty.text
    oversized = post(changes="x" * 4001)
    assert oversized.status_code == 400
    assert "What changed must be 4,000 characters or fewer" in oversized.text
    no_milestone = post(milestone="", changes=CHANGES)
    assert (
        no_milestone.status_code == 400 and "Select a milestone you have met" in no_milestone.text
    )
    not_met = post(milestone="not-a-milestone", changes=CHANGES)
    assert not_met.status_code == 400
    assert len(models_of(birmingham)) == 1  # nothing published
    # another council's officer does not see the place's model pages at all
    other = applicant(app, "lead@bol.gov.uk", "BOL")
    assert other.get(model).status_code == 404
    forged = {"csrf_token": csrf(other.get("/applications").text), "changes": CHANGES}
    assert other.post(model, data={**forged, "seen": "1"}).status_code == 404

    published = post(changes=CHANGES)

    assert published.status_code == 303 and published.headers["location"] == model
    latest = models_of(birmingham)[-1]
    assert (latest.version, latest.milestone_id, latest.changes) == (2, "operational-plan", CHANGES)
    assert latest.published_by == "lead@bir.gov.uk"
    assert latest.bundle["milestones"][0]["met_on"] == "2012-10-30"
    [event] = audit("model_republished")
    assert (event.entity_id, event.actor) == (birmingham, "lead@bir.gov.uk")
    assert event.reason == "version 2 at milestone operational-plan"
    shown = officer.get(model).text
    assert "Version 2 of your model is published." in shown and CHANGES in shown
    assert "every milestone met so far has a version" in shown
    assert "Publish a new version of your model</a>" not in officer.get(returns).text

    # a second tab, opened before: its post is stale, and says so
    stale = post(changes="Something else entirely.")
    assert stale.status_code == 409
    assert "Version 2 was published since you opened this page" in stale.text
    assert len(models_of(birmingham)) == 2

    # every council reads every version, with what changed, while the place still implements
    devon = applicant(app, "lead@dev.gov.uk", "DEV")
    assert f'href="/models/{latest.id}"' in devon.get("/models").text
    page = devon.get(f"/models/{latest.id}").text
    assert "Version 2, published at 10:00 on 1 November 2012 (GMT)" in page
    assert CHANGES in page and "Version 1: the plan as selected" in page
    assert '<td class="govuk-table__cell">Implementing</td>' in devon.get("/models").text


def test_no_adoption_into_a_round_whose_windows_have_closed(cbflow_env: Settings) -> None:
    ids = to_decisions()
    app = create_app(cbflow_env, clock=FixedClock(ADOPT_DAY))
    devon = applicant(app, "lead@dev.gov.uk", "DEV")
    [model] = models_of(ids["BIR"])

    page = devon.get(f"/models/{model.id}").text

    assert "No round that takes Devon is open for expressions of interest now" in page
    assert "You can change them before you submit" not in page
    assert f'action="/models/{model.id}/adopt"' not in page
    forged = devon.post(
        f"/models/{model.id}/adopt",
        data={"csrf_token": csrf(page), "into": SLUG},
        follow_redirects=False,
    )
    assert forged.status_code == 409 and "could not be submitted" in forged.text
    with session_scope() as session:
        assert (
            session.exec(select(Application).where(Application.council_code == "DEV")).all() == []
        )


@pytest.fixture
def mailing(cbflow_env: Settings, smtp: tuple[mail.Inbox, int]) -> Iterator[Settings]:
    yield cbflow_env.model_copy(update={"smtp_host": "127.0.0.1", "smtp_port": smtp[1]})


def sign_in_by_mail(client: TestClient, inbox: mail.Inbox, email: str) -> None:
    client.post("/sign-in", data={"email": email, "csrf_token": csrf(client.get("/sign-in").text)})
    [message] = [m for m in inbox.messages if m["To"] == email][-1:]
    assert mail.follow_link(client, mail.link_in(message)).status_code == 303


def test_an_adopter_of_version_1_is_told_of_version_2(
    mailing: Settings, smtp: tuple[mail.Inbox, int]
) -> None:
    inbox = smtp[0]
    ids = to_decisions()
    stages.start_implementation(SLUG, now=START_DAY)
    stages.launch(AUTUMN_WAVE, "autumn-wave.yaml", now=START_DAY)
    clock = FixedClock(ADOPT_DAY)
    app = create_app(mailing, clock=clock)
    add_user("lead@dev.gov.uk", "applicant", council="DEV", name="Dee Devon")
    add_user("sam@staff.example", "staff", name="Sam Staff")
    devon, staff = TestClient(app), TestClient(app)
    sign_in_by_mail(devon, inbox, "lead@dev.gov.uk")
    [first] = models_of(ids["BIR"])

    # Devon adopts version 1 into the wave open now (the model's own round closed long ago)
    page = devon.get(f"/models/{first.id}").text
    assert f'name="into" value="{WAVE}"' in page and f'value="{SLUG}"' not in page
    assert "You can change them before you submit" in page
    adopted = devon.post(
        f"/models/{first.id}/adopt",
        data={"csrf_token": csrf(page), "into": WAVE},
        follow_redirects=False,
    )
    assert adopted.status_code == 303
    adoption = int(adopted.headers["location"].rsplit("/", 1)[1])
    task_list = devon.get(f"/applications/{adoption}/eoi").text
    assert "has been published since you adopted" not in task_list

    # Birmingham meets its milestone; staff publish version 2 for it from their pages
    meet_milestone(ids["BIR"])
    clock.set(AFTER_MET)  # weeks later: each signs in afresh
    sign_in_by_mail(staff, inbox, "sam@staff.example")
    implementation_page = staff.get(f"/staff/rounds/{SLUG}/implementation").text
    form_url = f"/staff/rounds/{SLUG}/implementation/{ids['BIR']}/version"
    assert f'href="{form_url}"' in implementation_page
    form = staff.get(form_url).text
    sent_before = len(inbox.messages)
    done = staff.post(
        form_url,
        data={
            "csrf_token": csrf(form),
            "seen": "1",
            "milestone": "operational-plan",
            "changes": CHANGES,
        },
        follow_redirects=False,
    )
    assert done.status_code == 303
    second = models_of(ids["BIR"])[-1]
    assert (second.version, second.published_by) == (2, "sam@staff.example")

    # the adopting council's officer is e-mailed, once the request has committed
    told = [m for m in inbox.messages[sent_before:] if m["To"] == "lead@dev.gov.uk"]
    assert len(told) == 1
    assert told[0]["Subject"] == "Birmingham's model: version 2 has been published"
    body = told[0].get_payload(decode=True).decode()
    assert "adopted version 1" in body and CHANGES in body
    assert f"/models/{second.id}" in body and f"/applications/{adoption}" in body
    assert not [m for m in inbox.messages[sent_before:] if m["To"] != "lead@dev.gov.uk"]

    # and told on its application's pages and on the model's page
    sign_in_by_mail(devon, inbox, "lead@dev.gov.uk")
    task_list = devon.get(f"/applications/{adoption}/eoi").text
    assert "Version 2 has been published since you adopted version 1" in task_list
    assert CHANGES in task_list and f'href="/models/{second.id}"' in task_list
    model_page = devon.get(f"/models/{first.id}").text
    assert "Version 2 has been published since you adopted version 1:" in model_page
    assert CHANGES in model_page

    # the lineage report: the version Devon took, and the latest
    lineage = staff.get(f"/staff/rounds/{SLUG}/models/{second.id}/lineage").text
    assert "Version 2 is the latest" in lineage
    assert re.search(r"Devon</td>\s*<td[^>]*>Version 1 \(the latest is 2\)</td>", lineage)
    assert CHANGES in lineage


def test_the_pack_of_a_version_names_its_version_milestone_and_changes(
    cbflow_env: Settings, tmp_path: Path
) -> None:
    ids = to_decisions()
    stages.start_implementation(SLUG, now=START_DAY)
    meet_milestone(ids["BIR"])
    with session_scope() as session:
        application = session.get(Application, ids["BIR"])
        assert application is not None
        replication.publish_version(
            session,
            application=application,
            milestone_id="operational-plan",
            changes=CHANGES,
            seen=1,
            actor="lead@bir.gov.uk",
            now=AFTER_MET,
        )
    stages.returns_cycle(SLUG, now=AFTER_MET)  # issues the packs of versions published since
    with session_scope() as session:
        pack = session.exec(
            select(Document).where(col(Document.key).endswith("/replication_pack/v2"))
        ).one()
    path = cbflow_env.documents_dir / pack.path
    text = subprocess.run(
        ["pdftotext", "-layout", str(path), "-"], capture_output=True, text=True, check=True
    ).stdout
    assert "What changed in version 2" in text and "pooled the police budget" in text
    assert re.search(r"Published at the milestone\s+Operational plan agreed", text)
    subprocess.run(
        ["pdftoppm", "-png", "-r", "60", "-f", "1", "-l", "1", str(path), str(tmp_path / "pack")],
        check=True,
    )
    assert list(tmp_path.glob("pack*.png"))
