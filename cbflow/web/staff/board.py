"""The programme board's view: the figures across every round (services.board), their CSV, and
the board's packs (PDF), produced monthly by a scheduled run or on demand."""

from __future__ import annotations

from dataclasses import dataclass
from zoneinfo import ZoneInfo

from fastapi import HTTPException, Request
from fastapi.responses import FileResponse, Response
from markupsafe import Markup

from cbflow.flowlist import BOARD_PACK
from cbflow.formatting import local_time
from cbflow.models import BoardPack
from cbflow.services import board
from cbflow.stages import SYSTEM
from cbflow.web.deps import (
    ClockDep,
    PagesDep,
    SessionDep,
    SettingsDep,
    ShortField,
)
from cbflow.web.staff.shared import DeskDep, Staff, new_nonce, stage_router
from cbflow.web.stored import stored_file
from cbflow.web.templating import path_for

router = stage_router()
BOARD_TAG = "programme-board"  # the tag of the pack runs staff start


@dataclass(frozen=True)
class PackRow:
    title: str
    made: str  # when, in words
    by: str
    href: str


@dataclass(frozen=True)
class BoardPage:
    at: str
    total: board.Shown
    rounds: list[board.Shown]
    charts: list[Markup]
    packs: list[PackRow]
    nonce: str


@dataclass(frozen=True)
class _Zone:
    zone: ZoneInfo


@router.get("/board")
def board_page(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    clock: ClockDep,
    pages: PagesDep,
    user: Staff,
) -> Response:
    """Every round's figures and the totals, with charts; the packs issued, newest first."""
    zone = ZoneInfo(settings.timezone)
    figures = board.figures(session, clock())
    total, per_round = board.shown(figures, zone)
    return pages.show(
        request,
        "staff/board.html",
        BoardPage(
            at=local_time(figures.at, _Zone(zone)),
            total=total,
            rounds=per_round,
            charts=board.charts(figures),
            packs=[
                PackRow(
                    title=pack.key,
                    made=local_time(pack.created_at, _Zone(zone)),
                    by="The monthly run" if pack.created_by == SYSTEM else pack.created_by,
                    href=path_for(request, "board_pack_file", pack_id=pack.id),
                )
                for pack in board.packs(session)
            ],
            nonce=new_nonce(),
        ),
    )


@router.get("/board.csv")
def board_csv(session: SessionDep, clock: ClockDep, user: Staff) -> Response:
    """The board's figures as the page shows them, one row per round and the totals."""
    now = clock()
    return Response(
        board.to_csv(board.figures(session, now)),
        media_type="text/csv; charset=utf-8",
        headers={
            "Content-Disposition": f'attachment; filename="programme-board-{now:%Y-%m-%d}.csv"'
        },
    )


@router.post("/board/packs")
def start_board_pack(desk: DeskDep, nonce: ShortField = "") -> Response:
    """Produce a pack now: a run of the board pack's scheduled deployment."""
    return desk.start(
        BOARD_PACK,
        {"on_demand": True},
        round_=None,
        nonce=nonce,
        back=path_for(desk.request, "board_page"),
        slug=BOARD_TAG,
    )


@router.get("/board/packs/{pack_id}")
def board_pack_file(
    pack_id: int, session: SessionDep, settings: SettingsDep, user: Staff
) -> Response:
    found = session.get(BoardPack, pack_id)
    if found is None:
        raise HTTPException(status_code=404)
    path = stored_file(settings, "documents", found.path, session)
    return FileResponse(path, media_type="application/pdf", filename=path.name)
