"""Amending a round's prospectus: staff upload the revised file, read what changed and what is
refused before confirming, and the amend-prospectus flow publishes it (the new version, its
document, the councils' e-mails, the deadline runs rescheduled). The round's page lists every
version."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from fastapi import Request, UploadFile
from fastapi.responses import Response
from sqlmodel import Session, col, select

from cbflow.errors import ProspectusError
from cbflow.flowlist import AMEND_PROSPECTUS
from cbflow.formatting import local_time
from cbflow.models import Document, Round
from cbflow.prospectus import Prospectus, parse
from cbflow.services import amendments, rounds
from cbflow.settings import Settings
from cbflow.web.deps import ReasonField, ShortField
from cbflow.web.staff.shared import (
    DeskDep,
    RoundPage,
    round_header,
    round_or_404,
    stage_router,
)
from cbflow.web.templating import path_for

router = stage_router()

MAX_PROSPECTUS_BYTES = 512 * 1024
SHA256 = re.compile(r"^[0-9a-f]{64}$")


class UploadRefused(Exception):
    """An uploaded prospectus file that cannot be read as one: why, and each problem."""

    def __init__(self, message: str, problems: list[str] | None = None) -> None:
        super().__init__(message)
        self.message, self.problems = message, problems or []


def read_prospectus(upload: UploadFile | None) -> tuple[str, str, Prospectus]:
    """An uploaded prospectus file, bounded and checked as launch checks it: (its name, its
    text, the prospectus). Raises UploadRefused saying what is wrong."""
    if upload is None or not upload.filename:
        raise UploadRefused("Select a prospectus file")
    name = Path(upload.filename.replace("\\", "/")).name
    if not name.lower().endswith((".yaml", ".yml")):
        raise UploadRefused("The prospectus must be a YAML file (.yaml or .yml)")
    content = upload.file.read(MAX_PROSPECTUS_BYTES + 1)  # in this thread: the file is spooled
    if len(content) > MAX_PROSPECTUS_BYTES:
        raise UploadRefused(
            f"The prospectus must be smaller than {MAX_PROSPECTUS_BYTES // 1024} KB"
        )
    try:
        source = content.decode("utf-8")
    except UnicodeDecodeError:
        raise UploadRefused("The prospectus must be a text file in UTF-8") from None
    try:
        parsed = parse(source, name)
    except ProspectusError as exc:
        count = len(exc.problems)
        raise UploadRefused(
            f"The prospectus has {count} problem{'s' if count != 1 else ''}: correct the file "
            "and upload it again",
            list(exc.problems),
        ) from None
    return name, source, parsed


# ---------------------------------------------------------------------------------------------
# the versions, as the round's page lists them


@dataclass(frozen=True)
class VersionRow:
    version: int
    when: str
    who: str
    reason: str
    changes: list[str]
    document: str | None  # the address of its prospectus document, once issued
    in_force: bool


def version_rows(
    request: Request, session: Session, round_: Round, prospectus: Prospectus
) -> list[VersionRow]:
    """Every version of the round's prospectus, the newest first, with its document."""
    keys = {
        d.key: d.id
        for d in session.exec(
            select(Document).where(
                Document.round_id == round_.id, col(Document.kind) == "prospectus"
            )
        )
    }
    rows = []
    for v in reversed(amendments.versions_of(session, round_)):
        key = f"{round_.slug}/prospectus" + (f"/v{v.version}" if v.version > 1 else "")
        found = keys.get(key)
        rows.append(
            VersionRow(
                version=v.version,
                when=local_time(v.published_at, prospectus),
                who=v.published_by,
                reason=v.reason,
                changes=list(v.changes),
                document=path_for(request, "staff_document", document_id=found)
                if found is not None
                else None,
                in_force=v.version == round_.prospectus_version,
            )
        )
    return rows


# ---------------------------------------------------------------------------------------------
# publishing an amendment


@dataclass(frozen=True)
class Checked:
    """A revised file, checked: what it changes and why it may not be published."""

    name: str
    sha256: str
    changes: list[str]
    refusals: list[str]

    @property
    def can_confirm(self) -> bool:
        return not self.refusals


@dataclass(frozen=True, kw_only=True)
class AmendPage(RoundPage):
    version: int  # the version in force
    errors: dict[str, str]
    problems: list[str]  # the file's problems, each with its line
    checked: Checked | None
    reason: str


def _kept(settings: Settings, slug: str, sha256: str) -> Path:
    """Where a checked file waits to be confirmed: the confirmation names it by its hash, so
    only the very file that was checked can be published."""
    return settings.data_dir / "amendments" / slug / f"{sha256}.yaml"


def _page(
    desk: DeskDep,
    round_: Round,
    *,
    status: int = 200,
    errors: dict[str, str] | None = None,
    problems: list[str] | None = None,
    checked: Checked | None = None,
    reason: str = "",
) -> Response:
    prospectus = rounds.prospectus_of(round_)
    page = AmendPage(
        **round_header(desk.request, round_, prospectus, ""),
        version=round_.prospectus_version,
        errors=errors or {},
        problems=problems or [],
        checked=checked,
        reason=reason,
    )
    return desk.pages.show(desk.request, "staff/amend.html", page, status)


def _check(desk: DeskDep, round_: Round, name: str, source: str) -> Checked:
    new = parse(source, name)
    refusals = amendments.check(desk.session, round_, new, desk.now)
    changes = [c.text for c in amendments.compare(rounds.prospectus_of(round_), new)]
    sentences = [f"{r[0].upper()}{r[1:]}." for r in refusals]
    return Checked(name, amendments.sha256_of(source), changes, sentences)


@router.get("/rounds/{slug}/amendment")
def amendment_page(slug: str, desk: DeskDep) -> Response:
    return _page(desk, round_or_404(desk.session, slug))


@router.post("/rounds/{slug}/amendment")
def check_amendment(slug: str, desk: DeskDep, prospectus: UploadFile | None = None) -> Response:
    """Check the revised file as launch checks it, then show what it changes and anything
    that stops it being published."""
    round_ = round_or_404(desk.session, slug)
    try:
        name, source, _ = read_prospectus(prospectus)
    except UploadRefused as refused:
        return _page(
            desk,
            round_,
            status=400,
            errors={"prospectus": refused.message},
            problems=refused.problems,
        )
    checked = _check(desk, round_, name, source)
    if checked.can_confirm:
        kept = _kept(desk.settings, slug, checked.sha256)
        kept.parent.mkdir(parents=True, exist_ok=True)
        kept.write_text(source, encoding="utf-8")
    return _page(desk, round_, status=200 if checked.can_confirm else 409, checked=checked)


@router.post("/rounds/{slug}/amendment/confirm")
def confirm_amendment(
    slug: str,
    desk: DeskDep,
    sha256: ShortField = "",
    name: ShortField = "",
    reason: ReasonField = "",
    nonce: ShortField = "",
) -> Response:
    """Publish the file that was checked (named by its hash) with the reason staff give: the
    amend-prospectus flow does it. Checked again first: the round may have moved on."""
    round_ = round_or_404(desk.session, slug)
    kept = _kept(desk.settings, slug, sha256) if SHA256.match(sha256) else None
    if kept is None or not kept.is_file():
        return _page(
            desk,
            round_,
            status=400,
            errors={"prospectus": "Upload the revised prospectus file and check it first"},
        )
    source = kept.read_text(encoding="utf-8")
    name = Path(name).name or "amendment.yaml"
    checked = _check(desk, round_, name, source)
    if checked.sha256 != sha256:  # the kept file is not the one named: never publish it
        return _page(desk, round_, status=400, errors={"prospectus": "Upload the file again"})
    text = reason.strip()
    problem = ""
    if not text:
        problem = "Give the reason for the amendment"
    elif len(text) > amendments.REASON_LIMIT:
        problem = f"The reason must be {amendments.REASON_LIMIT} characters or fewer"
    if problem or not checked.can_confirm:
        return _page(
            desk,
            round_,
            status=400 if problem else 409,
            errors={"reason": problem} if problem else {},
            checked=checked,
            reason=text,
        )
    return desk.start(
        AMEND_PROSPECTUS,
        {
            "slug": slug,
            "source": source,
            "path": name,
            "reason": text,
            "schedule": desk.settings.schedule_deadlines,
        },
        round_=round_,
        nonce=nonce,
        back=path_for(desk.request, "amendment_page", slug=slug),
    )
