"""The one way to change a state: check against the transition table, apply, audit."""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Session, col, select

from cbflow.errors import IllegalTransition
from cbflow.lifecycle import AppState, RoundState, app_move_allowed, round_move_allowed
from cbflow.models import Application, AuditEvent, Round


def record(
    session: Session,
    *,
    entity: str,
    entity_id: int,
    action: str,
    actor: str,
    now: datetime,
    reason: str = "",
    from_state: str | None = None,
    to_state: str | None = None,
) -> AuditEvent:
    """Write an audit event in the caller's transaction (it commits or rolls back with it)."""
    event = AuditEvent(
        entity=entity,
        entity_id=entity_id,
        action=action,
        from_state=from_state,
        to_state=to_state,
        actor=actor,
        reason=reason,
        at=now,
    )
    session.add(event)
    return event


def record_application(
    session: Session,
    application: Application,
    action: str,
    actor: str,
    now: datetime,
    reason: str = "",
) -> None:
    """Record an event about an application that changes no state (an action and its reason)."""
    assert application.id is not None
    record(
        session,
        entity="application",
        entity_id=application.id,
        action=action,
        actor=actor,
        now=now,
        reason=reason,
    )


def transition(
    session: Session,
    obj: Round | Application,
    target: RoundState | AppState,
    *,
    actor: str,
    now: datetime,
    reason: str = "",
) -> None:
    """Move a round or an application to `target`, or refuse with nothing changed.

    Persists, in this order: the new state on the object, then the audit event; both are
    flushed together so a failure leaves neither.
    """
    if isinstance(obj, Round):
        current_round = RoundState(obj.state)
        if not isinstance(target, RoundState) or not round_move_allowed(current_round, target):
            raise IllegalTransition(
                f"round {obj.slug}: cannot move from {current_round.value} to {target.value}"
            )
        entity = "round"
    else:
        current_app = AppState(obj.state)
        if not isinstance(target, AppState) or not app_move_allowed(current_app, target):
            raise IllegalTransition(
                f"application {obj.reference}: cannot move from {current_app.value} "
                f"to {target.value}"
            )
        entity = "application"
    if obj.id is None:
        session.add(obj)
        session.flush()
    assert obj.id is not None
    before = obj.state
    obj.state = target.value
    session.add(obj)
    record(
        session,
        entity=entity,
        entity_id=obj.id,
        action="transition",
        actor=actor,
        now=now,
        reason=reason,
        from_state=before,
        to_state=target.value,
    )
    session.flush()


def history(session: Session, entity: str, entity_id: int) -> list[AuditEvent]:
    statement = (
        select(AuditEvent)
        .where(AuditEvent.entity == entity, AuditEvent.entity_id == entity_id)
        .order_by(col(AuditEvent.id))
    )
    return list(session.exec(statement))
