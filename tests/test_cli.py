"""The `cbflow` command, run for real in a subprocess against a test's own data folder; the
sign-in links it prints are used on the portal of that folder."""

from __future__ import annotations

import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller
from conftest import configure, free_port
from fastapi.testclient import TestClient
from httpx import Response
from portal import csrf
from test_sign_in import Inbox, link_in

from cbflow.prospectus import load
from cbflow.settings import get_settings
from cbflow.web import create_app

ROOT = Path(__file__).resolve().parent.parent
PROSPECTUSES = sorted((ROOT / "prospectus").glob("*.yaml"))
WHOLE_PLACE = ROOT / "prospectus" / "whole-place-2011.yaml"


def cbflow(
    data_dir: Path, *args: str | Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "CBFLOW_DATA_DIR": str(data_dir),
        "CBFLOW_DATABASE_URL": "",
        "CBFLOW_RENDER_WORKERS": "1",
        "CBFLOW_SMTP_HOST": "",  # no mail server unless a test gives one
        "COLUMNS": "200",  # rich wraps long lines at the terminal's width
        **(env or {}),
    }
    env.pop("PREFECT_API_URL", None)  # no scheduling on a Prefect server
    return subprocess.run(
        [sys.executable, "-m", "cbflow.cli", *map(str, args)],
        env=env,
        cwd=data_dir.parent,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize("path", PROSPECTUSES, ids=lambda p: p.name)
def test_prospectus_check_shipped_file_passes(tmp_path: Path, path: Path) -> None:
    done = cbflow(tmp_path / "data", "prospectus", "check", path)

    assert done.returncode == 0, done.stderr
    assert f"{path}: ok" in done.stdout


# files that took minutes and gigabytes, or ended in a traceback, each with what is said of it
HOSTILE_PROSPECTUSES = {
    # 5.7 KB of aliases, each list nine of the one before: 89 s and 2.4 GB to check
    "aliases": (
        "format: 1\nl0: &l0 [x, x, x, x, x, x, x, x, x]\n"
        + "".join(f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]\n" for i in range(1, 12)),
        "7: its aliases (*) repeat it to more than 100,000 values",
    ),
    "brackets": ("format: 1\nid: x\nc: " + "[" * 2000 + "]" * 2000 + "\n", "3: lists and"),
    "digits": ("format: 1\nid: x\nd: " + "9" * 100_001 + "\n", "3: a number of more than"),
    "indents": ("c:\n" + "".join("  " * i + "- \n" for i in range(1, 100)), "41: lists and"),
}


@pytest.mark.parametrize("name", HOSTILE_PROSPECTUSES)
def test_prospectus_check_refuses_a_hostile_file_at_once_with_its_line(
    tmp_path: Path, name: str
) -> None:
    text, said = HOSTILE_PROSPECTUSES[name]
    hostile = tmp_path / f"{name}.yaml"
    hostile.write_text(text, encoding="utf-8")

    started = time.monotonic()
    done = cbflow(tmp_path / "data", "prospectus", "check", hostile)

    assert time.monotonic() - started < 10  # the command starts Python and imports cbflow
    assert done.returncode == 1
    assert f"{hostile}:{said}" in done.stderr
    assert "Traceback" not in done.stderr + done.stdout


def test_prospectus_check_misspelt_key_names_file_line_and_key(tmp_path: Path) -> None:
    lines = WHOLE_PLACE.read_text(encoding="utf-8").splitlines(keepends=True)
    number = next(i for i, line in enumerate(lines, 1) if line.startswith("capacity:")) + 1
    key = lines[number - 1].split(":")[0].strip()
    lines[number - 1] = lines[number - 1].replace(key, key + "x", 1)
    broken = tmp_path / "broken.yaml"
    broken.write_text("".join(lines), encoding="utf-8")

    done = cbflow(tmp_path / "data", "prospectus", "check", broken)

    assert done.returncode != 0
    assert f"{broken}:{number}" in done.stderr
    assert f"capacity.{key}x" in done.stderr


def test_prospectus_schema_prints_the_format_schema(tmp_path: Path) -> None:
    done = cbflow(tmp_path / "data", "prospectus", "schema")

    assert done.returncode == 0, done.stderr
    schema = json.loads(done.stdout)
    assert schema["type"] == "object"
    assert {"id", "title", "timetable"} <= set(schema["properties"])


def test_prospectus_schema_of_a_form_lists_its_questions(tmp_path: Path) -> None:
    done = cbflow(tmp_path / "data", "prospectus", "schema", WHOLE_PLACE, "--form", "eoi")

    assert done.returncode == 0, done.stderr
    questions = [q.id for q in load(WHOLE_PLACE).forms()["eoi"].questions()]
    assert list(json.loads(done.stdout)["properties"]) == questions


def test_init_creates_the_database_with_every_council(tmp_path: Path) -> None:
    data = tmp_path / "data"

    done = cbflow(data, "init")

    assert done.returncode == 0, done.stderr
    with sqlite3.connect(data / "cbflow.db") as connection:
        (count,) = connection.execute("SELECT count(*) FROM council").fetchone()
    assert count == 353


def test_round_launch_twice_creates_one_launched_round(tmp_path: Path) -> None:
    data = tmp_path / "data"
    round_id = load(WHOLE_PLACE).id

    first = cbflow(data, "round", "launch", WHOLE_PLACE)
    again = cbflow(data, "round", "launch", WHOLE_PLACE)
    status = cbflow(data, "round", "status")

    assert first.returncode == 0, first.stderr
    assert again.returncode == 0, again.stderr
    assert "already launched" in again.stdout
    assert status.returncode == 0, status.stderr
    assert round_id in status.stdout
    assert "launched" in status.stdout.split(round_id, 1)[1].splitlines()[0]
    with sqlite3.connect(data / "cbflow.db") as connection:
        rows = connection.execute("SELECT slug, state FROM round").fetchall()
    assert rows == [(round_id, "launched")]


def test_round_status_of_unknown_round_fails_in_one_line(tmp_path: Path) -> None:
    done = cbflow(tmp_path / "data", "round", "status", "no-such-round")

    assert done.returncode == 1
    assert "no-such-round" in done.stderr
    assert "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_user_add_makes_the_first_administrator_and_refuses_bad_input(tmp_path: Path) -> None:
    added = cbflow(
        tmp_path, "user", "add", "Ada@Example.gov.uk", "--name", "Ada", "--role", "admin"
    )
    assert added.returncode == 0, added.stderr
    assert "Added Ada <ada@example.gov.uk> as Administrator" in added.stdout
    again = cbflow(tmp_path, "user", "add", "ada@example.gov.uk", "--name", "A", "--role", "admin")
    assert again.returncode == 1
    assert "already uses this email address" in again.stderr
    no_council = cbflow(
        tmp_path, "user", "add", "pat@essex.example", "--name", "Pat", "--role", "applicant"
    )
    assert no_council.returncode == 1 and "council the applicant applies for" in no_council.stderr
    with sqlite3.connect(tmp_path / "cbflow.db") as db:
        rows = db.execute("select email, role from user").fetchall()
        events = db.execute("select action, actor from auditevent where entity = 'user'").fetchall()
    assert rows == [("ada@example.gov.uk", "admin")]
    assert events == [("user_added", "cli"), ("sign_in_link_handed_over", "cli")]


LINK = re.compile(r"^(http://127\.0\.0\.1:8000)(/sign-in/[\w-]+)$", re.MULTILINE)


def printed_link(output: str) -> str:
    """The path of the one sign-in link a command printed, on a line of its own."""
    found = LINK.findall(output)
    assert len(found) == 1, output
    return str(found[0][1])


def sign_in_with(client: TestClient, path: str) -> Response:
    """Open a sign-in link's page and press 'Sign in', as a person does."""
    page = client.get(path)
    if page.status_code != 200:
        return page
    return client.post(path, data={"csrf_token": csrf(page.text)}, follow_redirects=False)


@pytest.fixture
def portal(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:
    """The portal on the data folder the commands use (tmp_path/data)."""
    settings = configure(monkeypatch, tmp_path / "data")
    with TestClient(create_app(settings)) as client:
        yield client
    get_settings.cache_clear()


def test_user_add_without_a_mail_server_prints_a_link_that_signs_in_once(
    tmp_path: Path, portal: TestClient
) -> None:
    added = cbflow(
        tmp_path / "data", "user", "add", "ada@example.gov.uk", "--name", "Ada", "--role", "admin"
    )

    assert added.returncode == 0, added.stderr
    assert "No mail server is set" in added.stdout
    assert "It works once, until " in added.stdout
    path = printed_link(added.stdout)
    assert portal.get("/admin/people", follow_redirects=False).status_code == 303
    signed_in = sign_in_with(portal, path)
    assert signed_in.status_code == 303
    assert portal.get("/admin/people").status_code == 200  # the administrator is in
    portal.cookies.clear()
    again = sign_in_with(portal, path)
    assert again.status_code == 400 and "This link cannot be used" in again.text
    with sqlite3.connect(tmp_path / "data" / "cbflow.db") as db:
        (outbox,) = db.execute("select count(*) from outboxmessage").fetchone()
        (stored,) = db.execute("select token_hash from magiclink").fetchone()
    assert outbox == 0, "the link is printed, not left in an outbox nobody can read yet"
    assert path.rsplit("/", 1)[1] not in stored


def test_user_link_prints_a_fresh_link_for_someone_who_can_sign_in(
    tmp_path: Path, portal: TestClient
) -> None:
    data = tmp_path / "data"
    first = cbflow(data, "user", "add", "ada@example.gov.uk", "--name", "Ada", "--role", "admin")
    assert first.returncode == 0, first.stderr

    fresh = cbflow(data, "user", "link", "  Ada@Example.gov.uk ")

    assert fresh.returncode == 0, fresh.stderr
    assert "Sign-in link for Ada <ada@example.gov.uk>" in fresh.stdout
    path = printed_link(fresh.stdout)
    assert path != printed_link(first.stdout)
    assert sign_in_with(portal, path).status_code == 303
    assert portal.get("/admin/outbox").status_code == 200
    with sqlite3.connect(data / "cbflow.db") as db:
        events = db.execute("select action, actor from auditevent where entity = 'user'").fetchall()
    assert events.count(("sign_in_link_handed_over", "cli")) == 2
    assert ("sign-in", "ada@example.gov.uk") in events


def test_user_link_for_an_unknown_address_fails_in_one_line(tmp_path: Path) -> None:
    done = cbflow(tmp_path / "data", "user", "link", "nobody@example.gov.uk")

    assert done.returncode == 1
    assert "nobody signs in as nobody@example.gov.uk" in done.stderr
    assert "cbflow user add" in done.stderr
    assert "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert "/sign-in/" not in done.stdout + done.stderr


def test_user_add_with_a_mail_server_mails_the_link_and_prints_none(
    tmp_path: Path, portal: TestClient
) -> None:
    inbox = Inbox()
    port = free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        added = cbflow(
            tmp_path / "data",
            *("user", "add", "ada@example.gov.uk", "--name", "Ada", "--role", "admin"),
            env={"CBFLOW_SMTP_HOST": "127.0.0.1", "CBFLOW_SMTP_PORT": str(port)},
        )
    finally:
        controller.stop()

    assert added.returncode == 0, added.stderr
    assert "Mailed them a sign-in link" in added.stdout
    assert "/sign-in/" not in added.stdout
    assert [m["To"] for m in inbox.messages] == ["ada@example.gov.uk"]
    assert (
        sign_in_with(portal, "/" + link_in(inbox.messages[0]).split("/", 3)[3]).status_code == 303
    )


def test_user_add_whose_mail_is_not_sent_says_how_to_get_a_link(tmp_path: Path) -> None:
    added = cbflow(
        tmp_path / "data",
        *("user", "add", "ada@example.gov.uk", "--name", "Ada", "--role", "admin"),
        env={"CBFLOW_SMTP_HOST": "127.0.0.1", "CBFLOW_SMTP_PORT": str(free_port())},
    )

    assert added.returncode == 1
    assert "Added Ada" in added.stdout
    assert "not mailed" in added.stderr and "cbflow user link ada@example.gov.uk" in added.stderr
    assert "Traceback" not in added.stderr


def test_what_cbflow_writes_is_its_owners_alone(tmp_path: Path) -> None:
    # a folder every account may pass through, as a home or /srv would be: only the data
    # folder's own permissions keep other accounts out
    shared = Path(tempfile.mkdtemp(prefix="cbflow-shared-"))
    try:
        shared.chmod(0o755)
        data = shared / "data"
        added = cbflow(
            data,
            "user",
            "add",
            "ada@example.gov.uk",
            "--name",
            "Ada",
            "--role",
            "admin",
        )
        assert added.returncode == 0, added.stderr
        written = [data, *data.rglob("*")]
        assert any(p.name == "cbflow.db" for p in written)
        for path in written:
            assert path.stat().st_mode & 0o077 == 0, (path, oct(path.stat().st_mode))
        assert data.stat().st_mode & 0o777 == 0o700

        # a folder made before (by an older cbflow, with the usual umask) is closed on first use
        data.chmod(0o755)
        assert cbflow(data, "user", "link", "ada@example.gov.uk").returncode == 0
        assert data.stat().st_mode & 0o777 == 0o700

        nobody = shutil.which("runuser")
        if os.geteuid() == 0 and nobody:  # as another account of the machine: nothing readable
            for target in (data, data / "cbflow.db"):
                other = subprocess.run(
                    [nobody, "-u", "nobody", "--", "cat", str(target)],
                    capture_output=True,
                    text=True,
                )
                assert other.returncode != 0 and "Permission denied" in other.stderr
    finally:
        shutil.rmtree(shared, ignore_errors=True)
