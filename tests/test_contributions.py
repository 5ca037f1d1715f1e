"""Partners' contributions to a place's pooled budget: each confirmed or declined (with its
reason) through a single-use link, a change sending it back to awaiting with the old link dead,
a stale change refused naming who changed it, `require_confirmed` and `min_partners` stopping a
submission and saying why, the sift's `confirmed_pooled_min` at its boundary, and the
prospectus's `partners:` key checked with located errors. Real SQLite (and PostgreSQL through
`any_db_env`)."""

from __future__ import annotations

import re
from datetime import timedelta
from decimal import Decimal

import pytest
from conftest import edit, example_text
from sqlmodel import col, select
from test_sift_and_selection import EOI_CLOSE, EOI_DAY, STAFF, eoi_answers, launch

from cbflow.db import session_scope
from cbflow.errors import CbflowError, ProspectusError, ValidationFailed
from cbflow.formatting import pence_to_money
from cbflow.models import Application, AuditEvent, OutboxMessage, PartnerContribution
from cbflow.prospectus import parse
from cbflow.services import applications, contributions, rounds, sift
from cbflow.services.applications import NotReadyToSubmit
from cbflow.services.contributions import ContributionChanged, LinkUnusable
from cbflow.settings import Settings

YEARS = "[2012-13, 2013-14]"


def partners_key(stage: str = "eoi", **extra: object) -> tuple[str, str]:
    more = "".join(
        f", {k}: {str(v).lower() if isinstance(v, bool) else v}" for k, v in extra.items()
    )
    return ("capacity:\n", f"partners: {{stage: {stage}, years: {YEARS}{more}}}\ncapacity:\n")


def round_with(*edits: tuple[str, str]) -> str:
    return launch(edit(example_text(), *edits))


def start(slug: str, council: str = "WSM") -> int:
    with session_scope() as session:
        application, _ = applications.start_application(
            session,
            round_=rounds.get_round(session, slug),
            council_code=council,
            actor=f"council:{council}",
            now=EOI_DAY,
        )
        assert application.id is not None
        return application.id


def entry(
    slug: str, first: str = "1000000", second: str = "250000.50", **typed: str
) -> contributions.Entry:
    with session_scope() as session:
        partners = rounds.prospectus_of(rounds.get_round(session, slug)).partners
    assert partners is not None
    fields = {
        "organisation": "Metropolitan Police",
        "partner_type": "police",
        "contact_name": "Pat Jones",
        "contact_email": "pat.jones@met.example",
        "amount-2012-13": first,
        "amount-2013-14": second,
    } | typed
    return contributions.check_entry(partners, fields)


def add(application_id: int, slug: str, **typed: str) -> int:
    with session_scope() as session:
        application = session.get(Application, application_id)
        assert application is not None
        row = contributions.add(
            session,
            application=application,
            entry=entry(slug, **typed),
            actor="lee@wsm",
            now=EOI_DAY,
        )
        assert row.id is not None
        return row.id


def version_of(contribution_id: int) -> int:
    with session_scope() as session:
        row = session.get(PartnerContribution, contribution_id)
        assert row is not None
        return row.version


def send(application_id: int, contribution_id: int, settings: Settings, at: int = 1) -> str:
    """Send the request; returns the link's token, read from the mail in the outbox."""
    with session_scope() as session:
        application = session.get(Application, application_id)
        assert application is not None
        contributions.send_request(
            session,
            application=application,
            contribution_id=contribution_id,
            version=version_of(contribution_id),
            place="Westminster",
            actor="lee@wsm",
            now=EOI_DAY + timedelta(minutes=at),
            settings=settings,
            base_url="https://portal.example",
        )
    with session_scope() as session:
        body = session.exec(
            select(OutboxMessage.body).order_by(col(OutboxMessage.id).desc())
        ).first()
    assert body is not None
    found = re.search(r"https://portal\.example/partner/([\w-]+)", body)
    assert found is not None
    return found.group(1)


def respond(token: str, confirm: bool = True, name: str = "Pat Jones", reason: str = "") -> None:
    with session_scope() as session:
        contributions.respond(
            session,
            token=token,
            confirm=confirm,
            name=name,
            reason=reason,
            now=EOI_DAY + timedelta(hours=1),
        )


def row_of(contribution_id: int) -> PartnerContribution:
    with session_scope() as session:
        row = session.get(PartnerContribution, contribution_id)
        assert row is not None
        session.expunge(row)
        return row


def test_a_contribution_is_confirmed_once_and_counted_to_the_penny(any_db_env: Settings) -> None:
    slug = round_with(partners_key())
    application_id = start(slug)
    first = add(application_id, slug)
    second = add(application_id, slug, organisation="NHS North West London", partner_type="health")
    token = send(application_id, first, any_db_env)
    mail = row_of(first)
    assert mail.token_hash is not None and token not in mail.token_hash  # only its hash is kept

    respond(token)
    confirmed = row_of(first)
    assert confirmed.status == "confirmed" and confirmed.responded_by == "Pat Jones"
    assert confirmed.token_hash is None
    with pytest.raises(LinkUnusable):  # a link works once
        respond(token, confirm=False, reason="changed my mind")
    with session_scope() as session:
        application = session.get(Application, application_id)
        assert application is not None
        rows = contributions.contributions_of(session, application)
        totals = contributions.totals(rows, ["2012-13", "2013-14"])
        assert totals.per_year == {"2012-13": 100_000_000, "2013-14": 25_000_050}
        assert totals.overall == 125_000_050  # the awaiting one counts for nothing
        assert contributions.confirmed_total_pence(session, application) == 125_000_050
        actions = session.exec(
            select(AuditEvent.action).where(
                AuditEvent.entity == "partner-contribution", col(AuditEvent.entity_id) == first
            )
        ).all()
    assert list(actions) == ["add", "send-request", "confirm"]
    assert row_of(second).status == "awaiting"


def test_a_decline_keeps_its_reason_and_a_change_asks_again_with_a_new_link(
    any_db_env: Settings,
) -> None:
    slug = round_with(partners_key())
    application_id = start(slug)
    contribution_id = add(application_id, slug)
    token = send(application_id, contribution_id, any_db_env)
    with pytest.raises(ValidationFailed):  # a decline needs its reason
        respond(token, confirm=False, reason="  ")
    respond(token, confirm=False, reason="Our budget for 2013-14 is not agreed yet")
    declined = row_of(contribution_id)
    assert declined.status == "declined"
    assert (
        contributions.status_text(declined) == "Declined: Our budget for 2013-14 is not agreed yet"
    )

    # the council lowers the second year's amount and asks again: the answer is cleared
    with session_scope() as session:
        application = session.get(Application, application_id)
        assert application is not None
        contributions.change(
            session,
            application=application,
            contribution_id=contribution_id,
            version=declined.version,
            entry=entry(slug, second="100000"),
            actor="lee@wsm",
            now=EOI_DAY + timedelta(hours=2),
        )
    changed = row_of(contribution_id)
    assert changed.status == "awaiting" and changed.decline_reason is None
    assert changed.asked_at is None and changed.token_hash is None  # it needs a new request
    assert contributions.status_text(changed) == "Not yet sent to Pat Jones"
    new_token = send(application_id, contribution_id, any_db_env, at=200)
    with pytest.raises(LinkUnusable):
        respond(token)
    respond(new_token)
    assert row_of(contribution_id).status == "confirmed"

    # once confirmed, a change of contact asks again and kills the link in between
    third = send_after_change(application_id, contribution_id, slug, any_db_env)
    assert row_of(contribution_id).status == "awaiting"
    respond(third)
    assert row_of(contribution_id).responded_by == "Pat Jones"


def send_after_change(
    application_id: int, contribution_id: int, slug: str, settings: Settings
) -> str:
    with session_scope() as session:
        application = session.get(Application, application_id)
        assert application is not None
        contributions.change(
            session,
            application=application,
            contribution_id=contribution_id,
            version=version_of(contribution_id),
            entry=entry(slug, second="100000", contact_email="sam@met.example"),
            actor="kim@wsm",
            now=EOI_DAY + timedelta(hours=3),
        )
    return send(application_id, contribution_id, settings, at=300)


def test_a_stale_change_is_refused_naming_who_changed_it(cbflow_env: Settings) -> None:
    slug = round_with(partners_key())
    application_id = start(slug)
    contribution_id = add(application_id, slug)
    shown = version_of(contribution_id)
    with session_scope() as session:
        application = session.get(Application, application_id)
        assert application is not None
        contributions.change(
            session,
            application=application,
            contribution_id=contribution_id,
            version=shown,
            entry=entry(slug, first="2000000"),
            actor="kim@wsm",
            now=EOI_DAY,
        )
    with session_scope() as session, pytest.raises(ContributionChanged, match="kim@wsm changed"):
        application = session.get(Application, application_id)
        assert application is not None
        contributions.change(
            session,
            application=application,
            contribution_id=contribution_id,
            version=shown,
            entry=entry(slug, first="3000000"),
            actor="lee@wsm",
            now=EOI_DAY,
        )
    assert row_of(contribution_id).amounts["2012-13"] == 200_000_000


def test_an_expired_link_is_refused_and_changes_are_refused_after_the_deadline(
    cbflow_env: Settings,
) -> None:
    slug = round_with(partners_key())
    application_id = start(slug)
    contribution_id = add(application_id, slug)
    token = send(application_id, contribution_id, cbflow_env)
    assert row_of(contribution_id).token_expires_at == EOI_CLOSE
    with session_scope() as session:
        assert contributions.by_link(session, token, EOI_CLOSE - timedelta(seconds=1)) is not None
        assert contributions.by_link(session, token, EOI_CLOSE) is None
        assert contributions.by_link(session, "x" * 10_000, EOI_DAY) is None
        with pytest.raises(LinkUnusable):
            contributions.respond(
                session, token=token, confirm=True, name="Pat", reason="", now=EOI_CLOSE
            )
        application = session.get(Application, application_id)
        assert application is not None
        with pytest.raises(CbflowError, match="deadline passed"):
            contributions.add(
                session, application=application, entry=entry(slug), actor="lee", now=EOI_CLOSE
            )
    assert row_of(contribution_id).status == "awaiting"


def test_require_confirmed_and_min_partners_stop_the_submission_and_say_why(
    cbflow_env: Settings,
) -> None:
    slug = round_with(partners_key(require_confirmed=True, min_partners=2))
    application_id = start(slug)
    contribution_id = add(application_id, slug)

    def submit() -> None:
        with session_scope() as session:
            application = session.get(Application, application_id)
            assert application is not None
            applications.submit(
                session,
                application=application,
                stage="eoi",
                actor="lee@wsm",
                now=EOI_DAY + timedelta(hours=4),
                answers=eoi_answers("WSM"),
            )

    with pytest.raises(NotReadyToSubmit) as refused:
        submit()
    assert refused.value.problems == [
        "this round needs at least two partners contributing to the pooled budget; "
        "you have named 1",
        "Metropolitan Police has still to confirm their contribution to the pooled budget",
    ]
    second = add(
        application_id, slug, organisation="London Fire Brigade", partner_type="fire_and_rescue"
    )
    respond(send(application_id, contribution_id, cbflow_env))
    respond(send(application_id, second, cbflow_env, at=2), confirm=False, reason="No budget")
    with pytest.raises(NotReadyToSubmit) as refused:
        submit()
    assert refused.value.problems == [
        "London Fire Brigade declined their contribution: change it and ask again, or remove it"
    ]
    with session_scope() as session:
        application = session.get(Application, application_id)
        assert application is not None
        contributions.change(
            session,
            application=application,
            contribution_id=second,
            version=version_of(second),
            entry=entry(
                slug, organisation="London Fire Brigade", partner_type="fire_and_rescue", second="0"
            ),
            actor="lee@wsm",
            now=EOI_DAY + timedelta(hours=3),
        )
    respond(send(application_id, second, cbflow_env, at=3))
    submit()
    assert row_of(second).amounts == {"2012-13": 100_000_000, "2013-14": 0}


def test_the_sift_rule_passes_at_its_boundary_and_fails_a_penny_below(
    cbflow_env: Settings,
) -> None:
    rule = (
        "    sift:                            # automatic checks when the window closes: pass, "
        "fail or refer\n",
        "    sift:\n      - id: pooled\n"
        "        description: Partners confirm £1,250,000.50 in all\n"
        "        check: {confirmed_pooled_min: 1250000.50}\n",
    )
    slug = round_with(partners_key(), rule)
    at_boundary, below = start(slug, "WSM"), start(slug, "BIR")
    for application_id, second in ((at_boundary, "250000.50"), (below, "250000.49")):
        contribution_id = add(application_id, slug, second=second)
        respond(send(application_id, contribution_id, cbflow_env))
        with session_scope() as session:
            application = session.get(Application, application_id)
            assert application is not None
            applications.submit(
                session,
                application=application,
                stage="eoi",
                actor="lee",
                now=EOI_DAY + timedelta(hours=2),
                answers=eoi_answers(application.council_code),
            )
    with session_scope() as session:
        sift.close_eoi(session, round_=rounds.get_round(session, slug), actor=STAFF, now=EOI_CLOSE)
    with session_scope() as session:
        passed = session.get(Application, at_boundary)
        failed = session.get(Application, below)
        assert passed is not None and failed is not None
        assert passed.sift_results["pooled"]["passed"] is True
        assert failed.sift_results["pooled"]["passed"] is False
        assert failed.state == "sift_fail"


@pytest.mark.parametrize(
    ("change", "said"),
    [
        (partners_key(), None),
        (("capacity:\n", "partners: {years: []}\ncapacity:\n"), "partners.years"),
        (("capacity:\n", "partners: {stage: eoi}\ncapacity:\n"), "partners.years"),
        (("capacity:\n", "partners: {years: [2012-14]}\ncapacity:\n"), "not a financial year"),
        (
            ("capacity:\n", "partners: {years: [2012-13, 2014-15]}\ncapacity:\n"),
            "does not follow '2012-13'",
        ),
        (("capacity:\n", "partners: {years: [2012-13], stage: later}\ncapacity:\n"), "stage"),
        (
            ("capacity:\n", "partners: {years: [2012-13], min_partners: -1}\ncapacity:\n"),
            "min_partners",
        ),
        (
            ("capacity:\n", "partners: {years: [2012-13], types: [police, police]}\ncapacity:\n"),
            "each partner type may be listed once",
        ),
    ],
)
def test_the_partners_key_is_checked_with_located_errors(
    change: tuple[str, str], said: str | None
) -> None:
    source = edit(example_text(), change)
    if said is None:
        prospectus = parse(source)
        assert prospectus.partners is not None
        assert prospectus.partners.types[2] == "fire_and_rescue"
        assert not prospectus.partners.require_confirmed and prospectus.partners.min_partners == 0
        return
    with pytest.raises(ProspectusError) as error:
        parse(source)
    assert said in str(error.value)


def test_the_sift_rule_needs_partners_asked_at_the_eoi() -> None:
    rule = (
        "        check: {question: partners, min_rows: 2}\n",
        "        check: {confirmed_pooled_min: 1000}\n",
    )
    with pytest.raises(ProspectusError) as error:
        parse(edit(example_text(), rule, partners_key("bid")))
    assert "confirmed_pooled_min needs partners asked at the expression of interest" in str(
        error.value
    )
    with pytest.raises(ProspectusError, match="a check of its own"):
        parse(
            edit(
                example_text(),
                (
                    "check: {question: partners, min_rows: 2}",
                    "check: {question: partners, confirmed_pooled_min: 1}",
                ),
                partners_key(),
            )
        )
    assert (
        parse(edit(example_text(), rule, partners_key())).stages.eoi.sift[0].check.question is None
    )


def test_typed_contributions_are_bounded_and_each_field_is_named() -> None:
    prospectus = parse(edit(example_text(), partners_key()))
    assert prospectus.partners is not None
    with pytest.raises(ValidationFailed) as failed:
        contributions.check_entry(
            prospectus.partners,
            {
                "organisation": "x" * 100_000,
                "partner_type": "army",
                "contact_name": "",
                "contact_email": "a@" + "." * 40_000,
                "amount-2012-13": "10000000000.01",
                "amount-2013-14": "lots",
            },
        )
    assert set(failed.value.errors) == {
        "organisation",
        "partner_type",
        "contact_name",
        "contact_email",
        "amount-2012-13",
        "amount-2013-14",
    }
    assert "£10bn or less" in failed.value.errors["amount-2012-13"]
    ten_bn = contributions.check_entry(
        prospectus.partners,
        {
            "organisation": "A",
            "partner_type": "other",
            "contact_name": "B",
            "contact_email": "b@example.org",
            "amount-2012-13": "10,000,000,000",
        },
    )
    assert ten_bn.amounts == {"2012-13": 1_000_000_000_000, "2013-14": 0}
    assert pence_to_money(ten_bn.amounts["2012-13"]) == Decimal("10000000000.00")


def test_open_data_gives_each_grant_its_partners_confirmed_pooled_budget(
    cbflow_env: Settings,
) -> None:
    import round_walk
    from test_open_data import grants_validator, problems

    from cbflow import opendata, stages
    from cbflow.lifecycle import FUNDED
    from cbflow.services import assessment

    source = edit(round_walk.SOURCE, partners_key("bid"))
    round_walk.to_assessment(source, assessors=3)
    round_walk.score_everything()
    stages.open_moderation(round_walk.SLUG, now=round_walk.ASSESS_DAY)
    with session_scope() as session:
        round_ = rounds.get_round(session, round_walk.SLUG)
        for task in assessment.moderation_tasks(session, round_):
            assessment.moderate(
                session,
                task=task,
                score=3,
                reason="agreed",
                actor="staff",
                now=round_walk.FINAL_DAY,
            )
    stages.finalise_assessment(round_walk.SLUG, now=round_walk.FINAL_DAY)
    stages.decide(round_walk.SLUG, now=round_walk.DECIDE_DAY)
    with session_scope() as session:
        funded = [a for a in session.exec(select(Application)).all() if a.state in FUNDED]
        assert funded
        first = funded[0]
        assert first.id is not None
        for status, pence in (("confirmed", 123_456_789), ("declined", 5_00), ("awaiting", 7_00)):
            session.add(
                PartnerContribution(
                    application_id=first.id,
                    organisation=f"Partner {status}",
                    partner_type="health",
                    contact_name="Pat",
                    contact_email="pat@example.org",
                    amounts={"2012-13": pence},
                    status=status,
                    created_at=round_walk.BID_DAY,
                    created_by="lee",
                )
            )
        first_id = first.id
    with session_scope() as session:
        round_ = rounds.get_round(session, round_walk.SLUG)
        package = opendata.grants_package(
            session, round_, now=round_walk.START_DAY, url="https://example.org/grants.json"
        )
        ids = {a.id: a.council_code for a in session.exec(select(Application)).all()}
    assert problems(grants_validator(), package) == []
    said = "Partners' confirmed contributions to the pooled budget:"
    for grant in package["grants"]:
        assert said in grant["description"]
        if grant["id"].endswith(f"-{ids[first_id]}"):
            assert f"{said} £1,234,567.89." in grant["description"]
        else:
            assert f"{said} £0.00." in grant["description"]
