"""The `cbflow` command, run for real in a subprocess against a test's own data folder."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from cbflow.prospectus import load

ROOT = Path(__file__).resolve().parent.parent
PROSPECTUSES = sorted((ROOT / "prospectus").glob("*.yaml"))
WHOLE_PLACE = ROOT / "prospectus" / "whole-place-2011.yaml"


def cbflow(data_dir: Path, *args: str | Path) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "CBFLOW_DATA_DIR": str(data_dir),
        "CBFLOW_DATABASE_URL": "",
        "CBFLOW_RENDER_WORKERS": "1",
        "COLUMNS": "200",  # rich wraps long lines at the terminal's width
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
    assert events == [("user_added", "cli")]
