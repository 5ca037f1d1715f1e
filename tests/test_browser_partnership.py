"""A partnership's bid in a real browser, each person in their own: Westminster's officer leads
the West London Tri-borough, names it and adds Kensington and Chelsea and Hammersmith and
Fulham; each member's officer confirms and edits a section; the lead names three partners, who
answer through their single-use links (two confirm, the fire brigade declines with a reason and
is taken out, since the round wants every contribution confirmed); the lead sends it for
sign-off; the certifier returns it once, then approves it; staff, an assessor and the receipt
see the place with its councils. Every page is axe-checked (no serious or critical violation)
and photographed."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta

import pytest
import test_browser as harness
import test_browser_applicant as applicant_pages
from conftest import ROOT, edit, london
from playwright.sync_api import Browser, Page
from portal import add_user, serving
from pypdf import PdfReader
from sqlmodel import col, select

from cbflow import simulate, stages
from cbflow.clock import FixedClock
from cbflow.db import session_scope
from cbflow.lifecycle import AppState
from cbflow.models import Application, Council, Document, OutboxMessage, User
from cbflow.services import applications, assessment, rounds, sift, signoff
from cbflow.services.councils import all_councils
from cbflow.settings import Settings

pytestmark = pytest.mark.browser

browser = harness.browser
check_page = harness.check_page

SLUG = "whole-place-2011"
NOW = london(2011, 11, 1, 10, 0)
SIGN_OFF = ("capacity:\n", "sign_off: {role: Chief executive}\ncapacity:\n")
PARTNERS = (
    "capacity:\n",
    'partners: {stage: eoi, years: ["2012-13", "2013-14"], require_confirmed: true}\ncapacity:\n',
)
# the place's partners: organisation, type, contact, e-mail, and each year's contribution
THREE_PARTNERS = [
    ("Metropolitan Police", "Police", "Pat Police", "pat@met.police.example", "250000", "250000"),
    ("NHS North West London", "Health", "Hana Health", "hana@nhs.example", "1200000", "1300000"),
    ("London Fire Brigade", "Fire and rescue", "Fred Fire", "fred@lfb.example", "80000", "80000"),
]
LEAD = "lee@westminster.gov.uk"
KEC = "kim@rbkc.gov.uk"
HMF = "hal@lbhf.gov.uk"
CEO = "ceo@westminster.gov.uk"
STAFF = "lead@staff.example"
ASSESSOR = "ann@assessors.example"


@pytest.fixture
def portal(cbflow_env: Settings) -> Iterator[str]:
    with serving(cbflow_env, FixedClock(NOW)) as url:
        yield url


@contextmanager
def person(browser: Browser, portal: str, email: str) -> Iterator[Page]:
    """A browser of their own, signed in by the link mailed to them."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.add_init_script(path=str(harness.AXE))
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    try:
        applicant_pages.sign_in(page, portal, email)
        yield page
    finally:
        context.close()
    assert errors == []


@contextmanager
def anonymous(browser: Browser) -> Iterator[Page]:
    """A browser of someone with no account: a partner's contact."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.add_init_script(path=str(harness.AXE))
    page = context.new_page()
    try:
        yield page
    finally:
        context.close()


def click(page: Page, name: str, role: str = "button") -> None:
    page.get_by_role(role, name=name).first.click()  # type: ignore[arg-type]
    page.wait_for_load_state()


def prefill(application_id: int) -> None:
    """The answers the officers had written before today: complete, as simulated councils
    write them."""
    with session_scope() as session:
        application = session.get(Application, application_id)
        assert application is not None
        prospectus = rounds.prospectus_of(rounds.get_round(session, SLUG))
        council = application.council_code
        lead = session.get(Council, council)
        assert lead is not None
        answers = simulate.answers_for(
            prospectus.stages.eoi.form,
            lead,
            prospectus,
            seed=7,
            councils_by_type=simulate.councils_by_type(all_councils(session)),
        )
        answers |= {"lead_council": council, "chief_executive_signoff": True}
        applications.save_draft(
            session, application=application, stage="eoi", answers=answers, actor=LEAD, now=NOW
        )


def test_a_partnership_bid_from_start_to_the_assessor(
    browser: Browser, portal: str, cbflow_env: Settings
) -> None:
    source = (ROOT / "prospectus" / "whole-place-2011.yaml").read_text(encoding="utf-8")
    stages.launch(
        edit(source, SIGN_OFF, PARTNERS), "whole-place-2011.yaml", now=london(2011, 10, 17)
    )
    add_user(LEAD, "applicant", council="WSM", name="Lee Lead")
    add_user(KEC, "applicant", council="KEC", name="Kim Kensington")
    add_user(HMF, "applicant", council="HMF", name="Hal Hammersmith")
    add_user(CEO, "certifier", council="WSM", name="Chris Chief")
    add_user(STAFF, "staff", name="Sam Staff")

    # the lead starts the expression of interest and builds the partnership
    with person(browser, portal, LEAD) as lead:
        lead.goto(f"{portal}/applications")
        click(lead, "Start an expression of interest")
        check_page(lead, "partnership-task-list")
        click(lead, "Your partnership", role="link")
        check_page(lead, "partnership-start")
        lead.get_by_label("Name of the place").fill("West London Tri-borough")
        click(lead, "Save the name")
        for council in ("Kensington and Chelsea", "Hammersmith and Fulham"):
            lead.get_by_label("Council", exact=True).select_option(label=council)
            click(lead, "Add the council")
        assert "Waiting for Hammersmith and Fulham to confirm" in lead.content()
        check_page(lead, "partnership-members-added")
        application_id = int(lead.url.split("/")[-2])
    prefill(application_id)

    # each member's officer finds it, confirms, and edits a section
    for email, section, text in (
        (KEC, "Your ambition", "One public service for the three boroughs' families."),
        (HMF, "Drive and capacity", "A joint team of forty officers from the three boroughs."),
    ):
        with person(browser, portal, email) as member:
            member.goto(f"{portal}/applications")
            check_page(member, f"partnership-member-home-{email.split('@')[0]}")
            click(member, "Confirm your council’s membership", role="link")
            click(member, "Confirm that my council is a member")
            assert "You have confirmed that your council is part of" in member.content()
            member.goto(f"{portal}/applications/{application_id}/eoi")
            click(member, section, role="link")
            member.locator("textarea").first.fill(text)
            click(member, "Save and continue")
            check_page(member, f"partnership-member-edited-{email.split('@')[0]}")

    # the lead names the partners and asks each to confirm their contribution
    with person(browser, portal, LEAD) as lead:
        lead.goto(f"{portal}/applications/{application_id}/eoi")
        click(lead, "Partners and contributions", role="link")
        for organisation, kind, contact, email, first, second in THREE_PARTNERS:
            lead.get_by_label("Organisation").fill(organisation)
            lead.get_by_label("Type of partner").select_option(label=kind)
            lead.get_by_label("Contact’s name").fill(contact)
            lead.get_by_label("Contact’s email address").fill(email)
            lead.get_by_label("Contribution in 2012-13").fill(first)
            lead.get_by_label("Contribution in 2013-14").fill(second)
            click(lead, "Add the partner")
            click(lead, f"Send request to {organisation}")
        check_page(lead, "partners-asked")
    for organisation, _, contact, email, _, _ in THREE_PARTNERS:
        with anonymous(browser) as partner:
            with session_scope() as session:
                asked = session.exec(
                    select(OutboxMessage.body)
                    .where(OutboxMessage.to == email)
                    .order_by(col(OutboxMessage.id).desc())
                ).first()
            assert asked is not None
            link = re.search(r"http://\S+/partner/\S+", asked)
            assert link is not None
            partner.goto(link.group(0))
            assert "West London Tri-borough" in partner.content()
            check_page(partner, f"partner-{email.split('@')[0]}")
            if organisation == "London Fire Brigade":
                partner.get_by_label("Why are you declining?").fill(
                    "Our budget for 2013-14 is not yet agreed by the authority."
                )
                click(partner, "Decline")
            else:
                partner.get_by_label("Your name").fill(contact)
                click(partner, "Confirm")
            check_page(partner, f"partner-answered-{email.split('@')[0]}")
            partner.goto(link.group(0))  # the link works once
            assert "This link has been used or has expired" in partner.content()
    with person(browser, portal, LEAD) as lead:
        lead.goto(f"{portal}/applications/{application_id}/partners")
        content = lead.content()
        assert "Our budget for 2013-14 is not yet agreed by the authority." in content
        assert "£3,000,000.00" in content  # confirmed: the police's and the NHS's, both years
        check_page(lead, "partners-answered")
        # every contribution must be confirmed: the brigade, which declined, is taken out
        click(lead, "Remove London Fire Brigade")

    # the lead sends it for sign-off; the certifier returns it once, then approves it
    with person(browser, portal, LEAD) as lead:
        lead.goto(f"{portal}/applications/{application_id}/eoi/check")
        assert "One public service for the three boroughs' families." in lead.content()
        check_page(lead, "partnership-check")
        lead.get_by_label("Chris Chief").check()
        click(lead, "Send for sign-off")
        assert "Waiting for sign-off by Chris Chief" in lead.content()
    with person(browser, portal, CEO) as ceo:
        ceo.goto(f"{portal}/sign-off")
        check_page(ceo, "sign-off-list")
        click(ceo, "West London Tri-borough: expression of interest", role="link")
        assert "A partnership of Westminster, Kensington and Chelsea" in ceo.content()
        check_page(ceo, "sign-off-application")
        ceo.get_by_label("Why are you returning it?").fill("Give the date I agreed it.")
        click(ceo, "Return it")
    with session_scope() as session:
        told = session.exec(
            select(OutboxMessage).where(OutboxMessage.to == LEAD).order_by(col(OutboxMessage.id))
        ).all()[-1]
    assert "Give the date I agreed it." in told.body
    with person(browser, portal, LEAD) as lead:
        lead.goto(f"{portal}/applications/{application_id}/eoi/check")
        lead.get_by_label("Chris Chief").check()
        click(lead, "Send for sign-off")
    with person(browser, portal, CEO) as ceo:
        ceo.goto(f"{portal}/sign-off/{application_id}/eoi")
        ceo.get_by_label(re.compile("I approve this expression of interest")).check()
        click(ceo, "Approve and submit")
        assert "it is submitted" in ceo.content()
        check_page(ceo, "sign-off-approved")

    # the receipt names the place and its councils
    stages.issue_receipts(SLUG, now=NOW + timedelta(minutes=1))
    with session_scope() as session:
        receipt = session.exec(
            select(Document).where(
                Document.application_id == application_id, Document.kind == "eoi_receipt"
            )
        ).one()
    path = cbflow_env.documents_dir / receipt.path
    text = " ".join(page.extract_text() for page in PdfReader(path).pages)
    text = " ".join(text.split())
    assert "West London Tri-borough" in text
    assert "Kensington and Chelsea" in text and "Hammersmith and Fulham" in text

    # on to assessment, as the round's stages take it, for the assessor to see the place
    drive_to_assessment(application_id)
    with person(browser, portal, STAFF) as staff:
        staff.goto(f"{portal}/staff/rounds/{SLUG}/applications")
        assert "West London Tri-borough" in staff.content()
        check_page(staff, "partnership-staff-list")
        click(staff, "West London Tri-borough", role="link")
        assert "Confirmed on 1 November 2011" in staff.content()
        assert "£3,000,000.00" in staff.content()  # the pooled budget its partners confirmed
        check_page(staff, "partnership-staff-application")
    with person(browser, portal, ASSESSOR) as assessor:
        assessor.goto(f"{portal}/assess")
        assert "West London Tri-borough" in assessor.content()
        check_page(assessor, "partnership-assessor-list")
        assessor.goto(f"{portal}/assess/{application_id}")
        scoring = assessor.content()
        assert "Metropolitan Police" in scoring and "NHS North West London" in scoring
        assert "£3,000,000.00" in scoring
        check_page(assessor, "partnership-assessor-scoring")


def drive_to_assessment(application_id: int) -> None:
    """Shortlisted, its bid signed off and submitted, bids closed, three assessors assigned."""
    with session_scope() as session:
        round_ = rounds.get_round(session, SLUG)
        sift.close_eoi(session, round_=round_, actor=STAFF, now=london(2011, 11, 10, 12, 0))
        for application in rounds.applications_of(session, round_, AppState.SIFT_REFER):
            sift.review_referral(
                session,
                application=application,
                passed=True,
                actor=STAFF,
                now=london(2011, 11, 11),
                reason="satisfied",
            )
    with session_scope() as session:
        round_ = rounds.get_round(session, SLUG)
        sift.confirm_shortlist(
            session,
            round_=round_,
            chosen=sift.propose_shortlist(session, round_=round_),
            actor=STAFF,
            now=london(2011, 12, 1),
        )
    with session_scope() as session:
        application = session.get(Application, application_id)
        ceo = session.exec(select(User).where(User.email == CEO)).one()
        assert application is not None
        prospectus = rounds.prospectus_of(rounds.get_round(session, SLUG))
        assert prospectus.stages.bid is not None
        lead = session.get(Council, "WSM")
        assert lead is not None
        answers = simulate.answers_for(
            prospectus.stages.bid.form,
            lead,
            prospectus,
            seed=7,
            councils_by_type=simulate.councils_by_type(all_councils(session)),
        )
        bid_day = london(2011, 12, 12, 10, 0)
        applications.save_draft(
            session, application=application, stage="bid", answers=answers, actor=LEAD, now=bid_day
        )
        signoff.send(
            session,
            application=application,
            stage="bid",
            certifier_id=ceo.id,
            actor=LEAD,
            now=bid_day,
        )
        signoff.approve(session, application=application, stage="bid", certifier=ceo, now=bid_day)
    with session_scope() as session:
        round_ = rounds.get_round(session, SLUG)
        sift.close_bids(session, round_=round_, actor=STAFF, now=london(2011, 12, 14, 12, 0))
        panel = [
            User(email=ASSESSOR, name="Ann Assessor", role="assessor"),
            User(email="ben@assessors.example", name="Ben Assessor", role="assessor"),
            User(email="cat@assessors.example", name="Cat Assessor", role="assessor"),
        ]
        session.add_all(panel)
        session.flush()
        assessment.assign_assessors(
            session, round_=round_, assessors=panel, actor=STAFF, now=london(2011, 12, 15)
        )
