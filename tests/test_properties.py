"""Properties of the portal under generated input: whatever is posted to a section, its
autosave or a return, and whatever file is offered as a prospectus, the answer is never a 5xx
or a traceback, and comes within a bounded time. Each property has a fixed budget of examples,
drawn the same way on every run (derandomized), so CI runs what a developer runs.

The values mix the careless and the hostile: any text (control characters, direction
overrides, other scripts), numbers in every notation and of any length, money with stray
symbols, dates out of range, and very long strings."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import ROOT
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_portal_forms import DURING_EOI, csrf, launch, sign_in, start
from test_returns_portal import RETURN_DAY, base_of, round_refs  # noqa: F401 (a fixture)

from cbflow.clock import FixedClock
from cbflow.errors import ProspectusError
from cbflow.prospectus import parse
from cbflow.settings import Settings
from cbflow.web import create_app

# one budget for every property: enough to find what the nine probes found, quick enough for CI
EXAMPLES = 40
SLOWEST = 2.0  # seconds an answer may take, on a busy two-core machine
PROPERTY = settings(
    max_examples=EXAMPLES,
    derandomize=True,
    deadline=None,  # the time is asserted by the test itself, per request
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

numbers = st.one_of(
    st.integers().map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.from_regex(r"-?[0-9]{1,60}(\.[0-9]{0,40})?([eE][-+]?[0-9]{1,9})?", fullmatch=True),
    st.sampled_from(["1e1000000", "1e30", "NaN", "-Infinity", "²", "١٢٣", "0x1F", "1_000"]),
)
money = st.one_of(numbers, numbers.map(lambda n: f"£{n}"), numbers.map(lambda n: f"{n},000.00"))
long_text = st.integers(min_value=1, max_value=200_000).map(lambda n: "x" * n)
texts = st.one_of(st.text(max_size=300), long_text, st.just("\x00\u202e\u2066 \r\n\t"))
values = st.one_of(texts, numbers, money)


def fields_of(page: str) -> tuple[list[str], dict[str, str]]:
    """The names of a page's fields (but its hidden ones), and its hidden fields' values."""
    hidden = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', page))
    names = re.findall(r'<(?:input|textarea|select)[^>]*\bname="([^"]+)"', page)
    return sorted({n for n in names if n not in hidden and n != "csrf_token"}), hidden


def timed(call: Any) -> tuple[Any, float]:
    started = time.monotonic()
    answer = call()
    return answer, time.monotonic() - started


@pytest.fixture
def applicant(cbflow_env: Settings) -> Iterator[tuple[TestClient, str]]:
    """Essex's applicant with an EOI of the whole-place round begun: (client, task list)."""
    with TestClient(create_app(cbflow_env, clock=FixedClock(DURING_EOI))) as client:
        launch((ROOT / "prospectus" / "whole-place-2011.yaml").read_text())
        sign_in(client, "pat@essex.gov.uk")
        yield client, start(client, "whole-place-2011")


SECTIONS = ["place", "ambition", "capacity", "contact"]


@PROPERTY
@given(data=st.data())
def test_any_post_to_a_section_or_its_autosave_is_answered_without_a_server_error(
    applicant: tuple[TestClient, str], data: st.DataObject
) -> None:
    client, base = applicant
    page = f"{base}/section/{data.draw(st.sampled_from(SECTIONS))}"
    names, hidden = fields_of(client.get(page).text)
    form = {name: data.draw(values) for name in data.draw(st.lists(st.sampled_from(names)))}
    token = csrf(client.get(page).text)
    action = data.draw(
        st.sampled_from(
            [
                "save",
                "resolve",
                "add:partners",
                "remove:partners:0",
                "remove:partners:²",
                "remove:partners:" + "9" * 40,
                "x" * 500,
            ]
        )
    )

    saved, took = timed(
        lambda: client.post(
            page,
            data={**hidden, **form, "csrf_token": token, "action": action},
            follow_redirects=False,
        )
    )
    assert saved.status_code < 500, saved.text[:500]
    assert took < SLOWEST, f"save took {took:.2f} s"
    autosaved, took = timed(
        lambda: client.post(f"{page}/autosave", data={**hidden, **form, "csrf_token": token})
    )
    assert autosaved.status_code < 500, autosaved.text[:500]
    assert took < SLOWEST, f"autosave took {took:.2f} s"
    if autosaved.headers["content-type"].startswith("application/json"):
        assert "saved" in autosaved.json()


@pytest.fixture
def returns(
    cbflow_env: Settings,
    round_refs: dict[str, str],  # noqa: F811 (the fixture)
) -> Iterator[tuple[TestClient, str]]:
    """Birmingham's officer, its place implementing: (client, the first return's page)."""
    with TestClient(create_app(cbflow_env, clock=FixedClock(RETURN_DAY))) as client:
        sign_in(client, "bea@birmingham.gov.uk", "BIR")
        yield client, f"{base_of(round_refs['BIR'])}/1"


@PROPERTY
@given(data=st.data())
def test_any_return_is_answered_without_a_server_error(
    returns: tuple[TestClient, str], data: st.DataObject
) -> None:
    client, page = returns
    names, hidden = fields_of(client.get(page).text)
    form = {name: data.draw(values) for name in data.draw(st.lists(st.sampled_from(names)))}
    token = csrf(client.get(page).text)
    target = data.draw(st.sampled_from([page, f"{page}/submit"]))

    answer, took = timed(
        lambda: client.post(
            target, data={**hidden, **form, "csrf_token": token}, follow_redirects=False
        )
    )
    assert answer.status_code < 500, answer.text[:500]
    assert took < SLOWEST, f"took {took:.2f} s"


# prospectus files: text of any kind, and YAML built of nested values, anchors and aliases
scalars = st.one_of(st.text(max_size=40), numbers, st.booleans().map(str), st.none().map(str))


def yaml_of(tree: Any, depth: int = 0) -> str:
    pad = "  " * depth
    if isinstance(tree, dict):
        return "".join(f"{pad}{k}:\n{yaml_of(v, depth + 1)}" for k, v in tree.items()) or "{}\n"
    if isinstance(tree, list):
        return "".join(f"{pad}-\n{yaml_of(v, depth + 1)}" for v in tree) or f"{pad}[]\n"
    return f"{pad}{tree}\n"


trees = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.from_regex(r"[a-z_]{1,8}", fullmatch=True), inner, max_size=4),
    ),
    max_leaves=30,
)
prospectus_texts = st.one_of(
    st.text(max_size=2_000),
    trees.map(yaml_of),
    trees.map(lambda t: "format: 1\nid: generated\n" + yaml_of({"stages": t})),
    st.integers(min_value=1, max_value=5_000).map(lambda n: "a: " + "[" * n + "]" * n),
    st.integers(min_value=2, max_value=12).map(
        lambda n: (
            "l0: &l0 [x, x, x, x, x, x, x, x, x]\n"
            + "".join(f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]\n" for i in range(1, n))
        )
    ),
    st.integers(min_value=1, max_value=200_000).map(lambda n: "format: " + "9" * n),
)


@PROPERTY
@given(text=prospectus_texts)
def test_any_prospectus_text_is_read_or_refused_with_its_problems(text: str) -> None:
    started = time.monotonic()
    try:
        parse(text, "generated.yaml")
    except ProspectusError as exc:
        assert exc.problems and all(p.startswith("generated.yaml") for p in exc.problems)
    assert time.monotonic() - started < SLOWEST


@pytest.fixture
def staff(cbflow_env: Settings) -> Iterator[TestClient]:
    from portal import add_user

    add_user("lead@staff.example", "staff")
    with TestClient(create_app(cbflow_env, clock=FixedClock(DURING_EOI))) as client:
        from portal import sign_in as sign_in_staff

        sign_in_staff(client, "lead@staff.example")
        yield client


@PROPERTY
@given(text=prospectus_texts)
def test_any_prospectus_uploaded_to_the_launch_page_is_answered_without_a_server_error(
    staff: TestClient, text: str
) -> None:
    token = csrf(staff.get("/staff/launch").text)
    answer, took = timed(
        lambda: staff.post(
            "/staff/launch",
            data={"csrf_token": token, "nonce": "n"},
            files={"prospectus": ("generated.yaml", text.encode(), "application/x-yaml")},
        )
    )
    assert answer.status_code < 500, answer.text[:500]
    assert took < SLOWEST, f"took {took:.2f} s"


@settings(max_examples=5, derandomize=True, deadline=None)
@given(text=prospectus_texts)
def test_prospectus_check_never_prints_a_traceback(text: str) -> None:
    # the command starts a Python of its own: a few examples, the rest are checked in process
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "generated.yaml"
        path.write_text(text, encoding="utf-8", errors="surrogatepass")
        done = subprocess.run(
            [sys.executable, "-m", "cbflow.cli", "prospectus", "check", str(path)],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=folder,
            env={**os.environ, "CBFLOW_DATA_DIR": str(Path(folder) / "data")},
        )
    assert "Traceback" not in done.stdout + done.stderr
    assert done.returncode in (0, 1)
