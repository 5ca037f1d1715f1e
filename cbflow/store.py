"""Where rendered documents and uploaded files are kept, so that every host reaches them.

A worker renders a letter on one host and the portal on another serves it; a stage retried on
another worker mails an attachment the first rendered. One setting, CBFLOW_STORE, chooses the
store:

- `local` (the default): the data folder's `documents/` and `uploads/`, as they always were.
  Nothing is copied anywhere.
- `database`: each file's bytes in cbflow's database (`StoredFile`), for hosts that share only
  the database.
- `s3://bucket/prefix`: an S3-compatible store through boto3, at CBFLOW_S3_ENDPOINT_URL (empty:
  AWS), with boto3's usual credentials (AWS_ACCESS_KEY_ID and the rest, never in code).

Every file is still written to the data folder first (WeasyPrint renders to a path; an upload is
spooled to one), then kept in the store. A read looks in the data folder first and, when the
file is not there (it was made on another host), fetches it from the store into the data
folder, which so serves as this host's cache: a document is never changed once issued and an
upload is named by its hash, so a copy found there is the file.

A file is named by its area ("documents" or "uploads") and its key, the path under the area's
folder as cbflow always recorded it (`Document.path`, `BoardPack.path`, "<application>/<sha256>"
for an upload). A key is checked before any I/O: relative, no `..`, nothing that could leave the
area's folder. The store is reached only after the caller's own access checks: it never hands
out addresses of its own.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any, Literal

from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session, select

from cbflow.errors import CbflowError
from cbflow.models import StoredFile
from cbflow.settings import Settings, get_settings

Area = Literal["documents", "uploads"]
AREAS: tuple[Area, ...] = ("documents", "uploads")
SETTING = "CBFLOW_STORE"
CHUNK = 1024 * 1024
MAX_KEY = 400  # characters: the stored key ("documents/" and this) fits StoredFile.key
_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
_PART = re.compile(r"[A-Za-z0-9._-][A-Za-z0-9._ -]*")


class BadKey(CbflowError):
    """A key that could name a file outside its area's folder. Nothing was read or written."""


@dataclass(frozen=True)
class StoreSetting:
    """CBFLOW_STORE as read: its kind, and for S3 the bucket and the prefix (no slashes at
    either end; empty for the bucket's top)."""

    kind: Literal["local", "database", "s3"]
    bucket: str = ""
    prefix: str = ""


def parse_setting(value: str) -> StoreSetting:
    """CBFLOW_STORE checked: a ValueError naming the setting and what it may be otherwise."""
    text = value.strip()
    if text in ("", "local"):
        return StoreSetting("local")
    if text == "database":
        return StoreSetting("database")
    if text.startswith("s3://"):
        bucket, _, prefix = text.removeprefix("s3://").partition("/")
        prefix = prefix.strip("/")
        if not _BUCKET.fullmatch(bucket):
            raise ValueError(
                f"{SETTING}={value!r}: {bucket!r} is not an S3 bucket name (3 to 63 lower-case "
                "letters, digits, dots and hyphens)"
            )
        parts = prefix.split("/") if prefix else []
        if not all(_PART.fullmatch(part) and part not in (".", "..") for part in parts):
            raise ValueError(
                f"{SETTING}={value!r}: the prefix may hold letters, digits, '.', '_', '-' and "
                "'/' between names, and no name that is '.' or '..'"
            )
        return StoreSetting("s3", bucket, prefix)
    raise ValueError(
        f"{SETTING}={value!r}: it must be 'local' (the data folder), 'database' or "
        "'s3://bucket/prefix'"
    )


def checked_key(area: str, key: str | PurePosixPath) -> str:
    """The key as the store names it, "<area>/<key>"; BadKey if it could leave the area's
    folder (absolute, `..`, a backslash or a control character) or is not a file's name."""
    if area not in AREAS:
        raise BadKey(f"{area!r} is not a store area: {', '.join(AREAS)}")
    text = str(key)
    if not text or len(text) > MAX_KEY:
        raise BadKey(f"a key is 1 to {MAX_KEY} characters: {text[:80]!r}")
    if "\\" in text or any(ord(c) < 32 or ord(c) == 127 for c in text):
        raise BadKey(f"a key has no backslashes or control characters: {text!r}")
    parts = text.split("/")
    if text.startswith("/") or any(part in ("", ".", "..") for part in parts):
        raise BadKey(f"a key is a relative path without '.' or '..': {text!r}")
    return f"{area}/{text}"


class Store:
    """The data folder, and in subclasses a store beyond it. Each method checks the key first.

    `session`, where a method takes one, is the caller's: a document's bytes in the database
    then commit with its record, and a thread that holds SQLite's writer lock is not made to
    wait for itself. Without one the store uses a transaction of its own."""

    kind = "local"

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir

    def local_path(self, area: Area, key: str | PurePosixPath) -> Path:
        """Where the file is (or would be) in this host's data folder."""
        name = checked_key(area, key)
        root = (self.data_dir / area).resolve()
        path = (self.data_dir / name).resolve()
        if not path.is_relative_to(root):  # a link inside the folder pointing out of it
            raise BadKey(f"the key leaves the {area} folder: {key}")
        return path

    def keep(
        self, area: Area, key: str | PurePosixPath, path: Path, session: Session | None = None
    ) -> None:
        """Put a file just written on this host into the store (the data folder: nothing to
        do). Keeping the same key again is harmless."""
        checked_key(area, key)

    def exists(self, area: Area, key: str | PurePosixPath, session: Session | None = None) -> bool:
        return self.local_path(area, key).is_file() or self._stored(checked_key(area, key), session)

    def local_copy(
        self, area: Area, key: str | PurePosixPath, session: Session | None = None
    ) -> Path | None:
        """The file on this host's disk, fetched from the store when it was made elsewhere;
        None if the store has no such file."""
        local = self.local_path(area, key)
        if local.is_file():
            return local
        return self._fetch(checked_key(area, key), local, session)

    def read(
        self, area: Area, key: str | PurePosixPath, session: Session | None = None
    ) -> bytes | None:
        path = self.local_copy(area, key, session)
        return path.read_bytes() if path is not None else None

    # -- the store beyond the data folder: none here ---------------------------------------

    def _stored(self, name: str, session: Session | None) -> bool:
        return False

    def _fetch(self, name: str, local: Path, session: Session | None) -> Path | None:
        return None


def _write_atomically(local: Path, write: Any) -> Path:
    """Write a fetched file beside its place and move it in whole: a reader on another thread
    never sees half of it, and two fetching at once both leave the whole file."""
    local.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=local.parent, prefix=".fetch-", suffix=".part")
    try:
        with os.fdopen(handle, "wb") as out:
            write(out)
        os.replace(temporary, local)
    except BaseException:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise
    return local


def _digest(path: Path) -> tuple[str, int]:
    digest, size = hashlib.sha256(), 0
    with path.open("rb") as file:
        while chunk := file.read(CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


class DatabaseStore(Store):
    """Files in cbflow's database, one `StoredFile` row each (read whole: documents are tens of
    kilobytes, uploads at most their question's limit)."""

    kind = "database"

    def keep(
        self, area: Area, key: str | PurePosixPath, path: Path, session: Session | None = None
    ) -> None:
        name = checked_key(area, key)
        sha256, size = _digest(path)
        row = {
            "key": name,
            "size": size,
            "sha256": sha256,
            "content": path.read_bytes(),
            "created_at": datetime.now(UTC),
        }
        with _session(session) as active:
            # kept once: a second keep (a stage run again, a retry on another worker, two
            # uploads of one file) finds the row there and leaves it, on either database
            dialect = active.get_bind().dialect.name
            insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
            statement = (
                insert(StoredFile).values(**row).on_conflict_do_nothing(index_elements=["key"])
            )
            active.execute(statement)

    def _stored(self, name: str, session: Session | None) -> bool:
        with _session(session) as active:
            found = active.exec(select(StoredFile.id).where(StoredFile.key == name)).first()
            return found is not None

    def _fetch(self, name: str, local: Path, session: Session | None) -> Path | None:
        with _session(session) as active:
            row = active.exec(
                select(StoredFile.content, StoredFile.sha256).where(StoredFile.key == name)
            ).first()
        if row is None:
            return None
        content, sha256 = row
        if hashlib.sha256(content).hexdigest() != sha256:
            raise CbflowError(f"the stored file {name} does not match its hash: not served")
        return _write_atomically(local, lambda out: out.write(content))


@contextmanager
def _session(session: Session | None) -> Iterator[Session]:
    """The caller's session, or a transaction of the store's own (committed on leaving)."""
    if session is not None:
        yield session
        return
    from cbflow.db import session_scope

    with session_scope() as own:
        yield own


class S3Store(Store):
    """Files in an S3 bucket under a prefix, uploaded and downloaded a part at a time."""

    kind = "s3"

    def __init__(self, data_dir: Path, bucket: str, prefix: str, endpoint_url: str) -> None:
        super().__init__(data_dir)
        import boto3

        self.bucket, self.prefix = bucket, prefix
        # credentials as boto3 finds them: AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, a
        # profile, or the host's role
        self.client = boto3.client("s3", endpoint_url=endpoint_url or None)

    def _object(self, name: str) -> str:
        return f"{self.prefix}/{name}" if self.prefix else name

    def keep(
        self, area: Area, key: str | PurePosixPath, path: Path, session: Session | None = None
    ) -> None:
        self.client.upload_file(str(path), self.bucket, self._object(checked_key(area, key)))

    def _stored(self, name: str, session: Session | None) -> bool:
        from botocore.exceptions import ClientError

        try:
            self.client.head_object(Bucket=self.bucket, Key=self._object(name))
        except ClientError as exc:
            if _missing(exc):
                return False
            raise
        return True

    def _fetch(self, name: str, local: Path, session: Session | None) -> Path | None:
        from botocore.exceptions import ClientError

        try:
            return _write_atomically(
                local,
                lambda out: self.client.download_fileobj(self.bucket, self._object(name), out),
            )
        except ClientError as exc:
            if _missing(exc):
                return None
            raise


def _missing(error: Any) -> bool:
    code = str(error.response.get("Error", {}).get("Code", ""))
    return code in ("404", "NoSuchKey", "NotFound")


_STORES: dict[tuple[str, str, str], Store] = {}


def get_store(settings: Settings | None = None) -> Store:
    """The configured store, one per setting for the process (an S3 client is made once)."""
    settings = settings or get_settings()
    ident = (settings.store, str(settings.data_dir.resolve()), settings.s3_endpoint_url)
    store = _STORES.get(ident)
    if store is None:
        store = _STORES[ident] = make_store(settings)
    return store


def make_store(settings: Settings) -> Store:
    chosen = parse_setting(settings.store)
    if chosen.kind == "database":
        return DatabaseStore(settings.data_dir)
    if chosen.kind == "s3":
        return S3Store(settings.data_dir, chosen.bucket, chosen.prefix, settings.s3_endpoint_url)
    return Store(settings.data_dir)
