"""A document or an upload to serve, from the store (cbflow.store): on this host's disk, or
fetched from the store when another host made it. Called only after the route's own checks of
who may see the file; an unsafe key or a file the store has not got is answered 404."""

from __future__ import annotations

from pathlib import Path, PurePosixPath

from fastapi import HTTPException
from sqlmodel import Session

from cbflow.settings import Settings
from cbflow.store import Area, BadKey, get_store


def stored_file(
    settings: Settings, area: Area, key: str | PurePosixPath, session: Session | None = None
) -> Path:
    try:
        path = get_store(settings).local_copy(area, key, session)
    except BadKey:
        raise HTTPException(status_code=404) from None
    if path is None:
        raise HTTPException(status_code=404)
    return path
