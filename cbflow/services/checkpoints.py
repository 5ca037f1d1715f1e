"""The steps of a stage's flow run that finished, so that a retried run resumes after them.

A run of a stage under Prefect (see flows.steps) records each step it finishes, with what the
step returned (plain data), keyed by the flow run's id. Prefect retries a crashed or failed run
as the same run (on whichever worker takes it), so the retry finds the steps done before and
goes on from the one that failed. The record is in cbflow's database, which every worker
reaches; the domain never reads it.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select

from cbflow.db import session_scope
from cbflow.models import StageStep


def finished(run: str, step: str) -> tuple[bool, Any]:
    """Whether the run finished the step before, and what it returned."""
    with session_scope() as session:
        row = session.exec(
            select(StageStep).where(StageStep.run == run, StageStep.step == step)
        ).first()
        return (row is not None, row.result if row is not None else None)


def finished_like(run: str, prefix: str) -> list[tuple[str, Any]]:
    """The steps the run finished whose names start with `prefix`, in the order finished."""
    with session_scope() as session:
        rows = session.exec(
            select(StageStep)
            .where(StageStep.run == run, col(StageStep.step).startswith(prefix, autoescape=True))
            .order_by(col(StageStep.id))
        )
        return [(row.step, row.result) for row in rows]


def record(run: str, step: str, result: Any) -> None:
    """Record that the run finished the step. Recorded already (two attempts of the run raced:
    the first to finish stands), it is left as it is."""
    try:
        with session_scope() as session:
            session.add(StageStep(run=run, step=step, result=result, finished_at=datetime.now(UTC)))
    except IntegrityError:
        pass
