"""The letters of a walked round, read back from their PDFs as a council's chief executive reads
them: to whom, from whom, when, about what, and why, in sentences."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from datetime import UTC, date
from pathlib import Path

import pytest
from conftest import edit, london
from round_walk import (
    ASSESS_DAY,
    DECIDE_DAY,
    EOI_CLOSE,
    EOI_DAY,
    FINAL_DAY,
    INVITE_DAY,
    LAUNCH_AT,
    SLUG,
    SOURCE,
    START_DAY,
    eoi_answers,
    score_everything,
    submit_eoi,
    to_assessment,
)
from sqlmodel import col, select

from cbflow import stages
from cbflow.db import session_scope
from cbflow.formatting import long_date, long_deadline, long_moment
from cbflow.models import Document
from cbflow.services import applications, assessment, rounds
from cbflow.settings import Settings, get_settings
from cbflow.wording import body_in_prose, council_in_prose

ISSUER = "Department for Communities and Local Government"
CHASE_DAY = london(2012, 7, 20, 9, 0)  # the first quarter's returns were due by 14 July
CONTACT = (
    "issued_by: Department for Communities and Local Government\n",
    "issued_by: Department for Communities and Local Government\n"
    "contact:\n  name: Alex Morgan\n  role: Head of Community Budgets\n"
    "  email: community.budgets@communities.example.gov.uk\n  phone: 020 7946 0000\n",
)
LETTERS = (
    "eoi_receipt",
    "invitation",
    "regret",
    "bid_receipt",
    "decision",
    "grant_offer",
    "chaser",
)
ISO_DATE = re.compile(r"\b\d{4}-\d{2}-\d{2}\b")


def walk(source: str) -> None:
    """Five EOIs, four invited (one regret), three bids, two places (a reserve), implementation
    started and the first quarter's returns chased."""
    to_assessment(source, assessors=3)
    score_everything()
    stages.open_moderation(SLUG, now=ASSESS_DAY)
    with session_scope() as session:
        for task in assessment.moderation_tasks(session, rounds.get_round(session, SLUG)):
            assessment.moderate(
                session, task=task, score=3, reason="panel agreed", actor="staff", now=FINAL_DAY
            )
    stages.finalise_assessment(SLUG, now=FINAL_DAY)
    stages.decide(SLUG, now=DECIDE_DAY)
    stages.start_implementation(SLUG, now=START_DAY)
    stages.returns_cycle(SLUG, now=CHASE_DAY)


def pdftotext(path: Path) -> str:
    done = subprocess.run(
        ["pdftotext", "-layout", str(path), "-"], capture_output=True, text=True, check=True
    )
    return done.stdout


def one_line(text: str) -> str:
    return " ".join(text.split())


def letters(settings: Settings) -> dict[str, dict[str, str]]:
    """kind -> council code -> the letter's text (one line)."""
    out: dict[str, dict[str, str]] = {}
    with session_scope() as session:
        for document in session.exec(select(Document).order_by(col(Document.id))):
            if document.kind not in LETTERS:
                continue
            council = document.key.split("/")[1]
            path = settings.documents_dir / document.path
            out.setdefault(document.kind, {})[council] = one_line(pdftotext(path))
    return out


@pytest.fixture
def walked(cbflow_env: Settings) -> Iterator[dict[str, dict[str, str]]]:
    walk(SOURCE)
    yield letters(cbflow_env)


def test_every_letter_is_addressed_dated_referenced_and_signed(
    walked: dict[str, dict[str, str]],
) -> None:
    assert set(walked) == set(LETTERS)
    for kind, by_council in walked.items():
        for council, text in by_council.items():
            where = f"{kind} to {council}"
            official = {
                "BIR": "Birmingham City Council",
                "BOL": "Bolton Metropolitan Borough Council",
                "BRD": "City of Bradford Metropolitan District Council",
                "CAM": "Cambridgeshire County Council",
                "WSM": "City of Westminster",
            }[council]
            assert f"The Chief Executive {official} Dear Chief Executive," in text, where
            assert f"Reference {SLUG}/{council}" in text, where
            assert re.search(r"Date \d{1,2} [A-Z][a-z]+ 20\d\d", text), where
            # without a contact in the prospectus: signed in the body's name, no person named
            assert f"Yours sincerely, {ISSUER}" in text, where
            assert (
                f"contact the Department for Communities and Local Government, quoting "
                f"reference {SLUG}/{council}." in text
            ), where
            assert not ISO_DATE.search(text), (where, ISO_DATE.findall(text))
            assert "00:00" not in text, where
            assert "(GMT)" not in text and "(BST)" not in text, where
            assert "contact Department" not in text and "on the end of" not in text, where


def test_letters_give_dates_in_long_form_and_reasons_as_sentences(
    walked: dict[str, dict[str, str]],
) -> None:
    assert "Received at 09:00 on 20 October 2011" in walked["eoi_receipt"]["BIR"]
    assert "Date 10 November 2011" in walked["eoi_receipt"]["BIR"]  # issued at the EOI's close
    # the bids close at midnight: the end of the day before, never "00:00 on 10 December"
    assert "Bids are due by the end of 9 December 2011." in walked["invitation"]["BIR"]

    regret = walked["regret"]["WSM"]
    assert (
        "Reason Your expression of interest passed the sift but was not among the four places "
        "shortlisted." in regret
    )

    selected = walked["decision"]["BIR"]
    assert "Rank 1st of 3" in selected
    assert (
        "Reason Your bid ranked 1st of 3 with a score of 100.00%. It has been selected." in selected
    )
    reserve = walked["decision"]["BRD"]
    assert re.search(
        r"Reason Your bid ranked 3rd of 3 with a score of [\d.]+%\. It was not selected\. "
        r"Both places went to the combination of bids with the highest total score\. "
        r"It is first on the reserve list: if a selected place withdraws, it will be offered "
        r"the place\.",
        reserve,
    ), reserve

    chaser = walked["chaser"]["BOL"]
    assert "Period: 1 April 2012 to 30 June 2012" in chaser
    assert "which was due by the end of 14 July 2012." in chaser


def test_grant_offer_states_amount_period_conditions_and_how_to_accept(
    walked: dict[str, dict[str, str]],
) -> None:
    offer = walked["grant_offer"]["BIR"]
    assert "offers Birmingham City Council a grant of up to £1,500,000.00" in offer
    assert "the Department for Communities and Local Government offers" in offer
    assert "Period 1 April 2012 to 31 March 2013" in offer
    # conditions drawn from the implementation stage, the prospectus having none of its own
    assert "You make a monitoring return through the portal for every quarter" in offer
    assert "Operational plan agreed 31 October 2012" in offer
    assert "Payments are made by results" in offer
    assert "Attachment fee for each family worked with £3,200.00" in offer
    # 28 days after the offer of 20 December 2011
    assert "Accept by the end of 17 January 2012" in offer
    assert re.search(r"at http://\S+/applications/\d+/offer, by the end of 17 January 2012", offer)
    assert set(walked["grant_offer"]) == {"BIR", "BOL"}  # the selected places only


def test_a_contact_signs_the_letters_and_is_named_as_who_to_ask(cbflow_env: Settings) -> None:
    source = edit(SOURCE, CONTACT)
    source += (
        "grant_offer:\n  accept_within_days: 14\n  conditions:\n"
        "    - Publish what you learn, so that other places can follow.\n"
    )
    walk(source)
    walked = letters(cbflow_env)

    for kind, by_council in walked.items():
        for council, text in by_council.items():
            assert f"Yours sincerely, Alex Morgan Head of Community Budgets {ISSUER}" in text, kind
            assert (
                "contact Alex Morgan, Head of Community Budgets, at "
                "community.budgets@communities.example.gov.uk or on 020 7946 0000, quoting "
                f"reference {SLUG}/{council}." in text
            ), kind
    offer = walked["grant_offer"]["BIR"]
    assert "1. Publish what you learn, so that other places can follow." in offer
    assert "monitoring return through the portal for every quarter" not in offer
    assert "Accept by the end of 3 January 2012" in offer


def test_letters_render_to_pages_a_reader_can_look_at(
    walked: dict[str, dict[str, str]], tmp_path: Path
) -> None:
    """The first of each kind of letter as page images (kept in the test's folder, to look at),
    and its pages: none left holding a lone line."""
    with session_scope() as session:
        documents = list(session.exec(select(Document).order_by(col(Document.id))))
    for kind in ("decision", "grant_offer", "regret", "eoi_receipt", "chaser"):
        document = next(d for d in documents if d.kind == kind)
        path = get_settings().documents_dir / document.path
        subprocess.run(
            ["pdftoppm", "-png", "-r", "60", str(path), str(tmp_path / kind)], check=True
        )
        assert list(tmp_path.glob(f"{kind}*.png"))
        for number, page in enumerate(p for p in pdftotext(path).split("\f") if p.strip()):
            lines = [line for line in page.splitlines() if line.strip()]
            # more than the running header, the footer and a line or two
            assert len(lines) > 5, (kind, number + 1, lines)


def test_a_council_that_did_not_pass_the_sift_is_told_which_check_it_missed(
    cbflow_env: Settings,
) -> None:
    source = edit(SOURCE, ("on_fail: refer ", "on_fail: fail "))
    stages.launch(source, f"{SLUG}.yaml", now=LAUNCH_AT)
    submit_eoi(SLUG, "BIR", EOI_DAY, "Pool budgets around families.")
    with session_scope() as session:
        lone, _ = applications.start_application(
            session,
            round_=rounds.get_round(session, SLUG),
            council_code="BOL",
            actor="x",
            now=EOI_DAY,
        )
        answers = eoi_answers("BOL", "Pool budgets around families.")
        answers["partners"] = answers["partners"][:1]
        applications.submit(
            session,
            application=lone,
            stage="eoi",
            answers=answers,
            actor="council:BOL",
            now=EOI_DAY,
        )
    stages.close_eoi(SLUG, now=EOI_CLOSE)
    stages.invite_to_bid(SLUG, now=INVITE_DAY)

    regret = letters(cbflow_env)["regret"]["BOL"]
    assert "We are sorry to tell you that Bolton has not been invited to submit a full bid." in (
        regret
    )
    assert (
        "Reason Your expression of interest did not pass the sift: it did not meet the check "
        "“At least two partner organisations”." in regret
    )
    assert set(letters(cbflow_env)["invitation"]) == {"BIR"}


@pytest.mark.parametrize(
    ("name", "in_prose"),
    [
        ("Department for Communities and Local Government", "the Department for Communities"),
        ("Ministry of Housing, Communities and Local Government", "the Ministry of Housing"),
        ("Cabinet Office", "the Cabinet Office"),
        ("Greater London Authority", "the Greater London Authority"),
        ("Big Lottery Fund", "the Big Lottery Fund"),
        ("HM Treasury", "HM Treasury"),
        ("Homes England", "Homes England"),
        ("Arts Council England", "Arts Council England"),
        ("Innovate UK", "Innovate UK"),
        ("DCLG", "DCLG"),
        ("Nesta", "Nesta"),
        ("The National Lottery Community Fund", "The National Lottery Community Fund"),
    ],
)
def test_a_body_is_named_in_prose_with_the_article_it_takes(name: str, in_prose: str) -> None:
    assert body_in_prose(name).startswith(in_prose)
    assert body_in_prose(name, start=True)[0].isupper()
    assert not body_in_prose(name).startswith("the the")


def test_moments_print_as_letters_say_them() -> None:
    assert long_moment(london(2011, 11, 10, 12, 0)) == "12:00 on 10 November 2011"
    assert long_moment(london(2011, 10, 17, 0, 0)) == "17 October 2011"  # never "00:00 on"
    assert long_deadline(london(2011, 12, 10, 0, 0)) == "the end of 9 December 2011"
    assert long_deadline(london(2011, 11, 10, 12, 0)) == "12:00 on 10 November 2011"
    # in summer time too: midnight local time is 23:00 the day before in UTC
    assert long_deadline(london(2013, 7, 17, 0, 0).astimezone(UTC)) == "the end of 16 July 2013"
    assert long_date(date(2012, 1, 3)) == "3 January 2012"
    assert council_in_prose("City of Westminster") == "the City of Westminster"
    assert council_in_prose("Devon County Council") == "Devon County Council"
