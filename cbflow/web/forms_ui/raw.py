"""Prospectus questions' values as forms show and post them ("raw": strings as typed), and
posted form data back to answers; and the fields every form page carries besides its questions'.

Field names are the question ids; a date posts `<id>-day`, `<id>-month`, `<id>-year`; a table cell
posts `<id>-<row>-<column>` and the table its row count in `<id>-rows`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date
from typing import Any

from starlette.datastructures import FormData

from cbflow.prospectus import (
    FileQuestion,
    MultichoiceQuestion,
    Question,
    Section,
    TableQuestion,
)
from cbflow.services.drafts import Base

# what a page carries besides its questions' fields (names no question id can have): the version
# of the draft it was drawn from, the digests of the answers it showed (cbflow.services.drafts),
# and, on a page that asks whose answer to keep, an upload kept from the first post
VERSION_FIELD = "_version"
BASE_FIELD = "_base"
UPLOAD_FIELD = "_upload-"
ASKED_FIELD = "_asked"  # the questions a conflict page asks whose answer to keep
KEEP_FIELD = "_keep-"  # + question id: "mine" or "theirs"

YES, NO = "yes", "no"


def to_raw(question: Question, answer: Any) -> Any:
    """What the form shows for a stored answer."""
    if isinstance(question, TableQuestion):
        rows = answer if isinstance(answer, list) else []
        return [{c.id: to_raw(c, row.get(c.id)) for c in question.columns} for row in rows]
    if answer is None:
        return {"day": "", "month": "", "year": ""} if question.type == "date" else _empty(question)
    match question.type:
        case "date":
            day = date.fromisoformat(str(answer))
            return {"day": str(day.day), "month": str(day.month), "year": str(day.year)}
        case "yes_no":
            return YES if answer is True else NO
        case "multichoice" | "file":
            return answer
        case _:
            return str(answer)


def _empty(question: Question) -> Any:
    if question.type == "multichoice":
        return []
    if question.type == "file":
        return None
    return ""


def raw_of_section(section: Section, answers: Mapping[str, Any]) -> dict[str, Any]:
    return {q.id: to_raw(q, answers.get(q.id)) for q in section.questions}


# ---------------------------------------------------------------------------------------------
# posted form -> raw


def read_raw(question: Question, form: FormData, prefix: str = "") -> Any:
    """What was posted for a question (a file question's upload is read separately)."""
    name = prefix + question.id
    match question:
        case TableQuestion():
            count = _int(form.get(f"{name}-rows"), 0)
            return [
                {c.id: read_raw(c, form, f"{name}-{i}-") for c in question.columns}
                for i in range(min(count, 500))
            ]
        case MultichoiceQuestion():
            return [v for v in form.getlist(name) if isinstance(v, str)]
        case FileQuestion():
            return None
    if question.type == "date":
        return {part: _text(form.get(f"{name}-{part}")) for part in ("day", "month", "year")}
    return _text(form.get(name))


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _int(value: Any, default: int) -> int:
    try:
        return int(str(value))
    except ValueError:
        return default


def raw_as_fields(question: Question, raw: Any, prefix: str = "") -> list[tuple[str, str]]:
    """The (name, value) pairs a form posts for a raw value: read_raw reads them back as it
    was. For hidden fields that carry what was typed to a confirmation page (files are not
    carried)."""
    name = prefix + question.id
    match question:
        case TableQuestion():
            rows = raw if isinstance(raw, list) else []
            pairs = [(f"{name}-rows", str(len(rows)))]
            for i, row in enumerate(rows):
                for column in question.columns:
                    pairs += raw_as_fields(column, row.get(column.id), f"{name}-{i}-")
            return pairs
        case MultichoiceQuestion():
            return [(name, str(v)) for v in raw or []]
        case FileQuestion():
            return []
    if question.type == "date":
        parts = raw if isinstance(raw, Mapping) else {}
        return [(f"{name}-{part}", str(parts.get(part, ""))) for part in ("day", "month", "year")]
    return [(name, "" if raw is None else str(raw))]


# ---------------------------------------------------------------------------------------------
# raw -> answer


class Unreadable(ValueError):
    """What was typed cannot be an answer of this type (a date with a month of 13)."""


def from_raw(question: Question, raw: Any) -> Any:
    """The answer to validate, None for no answer; Unreadable when it cannot be one."""
    if isinstance(question, TableQuestion):
        rows = []
        for number, row in enumerate(raw, start=1):
            cells = {}
            for column in question.columns:
                try:
                    value = from_raw(column, row.get(column.id))
                except Unreadable as exc:
                    raise Unreadable(f"row {number}, {column.label.lower()}: {exc}") from None
                if value is not None:
                    cells[column.id] = value
            if cells:
                rows.append(cells)
        return rows or None
    match question.type:
        case "date":
            parts = {k: str(raw.get(k, "")).strip() for k in ("day", "month", "year")}
            if not any(parts.values()):
                return None
            try:
                return date(int(parts["year"]), int(parts["month"]), int(parts["day"])).isoformat()
            except (ValueError, OverflowError):  # a year of thirty digits overflows
                raise Unreadable("enter a real date, with a day, month and year") from None
        case "yes_no":
            return {YES: True, NO: False}.get(raw)
        case "multichoice":
            return raw or None
        case "file":
            return raw or None
        case _:
            text = str(raw or "").strip()
            if question.type in ("number", "money"):
                text = text.replace(",", "").replace("£", "").strip()
            return text or None


def asked(form: FormData, questions: Sequence[Question]) -> list[str]:
    """The questions whose answer a conflict page asked to choose."""
    listed = str(form.get(ASKED_FIELD) or "").split(",")
    return [q.id for q in questions if q.id in listed]


def keep_theirs(form: FormData, asked: list[str]) -> tuple[set[str], dict[str, Any]]:
    """The questions a conflict page's choice keeps the colleague's answer of, and the choices
    as made."""
    choices = {q: form.get(KEEP_FIELD + q) for q in asked}
    return {q for q, choice in choices.items() if choice == "theirs"}, choices


def unchosen(
    questions: Sequence[Question], asked: list[str], choices: Mapping[str, Any]
) -> dict[str, str]:
    """An error for each asked question without a choice."""
    return {
        q.id: f"Select which answer to keep for “{q.label}”"
        for q in questions
        if q.id in asked and choices.get(q.id) not in ("mine", "theirs")
    }


def carried(base: Base) -> dict[str, str]:
    """The hidden fields that carry a page's base."""
    return {VERSION_FIELD: str(base.version), BASE_FIELD: base.encoded()}


def read_base(form: FormData) -> Base:
    """The version and answers a page showed, as it posted them."""
    return Base.parse(form.get(VERSION_FIELD), form.get(BASE_FIELD))
