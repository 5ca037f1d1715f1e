"""Prospectus questions as GOV.UK Frontend components, and posted form data back to answers.

A question's value travels in three shapes: the stored answer (cbflow.forms), what the form shows
and posts ("raw": strings as typed, so nothing typed is lost when a page comes back with errors),
and the parameters of the GOV.UK macro that draws it. Field names are the question ids; a date
posts `<id>-day`, `<id>-month`, `<id>-year`; a table cell posts `<id>-<row>-<column>` and the
table its row count in `<id>-rows`.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import tempfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any, BinaryIO

from starlette.datastructures import FormData, UploadFile

from cbflow.forms import char_limit, clean_text, row_limit
from cbflow.prospectus import (
    ChoiceQuestion,
    CouncilQuestion,
    FileQuestion,
    MultichoiceQuestion,
    Question,
    Section,
    TableQuestion,
    TextareaQuestion,
    TextQuestion,
)
from cbflow.services.councils import CouncilChoice
from cbflow.services.drafts import Base

# what a page carries besides its questions' fields (names no question id can have): the version
# of the draft it was drawn from, the digests of the answers it showed (cbflow.services.drafts),
# and, on a page that asks whose answer to keep, an upload kept from the first post
VERSION_FIELD = "_version"
BASE_FIELD = "_base"
UPLOAD_FIELD = "_upload-"
ASKED_FIELD = "_asked"  # the questions a conflict page asks whose answer to keep
KEEP_FIELD = "_keep-"  # + question id: "mine" or "theirs"

PDF_MAGIC = b"%PDF-"
MAGIC = {"pdf": PDF_MAGIC}
YES, NO = "yes", "no"


# ---------------------------------------------------------------------------------------------
# stored answer -> raw


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


# ---------------------------------------------------------------------------------------------
# uploads


FILE_MAX_MB = 10  # an upload's limit where its question gives none
CHUNK = 1024 * 1024  # an upload is hashed and copied this much at a time, never read whole


@dataclass
class Upload:
    """A file as posted: the web server has already spooled it to a temporary file."""

    name: str
    file: BinaryIO
    size: int

    @classmethod
    def of_bytes(cls, name: str, content: bytes) -> Upload:
        return cls(name, io.BytesIO(content), len(content))

    def head(self, length: int) -> bytes:
        self.file.seek(0)
        return self.file.read(length)

    def chunks(self) -> Iterator[bytes]:
        self.file.seek(0)
        while chunk := self.file.read(CHUNK):
            yield chunk


def upload_limit_mb(question: FileQuestion) -> Decimal:
    return question.max_mb or Decimal(FILE_MAX_MB)


def check_upload(question: FileQuestion, upload: Upload) -> None:
    """Type by extension and by content, and size: Unreadable if the file will not do."""
    suffix = upload.name.rsplit(".", 1)[-1].lower() if "." in upload.name else ""
    accepted = [a.lower().lstrip(".") for a in question.accept or []]
    if accepted and suffix not in accepted:
        raise Unreadable(f"the selected file must be a {' or '.join(a.upper() for a in accepted)}")
    limit = upload_limit_mb(question)
    if upload.size > limit * 1024 * 1024:
        raise Unreadable(f"the selected file must be smaller than {limit} MB")
    if not upload.size:
        raise Unreadable("the selected file is empty")
    magic = MAGIC.get(suffix)
    if magic and not upload.head(len(magic)) == magic:
        raise Unreadable(f"the selected file is not a real {suffix.upper()}")


def store_upload(folder: Path, upload: Upload) -> dict[str, Any]:
    """Keep an upload under its hash (never under the name it came with); returns its record.
    Copied a chunk at a time: however large, it is never held in memory whole."""
    folder.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=folder, prefix=".upload-", suffix=".part")
    digest = hashlib.sha256()
    try:
        with os.fdopen(handle, "wb") as out:
            for chunk in upload.chunks():
                digest.update(chunk)
                out.write(chunk)
        path = folder / digest.hexdigest()
        if path.exists():
            os.unlink(temporary)
        else:
            os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise
    safe_name = clean_text(Path(upload.name.replace("\\", "/")).name)[:200]
    return {"name": safe_name, "size": upload.size, "sha256": digest.hexdigest()}


async def read_upload(form: FormData, name: str) -> Upload | None:
    value = form.get(name)
    if not isinstance(value, UploadFile) or not value.filename:
        return None
    size = value.size if value.size is not None else _size_of(value.file)
    return Upload(name=value.filename, file=value.file, size=size)


def _size_of(file: BinaryIO) -> int:
    file.seek(0, os.SEEK_END)
    return file.tell()


async def read_uploads(form: FormData) -> dict[str, Upload]:
    """Every file posted, by field name (read before the questions are known)."""
    uploads = {}
    for name in {key for key, value in form.multi_items() if isinstance(value, UploadFile)}:
        upload = await read_upload(form, name)
        if upload is not None:
            uploads[name] = upload
    return uploads


def kept_upload(form: FormData, question_id: str, folder: Path) -> dict[str, Any] | None:
    """An upload's record carried by a page that asks whose answer to keep, if it is one of the
    application's stored files (a record naming anything else is ignored)."""
    value = form.get(UPLOAD_FIELD + question_id)
    try:
        kept = json.loads(value) if isinstance(value, str) and value else None
    except ValueError:
        return None
    if not isinstance(kept, dict) or set(kept) != {"name", "size", "sha256"}:
        return None
    digest = kept["sha256"]
    if not (isinstance(digest, str) and re.fullmatch(r"[0-9a-f]{64}", digest)):
        return None
    if not (folder / digest).is_file() or not isinstance(kept["size"], int):
        return None
    return {"name": clean_text(str(kept["name"]))[:200], "size": kept["size"], "sha256": digest}


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


# ---------------------------------------------------------------------------------------------
# raw -> GOV.UK macro parameters


@dataclass
class Field:
    """One question drawn with one GOV.UK macro (or, for a table, a fieldset of cells)."""

    macro: str
    params: dict[str, Any]
    question_id: str
    rows: list[list[Field]] | None = None  # a table's cells
    label: str = ""
    hint: str | None = None
    error: str | None = None
    max_rows: int | None = None


def field_message(question: Question, message: str) -> str:
    """A validation message as the field shows it: the label is already above the field."""
    prefix = f"{question.label}: "
    text = message.removeprefix(prefix)
    return text[:1].upper() + text[1:]


def error_anchor(question: Question) -> str:
    """The id of the input an error summary link goes to."""
    if isinstance(question, TableQuestion):
        return f"{question.id}-0-{question.columns[0].id}"
    if question.type == "date":
        return f"{question.id}-day"
    return question.id


def asks_for_council(questions: Iterable[Question]) -> bool:
    """Whether any of these questions, or a column of a table among them, is a choice of
    council (only then does a page need the register)."""
    return any(
        isinstance(q, CouncilQuestion)
        or (isinstance(q, TableQuestion) and asks_for_council(q.columns))
        for q in questions
    )


def section_fields(
    section: Section,
    raw: Mapping[str, Any],
    errors: Mapping[str, str],
    councils: Sequence[CouncilChoice],
) -> list[Field]:
    # show_if questions are not put in GOV.UK's conditional reveal: its script sets aria-expanded
    # on the radio inputs, which axe-core reports as a critical violation (aria-allowed-attr)
    fields = []
    for question in section.questions:
        hint = question.hint
        if question.show_if is not None:
            condition = f"Answer this only if your answer to “{_label_of(section, question)}” was "
            condition += f"“{_shown(question.show_if.equals)}”."
            hint = f"{hint} {condition}" if hint else condition
        fields.append(
            field_for(
                question,
                raw.get(question.id),
                field_message(question, errors[question.id]) if question.id in errors else None,
                councils,
                name=question.id,
                hint=hint,
            )
        )
    return fields


def _label_of(section: Section, question: Question) -> str:
    assert question.show_if is not None
    target = next((q for q in section.questions if q.id == question.show_if.question), None)
    return target.label if target is not None else question.show_if.question


def _shown(value: Any) -> str:
    if value is True:
        return "Yes"
    if value is False:
        return "No"
    return str(value)


def field_for(
    question: Question,
    raw: Any,
    error: str | None,
    councils: Sequence[CouncilChoice],
    *,
    name: str,
    hint: str | None,
    in_table: bool = False,
) -> Field:
    label: dict[str, Any] = {"text": question.label}
    if not in_table:
        label["classes"] = "govuk-label--s"
    common: dict[str, Any] = {"id": name, "name": name, "label": label}
    if hint:
        common["hint"] = {"text": hint}
    if error:
        common["errorMessage"] = {"text": error}
    legend = {"text": question.label, "classes": "" if in_table else "govuk-fieldset__legend--s"}
    fieldset = {"fieldset": {"legend": legend}}
    match question:
        case TableQuestion():
            rows_raw = raw if isinstance(raw, list) else []
            count = max(len(rows_raw), question.min_rows or 1, 1)
            rows = []
            for i in range(count):
                row_raw = rows_raw[i] if i < len(rows_raw) else {}
                rows.append(
                    [
                        field_for(
                            column,
                            row_raw.get(column.id, to_raw(column, None)),
                            None,
                            councils,
                            name=f"{name}-{i}-{column.id}",
                            hint=column.hint,
                            in_table=True,
                        )
                        for column in question.columns
                    ]
                )
            return Field(
                macro="table",
                params={"id": name, "name": name},
                question_id=question.id,
                rows=rows,
                label=question.label,
                hint=hint,
                error=error,
                max_rows=row_limit(question),
            )
        case TextareaQuestion():
            # every long answer says how long it may be: its own limit, or the default one
            limit = (
                {"maxwords": question.max_words}
                if question.max_words
                else {"maxlength": char_limit(question)}
            )
            return Field("govukCharacterCount", common | limit | {"value": raw or ""}, question.id)
        case TextQuestion():
            classes = "govuk-input--width-20" if in_table else ""
            return Field(
                "govukInput", common | {"value": raw or "", "classes": classes}, question.id
            )
        case ChoiceQuestion():
            items = [{"value": o, "text": o, "checked": raw == o} for o in question.options]
            if in_table:
                select_items = [{"value": "", "text": "Choose"}] + [
                    {"value": o, "text": o, "selected": raw == o} for o in question.options
                ]
                return Field("govukSelect", common | {"items": select_items}, question.id)
            return Field("govukRadios", _fieldset(common, fieldset) | {"items": items}, question.id)
        case MultichoiceQuestion():
            chosen = raw if isinstance(raw, list) else []
            items = [{"value": o, "text": o, "checked": o in chosen} for o in question.options]
            return Field(
                "govukCheckboxes", _fieldset(common, fieldset) | {"items": items}, question.id
            )
        case CouncilQuestion():
            allowed = question.council_types
            items = [{"value": "", "text": "Choose a council"}] + [
                {"value": c.code, "text": c.name, "selected": raw == c.code}
                for c in councils
                if allowed is None or c.type in allowed
            ]
            return Field("govukSelect", common | {"items": items}, question.id)
        case FileQuestion():
            kept = raw if isinstance(raw, Mapping) else None
            params = dict(common)
            notes = [hint] if hint else []
            notes.append(f"The file must be smaller than {upload_limit_mb(question)} MB.")
            if kept:
                size_kb = max(1, int(kept["size"]) // 1024)
                notes.append(f"Uploaded: {kept['name']} ({size_kb} KB).")
                notes.append("Choose a file to replace it.")
            params["hint"] = {"text": " ".join(notes)}
            if question.accept:
                params["attributes"] = {"accept": ",".join(f".{a}" for a in question.accept)}
            return Field("govukFileUpload", params, question.id)
    match question.type:
        case "number":
            return Field(
                "govukInput",
                common
                | {
                    "value": raw or "",
                    "inputmode": "decimal",
                    "spellcheck": False,
                    "classes": "govuk-input--width-10",
                },
                question.id,
            )
        case "money":
            return Field(
                "govukInput",
                common
                | {
                    "value": raw or "",
                    "inputmode": "decimal",
                    "spellcheck": False,
                    "prefix": {"text": "£"},
                    "classes": "govuk-input--width-10",
                },
                question.id,
            )
        case "email":
            return Field(
                "govukInput",
                common
                | {
                    "value": raw or "",
                    "type": "email",
                    "autocomplete": "email",
                    "spellcheck": False,
                },
                question.id,
            )
        case "date":
            parts = raw if isinstance(raw, Mapping) else {}
            error_class = " govuk-input--error" if error else ""
            items = [
                {
                    "name": part,
                    "label": part.capitalize(),
                    "value": parts.get(part, ""),
                    "classes": f"govuk-input--width-{width}{error_class}",
                }
                for part, width in (("day", 2), ("month", 2), ("year", 4))
            ]
            params = _fieldset(common, fieldset) | {"items": items, "namePrefix": name}
            params.setdefault("hint", {"text": "For example, 27 3 2011"})
            return Field("govukDateInput", params, question.id)
        case "yes_no":
            items = [
                {"value": YES, "text": "Yes", "checked": raw == YES},
                {"value": NO, "text": "No", "checked": raw == NO},
            ]
            params = _fieldset(common, fieldset) | {
                "items": items,
                "classes": "govuk-radios--inline",
            }
            return Field("govukRadios", params, question.id)
    raise ValueError(f"no component for question type {question.type}")


def _fieldset(common: dict[str, Any], fieldset: dict[str, Any]) -> dict[str, Any]:
    params = {k: v for k, v in common.items() if k not in ("label", "id")}
    params["idPrefix"] = common["id"]
    return params | fieldset


# ---------------------------------------------------------------------------------------------
# answers for display
