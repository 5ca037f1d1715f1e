"""Documents: real PDFs from the real templates, read back with pypdf."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import jinja2
import pytest
import weasyprint
from pypdf import PdfReader
from pypdf.generic import StreamObject

from cbflow.charts import bar_chart, line_chart
from cbflow.formatting import date_filter, datetime_filter, money_filter
from cbflow.render import (
    RenderJob,
    SafeURLFetcher,
    URLRefused,
    markdown_filter,
    render_html,
    render_many,
    render_pdf,
    render_serial,
)
from cbflow.settings import get_settings

COUNCIL = {
    "code": "E06000050",
    "name": "Cheshire West and Chester",
    "official_name": "Cheshire West and Chester Council",
    "type_name": "Unitary authority",
    "region": "North West",
}
LETTER = {
    "addressee": ["The Chief Executive", "Cheshire West and Chester Council"],
    "council_in_prose": "Cheshire West and Chester Council",
    "salutation": "Dear Chief Executive",
    "issuer": "Department for Communities and Local Government",
    "issuer_in_prose": "the Department for Communities and Local Government",
    "issuer_to_start": "The Department for Communities and Local Government",
    "signatory": None,
    "contact": None,
    "portal": "https://cbflow.example",
}
PASSWD_MARKER = b"root:x:0:0"
FILE_IMAGE = '<img src="file:///etc/passwd">'
FILE_ATTACHMENT = '<link rel="attachment" href="file:///etc/passwd">'


def doc(title: str) -> dict[str, str]:
    return {
        "title": title,
        "reference": "CB-2011-0042",
        "issued_by": "Department for Communities and Local Government",
        "round_title": "Community Budgets: whole-place pilots",
        "round_id": "whole-place-2011",
        "generated_at": "10 November 2011",
        "lang": "en-GB",
    }


def receipt_sections(answer: str = "We will pool £2m across health and police.") -> list[Any]:
    return [
        {
            "title": "About the area",
            "items": [
                {"label": "Lead contact", "value": "Jane Smith"},
                {"label": "Proposal", "value": answer},
                {
                    "label": "Partners",
                    "table": {
                        "columns": ["Partner", "Contribution"],
                        "rows": [["NHS Western Cheshire", "£1,000,000.00"], ["Police", "£250.00"]],
                    },
                },
            ],
        }
    ]


def progress_chart() -> Any:
    return line_chart(
        "Families supported each quarter",
        {
            "Families supported": [("Q1", 12), ("Q2", 30), ("Q3", 41), ("Q4", 55)],
            "Target": [("Q1", 20), ("Q2", 30), ("Q3", 40), ("Q4", 50)],
        },
    )


def contexts() -> dict[str, dict[str, Any]]:
    """A plausible context for every document template, keyed by template name."""
    return {
        "prospectus": {
            "doc": doc("Prospectus"),
            "prospectus": {
                "id": "whole-place-2011",
                "title": "Community Budgets: whole-place pilots",
                "issued_by": "Department for Communities and Local Government",
                "summary": "Pool **public money** in a place.\n\n# Who may apply\n\nAny council.",
                "timezone": "Europe/London",
                "eligibility": {"council_types": ["County council", "Unitary authority"]},
                "capacity": {"places": 4, "budget_gbp": Decimal("12000000")},
                "stages": {},
            },
            "council_types": ["County council", "Unitary authority"],
            "timetable": [
                {
                    "stage": "Expression of interest",
                    "opens": "17 October 2011",
                    "closes": "10 November 2011",
                },
            ],
            "forms": [
                {
                    "stage": "eoi",
                    "title": "Expression of interest",
                    "sections": [
                        {
                            "title": "Your proposal",
                            "questions": [
                                {
                                    "label": "Describe the proposal",
                                    "hint": "No more than 500 words",
                                    "type": "textarea",
                                    "required": True,
                                    "detail": "at most 500 words",
                                },
                                {
                                    "label": "Partners",
                                    "hint": None,
                                    "type": "table",
                                    "required": False,
                                    "detail": "",
                                },
                            ],
                        }
                    ],
                }
            ],
            "criteria": [
                {
                    "title": "Drive and ambition",
                    "weight": "10",
                    "minimum": 2,
                    "guidance": "Be *bold*.",
                },
                {"title": "Capacity", "weight": "45", "minimum": None, "guidance": None},
            ],
            "scale": [{"value": 5, "label": "Strong"}, {"value": 1, "label": "Poor"}],
            "_expect": "Community Budgets: whole-place pilots",
        },
        "eoi_receipt": {
            "letter": LETTER,
            "doc": doc("Expression of interest receipt"),
            "council": COUNCIL,
            "submitted_at": "12:00 on 10 November 2011",
            "sections": receipt_sections(),
        },
        "bid_receipt": {
            "letter": LETTER,
            "doc": doc("Bid receipt"),
            "council": COUNCIL,
            "submitted_at": "09:30 on 2 December 2011",
            "sections": receipt_sections(),
        },
        "invitation": {
            "letter": LETTER,
            "doc": doc("Invitation to bid"),
            "council": COUNCIL,
            "deadline": "12:00 on 15 December 2011",
            "bid_sections": ["Operational plan", "Governance"],
        },
        "regret": {
            "letter": LETTER,
            "doc": doc("Expression of interest outcome"),
            "council": COUNCIL,
            "reason": "The partnership did not include the local NHS.",
        },
        "assessment_summary": {
            "doc": doc("Assessment summary"),
            "applications": [
                {
                    "rank": 1,
                    "council": COUNCIL["name"],
                    "total": "4.20",
                    "criteria": [
                        {
                            "title": "Drive and ambition",
                            "weight": "10",
                            "scores": [4, 5],
                            "mean": "4.50",
                            "moderated": None,
                            "final": "4.50",
                        }
                    ],
                    "gateway_failed": [],
                },
                {
                    "rank": 2,
                    "council": "Essex",
                    "total": "3.10",
                    "criteria": [
                        {
                            "title": "Drive and ambition",
                            "weight": "10",
                            "scores": [1, 4],
                            "mean": "2.50",
                            "moderated": "3",
                            "final": "3.00",
                        }
                    ],
                    "gateway_failed": ["Capacity"],
                },
            ],
            "assessors": ["A. Assessor", "B. Assessor"],
            "chart": bar_chart("Weighted totals", [(COUNCIL["name"], 4.2), ("Essex", 3.1)]),
        },
        "moderation_pack": {
            "doc": doc("Moderation pack"),
            "items": [
                {
                    "council": COUNCIL["name"],
                    "criterion": "Capacity",
                    "spread": 3,
                    "scores": [
                        {"assessor": "A. Assessor", "score": 1, "justification": "Thin."},
                        {"assessor": "B. Assessor", "score": 4, "justification": "Solid plan."},
                    ],
                }
            ],
        },
        "decision": {
            "letter": LETTER,
            "doc": doc("Decision"),
            "council": COUNCIL,
            "outcome": "selected",
            "noun": "bid",
            "rank": "1st of 6",
            "total": "4.20",
            "reason": "Strong partnership.",
            "reserve_position": None,
        },
        "grant_offer": {
            "letter": LETTER,
            "doc": doc("Grant offer"),
            "council": COUNCIL,
            "amount": "£1,500,000.00",
            "period": {"starts": "1 April 2012", "ends": "31 March 2013"},
            "milestones": [{"title": "Operational plan", "due": "31 October 2012"}],
            "returns": {"every": "quarter", "due_within": "fourteen days"},
            "payments": [{"description": "Attachment fee for each family", "amount": "£3,200.00"}],
            "conditions": ["Publish what you learn."],
            "accept_by": "the end of 17 January 2012",
            "accept_address": "https://cbflow.example/applications/7/offer",
        },
        "progress_report": {
            "doc": doc("Progress report"),
            "council": COUNCIL,
            "implementation": {"starts": date(2013, 4, 1), "ends": date(2014, 3, 31)},
            "milestones": [
                {
                    "title": "Operational plan",
                    "due": date(2012, 10, 31),
                    "met_on": date(2012, 10, 30),
                    "status": "met",
                }
            ],
            "milestones_met": 1,
            "returns": [
                {
                    "starts": date(2013, 4, 1),
                    "ends": date(2013, 6, 30),
                    "due": "the end of 14 July 2013",
                    "submitted_at": "10:00 on 10 July 2013 (BST)",
                    "status": "on time",
                    "values": [
                        {"label": "Families supported", "value": "12", "long": False},
                        {"label": "What happened?", "value": "We began.", "long": True},
                    ],
                },
                {
                    "starts": date(2013, 7, 1),
                    "ends": date(2013, 9, 30),
                    "due": "the end of 14 October 2013",
                    "submitted_at": None,
                    "status": "overdue",
                    "values": [],
                },
            ],
            "returns_made": 1,
            "returns_overdue": 1,
            "pooled_budget_title": "Spending to be pooled, by organisation and year",
            "pooled_budget_columns": ["Organisation", "Financial year", "Amount"],
            "pooled_budget": [
                {
                    "organisation": "NHS Western Cheshire",
                    "year": "2013/14",
                    "amount": "£1,000,000.00",
                }
            ],
            "charts": [progress_chart()],
            "grant": "£500,000.00",
            "payments_total": "£38,400.00",
        },
        "replication_pack": {
            "doc": doc("Replication pack"),
            "model": {
                "council": COUNCIL["name"],
                "version": "1",
                "published_at": "1 April 2014",
                "round_title": "Community Budgets: whole-place pilots",
                "milestone": "None: the plan as selected",
                "changes": "Version 1: the plan as selected",
            },
            "sections": receipt_sections(),
            "milestones": [
                {"title": "Operational plan", "due": date(2012, 10, 31), "met_on": None}
            ],
            "documents": [{"title": "Business case", "kind": "pdf"}],
            "adopters": [{"council": "Essex", "started_at": "1 April 2015"}],
        },
        "chaser": {
            "letter": LETTER,
            "doc": doc("Return overdue"),
            "council": COUNCIL,
            "period": "1 July 2013 to 30 September 2013",
            "due": "the end of 14 October 2013",
            "returns_address": "https://cbflow.example/applications/7/returns",
        },
    }


def pdf_text(path: Path) -> str:
    return "\n".join(page.extract_text() for page in PdfReader(path).pages)


def pdf_contents(path: Path) -> bytes:
    """The file's bytes plus every stream decompressed: an embedded file cannot hide in zlib."""
    reader = PdfReader(path)
    numbers = [n for objects in reader.xref.values() for n in objects] + list(reader.xref_objStm)
    chunks = [path.read_bytes()]
    for number in numbers:
        obj = reader.get_object(number)
        if isinstance(obj, StreamObject):
            chunks.append(obj.get_data())
    return b"\n".join(chunks)


def assert_nothing_embedded(contents: bytes) -> None:
    assert b"/EmbeddedFiles" not in contents
    assert b"/FileAttachment" not in contents
    assert b"/EmbeddedFile" not in contents
    assert PASSWD_MARKER not in contents


# ---------------------------------------------------------------------------------------------
# Every template


@pytest.mark.parametrize("name", sorted(contexts()))
def test_render_pdf_template_has_metadata_and_footer(name: str, tmp_path: Path) -> None:
    context = contexts()[name]
    expected = context.pop("_expect", COUNCIL["name"])

    path = render_pdf(f"documents/{name}.html", context, tmp_path / f"{name}.pdf")

    reader = PdfReader(path)
    assert reader.metadata is not None
    assert reader.metadata.title == context["doc"]["title"]
    assert reader.trailer["/Root"]["/Lang"] == "en-GB"
    assert "/StructTreeRoot" in reader.trailer["/Root"]  # tagged for screen readers
    assert len(reader.pages) >= 1
    text = pdf_text(path)
    assert expected in text
    assert "Page 1 of" in text
    assert context["doc"]["round_title"] in text  # the running header
    assert not list(tmp_path.glob(".*.part"))


@pytest.mark.timeout(20)
def test_render_pdf_long_answers_stay_fast(tmp_path: Path) -> None:
    # Measuring the narrowest width of a table cell costs WeasyPrint time quadratic in its text;
    # with automatic table layout and overflow-wrap: anywhere, this receipt took three minutes.
    answer = " ".join(["Partners pool budgets across health, police and housing."] * 150)
    context = contexts()["eoi_receipt"] | {"sections": receipt_sections(answer)}
    context["sections"][0]["items"][2]["table"]["rows"].append(["Voluntary sector", answer])

    started = time.perf_counter()
    path = render_pdf("documents/eoi_receipt.html", context, tmp_path / "long.pdf")

    assert time.perf_counter() - started < 5
    assert pdf_text(path).count("housing.") >= 300


def test_render_html_missing_key_fails() -> None:
    context = contexts()["chaser"]
    del context["due"]

    with pytest.raises(jinja2.UndefinedError):
        render_html("documents/chaser.html", context)


def test_render_pdf_decision_outcomes_each_render(tmp_path: Path) -> None:
    for outcome, position, expected in (
        ("reserve", 2, "Reserve position: 2"),
        ("unsuccessful", None, "has not been selected"),
    ):
        context = contexts()["decision"] | {"outcome": outcome, "reserve_position": position}

        text = pdf_text(render_pdf("documents/decision.html", context, tmp_path / "d.pdf"))

        assert expected in text


# ---------------------------------------------------------------------------------------------
# Hostile text


def test_render_pdf_hostile_answers_print_as_text_and_fetch_nothing(tmp_path: Path) -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        listener.setblocking(False)
        remote_image = f'<img src="http://127.0.0.1:{listener.getsockname()[1]}/x.png">'
        hostile = f"{FILE_IMAGE} {FILE_ATTACHMENT} {remote_image}"
        receipt = contexts()["eoi_receipt"] | {"sections": receipt_sections(hostile)}
        prospectus = contexts()["prospectus"]
        prospectus["prospectus"]["summary"] = (
            f"Intro\n\n{hostile}\n\n![x](http://127.0.0.1:9/y.png)"
        )

        paths = [
            render_pdf("documents/eoi_receipt.html", receipt, tmp_path / "receipt.pdf"),
            render_pdf("documents/prospectus.html", prospectus, tmp_path / "prospectus.pdf"),
        ]

        with pytest.raises(BlockingIOError):
            listener.accept()  # nobody called
    for path in paths:
        text = pdf_text(path).replace("\n", " ")
        assert 'src="file:///etc/passwd"' in text
        assert 'rel="attachment"' in text
        assert_nothing_embedded(pdf_contents(path))


@pytest.mark.skipif(not Path("/etc/passwd").is_file(), reason="needs a file to try to leak")
def test_safe_fetcher_refuses_raw_tags_that_default_fetcher_embeds(tmp_path: Path) -> None:
    # The case where escaping were bypassed: the tags reach WeasyPrint as markup.
    raw = (
        '<html lang="en-GB"><head><title>Raw</title>'
        f"{FILE_ATTACHMENT}</head><body><p>Raw</p>{FILE_IMAGE}"
        '<a rel="attachment" href="file:///etc/passwd">link</a>'
        '<img src="http://127.0.0.1:9/x.png"><img src="ftp://127.0.0.1:9/x.png"></body></html>'
    )
    control = tmp_path / "control.pdf"
    weasyprint.HTML(string=raw).write_pdf(control)
    # The default fetcher does embed the file, so the assertions below can see a leak.
    assert b"/EmbeddedFiles" in pdf_contents(control)

    safe = tmp_path / "safe.pdf"
    templates = get_settings().templates_dir
    weasyprint.HTML(string=raw, url_fetcher=SafeURLFetcher(templates)).write_pdf(safe)

    assert_nothing_embedded(pdf_contents(safe))


def test_safe_fetcher_allows_only_data_and_template_files(tmp_path: Path) -> None:
    templates = tmp_path / "templates"
    (templates / "documents").mkdir(parents=True)
    (templates / "documents" / "a.css").write_text("p { color: red }")
    outside = tmp_path / "outside.txt"
    outside.write_text("TOP SECRET")
    (templates / "documents" / "leak.txt").symlink_to(outside)
    fetcher = SafeURLFetcher(templates)

    assert fetcher.fetch((templates / "documents" / "a.css").as_uri()).read() == b"p { color: red }"
    assert fetcher.fetch("data:text/plain,hello").read() == b"hello"
    for url in (
        (templates / "documents" / "leak.txt").as_uri(),  # symlink out
        (templates / "documents").as_uri() + "/../../outside.txt",  # dot-dot out
        (templates / "documents").as_uri() + "/%2e%2e/%2e%2e/outside.txt",  # encoded dot-dot
        outside.as_uri(),
        f"file://otherhost{outside}",
        "file:///etc/passwd",
        "http://127.0.0.1:9/x.png",
        "https://127.0.0.1:9/x.png",
        "ftp://127.0.0.1:9/x.png",
    ):
        with pytest.raises(URLRefused):
            fetcher.fetch(url)


def test_safe_fetcher_symlinked_attachment_is_not_embedded(tmp_path: Path) -> None:
    templates = tmp_path / "templates"
    (templates / "documents").mkdir(parents=True)
    outside = tmp_path / "outside.txt"
    outside.write_text("TOP SECRET")
    (templates / "documents" / "leak.txt").symlink_to(outside)
    (templates / "documents" / "leaky.html").write_text(
        '<html lang="{{ doc.lang }}"><head><title>{{ doc.title }}</title>'
        '<link rel="attachment" href="leak.txt"></head><body>{{ doc.title }}</body></html>'
    )

    path = render_pdf("documents/leaky.html", {"doc": doc("Leaky")}, tmp_path / "l.pdf", templates)

    contents = pdf_contents(path)
    assert b"TOP SECRET" not in contents
    assert b"/EmbeddedFiles" not in contents


# ---------------------------------------------------------------------------------------------
# Filters and charts


def test_filters_format_money_dates_and_markdown() -> None:
    noon = datetime(2011, 11, 10, 12, 0, tzinfo=UTC)
    summer = datetime(2012, 7, 1, 11, 0, tzinfo=UTC)

    assert money_filter(Decimal("1234567")) == "£1,234,567.00"
    assert money_filter(4000) == "£4,000.00"
    assert money_filter("2500.5") == "£2,500.50"
    assert date_filter(noon) == "10 November 2011"
    assert datetime_filter(noon) == "12:00 on 10 November 2011"
    assert datetime_filter(summer) == "12:00 on 1 July 2012"  # British Summer Time
    assert datetime_filter("already text") == "already text"
    assert "&lt;script&gt;" in markdown_filter("<script>x</script> **b**")
    assert "<h3>" in markdown_filter("# Heading")
    with pytest.raises(ValueError):
        datetime_filter(datetime(2011, 11, 10, 12, 0))
    with pytest.raises(ValueError):
        money_filter("lots")


def test_charts_escape_labels() -> None:
    hostile = "<script>alert(1)</script>"

    bars = bar_chart(hostile, [(hostile, 3), ("Essex", Decimal("2.5"))], unit="£")
    lines = line_chart(hostile, {hostile: [(hostile, 1.0), ("Q2", 2.0)]}, unit="%")

    for svg in (bars, lines):
        assert "<script>" not in svg
        assert "&lt;script&gt;" in svg
        assert 'role="img"' in svg
        assert "<title>" in svg
    assert "£2.5" in bars
    assert "2%" in lines


def test_progress_report_with_chart_rasterises(tmp_path: Path) -> None:
    if shutil.which("pdftoppm") is None:
        pytest.skip("pdftoppm (poppler-utils) is not installed")
    pdf = render_pdf(
        "documents/progress_report.html", contexts()["progress_report"], tmp_path / "report.pdf"
    )

    subprocess.run(
        ["pdftoppm", "-png", "-r", "60", "-f", "1", "-l", "1", str(pdf), str(tmp_path / "page")],
        check=True,
    )

    pages = list(tmp_path.glob("page*.png"))
    assert pages and pages[0].stat().st_size > 5_000
    assert "Families supported" in pdf_text(pdf)  # chart text is real text


# ---------------------------------------------------------------------------------------------
# Many documents


def test_render_many_pool_matches_serial_in_job_order(tmp_path: Path) -> None:
    names = ["eoi_receipt", "invitation", "regret", "chaser", "grant_offer"]
    base = contexts()

    def jobs(folder: str) -> list[RenderJob]:
        return [
            RenderJob(
                f"documents/{name}.html",
                base[name] | {"doc": doc(f"Document {i}")},
                tmp_path / folder / f"{i:02}.pdf",
            )
            for i, name in enumerate(names * 2)
        ]

    done: list[int] = []
    # 10 jobs in chunks of 3 are more than two chunks: the pool, not the in-process shortcut.
    pooled = render_many(jobs("pool"), workers=2, chunk_size=3, progress=done.append)
    serial = render_serial(jobs("serial"))

    expected = [f"{i:02}.pdf" for i in range(10)]
    assert [p.name for p in pooled] == [p.name for p in serial] == expected
    assert sum(done) == 10 and len(done) > 1 and max(done) <= 3  # several chunks of <= 3
    for mine, theirs in zip(pooled, serial, strict=True):
        assert len(PdfReader(mine).pages) == len(PdfReader(theirs).pages)
        assert pdf_text(mine) == pdf_text(theirs)


def test_a_written_answer_keeps_its_paragraphs_in_the_receipt(tmp_path: Path) -> None:
    """A council's answer in two paragraphs prints as two paragraphs under its question, not
    run together with commas; the options ticked in a multichoice share one line."""
    from cbflow.prospectus import Form
    from cbflow.services.documents import answer_sections

    form = Form.model_validate(
        {
            "sections": [
                {
                    "id": "plan",
                    "title": "Your plan",
                    "questions": [
                        {"id": "vision", "label": "Your vision", "type": "textarea"},
                        {
                            "id": "services",
                            "label": "Services in scope",
                            "type": "multichoice",
                            "options": ["Health", "Housing", "Police"],
                        },
                    ],
                }
            ]
        }
    )
    answers = {
        "vision": "We will pool budgets across health and police.\n\nThe board meets monthly.",
        "services": ["Health", "Police"],
    }
    sections = answer_sections(form, answers, {})
    context = contexts()["eoi_receipt"] | {"sections": sections}
    text = pdf_text(render_pdf("documents/eoi_receipt.html", context, tmp_path / "r.pdf"))

    assert "police., ," not in text and "police.," not in text
    lines = [line.strip() for line in text.splitlines()]
    assert "We will pool budgets across health and police." in lines
    assert "The board meets monthly." in lines
    assert lines.index("Your vision") < lines.index("The board meets monthly.")
    assert "Health, Police" in text
