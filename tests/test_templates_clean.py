"""Templates show what Python decided; they never decide by a state's name.

A page or document that compares a state, status or outcome with a string
(`{% if round.state == 'launched' %}`, `'govuk-tag--green' if d.outcome == 'selected'`) repeats
the lifecycle's rules in a second language, where a renamed or added state breaks it silently.
The code that builds the page's context gives it a boolean or a label and tag instead.

Run on its own with `pytest tests/test_templates_clean.py`: the failure lists every comparison
found, by template and line."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from portal import add_user, post, sign_in

from cbflow.lifecycle import AppState, RoundState
from cbflow.settings import Settings
from cbflow.web import create_app

TEMPLATES = Path(__file__).resolve().parents[1] / "templates"

# what a template must not decide by: a name that says it holds a state...
STATE_NAME = re.compile(r"state|status|outcome|stage", re.IGNORECASE)
# ...or one of the states and statuses the code gives them, whatever the name holding it
STATE_VALUES = frozenset(
    {s.value for s in RoundState}
    | {s.value for s in AppState}
    | {"overdue", "late", "due", "met", "on time", "not yet due"}
    | {"not started", "in progress", "submitted"}
)

# Comparisons of a form's own values, which are choices the page offers, not states: the radio
# that was chosen stays chosen when the form comes back with an error. Listed one by one.
FORM_VALUES = {
    ("pages/application/conflict.html", "item.choice"),  # "keep my answer" or "theirs"
}

_TAG = re.compile(r"\{%-?(.*?)-?%\}|\{\{-?(.*?)-?\}\}", re.DOTALL)
_STRING = r"""(?:'[^'\n]*'|"[^"\n]*")"""
_COMPARISON = re.compile(
    r"(?P<left>[A-Za-z_]\w*(?:\.\w+|\[\s*" + _STRING + r"\s*\])*)\s*"
    r"(?P<op>==|!=|\bnot\s+in\b|\bin\b|\bis\s+(?:not\s+)?(?:equalto|eq|ne|sameas)\b)\s*"
    r"(?P<right>" + _STRING + r"|[(\[]\s*" + _STRING + r"(?:\s*,\s*" + _STRING + r")*\s*,?\s*[)\]])"
)
_BY_ATTRIBUTE = re.compile(
    r"(?:select|reject)attr\(\s*(?P<quote>['\"])(?P<left>[\w.]+)(?P=quote)\s*,\s*"
    r"['\"](?P<op>equalto|eq|==|ne|!=|in)['\"]\s*,\s*(?P<right>[^)]*)\)"
)


@dataclass(frozen=True)
class Comparison:
    template: str  # relative to templates/
    line: int
    text: str

    def __str__(self) -> str:
        return f"templates/{self.template}:{self.line}: {self.text}"


def _literals(right: str) -> set[str]:
    return {m.group(0)[1:-1] for m in re.finditer(_STRING, right)}


def _names_a_state(left: str) -> bool:
    last = re.split(r"[.\[]", left.replace("]", ""))[-1].strip("'\" ")
    return bool(STATE_NAME.search(last))


def state_comparisons(source: str, template: str = "") -> list[Comparison]:
    """Every comparison in a template's Jinja tags of a state with a string."""
    found = []
    for tag in _TAG.finditer(source):
        body = tag.group(1) if tag.group(1) is not None else tag.group(2)
        start = tag.start(1) if tag.group(1) is not None else tag.start(2)
        for match in (*_COMPARISON.finditer(body), *_BY_ATTRIBUTE.finditer(body)):
            left, right = match.group("left"), match.group("right")
            if left.startswith("form.") or (template, left) in FORM_VALUES:
                continue
            if not (_names_a_state(left) or _literals(right) & STATE_VALUES):
                continue
            line = source.count("\n", 0, start + match.start()) + 1
            found.append(Comparison(template, line, " ".join(match.group(0).split())))
    return found


def all_state_comparisons(root: Path = TEMPLATES) -> list[Comparison]:
    """Every state compared with a string in the pages, documents and emails."""
    found = []
    for path in sorted(root.rglob("*")):
        if path.is_file() and path.suffix in {".html", ".txt"}:
            found += state_comparisons(
                path.read_text(encoding="utf-8"), path.relative_to(root).as_posix()
            )
    return found


# ---------------------------------------------------------------------------------------------
# the check itself


def test_no_template_compares_a_state_with_a_string() -> None:
    found = all_state_comparisons()
    assert not found, (
        "These templates compare a state, status or outcome with a string. Give the template "
        "a boolean, or a label and tag, computed where its context is built:\n"
        + "\n".join(str(c) for c in found)
    )


# ---------------------------------------------------------------------------------------------
# what the check finds, and what it lets be


@pytest.mark.parametrize(
    "source",
    [
        "{% if round.state == 'launched' %}x{% endif %}",
        '{% elif outcome == "reserve" %}',
        "{% if period_return.status in ('overdue', 'late') %} tag--red{% endif %}",
        "{% if application.state not in ['withdrawn'] %}",
        "{{ govukTag({'classes': 'govuk-tag--green' if d.outcome == 'selected' else ''}) }}",
        "{% if x.assignment.state != 'submitted' %}",
        "{% if row['status'] == 'due' %}",
        "{% if stage is equalto 'bid' %}",
        "{% for r in returns | selectattr('status', 'equalto', 'late') %}",
        # a name that hides the state: its value gives it away
        "{% if s == 'overdue' %}{% elif s == 'submitted' %}{% endif %}",
        "{%- if app.kind == 'under_assessment' -%}",
    ],
)
def test_a_state_compared_with_a_string_is_found(source: str) -> None:
    assert state_comparisons(source, "pages/example.html")


@pytest.mark.parametrize(
    "source",
    [
        "{% if milestone.overdue %} tag--red{% endif %}",
        "{{ govukTag(item.tag) }}",
        "{% if f.macro == 'govukInput' %}",
        "{% if person.id == me.id %}",
        "{{ 'criterion' if d.count == 1 else 'criteria' }}",
        "{% for state in states %}{{ state }}{% endfor %}",
        "{% if prospectus.timezone == 'Europe/London' %}",
        "{{ form.role == 'staff' }}",
        "<p>The status == 'late' here is text, not Jinja.</p>",
    ],
)
def test_what_is_not_a_state_comparison_is_let_be(source: str) -> None:
    assert state_comparisons(source, "pages/example.html") == []


def test_a_form_value_listed_as_one_is_let_be() -> None:
    source = "{{ {'checked': item.choice == 'mine'} }}"
    assert state_comparisons(source, "pages/application/conflict.html") == []
    # the same name elsewhere is not exempt if it compares a state's value
    assert state_comparisons("{% if item.choice == 'selected' %}", "pages/other.html")


def test_the_line_of_each_comparison_is_given() -> None:
    source = "<p>\n</p>\n{% if a %}\n{% elif round.state == 'launched' %}\n{% endif %}"
    [found] = state_comparisons(source, "pages/x.html")
    assert (found.line, str(found)) == (
        4,
        "templates/pages/x.html:4: round.state == 'launched'",
    )


# ---------------------------------------------------------------------------------------------
# a page that chose by a form's value now gets its choices made


def test_the_people_page_keeps_the_role_chosen_when_the_form_comes_back(
    cbflow_env: Settings,
) -> None:
    add_user("admin@example.gov.uk", "admin", name="Ada Admin")
    with TestClient(create_app(cbflow_env)) as client:
        sign_in(client, "admin@example.gov.uk")
        page = client.get("/admin/people")
        assert page.status_code == 200 and "checked" not in page.text
        answer = post(client, "/admin/people", data={"email": "", "name": "", "role": "assessor"})

    assert answer.status_code == 400
    checked = re.findall(r'<input[^>]*value="(\w+)"[^>]*checked', answer.text)
    assert checked == ["assessor"]
    assert 'action="/admin/people"' in answer.text


def test_no_template_capitalizes_what_names_people_or_places() -> None:
    """Jinja's `capitalize` lowers every letter after the first: "Kensington and chelsea", "(gmt)".
    Sentences that begin with a name are capitalised in Python, first letter only."""
    found = [
        f"{path.relative_to(TEMPLATES)}:{number}"
        for path in sorted(TEMPLATES.rglob("*"))
        if path.suffix in (".html", ".txt")
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if re.search(r"\|\s*capitalize\b", line)
    ]
    assert found == []
