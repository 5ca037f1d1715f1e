"""The council register."""

from __future__ import annotations

import csv
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from sqlmodel import Session, col, select

from cbflow.models import Council
from cbflow.prospectus import Prospectus
from cbflow.settings import PACKAGE_DIR

REGISTER = PACKAGE_DIR / "data" / "english-councils-2011.csv"


def load_register(session: Session, path: Path = REGISTER) -> int:
    """Insert or update every council of the register. Persists one row per council; safe to
    run again (rows are matched by code). Returns how many councils the register holds."""
    with path.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    existing = {c.code: c for c in session.exec(select(Council))}
    for row in rows:
        fields = {
            "name": row["nice-name"],
            "official_name": row["official-name"],
            "type": row["local-authority-type"],
            "type_name": row["local-authority-type-name"],
            "parent_county": row["county-la"] or None,
            "region": row["region"],
            "gss_code": row["gss-code"],
            "ecode": row["ecode"] or None,
        }
        council = existing.get(row["local-authority-code"])
        if council is None:
            council = Council.model_validate({"code": row["local-authority-code"], **fields})
        else:
            council.sqlmodel_update(fields)
        session.add(council)
    session.flush()
    _kept.clear()
    return len(rows)


def all_councils(session: Session) -> list[Council]:
    return list(session.exec(select(Council).order_by(col(Council.code))))


@dataclass(frozen=True)
class CouncilChoice:
    """A council as a form offers it to choose from."""

    code: str
    name: str
    type: str


# how long a process keeps the register it read (load_register empties its own process's copy)
REGISTER_KEPT_SECONDS = 300
_kept: dict[str, tuple[float, tuple[CouncilChoice, ...]]] = {}  # database: (read at, councils)


def council_choices(session: Session) -> tuple[CouncilChoice, ...]:
    """Every council, by code, as a form offers it: read as plain rows, and kept by the process
    for a few minutes. Reading the register as 353 full objects for each page took over a third
    of a section page's time; the register changes only when an administrator reloads it."""
    key = str(session.get_bind().engine.url)
    now = time.monotonic()
    kept = _kept.get(key)
    if kept is None or now - kept[0] > REGISTER_KEPT_SECONDS:
        rows = session.exec(select(Council.code, Council.name, Council.type).order_by(Council.code))
        kept = _kept[key] = (now, tuple(CouncilChoice(*row) for row in rows))
    return kept[1]


def council_names(session: Session) -> dict[str, str]:
    """Every council's name, by code."""
    return {c.code: c.name for c in council_choices(session)}


def eligible_councils(session: Session, prospectus: Prospectus) -> list[Council]:
    types: Sequence[str] | None = prospectus.eligibility.council_types
    return [c for c in all_councils(session) if types is None or c.type in types]
