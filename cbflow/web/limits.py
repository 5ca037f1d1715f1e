"""A limit on the size of every request the portal reads, set from the largest file a launched
round's forms accept.

A post is measured before its body is read: a Content-Length over the limit is answered 413 at
once, and a body sent without one is counted as it arrives and stopped at the limit. Without
this, a 400 MB post to a question that takes 5 MB was read whole, raising the process's memory
by 411 MB; now no more than the limit ever arrives, and files are spooled to disk as they come.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from decimal import Decimal

import anyio.to_thread
from fastapi import Request
from fastapi.responses import JSONResponse, Response
from sqlmodel import select
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cbflow.db import session_scope
from cbflow.models import Round
from cbflow.prospectus import FileQuestion
from cbflow.services import rounds
from cbflow.web.forms_ui.uploads import upload_limit_mb
from cbflow.web.security import SAFE_METHODS

logger = logging.getLogger(__name__)

MB = 1024 * 1024
# what a post may hold besides its files: a form's answers (bounded: cbflow.forms), and a
# prospectus uploaded on the staff launch page
FIELDS_MB = 4
KEPT_SECONDS = 60  # how long a process keeps the limit it worked out from the rounds


def largest_files_mb() -> Decimal:
    """The most a single post can carry in files: of every launched round's form sections,
    the one whose file questions together accept the most."""
    largest = Decimal(0)
    with session_scope() as session:
        for round_ in session.exec(select(Round)):
            prospectus = rounds.prospectus_of(round_)
            stages = prospectus.stages
            forms = [stage.form for stage in (stages.eoi, stages.bid) if stage is not None]
            for form in forms:
                for section in form.sections:
                    files = [q for q in section.questions if isinstance(q, FileQuestion)]
                    largest = max(largest, sum((upload_limit_mb(q) for q in files), Decimal(0)))
    return largest


class TooLarge(Exception):
    """A request's body passed the limit while it was being read."""


class BoundedRequests:
    """ASGI middleware: every request that may carry a body is held to the limit."""

    def __init__(self, app: ASGIApp, *, files_mb: Callable[[], Decimal] = largest_files_mb):
        self.app = app
        self.files_mb = files_mb
        self._limit = 0
        self._worked_out = -float(KEPT_SECONDS)

    async def limit(self) -> int:
        """The limit in bytes, worked out again (in a thread: it reads the database) once the
        one kept is a minute old."""
        if time.monotonic() - self._worked_out > KEPT_SECONDS:
            files = await anyio.to_thread.run_sync(self.files_mb)
            self._limit = int((files + FIELDS_MB) * MB)
            self._worked_out = time.monotonic()
        return self._limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in SAFE_METHODS:
            await self.app(scope, receive, send)
            return
        limit = await self.limit()
        declared = _content_length(scope)
        if declared is not None and declared > limit:
            await _too_large(scope, limit)(scope, receive, send)
            return
        received = 0
        exceeded = answered = False

        async def counted() -> Message:
            nonlocal received, exceeded
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    exceeded = True
                    raise TooLarge
            return message

        async def answer() -> None:
            nonlocal answered
            if not answered:
                answered = True
                await _too_large(scope, limit)(scope, receive, send)

        async def watched(message: Message) -> None:
            # once past the limit, whatever the app makes of the cut-off body (FastAPI answers
            # 400 for a form it could not read) is replaced by the answer that says why
            if exceeded:
                await answer()
                return
            await send(message)

        try:
            await self.app(scope, counted, watched)
        except TooLarge:
            await answer()


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            text = value.decode("latin-1").strip()
            return int(text) if text.isdigit() and len(text) < 20 else None
    return None


def _too_large(scope: Scope, limit: int) -> Response:
    """The answer to a post over the limit, sent without reading what came with it."""
    request = Request(scope)
    mb = limit // MB
    logger.warning("%s %s: refused, larger than %d MB", scope["method"], scope["path"], mb)
    message = (
        f"What you sent was larger than {mb} MB, so none of it was saved. If you chose a file, "
        "choose a smaller one (each question says how large a file it takes), then try again."
    )
    if scope["path"].endswith("/autosave"):
        return JSONResponse(
            {"saved": False, "message": f"Not saved: {message}", "errors": {}}, status_code=413
        )
    headers = {"Connection": "close"}
    try:
        response = request.app.state.pages.render(
            request, "error.html", status_code=413, title="The file is too large", message=message
        )
    except Exception:  # the page itself could not be made: say it plainly
        return Response(message, status_code=413, media_type="text/plain", headers=headers)
    response.headers.update(headers)
    return response
