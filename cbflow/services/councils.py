"""The council register."""

from __future__ import annotations

import csv
from collections.abc import Sequence
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
    return len(rows)


def all_councils(session: Session) -> list[Council]:
    return list(session.exec(select(Council).order_by(col(Council.code))))


def eligible_councils(session: Session, prospectus: Prospectus) -> list[Council]:
    types: Sequence[str] | None = prospectus.eligibility.council_types
    return [c for c in all_councils(session) if types is None or c.type in types]
