"""Prospectuses no test has seen before: made up at random when a test runs, with every question
type of the format in random order under random ids and labels. A new round is a new file and no
new code, so the portal must serve whatever comes."""

from __future__ import annotations

import io
import random
from datetime import date
from typing import Any

from ruamel.yaml import YAML

WORDS = [
    "housing",
    "health",
    "police",
    "skills",
    "families",
    "transport",
    "youth",
    "carers",
    "libraries",
    "parks",
    "waste",
    "energy",
    "community",
    "safety",
    "employment",
    "learning",
    "prevention",
    "recovery",
    "tenancy",
    "outreach",
]


def _words(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n)).capitalize()


def _ident(rng: random.Random, used: set[str]) -> str:
    while True:
        ident = f"{rng.choice(WORDS)}_{rng.randrange(16**4):04x}"
        if ident not in used:
            used.add(ident)
            return ident


def _scalar(kind: str, rng: random.Random, used: set[str]) -> dict[str, Any]:
    question: dict[str, Any] = {
        "id": _ident(rng, used),
        "label": _words(rng, rng.randint(3, 7)) + "?",
        "type": kind,
        "required": rng.random() < 0.7,
    }
    if rng.random() < 0.5:
        question["hint"] = _words(rng, 6) + "."
    if kind == "text":
        question["max_chars"] = rng.choice([80, 120, 200])
    elif kind == "textarea":
        question["max_words"] = rng.choice([50, 150, 300])
    elif kind == "number":
        question |= {"min": 0, "max": rng.choice([100, 1000, 50000])}
    elif kind == "money":
        question |= {"min": 0, "max": rng.choice([250000, 1500000])}
    elif kind == "date":
        question |= {"min": "2012-01-01", "max": "2013-12-31"}
    elif kind in ("choice", "multichoice"):
        question["options"] = sorted({_words(rng, 2) for _ in range(rng.randint(2, 5))})
    elif kind == "file":
        question |= {"accept": ["pdf"], "max_mb": 5, "required": False}
    return question


SCALARS = [
    "text",
    "textarea",
    "number",
    "money",
    "date",
    "yes_no",
    "choice",
    "multichoice",
    "email",
    "council",
    "file",
]


def prospectus(seed: int, *, opens: date, closes: date, decision: date) -> tuple[str, str]:
    """(slug, YAML text) of a round with one expression-of-interest form of random shape."""
    rng = random.Random(seed)
    used: set[str] = set()
    slug = f"unseen-{rng.randrange(16**6):06x}"
    kinds = SCALARS[:]
    rng.shuffle(kinds)
    questions = [_scalar(kind, rng, used) for kind in kinds]
    # a question asked only for one answer of an earlier yes/no
    gate = next(q for q in questions if q["type"] == "yes_no")
    follow = _scalar("textarea", rng, used)
    follow["show_if"] = {"question": gate["id"], "equals": True}
    questions.insert(questions.index(gate) + 1, follow)
    table = {
        "id": _ident(rng, used),
        "label": _words(rng, 4),
        "type": "table",
        "min_rows": 1,
        "max_rows": 10,
        "columns": [
            _scalar("text", rng, used) | {"required": True},
            _scalar("money", rng, used),
        ],
    }
    questions.insert(rng.randrange(len(questions) + 1), table)
    middle = len(questions) // 2
    sections = [
        {"id": _ident(rng, used), "title": _words(rng, 3), "questions": questions[:middle]},
        {"id": _ident(rng, used), "title": _words(rng, 3), "questions": questions[middle:]},
    ]
    document = {
        "format": 1,
        "id": slug,
        "title": f"{_words(rng, 3)} fund",
        "issued_by": "Department for Communities and Local Government",
        "summary": _words(rng, 20) + ".",
        "timezone": "Europe/London",
        "capacity": {"places": 3},
        "timetable": {
            "eoi": {"opens": opens.isoformat(), "closes": closes.isoformat()},
            "decision": {"by": decision.isoformat()},
        },
        "stages": {"eoi": {"form": {"sections": sections}}},
    }
    out = io.StringIO()
    YAML(typ="safe", pure=True).dump(document, out)
    return slug, out.getvalue()
