"""Dependencies shared by the portal's routes.

The ones that only read the app's state are `async`: a plain function would cost each request a
trip to a worker thread for nothing.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Annotated

import anyio.to_thread
from fastapi import Depends, Form, Request
from fastapi.responses import Response
from sqlmodel import Session
from starlette.background import BackgroundTask
from starlette.datastructures import FormData

from cbflow import notify
from cbflow.clock import Clock
from cbflow.db import get_engine
from cbflow.settings import Settings
from cbflow.web.templating import Pages


async def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def get_pages(request: Request) -> Pages:
    renderer: Pages = request.app.state.pages
    return renderer


SettingsDep = Annotated[Settings, Depends(get_settings)]

# The fields of the portal's own forms, bounded before a route reads them (a form's answers
# are bounded by cbflow.forms): one past its bound is refused with the field's name (app.py).
ShortField = Annotated[str, Form(max_length=320)]  # a choice, a code, a token
ReasonField = Annotated[str, Form(max_length=5000)]  # a reason or a note a person writes
# a name or an e-mail address: its route checks its length itself, to say so at the field
CheckedField = Annotated[str, Form()]
PagesDep = Annotated[Pages, Depends(get_pages)]


async def get_session(request: Request) -> AsyncIterator[Session]:
    """One transaction per request: committed when the route returns, rolled back on error.

    Opening a session does no I/O (it connects at its first query, in the route's thread), so
    this runs on the event loop rather than costing every request a trip to a worker thread.
    The commit or rollback, when there is one, runs in a thread of its own, never waiting for
    one of the routes': those may be waiting for the database this transaction holds."""
    session = Session(get_engine(request.app.state.database_url), expire_on_commit=False)
    try:
        yield session
        if session.in_transaction():
            await in_own_thread(session.commit)
    except BaseException:
        if session.in_transaction():
            await in_own_thread(session.rollback)
        raise
    finally:
        session.close()  # after a commit or rollback it holds no connection: no I/O


async def in_own_thread(work: Callable[..., object], *args: object) -> None:
    """Run blocking work in a thread of its own rather than one of the routes' (which may all
    be busy, or waiting for what this work would release)."""
    await anyio.to_thread.run_sync(work, *args, limiter=anyio.CapacityLimiter(1))


def mail_after(response: Response, message: notify.Message | None, settings: Settings) -> Response:
    """Mail `message` (if any) once `response` has gone: the route's transaction has committed
    by then, and the person waits neither for the mail server nor for its time-outs."""
    if message is not None:
        response.background = BackgroundTask(in_own_thread, notify.deliver, message, settings)
    return response


# "function": the transaction ends when the route returns, before the answer is sent, so
# whatever a page or a redirect says has happened has been committed (FastAPI's default,
# "request", would commit only after the answer had gone)
SessionDep = Annotated[Session, Depends(get_session, scope="function")]


async def get_form(request: Request) -> FormData:
    """The posted form, read on the event loop (reading the body is asynchronous) so that the
    route itself can be a plain function: run in a worker thread, its database work may wait
    for a lock without stalling every other request of the process (the one holding the lock,
    about to commit, among them)."""
    return await request.form()


# the posted form of a route that writes: use it instead of an `async` route that awaits
# `request.form()` and then does blocking work on the event loop
FormDep = Annotated[FormData, Depends(get_form)]


async def get_clock(request: Request) -> Clock:
    clock: Clock = request.app.state.clock
    return clock


ClockDep = Annotated[Clock, Depends(get_clock)]
