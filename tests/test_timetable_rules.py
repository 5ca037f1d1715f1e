"""Edges of the rules staff rely on: local times the clocks skip or repeat, return periods from
awkward start days, reserve lists without a cap on places, money typed in odd ways."""

from __future__ import annotations

import itertools
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from conftest import edit, example_text, london

from cbflow.db import session_scope
from cbflow.errors import ProspectusError
from cbflow.forms import parse_money
from cbflow.lifecycle import AppState
from cbflow.prospectus import load, parse
from cbflow.services import applications, rounds, selection, sift
from cbflow.services.implementation import return_periods
from cbflow.settings import Settings

EOI_LINE = 'eoi:        {opens: 2011-10-17, closes: "2011-11-10T12:00"}'


def _problem_for(tmp_path: Path, closes: str) -> str:
    path = tmp_path / "round.yaml"
    path.write_text(
        edit(example_text(), (EOI_LINE, f'eoi:        {{opens: 2011-10-17, closes: "{closes}"}}'))
    )
    with pytest.raises(ProspectusError) as caught:
        load(path)
    return str(caught.value)


def test_prospectus_refuses_close_in_the_hour_the_clocks_skip(tmp_path: Path) -> None:
    message = _problem_for(tmp_path, "2012-03-25T01:30")

    assert "timetable.eoi.closes" in message
    assert "does not exist in Europe/London" in message


def test_prospectus_refuses_close_in_the_hour_the_clocks_repeat(tmp_path: Path) -> None:
    message = _problem_for(tmp_path, "2011-10-30T01:30")

    assert "timetable.eoi.closes" in message
    assert "happens twice" in message


def test_prospectus_accepts_repeated_hour_when_the_offset_is_given() -> None:
    source = edit(
        example_text(),
        (EOI_LINE, 'eoi:        {opens: 2011-10-17, closes: "2011-10-30T01:30+00:00"}'),
    )

    prospectus = parse(source)

    # the second 01:30 that night, once the clocks had gone back to GMT
    closes = prospectus.timetable.eoi.closes_at(prospectus.zone)
    assert closes == datetime(2011, 10, 30, 1, 30, tzinfo=UTC)


def test_return_periods_keep_the_month_end_when_implementation_starts_on_the_31st() -> None:
    source = edit(
        example_text(),
        (
            "implementation: {starts: 2012-04-01, ends: 2013-03-31}",
            "implementation: {starts: 2012-01-31, ends: 2012-12-30}",
        ),
        ("every: quarter", "every: month"),
    )
    prospectus = parse(source)

    periods = return_periods(prospectus)

    assert [(first, last) for first, last, _ in periods[:3]] == [
        (date(2012, 1, 31), date(2012, 2, 28)),
        (date(2012, 2, 29), date(2012, 3, 30)),
        (date(2012, 3, 31), date(2012, 4, 29)),
    ]
    assert periods[-1][1] == date(2012, 12, 30)
    assert all((later[0] - earlier[1]).days == 1 for earlier, later in itertools.pairwise(periods))
    first_due = periods[0][2]
    assert first_due == london(2012, 3, 14)  # 14 days after 28 February, at the end of that day


@pytest.mark.parametrize("typed", ["1e3", "NaN", "Infinity", "1.234", "12.5.0", "£"])
def test_parse_money_refuses_amount_when_not_plain_pounds_and_pence(typed: str) -> None:
    with pytest.raises(ValueError):
        parse_money(typed)


@pytest.mark.parametrize(
    ("typed", "pounds"), [("£1,500,000", "1500000.00"), ("12.5", "12.50"), (7, "7.00")]
)
def test_parse_money_reads_amount_when_typed_as_people_do(typed: str | int, pounds: str) -> None:
    assert str(parse_money(typed)) == pounds


def test_selection_puts_every_unaffordable_request_in_reserve_when_places_are_not_capped(
    cbflow_env: Settings,
) -> None:
    # an opt-in round with a budget and no cap on places, requests made in the EOI
    source = example_text()
    source = source[: source.index("  bid:\n    form:")]
    source = edit(
        source,
        ("  places: 4                          # how many applications are selected\n", ""),
        ("  budget_gbp: 4800000", "  budget_gbp: 250000"),
        ("  bid:        {opens: 2011-11-21, closes: 2011-12-09}\n", ""),
        ("  assessment: {opens: 2011-12-10, closes: 2011-12-16}\n", ""),
        ("  implementation: {starts: 2012-04-01, ends: 2013-03-31}\n", ""),
        (
            "              max_words: 500\n              required: true\n",
            "              max_words: 500\n              required: true\n"
            "            - {id: request_gbp, label: Support requested, type: money,"
            " required: true}\n",
        ),
    )
    requests = {"ADU": "100000", "ALL": "200000", "AMB": "150000", "ARU": "90000"}
    with session_scope() as session:
        round_, _ = rounds.launch_round(
            session, source=source, path="t.yaml", actor="staff", now=london(2011, 10, 17)
        )
        for minute, (code, request) in enumerate(requests.items()):
            application, _ = applications.start_application(
                session, round_=round_, council_code=code, actor="council", now=london(2011, 10, 20)
            )
            answers = {
                "lead_council": code,
                "partners": [{"organisation": "Police"}, {"organisation": "NHS"}],
                "ambition": "To pool every budget in the place.",
                "request_gbp": request,
            }
            applications.submit(
                session,
                application=application,
                stage="eoi",
                answers=answers,
                actor="council",
                now=london(2011, 10, 20, 9, minute),
            )
        sift.close_eoi(session, round_=round_, actor="staff", now=london(2011, 11, 10, 12))
        decisions = selection.decide(session, round_=round_, actor="staff", now=london(2011, 12, 1))

    outcomes = {d.application.council_code: d.outcome for d in decisions}
    # in submission order: ADU 100k fits; ALL 200k does not (150k left); AMB 150k fits;
    # ARU 90k does not (nothing left)
    assert outcomes == {
        "ADU": AppState.SELECTED,
        "ALL": AppState.RESERVE,
        "AMB": AppState.SELECTED,
        "ARU": AppState.RESERVE,
    }
