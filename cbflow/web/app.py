"""The portal's application factory."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path

import anyio.to_thread
from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from fastapi.staticfiles import StaticFiles
from sqlalchemy.exc import OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.sessions import SessionMiddleware

from cbflow.clock import Clock, system_clock
from cbflow.db import busy
from cbflow.errors import CbflowError
from cbflow.flowruns import ReceiptBatches, load_client
from cbflow.services import availability
from cbflow.settings import Settings, get_settings
from cbflow.web import (
    admin,
    adoption_route,
    applications,
    assessor,
    auth,
    following,
    offer,
    pages,
    partner,
    replication,
    returns,
    signoff,
    signoff_clarify,
    staff,
    support,
    team,
    timeout,
)
from cbflow.web.limits import BoundedRequests
from cbflow.web.security import (
    SecurityHeaders,
    content_security_policy,
    ids_in_range,
    inline_script_hashes,
    require_csrf,
    secret_key,
)
from cbflow.web.templating import Pages, environment, govuk_template_source

logger = logging.getLogger(__name__)
STATIC = Path(__file__).resolve().parent / "static"
SESSION_COOKIE = "cbflow_session"

ERRORS = {
    403: ("You cannot do that", "You do not have permission to see this page or do this."),
    404: ("Page not found", "If you typed the web address, check it is correct."),
    405: ("Page not found", "If you typed the web address, check it is correct."),
}
NOT_UNDERSTOOD = (
    "Sorry, the service could not understand that request",
    "Nothing was changed. Go back to the page and try again.",
)
# what a person is told when their request could not be carried out: nothing of it was kept
# (its transaction was rolled back), and everything saved or submitted before it still is
BUSY = (
    "Sorry, the service is busy",
    "What you just sent was not saved: the service could not get to it in time. Everything "
    "you saved or submitted before it is kept. Wait a minute, then try again.",
)
FAILED = (
    "Sorry, there is a problem with the service",
    "What you just sent was not saved. Everything you saved or submitted before it is kept. "
    "Try again later; if it happens again, contact the team running the round.",
)
BUSY_SECONDS_TO_RETRY = 30
CSRF_PROBLEM = (
    "Your session has expired",
    "We could not accept the form because the page was too old or was not sent by this "
    "service. Go back, reload the page and try again.",
)


def govuk_frontend(settings: Settings) -> Path:
    """GOV.UK Frontend's built files (CSS, JS, fonts, images), installed by `./dev setup`."""
    dist = settings.frontend_dir / "govuk-frontend" / "dist" / "govuk"
    if not (dist / "govuk-frontend.min.css").is_file():
        raise CbflowError(
            f"GOV.UK Frontend is not installed in {settings.frontend_dir}: run `./dev setup` "
            "(it runs `npm install`), or set CBFLOW_FRONTEND_DIR to the node_modules folder"
        )
    return dist


def _lifespan(
    settings: Settings, heartbeat: availability.Heartbeat | None
) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        # the worker threads that run routes: a few are enough (the database is local and the
        # GIL runs one at a time), and more only make each one wait longer for its turn
        anyio.to_thread.current_default_thread_limiter().total_tokens = settings.portal_threads
        load_client(settings)
        if heartbeat is not None:
            heartbeat.start()
        try:
            yield
        finally:
            if heartbeat is not None:
                await anyio.to_thread.run_sync(heartbeat.stop)

    return lifespan


def create_app(
    settings: Settings, clock: Clock = system_clock, *, record_availability: bool = False
) -> FastAPI:
    """The portal for one configuration: its database, data dir, secret and mail settings.
    Tests and the demo pass their own clock. With `record_availability` (the served portal),
    the process writes what it answered each minute (see services.availability)."""
    dist = govuk_frontend(settings)
    env = environment(settings.templates_dir / "pages")
    renderer = Pages(env)
    csp = content_security_policy(inline_script_hashes(govuk_template_source(env)))
    recorder = availability.Recorder(availability.process_name(), settings.slow_request_seconds)

    app = FastAPI(
        title="cbflow portal",
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
        # an idle session is cleared before the CSRF check, so that check does not hide why
        dependencies=[
            Depends(ids_in_range),
            Depends(timeout.check_activity),
            Depends(require_csrf),
        ],
        lifespan=_lifespan(
            settings,
            availability.Heartbeat(
                recorder, settings.availability_every_seconds, settings.resolved_database_url
            )
            if record_availability
            else None,
        ),
    )
    app.state.settings = settings
    app.state.database_url = settings.resolved_database_url
    app.state.clock = clock
    app.state.pages = renderer
    env.globals["session_idle_seconds"] = int(timeout.idle_limit(settings).total_seconds())
    app.state.receipt_batches = ReceiptBatches(settings)
    app.state.sign_in_asks = auth.AsksPerClient(
        settings.sign_in_asks_per_minute, settings.resolved_database_url
    )
    # innermost of the three: its answer to a post that is too large is a page of the session
    app.add_middleware(BoundedRequests)
    app.add_middleware(
        SessionMiddleware,
        secret_key=secret_key(settings),
        session_cookie=SESSION_COOKIE,
        max_age=settings.session_hours * 3600,
        same_site="lax",
        https_only=settings.resolved_portal_base_url.startswith("https://"),
    )
    app.add_middleware(SecurityHeaders, csp=csp)
    # outermost of ours: what every request was answered and how long it took
    app.add_middleware(availability.CountRequests, recorder=recorder)
    app.state.availability = recorder

    app.mount("/assets", StaticFiles(directory=dist / "assets"), name="assets")
    app.mount("/govuk", StaticFiles(directory=dist), name="govuk")
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.include_router(pages.router)
    app.include_router(auth.router)
    auth.keep_link_tokens_out_of_logs()  # the web server logs paths, and a link's is its token
    app.include_router(admin.router)
    # before applications, whose /applications/{id}/{stage} would take their addresses
    app.include_router(team.router)
    # before /applications/{id}/returns/{period}, which would take its address
    app.include_router(following.place_router)
    app.include_router(returns.router)
    app.include_router(following.router)
    app.include_router(offer.router)
    app.include_router(applications.router)
    app.include_router(staff.router)
    app.include_router(assessor.router)
    app.include_router(signoff.router)
    app.include_router(signoff_clarify.router)
    app.include_router(replication.router)
    app.include_router(adoption_route.router)
    app.include_router(partner.router)
    app.include_router(support.router)
    app.include_router(timeout.router)
    app.add_exception_handler(timeout.SignedOutForInactivity, timeout.signed_out_response)

    # answered on the event loop, never waiting for a thread: `cbflow serve` replaces a process
    # that stops answering it, and a process whose threads are all busy is still answering
    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> PlainTextResponse:
        return PlainTextResponse("ok")

    def problem(request: Request, status_code: int, title: str, message: str) -> Response:
        headers = {"Retry-After": str(BUSY_SECONDS_TO_RETRY)} if status_code == 503 else {}
        if request.url.path.endswith("/autosave"):
            return JSONResponse(
                {"saved": False, "message": f"Not saved: {message}", "errors": {}},
                status_code=status_code,
                headers=headers,
            )
        try:
            response = renderer.render(
                request, "error.html", status_code=status_code, title=title, message=message
            )
        except Exception:  # the page itself could not be made: say it plainly
            response = PlainTextResponse(f"{title}\n\n{message}\n", status_code=status_code)
        response.headers.update(headers)
        return response

    @app.exception_handler(OperationalError)
    async def database_busy(request: Request, exc: OperationalError) -> Response:
        if not busy(exc):
            raise exc
        logger.warning("%s %s: answered 503, %s", request.method, request.url.path, exc.orig)
        return problem(request, 503, *BUSY)

    @app.exception_handler(PoolTimeout)
    async def no_connection(request: Request, exc: PoolTimeout) -> Response:
        logger.warning("%s %s: answered 503, %s", request.method, request.url.path, exc)
        return problem(request, 503, *BUSY)

    @app.exception_handler(Exception)
    async def server_error(request: Request, exc: Exception) -> Response:
        # Starlette logs the exception with its traceback once this has answered
        return problem(request, 500, *FAILED)

    @app.exception_handler(RequestValidationError)
    async def not_understood(request: Request, exc: RequestValidationError) -> Response:
        # an address whose id is not a number is a page that does not exist; anything else
        # malformed (a query's value) is a request the service cannot understand
        if any(str(error.get("loc", ("",))[0]) == "path" for error in exc.errors()):
            title, message = ERRORS[404]
            return renderer.render(
                request, "error.html", status_code=404, title=title, message=message
            )
        too_long = [e for e in exc.errors() if e.get("type") == "string_too_long"]
        if too_long:
            field = str(too_long[0]["loc"][-1]).replace("_", " ")
            limit = (too_long[0].get("ctx") or {}).get("max_length", 0)
            message = (
                f"The {field} you entered is longer than {limit:,} characters, so nothing was "
                "changed. Go back, shorten it and try again."
            )
            return problem(request, 400, "What you entered is too long", message)
        return problem(request, 400, *NOT_UNDERSTOOD)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        if exc.status_code == 403 and exc.detail == "csrf":
            title, message = CSRF_PROBLEM
        elif exc.status_code in ERRORS:
            title, message = ERRORS[exc.status_code]
        else:
            return Response(status_code=exc.status_code, headers=exc.headers)
        return renderer.render(
            request, "error.html", status_code=exc.status_code, title=title, message=message
        )

    return app


def portal() -> FastAPI:
    """The portal as configured by the environment: `uvicorn --factory cbflow.web.app:portal`,
    as `cbflow serve` runs it."""
    return create_app(get_settings(), record_availability=True)
