"""The prospectus file format: the shipped rounds, error reports, timetable semantics, schema."""

from __future__ import annotations

import csv
import json
from datetime import UTC, date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import jsonschema
import pytest
from ruamel.yaml import YAML

from cbflow.errors import ProspectusError
from cbflow.prospectus import Window, format_schema, load

ROOT = Path(__file__).resolve().parents[1]
SHIPPED_IDS = ["whole-place-2011", "neighbourhood-2011", "troubled-families-2012"]
EXAMPLE = ROOT / "tests" / "data" / "format-example.yaml"
COUNCILS_CSV = ROOT / "cbflow" / "data" / "english-councils-2011.csv"
LONDON = ZoneInfo("Europe/London")


def _shipped(round_id: str) -> Path:
    return ROOT / "prospectus" / f"{round_id}.yaml"


def _councils() -> list[dict[str, str]]:
    with COUNCILS_CSV.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def _write_broken(tmp_path: Path, old: str, new: str, mark: str) -> tuple[Path, int]:
    """Write the format example with `old` replaced by `new`; return the file and the line of
    `mark` (a piece of `new`) in the edited text."""
    text = EXAMPLE.read_text(encoding="utf-8")
    assert text.count(old) == 1, f"the example must hold {old!r} exactly once"
    edited = text.replace(old, new)
    offset = text.index(old) + new.index(mark)
    line = edited.count("\n", 0, offset) + 1
    path = tmp_path / "broken.yaml"
    path.write_text(edited, encoding="utf-8")
    return path, line


def _as_json(path: Path) -> object:
    """The file as JSON data: YAML dates become ISO strings, integer mapping keys strings."""
    data = YAML(typ="safe").load(path.read_text(encoding="utf-8"))
    return json.loads(json.dumps(data, default=str))


# ---------------------------------------------------------------------------------------------
# The shipped files


@pytest.mark.parametrize("round_id", SHIPPED_IDS)
def test_shipped_prospectus_loads_with_its_file_name_as_id(round_id: str) -> None:
    # Arrange
    path = _shipped(round_id)

    # Act
    prospectus = load(path)

    # Assert
    assert prospectus.id == round_id


def test_format_example_loads_when_read_from_tests_data() -> None:
    # Arrange
    path = EXAMPLE

    # Act
    prospectus = load(path)

    # Assert
    assert prospectus.id == "whole-place-2011"
    assert prospectus.stages.implementation is not None
    assert [p.id for p in prospectus.stages.implementation.payments] == ["attachment", "results"]


def test_whole_place_round_selects_four_of_six_shortlisted() -> None:
    # Arrange
    path = _shipped("whole-place-2011")

    # Act
    prospectus = load(path)

    # Assert
    assert prospectus.capacity.places == 4
    assert prospectus.stages.eoi.shortlist == 6
    assert prospectus.eligibility.council_types is None
    assert prospectus.timetable.decision is not None
    assert prospectus.timetable.decision.by == date(2011, 12, 21)


def test_troubled_families_eligibility_covers_exactly_the_152_upper_tier_councils() -> None:
    # Arrange: upper tier is every council that is not a non-metropolitan (shire) district
    councils = _councils()
    upper_tier = {c["local-authority-code"] for c in councils if c["local-authority-type"] != "NMD"}
    prospectus = load(_shipped("troubled-families-2012"))
    types = prospectus.eligibility.council_types
    assert types is not None

    # Act
    eligible = {c["local-authority-code"] for c in councils if c["local-authority-type"] in types}

    # Assert
    assert len(upper_tier) == 152
    assert eligible == upper_tier
    assert prospectus.capacity.places == 152


def test_troubled_families_round_is_opt_in_when_it_has_no_bid_or_assessment() -> None:
    # Arrange
    path = _shipped("troubled-families-2012")

    # Act
    prospectus = load(path)

    # Assert
    assert prospectus.stages.bid is None
    assert prospectus.stages.assessment is None
    assert prospectus.stages.eoi.sift


def test_troubled_families_payments_total_4000_per_family_when_in_first_year() -> None:
    # Arrange
    prospectus = load(_shipped("troubled-families-2012"))
    implementation = prospectus.stages.implementation
    assert implementation is not None and implementation.returns is not None

    # Act
    amounts = {p.id: p.amount_gbp for p in implementation.payments}
    per_types = {implementation.returns.form.question(p.per).type for p in implementation.payments}

    # Assert
    assert amounts == {"attachment": 3200, "results": 800}
    assert sum(amounts.values()) == 4000
    assert per_types == {"number"}


# ---------------------------------------------------------------------------------------------
# Broken files: each fault names the file, the line and the key path

ISSUED = "issued_by: Department for Communities and Local Government\n"


def _contact(
    name: str = "Alex Morgan", email: str = "alex@communities.gov.uk", phone: str = "020 7946 0000"
) -> str:
    """The example's `issued_by` line followed by a contact with these details."""
    return (
        f"{ISSUED}contact:\n  name: {name}\n  role: Head of Community Budgets\n"
        f"  email: {email}\n  phone: {phone}\n"
    )


BROKEN = [
    pytest.param(
        "    shortlist: 6",
        "    shortlst: 6",
        "shortlst",
        "stages.eoi.shortlst",
        id="misspelt-key",
    ),
    pytest.param(
        "type: textarea\n              max_words: 500",
        "type: essay\n              max_words: 500",
        "type: essay",
        "stages.eoi.form.sections[0].questions[2].type",
        id="wrong-question-type",
    ),
    pytest.param(
        "weight: 40",
        "weight: -40",
        "weight",
        "stages.assessment.criteria[1].weight",
        id="negative-weight",
    ),
    pytest.param(
        "check: {question: partners, min_rows: 2}",
        "check: {question: partnrs, min_rows: 2}",
        "partnrs",
        "stages.eoi.sift[0].check.question",
        id="sift-unknown-question",
    ),
    pytest.param(
        "evidence: [partners, pooled_budget]",
        "evidence: [partners, pooled_budgt]",
        "evidence",
        "stages.assessment.criteria[1].evidence",
        id="evidence-unknown-question",
    ),
    pytest.param(
        "bid:        {opens: 2011-11-21,",
        'bid:        {opens: "2011-11-31",',
        "2011-11-31",
        "timetable.bid.opens",
        id="bad-date",
    ),
    pytest.param(
        "timezone: Europe/London",
        "timezone: Europe/Londres",
        "timezone",
        "timezone",
        id="unknown-time-zone",
    ),
    pytest.param(
        "            - id: ambition\n              label: What is your ambition",
        "            - id: partners\n              label: What is your ambition",
        "id: partners",
        "stages.eoi.form.sections[0].questions[2].id",
        id="duplicate-question-id",
    ),
    pytest.param(
        "              type: council          # a council from the register\n",
        "              type: council\n              show_if: {question: ambition, equals: yes}\n",
        "show_if",
        "stages.eoi.form.sections[0].questions[0].show_if.question",
        id="show-if-names-later-question",
    ),
    pytest.param(
        "              min: 0\n              max: 1500000",
        "              min: 2000000\n              max: 1500000",
        "min: 2000000",
        "stages.bid.form.sections[0].questions[1].min",
        id="minimum-above-maximum",
    ),
    pytest.param(
        "              min_rows: 1\n              max_rows: 30",
        "              min_rows: 31\n              max_rows: 30",
        "min_rows: 31",
        "stages.eoi.form.sections[0].questions[1].min_rows",
        id="min-rows-above-max-rows",
    ),
    pytest.param(
        ISSUED,
        _contact(email="alex at communities"),
        "email: alex",
        "contact.email",
        id="contact-email-not-an-address",
    ),
    pytest.param(
        ISSUED,
        _contact(name="A" * 121),
        "name: AAA",
        "contact.name",
        id="contact-name-too-long",
    ),
    pytest.param(
        ISSUED,
        _contact(phone="call us"),
        "phone: call",
        "contact.phone",
        id="contact-phone-not-a-number",
    ),
    pytest.param(
        ISSUED,
        ISSUED + "grant_offer: {accept_within_days: 0}\n",
        "grant_offer",
        "grant_offer.accept_within_days",
        id="offer-accepted-within-no-days",
    ),
]


@pytest.mark.parametrize(("old", "new", "mark", "key_path"), BROKEN)
def test_load_names_file_line_and_key_path_when_file_is_broken(
    tmp_path: Path, old: str, new: str, mark: str, key_path: str
) -> None:
    # Arrange
    path, line = _write_broken(tmp_path, old, new, mark)

    # Act
    with pytest.raises(ProspectusError) as caught:
        load(path)

    # Assert
    assert caught.value.path == str(path)
    assert any(p.startswith(f"{path}:{line}: {key_path}: ") for p in caught.value.problems), (
        caught.value.problems
    )


def test_load_names_file_and_line_when_yaml_indentation_is_invalid(tmp_path: Path) -> None:
    # Arrange
    path, line = _write_broken(tmp_path, "    shortlist: 6", "   shortlist: 6", "shortlist")

    # Act
    with pytest.raises(ProspectusError) as caught:
        load(path)

    # Assert
    assert caught.value.problems[0].startswith(f"{path}:{line}: not valid YAML")


def test_load_names_per_line_and_key_path_when_payment_per_names_a_non_number_question(
    tmp_path: Path,
) -> None:
    # Arrange
    path, line = _write_broken(
        tmp_path, "per: families_turned_around", "per: narrative", "per: narrative"
    )

    # Act
    with pytest.raises(ProspectusError) as caught:
        load(path)

    # Assert
    expected = f"{path}:{line}: stages.implementation.payments[1].per: "
    assert any(p.startswith(expected) for p in caught.value.problems), caught.value.problems


def test_load_names_file_line_and_key_path_when_unquoted_date_is_impossible(
    tmp_path: Path,
) -> None:
    # Arrange
    path, line = _write_broken(
        tmp_path, "bid:        {opens: 2011-11-21,", "bid:        {opens: 2011-11-31,", "2011-11-31"
    )

    # Act
    with pytest.raises(ProspectusError) as caught:
        load(path)

    # Assert
    assert any(p.startswith(f"{path}:{line}: timetable.bid.opens") for p in caught.value.problems)


def test_load_names_key_path_without_type_tag_when_question_key_is_misspelt(
    tmp_path: Path,
) -> None:
    # Arrange
    path, line = _write_broken(tmp_path, "max_words: 500\n", "max_word: 500\n", "max_word")

    # Act
    with pytest.raises(ProspectusError) as caught:
        load(path)

    # Assert
    expected = f"{path}:{line}: stages.eoi.form.sections[0].questions[2].max_word: "
    assert any(p.startswith(expected) for p in caught.value.problems), caught.value.problems


# ---------------------------------------------------------------------------------------------
# Timetable semantics


def test_window_closes_at_next_local_midnight_when_closes_is_a_date() -> None:
    # Arrange
    window = Window(opens=date(2011, 10, 17), closes=date(2011, 11, 10))

    # Act
    closes = window.closes_at(LONDON)

    # Assert
    assert closes == datetime(2011, 11, 11, 0, 0, tzinfo=LONDON)


def test_window_closes_at_that_instant_when_closes_has_a_time() -> None:
    # Arrange
    window = Window(opens=date(2011, 10, 17), closes="2011-11-10T12:00")

    # Act
    closes = window.closes_at(LONDON)

    # Assert
    assert closes == datetime(2011, 11, 10, 12, 0, tzinfo=LONDON)
    assert closes.astimezone(UTC) == datetime(2011, 11, 10, 12, 0, tzinfo=UTC)


def test_window_closes_at_2300_utc_the_day_before_when_date_is_in_summer() -> None:
    # Arrange: 31 May is in British Summer Time (UTC+1)
    window = Window(opens=date(2012, 4, 1), closes=date(2012, 5, 31))

    # Act
    closes = window.closes_at(LONDON).astimezone(UTC)

    # Assert
    assert closes == datetime(2012, 5, 31, 23, 0, tzinfo=UTC)


def test_window_closes_at_midnight_utc_when_date_is_in_winter() -> None:
    # Arrange
    window = Window(opens=date(2011, 11, 21), closes=date(2011, 12, 9))

    # Act
    closes = window.closes_at(LONDON).astimezone(UTC)

    # Assert
    assert closes == datetime(2011, 12, 10, 0, 0, tzinfo=UTC)


def test_window_opens_at_local_midnight_when_opens_is_a_date() -> None:
    # Arrange
    window = Window(opens=date(2012, 4, 1), closes=date(2012, 5, 31))

    # Act
    opens = window.opens_at(LONDON).astimezone(UTC)

    # Assert
    assert opens == datetime(2012, 3, 31, 23, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("round_id", "expected"),
    [
        ("whole-place-2011", datetime(2011, 11, 10, 12, 0, tzinfo=UTC)),
        ("neighbourhood-2011", datetime(2011, 11, 10, 12, 0, tzinfo=UTC)),
        ("troubled-families-2012", datetime(2012, 5, 31, 23, 0, tzinfo=UTC)),
    ],
)
def test_shipped_eoi_window_closes_at_the_published_instant(
    round_id: str, expected: datetime
) -> None:
    # Arrange
    prospectus = load(_shipped(round_id))

    # Act
    closes = prospectus.timetable.eoi.closes_at(prospectus.zone)

    # Assert
    assert closes.astimezone(UTC) == expected


# ---------------------------------------------------------------------------------------------
# The JSON Schema of the format


SCHEMA_FILES = [*(_shipped(round_id) for round_id in SHIPPED_IDS), EXAMPLE]


@pytest.mark.parametrize("path", SCHEMA_FILES, ids=lambda path: path.name)
def test_format_schema_accepts_file_when_file_loads(path: Path) -> None:
    # Arrange
    schema = format_schema()
    data = _as_json(path)

    # Act
    errors = list(jsonschema.Draft202012Validator(schema).iter_errors(data))

    # Assert
    assert errors == []


def test_format_schema_rejects_file_when_it_has_an_unknown_key() -> None:
    # Arrange
    schema = format_schema()
    data = _as_json(_shipped("whole-place-2011"))
    assert isinstance(data, dict)
    data["stages"]["eoi"]["shortlst"] = 6

    # Act
    errors = list(jsonschema.Draft202012Validator(schema).iter_errors(data))

    # Assert
    assert errors
    assert any("shortlst" in error.message for error in errors)


def test_format_schema_is_a_valid_json_schema_when_checked_against_its_metaschema() -> None:
    # Arrange
    schema = format_schema()

    # Act
    jsonschema.Draft202012Validator.check_schema(schema)

    # Assert
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"


def test_a_contact_and_grant_offer_terms_load_and_both_are_optional(tmp_path: Path) -> None:
    assert load(EXAMPLE).contact is None
    assert load(EXAMPLE).grant_offer.conditions is None
    assert load(EXAMPLE).grant_offer.accept_within_days == 28
    path = tmp_path / "with-contact.yaml"
    path.write_text(
        EXAMPLE.read_text(encoding="utf-8").replace(
            "issued_by: Department for Communities and Local Government\n",
            "issued_by: Department for Communities and Local Government\n"
            "contact: {name: '  Alex   Morgan ', role: Head of Community Budgets,"
            " email: ' alex@communities.gov.uk '}\n"
            "grant_offer: {conditions: [Publish what you learn.], accept_within_days: 14}\n",
        ),
        encoding="utf-8",
    )

    prospectus = load(path)

    assert prospectus.contact is not None
    assert prospectus.contact.name == "Alex Morgan"
    assert prospectus.contact.email == "alex@communities.gov.uk"
    assert prospectus.contact.phone is None
    assert prospectus.grant_offer.conditions == ["Publish what you learn."]
    assert prospectus.grant_offer.accept_within_days == 14
    assert load(_shipped("whole-place-2011")).contact is not None
