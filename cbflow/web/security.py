"""Secret key, CSRF tokens and security headers: every page and form inherits them."""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
import time
from pathlib import Path

from fastapi import HTTPException, Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cbflow.errors import CbflowError
from cbflow.settings import Settings

CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


# the largest id the databases store (a signed 64-bit integer, on SQLite and PostgreSQL)
LARGEST_ID = 2**63 - 1


async def ids_in_range(request: Request) -> None:
    """App-wide dependency: a whole number in a page's address (an id, a return's period) that
    no database integer can hold (2^63 or more, either side of zero) is a page that does not exist,
    answered 404 before the route asks the database for it, which would fail with an overflow
    (a 500). Read from the text, before any conversion of a long string of digits."""
    dependant = getattr(request.scope.get("route"), "dependant", None)
    for param in dependant.path_params if dependant is not None else ():
        value = request.path_params.get(param.name)
        if param.field_info.annotation is int and isinstance(value, str) and _beyond(value):
            raise HTTPException(status_code=404)


def as_id(text: str) -> int | None:
    """A posted id or index as a number: ASCII digits only ("²" is a digit to isdigit() but
    not to int()) and within the database's range; None for anything else."""
    text = text.strip()
    if not (text.isascii() and text.isdigit()) or _beyond(text):
        return None
    return int(text)


def _beyond(text: str) -> bool:
    digits = text.strip().removeprefix("-").removeprefix("+")
    if not (digits.isascii() and digits.isdigit()):
        return False  # not a number: the route's own validation answers
    return len(digits) > len(str(LARGEST_ID)) or int(digits) > LARGEST_ID


def secret_key(settings: Settings) -> str:
    """CBFLOW_SECRET_KEY, or a random key made on first start and kept in the data dir (readable
    by its owner only), so sessions survive a restart without a secret in code or config."""
    if settings.secret_key:
        return settings.secret_key
    path: Path = settings.data_dir / "secret_key"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        key = secrets.token_urlsafe(48)
        try:
            with path.open("x", encoding="utf-8") as file:  # "x": never overwrite a key in use
                path.chmod(0o600)
                file.write(key)
            return key
        except FileExistsError:  # another portal process is making it: use theirs
            pass
    for _ in range(100):  # written by a process that started at the same moment
        if key := path.read_text(encoding="utf-8").strip():
            return key
        time.sleep(0.01)
    raise CbflowError(f"{path} is empty: delete it, and a new key is made on the next start")


def csrf_token(request: Request) -> str:
    """The session's CSRF token, made on first use."""
    token = request.session.get(CSRF_FIELD)
    if not isinstance(token, str):
        token = secrets.token_urlsafe(32)
        request.session[CSRF_FIELD] = token
    return token


async def require_csrf(request: Request) -> None:
    """Every state-changing request carries the session's token, in the form or a header."""
    if request.method in SAFE_METHODS:
        return
    expected = request.session.get(CSRF_FIELD)
    given = request.headers.get(CSRF_HEADER)
    if given is None:
        content_type = request.headers.get("content-type", "")
        if content_type.startswith(("application/x-www-form-urlencoded", "multipart/form-data")):
            value = (await request.form()).get(CSRF_FIELD)
            given = value if isinstance(value, str) else None
    if not (isinstance(expected, str) and given and secrets.compare_digest(expected, given)):
        raise HTTPException(status_code=403, detail="csrf")


def inline_script_hashes(template: str) -> list[str]:
    """CSP hashes of the inline scripts in a template (GOV.UK's `govuk-frontend-supported`
    snippet), read from the installed template so that an upgrade cannot silently break it."""
    hashes = []
    for body in re.findall(r"<script[^>]*>(.*?)</script>", template, flags=re.DOTALL):
        if "{{" in body or "{%" in body:
            raise ValueError("an inline script with template code cannot be hashed")
        digest = hashlib.sha256(body.encode()).digest()
        hashes.append(f"'sha256-{base64.b64encode(digest).decode()}'")
    return hashes


def content_security_policy(script_hashes: list[str]) -> str:
    return "; ".join(
        [
            "default-src 'self'",
            f"script-src 'self' {' '.join(script_hashes)}".strip(),
            "style-src 'self'",
            "img-src 'self' data:",
            "font-src 'self'",
            "connect-src 'self'",
            "object-src 'none'",
            "base-uri 'none'",
            "form-action 'self'",
            "frame-ancestors 'none'",
        ]
    )


class SecurityHeaders:
    """Adds the security headers to every HTTP response, pages and static files alike."""

    def __init__(self, app: ASGIApp, *, csp: str) -> None:
        self.app = app
        self.headers = [
            (b"content-security-policy", csp.encode()),
            (b"x-frame-options", b"DENY"),
            (b"x-content-type-options", b"nosniff"),
            (b"referrer-policy", b"same-origin"),
            (b"cross-origin-opener-policy", b"same-origin"),
        ]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                present = {name.lower() for name, _ in message.get("headers", [])}
                extra = [(k, v) for k, v in self.headers if k not in present]
                message["headers"] = [*message.get("headers", []), *extra]
            await send(message)

        await self.app(scope, receive, send_with_headers)
