"""The store every host reaches (cbflow.store): a document issued by a real stage event, and an
upload posted through the portal, are served to the right person and refused to anyone else,
with this host's copy deleted first, so that what is served can only have come from the store
(cbflow's database on SQLite and on PostgreSQL, or a real S3-compatible server, moto's, running
in this process). A receipt rendered "on another host" is still attached to its e-mail, sent
through a real SMTP server. The local store keeps files where they always were and copies them
nowhere. Sign-in asks are counted in the database, so two portals share the limit."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from uuid import uuid4

import boto3
import pytest
import throwaway_postgres
from conftest import configure, edit, example_text, free_port
from fastapi.testclient import TestClient
from moto.server import ThreadedMotoServer
from portal import add_user, csrf, sign_in
from pydantic import ValidationError
from sqlmodel import col, select
from test_portal_forms import PDF, start
from test_receipts import (
    DURING_EOI,
    LAUNCHED,
    attachments,
    mail_by_smtp,
    smtp,  # noqa: F401 (a fixture)
    submitted_by,
)
from test_sign_in import Inbox

from cbflow import notify, stages
from cbflow.clock import FixedClock
from cbflow.db import migrate, session_scope
from cbflow.models import Application, BoardPack, Document, MagicLink, OutboxMessage, StoredFile
from cbflow.services.councils import load_register
from cbflow.settings import Settings, get_settings
from cbflow.store import BadKey, DatabaseStore, S3Store, Store, checked_key, get_store
from cbflow.web import create_app

STAFF = "lee@staff.example"
PAT = "pat@essex.gov.uk"  # Essex applied
KIM = "kim@kent.gov.uk"  # Kent did not


@pytest.fixture(scope="session")
def s3_server() -> Iterator[str]:
    """A real S3-compatible server (moto's) on a free local port, for this test session, with
    credentials of its own that reach nothing else."""
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AWS_ACCESS_KEY_ID", "cbflow-test")
        patch.setenv("AWS_SECRET_ACCESS_KEY", "cbflow-test")
        patch.setenv("AWS_DEFAULT_REGION", "us-east-1")
        try:
            yield f"http://127.0.0.1:{port}"
        finally:
            server.stop()


@pytest.fixture(
    params=[
        "local",
        "database",
        pytest.param("database-postgres", marks=pytest.mark.postgres),
        "s3",
    ]
)
def store_env(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Settings]:
    """A migrated database with the council register, an empty data folder, and the store of
    the parameter's kind."""
    kind: str = request.param
    url = ""
    if kind == "database-postgres":
        url = throwaway_postgres.fresh_database(request.getfixturevalue("postgres_server"))
    if kind == "s3":
        endpoint = request.getfixturevalue("s3_server")
        bucket = f"cbflow-{uuid4().hex[:12]}"
        boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket=bucket)
        monkeypatch.setenv("CBFLOW_S3_ENDPOINT_URL", endpoint)
        monkeypatch.setenv("CBFLOW_STORE", f"s3://{bucket}/cbflow")
    else:
        monkeypatch.setenv("CBFLOW_STORE", kind.partition("-")[0])
    settings = configure(monkeypatch, tmp_path / "data", url)
    migrate()
    with session_scope() as session:
        load_register(session)
    yield settings
    get_settings.cache_clear()


@pytest.fixture
def portal() -> Iterator[Callable[..., TestClient]]:
    """Portals signed in as a person (made first if a role is given), closed at the end."""
    with ExitStack() as stack:

        def signed_in(
            settings: Settings, email: str, role: str = "", council: str | None = None
        ) -> TestClient:
            app = create_app(settings, clock=FixedClock(DURING_EOI))
            client = stack.enter_context(TestClient(app))
            if role:
                add_user(email, role, council)
            sign_in(client, email)
            return client

        yield signed_in


def receipt_issued(settings: Settings) -> tuple[Application, Document]:
    """A round launched and an EOI receipt issued by the real stage events."""
    slug = stages.launch(example_text(), "round.yaml", now=LAUNCHED).round
    add_user(PAT, "applicant", "ESS")
    submitted_by(slug, "ESS", PAT)
    assert stages.issue_receipts(slug, now=DURING_EOI).counts["receipts"] == 1
    with session_scope() as session:
        document = session.exec(select(Document).where(Document.kind == "eoi_receipt")).one()
        application = session.exec(select(Application)).one()
    return application, document


def test_a_receipt_is_served_from_the_store_to_its_council_and_to_nobody_else(
    store_env: Settings, portal: Callable[..., TestClient]
) -> None:
    application, document = receipt_issued(store_env)
    local = store_env.documents_dir / document.path
    issued = local.read_bytes()
    assert issued.startswith(b"%PDF-")
    elsewhere = store_env.store != "local"
    if elsewhere:
        local.unlink()  # rendered on another host: this one has no copy
    pat = portal(store_env, PAT, "")
    kim = portal(store_env, KIM, "applicant", "KEN")
    staff = portal(store_env, STAFF, "staff")
    address = f"/applications/{application.id}/eoi/receipt.pdf"

    served = pat.get(address)
    by_staff = staff.get(f"/staff/documents/{document.id}")

    assert served.status_code == 200 and served.content == issued
    assert served.headers["content-type"] == "application/pdf"
    assert by_staff.status_code == 200 and by_staff.content == issued
    assert kim.get(address).status_code == 404  # another council's: as if there were none
    assert pat.get(f"/staff/documents/{document.id}").status_code == 403
    assert local.read_bytes() == issued  # kept here once fetched: the next read is local
    with session_scope() as session:
        rows = session.exec(select(StoredFile.key, StoredFile.sha256)).all()
    if store_env.store == "database":
        assert (f"documents/{document.path}", _sha256(issued)) in rows
    else:
        assert rows == []  # the local and the S3 store keep nothing in the database


def _sha256(content: bytes) -> str:
    import hashlib

    return hashlib.sha256(content).hexdigest()


def test_the_local_store_keeps_documents_where_they_always_were_and_nowhere_else(
    cbflow_env: Settings, portal: Callable[..., TestClient]
) -> None:
    application, document = receipt_issued(cbflow_env)
    local = cbflow_env.documents_dir / document.path
    pat = portal(cbflow_env, PAT, "")
    address = f"/applications/{application.id}/eoi/receipt.pdf"
    assert pat.get(address).content == local.read_bytes()

    local.unlink()

    assert pat.get(address).status_code == 404  # the data folder was the only copy, as before
    assert type(get_store(cbflow_env)) is Store


@pytest.mark.parametrize("store_env", ["database", "s3"], indirect=True)
def test_a_receipt_rendered_on_another_host_is_still_attached_to_its_email(
    store_env: Settings,
    smtp: tuple[Inbox, int],  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    inbox, port = smtp
    _, document = receipt_issued(store_env)  # the outbox has its e-mail: no SMTP server yet
    local = store_env.documents_dir / document.path
    issued = local.read_bytes()
    local.unlink()
    mail_by_smtp(monkeypatch, port)
    message = notify.Message(
        to=PAT,
        subject="Your receipt, again",
        body="Attached.",
        attachments=(notify.Attachment("receipt.pdf", local),),
    )

    assert notify.mail_all([message], get_settings()) == []

    (sent,) = inbox.messages
    (pdf,) = attachments(sent)
    assert pdf.get_filename() == "receipt.pdf" and pdf.get_payload(decode=True) == issued
    assert message.attachments[0].note().startswith("[Attachment: receipt.pdf (PDF, ")


@pytest.mark.parametrize("store_env", ["database"], indirect=True)
def test_an_attachment_in_no_store_fails_its_own_message_only(
    store_env: Settings,
    smtp: tuple[Inbox, int],  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    inbox, port = smtp
    mail_by_smtp(monkeypatch, port)
    lost = notify.Attachment("lost.pdf", store_env.documents_dir / "round" / "lost.pdf")
    messages = [
        notify.Message(to=PAT, subject="With a lost file", body=".", attachments=(lost,)),
        notify.Message(to=KIM, subject="Plain", body="."),
    ]

    failed = notify.mail_all(messages, get_settings())

    assert [(m.subject, "lost.pdf is in no store" in why) for m, why in failed] == [
        ("With a lost file", True)
    ]
    assert [m["Subject"] for m in inbox.messages] == ["Plain"]


@pytest.mark.parametrize("store_env", ["local", "database", "s3"], indirect=True)
def test_an_upload_is_served_from_the_store_to_staff_only(
    store_env: Settings, portal: Callable[..., TestClient]
) -> None:
    source = edit(
        example_text(),
        (
            "              max_words: 500\n              required: true\n    sift:",
            "              max_words: 500\n              required: true\n"
            "            - {id: plan, label: Outline plan, type: file, accept: [pdf], max_mb: 1}\n"
            "    sift:",
        ),
    )
    slug = stages.launch(source, "round.yaml", now=LAUNCHED).round
    pat = portal(store_env, PAT, "applicant", "ESS")
    base = start(pat, slug)
    section = f"{base}/section/place"
    posted = pat.post(
        section,
        data={"lead_council": "ESS", "action": "save", "csrf_token": csrf(pat.get(section).text)},
        files={"plan": ("plan.pdf", PDF, "application/pdf")},
        follow_redirects=False,
    )
    assert posted.status_code == 303
    with session_scope() as session:
        application = session.exec(select(Application)).one()
    digest = application.eoi_answers["plan"]["sha256"]
    local = store_env.data_dir / "uploads" / str(application.id) / digest
    assert local.read_bytes() == PDF
    if store_env.store != "local":
        local.unlink()  # uploaded through another host
    staff = portal(store_env, STAFF, "staff")
    address = f"/staff/rounds/{slug}/applications/{application.id}/files/{digest}"

    served = staff.get(address)

    assert served.status_code == 200 and served.content == PDF
    assert pat.get(address).status_code == 403  # staff's page: not the applicant's
    assert staff.get(address.replace(digest, "0" * 64)).status_code == 404
    # saving the section again without a file keeps the one uploaded, whichever host it is on
    again = pat.post(
        section,
        data={"lead_council": "ESS", "action": "save", "csrf_token": csrf(pat.get(section).text)},
        follow_redirects=False,
    )
    assert again.status_code == 303
    with session_scope() as session:
        assert session.get(Application, application.id).eoi_answers["plan"]["sha256"] == digest  # type: ignore[union-attr]


@pytest.mark.parametrize("store_env", ["database", "s3"], indirect=True)
def test_a_board_pack_made_on_another_host_is_served_to_staff_only(
    store_env: Settings, portal: Callable[..., TestClient]
) -> None:
    stages.launch(example_text(), "round.yaml", now=LAUNCHED)
    stages.board_pack(now=DURING_EOI)
    with session_scope() as session:
        pack = session.exec(select(BoardPack)).one()
    local = store_env.documents_dir / pack.path
    made = local.read_bytes()
    local.unlink()
    staff = portal(store_env, STAFF, "staff")
    pat = portal(store_env, PAT, "applicant", "ESS")

    served = staff.get(f"/staff/board/packs/{pack.id}")

    assert served.status_code == 200 and served.content == made
    assert pat.get(f"/staff/board/packs/{pack.id}").status_code == 403


def test_a_document_whose_path_leaves_its_folder_is_never_served(
    store_env: Settings, portal: Callable[..., TestClient]
) -> None:
    """A key is checked before any I/O: the store never reads outside its area's folder."""
    application, _ = receipt_issued(store_env)
    secret = store_env.data_dir / "secret.pdf"
    secret.write_bytes(PDF)
    outside = ("../secret.pdf", str(secret), "a/../../secret.pdf", "..\\secret.pdf")
    with session_scope() as session:
        documents = [
            Document(
                key=f"outside/{n}",
                round_id=application.round_id,
                application_id=application.id,
                kind="decision",
                title="Decision on your application",
                path=path,
                created_at=LAUNCHED,
            )
            for n, path in enumerate(outside)
        ]
        session.add_all(documents)
        session.flush()
        ids = [d.id for d in documents]
    staff = portal(store_env, STAFF, "staff")

    assert [staff.get(f"/staff/documents/{i}").status_code for i in ids] == [404] * 4


@pytest.mark.parametrize(
    "key",
    ["../cbflow.db", "/etc/passwd", "a/../../b", "a//b", "./a", "a\\b", "a\x00b", "", "x" * 401],
)
def test_a_bad_key_is_refused_before_any_io(cbflow_env: Settings, key: str) -> None:
    nowhere = cbflow_env.data_dir / "does-not-exist.pdf"
    with pytest.raises(BadKey):
        checked_key("documents", key)
    with pytest.raises(BadKey):
        DatabaseStore(cbflow_env.data_dir).keep("documents", key, nowhere)  # not even opened
    with pytest.raises(BadKey):
        Store(cbflow_env.data_dir).local_copy("uploads", key)
    with session_scope() as session:
        assert session.exec(select(StoredFile)).all() == []


def test_an_area_is_one_of_two() -> None:
    with pytest.raises(BadKey, match="not a store area"):
        checked_key("secrets", "a.pdf")


@pytest.mark.parametrize(
    ("setting", "said"),
    [
        ("ftp://bucket/x", "it must be 'local' (the data folder), 'database' or"),
        ("s3://", "is not an S3 bucket name"),
        ("s3://Upper_Case/x", "is not an S3 bucket name"),
        ("s3://bucket/../x", "the prefix may hold"),
        ("databse", "it must be 'local'"),
    ],
)
def test_a_bad_store_setting_is_refused_at_start_naming_the_setting(
    setting: str, said: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CBFLOW_STORE", setting)
    with pytest.raises(ValidationError) as refused:
        Settings()
    assert "CBFLOW_STORE=" in str(refused.value) and said in str(refused.value)


def test_an_s3_setting_names_its_bucket_and_prefix(s3_server: str, tmp_path: Path) -> None:
    settings = Settings(
        data_dir=tmp_path, store="s3://cbflow-docs/live/", s3_endpoint_url=s3_server
    )
    store = get_store(settings)
    assert isinstance(store, S3Store)
    assert (store.bucket, store.prefix) == ("cbflow-docs", "live")


# -- the sign-in limit, shared ----------------------------------------------------------------


def _links() -> int:
    with session_scope() as session:
        return len(session.exec(select(MagicLink)).all())


def _ask(client: TestClient, email: str) -> None:
    token = csrf(client.get("/sign-in").text)
    answer = client.post(
        "/sign-in", data={"email": email, "csrf_token": token}, follow_redirects=False
    )
    assert answer.status_code == 303  # told the same, sent or not


def test_two_portals_share_one_count_of_sign_in_asks(
    any_db_env: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CBFLOW_SIGN_IN_ASKS_PER_MINUTE", "4")
    get_settings.cache_clear()
    settings = get_settings()
    people = [f"officer{n}@essex.gov.uk" for n in range(6)]
    for email in people:
        add_user(email, "applicant", "ESS")
    if time.time() % 60 > 50:  # all the asks in one minute of the clock
        time.sleep(61 - time.time() % 60)
    with (
        TestClient(create_app(settings)) as first,
        TestClient(create_app(settings)) as second,
    ):
        for n in range(4):
            _ask(first if n % 2 else second, people[n])
        assert _links() == 4

        _ask(first, people[4])
        _ask(second, people[5])

    assert _links() == 4  # the fifth and sixth asks of the minute sent nothing, on either
    with session_scope() as session:
        sent = session.exec(select(OutboxMessage.to).order_by(col(OutboxMessage.id))).all()
    assert sorted(sent) == people[:4]
