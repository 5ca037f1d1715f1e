"""Benchmark: the staff dashboard of a round with 1,000 applications of 100 answers each.

Builds a round whose expression-of-interest form has 100 questions, stores 1,000 submitted
applications with every question answered (about 1 KB of answers each), then serves the portal
with uvicorn on SQLite, signs in as programme staff over HTTP and times the applications list
page: the default first page, a sorted page, a filtered page, and the CSV of all 1,000. The
baseline is `/healthz` on the same server (the HTTP and framework cost alone), timed in the same
run; the list page's p50 is also given as a ratio of it. Target: p50 of the list page under
100 ms.

    python bench/dashboard.py [--requests N]
"""

from __future__ import annotations

import argparse
import os
import re
import socket
import statistics
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
APPLICATIONS = 1000
QUESTIONS = 100
TARGET_MS = 100.0


def prospectus_text() -> str:
    """A round with one EOI form of 100 questions in ten sections, open all this year."""
    sections = []
    for s in range(10):
        questions = []
        for q in range(10):
            number = s * 10 + q
            kind = ("text", "textarea", "number", "choice", "yes_no")[number % 5]
            line = f"            - {{id: q{number:03d}, label: Question {number}, type: {kind}"
            if kind == "choice":
                line += ", options: [Low, Medium, High]"
            questions.append(line + "}")
        sections.append(
            f"        - id: s{s}\n          title: Section {s}\n          questions:\n"
            + "\n".join(questions)
        )
    year = datetime.now(UTC).year
    return (
        "format: 1\nid: dashboard-bench\ntitle: Dashboard benchmark round\n"
        "issued_by: Benchmark\nsummary: A large round.\ntimezone: Europe/London\n"
        "capacity: {places: 50}\n"
        f"timetable:\n  eoi: {{opens: {year}-01-01, closes: {year}-12-31}}\n"
        f"  decision: {{by: {year + 1}-01-31}}\n"
        "stages:\n  eoi:\n    form:\n      sections:\n" + "\n".join(sections) + "\n"
    )


def answers(number: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for q in range(QUESTIONS):
        kind = q % 5
        out[f"q{q:03d}"] = (
            f"Answer {q} of application {number}",
            "A longer answer, as a paragraph would be. " * 3,
            number * 10 + q,
            ("Low", "Medium", "High")[(number + q) % 3],
            (number + q) % 2 == 0,
        )[kind]
    return out


def build(now: datetime) -> None:
    from sqlmodel import select

    from cbflow import stages
    from cbflow.db import migrate, session_scope
    from cbflow.models import Application, Council, Round, User
    from cbflow.services.councils import load_register

    migrate()
    with session_scope() as session:
        load_register(session)
    stages.launch(prospectus_text(), "dashboard-bench.yaml", now=now - timedelta(days=1))
    with session_scope() as session:
        round_ = session.exec(select(Round)).one()
        codes = [c.code for c in session.exec(select(Council).order_by(Council.code))]
        for number in range(APPLICATIONS):
            code = codes[number % len(codes)]
            # more applications than councils: the later ones stand for adoptions
            suffix = "" if number < len(codes) else f"/adopts-{number // len(codes)}"
            session.add(
                Application(
                    reference=f"{round_.slug}/{code}{suffix}",
                    round_id=round_.id,  # type: ignore[arg-type]
                    council_code=code,
                    state="eoi_submitted",
                    eoi_answers=answers(number),
                    eoi_submitted_at=now - timedelta(minutes=number),
                    created_at=now - timedelta(days=1),
                )
            )
        session.add(User(email="lead@staff.example", name="Programme lead", role="staff"))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def timed(client: Any, url: str, count: int) -> list[float]:
    times = []
    for _ in range(count):
        started = time.perf_counter()
        answer = client.get(url)
        times.append((time.perf_counter() - started) * 1000)
        if answer.status_code != 200:
            raise SystemExit(f"{url} answered {answer.status_code}")
    return times


def describe(name: str, times: list[float]) -> str:
    ordered = sorted(times)
    p95 = ordered[int(0.95 * (len(ordered) - 1))]
    return (
        f"{name:38} p50 {statistics.median(ordered):7.1f} ms   p95 {p95:7.1f} ms   "
        f"({len(ordered)} requests)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=100, help="requests per page timed")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="cbflow-dashboard-"))
    os.environ["CBFLOW_DATA_DIR"] = str(workdir / "data")
    os.environ["CBFLOW_DATABASE_URL"] = ""
    os.environ["CBFLOW_RENDER_WORKERS"] = "1"

    import httpx
    import uvicorn
    from sqlmodel import select

    from cbflow.clock import system_clock
    from cbflow.db import session_scope
    from cbflow.models import OutboxMessage
    from cbflow.settings import get_settings
    from cbflow.web import create_app

    now = system_clock()
    started = time.perf_counter()
    build(now)
    print(
        f"built {APPLICATIONS} applications of {QUESTIONS} answers in "
        f"{time.perf_counter() - started:.1f} s (SQLite, {workdir})"
    )
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    settings = get_settings().model_copy(update={"portal_port": port, "portal_base_url": url})
    server = uvicorn.Server(
        uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    try:
        with httpx.Client(base_url=url, follow_redirects=False, timeout=30) as client:
            form = client.get("/sign-in").text
            token = re.search(r'name="csrf_token" value="([^"]+)"', form)
            assert token is not None
            client.post(
                "/sign-in", data={"email": "lead@staff.example", "csrf_token": token.group(1)}
            )
            link = None
            for _ in range(100):  # the link is in the outbox once the request's commit is done
                with session_scope() as session:
                    body = session.exec(select(OutboxMessage.body)).first()
                link = re.search(r"/sign-in/[\w-]+", body or "")
                if link:
                    break
                time.sleep(0.05)
            assert link is not None
            confirm = client.get(link.group(0)).text
            token = re.search(r'name="csrf_token" value="([^"]+)"', confirm)
            assert token is not None
            client.post(link.group(0), data={"csrf_token": token.group(1)})
            base = "/staff/rounds/dashboard-bench/applications"
            assert "1000 applications" in client.get(base).text, "the dashboard lists them all"
            for _ in range(5):  # warm up
                client.get(base)
                client.get("/healthz")
            health = timed(client, "/healthz", args.requests)
            first = timed(client, base, args.requests)
            sorted_page = timed(client, f"{base}?sort=submitted&order=desc&page=7", args.requests)
            filtered = timed(client, f"{base}?q=shire&state=eoi_submitted", args.requests)
            export = timed(client, f"{base}.csv", max(args.requests // 5, 5))
    finally:
        server.should_exit = True
        thread.join(timeout=10)
    print(describe("baseline: /healthz", health))
    print(describe("list page 1 (50 of 1000)", first))
    print(describe("list page 7, sorted by submission", sorted_page))
    print(describe("list filtered by name and status", filtered))
    print(describe("CSV of all 1000", export))
    p50 = statistics.median(first)
    print(f"list page p50 / baseline p50: {p50 / statistics.median(health):.1f}")
    verdict = "PASS" if p50 < TARGET_MS else "FAIL"
    print(f"dashboard list page p50: {p50:.1f} ms (target < {TARGET_MS:.0f} ms): {verdict}")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
