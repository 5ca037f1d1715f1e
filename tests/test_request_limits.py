"""Every post the portal reads is bounded by the largest files a launched round accepts: a
400 MB post to a question that takes 10 MB is refused (413, a page that says why) without the
portal process reading it into memory, whether it declares its length or streams without one.
Through a real web server on a real socket: the test client would hand the app the whole body
at once."""

from __future__ import annotations

import os
import re
import threading
import time
from collections.abc import Iterator

import httpx
import pytest
from conftest import ROOT
from portal import serving
from sqlmodel import select
from test_portal_commits import sign_in_over_http
from test_portal_forms import DURING_EOI, launch

from cbflow.clock import FixedClock
from cbflow.db import session_scope
from cbflow.models import Application, User
from cbflow.settings import Settings

MB = 1024 * 1024
SENT = 400 * MB
BOUNDARY = "cbflow-test-boundary"


def rss_mb() -> float:
    """This process's resident memory now (the portal runs in one of its threads)."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / MB


class Peak:
    """The most memory the process holds while the block runs, sampled every 5 ms."""

    def __init__(self) -> None:
        self.baseline = self.most = rss_mb()
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._done.wait(0.005):
            self.most = max(self.most, rss_mb())

    def __enter__(self) -> Peak:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._done.set()
        self._thread.join()

    @property
    def growth(self) -> float:
        return self.most - self.baseline


def multipart_of(size: int, token: str) -> Iterator[bytes]:
    """A form post of the CSRF token and a file of `size` bytes, made as it is sent."""
    yield (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="csrf_token"\r\n\r\n{token}\r\n'
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="business_case"; '
        'filename="huge.pdf"\r\nContent-Type: application/pdf\r\n\r\n%PDF-1.4\n'
    ).encode()
    chunk = b"0" * MB
    for _ in range(size // MB):
        yield chunk
    yield f"\r\n--{BOUNDARY}--\r\n".encode()


@pytest.fixture
def portal(cbflow_env: Settings) -> Iterator[tuple[httpx.Client, str, str]]:
    """Essex's applicant signed in to a served portal, with an EOI begun: (client, the place
    section's address, the session's CSRF token)."""
    launch((ROOT / "prospectus" / "whole-place-2011.yaml").read_text())
    with session_scope() as session:
        pat = User(email="pat@essex.gov.uk", name="Pat", role="applicant", council_code="ESS")
        session.add(pat)
    with serving(cbflow_env, FixedClock(DURING_EOI)) as url, httpx.Client(base_url=url) as client:
        token = sign_in_over_http(client, "pat@essex.gov.uk")
        started = client.post(
            "/applications/start", data={"round": "whole-place-2011", "csrf_token": token}
        )
        base = re.search(r"/applications/\d+/eoi", started.headers.get("location", ""))
        assert base is not None, started.status_code
        yield client, f"{base.group(0)}/section/place", token


@pytest.mark.parametrize("declared", [True, False], ids=["with-length", "streamed"])
def test_a_400_mb_post_is_refused_without_being_read(
    portal: tuple[httpx.Client, str, str], declared: bool
) -> None:
    client, page, token = portal
    headers = {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"}
    body = multipart_of(SENT, token)
    if declared:
        headers["Content-Length"] = str(sum(len(part) for part in multipart_of(SENT, token)))

    started = time.monotonic()
    with Peak() as memory:
        try:
            answer = client.post(page, content=body, headers=headers, timeout=60)
        except httpx.HTTPError as exc:  # the server may close before the client has sent all
            pytest.fail(f"no answer: {exc!r}")
    took = time.monotonic() - started

    assert answer.status_code == 413
    assert "The file is too large" in answer.text
    # the whole-place round's largest section takes one 10 MB file, and a form's fields 4 MB
    assert "larger than 14 MB, so none of it was saved" in answer.text
    print(f"413 in {took:.2f} s, process memory +{memory.growth:.1f} MB")
    assert took < 10, f"took {took:.1f} s"
    assert memory.growth < 25, f"the process grew by {memory.growth:.0f} MB"
    with session_scope() as session:
        assert session.exec(select(Application.eoi_answers)).one() == {}
    # the portal goes on answering
    assert client.get("/healthz").text == "ok"
