"""A stage run as the Prefect UI shows it: its steps as task runs, the I/O ones retried, and a
retried run that resumes from the step that failed.

Through the real flow runner and Prefect server, with a real SMTP server that is stopped and
started: with the mail server down, `close-eoi`'s domain step and its receipts complete and its
mail task is retried and fails (and with it the run); with the server back, the run retried as
the Prefect UI's Retry does completes only what was left, the mail, without rendering anything
again, and each council's officer gets their receipt once.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
from prefect.client.schemas.objects import StateType
from prefect.settings import PREFECT_API_URL, temporary_settings
from prefect.states import AwaitingRetry
from sqlmodel import select
from test_receipts import DURING_EOI, applicant, launch, submitted_by
from test_sign_in import Inbox

from cbflow import flowruns
from cbflow.db import session_scope
from cbflow.models import Document, QueuedMail
from cbflow.services import rounds
from cbflow.settings import Settings, get_settings

pytestmark = pytest.mark.slow

COUNCILS = {"ESS": "pat@essex.gov.uk", "KEN": "sam@kent.gov.uk", "DEV": "jo@devon.gov.uk"}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def mail_server_port(cbflow_env: Settings, monkeypatch: pytest.MonkeyPatch) -> int:
    """The port the mail server will listen on; nothing listens there yet. The flow runner (and
    so every stage run) sends mail there, retrying an I/O step twice, one second apart."""
    port = _free_port()
    monkeypatch.setenv("CBFLOW_SMTP_HOST", "127.0.0.1")
    monkeypatch.setenv("CBFLOW_SMTP_PORT", str(port))
    monkeypatch.setenv("CBFLOW_STEP_RETRY_SECONDS", "1,1")
    get_settings.cache_clear()
    return port


@pytest.fixture
def inbox(mail_server_port: int) -> Iterator[tuple[Inbox, Controller]]:
    """The mail server, not started until the test starts it."""
    inbox = Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=mail_server_port)
    try:
        yield inbox, controller
    finally:
        if getattr(controller, "_thread", None) is not None:
            controller.stop()


def _wait_state(client: Any, run_id: Any, *types: StateType, timeout: float = 180) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run = client.read_flow_run(run_id)
        if run.state is not None and run.state.type in types:
            return run
        time.sleep(0.5)
    raise AssertionError(f"the run did not reach {types} in {timeout:.0f} s: {run.state}")


def _task_runs(client: Any, run_id: Any) -> list[Any]:
    runs: list[Any] = client.read_task_runs(
        flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run_id])), limit=200
    )
    return sorted(runs, key=lambda run: run.start_time or run.expected_start_time)


def _documents() -> dict[str, float]:
    """Each issued document's key, with its file's modification time."""
    root = get_settings().documents_dir
    with session_scope() as session:
        return {
            doc.key: (root / doc.path).stat().st_mtime_ns
            for doc in session.exec(select(Document).where(Document.kind == "eoi_receipt"))
        }


def test_a_stage_whose_mail_server_is_down_fails_at_its_mail_step_and_its_retry_only_mails(
    cbflow_env: Settings,
    mail_server_port: int,
    inbox: tuple[Inbox, Controller],
    flow_runner: Settings,
) -> None:
    received, mail_server = inbox
    slug = launch()
    for council, email in COUNCILS.items():
        applicant(email, council)
        submitted_by(slug, council, email)
    with session_scope() as session:
        prospectus = rounds.prospectus_of(rounds.get_round(session, slug))
    closes = prospectus.timetable.eoi.closes_at(prospectus.zone) + timedelta(minutes=1)
    assert closes > DURING_EOI

    run_id = flowruns.start(
        flow_runner,
        "close-eoi",
        {"slug": slug, "now": closes.isoformat()},
        name=f"{slug} · EOI close and sift",
        deployment=flowruns.DEADLINE,
    )
    with (
        temporary_settings(updates={PREFECT_API_URL: flow_runner.prefect_api_url}),
        get_client(sync_client=True) as client,
    ):
        failed = _wait_state(client, run_id, StateType.FAILED, StateType.COMPLETED)
        assert failed.state.type == StateType.FAILED, "the mail server was down"
        first = {run.name: run for run in _task_runs(client, run_id)}
        assert set(first) == {
            "extend the EOI deadline if the portal was degraded",
            "close EOI and sift",
            "receipts · 1-3 of 3",
            "mail",
        }
        assert first["close EOI and sift"].state.type == StateType.COMPLETED
        assert first["receipts · 1-3 of 3"].state.type == StateType.COMPLETED
        assert first["mail"].state.type == StateType.FAILED
        assert first["mail"].run_count == 3, "tried, then retried twice"
        assert first["close EOI and sift"].run_count == 1, "a domain step is never retried"
        issued = _documents()
        assert len(issued) == 3, "each receipt was rendered and recorded"
        with session_scope() as session:
            waiting = session.exec(select(QueuedMail).where(QueuedMail.sent_at == None)).all()  # noqa: E711
            assert sorted(m.to for m in waiting) == sorted(COUNCILS.values())
        assert received.messages == []

        mail_server.start()
        # what the Prefect UI's Retry does with a failed run
        client.set_flow_run_state(run_id, AwaitingRetry(), force=True)
        done = _wait_state(client, run_id, StateType.COMPLETED, StateType.FAILED)
        assert done.state.type == StateType.COMPLETED, done.state.message
        again = [run for run in _task_runs(client, run_id) if run.name not in first]
        retried = {run.name: run for run in _task_runs(client, run_id)}
        assert {run.name for run in again} == {"artifact"}, "nothing but the mail and the report"
        # the mail task of the retry is a task run of its own, beside the failed one
        mails = [r for r in _task_runs(client, run_id) if r.name == "mail"]
        assert [r.state.type for r in mails] == [StateType.FAILED, StateType.COMPLETED]
        assert retried["close EOI and sift"].id == first["close EOI and sift"].id
        assert [r.name for r in _task_runs(client, run_id)].count("receipts · 1-3 of 3") == 1

    assert _documents() == issued, "no receipt rendered again"
    assert sorted(m["To"] for m in received.messages) == sorted(COUNCILS.values())
    for message in received.messages:
        assert message.get_content_maintype() == "multipart", "the receipt is attached"
    with session_scope() as session:
        assert all(m.sent_at is not None for m in session.exec(select(QueuedMail)))
