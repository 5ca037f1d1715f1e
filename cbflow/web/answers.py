"""Answers as pages show them to people other than the council that gave them: assessors reading
the evidence for a criterion, councils reading a published model."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date
from typing import Any

from cbflow.forms import display_answer
from cbflow.prospectus import Prospectus, Question, TableQuestion


def question_of(prospectus: Prospectus, question_id: str) -> Question | None:
    """An EOI or bid question by id; where both forms ask it, the bid's (whose answer is read)."""
    for form in reversed(prospectus.applicant_forms()):
        question = form.question(question_id)
        if question is not None:
            return question
    return None


def answer_view(question: Question, value: Any, council_names: Mapping[str, str]) -> dict[str, Any]:
    """A table question's answer as a table of text; any other answer as its lines of text.
    Text, not markup: the page escapes it."""
    if isinstance(question, TableQuestion) and value:
        return {
            "table": {
                "head": [c.label for c in question.columns],
                "rows": [
                    [display_answer(c, row.get(c.id), council_names) for c in question.columns]
                    for row in value
                ],
            }
        }
    text = display_answer(question, value, council_names)
    return {"lines": text.splitlines() or ["Not answered"], "answered": bool(text)}


def long_date(day: date | str) -> str:
    """'1 April 2012'."""
    value = date.fromisoformat(day) if isinstance(day, str) else day
    return f"{value.day} {value:%B %Y}"
