"""The followers' digest on the real clock, watched from outside: `cbflow serve` with its digest
deployment scheduled every 20 seconds (CBFLOW_DIGEST_SCHEDULE) and mail going to a real local SMTP
server. A Leeds officer signs in by the link that server receives and follows Birmingham, a
selected place, through the portal; runs come and go sending nothing, since nothing is new; then
Birmingham meets its milestone, and the next scheduled run mails the officer the digest that says
so, once."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from aiosmtpd.controller import Controller
from conftest import configure, free_port
from portal import add_user, csrf
from served import Served, wait_for
from sqlmodel import select
from test_following import meet_milestone, to_implementation
from test_sign_in import Inbox

from cbflow.db import session_scope
from cbflow.models import Follow

pytestmark = pytest.mark.slow

LEEDS = "ann@leeds.example"


def _mail(inbox: Inbox, to: str, subject: str) -> list[str]:
    found = []
    for message in inbox.messages:
        if message["To"] == to and str(message["Subject"]).startswith(subject):
            body = message.get_payload(decode=True)
            assert isinstance(body, bytes)
            found.append(body.decode().replace("\r\n", "\n"))
    return found


def test_a_scheduled_digest_run_mails_a_follower_what_its_place_has_done(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    inbox = Inbox()
    port = free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    served = Served(
        tmp_path / "data",
        PREFECT_RUNNER_POLL_FREQUENCY="2",
        CBFLOW_DIGEST_SCHEDULE="every 20 seconds",
        CBFLOW_SMTP_HOST="127.0.0.1",
        CBFLOW_SMTP_PORT=str(port),
    )
    configure(monkeypatch, served.data_dir)  # this process reads and writes the same database
    served.start()
    try:
        ids = to_implementation()  # Birmingham and Bolton selected, implementing
        add_user(LEEDS, "applicant", council="LDS", name="Ann Leeds")
        with httpx.Client(base_url=served.portal, timeout=30, follow_redirects=True) as client:
            client.post(
                "/sign-in", data={"email": LEEDS, "csrf_token": csrf(client.get("/sign-in").text)}
            )
            (link,) = wait_for(
                lambda: _mail(inbox, LEEDS, "Your link to sign in"), 60, "the sign-in link"
            )
            path = re.search(r"/sign-in/[\w-]+", link)
            assert path is not None
            client.post(path.group(0), data={"csrf_token": csrf(client.get(path.group(0)).text)})
            listing = client.get("/pilots").text
            assert "Birmingham" in listing
            follow = client.post(
                f"/pilots/{ids['BIR']}/follow",
                data={"csrf_token": csrf(listing), "back": "list"},
            )
            assert follow.status_code == 200 and "Following" in follow.text
        with session_scope() as session:
            (row,) = session.exec(select(Follow))
            assert row.council_code == "LDS"

        def runs() -> list[dict[str, object]]:
            return [
                r
                for r in served.flow_runs()
                if r["name"] == "followers' digest" and r["state_type"] == "COMPLETED"
            ]

        # at least one scheduled run after following finds nothing new, and sends nothing
        already = len(runs())
        wait_for(lambda: len(runs()) > already, 90, "a scheduled digest run")
        assert _mail(inbox, LEEDS, "What is new") == []

        met = datetime.now(UTC)
        meet_milestone(ids["BIR"], met.date(), met)
        (digest,) = wait_for(lambda: _mail(inbox, LEEDS, "What is new"), 90, "the digest")
        assert "Birmingham\n- Milestone met: Operational plan agreed" in digest
        assert f"{served.portal}/pilots/{ids['BIR']}" in digest
        # later runs send it no more
        seen = len(runs())
        wait_for(lambda: len(runs()) > seen + 1, 90, "two more scheduled runs")
        assert len(_mail(inbox, LEEDS, "What is new")) == 1
        with session_scope() as session:
            (row,) = session.exec(select(Follow))
            assert row.digested_until is not None and row.digested_until >= met
    finally:
        if served.process is not None:
            served.stop()
        controller.stop()
