"""The programme board's pack on the real clock, watched from outside: `cbflow serve` with the
pack's schedule set to every 20 seconds produces the month's pack by itself (once, whatever
runs again that month), and staff produce one on demand from the board page; both are listed
there and open."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from conftest import configure
from fastapi.testclient import TestClient
from portal import add_user, post, sign_in
from served import Served, wait_for
from sqlmodel import col, select
from test_real_clock import SLUG, _minute_after, _prospectus

from cbflow.db import session_scope
from cbflow.models import AuditEvent, BoardPack
from cbflow.settings import get_settings
from cbflow.web import create_app

pytestmark = pytest.mark.slow


def _packs() -> list[BoardPack]:
    with session_scope() as session:
        return list(session.exec(select(BoardPack).order_by(col(BoardPack.id))))


def test_a_scheduled_run_produces_the_months_pack_and_staff_produce_one_on_demand(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    served = Served(
        tmp_path / "data",
        PREFECT_RUNNER_POLL_FREQUENCY="2",
        CBFLOW_BOARD_PACK_SCHEDULE="every 20 seconds",
    )
    configure(monkeypatch, served.data_dir)  # this process reads the same database
    served.start()
    try:
        eoi_close = _minute_after(datetime.now(UTC), 600)
        path = tmp_path / f"{SLUG}.yaml"
        path.write_text(_prospectus(eoi_close, eoi_close + timedelta(minutes=5)), "utf-8")
        launched = served.cli("round", "launch", str(path))
        assert launched.returncode == 0, launched.stdout + launched.stderr

        # nobody asks: the scheduled run issues the month's pack
        (scheduled,) = wait_for(_packs, 90, "the scheduled board pack")
        assert len(scheduled.key) == 7 and scheduled.key[4] == "-", scheduled.key
        assert scheduled.created_by == "system:cbflow"
        assert (served.data_dir / "documents" / scheduled.path).is_file()
        with session_scope() as session:
            issued = session.exec(select(AuditEvent).where(AuditEvent.entity == "board_pack")).all()
        assert [e.entity_id for e in issued] == [scheduled.id]

        # staff ask for one now, from the board page: a run of the same deployment
        add_user("lead@staff.example", "staff")
        settings = get_settings().model_copy(update={"prefect_api_url": served.api})
        with TestClient(create_app(settings)) as staff:
            sign_in(staff, "lead@staff.example")
            started = post(staff, "/staff/board", "/staff/board/packs", data={"nonce": "n1"})
            assert started.status_code == 303, started.text
            assert started.headers["location"].startswith("/staff/runs/")
            wait_for(lambda: len(_packs()) == 2, 90, "the pack asked for")
            # the schedule ran again meanwhile: the month's pack is still the only one of its key
            first, demanded = _packs()
            assert first.key == scheduled.key
            assert demanded.key.endswith("on demand") and demanded.created_by == (
                "lead@staff.example"
            )
            page = staff.get("/staff/board").text
            assert f"{scheduled.key} (PDF)" in page and f"{demanded.key} (PDF)" in page
            assert SLUG in staff.get("/staff/board.csv").text
            pdf = staff.get(f"/staff/board/packs/{demanded.id}")
            assert pdf.status_code == 200 and pdf.content.startswith(b"%PDF")
    finally:
        served.stop()
