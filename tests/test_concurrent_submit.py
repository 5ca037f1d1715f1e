"""Two portal processes receiving the same submission at the same moment (a double click
answered by both of `cbflow serve`'s processes) record it once, on SQLite."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import example_text
from round_walk import EOI_DAY, LAUNCH_AT, SLUG, eoi_answers
from sqlmodel import select

from cbflow import stages
from cbflow.db import session_scope
from cbflow.models import AuditEvent
from cbflow.services import applications, rounds
from cbflow.settings import Settings

pytestmark = pytest.mark.slow

# one process: read the application, wait for the common moment, submit; prints whether this
# process's submission was the one recorded
SUBMITTER = """
import sys, time
from datetime import datetime
from cbflow.db import session_scope
from cbflow.services import applications
reference, at, start = sys.argv[1], datetime.fromisoformat(sys.argv[2]), float(sys.argv[3])
with session_scope() as session:
    application = applications.get_application(session, reference)
    time.sleep(max(0.0, start - time.time()))
    _, recorded = applications.submit(
        session, application=application, stage="eoi", actor="council:BIR", now=at
    )
print(recorded)
"""


def test_the_same_submission_posted_in_two_processes_at_once_is_recorded_once(
    cbflow_env: Settings, tmp_path: Path
) -> None:
    stages.launch(example_text(), "example.yaml", now=LAUNCH_AT)
    references = []
    for n in range(5):  # five races, each on an application of its own
        with session_scope() as session:
            round_ = rounds.get_round(session, SLUG)
            council = ["BIR", "BOL", "BRD", "MAN", "LDS"][n]
            application, _ = applications.start_application(
                session, round_=round_, council_code=council, actor="council", now=EOI_DAY
            )
            applications.save_draft(
                session,
                application=application,
                stage="eoi",
                answers=eoi_answers(council, "Join up services for families. " * 5),
                actor="council",
                now=EOI_DAY,
            )
            references.append(application.reference)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    for reference in references:
        start = time.time() + 3  # both processes have started and read the row by then
        racers = [
            subprocess.Popen(
                [sys.executable, "-c", SUBMITTER, reference, EOI_DAY.isoformat(), str(start)],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for _ in range(2)
        ]
        outcomes = []
        for racer in racers:
            out, err = racer.communicate(timeout=60)
            assert racer.returncode == 0, err
            outcomes.append(out.strip())
        assert sorted(outcomes) == ["False", "True"], f"{reference}: {outcomes}"
        with session_scope() as session:
            application = applications.get_application(session, reference)
            events = session.exec(
                select(AuditEvent).where(
                    AuditEvent.entity == "application",
                    AuditEvent.entity_id == application.id,
                    AuditEvent.to_state == "eoi_submitted",
                )
            ).all()
        assert application.eoi_submitted_at is not None
        assert len(events) == 1, f"{reference}: submitted {len(events)} times"
