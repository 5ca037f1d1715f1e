"""The simulated councils' answers read as a council officer's, for any prospectus: valid,
within the limits, never the question said back, partners in their own sectors; and the demo's
shortlist follows the sift and the rules, not the order of the council codes."""

from __future__ import annotations

import asyncio
import re
import subprocess
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from conftest import EXAMPLE, ROOT
from sqlmodel import select

from cbflow import demo, simulate, stages
from cbflow import simulated_writing as writing
from cbflow.db import session_scope
from cbflow.forms import validate_answers
from cbflow.models import Application, AuditEvent, Council, Document
from cbflow.prospectus import (
    ChoiceQuestion,
    Form,
    Prospectus,
    Question,
    TableQuestion,
    TextareaQuestion,
    TextQuestion,
    load,
)
from cbflow.settings import Settings

SEED = 2011

UNSEEN = """\
format: 1
id: rural-access-2013
title: Rural access fund
issued_by: Department for Transport
summary: Councils are invited to propose transport for villages without a bus.
timezone: Europe/London
eligibility: {council_types: [CTY, UA, NMD]}
capacity: {places: 3, budget_gbp: 900000, requested_by: request}
timetable:
  eoi: {opens: 2013-05-01, closes: "2013-05-31T12:00"}
  bid: {opens: 2013-06-10, closes: 2013-07-05}
  assessment: {opens: 2013-07-08, closes: 2013-07-19}
  decision: {by: 2013-07-31}
stages:
  eoi:
    form:
      sections:
        - id: proposal
          title: The proposal
          questions:
            - {id: lead, label: Lead authority, type: council, required: true}
            - id: approach
              label: Describe your approach to rural transport
              hint: Who travels, where, and what stops them.
              type: textarea
              max_words: 120
              required: true
            - {id: officer_title, label: Lead officer's job title, type: text, max_chars: 80,
               required: true}
            - {id: officer_name, label: Lead officer's name, type: text, required: true}
            - {id: champion, label: Name of your digital champion, type: text, required: true}
            - {id: phone, label: Telephone, type: text, max_chars: 20}
            - id: delivery_partners
              label: Delivery partners
              type: table
              min_rows: 2
              max_rows: 8
              required: true
              columns:
                - {id: partner, label: Partner, type: text, max_chars: 80, required: true}
                - id: kind
                  label: Type of organisation
                  type: choice
                  options: [Local authority, NHS body, Police force,
                            Voluntary or community group, Private business, Other]
                  required: true
                - {id: contribution, label: Contribution, type: money, min: 0, max: 250000}
                - {id: joins, label: Joins from, type: date, min: 2013-09-01, max: 2014-03-31}
            - {id: match_funding, label: Match funding offered, type: money, min: 5000,
               max: 150000, required: true}
            - {id: start, label: First services run from, type: date, min: 2013-09-01,
               max: 2014-03-31, required: true}
            - {id: villages, label: Villages served, type: number, min: 1, max: 60, step: 1,
               required: true}
            - {id: hours, label: Hours of demand-responsive service each week, type: number,
               min: 0, max: 200, step: 2.5}
            - {id: one_line, label: One line that sums up the scheme, type: text, max_chars: 60}
            - {id: risks, label: "What could stop this working, and what will you do about it?",
               type: textarea, max_chars: 500}
    sift:
      - {id: approach-words, description: The approach is described in at least 40 words,
         check: {question: approach, min_words: 40}, on_fail: refer}
      - {id: two-partners, description: At least two delivery partners,
         check: {question: delivery_partners, min_rows: 2}, on_fail: fail}
    shortlist: 5
  bid:
    form:
      sections:
        - id: plan
          title: Plan
          questions:
            - {id: request, label: Grant requested, type: money, min: 10000, max: 300000,
               required: true}
            - {id: milestones, label: Set out the timetable and milestones for the first year,
               type: textarea, max_words: 200, required: true}
  assessment:
    assessors_per_application: 2
    scale: {min: 1, max: 4, labels: {1: Weak, 2: Fair, 3: Good, 4: Excellent}}
    justification_required: true
    criteria:
      - {id: need, title: Rural need, weight: 50, evidence: [approach]}
      - {id: partners, title: Strength of the partnership, weight: 50,
         evidence: [delivery_partners]}
"""

SHIPPED = sorted((ROOT / "prospectus").glob("*.yaml"))
OTHERS = [
    EXAMPLE,
    ROOT / "tests" / "data" / "bid-without-assessment.yaml",
    ROOT / "tests" / "data" / "assessment-on-eoi.yaml",
]
# every sentence of a long answer is one a council writes: random words strung together
# (as the answers once were) match none of them
PATTERNS = [writing.sentence_pattern(t) for t in writing.all_templates()]


@pytest.fixture(scope="module")
def unseen_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("unseen") / "rural-access.yaml"
    path.write_text(UNSEEN, encoding="utf-8")
    return path


def forty_councils() -> list[Council]:
    """Forty councils of every type, spread over the register."""
    register = sorted(writing.register().values(), key=lambda c: c.code)
    picked = register[::9][:40]
    assert len({c.type for c in picked}) >= 4
    return [
        Council(
            code=c.code,
            name=c.name,
            official_name=c.official_name,
            type=c.type,
            type_name=c.type,
            region=c.region,
            gss_code="",
        )
        for c in picked
    ]


def every_form(prospectus: Prospectus) -> list[tuple[str, Form]]:
    return list(prospectus.forms().items())


def written(prospectus: Prospectus, council: Council, stage: str, form: Form) -> dict[str, Any]:
    by_type: dict[str, list[str]] = {}
    for c in writing.register().values():
        by_type.setdefault(c.type, []).append(c.code)
    return simulate.answers_for(
        form,
        council,
        prospectus,
        seed=SEED,
        councils_by_type=by_type,
        request=simulate.request_for(council, prospectus, SEED),
        period=1 if stage == "returns" else 0,
    )


def sentences(text: str) -> list[str]:
    return [s for s in re.split(r"(?<=\.)\s+", text.strip()) if s]


SECTOR_OF_NAME = [  # what an organisation's name says it is, most telling first
    (r"Police|Constabulary", "police"),
    (r"^NHS |Primary Care|Clinical Commissioning", "health"),
    (r"Jobcentre", "jobcentre"),
    (r"Probation", "probation"),
    (r"Fire|Brigade", "fire"),
    (r"Voluntary|Residents", "voluntary"),
    (r"Chamber of Commerce", "business"),
    (r"College|Schools", "education"),
    (r"Homes$", "housing"),
    (
        r"Council$|^Council of|^Borough|^London Borough of|^Royal Borough of|^City of|Corporation",
        "council",
    ),
]


def sector_named(name: str) -> str:
    return next(sector for pattern, sector in SECTOR_OF_NAME if re.search(pattern, name))


def check_text(question: Question, answer: str) -> None:
    label = question.label.strip(" ?.:").lower()
    said = answer.strip(" .").lower()
    assert said != label, f"{question.label!r} answered with its own label"
    if len(label.split()) > 3:
        assert label not in said, f"{question.label!r} repeated in its answer {answer!r}"
    if isinstance(question, TextareaQuestion):
        assert answer.endswith("."), answer
        for sentence in sentences(answer):
            assert sentence[0].isupper() and sentence.endswith("."), sentence
            assert 4 <= len(sentence.split()) <= 45, sentence
            assert any(p.match(sentence) for p in PATTERNS), f"not a sentence: {sentence!r}"
            tokens = sentence.lower().split()
            assert all(tokens[i] != tokens[i + 1] for i in range(len(tokens) - 1)), sentence
        assert len(sentences(answer)) == len(set(sentences(answer))), "a sentence twice"


def check_answers(form: Form, answers: dict[str, Any]) -> None:
    for question in form.questions():
        answer = answers.get(question.id)
        if isinstance(question, TextQuestion | TextareaQuestion) and isinstance(answer, str):
            check_text(question, answer)
        if isinstance(question, TableQuestion) and answer:
            names = [c for c in question.columns if isinstance(c, TextQuestion)]
            sectors = [
                c
                for c in question.columns
                if isinstance(c, ChoiceQuestion) and writing.is_sector_choice(c.options)
            ]
            for row in answer:
                for column in names:
                    if column.id in row:
                        check_text(column, row[column.id])
                if sectors and sectors[0].id in row:
                    organisation = row[names[0].id]
                    expected = writing.sector_option(sector_named(organisation), sectors[0].options)
                    chosen = row[sectors[0].id]
                    assert chosen == (expected or chosen) and (expected or chosen == "Other"), (
                        f"{organisation} given as {chosen}"
                    )


@pytest.mark.parametrize("path", [*SHIPPED, *OTHERS, None], ids=lambda p: p.stem if p else "unseen")
def test_simulated_answers_are_valid_and_read_as_a_council_officers(
    path: Path | None, unseen_path: Path
) -> None:
    prospectus = load(path or unseen_path)
    codes = set(writing.register())
    for council in forty_councils():
        for stage, form in every_form(prospectus):
            answers = written(prospectus, council, stage, form)
            # the form's own validation, as on submission
            validate_answers(form, answers, complete=True, councils=codes)
            check_answers(form, answers)


def test_unseen_questions_get_the_answers_they_ask_for(unseen_path: Path) -> None:
    prospectus = load(unseen_path)
    [devon] = [c for c in forty_councils() if c.code == "DEV"] or [
        Council(
            code="DEV",
            name="Devon",
            official_name="Devon County Council",
            type="CTY",
            type_name="County",
            region="South West",
            gss_code="",
        )
    ]
    answers = written(prospectus, devon, "eoi", prospectus.stages.eoi.form)

    assert "rural transport" in answers["approach"]
    assert len(answers["approach"].split()) <= 120
    assert answers["officer_title"] in simulate.JOB_TITLES
    assert re.fullmatch(r"[A-Z][a-z]+ [A-Z][a-z]+", answers["officer_name"])
    assert re.fullmatch(r"[A-Z][a-z]+ [A-Z][a-z'-]+", answers["champion"]), "a person's name"
    partners = {row["partner"]: row["kind"] for row in answers["delivery_partners"]}
    assert partners.get("Devon and Cornwall Police") == "Police force"
    assert partners.get("NHS Devon") == "NHS body"
    assert 5000 <= float(answers["match_funding"]) <= 150000
    assert float(answers.get("hours", 0)) % 2.5 == 0
    risks = answers.get("risks", "")  # optional: some councils leave it out
    assert len(risks) <= 500 and (not risks or risks.endswith("."))


def test_stronger_councils_write_fuller_and_more_specific_answers() -> None:
    prospectus = load(ROOT / "prospectus" / "whole-place-2011.yaml")
    councils = sorted(forty_councils(), key=lambda c: simulate.quality(c.code, SEED))
    vague = set(writing.VAGUE)

    def profile(group: list[Council]) -> tuple[int, int]:
        words = vague_count = 0
        for council in group:
            for stage in ("eoi", "bid"):
                form = prospectus.forms()[stage]
                answers = written(prospectus, council, stage, form)
                for question in form.questions():
                    if isinstance(question, TextareaQuestion) and question.id in answers:
                        words += len(answers[question.id].split())
                        vague_count += sum(s in vague for s in sentences(answers[question.id]))
        return words, vague_count

    weak_words, weak_vague = profile(councils[:8])
    strong_words, strong_vague = profile(councils[-8:])
    assert strong_words > 1.3 * weak_words
    assert weak_vague > strong_vague


def test_referral_and_scores_are_explained_in_sentences() -> None:
    prospectus = load(ROOT / "prospectus" / "whole-place-2011.yaml")
    reasons = {
        simulate.score_for(prospectus, code, "partnership", assessor, SEED)
        for code in ("DEV", "CAR", "WRL", "ADU", "HCK")
        for assessor in (1, 2, 3)
    }
    for _, text in reasons:
        assert text.endswith(".") and "partnership working" in text
        assert len(sentences(text)) >= 2
    assert len({text for _, text in reasons}) > 5
    assert len({score for score, _ in reasons}) >= 2
    reason = writing.referral_reason(["At least three partner organisations"], "Devon", passed=True)
    assert reason.endswith(".") and "\u201cAt least three partner organisations\u201d" in reason


def run_demo(path: Path, councils: int) -> demo.DemoSummary:
    return asyncio.run(demo.run(path, stages=stages, council_count=councils, log=lambda _: None))


def test_demo_shortlists_by_the_rules_not_the_codes_and_places_spread_over_regions(
    cbflow_env: Settings, unseen_path: Path
) -> None:
    summary = run_demo(unseen_path, councils=16)

    with session_scope() as session:
        applications = list(session.exec(select(Application)))
        submitted = sorted(a.council_code for a in applications if a.eoi_submitted_at)
        invited_ids = [
            e.entity_id
            for e in session.exec(select(AuditEvent).where(AuditEvent.entity == "application"))
            if e.to_state == "invited"
        ]
        regions = {c.code: c.region for c in session.exec(select(Council))}
    codes = {a.id: a.council_code for a in applications}
    invited_codes = sorted(codes[i] for i in invited_ids)
    assert len(invited_codes) == 5
    assert invited_codes != submitted[:5], "the shortlist is not the first codes"
    assert len({regions[c] for c in invited_codes}) >= 4, "a shortlist spread as a panel's"
    chosen = [p["council"] for p in summary.selected]
    assert chosen
    by_name = {c.name: c.region for c in writing.register().values()}
    assert len({by_name[name] for name in chosen} | {regions[c] for c in invited_codes}) >= 2


def test_demo_receipt_of_an_unseen_prospectus_shows_a_council_officers_answers(
    cbflow_env: Settings, unseen_path: Path
) -> None:
    run_demo(unseen_path, councils=4)

    with session_scope() as session:
        receipt = session.exec(select(Document).where(Document.kind == "eoi_receipt")).first()
    assert receipt is not None
    text = subprocess.run(
        ["pdftotext", "-layout", str(cbflow_env.documents_dir / receipt.path), "-"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "rural transport" in " ".join(text.split())
    assert "Police" in text or "Constabulary" in text
    words = Counter(text.split())
    assert words["Partner"] <= 3  # the column's heading, not the answers
