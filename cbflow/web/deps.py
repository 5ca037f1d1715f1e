"""Dependencies shared by the portal's routes.

The ones that only read the app's state are `async`: a plain function would cost each request a
trip to a worker thread for nothing.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request
from sqlmodel import Session

from cbflow.clock import Clock
from cbflow.db import session_scope
from cbflow.settings import Settings
from cbflow.web.templating import Pages


async def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def get_pages(request: Request) -> Pages:
    renderer: Pages = request.app.state.pages
    return renderer


SettingsDep = Annotated[Settings, Depends(get_settings)]
PagesDep = Annotated[Pages, Depends(get_pages)]


def get_session(request: Request) -> Iterator[Session]:
    """One transaction per request: committed when the route returns, rolled back on error.
    (FastAPI runs the commit in a thread of its own, never waiting for one of the routes'.)"""
    with session_scope(request.app.state.database_url) as session:
        yield session


# "function": the transaction ends when the route returns, before the answer is sent, so
# whatever a page or a redirect says has happened has been committed (FastAPI's default,
# "request", would commit only after the answer had gone)
SessionDep = Annotated[Session, Depends(get_session, scope="function")]


async def get_clock(request: Request) -> Clock:
    clock: Clock = request.app.state.clock
    return clock


ClockDep = Annotated[Clock, Depends(get_clock)]
