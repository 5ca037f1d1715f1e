"""Reopening against the real deadline, watched from outside: `cbflow serve` runs a round that
lets councils reopen their expressions of interest, closing a minute or so from now. One council
submits and leaves it; one reopens it through the served portal and submits it again in time;
one reopens it through the portal and does not submit it again. Nothing presses a deadline
button: the scheduled run closes the window and sifts the two submissions; the one reopened and
never submitted again is not sifted, and the portal tells its council why."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from conftest import configure, edit
from portal import add_user
from round_walk import eoi_answers
from served import Served, wait_for
from sqlmodel import col, select
from test_real_clock import SLUG, _minute_after, _prospectus, _round_state, _state_of
from test_real_clock_sign_off import _signed_in

from cbflow.db import session_scope
from cbflow.lifecycle import AppState, RoundState
from cbflow.models import Application, Submission
from cbflow.services import applications, rounds

pytestmark = pytest.mark.slow

REOPENING = ("capacity:\n", "reopening: {stages: [eoi]}\ncapacity:\n")


def _officer(council: str) -> str:
    return f"officer@{council.lower()}.gov.uk"


def _submit(council: str, application_id: int | None = None) -> int:
    """The council's EOI submitted now (started first, when not yet started)."""
    now = datetime.now(UTC)
    with session_scope() as session:
        if application_id is None:
            application, _ = applications.start_application(
                session,
                round_=rounds.get_round(session, SLUG),
                council_code=council,
                actor=_officer(council),
                now=now,
            )
        else:
            found = session.get(Application, application_id)
            assert found is not None
            application = found
        applications.submit(
            session,
            application=application,
            stage="eoi",
            answers=eoi_answers(council, "Join up services around families."),
            actor=_officer(council),
            now=now,
        )
        assert application.id is not None
        return application.id


def _reopen_in_the_portal(client: httpx.Client, application_id: int) -> None:
    page = client.get(f"/applications/{application_id}/eoi/reopen")
    assert page.status_code == 200
    assert "It will no longer count as submitted." in page.text
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert token is not None
    answer = client.post(
        f"/applications/{application_id}/eoi/reopen", data={"csrf_token": token.group(1)}
    )
    assert answer.status_code == 303, answer.text
    tasks = client.get(answer.headers["location"])
    assert "You reopened this expression of interest" in tasks.text
    assert "it is not submitted" in tasks.text


def test_a_reopened_eoi_not_submitted_again_by_the_real_deadline_is_not_sifted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    served = Served(tmp_path / "data", PREFECT_RUNNER_POLL_FREQUENCY="2")
    configure(monkeypatch, served.data_dir)
    served.start()
    try:
        eoi_close = _minute_after(datetime.now(UTC), 60)
        path = tmp_path / f"{SLUG}.yaml"
        path.write_text(
            edit(_prospectus(eoi_close, eoi_close + timedelta(minutes=5)), REOPENING),
            encoding="utf-8",
        )
        launched = served.cli("round", "launch", str(path))
        assert launched.returncode == 0, launched.stdout + launched.stderr

        for council in ("BIR", "BOL", "BRD"):
            add_user(_officer(council), "applicant", council=council)
        kept = _submit("BIR")
        again = _submit("BOL")
        left = _submit("BRD")

        bolton = _signed_in(served.portal, _officer("BOL"))
        _reopen_in_the_portal(bolton, again)
        _submit("BOL", again)  # changed its mind in time: version 2
        bradford = _signed_in(served.portal, _officer("BRD"))
        _reopen_in_the_portal(bradford, left)
        assert datetime.now(UTC) < eoi_close, "the test took too long to reach the deadline"

        wait_for(
            lambda: _round_state() == RoundState.EOI_CLOSED,
            (eoi_close - datetime.now(UTC)).total_seconds() + 60,
            "the EOI deadline's scheduled run",
        )
        with session_scope() as session:
            references = {
                a.id: a.reference for a in session.exec(select(Application)) if a.id is not None
            }
            versions = {
                (s.application_id, s.version): s.reopened_at is not None
                for s in session.exec(select(Submission).order_by(col(Submission.id)))
            }
        assert _state_of(references[kept]) == AppState.SIFT_PASS
        assert _state_of(references[again]) == AppState.SIFT_PASS
        assert _state_of(references[left]) == AppState.EOI_DRAFT  # never submitted again
        assert versions == {
            (kept, 1): False,
            (again, 1): True,
            (again, 2): False,
            (left, 1): True,
        }
        tasks = bradford.get(f"/applications/{left}/eoi")
        assert "was not submitted again by the deadline" in tasks.text
        assert "does not count as submitted" in tasks.text
        late = bradford.get(f"/applications/{kept}/eoi/reopen")
        assert late.status_code == 404  # Birmingham's, not Bradford's
    finally:
        if served.process is not None:
            served.stop()
