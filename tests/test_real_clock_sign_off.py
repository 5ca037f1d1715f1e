"""Sign-off against the real deadline, watched from outside: `cbflow serve` runs a round that asks
for sign-off of expressions of interest, closing a minute or so from now. One council's certifier
approves in time; another council's application is still waiting for its certifier when the
window closes. Nothing presses a deadline button: the scheduled run closes the window and sifts
the one submission; the one waiting is not submitted, and its certifier, too late, is refused.
The served portal warned of it beforehand (within 48 hours of the deadline)."""

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

from cbflow.db import session_scope
from cbflow.errors import DeadlinePassed
from cbflow.lifecycle import AppState, RoundState
from cbflow.models import Application, OutboxMessage, User
from cbflow.services import applications, rounds, signoff

pytestmark = pytest.mark.slow

SIGN_OFF = ("capacity:\n", "sign_off: {role: Chief executive, stages: [eoi]}\ncapacity:\n")


def _send(council: str, certifier: User) -> int:
    now = datetime.now(UTC)
    with session_scope() as session:
        application, _ = applications.start_application(
            session,
            round_=rounds.get_round(session, SLUG),
            council_code=council,
            actor=f"officer@{council.lower()}.gov.uk",
            now=now,
            answers=eoi_answers(council, "Join up services around families."),
        )
        signoff.send(
            session,
            application=application,
            stage="eoi",
            certifier_id=certifier.id,
            actor=f"officer@{council.lower()}.gov.uk",
            now=now,
        )
        assert application.id is not None
        return application.id


def _approve(application_id: int, certifier: User) -> None:
    with session_scope() as session:
        application = session.get(Application, application_id)
        person = session.get(User, certifier.id)
        assert application is not None and person is not None
        signoff.approve(
            session, application=application, stage="eoi", certifier=person, now=datetime.now(UTC)
        )


def _signed_in(portal: str, email: str) -> httpx.Client:
    client = httpx.Client(base_url=portal, timeout=10)
    page = client.get("/sign-in")
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert token is not None
    client.post("/sign-in", data={"email": email, "csrf_token": token.group(1)})
    with session_scope() as session:
        body = session.exec(
            select(OutboxMessage.body)
            .where(OutboxMessage.to == email)
            .order_by(col(OutboxMessage.id).desc())
        ).first()
    assert body is not None
    path = re.search(r"/sign-in/[\w-]+", body)
    assert path is not None
    landing = client.get(path.group(0))
    token = re.search(r'name="csrf_token" value="([^"]+)"', landing.text)
    assert token is not None
    client.post(path.group(0), data={"csrf_token": token.group(1)})
    return client


def test_only_what_the_certifier_approved_by_the_real_deadline_is_submitted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    served = Served(tmp_path / "data", PREFECT_RUNNER_POLL_FREQUENCY="2")
    configure(monkeypatch, served.data_dir)
    served.start()
    try:
        eoi_close = _minute_after(datetime.now(UTC), 50)
        path = tmp_path / f"{SLUG}.yaml"
        path.write_text(
            edit(_prospectus(eoi_close, eoi_close + timedelta(minutes=5)), SIGN_OFF),
            encoding="utf-8",
        )
        launched = served.cli("round", "launch", str(path))
        assert launched.returncode == 0, launched.stdout + launched.stderr

        birmingham_ceo = add_user("ceo@birmingham.gov.uk", "certifier", council="BIR")
        bolton_ceo = add_user("ceo@bolton.gov.uk", "certifier", council="BOL")
        on_time = _send("BIR", birmingham_ceo)
        waiting = _send("BOL", bolton_ceo)
        _approve(on_time, birmingham_ceo)

        # the served portal tells the certifier what the coming deadline means for it
        ceo = _signed_in(served.portal, "ceo@bolton.gov.uk")
        page = ceo.get(f"/sign-off/{waiting}/eoi")
        assert page.status_code == 200
        assert "unless the certifier approves it before then, it is not submitted" in page.text

        wait_for(
            lambda: _round_state() == RoundState.EOI_CLOSED,
            (eoi_close - datetime.now(UTC)).total_seconds() + 60,
            "the EOI deadline's scheduled run",
        )
        with session_scope() as session:
            references = {
                a.id: a.reference for a in session.exec(select(Application)) if a.id is not None
            }
        assert _state_of(references[on_time]) == AppState.SIFT_PASS
        assert _state_of(references[waiting]) == AppState.EOI_SIGN_OFF  # never submitted
        # the certifier, too late: refused, nothing changes, and the page says so
        with pytest.raises(DeadlinePassed):
            _approve(waiting, bolton_ceo)
        assert _state_of(references[waiting]) == AppState.EOI_SIGN_OFF
        after = ceo.get(f"/sign-off/{waiting}/eoi")
        assert "The deadline has passed" in after.text
        assert "Approve and submit" not in after.text
    finally:
        if served.process is not None:
            served.stop()
