"""Drafts that several people of one council edit at once: versions, who changed what, and how a
page's answers are merged into the draft as it is in the database when they are written.

A draft (an application's EOI or bid, a return not yet submitted) has one version, a number that
every save changing its answers adds one to, and a small history: for each question, the version
at which its answer last changed, who changed it and when (`{question: {"version", "by",
"at"}}`). One version per draft rather than one per section: a page says which version it was
drawn from, and the history says which of its questions changed after that, so a colleague's save
of another section (or of another question of the same section) is never held against it.

A page carries its `Base`: the version it was drawn from and a digest of each answer as it
showed it, so a save can tell the answers the person changed from the ones they left as shown.
Saving, for each of the page's questions whose answer differs from the stored one:

- left as shown: not written (the stored answer, perhaps a colleague's newer one, stands);
- changed by the person, and changed by nobody else since the page's version: written;
- changed by the person, and by someone else since (to another answer): a conflict. Nothing at
  all is written and the person chooses, question by question, whose answer to keep.

The row is read afresh under a lock before the merge (`cbflow.db.lock_for_update`), never from
what was read when the request began, so two saves at the same moment are applied one after the
other.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from cbflow.errors import CbflowError


def digest(value: Any) -> str:
    """A short digest of an answer (None: no answer), for a page to say what it showed."""
    encoded = json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(encoded.encode()).hexdigest()[:16]


def digests(answers: Mapping[str, Any], questions: Collection[str]) -> dict[str, str]:
    return {q: digest(answers.get(q)) for q in questions}


@dataclass(frozen=True)
class Base:
    """What a page showed: the draft's version it was drawn from, and each answer's digest."""

    version: int
    digests: Mapping[str, str] = field(default_factory=dict)

    def as_shown(self, question_id: str, value: Any) -> bool:
        """Whether the person left this answer as the page showed it."""
        return self.digests.get(question_id) == digest(value)

    def encoded(self) -> str:
        return json.dumps(dict(self.digests), sort_keys=True, separators=(",", ":"))

    @classmethod
    def parse(cls, version: object, encoded: object) -> Base:
        """A page's base as it posted it; anything unreadable is version 0 with no digests,
        which treats every answer as changed by the person and every change as unseen: the
        safe side, a conflict rather than a lost answer."""
        try:
            number = max(0, int(str(version)))
        except ValueError:
            number = 0
        try:
            decoded = json.loads(str(encoded)) if encoded else {}
        except ValueError:
            decoded = {}
        if not isinstance(decoded, dict):
            decoded = {}
        return cls(number, {str(k): str(v) for k, v in decoded.items()})


@dataclass(frozen=True)
class Change:
    """Someone else's change to a question since a page's version."""

    question_id: str
    by: str  # the e-mail address of whoever changed it
    at: datetime
    theirs: Any  # the stored answer (None: no answer)
    mine: Any  # the answer this save gave


class EditConflict(CbflowError):
    """A save from a page drawn before a colleague changed some of the same answers. Nothing was
    written. `changes` lists the answers that differ; `version` is the draft's version now."""

    def __init__(self, changes: list[Change], version: int, unseen: list[Change]) -> None:
        self.changes = changes
        self.version = version
        self.unseen = unseen  # changes to answers the person left as shown: theirs stand
        names = ", ".join(c.question_id for c in changes)
        super().__init__(f"changed by someone else since this page was drawn: {names}")


@dataclass
class Stored:
    """A draft as it is in the database: answers, version and each answer's last change."""

    answers: dict[str, Any]
    version: int
    changes: dict[str, Any]

    def change_of(self, question_id: str) -> tuple[int, str, datetime] | None:
        entry = self.changes.get(question_id)
        if not isinstance(entry, Mapping):
            return None
        return int(entry["version"]), str(entry["by"]), datetime.fromisoformat(str(entry["at"]))


@dataclass(frozen=True)
class Saved:
    """What a save did: the version the page is now at, the questions whose answer it changed
    (in the form's order), colleagues' changes the page does not show because the person left
    those answers alone (the colleague's answer stands), and the digests of the answers the
    page now shows (for its next save's base)."""

    version: int
    changed: list[str]
    unseen: list[Change]
    digests: dict[str, str] = field(default_factory=dict)


def merge(
    stored: Stored,
    given: Mapping[str, Any],
    questions: Collection[str],
    base: Base | None,
    actor: str,
    *,
    strict: bool = False,
) -> tuple[dict[str, Any], list[Change]]:
    """The stored answers with this page's answers to `questions` put in (None: no answer),
    and the colleagues' changes kept because the person left those answers as shown; raises
    EditConflict, having changed nothing, where the person and someone else both changed an
    answer since the page's version. No base (a script, not a page): every answer is written.

    `strict` (a submission, which must be what the person checked): any answer changed by
    someone else since the page's version conflicts, changed by the person or not."""
    draft = dict(stored.answers)
    unseen: list[Change] = []
    conflicts: list[Change] = []
    for question_id in questions:
        mine, theirs = given.get(question_id), stored.answers.get(question_id)
        if mine == theirs:
            continue
        change = stored.change_of(question_id)
        since = (
            base is not None
            and change is not None
            and change[0] > base.version
            and change[1] != actor  # one's own save from another tab is not a colleague's
        )
        if since:
            assert change is not None
            found = Change(question_id, change[1], change[2], theirs, mine)
            if base is not None and base.as_shown(question_id, mine) and not strict:
                unseen.append(found)
            else:
                conflicts.append(found)
            continue
        if base is not None and base.as_shown(question_id, mine):
            continue  # left as shown: what is stored now stands
        if mine is None:
            draft.pop(question_id, None)
        else:
            draft[question_id] = mine
    if conflicts:
        raise EditConflict(conflicts, stored.version, unseen)
    return draft, unseen


def changed_questions(
    before: Mapping[str, Any], after: Mapping[str, Any], order: list[str]
) -> list[str]:
    """The questions whose answer differs, in the form's order (then any others)."""
    differ = {q for q in before.keys() | after.keys() if before.get(q) != after.get(q)}
    return [q for q in order if q in differ] + sorted(differ - set(order))


def next_changes(
    stored: Stored, changed: list[str], actor: str, now: datetime
) -> tuple[int, dict[str, Any]]:
    """The version after a save that changed these questions, and the history with them."""
    version = stored.version + 1
    entry = {"version": version, "by": actor, "at": now.isoformat()}
    return version, {**stored.changes, **{q: dict(entry) for q in changed}}


def page_version(base: Base | None, unseen: list[Change], version: int) -> int:
    """The version a page is at after its save: the draft's, unless colleagues' changes it does
    not show were kept, when it stays at its own (so those answers, if the person now changes
    them, conflict rather than overwrite)."""
    if unseen and base is not None:
        return base.version
    return version


def reason(changed: list[str]) -> str:
    """The audit event's reason for a save: the questions it changed."""
    return "changed: " + ", ".join(changed)
