"""The portal's foundation: pages in the GOV.UK template, the rounds listed, security headers,
CSRF on every post, the session secret, and the GOV.UK Frontend assets the pages load."""

from __future__ import annotations

import base64
import hashlib
import re
import stat
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from conftest import edit, example_text
from fastapi.testclient import TestClient

from cbflow import stages
from cbflow.errors import CbflowError
from cbflow.settings import Settings
from cbflow.web import create_app


@pytest.fixture
def client(cbflow_env: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(cbflow_env)) as client:
        yield client


def _launch(source: str) -> None:
    stages.launch(source, "round.yaml", now=datetime(2011, 10, 17, 9, tzinfo=UTC))


def test_home_with_no_rounds_says_so_in_the_govuk_template(client: TestClient) -> None:
    page = client.get("/")

    assert page.status_code == 200
    html = page.text
    assert "<title>Funding rounds – cbflow – GOV.UK</title>" in html
    assert '<a href="#main-content" class="govuk-skip-link"' in html
    assert 'id="main-content"' in html
    assert "govuk-phase-banner" in html
    assert "govuk-footer" in html
    assert "No rounds have been launched yet." in html


def test_home_lists_launched_round_with_eoi_deadline_in_its_time_zone(client: TestClient) -> None:
    _launch(example_text())

    html = client.get("/").text

    assert "Whole-place community budgets" in html
    assert "Department for Communities and Local Government" in html
    assert "Launched" in html
    # closes: "2011-11-10T12:00", local time in Europe/London (GMT in November)
    assert "12:00 on 10 November 2011 (GMT)" in html


def test_home_escapes_html_in_a_round_title(client: TestClient) -> None:
    _launch(
        edit(
            example_text(),
            ("title: Whole-place community budgets", "title: <script>alert(1)</script> budgets"),
        )
    )

    html = client.get("/").text

    assert "&lt;script&gt;alert(1)&lt;/script&gt; budgets" in html
    assert "<script>alert(1)" not in html


def test_healthz_answers_ok(client: TestClient) -> None:
    answer = client.get("/healthz")

    assert (answer.status_code, answer.text) == (200, "ok")


def test_pages_carry_security_headers(client: TestClient) -> None:
    headers = client.get("/").headers

    assert headers["x-frame-options"] == "DENY"
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["referrer-policy"] == "same-origin"
    policy = headers["content-security-policy"]
    assert "default-src 'self'" in policy
    assert "frame-ancestors 'none'" in policy
    assert "unsafe-inline" not in policy


def test_csp_allows_exactly_the_inline_scripts_of_the_page(client: TestClient) -> None:
    """The GOV.UK template's `govuk-frontend-supported` snippet runs under the CSP by its hash;
    any other inline script would be blocked."""
    answer = client.get("/")
    script_src = re.search(r"script-src ([^;]*)", answer.headers["content-security-policy"])
    assert script_src is not None
    allowed = set(script_src.group(1).split())

    inline = re.findall(r"<script>(.*?)</script>", answer.text, flags=re.DOTALL)

    assert inline, "the page has the GOV.UK template's inline snippet"
    for body in inline:
        digest = base64.b64encode(hashlib.sha256(body.encode()).digest()).decode()
        assert f"'sha256-{digest}'" in allowed


def test_page_loads_govuk_frontend_css_js_and_every_asset_its_css_names(
    client: TestClient,
) -> None:
    html = client.get("/").text
    css_href = re.search(r'<link rel="stylesheet" href="([^"]+)"', html)
    scripts = re.findall(r'<script type="module" src="([^"]+)"', html)
    assert css_href is not None and scripts

    css = client.get(css_href.group(1))
    assert css.status_code == 200 and ".govuk-header" in css.text
    for script in scripts:
        assert client.get(script).status_code == 200
    init = client.get(scripts[0]).text
    for imported in re.findall(r'from "([^"]+)"', init):
        assert client.get(imported).status_code == 200
    urls = set(re.findall(r"url\((/[^)]+)\)", css.text))
    assert urls, "the CSS names its fonts and images"
    for url in urls:
        assert client.get(url).status_code == 200, url


def test_post_without_csrf_token_is_refused_403(client: TestClient) -> None:
    answer = client.post("/sign-out", data={})

    assert answer.status_code == 403
    assert "Your session has expired" in answer.text


def test_post_with_a_wrong_csrf_token_is_refused_403(client: TestClient) -> None:
    client.get("/")

    answer = client.post("/sign-out", data={"csrf_token": "forged"})

    assert answer.status_code == 403


def test_unknown_page_is_a_govuk_404(client: TestClient) -> None:
    answer = client.get("/no-such-page")

    assert answer.status_code == 404
    assert "<title>Page not found – cbflow – GOV.UK</title>" in answer.text


def test_secret_key_is_generated_once_and_kept_private_in_the_data_dir(
    cbflow_env: Settings,
) -> None:
    create_app(cbflow_env)
    key_file = cbflow_env.data_dir / "secret_key"
    first = key_file.read_text()

    create_app(cbflow_env)

    assert key_file.read_text() == first and len(first) >= 40
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600


def test_create_app_without_npm_install_says_to_run_setup(
    cbflow_env: Settings, tmp_path: Path
) -> None:
    settings = cbflow_env.model_copy(update={"frontend_dir": tmp_path / "node_modules"})

    with pytest.raises(CbflowError, match=r"run `./dev setup`"):
        create_app(settings)
