"""Prospectus questions as GOV.UK Frontend components: each question's raw value drawn with the
macro that shows it."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from cbflow.forms import char_limit, row_limit
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
from cbflow.web.forms_ui.raw import NO, YES, to_raw
from cbflow.web.forms_ui.uploads import upload_limit_mb
from cbflow.wording import opening

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
    return opening(text)


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
