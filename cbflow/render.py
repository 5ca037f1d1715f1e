"""Documents: a sandboxed, autoescaping Jinja environment and WeasyPrint with a locked-down fetcher.

Templates live in `templates/documents/` and receive plain data only. User text reaches them
through autoescaping (and Markdown with raw HTML disabled), so hostile markup prints as text; the
URL fetcher is the second wall, for the day a template or filter lets markup through: it refuses
everything except `data:` URLs and files inside the templates folder.

`render_many` is the hot path of a stage that issues one document per council: a pool of
long-lived worker processes that have already imported WeasyPrint, fed in chunks.
"""

from __future__ import annotations

import atexit
import mimetypes
import multiprocessing
import os
import tempfile
import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit
from urllib.request import url2pathname

import jinja2
import weasyprint
import weasyprint.urls
from jinja2.sandbox import SandboxedEnvironment
from markdown_it import MarkdownIt
from markupsafe import Markup
from weasyprint.text.fonts import FontConfiguration

from cbflow.formatting import date_filter, datetime_filter, deadline_filter, money_filter
from cbflow.lifeline import end_with
from cbflow.settings import get_settings
from cbflow.wording import body_in_prose

# Tagged PDF with the PDF/UA-1 identification: screen readers get the structure, and WeasyPrint
# takes the title and language from the document's <title> and <html lang>.
PDF_VARIANT = "pdf/ua-1"
PARTIAL = ".part"  # the suffix of a document being written


class URLRefused(ValueError):
    """A document asked for a resource outside what documents may use."""


class SafeURLFetcher(weasyprint.urls.URLFetcher):
    """Fetch `data:` URLs and files inside `root` (default: the templates folder); refuse
    everything else before any I/O.

    WeasyPrint's default fetcher follows `file://`, `http(s)://` and `ftp://`, so a stray
    `<link rel="attachment" href="file:///etc/passwd">` would embed that file in the PDF. Files are
    read here rather than by urllib so that the path checked is the path read: the URL is
    resolved (symlinks and `..` included) and must land inside the resolved root.
    """

    def __init__(self, root: Path | None = None, **kwargs: Any) -> None:
        super().__init__(allowed_protocols=("data", "file"), allow_redirects=False, **kwargs)
        self.root = (root or get_settings().templates_dir).resolve(strict=True)

    def fetch(
        self, url: str, headers: Mapping[str, str] | None = None
    ) -> weasyprint.urls.URLFetcherResponse:
        scheme = url.partition(":")[0].lower()
        if scheme == "data":
            return super().fetch(url, headers)
        if scheme == "file":
            path = self._allowed_path(url)
            content_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
            return weasyprint.urls.URLFetcherResponse(
                path.as_uri(), path.read_bytes(), {"Content-Type": content_type}
            )
        raise URLRefused(f"documents may not fetch {scheme or 'relative'} URLs: {url}")

    def _allowed_path(self, url: str) -> Path:
        """The file a `file:` URL names, if it lies inside the root; URLRefused otherwise."""
        parts = urlsplit(url)
        if parts.netloc not in ("", "localhost"):
            raise URLRefused(f"documents may not fetch files from another host: {url}")
        try:
            path = Path(url2pathname(unquote(parts.path))).resolve(strict=True)
        except (OSError, RuntimeError) as exc:  # missing file, or a symlink loop
            raise URLRefused(f"no such file inside the templates folder: {url}") from exc
        if not path.is_relative_to(self.root) or not path.is_file():
            raise URLRefused(f"documents may only use files inside {self.root}: {url}")
        return path


# ---------------------------------------------------------------------------------------------
# Jinja environment and filters

# Raw HTML off: user Markdown may carry tags, and they must print as text. Images off: documents
# never load pictures from addresses in user text (the fetcher would refuse them anyway).
_MARKDOWN = MarkdownIt("commonmark", {"html": False}).disable("image")


def _demote_headings(state: Any) -> None:
    # Markdown always sits under a template's h2, so its "# Heading" becomes h3: the document
    # keeps one h1 and an unbroken outline for screen readers.
    for token in state.tokens:
        if token.type in ("heading_open", "heading_close"):
            token.tag = f"h{min(int(token.tag[1]) + 2, 6)}"


_MARKDOWN.core.ruler.push("demote_headings", _demote_headings)


def markdown_filter(text: str | None) -> Markup:
    """Markdown to HTML, with any HTML in the source escaped."""
    return Markup(_MARKDOWN.render(text or ""))


def document_environment(templates_dir: Path | None = None) -> jinja2.Environment:
    """A sandboxed environment that escapes everything and fails on any missing variable."""
    environment = SandboxedEnvironment(
        loader=jinja2.FileSystemLoader(templates_dir or get_settings().templates_dir),
        autoescape=True,
        auto_reload=False,  # templates do not change while the process runs
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    environment.filters.update(
        markdown=markdown_filter,
        money=money_filter,
        date=date_filter,
        datetime=datetime_filter,
        deadline=deadline_filter,
        body=body_in_prose,
    )
    return environment


@lru_cache(maxsize=8)
def _tools(templates_dir: Path) -> tuple[jinja2.Environment, SafeURLFetcher]:
    # One environment (with its compiled-template cache) and one fetcher per templates folder
    # and process: building them per document would recompile every template each time.
    return document_environment(templates_dir), SafeURLFetcher(templates_dir)


@lru_cache(maxsize=1)
def _font_config() -> FontConfiguration:
    # Shared by every document of the process: it keeps Pango's loaded fonts between documents,
    # about 15% of the time of a short document. Safe because no stylesheet uses @font-face.
    return FontConfiguration()


STYLESHEET = "documents/document.css"  # every document's, relative to the templates folder


@lru_cache(maxsize=8)
def _stylesheets(templates_dir: Path) -> tuple[weasyprint.CSS, ...]:
    # Parsed once per process rather than for each document (as a link in the HTML would be):
    # about 5% of a receipt's time. Read through the fetcher, as any resource of a document.
    path = templates_dir / STYLESHEET
    if not path.is_file():  # a templates folder of other documents
        return ()
    _, fetcher = _tools(templates_dir)
    return (weasyprint.CSS(url=path.as_uri(), url_fetcher=fetcher, font_config=_font_config()),)


def _templates_dir(templates_dir: Path | None) -> Path:
    return (templates_dir or get_settings().templates_dir).resolve()


def render_html(
    template: str, context: Mapping[str, Any], templates_dir: Path | None = None
) -> str:
    """The HTML of one document; `template` is relative to the templates folder."""
    environment, _ = _tools(_templates_dir(templates_dir))
    return environment.get_template(template).render(dict(context))


def render_pdf(
    template: str, context: Mapping[str, Any], out_path: Path, templates_dir: Path | None = None
) -> Path:
    """Render one document to `out_path`, atomically: a reader never sees half a PDF."""
    root = _templates_dir(templates_dir)
    _, fetcher = _tools(root)
    html = weasyprint.HTML(
        string=render_html(template, context, root),
        # Relative links (the stylesheet) resolve beside the template, through the fetcher.
        base_url=(root / template).parent.as_uri() + "/",
        url_fetcher=fetcher,
    )
    # rendered in memory first: the file exists only for the moment of writing it, so a
    # worker killed while it renders (its parent gone, say) leaves nothing half-made behind
    pdf = html.write_pdf(
        stylesheets=list(_stylesheets(root)), font_config=_font_config(), pdf_variant=PDF_VARIANT
    )
    out_path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(
        dir=out_path.parent, prefix=f".{out_path.name}.", suffix=PARTIAL
    )
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(pdf)
        os.replace(temporary, out_path)
    except BaseException:
        os.unlink(temporary)
        raise
    return out_path


def remove_partial_files(folder: Path) -> list[Path]:
    """Remove what a rendering killed at the moment of writing left under `folder` (files
    named .NAME.*.part); returns them. Run only when nothing renders: at `cbflow serve`'s
    start."""
    removed = []
    for partial in folder.rglob(f".*{PARTIAL}") if folder.is_dir() else ():
        partial.unlink(missing_ok=True)
        removed.append(partial)
    return removed


# ---------------------------------------------------------------------------------------------
# Many documents


@dataclass(frozen=True)
class RenderJob:
    """One document to render. The context must pickle: it crosses into a worker process."""

    template: str
    context: Mapping[str, Any]
    out_path: Path


def render_serial(
    jobs: Sequence[RenderJob], *, progress: Callable[[int], None] | None = None
) -> list[Path]:
    """Render in this process, one after another (in a worker: one chunk)."""
    paths = []
    for job in jobs:
        paths.append(render_pdf(job.template, job.context, job.out_path))
        if progress:
            progress(1)
    return paths


def _warm_worker(owner: int) -> None:
    # Runs once in each worker: the template environment, font configuration and stylesheet serve
    # every chunk that worker renders (WeasyPrint itself is imported with this module).
    # The worker ends with the process that owns the pool, however that ends (killed, it
    # could not stop them, and they waited for work for ever: some 350 MB).
    end_with(owner)
    _stylesheets(_templates_dir(None))


_pool: ProcessPoolExecutor | None = None
_pool_size = 0
_pool_lock = threading.Lock()


def _executor(workers: int) -> ProcessPoolExecutor:
    """The process-wide pool, started on first use and kept for the next batch."""
    global _pool, _pool_size
    with _pool_lock:
        if _pool is not None and _pool_size != workers:
            _pool.shutdown(wait=True)
            _pool = None
        if _pool is None:
            # Not "fork": the caller is usually a Prefect flow with threads of its own, and a
            # forked child can inherit a lock another thread held. The fork server is a clean
            # single-threaded process that imports WeasyPrint once; workers fork from it.
            context = multiprocessing.get_context("forkserver")
            context.set_forkserver_preload([__name__])
            _pool = ProcessPoolExecutor(
                workers, mp_context=context, initializer=_warm_worker, initargs=(os.getpid(),)
            )
            _pool_size = workers
        return _pool


def _discard_pool() -> None:
    global _pool
    with _pool_lock:
        if _pool is not None:
            _pool.shutdown(wait=True, cancel_futures=True)
            _pool = None


atexit.register(_discard_pool)


def render_many(
    jobs: Sequence[RenderJob],
    *,
    workers: int | None = None,
    chunk_size: int = 8,
    progress: Callable[[int], None] | None = None,
) -> list[Path]:
    """Render every job, in parallel worker processes when that pays; paths in job order.

    `workers`: None takes CBFLOW_RENDER_WORKERS, 0 means one per CPU core. With one worker, a
    single job, or (before the pool has started) no more than two chunks of jobs, rendering stays
    in this process: starting workers would cost more than it saves. Once started, the pool takes
    every batch, cut into chunks of at most `chunk_size` and small enough to keep workers busy.
    `progress(n)` is told each time n more documents are finished. If a job fails, chunks not
    yet started are cancelled and its error is raised; documents already written stay on disk
    (chunks already running in other workers still finish theirs).
    """
    if workers is None:
        workers = get_settings().render_workers
    workers = workers or os.cpu_count() or 1
    if chunk_size < 1:
        raise ValueError("chunk_size must be at least 1")
    warm = _pool is not None and _pool_size == workers
    if workers == 1 or len(jobs) < 2 or (not warm and len(jobs) <= 2 * chunk_size):
        return render_serial(jobs, progress=progress)
    # small batches are cut finer, so that no worker idles while another renders the tail
    size = max(1, min(chunk_size, -(-len(jobs) // (workers * 3))))
    chunks = [list(jobs[i : i + size]) for i in range(0, len(jobs), size)]
    pool = _executor(workers)
    try:
        pending = {pool.submit(render_serial, chunk): i for i, chunk in enumerate(chunks)}
    except BrokenProcessPool:
        _discard_pool()
        raise
    done: dict[int, list[Path]] = {}
    try:
        while pending:
            finished, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in finished:
                index = pending.pop(future)
                done[index] = future.result()
                if progress:
                    progress(len(done[index]))
    except BrokenProcessPool:
        # A worker died (killed, out of memory): this pool is unusable, the next call starts anew.
        _discard_pool()
        raise
    except BaseException:
        for future in pending:
            future.cancel()
        raise
    return [path for index in range(len(chunks)) for path in done[index]]
