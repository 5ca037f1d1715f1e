"""Files posted with a form: checked by type, content and size, and kept under their hash."""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any, BinaryIO

from starlette.datastructures import FormData, UploadFile

from cbflow.forms import clean_text
from cbflow.prospectus import FileQuestion
from cbflow.web.forms_ui.raw import UPLOAD_FIELD, Unreadable

PDF_MAGIC = b"%PDF-"
MAGIC = {"pdf": PDF_MAGIC}


# ---------------------------------------------------------------------------------------------
# uploads


FILE_MAX_MB = 10  # an upload's limit where its question gives none
CHUNK = 1024 * 1024  # an upload is hashed and copied this much at a time, never read whole


@dataclass
class Upload:
    """A file as posted: the web server has already spooled it to a temporary file."""

    name: str
    file: BinaryIO
    size: int

    @classmethod
    def of_bytes(cls, name: str, content: bytes) -> Upload:
        return cls(name, io.BytesIO(content), len(content))

    def head(self, length: int) -> bytes:
        self.file.seek(0)
        return self.file.read(length)

    def chunks(self) -> Iterator[bytes]:
        self.file.seek(0)
        while chunk := self.file.read(CHUNK):
            yield chunk


def upload_limit_mb(question: FileQuestion) -> Decimal:
    return question.max_mb or Decimal(FILE_MAX_MB)


def check_upload(question: FileQuestion, upload: Upload) -> None:
    """Type by extension and by content, and size: Unreadable if the file will not do."""
    suffix = upload.name.rsplit(".", 1)[-1].lower() if "." in upload.name else ""
    accepted = [a.lower().lstrip(".") for a in question.accept or []]
    if accepted and suffix not in accepted:
        raise Unreadable(f"the selected file must be a {' or '.join(a.upper() for a in accepted)}")
    limit = upload_limit_mb(question)
    if upload.size > limit * 1024 * 1024:
        raise Unreadable(f"the selected file must be smaller than {limit} MB")
    if not upload.size:
        raise Unreadable("the selected file is empty")
    magic = MAGIC.get(suffix)
    if magic and not upload.head(len(magic)) == magic:
        raise Unreadable(f"the selected file is not a real {suffix.upper()}")


def store_upload(folder: Path, upload: Upload) -> dict[str, Any]:
    """Keep an upload under its hash (never under the name it came with); returns its record.
    Copied a chunk at a time: however large, it is never held in memory whole."""
    folder.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=folder, prefix=".upload-", suffix=".part")
    digest = hashlib.sha256()
    try:
        with os.fdopen(handle, "wb") as out:
            for chunk in upload.chunks():
                digest.update(chunk)
                out.write(chunk)
        path = folder / digest.hexdigest()
        if path.exists():
            os.unlink(temporary)
        else:
            os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise
    safe_name = clean_text(Path(upload.name.replace("\\", "/")).name)[:200]
    return {"name": safe_name, "size": upload.size, "sha256": digest.hexdigest()}


async def read_upload(form: FormData, name: str) -> Upload | None:
    value = form.get(name)
    if not isinstance(value, UploadFile) or not value.filename:
        return None
    size = value.size if value.size is not None else _size_of(value.file)
    return Upload(name=value.filename, file=value.file, size=size)


def _size_of(file: BinaryIO) -> int:
    file.seek(0, os.SEEK_END)
    return file.tell()


async def read_uploads(form: FormData) -> dict[str, Upload]:
    """Every file posted, by field name (read before the questions are known)."""
    uploads = {}
    for name in {key for key, value in form.multi_items() if isinstance(value, UploadFile)}:
        upload = await read_upload(form, name)
        if upload is not None:
            uploads[name] = upload
    return uploads


def kept_upload(
    form: FormData,
    question_id: str,
    folder: Path,
    stored: Callable[[str], bool] | None = None,
) -> dict[str, Any] | None:
    """An upload's record carried by a page that asks whose answer to keep, if it is one of the
    application's stored files (a record naming anything else is ignored). `stored` says
    whether a hash is in the store (cbflow.store), which reaches files uploaded through another
    host; without it, the application's folder here is looked in."""
    value = form.get(UPLOAD_FIELD + question_id)
    try:
        kept = json.loads(value) if isinstance(value, str) and value else None
    except ValueError:
        return None
    if not isinstance(kept, dict) or set(kept) != {"name", "size", "sha256"}:
        return None
    digest = kept["sha256"]
    if not (isinstance(digest, str) and re.fullmatch(r"[0-9a-f]{64}", digest)):
        return None
    found = stored(digest) if stored is not None else (folder / digest).is_file()
    if not found or not isinstance(kept["size"], int):
        return None
    return {"name": clean_text(str(kept["name"]))[:200], "size": kept["size"], "sha256": digest}
