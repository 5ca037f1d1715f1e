"""Simulated councils and assessors for the demo and the benchmark.

Answers are written for any prospectus form (nothing here knows a question) from each question's
label, hint, type and limits and from the council itself, deterministically from a seed, so a
demo run can be repeated: see `cbflow.simulated_writing` for the sentences and the partners.
Councils differ in strength (`quality`): stronger ones write fuller, more specific answers, and
assessors score them higher. Most answers pass the round's sift rules; about one in ten misses
a check on purpose, so that every sift outcome shows up.
"""

from __future__ import annotations

import hashlib
import random
import re
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlmodel import Session, select

from cbflow import simulated_writing as writing
from cbflow.formatting import long_date
from cbflow.forms import char_limit, is_shown, row_limit
from cbflow.lifecycle import AppState
from cbflow.models import Application, Council, Round, User
from cbflow.prospectus import (
    ChoiceQuestion,
    CouncilQuestion,
    DateQuestion,
    EmailQuestion,
    FileQuestion,
    Form,
    MoneyQuestion,
    MultichoiceQuestion,
    NumberQuestion,
    Prospectus,
    Question,
    SiftCheck,
    TableQuestion,
    TextareaQuestion,
    TextQuestion,
    YesNoQuestion,
)
from cbflow.services import applications, assessment, implementation, rounds, sift
from cbflow.services.councils import all_councils
from cbflow.services.implementation import return_periods
from cbflow.services.rounds import prospectus_of


def seeded_random(*parts: object) -> random.Random:
    digest = hashlib.sha256("|".join(map(str, parts)).encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


def quality(council_code: str, seed: int) -> float:
    """A council's hidden strength (0..1): what simulated assessors perceive, with noise."""
    return seeded_random("quality", council_code, seed).betavariate(4.0, 2.0)


def _sift_targets(prospectus: Prospectus, question_id: str) -> list[SiftCheck]:
    return [r.check for r in prospectus.stages.eoi.sift if r.check.question == question_id]


PENNY = Decimal("0.01")
MONEY_CEILING = Decimal(10) ** 12  # no question's own maximum: no sum a council would ask for


def _json_number(value: Decimal) -> int | float:
    return int(value) if value == value.to_integral_value() else float(value)


def _bounds(
    low: Decimal | None,
    high: Decimal | None,
    checks: list[SiftCheck],
    comply: bool,
    default_high: Decimal | None,
) -> tuple[Decimal, Decimal]:
    """The range to draw a number from: the question's own, narrowed to what the sift asks."""
    low = low if low is not None else Decimal(0)
    for check in checks if comply else []:
        if check.min is not None:
            low = max(low, check.min)
        if check.max is not None:
            high = check.max if high is None else min(high, check.max)
    if high is None:
        high = default_high if default_high is not None else low + 200
    return low, max(low, high)


@dataclass
class _Writer:
    """One council filling in one form: who it is, how well it writes, what it knows."""

    council: Council
    place: writing.Place
    prospectus: Prospectus
    rng: random.Random
    strength: float  # 0..1: how full and specific its answers are
    councils_by_type: dict[str, list[str]]
    request: Decimal | None = None
    period: tuple[date, date] | None = None  # the period a return reports on
    values: dict[str, str] = field(default_factory=dict)
    used: set[str] = field(default_factory=set)  # sentences written for this form so far

    @property
    def scale(self) -> float:
        return writing.SCALE.get(self.council.type, 1.0)

    def in_thousands(self, low: float, high: float) -> Decimal:
        return Decimal(round(self.rng.uniform(low, high) * self.scale)) * 1000


def _writer(
    council: Council,
    prospectus: Prospectus,
    rng: random.Random,
    strength: float,
    councils_by_type: dict[str, list[str]],
    request: Decimal | None,
    period: tuple[date, date] | None,
) -> _Writer:
    place = writing.place_of(council.code, council.name, council.region, council.type)
    writer = _Writer(council, place, prospectus, rng, strength, councils_by_type, request, period)
    year = (
        prospectus.timetable.implementation.ends.year
        if prospectus.timetable.implementation
        else prospectus.timetable.eoi.opens_at(prospectus.zone).year + 2
    )
    pct = rng.randint(5, 12)
    writer.values = {
        "name": place.name,
        "official": place.official_name,
        "area": place.area,
        "region": place.region,
        "neighbour": place.neighbour(0),
        "neighbour2": place.neighbour(1),
        "police": place.police,
        "nhs": place.nhs,
        "probation": place.probation,
        "fire": place.fire,
        "university": writing.UNIVERSITY_CITY.get(place.region, place.area),
        "families": f"{int(rng.randint(300, 1500) * writer.scale) // 10 * 10:,}",
        "residents": f"{rng.randint(4, 40) * 50:,}",
        "pct": str(pct),
        "pct2": str(pct + rng.randint(3, 8)),
        "money": writing.money_words(writer.in_thousands(40_000, 400_000)),
        "subject_money": writing.money_words(writer.in_thousands(800, 9_000)),
        "team_money": writing.money_words(Decimal(rng.randint(15, 60) * 10_000)),
        "year": str(year),
        "baseline_year": str(prospectus.timetable.eoi.opens_at(prospectus.zone).year - 1),
        "period": _period_words(period),
        "scheme": "the community budget"
        if "community budget" in prospectus.title.lower()
        else "the scheme",
        "scheme_name": prospectus.title,
    }
    return writer


def _period_words(period: tuple[date, date] | None) -> str:
    if period is None:
        return "the year"
    first, last = period
    return f"the period from {long_date(first)} to {long_date(last)}"


def _repeats_label(answer: str, label: str) -> bool:
    """Whether an answer says its question back: the label itself, or a long label within it."""
    said, asked = answer.strip(" .").lower(), label.strip(" ?.:").lower()
    return said == asked or (len(asked.split()) > 3 and asked in said)


def _textarea(question: TextareaQuestion, writer: _Writer, checks: list[SiftCheck]) -> str:
    limit = question.max_words or 250
    floor = max((c.min_words or 0 for c in checks), default=0)
    # one answer in ten misses a sift check on purpose
    comply = writer.rng.random() < 0.9 or floor == 0
    if comply:
        # a strong council writes most of what it may, a weak one a third or less
        share = 0.2 + 0.6 * writer.strength * writer.rng.uniform(0.8, 1.1)
        target = max(floor + 10, int(min(limit, 450) * share), 15)
    else:
        target = max(floor // 3, 8)
    sentences = writing.sentences_for(
        question.label,
        question.hint,
        writer.place,
        writer.rng,
        strength=writer.strength,
        values=writer.values,
        used=writer.used,
    )
    if not comply:  # a short answer: its first sentences, below the sift's word count
        short: list[str] = []
        for sentence in sentences:
            if sum(writing.words(s) for s in short) + writing.words(sentence) >= max(floor, 2):
                break
            short.append(sentence)
        sentences = short or sentences
    text = writing.compose(
        sentences,
        target_words=min(target, limit),
        max_words=question.max_words,
        max_chars=char_limit(question),
    )
    writer.used.update(s for s in sentences if s in text)
    return text


NEIGHBOURHOOD_ROOTS = [
    "Ash",
    "Oak",
    "Brook",
    "Holm",
    "North",
    "Kings",
    "Marsh",
    "Stan",
    "Long",
    "Elm",
    "West",
    "Bridge",
]
NEIGHBOURHOOD_ENDS = ["field", "ley", "wood", "ton", "bury", "gate", "hill", "moor"]


def _neighbourhood(writer: _Writer) -> str:
    rng = seeded_random("neighbourhood", writer.council.code)
    return rng.choice(NEIGHBOURHOOD_ROOTS) + rng.choice(NEIGHBOURHOOD_ENDS)


JOB_TITLES = [
    "Director of Policy and Partnerships",
    "Head of Partnerships",
    "Assistant Chief Executive",
    "Community Budgets Programme Director",
]


def _short_text(
    question: TextQuestion, writer: _Writer, partner: writing.Partner | None = None
) -> str:
    """A one-line answer: what the label asks for, as the council would put it."""
    label = question.label.lower()
    place, rng = writer.place, writer.rng
    first, last = place.contact
    asks_person = bool(
        re.search(
            r"contact|officer|co-?ordinator|lead\b|person|signatory|manager|director|champion|"
            r"chair|councillor|sponsor|head of|owner",
            label,
        )
    )
    if re.search(r"phone|telephone|mobile", label):
        text = (
            f"020 7{rng.randint(100, 999)} {rng.randint(1000, 9999)}"
            if place.region == "London"
            else f"01{rng.randint(200, 999)} {rng.randint(100000, 999999)}"
        )
    elif "postcode" in label or "post code" in label:
        letters = re.sub(r"[^A-Z]", "", place.name.upper())[:2] or "AB"
        inward = "".join(rng.choice("ABDEFGHJLNPQRSTUWXY") for _ in range(2))
        text = f"{letters}{rng.randint(1, 20)} {rng.randint(1, 9)}{inward}"
    elif re.search(r"e-?mail", label):
        text = f"{first}.{last}@{place.domain}".lower()
    elif re.search(r"job title|position|post held", label) or (
        "role" in label and asks_person and partner is None
    ):
        text = "Chief Executive" if "chief executive" in label else rng.choice(JOB_TITLES)
    elif re.search(r"accountable|lead body|lead organisation|responsible body", label):
        text = place.official_name
    elif re.search(r"parish|town council", label):
        text = f"{_neighbourhood(writer)} Parish Council"
    elif re.search(r"web ?site|web address|url", label):
        text = f"www.{place.domain}"
    elif "address" in label:
        text = f"Civic Centre, {place.name}"
    elif partner is not None and re.search(r"role|contribution|will do|commitment|purpose", label):
        text = writing.ROLES[partner.sector]
    elif partner is not None and re.search(r"service|funding stream|budget line|activity", label):
        text = writing.SERVICES[partner.sector]
    elif partner is not None and re.search(r"organisation|partner|body|agency|name", label):
        text = partner.name
    elif "name" in label and "neighbourhood" in label:
        text = _neighbourhood(writer)
    elif "name" in label and re.search(r"place|area|partnership", label):
        text = (
            f"Greater {place.name}"
            if place.type in ("MD", "UA") and writer.strength > 0.7
            else place.name
        )
    elif "name" in label and "chief executive" in label:
        text = writing.person(seeded_random("chief executive", place.code))
    elif "name" in label and (asks_person or label.strip(" ?:") == "name"):
        text = f"{first} {last}" if asks_person else writing.person(rng)
    elif re.search(r"\btitle\b|name of (the|your) (project|programme|bid|proposal)", label):
        text = f"{writer.values['scheme_name']}: {place.name}"
    else:
        topics = writing.topics_of(question.label, question.hint)
        phrase = next((writing.PHRASES[t] for t in topics if t in writing.PHRASES), None)
        subject = writing.subject_of(question.label)
        text = phrase or (
            f"{subject[0].upper()}{subject[1:]} in {place.name}"
            if subject
            else f"{writer.values['scheme_name']} in {place.name}"
        )
    if _repeats_label(text, question.label):
        text = f"{writer.values['scheme_name']} in {place.name}"
    limit = char_limit(question)
    if len(text) > limit:
        text = text[:limit].rsplit(" ", 1)[0] if " " in text[:limit] else text[:limit]
    return text


def _thousands(amount: Decimal) -> Decimal:
    """A sum as a council would put it: to the nearest thousand pounds."""
    return (amount / 1000).quantize(Decimal(1)) * 1000


def _grant_per_place(prospectus: Prospectus) -> Decimal | None:
    """What one place may expect of the round's budget, if it has one."""
    budget, places = prospectus.capacity.budget_gbp, prospectus.capacity.places
    return None if budget is None else budget / (places or 1)


def _money(
    question: MoneyQuestion,
    writer: _Writer,
    checks: list[SiftCheck],
    partner: writing.Partner | None = None,
) -> str:
    comply = writer.rng.random() < 0.9
    low, high = _bounds(question.min, question.max, checks, comply, MONEY_CEILING)
    label = question.label.lower()
    if writer.request is not None and question.id == writer.prospectus.support_question():
        return str(min(max(writer.request, low), high).quantize(PENNY))
    share = Decimal(str(round(writer.rng.triangular(0.1, 1.0, 0.5), 2)))
    if partner is not None:
        amount = writer.in_thousands(*writing.CONTRIBUTION[partner.sector])
        if amount > high:  # more than the question allows: a share of what it does
            amount = _thousands(low + (high - low) * share)
    elif re.search(r"to date|so far|this (quarter|period|month|half|year)", label):
        grant = _grant_per_place(writer.prospectus)
        amount = (
            _thousands(grant * Decimal(str(round(writer.rng.uniform(0.1, 0.4), 2))))
            if grant is not None and re.search(r"support|grant", label)
            else writer.in_thousands(20, 600)
        )
    elif re.search(r"spend|budget|cost", label) and "saving" not in label:
        amount = writer.in_thousands(150_000, 900_000)
    elif "saving" in label:
        amount = writer.in_thousands(4_000, 40_000)
    elif high < MONEY_CEILING:
        # somewhere in the allowed range, a round sum: mostly in its middle
        amount = _thousands(low + (high - low) * share)
    else:
        amount = writer.in_thousands(20, 500)
    return str(min(max(amount, low), high).quantize(PENNY))


def _number(question: NumberQuestion, writer: _Writer, checks: list[SiftCheck]) -> int | float:
    comply = writer.rng.random() < 0.9
    low, high = _bounds(question.min, question.max, checks, comply, None)
    label = question.label.lower()
    step = question.step or Decimal(1)
    if re.search(r"population|people live|live in", label):
        wanted = Decimal(writer.rng.randint(2_000, 15_000))
    elif "famil" in label and not re.search(r"this (quarter|period|month|half)", label):
        wanted = Decimal(int(writer.rng.randint(300, 1500) * writer.scale))
    elif re.search(r"partner|organisation|service|project|team|staff|worker", label):
        wanted = low + step * writer.rng.randint(1, 12)
    elif question.max is None and re.search(r"household|people|residents|famil", label):
        wanted = low + Decimal(writer.rng.randint(20, 400))
    else:
        wanted = low + step * writer.rng.randint(0, int((min(high, low + 200) - low) / step))
    origin = question.min if question.min is not None else Decimal(0)
    wanted = min(max(wanted, low), high if question.max is not None or checks else wanted)
    snapped = origin + step * int((wanted - origin) / step)
    while snapped < low:
        snapped += step
    while question.max is not None and snapped > question.max:
        snapped -= step
    return _json_number(snapped)


def _date(question: DateQuestion, writer: _Writer) -> str:
    prospectus = writer.prospectus
    start = question.min or prospectus.timetable.eoi.opens_at(prospectus.zone).date()
    end = question.max or start + timedelta(days=365)
    label = question.label.lower()
    if writer.period is not None and re.search(r"last day|period end|end of|reported", label):
        return min(max(writer.period[1], start), end).isoformat()
    return (start + timedelta(days=writer.rng.randint(0, max((end - start).days, 0)))).isoformat()


def _value(
    question: Question,
    writer: _Writer,
    partner: writing.Partner | None = None,
) -> Any:
    rng, council, prospectus = writer.rng, writer.council, writer.prospectus
    checks = _sift_targets(prospectus, question.id)
    match question:
        case TextQuestion():
            return _short_text(question, writer, partner)
        case TextareaQuestion():
            return _textarea(question, writer, checks)
        case MoneyQuestion():
            return _money(question, writer, checks, partner)
        case NumberQuestion():
            return _number(question, writer, checks)
        case DateQuestion():
            return _date(question, writer)
        case YesNoQuestion():
            comply = rng.random() < 0.9
            wanted = next((c.equals for c in checks if "equals" in c.model_fields_set), None)
            if isinstance(wanted, bool):
                return wanted if comply else not wanted
            return rng.random() < 0.7
        case ChoiceQuestion():
            comply = rng.random() < 0.9
            wanted = next((c.equals for c in checks if "equals" in c.model_fields_set), None)
            if wanted in question.options and comply:
                return wanted
            if partner is not None and writing.is_sector_choice(question.options):
                return writing.sector_option(partner.sector, question.options) or (
                    "Other" if "Other" in question.options else question.options[-1]
                )
            return rng.choice(question.options)
        case MultichoiceQuestion():
            options = [o for o in question.options if o.lower() != "other"] or question.options
            fewest = question.min_selected or 1
            most = min(question.max_selected or len(options), len(options))
            # a stronger council takes on more
            wanted = round(fewest + (most - fewest) * writer.strength * rng.uniform(0.6, 1.0))
            chosen = rng.sample(options, min(max(wanted, fewest), most))
            return [o for o in question.options if o in chosen]
        case EmailQuestion():
            first, last = writer.place.contact
            return f"{first}.{last}@{writer.place.domain}".lower()
        case CouncilQuestion():
            types = question.council_types
            if types is None or council.type in types:
                return council.code
            pool = [code for t in types for code in writer.councils_by_type.get(t, [])]
            return rng.choice(pool) if pool else council.code
        case FileQuestion():
            accept = question.accept or ["pdf"]
            stem = re.sub(r"[^a-z0-9]+", "-", f"{council.name} {question.label}".lower())
            size = rng.randint(50_000, 900_000)
            if question.max_mb is not None:
                size = min(size, int(question.max_mb * 1024 * 1024))
            return {
                "name": f"{stem.strip('-')[:60]}.{accept[0].lstrip('.')}",
                "size": size,
                "sha256": hashlib.sha256(f"{council.code}{question.id}".encode()).hexdigest(),
            }
    raise ValueError(f"no simulation for question type {question.type}")


def _names_organisations(question: TableQuestion) -> bool:
    """Whether a table's rows are organisations (partners), not people."""
    text = f"{question.label} {question.hint or ''}".lower()
    people = re.search(r"worker|staff|officer|people|team|contact|member|person", text)
    return not people or bool(re.search(r"organisation|partner|body|agenc", text))


def _table(question: TableQuestion, writer: _Writer) -> list[dict[str, Any]]:
    rng, prospectus = writer.rng, writer.prospectus
    floor = max(
        [question.min_rows or 0] + [c.min_rows or 0 for c in _sift_targets(prospectus, question.id)]
    )
    ceiling = row_limit(question)
    # one table in ten misses the sift's number of rows on purpose
    comply = rng.random() < 0.9 or not _sift_targets(prospectus, question.id)
    # a strong council names more partners
    most = max(floor, min(ceiling, floor + 2 + round(6 * writer.strength)))
    count = (
        rng.randint(max(floor, min(3, ceiling), most - 3), max(most, floor, 1))
        if comply
        else max(floor - 1, question.min_rows or 0)
    )
    count = min(count, ceiling)
    neighbourhood = "neighbourhood" in f"{prospectus.title} {prospectus.id}".lower()
    partners = writing.partners_of(writer.place, neighbourhood=neighbourhood)
    sector_columns = [
        c
        for c in question.columns
        if isinstance(c, ChoiceQuestion) and writing.is_sector_choice(c.options)
    ]
    if sector_columns:  # partners whose sector the table offers come first
        options = sector_columns[0].options
        partners.sort(key=lambda p: writing.sector_option(p.sector, options) is None)
    # a choice of something else (a year, say): each partner has a row for each option
    cycled = next(
        (
            c
            for c in question.columns
            if isinstance(c, ChoiceQuestion) and c not in sector_columns and c.required
        ),
        None,
    )
    organisations = _names_organisations(question)
    rows = []
    for index in range(count):
        row: dict[str, Any] = {}
        group = index // len(cycled.options) if cycled else index
        partner = partners[group % len(partners)] if organisations else None
        for column in question.columns:
            if not is_shown(column, row):
                continue
            if column is cycled and cycled is not None:
                row[column.id] = cycled.options[index % len(cycled.options)]
            elif not column.required and rng.random() < 0.15 * (1 - writer.strength):
                continue  # a weaker council leaves some optional cells empty
            else:
                row[column.id] = _value(column, writer, partner)
        rows.append(row)
    return rows


def answers_for(
    form: Form,
    council: Council,
    prospectus: Prospectus,
    *,
    seed: int,
    councils_by_type: dict[str, list[str]],
    request: Decimal | None = None,
    period: int = 0,
) -> dict[str, Any]:
    """A complete, valid set of answers to `form` for one council, written as its officers
    would: fuller and more specific the stronger the council (see `quality`)."""
    rng = seeded_random("answers", council.code, seed, period)
    periods = return_periods(prospectus)
    reported = periods[period - 1][:2] if 0 < period <= len(periods) else None
    writer = _writer(
        council,
        prospectus,
        rng,
        quality(council.code, seed),
        councils_by_type,
        request,
        reported,
    )
    answers: dict[str, Any] = {}
    for question in form.questions():
        if not is_shown(question, answers):
            continue
        if isinstance(question, TableQuestion):
            answers[question.id] = _table(question, writer)
        elif question.required or _sift_targets(prospectus, question.id) or rng.random() < 0.85:
            answers[question.id] = _value(question, writer)
    return answers


def request_for(council: Council, prospectus: Prospectus, seed: int) -> Decimal | None:
    """A plausible request: around an equal share of the budget, some asking for more."""
    budget, places = prospectus.capacity.budget_gbp, prospectus.capacity.places
    if budget is None:
        return None
    share = budget / (places or 1)
    return (
        share
        * Decimal(str(round(seeded_random("request", council.code, seed).uniform(0.5, 1.4), 2)))
    ).quantize(Decimal("1000"))


def assessor_bias(assessor_id: int, seed: int) -> float:
    """How harsh (negative) or lenient (positive) an assessor is, in scale points."""
    return seeded_random("bias", assessor_id, seed).uniform(-0.7, 0.7)


def score_for(
    prospectus: Prospectus, council_code: str, criterion_id: str, assessor_id: int, seed: int
) -> tuple[int, str]:
    """One simulated assessor's score and justification for one criterion."""
    stage = prospectus.stages.assessment
    assert stage is not None
    rng = seeded_random("score", council_code, criterion_id, assessor_id, seed)
    span = stage.scale.max - stage.scale.min
    perceived = (
        stage.scale.min + quality(council_code, seed) * span + assessor_bias(assessor_id, seed)
    )
    score = max(stage.scale.min, min(stage.scale.max, round(perceived + rng.gauss(0, 0.6))))
    criterion = next(c for c in stage.criteria if c.id == criterion_id)
    place = writing.place_of(council_code)
    return score, writing.justification(
        criterion.title,
        place,
        (score - stage.scale.min) / (span or 1),
        stage.scale.labels.get(score),
        assessor_id + seeded_random("wording", council_code, criterion_id).randrange(3),
    )


def return_answers(
    form: Form,
    council: Council,
    prospectus: Prospectus,
    *,
    seed: int,
    period: int,
    councils_by_type: dict[str, list[str]],
) -> dict[str, Any]:
    """A return for one period; counts and sums grow steadily as the work beds in."""
    answers = answers_for(
        form, council, prospectus, seed=seed, councils_by_type=councils_by_type, period=period
    )
    base = answers_for(form, council, prospectus, seed=seed, councils_by_type=councils_by_type)
    rng = seeded_random("growth", council.code, seed, period)
    growth = Decimal(str(round((0.3 + 0.15 * period) * rng.uniform(0.9, 1.1), 3)))
    for question in form.questions():
        if question.id not in answers or question.id not in base:
            continue
        if isinstance(question, NumberQuestion):
            low = question.min if question.min is not None else Decimal(0)
            step = question.step or Decimal(1)
            grown = Decimal(str(base[question.id])) * growth
            value = low + step * int(max(grown - low, Decimal(0)) / step)
            answers[question.id] = _json_number(min(value, question.max) if question.max else value)
        elif isinstance(question, MoneyQuestion):
            grown = (Decimal(base[question.id]) * growth).quantize(PENNY)
            grant = _grant_per_place(prospectus)
            if grant is not None and re.search(r"support|grant", question.label.lower()):
                grown = min(grown, grant.quantize(PENNY))  # no place spends beyond its grant
            low = question.min if question.min is not None else grown
            answers[question.id] = str(min(max(grown, low), question.max or grown))
    return answers


def moderated_score(scores: list[int]) -> int:
    """A moderator's call in the simulation: the median of the assessors' scores."""
    ordered = sorted(scores)
    return ordered[len(ordered) // 2]


# ---------------------------------------------------------------------------------------------
# Simulated people acting through the services, as the portal's users will


def councils_by_type(councils: list[Council]) -> dict[str, list[str]]:
    grouped: dict[str, list[str]] = {}
    for council in councils:
        grouped.setdefault(council.type, []).append(council.code)
    return grouped


def ensure_people(session: Session, *, assessors: int, seed: int) -> list[User]:
    """Staff and assessors for a simulated round (created once; found again on a re-run)."""
    councils = all_councils(session)
    regions = sorted({c.region for c in councils})
    people = []
    for number in range(1, assessors + 1):
        email = f"assessor{number}@assessors.example"
        user = session.exec(select(User).where(User.email == email)).first()
        if user is None:
            user = User(
                email=email,
                name=f"Assessor {number}",
                role="assessor",
                region=regions[(number + seed) % len(regions)],
            )
            session.add(user)
        people.append(user)
    if session.exec(select(User).where(User.role == "staff")).first() is None:
        session.add(User(email="programme.team@staff.example", name="Programme team", role="staff"))
    session.flush()
    return people


def submit_eois(
    session: Session, *, round_: Round, councils: list[Council], now: datetime, seed: int
) -> int:
    """Each council starts and submits its expression of interest. Returns how many submitted."""
    prospectus = prospectus_of(round_)
    by_type = councils_by_type(all_councils(session))
    submitted = 0
    for council in councils:
        answers = answers_for(
            prospectus.stages.eoi.form,
            council,
            prospectus,
            seed=seed,
            councils_by_type=by_type,
            request=request_for(council, prospectus, seed),
        )
        application, _ = applications.start_application(
            session,
            round_=round_,
            council_code=council.code,
            actor=f"council:{council.code}",
            now=now,
        )
        if application.state == AppState.EOI_DRAFT:
            applications.submit(
                session,
                application=application,
                stage="eoi",
                answers=answers,
                actor=f"council:{council.code}",
                now=now,
            )
            submitted += 1
    return submitted


def review_referrals(session: Session, *, round_: Round, now: datetime, seed: int) -> int:
    """Staff look at each referred EOI; about two in three are let through."""
    referred = rounds.applications_of(session, round_, AppState.SIFT_REFER)
    for application in referred:
        passed = seeded_random("referral", application.council_code, seed).random() < 0.67
        failed_rules = [rid for rid, r in application.sift_results.items() if not r["passed"]]
        rules = {r.id: r.description for r in prospectus_of(round_).stages.eoi.sift}
        council = session.get(Council, application.council_code)
        reason = writing.referral_reason(
            [rules.get(rule, rule) for rule in failed_rules],
            council.name if council else application.council_code,
            passed=passed,
        )
        sift.review_referral(
            session,
            application=application,
            passed=passed,
            actor="staff:programme-team",
            now=now,
            reason=reason,
        )
    return len(referred)


def submit_bids(session: Session, *, round_: Round, now: datetime, seed: int) -> int:
    """Invited councils draft and submit their bids; one in eight lets the deadline pass."""
    prospectus = prospectus_of(round_)
    assert prospectus.stages.bid is not None
    by_type = councils_by_type(all_councils(session))
    submitted = 0
    for application in rounds.applications_of(session, round_, AppState.INVITED):
        council = session.get(Council, application.council_code)
        assert council is not None
        answers = answers_for(
            prospectus.stages.bid.form,
            council,
            prospectus,
            seed=seed,
            councils_by_type=by_type,
            request=request_for(council, prospectus, seed),
        )
        actor = f"council:{council.code}"
        applications.save_draft(
            session, application=application, stage="bid", answers=answers, actor=actor, now=now
        )
        if seeded_random("bid", council.code, seed).random() < 0.875:
            applications.submit(session, application=application, stage="bid", actor=actor, now=now)
            submitted += 1
    return submitted


def score_all(session: Session, *, round_: Round, now: datetime, seed: int) -> int:
    """Every assessor scores every application assigned to them."""
    prospectus = prospectus_of(round_)
    assert prospectus.stages.assessment is not None
    count = 0
    for assignment in assessment.all_assignments(session, round_):
        if assignment.submitted_at is not None:
            continue
        application = session.get(Application, assignment.application_id)
        assert application is not None
        scores = {
            c.id: score_for(
                prospectus, application.council_code, c.id, assignment.assessor_id, seed
            )
            for c in prospectus.stages.assessment.criteria
        }
        assessment.submit_scores(
            session,
            assignment=assignment,
            scores=scores,
            actor=f"assessor:{assignment.assessor_id}",
            now=now,
        )
        count += 1
    return count


def moderate_all(session: Session, *, round_: Round, now: datetime) -> int:
    """A moderator settles each open disagreement at the assessors' median."""
    scores = assessment.scores_by_application(session, round_)
    tasks = [t for t in assessment.moderation_tasks(session, round_) if t.resolved_at is None]
    for task in tasks:
        given = scores[task.application_id][task.criterion_id]
        assessment.moderate(
            session,
            task=task,
            score=moderated_score(given),
            reason=writing.moderation_reason(moderated_score(given), given),
            actor="staff:moderation-panel",
            now=now,
        )
    return len(tasks)


def make_returns(session: Session, *, round_: Round, period: int, now: datetime, seed: int) -> int:
    """Implementing places make their return for one period; one place in six misses it."""
    prospectus = prospectus_of(round_)
    form = prospectus.forms().get("returns")
    if form is None:
        return 0
    by_type = councils_by_type(all_councils(session))
    made = 0
    for application in rounds.applications_of(session, round_, AppState.IMPLEMENTING):
        if seeded_random("return", application.council_code, period, seed).random() < 1 / 6:
            continue
        council = session.get(Council, application.council_code)
        assert council is not None
        for record_ in implementation.returns_of(session, application):
            if record_.period == period:
                answers = return_answers(
                    form, council, prospectus, seed=seed, period=period, councils_by_type=by_type
                )
                implementation.submit_return(
                    session,
                    record_=record_,
                    answers=answers,
                    actor=f"council:{council.code}",
                    now=now,
                )
                made += 1
        for milestone in implementation.milestones_of(session, application):
            if milestone.met_on is None and milestone.due <= now.astimezone(prospectus.zone).date():
                implementation.meet_milestone(
                    session,
                    milestone=milestone,
                    met_on=milestone.due,
                    actor=f"council:{council.code}",
                    now=now,
                )
    return made
