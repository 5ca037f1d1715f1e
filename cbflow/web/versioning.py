"""Publishing a version of a place's model at a milestone, from the place's implementation page
or from staff's: the form (the milestone met, what changed in the place's words) and its post.

It is done in the request rather than by the publish-model flow: it records what a person typed,
so a stale page (another version published since), an empty or over-long account of what changed
or a milestone that is not open is answered at once with a 4xx that says so, and nothing is
published; the councils that adopted an earlier version are mailed once it has committed. The
version's pack is rendered by the next run that issues documents for the round (the returns
cycle), as rendering does not belong in a request."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlmodel import Session

from cbflow import notify
from cbflow.errors import CbflowError, ValidationFailed
from cbflow.formatting import long_date
from cbflow.models import Application, PublishedModel
from cbflow.services import implementation, replication
from cbflow.settings import Settings
from cbflow.wording import opening


@dataclass(frozen=True)
class VersionRow:
    """A version of the model, as the implementation pages list it."""

    id: int
    version: int
    published: str
    milestone: str
    changes: str


@dataclass(frozen=True)
class VersionForm:
    """The form publishing a version, as shown (with what was typed, and its errors)."""

    refusal: str | None  # why no version can be published now
    seen: int  # the latest version the page shows
    items: tuple[dict[str, Any], ...]  # the milestones met without a version, as radio items
    changes: str
    limit: int
    errors: Mapping[str, str] = field(default_factory=dict)
    problem: str | None = None  # a stale page or a refusal, said above the form

    @property
    def error_list(self) -> list[dict[str, str]]:
        return [{"text": text, "href": f"#{key}"} for key, text in self.errors.items()]


def version_rows(session: Session, application: Application) -> tuple[VersionRow, ...]:
    """Every version of the place's model, latest first."""
    assert application.id is not None
    titles = {m.milestone_id: m.title for m in implementation.milestones_of(session, application)}
    rows = []
    for model in reversed(replication.versions_of(session, application.id)):
        assert model.id is not None
        rows.append(
            VersionRow(
                id=model.id,
                version=model.version,
                published=long_date(model.published_at, replication.zone_of(session, model)),
                milestone=titles.get(model.milestone_id or "", "") if model.milestone_id else "",
                changes=model.changes,
            )
        )
    return tuple(rows)


def version_form(
    session: Session,
    application: Application,
    *,
    milestone: str = "",
    changes: str = "",
    errors: Mapping[str, str] | None = None,
    problem: str | None = None,
) -> VersionForm:
    latest = replication.latest_model(session, application)
    return VersionForm(
        refusal=replication.version_refusal(session, application),
        seen=latest.version if latest else 0,
        items=tuple(
            {
                "value": m.milestone_id,
                "text": m.title,
                "hint": {"text": f"Met on {long_date(m.met_on)}" if m.met_on else ""},
                "checked": m.milestone_id == milestone,
            }
            for m in replication.open_milestones(session, application)
        ),
        changes=changes,
        limit=replication.CHANGES_LIMIT,
        errors=errors or {},
        problem=problem,
    )


@dataclass(frozen=True)
class Posted:
    """What publishing a version did: the version, or the form to show again and its status."""

    model: PublishedModel | None
    form: VersionForm | None
    status: int
    mail: list[notify.Message]


def publish(
    session: Session,
    settings: Settings,
    application: Application,
    posted: Mapping[str, Any],
    *,
    actor: str,
    now: datetime,
) -> Posted:
    """Publish the posted version, or say why not (400: the form's errors; 409: a stale page, or
    no version can be published now). The adopters' e-mails are returned to be sent once the
    request has committed (without SMTP they are in the outbox already)."""
    milestone = str(posted.get("milestone", ""))[:200]
    changes = str(posted.get("changes", ""))
    seen_text = str(posted.get("seen", ""))[:20]
    if len(changes) > replication.CHANGES_LIMIT * 2:  # far past the limit: not kept to show
        changes = changes[: replication.CHANGES_LIMIT * 2]
    seen = int(seen_text) if seen_text.isdigit() else -1
    try:
        model = replication.publish_version(
            session,
            application=application,
            milestone_id=milestone,
            changes=changes,
            seen=seen,
            actor=actor,
            now=now,
        )
    except ValidationFailed as failed:
        form = version_form(
            session, application, milestone=milestone, changes=changes, errors=failed.errors
        )
        return Posted(None, form, 400, [])
    except CbflowError as exc:  # Stale, or nothing can be published now
        form = version_form(
            session, application, milestone=milestone, changes=changes, problem=opening(f"{exc}.")
        )
        return Posted(None, form, 409, [])
    mail = [
        message
        for message in replication.newer_messages(session, model, settings)
        if notify.send_after_commit(message, settings=settings, session=session, now=now)
    ]
    return Posted(model, None, 303, mail)
