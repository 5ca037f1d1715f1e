"""Published models in the portal: a council reads what a place did and how it went, version by
version, downloads its public documents, and adopts the model into a pre-filled application in a
round open now, once; a council the round does not let adopt is refused; documents the model
does not list are not served."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import pytest
from conftest import edit
from fastapi.testclient import TestClient
from round_walk import PUBLISH_DAY, SECOND_WAVE, SOURCE, email_of, to_publication
from sqlmodel import col, select
from test_portal_forms import csrf, sign_in_as_existing

from cbflow import stages
from cbflow.clock import FixedClock
from cbflow.db import session_scope
from cbflow.models import Application, AuditEvent, Document, PublishedModel, User
from cbflow.settings import Settings
from cbflow.web import create_app

# only county, unitary, metropolitan, London and City councils, and models for them alone
ELIGIBLE_ONLY = edit(
    SOURCE,
    ("council_types: [CTY, UA, MD, LBO, CC, NMD]", "council_types: [CTY, UA, MD, LBO, CC]"),
    ("open_to: all ", "open_to: eligible "),
)


@pytest.fixture
def app(cbflow_env: Settings) -> Any:
    return create_app(cbflow_env, clock=FixedClock(PUBLISH_DAY))


def applicant(app: Any, council: str) -> TestClient:
    email = f"lead@{council.lower()}.gov.uk"
    with session_scope() as session:
        session.add(
            User(email=email, name=f"Lead {council}", role="applicant", council_code=council)
        )
    client = TestClient(app)
    sign_in_as_existing(client, email)
    return client


def adopt(client: TestClient, model_id: int) -> Any:
    token = csrf(client.get(f"/models/{model_id}").text)
    return client.post(
        f"/models/{model_id}/adopt", data={"csrf_token": token}, follow_redirects=False
    )


def applications_of(council: str) -> list[Application]:
    with session_scope() as session:
        return list(session.exec(select(Application).where(Application.council_code == council)))


def second_wave() -> None:
    """The programme's second wave, its expressions of interest open when the model is
    published (the model's own round closed long before)."""
    stages.launch(SECOND_WAVE, "second-wave.yaml", now=PUBLISH_DAY - timedelta(days=20))


def test_council_reads_a_model_and_adopts_it_into_a_prefilled_application(app: Any) -> None:
    model_id = to_publication()
    second_wave()
    devon = applicant(app, "DEV")

    home = devon.get("/models")
    assert home.status_code == 200
    assert f'href="/models/{model_id}"' in home.text and "Birmingham" in home.text
    page = devon.get(f"/models/{model_id}")
    assert page.status_code == 200
    text = page.text
    assert "Birmingham's model" in text
    assert "Version 2, published at 09:00 on 2 April 2013 (BST)" in text
    # every version, with what changed
    assert "Version 1: the plan as selected" in text
    assert "The place completed its implementation" in text
    # what the place did: the answers it carries over, as tables
    assert "Partner organisations" in text and "Primary care trust" in text
    assert "Spending to be pooled, by organisation and year" in text and "£400,000.00" in text
    assert "What is your ambition" not in text  # not carried over
    # milestones and results so far
    assert "Operational plan agreed" in text and "31 October 2012" in text
    assert "Return 1: 1 April 2012 to 30 June 2012" in text
    assert "Families attached this period" in text and '<p class="govuk-body">40</p>' in text
    assert "Return 2" not in text  # not made
    documents = re.findall(r'href="(/models/\d+/documents/\d+)"', text)
    assert documents, "the place's documents are listed"
    download = devon.get(documents[0])
    assert download.status_code == 200 and download.content.startswith(b"%PDF")

    adopted = adopt(devon, model_id)

    assert adopted.status_code == 303
    [application] = applications_of("DEV")
    assert adopted.headers["location"] == f"/applications/{application.id}"
    assert application.adopted_from_model_id == model_id
    assert application.state == "eoi_draft"
    assert application.reference.startswith("whole-place-2013/")  # the round open now
    with session_scope() as session:
        bundle = session.get(PublishedModel, model_id).bundle  # type: ignore[union-attr]
    assert application.eoi_answers == {"partners": bundle["answers"]["partners"]}
    assert application.bid_answers == {"pooled_budget": bundle["answers"]["pooled_budget"]}
    task_list = devon.get(adopted.headers["location"])
    assert task_list.status_code == 200
    check = devon.get(f"/applications/{application.id}/eoi/check")
    assert "Primary care trust, Health" in check.text
    bid_check = devon.get(f"/applications/{application.id}/bid/check")
    assert "£400,000.00" in bid_check.text
    # adopting again (a second click, or from the list) leads to the same application
    again = adopt(devon, model_id)
    assert again.status_code == 303 and again.headers["location"] == adopted.headers["location"]
    assert len(applications_of("DEV")) == 1
    assert "Your council has adopted this model" in devon.get(f"/models/{model_id}").text
    assert f'href="/applications/{application.id}"' in devon.get("/models").text
    with session_scope() as session:
        started = session.exec(
            select(AuditEvent).where(
                AuditEvent.entity_id == application.id, AuditEvent.action == "start"
            )
        ).one()
    assert started.actor == "lead@dev.gov.uk" and started.reason == f"adopting model {model_id}"


def test_council_not_eligible_for_the_round_is_refused(app: Any) -> None:
    model_id = to_publication(ELIGIBLE_ONLY)
    adur = applicant(app, "ADU")  # a district council: not eligible

    assert f'href="/models/{model_id}"' not in adur.get("/models").text
    page = adur.get(f"/models/{model_id}")
    assert "Your council cannot adopt this model" in page.text
    assert f'action="/models/{model_id}/adopt"' not in page.text
    token = csrf(page.text)
    refused = adur.post(
        f"/models/{model_id}/adopt", data={"csrf_token": token}, follow_redirects=False
    )

    assert refused.status_code == 403
    assert "Adur (non-metropolitan district) is not eligible to adopt models of" in refused.text
    assert applications_of("ADU") == []
    # an eligible council may, into a round open now
    second_wave()
    assert adopt(applicant(app, "DEV"), model_id).status_code == 303


def test_a_place_cannot_adopt_its_own_model(app: Any) -> None:
    model_id = to_publication()
    birmingham = applicant(app, "BIR")

    assert f'href="/models/{model_id}"' not in birmingham.get("/models").text
    token = csrf(birmingham.get(f"/models/{model_id}").text)
    refused = birmingham.post(
        f"/models/{model_id}/adopt", data={"csrf_token": token}, follow_redirects=False
    )

    assert refused.status_code == 403
    assert "a place cannot adopt its own model" in refused.text
    assert len(applications_of("BIR")) == 1


def test_only_the_documents_the_model_lists_are_served(app: Any) -> None:
    model_id = to_publication()
    devon = applicant(app, "DEV")
    with session_scope() as session:
        model = session.get(PublishedModel, model_id)
        assert model is not None
        listed = {d["path"] for d in model.bundle["documents"]}
        documents = list(session.exec(select(Document).order_by(col(Document.id))))
    place = [d for d in documents if d.application_id == model.application_id]
    # the model's own pack and the progress reports it lists: no more than the page shows
    ours = [d for d in place if d.kind == "replication_pack" and d.key.endswith("/v2")]
    ours += [d for d in place if d.path in listed and d.kind == "progress_report"]
    # the place's receipts hold every answer of its expression of interest and bid, and its
    # letters are addressed to it: not for other councils (they were served)
    private = [d for d in place if d not in ours]
    assert {"eoi_receipt", "bid_receipt"} <= {d.kind for d in private}
    others = [d for d in documents if d.application_id not in (None, model.application_id)]
    round_wide = [d for d in documents if d.application_id is None]
    assert ours and others and round_wide

    page = devon.get(f"/models/{model_id}").text
    for document in ours:
        assert f'href="/models/{model_id}/documents/{document.id}"' in page
        answer = devon.get(f"/models/{model_id}/documents/{document.id}")
        assert answer.status_code == 200, document.key
    for document in private + others + round_wide:
        assert f'/documents/{document.id}"' not in page
        answer = devon.get(f"/models/{model_id}/documents/{document.id}")
        assert answer.status_code == 404, document.key
    assert devon.get(f"/models/{model_id}/documents/999999").status_code == 404
    assert devon.get("/models/999999").status_code == 404


def test_models_are_for_council_applicants_only(app: Any) -> None:
    model_id = to_publication()
    assessor = TestClient(app)
    sign_in_as_existing(assessor, email_of("Ann Archer"))

    assert assessor.get("/models").status_code == 403
    assert assessor.get(f"/models/{model_id}").status_code == 403
    anonymous = TestClient(app).get("/models", follow_redirects=False)
    assert anonymous.status_code == 303 and anonymous.headers["location"] == "/sign-in"


def test_a_council_adopts_a_model_into_a_later_wave_of_the_programme(app: Any) -> None:
    model_id = to_publication()
    stages.launch(SECOND_WAVE, "second-wave.yaml", now=PUBLISH_DAY - timedelta(days=20))
    devon = applicant(app, "DEV")
    page = devon.get(f"/models/{model_id}").text
    # the model's own round closed long ago: only the second wave is offered
    assert 'value="whole-place-2011"' not in page
    assert 'name="into" value="whole-place-2013"' in page
    forged = devon.post(
        f"/models/{model_id}/adopt",
        data={"csrf_token": csrf(page), "into": "whole-place-2011"},
        follow_redirects=False,
    )
    assert forged.status_code == 400 and "That round is not open to you" in forged.text
    not_offered = devon.post(
        f"/models/{model_id}/adopt",
        data={"csrf_token": csrf(page), "into": "neighbourhood-2011"},
        follow_redirects=False,
    )
    assert not_offered.status_code == 400 and "That round is not open to you" in not_offered.text
    assert applications_of("DEV") == []

    adopted = devon.post(
        f"/models/{model_id}/adopt",
        data={"csrf_token": csrf(page), "into": "whole-place-2013"},
        follow_redirects=False,
    )

    assert adopted.status_code == 303
    [application] = applications_of("DEV")
    assert adopted.headers["location"] == f"/applications/{application.id}"
    assert application.reference == f"whole-place-2013/DEV/adopts-{model_id}"
    assert application.adopted_from_model_id == model_id
    assert set(application.eoi_answers) == {"partners"}
    assert set(application.bid_answers) == {"pooled_budget"}
    check = devon.get(f"/applications/{application.id}/eoi/check").text
    assert "Whole-place community budgets, second wave" in check
    assert "Primary care trust, Health" in check


def test_a_later_wave_is_offered_only_to_councils_it_takes(app: Any) -> None:
    model_id = to_publication()
    counties_only = edit(
        SECOND_WAVE, ("council_types: [CTY, UA, MD, LBO, CC, NMD]", "council_types: [CTY]")
    )
    stages.launch(counties_only, "second-wave.yaml", now=PUBLISH_DAY - timedelta(days=20))
    leeds = applicant(app, "LDS")  # a metropolitan district

    page = leeds.get(f"/models/{model_id}").text
    assert "Which round do you want to apply to?" not in page
    assert f'action="/models/{model_id}/adopt"' not in page
    assert "No round that takes Leeds is open for expressions of interest now" in page
    refused = leeds.post(
        f"/models/{model_id}/adopt",
        data={"csrf_token": csrf(page), "into": "whole-place-2013"},
        follow_redirects=False,
    )
    assert refused.status_code == 409
    assert "could not be submitted" in refused.text
    assert applications_of("LDS") == []
