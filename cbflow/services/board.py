"""The programme board's view across rounds: figures computed from the records, as they stand.

For each round: its stage against its timetable (the next date, and a stage whose date has passed
without its run moving the round on), its applications and places, the places' milestones (met,
due, late) and returns (overdue), the money committed to its places against its budget and the
money paid, the councils following its places and those intending to adopt, and the adoptions of
its models with the time from the model's publication to the adoption's submission. Totals add
the rounds up. Money is exact (pence); times are aware.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from markupsafe import Markup
from sqlmodel import Session, col, select

from cbflow.charts import bar_chart
from cbflow.flowlist import (
    CLOSE_BIDS,
    CLOSE_EOI,
    COMPLETE_ROUND,
    DECIDE,
    SEND_REMINDERS,
    FlowSpec,
)
from cbflow.formatting import csv_cell, in_zone, long_date, long_deadline, long_moment, money
from cbflow.models import (
    Application,
    BoardPack,
    Council,
    Follow,
    MilestoneRecord,
    PublishedModel,
    ReturnRecord,
    Round,
)
from cbflow.services import rounds

# the deadlines whose runs move a round on to its next stage: one passed without the round
# having moved on is late
STAGE_MOVES = (CLOSE_EOI, CLOSE_BIDS, DECIDE, COMPLETE_ROUND)
DAY_SECONDS = Decimal(86400)


@dataclass(frozen=True)
class BoardAdoption:
    """A council's adoption of a model of one of the rounds' places."""

    reference: str
    council: str  # the adopting council's name
    place: str  # the place whose model it adopted
    version: int
    route: str  # "competitive" | "adoption"
    published_at: datetime  # the model version's
    submitted_at: datetime | None  # the adoption's submission (its EOI or light form)
    days: Decimal | None  # from publication to submission (shown to a tenth of a day)


@dataclass(frozen=True)
class RoundFigures:
    slug: str
    title: str
    state: str
    next_date: tuple[str, datetime] | None  # the next deadline's flow title and moment
    late: list[tuple[str, datetime]]  # stage deadlines passed without the round moving on
    applications: int
    places: int
    milestones_met: int
    milestones_due: int  # not met, and not yet past their date
    milestones_late: int  # not met, and past their date
    returns_made: int
    returns_overdue: int
    budget_pence: int | None  # the prospectus's capacity.budget_gbp, if it gives one
    committed_pence: int  # support requested by the places selected
    paid_pence: int  # paid by results on the places' returns
    followers: int
    intending: int  # followers who intend to adopt
    adoptions: list[BoardAdoption]

    @property
    def adoption_median_days(self) -> Decimal | None:
        return median_of([a.days for a in self.adoptions if a.days is not None])


@dataclass(frozen=True)
class Board:
    at: datetime
    rounds: list[RoundFigures] = field(default_factory=list)

    def total(self, name: str) -> int:
        return sum(int(getattr(r, name)) for r in self.rounds)

    @property
    def budget_pence(self) -> int:
        return sum(r.budget_pence or 0 for r in self.rounds)

    @property
    def adoptions(self) -> list[BoardAdoption]:
        return [a for r in self.rounds for a in r.adoptions]

    @property
    def adoption_median_days(self) -> Decimal | None:
        return median_of([a.days for a in self.adoptions if a.days is not None])

    @property
    def late_rounds(self) -> int:
        return sum(1 for r in self.rounds if r.late)


# the figures of each round that add up to the totals, in the order the CSV and pack show them
COUNTS = (
    ("applications", "Applications"),
    ("places", "Places"),
    ("milestones_met", "Milestones met"),
    ("milestones_due", "Milestones due"),
    ("milestones_late", "Milestones late"),
    ("returns_made", "Returns made"),
    ("returns_overdue", "Returns overdue"),
    ("followers", "Followers"),
    ("intending", "Intending to adopt"),
)
MONEY = (
    ("budget_pence", "Budget"),
    ("committed_pence", "Committed"),
    ("paid_pence", "Paid"),
)


def median_of(values: Sequence[Decimal]) -> Decimal | None:
    """The middle value (the mean of the two middle ones), to a tenth; None of nothing."""
    if not values:
        return None
    ordered, middle = sorted(values), len(values) // 2
    if len(ordered) % 2:
        return tenths(ordered[middle])
    return tenths((ordered[middle - 1] + ordered[middle]) / 2)


def tenths(value: Decimal) -> Decimal:
    return value.quantize(Decimal("0.1"))


def days_between(start: datetime, end: datetime | None) -> Decimal | None:
    if end is None:
        return None
    return Decimal(str((end - start).total_seconds())) / DAY_SECONDS


def _stage(
    session: Session, round_: Round, now: datetime
) -> tuple[tuple[str, datetime] | None, list[tuple[str, datetime]]]:
    """The round's next date (its flow's title and moment), and its stage deadlines passed
    without the round having moved on."""
    events = [(f, w) for f, w in _events(session, round_) if f is not SEND_REMINDERS]
    upcoming = sorted((w, f.title) for f, w in events if w > now)
    late = sorted(
        {
            (f.title, w)
            for f, w in events
            if f in STAGE_MOVES and w <= now and not rounds.deadline_done(round_, f.name)
        },
        key=lambda item: item[1],
    )
    return ((upcoming[0][1], upcoming[0][0]) if upcoming else None), late


def _events(session: Session, round_: Round) -> list[tuple[FlowSpec, datetime]]:
    from cbflow.stages import round_events  # the stage events import the services

    return round_events(session, round_)


def _adoptions(
    session: Session, round_: Round, names: dict[str, str], places: dict[int, Application]
) -> list[BoardAdoption]:
    models = {
        m.id: m
        for m in session.exec(select(PublishedModel).where(PublishedModel.round_id == round_.id))
    }
    if not models:
        return []
    adopters = session.exec(
        select(Application)
        .where(col(Application.adopted_from_model_id).in_(list(models)))
        .order_by(col(Application.id))
    )
    found = []
    for adopter in adopters:
        model = models[adopter.adopted_from_model_id]
        place = places.get(model.application_id) or session.get(Application, model.application_id)
        assert place is not None
        found.append(
            BoardAdoption(
                reference=adopter.reference,
                council=names.get(adopter.council_code, adopter.council_code),
                place=place.place_name or names.get(place.council_code, place.council_code),
                version=model.version,
                route=adopter.route,
                published_at=model.published_at,
                submitted_at=adopter.eoi_submitted_at,
                days=days_between(model.published_at, adopter.eoi_submitted_at),
            )
        )
    return found


def round_figures(
    session: Session, round_: Round, now: datetime, names: dict[str, str]
) -> RoundFigures:
    prospectus = rounds.prospectus_of(round_)
    today = in_zone(now, prospectus.zone).date()
    applications = rounds.applications_of(session, round_)
    funded = {a.id: a for a in applications if rounds.is_place(a) and a.id is not None}
    ids = list(funded)
    milestones = list(
        session.exec(select(MilestoneRecord).where(col(MilestoneRecord.application_id).in_(ids)))
    )
    returns = list(
        session.exec(select(ReturnRecord).where(col(ReturnRecord.application_id).in_(ids)))
    )
    all_ids = [a.id for a in applications]
    follows = list(session.exec(select(Follow).where(col(Follow.application_id).in_(all_ids))))
    budget = prospectus.capacity.budget_gbp
    next_date, late = _stage(session, round_, now)
    return RoundFigures(
        slug=round_.slug,
        title=round_.title,
        state=round_.state,
        next_date=next_date,
        late=late,
        applications=len(applications),
        places=len(funded),
        milestones_met=sum(1 for m in milestones if m.met_on is not None),
        milestones_due=sum(1 for m in milestones if m.met_on is None and m.due >= today),
        milestones_late=sum(1 for m in milestones if m.met_on is None and m.due < today),
        returns_made=sum(1 for r in returns if r.submitted_at is not None),
        returns_overdue=sum(1 for r in returns if r.submitted_at is None and r.due < now),
        budget_pence=int(budget * 100) if budget is not None else None,
        committed_pence=sum(a.support_requested_pence or 0 for a in funded.values()),
        paid_pence=sum(r.payment_pence or 0 for r in returns),
        followers=len(follows),
        intending=sum(1 for f in follows if f.intends_to_adopt_at is not None),
        adoptions=_adoptions(session, round_, names, funded),
    )


def figures(session: Session, now: datetime) -> Board:
    """Every round's figures as the records stand at `now`, oldest round first."""
    names = dict(session.exec(select(Council.code, Council.name)).all())
    return Board(
        at=now,
        rounds=[round_figures(session, r, now, names) for r in rounds.all_rounds(session)],
    )


# ---------------------------------------------------------------------------------------------
# the same figures as a table (the CSV, the stored pack)

HEADER = (
    "round",
    "title",
    "state",
    "next date",
    "next date at",
    "late",
    *(label for _, label in COUNTS),
    *(f"{label} (£)" for _, label in MONEY),
    "Adoptions",
    "Adoptions submitted",
    "Median days from model to submission",
)


def _pounds(pence: int | None) -> str:
    return "" if pence is None else str((Decimal(pence) / 100).quantize(Decimal("0.01")))


def _text(value: Decimal | None) -> str:
    return "" if value is None else str(value)


def table(board: Board) -> list[list[str]]:
    """One row per round, then the totals: the figures as the page and the pack show them."""
    rows = []
    for r in board.rounds:
        rows.append(
            [
                r.slug,
                r.title,
                r.state,
                r.next_date[0] if r.next_date else "",
                r.next_date[1].isoformat() if r.next_date else "",
                "; ".join(f"{title} ({when.isoformat()})" for title, when in r.late),
                *(str(getattr(r, name)) for name, _ in COUNTS),
                *(_pounds(getattr(r, name)) for name, _ in MONEY),
                str(len(r.adoptions)),
                str(sum(1 for a in r.adoptions if a.submitted_at is not None)),
                _text(r.adoption_median_days),
            ]
        )
    rows.append(
        [
            "total",
            "All rounds",
            "",
            "",
            "",
            str(board.late_rounds),
            *(str(board.total(name)) for name, _ in COUNTS),
            _pounds(board.budget_pence),
            _pounds(board.total("committed_pence")),
            _pounds(board.total("paid_pence")),
            str(len(board.adoptions)),
            str(sum(1 for a in board.adoptions if a.submitted_at is not None)),
            _text(board.adoption_median_days),
        ]
    )
    return rows


def to_csv(board: Board) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(HEADER)
    writer.writerows([csv_cell(cell) for cell in row] for row in table(board))
    return out.getvalue()


def stored(board: Board) -> dict[str, Any]:
    """The figures as a stored pack keeps them (JSON): the table, and each adoption."""
    return {
        "at": board.at.isoformat(),
        "header": list(HEADER),
        "rows": table(board),
        "adoptions": [
            {
                "reference": a.reference,
                "council": a.council,
                "place": a.place,
                "version": a.version,
                "route": a.route,
                "published_at": a.published_at.isoformat(),
                "submitted_at": a.submitted_at.isoformat() if a.submitted_at else None,
                "days": _text(tenths(a.days) if a.days is not None else None),
            }
            for a in board.adoptions
        ],
    }


# ---------------------------------------------------------------------------------------------
# the figures as people read them: the board page and the pack print the same rows


STATE_WORDS = {
    "launched": "Expressions of interest open",
    "eoi_closed": "Expressions of interest closed",
    "bids_invited": "Bids invited",
    "bids_closed": "Bids closed",
    "assessed": "Bids assessed",
    "decided": "Places selected",
    "implementing": "Implementing",
    "completed": "Completed",
    "cancelled": "Cancelled",
}


def _when(moment: datetime, zone: ZoneInfo) -> str:
    return long_moment(moment, zone)


def _money_of(pence: int | None) -> str:
    return money(pence) if pence is not None else "No budget set"


def _days_text(days: Decimal | None) -> str:
    return "" if days is None else f"{tenths(days)} days"


@dataclass(frozen=True)
class Shown:
    """One round's figures (or the totals) in words, in the order they are read."""

    title: str
    stage: str
    next_date: str
    late: str  # empty when nothing is late
    rows: list[tuple[str, str]]
    adoptions: list[dict[str, str]]


def _rows(
    counts: dict[str, int], budget: int | None, committed: int, paid: int, median: Decimal | None
) -> list[tuple[str, str]]:
    share = ""
    if budget:
        share = f" ({(Decimal(committed) * 100 / Decimal(budget)).quantize(Decimal('0.1'))}%)"
    return [
        ("Applications", str(counts["applications"])),
        ("Places", str(counts["places"])),
        (
            "Milestones",
            f"{counts['milestones_met']} met, {counts['milestones_due']} due, "
            f"{counts['milestones_late']} late",
        ),
        ("Returns", f"{counts['returns_made']} made, {counts['returns_overdue']} overdue"),
        ("Budget", _money_of(budget)),
        ("Committed to places", money(committed) + share),
        ("Paid", money(paid)),
        ("Followers", str(counts["followers"])),
        ("Intending to adopt", str(counts["intending"])),
        ("Adoptions", str(counts["adoptions"])),
        ("Median time from model to submission", _days_text(median) or "None submitted"),
    ]


def _adoption_rows(adoptions: Sequence[BoardAdoption], zone: ZoneInfo) -> list[dict[str, str]]:
    return [
        {
            "council": a.council,
            "place": f"{a.place}, version {a.version}",
            "route": "Rolling adoption" if a.route == "adoption" else "Competitive round",
            "published": _when(a.published_at, zone),
            "submitted": _when(a.submitted_at, zone) if a.submitted_at else "Not yet",
            "days": _days_text(a.days),
        }
        for a in adoptions
    ]


def shown(board: Board, zone: ZoneInfo) -> tuple[Shown, list[Shown]]:
    """The totals, then each round, in words."""
    per_round = []
    for r in board.rounds:
        counts = {name: int(getattr(r, name)) for name, _ in COUNTS}
        counts["adoptions"] = len(r.adoptions)
        per_round.append(
            Shown(
                title=r.title,
                stage=STATE_WORDS.get(r.state, r.state),
                next_date=(
                    f"{r.next_date[0]}: {long_deadline(r.next_date[1], zone)}"
                    if r.next_date
                    else "None: its timetable has no date to come"
                ),
                late="; ".join(
                    f"{title}, due by {long_deadline(when, zone)}" for title, when in r.late
                ),
                rows=_rows(
                    counts,
                    r.budget_pence,
                    r.committed_pence,
                    r.paid_pence,
                    r.adoption_median_days,
                ),
                adoptions=_adoption_rows(r.adoptions, zone),
            )
        )
    counts = {name: board.total(name) for name, _ in COUNTS}
    counts["adoptions"] = len(board.adoptions)
    late = board.late_rounds
    total = Shown(
        title="All rounds",
        stage=f"{len(board.rounds)} rounds",
        next_date="",
        late=f"{late} round{'s' if late != 1 else ''} behind its timetable" if late else "",
        rows=_rows(
            counts,
            board.budget_pence or None,
            board.total("committed_pence"),
            board.total("paid_pence"),
            board.adoption_median_days,
        ),
        adoptions=_adoption_rows(board.adoptions, zone),
    )
    return total, per_round


def _share(pence: int, budget: int | None) -> Decimal:
    return tenths(Decimal(pence) * 100 / Decimal(budget)) if budget else Decimal(0)


def charts(board: Board) -> list[Markup]:
    """Places; money committed and paid as shares of each round's budget (the amounts are in
    the tables); the time from a model's publication to each adoption's submission."""
    budgeted = [r for r in board.rounds if r.budget_pence]
    out = [bar_chart("Places selected, by round", [(r.title, r.places) for r in board.rounds])]
    if budgeted:
        out += [
            bar_chart(
                "Money committed to places, as a share of the round's budget",
                [(r.title, _share(r.committed_pence, r.budget_pence)) for r in budgeted],
                unit="%",
            ),
            bar_chart(
                "Money paid, as a share of the round's budget",
                [(r.title, _share(r.paid_pence, r.budget_pence)) for r in budgeted],
                unit="%",
            ),
        ]
    submitted = [a for a in board.adoptions if a.days is not None]
    if submitted:
        out.append(
            bar_chart(
                "Days from a model's publication to the adoption's submission",
                [
                    (f"{a.council} (from {a.place})", tenths(a.days or Decimal(0)))
                    for a in submitted
                ],
                unit="days",
            )
        )
    return out


PACK_TEMPLATE = "documents/board_pack.html"
PACK_TITLE = "Programme board pack"


def scheduled_key(now: datetime, zone: ZoneInfo) -> str:
    """A month's scheduled pack: "2026-12", so a run again that month issues nothing new."""
    return f"{now.astimezone(zone):%Y-%m}"


def on_demand_key(now: datetime, zone: ZoneInfo) -> str:
    """A pack staff asked for: the moment they asked (to the second)."""
    return f"{now.astimezone(zone):%Y-%m-%d %H:%M:%S} on demand"


def pack_file(key: str) -> str:
    """Where a pack is kept, relative to the documents folder."""
    stem = "".join(c if c.isalnum() else "-" for c in key).strip("-")
    return f"board/board-pack-{stem}.pdf"


def pack_context(session: Session, board: Board, key: str, zone: ZoneInfo) -> dict[str, Any]:
    """What the pack's template prints (plain data and chart markup: it pickles)."""
    total, per_round = shown(board, zone)
    newest = rounds.all_rounds(session)[-1:] if board.rounds else []
    issued_by = rounds.prospectus_of(newest[0]).issued_by if newest else "The programme"
    return {
        "doc": {
            "title": PACK_TITLE,
            "reference": f"board/{key}",
            "issued_by": issued_by,
            "round_title": "All rounds of the programme",
            "round_id": "",
            "generated_at": long_date(board.at, zone),
            "lang": "en-GB",
        },
        "at": long_moment(board.at, zone),
        "total": total,
        "rounds": per_round,
        "charts": charts(board),
    }


def packs(session: Session) -> list[BoardPack]:
    """Every pack issued, newest first."""
    return list(session.exec(select(BoardPack).order_by(col(BoardPack.id).desc())))
