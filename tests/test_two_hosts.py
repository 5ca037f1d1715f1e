"""cbflow on several hosts, one of them lost in the middle of a stage.

Four network namespaces on this machine stand for four hosts (tests/hosts.py): "db" holds
PostgreSQL (cbflow's database and Prefect's) and the Prefect server; "w1" and "w2" each run a
plain `prefect worker start --pool cbflow`; "portal" runs a portal process. Each reaches the others
only over the link. The hosts share this machine's files, so each is given a data folder of its
own and the documents go to the shared store (`CBFLOW_STORE=database`): nothing may rely on a
folder another host happens to see.

`cbflow deploy` registers the deployments against the server. The 2011 whole-place round is
launched, its EOIs are sent, and its stages run as deployment runs created through Prefect's API.
While "Confirm the shortlist and issue invitations" renders its letters (one for every council
that sent an EOI) on w1, w1 is lost: SIGKILL to every process on it. The run must be marked
crashed, retried as the same flow run on w2 and completed there, resuming from the step that
failed: the letters issued before the loss are kept as they were, every council has exactly one
letter, and no message is sent twice.

Skipped, saying why, until `cbflow deploy` exists (the command that creates the work pool and
registers the deployments against PREFECT_API_URL).
"""

from __future__ import annotations

import subprocess
from collections import Counter
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import hosts
import httpx
import pytest
import two_hosts
from conftest import configure
from sqlmodel import col, select
from two_hosts import PREFECT, PYTHON, clean_env, wait_for

from cbflow.db import session_scope
from cbflow.flowlist import CLOSE_EOI, INVITE_TO_BID, LAUNCH_ROUND, FlowSpec
from cbflow.lifecycle import AppState, RoundState
from cbflow.models import Application, AuditEvent, Document, OutboxMessage
from cbflow.prospectus import load
from cbflow.services import councils, rounds, sift

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

ROOT = Path(__file__).resolve().parent.parent
PROSPECTUS = ROOT / "prospectus" / "whole-place-2011.yaml"
CBFLOW = str(Path(PYTHON).parent / "cbflow")
POOL = "cbflow"  # CBFLOW_WORK_POOL's default
LETTERS = ("invitation", "regret")
EOIS = 120  # councils sending an EOI: enough letters for the stage to be caught half done
SEED = 2011


def deploy_exists() -> bool:
    done = subprocess.run([CBFLOW, "deploy", "--help"], capture_output=True, text=True)
    return done.returncode == 0


@pytest.fixture
def network(tmp_path: Path) -> Iterator[hosts.Network]:
    if not deploy_exists():
        pytest.skip(
            "`cbflow deploy` does not exist yet: this test runs a round's stages as deployment "
            "runs on workers of the pool it creates"
        )
    try:
        hosts.check_available()
    except hosts.Unavailable as exc:
        pytest.skip(f"no network namespaces here: {exc}")
    with hosts.network(["db", "w1", "w2", "portal"], tmp_path / "logs") as net:
        yield net


def _run_stage(
    prefect: two_hosts.Prefect, spec: FlowSpec, parameters: dict[str, Any], timeout: float = 300
) -> dict[str, Any]:
    assert spec.deployment is not None
    run_id = prefect.run_deployment(prefect.deployment_id(spec.name, spec.deployment), parameters)
    return prefect.wait_state(run_id, two_hosts.FINAL, timeout)


def _letters(slug: str) -> list[tuple[str, int | None, int | None]]:
    """(key, application, row) of the stage's letters, as recorded."""
    with session_scope() as session:
        round_ = rounds.get_round(session, slug)
        documents = session.exec(
            select(Document)
            .where(Document.round_id == round_.id)
            .where(col(Document.kind).in_(LETTERS))
        ).all()
        return sorted((d.key, d.application_id, d.id) for d in documents)


def test_a_stage_survives_the_loss_of_its_worker(
    network: hosts.Network, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    net = network
    with two_hosts.postgres(net, "db", ("cbflow", "prefect")) as pg:
        prefect = two_hosts.prefect_server(net, "db", f"{pg}/prefect", tmp_path / "prefect-db")
        prefect.crash_silent_runs(within=60)  # until `cbflow deploy` makes its own
        database = f"{pg}/cbflow"

        def host_env(role: str) -> dict[str, str]:
            return clean_env(
                CBFLOW_DATABASE_URL=database,
                CBFLOW_DATA_DIR=str(tmp_path / f"data-{role}"),  # each host its own folder
                CBFLOW_STORE="database",
                CBFLOW_WORK_POOL=POOL,
                PREFECT_API_URL=prefect.api_url,
                PREFECT_FLOWS_HEARTBEAT_FREQUENCY="30",
                PREFECT_WORKER_QUERY_SECONDS="2",
            )

        portal = two_hosts.portal(
            net, "portal", database, tmp_path / "data-portal", CBFLOW_STORE="database"
        )
        net.run("portal", [CBFLOW, "deploy"], host_env("portal"), timeout=300)
        for role in ("w1", "w2"):
            (tmp_path / f"data-{role}").mkdir()
        net.start("w1", "worker-w1", [PREFECT, "worker", "start", "--pool", POOL], host_env("w1"))
        wait_for("worker on w1", lambda: prefect.workers(POOL), 120)

        # the desk: staff and councils, through the domain, on the same database
        configure(monkeypatch, tmp_path / "data-desk", database)
        monkeypatch.setenv("CBFLOW_STORE", "database")
        prospectus = load(PROSPECTUS)
        slug = prospectus.id
        zone = prospectus.zone
        eoi = prospectus.timetable.eoi
        opened = eoi.opens_at(zone)

        launched = _run_stage(
            prefect,
            LAUNCH_ROUND,
            {
                "source": PROSPECTUS.read_text(encoding="utf-8"),
                "path": str(PROSPECTUS),
                "now": opened.isoformat(),
            },
        )
        assert launched["state_type"] == "COMPLETED", launched["state"]

        from cbflow import simulate

        with session_scope() as session:
            round_ = rounds.get_round(session, slug)
            eligible = councils.eligible_councils(session, prospectus)
            field_ = sorted(eligible, key=lambda c: c.code)[:EOIS]
            midway = opened + (eoi.closes_at(zone) - opened) / 2
            sent = simulate.submit_eois(
                session, round_=round_, councils=field_, now=midway, seed=SEED
            )
        assert sent == len(field_)

        closed = _run_stage(
            prefect, CLOSE_EOI, {"slug": slug, "now": eoi.closes_at(zone).isoformat()}
        )
        assert closed["state_type"] == "COMPLETED", closed["state"]
        with session_scope() as session:
            round_ = rounds.get_round(session, slug)
            simulate.review_referrals(session, round_=round_, now=eoi.closes_at(zone), seed=SEED)
            applicants = {
                a.id
                for a in session.exec(
                    select(Application).where(Application.round_id == round_.id)
                ).all()
            }
        outbox_before = _outbox()

        # the stage with a letter for every council, killed with its host half way through
        bid = prospectus.timetable.bid
        assert bid is not None
        invite_at: datetime = bid.opens_at(zone)
        assert INVITE_TO_BID.deployment is not None
        run_id = prefect.run_deployment(
            prefect.deployment_id(INVITE_TO_BID.name, INVITE_TO_BID.deployment),
            {"slug": slug, "now": invite_at.isoformat()},
        )

        def half_done() -> bool:
            """The shortlist is confirmed (the stage's domain step) and letters are still to
            come: the stage is rendering them."""
            with session_scope() as session:
                state = rounds.get_round(session, slug).state
            return state == RoundState.BIDS_INVITED and len(_letters(slug)) < len(applicants)

        wait_for("the shortlist confirmed on w1", half_done, 300, 0.1)
        assert two_hosts.flow_process(net, "w1", run_id) is not None, "not running on w1"
        net.crash("w1")
        assert not net.pids("w1")
        before = _letters(slug)
        assert len(before) < len(applicants), "the stage ended before w1 was lost"

        net.start("w2", "worker-w2", [PREFECT, "worker", "start", "--pool", POOL], host_env("w2"))
        finished = prefect.wait_state(run_id, two_hosts.FINAL, timeout=600)
        assert finished["state_type"] == "COMPLETED", finished["state"]
        assert run_id in net.log("worker-w2")  # w2 took it up: w1 has been gone throughout
        states = prefect.states(run_id)
        assert "Crashed" in states, states  # the same flow run: crashed, then retried

        with session_scope() as session:
            round_ = rounds.get_round(session, slug)
            told = {a.id for a in rounds.applications_of(session, round_, AppState.INVITED)}
            told |= {a.id for a in sift.regretted(session, round_)}
            moved = Counter(
                event.entity_id
                for event in session.exec(
                    select(AuditEvent)
                    .where(AuditEvent.entity == "application")
                    .where(col(AuditEvent.to_state).in_([AppState.INVITED, AppState.UNSUCCESSFUL]))
                ).all()
            )
        assert told == applicants  # every council that sent an EOI is told, one way or the other
        assert set(moved.values()) <= {1}  # the domain step ran once, not again on the retry

        after = _letters(slug)
        assert set(before) <= set(after)  # issued before the loss: kept as they were
        keys = Counter(key for key, _, _ in after)
        assert all(count == 1 for count in keys.values())
        per_application = Counter(application for _, application, _ in after)
        assert set(per_application) == told  # nothing lost: every council has its letter
        assert set(per_application.values()) == {1}  # and only one
        outbox = _outbox()
        assert all(count == 1 for count in outbox.values()), "a message was sent twice"
        assert set(outbox_before) <= set(outbox)

        # the portal, on a host of its own, kept answering throughout
        assert httpx.get(f"{portal}/healthz").text == "ok"


def _outbox() -> Counter[tuple[str, str, str]]:
    with session_scope() as session:
        messages = session.exec(select(OutboxMessage)).all()
        return Counter((m.to, m.subject, m.body) for m in messages)
