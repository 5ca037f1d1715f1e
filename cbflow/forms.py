"""Answers to a prospectus form: validation and JSON Schema, shared by the CLI, portal and flows.

Answers are stored as JSON, one value per question id:
text, textarea, email, choice, council -> string; number -> JSON number; money -> string of pounds
with two decimals ("1500000.00", exact); date -> "YYYY-MM-DD"; yes_no -> boolean;
multichoice -> list of strings; file -> {"name", "size", "sha256"}; table -> list of row objects.
"""

from __future__ import annotations

import json
import re
from collections.abc import Container, Mapping
from datetime import date
from decimal import Decimal, InvalidOperation
from typing import Any

from email_validator import EmailNotValidError, validate_email

from cbflow.errors import ValidationFailed
from cbflow.formatting import PENNY, long_date, pounds
from cbflow.prospectus import (
    ChoiceQuestion,
    CouncilQuestion,
    DateQuestion,
    FileQuestion,
    Form,
    MoneyQuestion,
    MultichoiceQuestion,
    NumberQuestion,
    Question,
    TableQuestion,
    TextareaQuestion,
    TextQuestion,
)

EMAIL_MAX = 254  # the longest address mail can carry (RFC 5321)
EMAIL_FORMAT = "Enter an email address in the correct format, like name@example.gov.uk"


def is_email(text: str) -> bool:
    """Whether `text` is an e-mail address: its length bounded first, then its syntax checked
    by email-validator (no DNS lookup). A pattern of our own backtracked: one address of
    40,000 dots kept a portal process busy for 17 s."""
    if len(text) > EMAIL_MAX:
        return False
    try:
        validate_email(text, check_deliverability=False)
    except EmailNotValidError:
        return False
    return True


def email_error(text: str) -> str | None:
    """What is wrong with an e-mail address a person typed (None: nothing)."""
    if len(text) > EMAIL_MAX:
        return f"Email address must be {EMAIL_MAX} characters or fewer"
    return None if is_email(text) else EMAIL_FORMAT


# Every answer is bounded, whether or not its prospectus says how long it may be (twenty 1 MB
# table cells were stored, and one 1 MB answer made a receipt of 348 pages).
TEXT_MAX_CHARS = 1_000  # a one-line answer without a max_chars of its own
TEXTAREA_MAX_CHARS = 30_000  # a long answer without one (some 5,000 words)
TABLE_MAX_ROWS = 100  # a table without a max_rows of its own
ANSWERS_MAX_CHARS = 2_000_000  # every answer of one form together, as stored

# Kept out of what people type: control characters (a NUL byte was stored and shown) and the
# marks that reverse the direction of the text after them, which can make one name look like
# another. A long answer keeps its line breaks and tabs.
_HIDDEN = "".join(chr(c) for c in range(32) if chr(c) not in "\t\n\r") + "\x7f"
_DIRECTION = "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
_UNTYPED = str.maketrans("", "", _HIDDEN + _DIRECTION)
_ONE_LINE = str.maketrans("\t\n\r", "   ")


def clean_text(text: str, *, one_line: bool = True) -> str:
    """What a person typed, without control characters or direction overrides (and, for a
    one-line answer or a file's name, without line breaks)."""
    text = text.translate(_UNTYPED)
    return text.translate(_ONE_LINE) if one_line else text


def char_limit(question: TextQuestion | TextareaQuestion) -> int:
    """The most characters an answer may have: its own max_chars, or the default."""
    if question.max_chars:
        return question.max_chars
    return TEXTAREA_MAX_CHARS if isinstance(question, TextareaQuestion) else TEXT_MAX_CHARS


def row_limit(question: TableQuestion) -> int:
    return question.max_rows or TABLE_MAX_ROWS


MONEY_PATTERN = r"^-?[0-9]+\.[0-9]{2}$"
# Numbers and money are checked as text, bounded, before any arithmetic: no exponents (a number
# of 1e1000000 took a process 26 s), no NaN or infinity, and no more digits than exact sums of
# a round's money need (pence stay well inside a 64-bit integer).
MONEY_DIGITS = 13  # whole pounds: up to £9,999,999,999,999.99
MONEY_INPUT = re.compile(rf"^-?[0-9]{{1,{MONEY_DIGITS}}}(\.[0-9]{{1,2}})?$")
NUMBER_DIGITS = 15  # before the decimal point; and at most 6 after it
NUMBER_INPUT = re.compile(rf"^-?[0-9]{{1,{NUMBER_DIGITS}}}(\.[0-9]{{1,6}})?$")
TYPED_AT_MOST = 40  # characters of a number or an amount looked at: longer is refused unread


def parse_money(value: Any) -> Decimal:
    """Pounds as an exact Decimal with two places. Floats are refused: they are not exact."""
    if isinstance(value, float | bool):
        raise ValueError("give money as a string or whole number, not a float")
    text = str(value)
    if len(text) > TYPED_AT_MOST:
        raise ValueError(f"enter an amount of at most {MONEY_DIGITS} digits before the pence")
    text = text.replace(",", "").replace("£", "").strip()
    if not MONEY_INPUT.match(text):
        if re.match(r"^-?[0-9]+\.[0-9]{3,}$", text):
            raise ValueError("enter an amount in pounds and pence, at most two decimal places")
        if re.match(r"^-?[0-9]+(\.[0-9]*)?$", text):
            raise ValueError(f"enter an amount of at most {MONEY_DIGITS} digits before the pence")
        raise ValueError("enter an amount in pounds, like 1500000 or 1500000.50")
    return Decimal(text).quantize(PENNY)


def parse_number(value: Any) -> Decimal:
    """A number as typed (or given by a program), exactly; refused unless it is written out in
    full, with at most NUMBER_DIGITS digits before its decimal point and 6 after it."""
    if isinstance(value, bool) or not isinstance(value, str | int | float | Decimal):
        raise ValueError("enter a number")
    if isinstance(value, int) and abs(value) >= 10**NUMBER_DIGITS:
        raise ValueError(f"enter a number of at most {NUMBER_DIGITS} digits")
    if isinstance(value, float | Decimal):  # as stored: 0.000001 is the float 1e-06
        value = format(Decimal(str(value)), "f")
    text = value if isinstance(value, str) else str(value)
    if len(text) > TYPED_AT_MOST:
        raise ValueError(f"enter a number of at most {NUMBER_DIGITS} digits")
    text = text.strip()
    if not NUMBER_INPUT.match(text):
        if re.match(r"^-?[0-9]*(\.[0-9]*)?[eE]", text):
            raise ValueError("enter the number in full, like 1500000 rather than 1.5e6")
        if re.match(r"^-?[0-9]+(\.[0-9]*)?$", text):
            raise ValueError(
                f"enter a number of at most {NUMBER_DIGITS} digits, and 6 after the point"
            )
        raise ValueError("enter a number")
    return Decimal(text)


def _multiple(number: Decimal, step: Decimal) -> bool:
    try:
        return not number % step
    except InvalidOperation:  # the quotient has more digits than exact arithmetic keeps
        return False


def money_to_pence(amount: Decimal) -> int:
    return int((amount * 100).to_integral_value())


def is_shown(question: Question, answers: Mapping[str, Any]) -> bool:
    """A question with show_if is asked only when that earlier answer holds."""
    return (
        question.show_if is None
        or answers.get(question.show_if.question) == question.show_if.equals
    )


def _is_blank(value: Any) -> bool:
    return value is None or value == "" or value == [] or value == {}


def _scalar(question: Question, value: Any, councils: Container[str] | None) -> Any:
    """One answer, cleaned, or ValueError with a message for the person filling in the form."""
    match question:
        case TextQuestion() | TextareaQuestion():
            if not isinstance(value, str):
                raise ValueError("enter text")
            limit = char_limit(question)
            if len(value) > 2 * limit:  # refused before any more work on it
                raise ValueError(f"must be {limit:,} characters or fewer")
            one_line = not isinstance(question, TextareaQuestion)
            text = clean_text(value, one_line=one_line).strip()
            if len(text) > limit:
                raise ValueError(f"must be {limit:,} characters or fewer")
            if isinstance(question, TextareaQuestion) and question.max_words:
                words = len(text.split())
                if words > question.max_words:
                    raise ValueError(
                        f"must be {question.max_words} words or fewer (it has {words})"
                    )
            return text
        case NumberQuestion():
            number = parse_number(value)
            if question.min is not None and number < question.min:
                raise ValueError(f"must be {question.min} or more")
            if question.max is not None and number > question.max:
                raise ValueError(f"must be {question.max} or less")
            if question.step and not _multiple(number - (question.min or 0), question.step):
                raise ValueError(f"must be a multiple of {question.step}")
            return int(number) if number == number.to_integral_value() else float(number)
        case MoneyQuestion():
            amount = parse_money(value)
            if question.min is not None and amount < question.min:
                raise ValueError(f"must be {pounds(question.min)} or more")
            if question.max is not None and amount > question.max:
                raise ValueError(f"must be {pounds(question.max)} or less")
            return str(amount)
        case DateQuestion():
            try:
                day = value if isinstance(value, date) else date.fromisoformat(str(value))
            except ValueError:
                raise ValueError("enter a real date, like 2011-11-10") from None
            if question.min and day < question.min:
                raise ValueError(f"must be on or after {question.min.isoformat()}")
            if question.max and day > question.max:
                raise ValueError(f"must be on or before {question.max.isoformat()}")
            return day.isoformat()
        case ChoiceQuestion():
            if value not in question.options:
                raise ValueError("choose one of the options")
            return value
        case MultichoiceQuestion():
            if not isinstance(value, list) or any(v not in question.options for v in value):
                raise ValueError("choose from the options")
            chosen = list(dict.fromkeys(value))
            if question.min_selected and len(chosen) < question.min_selected:
                raise ValueError(f"choose at least {question.min_selected}")
            if question.max_selected and len(chosen) > question.max_selected:
                raise ValueError(f"choose at most {question.max_selected}")
            return chosen
        case CouncilQuestion():
            if not isinstance(value, str) or (councils is not None and value not in councils):
                raise ValueError("choose a council from the register")
            return value
        case FileQuestion():
            if not isinstance(value, Mapping) or not {"name", "size", "sha256"} <= value.keys():
                raise ValueError("upload a file")
            suffix = str(value["name"]).rsplit(".", 1)[-1].lower()
            if question.accept and suffix not in [a.lower().lstrip(".") for a in question.accept]:
                raise ValueError(f"the file must be a {', '.join(question.accept)}")
            if question.max_mb and int(value["size"]) > question.max_mb * 1024 * 1024:
                raise ValueError(f"the file must be smaller than {question.max_mb} MB")
            return {
                "name": str(value["name"]),
                "size": int(value["size"]),
                "sha256": value["sha256"],
            }
        case _:
            if question.type == "yes_no":
                if not isinstance(value, bool):
                    raise ValueError("answer yes or no")
                return value
            if question.type == "email":
                if not isinstance(value, str) or not is_email(value.strip()):
                    raise ValueError("enter an email address, like name@council.gov.uk")
                return value.strip()
    raise ValueError(f"unsupported question type {question.type}")


def _table(
    question: TableQuestion, value: Any, councils: Container[str] | None
) -> list[dict[str, Any]]:
    if not isinstance(value, list) or not all(isinstance(row, Mapping) for row in value):
        raise ValueError("enter the table's rows")
    rows = [row for row in value if not all(_is_blank(v) for v in row.values())]
    if question.min_rows and len(rows) < question.min_rows:
        raise ValueError(f"add at least {question.min_rows} row(s)")
    if len(rows) > row_limit(question):
        raise ValueError(f"add at most {row_limit(question)} rows")
    cleaned = []
    for number, row in enumerate(rows, start=1):
        unknown = set(row) - {c.id for c in question.columns}
        if unknown:
            raise ValueError(f"row {number}: unknown column(s) {sorted(unknown)}")
        clean_row: dict[str, Any] = {}
        for column in question.columns:
            cell = row.get(column.id)
            if _is_blank(cell):
                if column.required:
                    raise ValueError(f"row {number}: enter {column.label.lower()}")
                continue
            try:
                clean_row[column.id] = _scalar(column, cell, councils)
            except ValueError as exc:
                raise ValueError(f"row {number}, {column.label.lower()}: {exc}") from None
        cleaned.append(clean_row)
    return cleaned


def validate_answers(
    form: Form,
    answers: Mapping[str, Any],
    *,
    complete: bool,
    councils: Container[str] | None = None,
) -> dict[str, Any]:
    """Check answers against a form and return them cleaned.

    complete=False validates a draft (what is there must be valid; nothing is required);
    complete=True validates a submission (required questions answered). Answers to hidden
    questions and to unknown question ids are dropped. Raises ValidationFailed with one message
    per question id.
    """
    errors: dict[str, str] = {}
    cleaned: dict[str, Any] = {}
    known = {q.id for q in form.questions()}
    for key in answers:
        if key not in known:
            errors[key] = "not a question of this form"
    for question in form.questions():
        if not is_shown(question, cleaned):
            continue
        value = answers.get(question.id)
        if _is_blank(value):
            if complete and question.required:
                errors[question.id] = f"{question.label}: this question must be answered"
            continue
        try:
            if isinstance(question, TableQuestion):
                cleaned[question.id] = _table(question, value, councils)
            else:
                cleaned[question.id] = _scalar(question, value, councils)
        except ValueError as exc:
            errors[question.id] = f"{question.label}: {exc}"
    if errors:
        raise ValidationFailed(errors)
    sizes = {key: len(json.dumps(value, default=str)) for key, value in cleaned.items()}
    if sum(sizes.values()) > ANSWERS_MAX_CHARS:
        largest = max(sizes, key=lambda key: sizes[key])
        label = next(q.label for q in form.questions() if q.id == largest)
        raise ValidationFailed(
            {
                largest: f"{label}: the answers to this form together must be "
                f"{ANSWERS_MAX_CHARS:,} characters or fewer; shorten this answer"
            }
        )
    return cleaned


def _question_schema(question: Question) -> dict[str, Any]:
    description = {"title": question.label} | (
        {"description": question.hint} if question.hint else {}
    )
    schema: dict[str, Any]
    match question:
        case TextQuestion() | TextareaQuestion():
            schema = {"type": "string"}
            if question.max_chars:
                schema["maxLength"] = question.max_chars
        case NumberQuestion():
            schema = {"type": "number"}
            if question.min is not None:
                schema["minimum"] = float(question.min)
            if question.max is not None:
                schema["maximum"] = float(question.max)
        case MoneyQuestion():
            schema = {"type": "string", "pattern": MONEY_PATTERN, "description": "pounds, exact"}
        case DateQuestion():
            schema = {"type": "string", "format": "date"}
        case ChoiceQuestion():
            schema = {"type": "string", "enum": list(question.options)}
        case MultichoiceQuestion():
            schema = {
                "type": "array",
                "items": {"enum": list(question.options)},
                "uniqueItems": True,
            }
        case FileQuestion():
            schema = {
                "type": "object",
                "required": ["name", "size", "sha256"],
                "properties": {
                    "name": {"type": "string"},
                    "size": {"type": "integer", "minimum": 0},
                    "sha256": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
                },
            }
        case TableQuestion():
            schema = {
                "type": "array",
                "items": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {c.id: _question_schema(c) for c in question.columns},
                    "required": [c.id for c in question.columns if c.required],
                },
            }
            if question.min_rows:
                schema["minItems"] = question.min_rows
            if question.max_rows:
                schema["maxItems"] = question.max_rows
        case _:
            schema = {
                "yes_no": {"type": "boolean"},
                "email": {"type": "string", "format": "email"},
                "council": {"type": "string", "description": "a council code from the register"},
            }[question.type]
    return description | schema


def answers_schema(form: Form, title: str) -> dict[str, Any]:
    """JSON Schema of a submitted form's answers, for tools that read submissions."""
    questions = form.questions()
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": title,
        "type": "object",
        "additionalProperties": False,
        "properties": {q.id: _question_schema(q) for q in questions},
        "required": [q.id for q in questions if q.required and q.show_if is None],
    }


def display_answer(question: Question, answer: Any, council_names: Mapping[str, str]) -> str:
    """An answer as people read it, on pages and in documents; several values on several lines,
    and an empty string for no answer."""
    if answer is None or answer == "" or answer == []:
        return ""
    match question.type:
        case "yes_no":
            return "Yes" if answer else "No"
        case "money":
            return pounds(Decimal(str(answer)))
        case "date":
            day = date.fromisoformat(str(answer))
            return long_date(day)
        case "multichoice":
            return "\n".join(answer)
        case "council":
            return council_names.get(str(answer), str(answer))
        case "file":
            return f"{answer['name']} ({max(1, int(answer['size']) // 1024)} KB)"
        case "table":
            assert isinstance(question, TableQuestion)
            lines = []
            for row in answer:
                cells = [
                    display_answer(c, row.get(c.id), council_names)
                    for c in question.columns
                    if row.get(c.id) not in (None, "")
                ]
                lines.append(", ".join(cells))
            return "\n".join(lines)
    return str(answer)
