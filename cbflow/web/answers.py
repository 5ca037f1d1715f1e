"""Answers as pages show them to people other than the council that gave them (assessors reading
the evidence for a criterion, councils reading a published model), and to a council's officer
whose save found a colleague's newer answers (both answers, to choose between)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from sqlmodel import Session, col, select

from cbflow.formatting import local_time
from cbflow.forms import display_answer
from cbflow.models import User
from cbflow.prospectus import Prospectus, Question, TableQuestion
from cbflow.services import councils as councils_service
from cbflow.services.drafts import Base, Stored
from cbflow.web import forms_ui


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


def names_of(session: Session, emails: set[str]) -> dict[str, str]:
    """People's names by e-mail address (an address with no account stands for itself)."""
    found = session.exec(select(User).where(col(User.email).in_(emails))).all() if emails else []
    return {e: e for e in emails} | {u.email: u.name for u in found}


def conflict_view(
    session: Session,
    prospectus: Prospectus,
    questions: Sequence[Question],
    stored: Stored,
    raw: Mapping[str, Any],
    asked: Sequence[str],
    shown: Base,
    *,
    errors: Mapping[str, str] | None = None,
    choices: Mapping[str, Any] | None = None,
    files: set[str] | None = None,
) -> dict[str, Any]:
    """What a page needs to ask whose answers to keep (templates/pages/application/
    conflict.html): for each asked question, who changed it and when (in the round's time
    zone), the person's answer as typed (`raw`) and the stored one, and radios to choose; and
    the hidden fields that carry everything the person's page posted with the draft's version
    and answers now (`shown`), so posting it saves their choice as their page would have, and
    can itself find newer changes."""
    errors = errors or {}
    changes = {q: change for q in asked if (change := stored.change_of(q)) is not None}
    people = names_of(session, {change[1] for change in changes.values()})
    councils = councils_service.council_names(session)
    items = []
    for question in questions:
        if question.id not in asked:
            continue
        _, by, at = changes.get(question.id) or (0, "", None)
        try:
            mine = forms_ui.from_raw(question, raw.get(question.id))
        except forms_ui.Unreadable:
            mine = None
        items.append(
            {
                "id": question.id,
                "label": question.label,
                "who": people.get(by) or "A colleague",
                "at": local_time(at, prospectus) if at else None,
                "mine": answer_view(question, mine, councils),
                "theirs": answer_view(question, stored.answers.get(question.id), councils),
                "choice": (choices or {}).get(question.id),
                "error": errors.get(question.id),
            }
        )
    hidden = [pair for q in questions for pair in forms_ui.raw_as_fields(q, raw.get(q.id))]
    for question_id in sorted(files or ()):  # uploads stay in the application's folder
        hidden.append((forms_ui.UPLOAD_FIELD + question_id, json.dumps(raw[question_id])))
    hidden.append((forms_ui.ASKED_FIELD, ",".join(asked)))
    hidden += list(forms_ui.carried(shown).items())
    return {
        "items": items,
        "people": sorted({item["who"] for item in items}),
        "hidden": hidden,
        "errors": errors,
        "error_list": [
            {"text": m, "href": f"#{forms_ui.KEEP_FIELD}{q}"} for q, m in errors.items()
        ],
    }
