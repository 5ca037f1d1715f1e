"""The `cbflow` command."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from cbflow.errors import CbflowError, ProspectusError
from cbflow.lifeline import with_parent
from cbflow.settings import get_settings

if TYPE_CHECKING:
    from cbflow.demo_people import Cast
    from cbflow.services.accounts import HandedLink

app = typer.Typer(
    help="Run competitive public funding rounds from one prospectus file.", no_args_is_help=True
)
prospectus_app = typer.Typer(
    help="Check prospectus files and print their schemas.", no_args_is_help=True
)
round_app = typer.Typer(help="Launch rounds and see where they stand.", no_args_is_help=True)
user_app = typer.Typer(help="Add the people who sign in to the portal.", no_args_is_help=True)
app.add_typer(prospectus_app, name="prospectus")
app.add_typer(round_app, name="round")
app.add_typer(user_app, name="user")

console = Console(soft_wrap=True)
errors = Console(stderr=True, soft_wrap=True)

# what cbflow writes is for the account that runs it alone: the database (its outbox holds live
# sign-in links), its journal, uploads, documents and logs
PRIVATE_FILES = 0o077  # the umask: no permission for the group or for others
PRIVATE_FOLDER = 0o700


@app.callback()
def _private() -> None:
    """Every command, and every process it starts (the portal, Prefect's server, the flow
    runner and its runs), creates files readable by their owner only, and the data folder is
    closed to other accounts (one made before this still is, from now on)."""
    os.umask(PRIVATE_FILES)
    data = get_settings().data_dir
    if data.is_dir() and data.stat().st_mode & 0o777 != PRIVATE_FOLDER:
        data.chmod(PRIVATE_FOLDER)


@contextmanager
def _step(doing: str) -> Iterator[Callable[[str], None]]:
    """Say what a step that may take a while is doing, then how long it took; on a terminal a
    spinner shows it meanwhile, with what the step reports through the function it is given."""
    console.print(f"{doing} ...", highlight=False)
    started = time.monotonic()
    with console.status(f"{doing} ...") as status:
        yield lambda detail: status.update(f"{doing} ({detail}) ...")
    took = time.monotonic() - started
    if took >= 2:
        console.print(f"  done in {took:.0f} s", highlight=False)


def _fail(message: str, code: int = 1) -> None:
    errors.print(f"[bold red]error:[/] {message}", highlight=False, markup=True)
    raise typer.Exit(code)


def _prefect_environment() -> dict[str, str]:
    """Prefect's settings for cbflow: state under the data directory, nothing sent outside."""
    settings = get_settings()
    home = (settings.data_dir / "prefect").resolve()
    env = {
        "PREFECT_HOME": str(home),
        "DO_NOT_TRACK": "1",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_SERVER_API_HOST": "127.0.0.1",
        "PREFECT_SERVER_API_PORT": str(settings.prefect_port),
        "PREFECT_LOGGING_LEVEL": os.environ.get("PREFECT_LOGGING_LEVEL", "WARNING"),
        # the runner looks for runs to start every 2 s: a staff action is not kept waiting
        "PREFECT_RUNNER_POLL_FREQUENCY": os.environ.get("PREFECT_RUNNER_POLL_FREQUENCY", "2"),
        # the temporary server `cbflow demo` starts without PREFECT_API_URL creates its database
        # first: on two cores that took 17 to 35 s, beyond Prefect's default 20 s
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": os.environ.get(
            "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120"
        ),
    }
    home.mkdir(parents=True, exist_ok=True)
    return env


def _use_prefect(api_url: str | None = None) -> None:
    """Set Prefect's environment before Prefect is imported. Without PREFECT_API_URL, flows run
    against a temporary local server that Prefect starts itself."""
    for key, value in _prefect_environment().items():
        os.environ.setdefault(key, value)
    if api_url:
        os.environ["PREFECT_API_URL"] = api_url


@app.command()
def init() -> None:
    """Create or upgrade the database and load the council register."""
    from cbflow.db import migrate, session_scope
    from cbflow.services.councils import load_register

    settings = get_settings()
    try:
        migrate()
        with session_scope() as session:
            count = load_register(session)
    except CbflowError as exc:
        _fail(str(exc))
    console.print(
        f"Database ready at {settings.resolved_database_url}; {count} councils in the register."
    )


@prospectus_app.command("check")
def prospectus_check(
    files: Annotated[list[Path], typer.Argument(help="Prospectus files to check.")],
) -> None:
    """Check prospectus files against the format; report every fault with file, line and key."""
    from cbflow.prospectus import load

    failed = False
    for path in files:
        try:
            prospectus = load(path)
        except ProspectusError as exc:
            failed = True
            for problem in exc.problems:
                errors.print(problem, highlight=False, markup=False)
            continue
        stages = [name for name, stage in prospectus.stages if stage is not None]
        console.print(f"{path}: ok — {prospectus.id}, stages: {', '.join(stages)}", highlight=False)
        support = prospectus.support_question()
        if prospectus.capacity.budget_gbp is not None and not prospectus.capacity.requested_by:
            console.print(
                f"  each application's request for the budget is read from {support!r} "
                "(set capacity.requested_by to choose another)",
                highlight=False,
            )
    if failed:
        raise typer.Exit(1)


@prospectus_app.command("schema")
def prospectus_schema(
    file: Annotated[
        Path | None, typer.Argument(help="A prospectus: print the schemas of its forms' answers.")
    ] = None,
    form: Annotated[str | None, typer.Option(help="Only this form: eoi, bid or returns.")] = None,
) -> None:
    """Print the JSON Schema of the prospectus format, or of a prospectus's forms' answers."""
    from cbflow.forms import answers_schema
    from cbflow.prospectus import format_schema, load

    if file is None:
        print(json.dumps(format_schema(), indent=2, default=str))
        return
    try:
        prospectus = load(file)
    except ProspectusError as exc:
        _fail(str(exc))
    forms = prospectus.forms()
    if form is not None and form not in forms:
        _fail(f"{prospectus.id} has no form {form!r}; it has {', '.join(forms)}")
    chosen = {form: forms[form]} if form else forms
    schemas = {
        name: answers_schema(f, f"{prospectus.title}: {name} answers") for name, f in chosen.items()
    }
    print(json.dumps(schemas[form] if form else schemas, indent=2, default=str))


@round_app.command("launch")
def round_launch(
    file: Annotated[Path, typer.Argument(help="The prospectus file of the round.")],
    actor: Annotated[
        str, typer.Option(help="Who launches the round (for the audit log).")
    ] = "staff:cli",
) -> None:
    """Launch a round: validate its prospectus, store it, issue the prospectus document and
    schedule its deadline runs on the Prefect server (when PREFECT_API_URL names one)."""
    from cbflow import stages
    from cbflow.db import migrate, session_scope
    from cbflow.services.councils import load_register

    migrate()
    with session_scope() as session:
        load_register(session)
    try:
        source = file.read_text(encoding="utf-8")
        outcome = stages.launch(source, str(file), now=datetime.now(UTC), actor=actor)
    except (OSError, UnicodeDecodeError) as exc:
        _fail(f"{file}: cannot read the file: {exc}")
    except ProspectusError as exc:
        for problem in exc.problems:
            errors.print(problem, highlight=False, markup=False)
        raise typer.Exit(1) from None
    except CbflowError as exc:
        _fail(str(exc))
    verb = "launched" if outcome.counts.get("created") else "was already launched"
    console.print(f"Round {outcome.round} {verb}.")
    for path in outcome.documents:
        console.print(f"  prospectus document: {path}")
    if os.environ.get("PREFECT_API_URL"):
        _use_prefect()
        from flows.deployments import ensure_deployments, schedule_round

        async def schedule() -> list[tuple[str, datetime]]:
            await ensure_deployments()
            return await schedule_round(outcome.round)

        for flow_name, when in asyncio.run(schedule()):
            console.print(f"  scheduled {flow_name} at {when.isoformat()}")
    else:
        console.print(
            "  (set PREFECT_API_URL, or use `cbflow serve`, to schedule its deadline runs)"
        )


@round_app.command("status")
def round_status(
    slug: Annotated[str | None, typer.Argument(help="A round id; all rounds if left out.")] = None,
) -> None:
    """Where each round stands: its state and how many applications are in each state."""
    from cbflow.db import migrate, session_scope
    from cbflow.services import rounds

    migrate()
    with session_scope() as session:
        try:
            chosen = [rounds.get_round(session, slug)] if slug else rounds.all_rounds(session)
        except CbflowError as exc:
            _fail(str(exc))
        if not chosen:
            console.print("No rounds yet. Launch one with `cbflow round launch FILE`.")
            return
        for round_ in chosen:
            table = Table(title=f"{round_.slug}: {round_.title} — {round_.state}")
            table.add_column("application state")
            table.add_column("count", justify="right")
            for state, count in sorted(rounds.state_counts(session, round_).items()):
                table.add_row(state, str(count))
            console.print(table)


@app.command()
def deploy() -> None:
    """Create the Prefect work pool (CBFLOW_WORK_POOL, default cbflow) if absent and register
    every deployment to it on the server PREFECT_API_URL names, with the crash recovery several
    workers need. Run again after an upgrade or a change of schedule: it updates them in place.
    Workers on any host then run the flows: `prefect worker start --pool cbflow`."""
    if not os.environ.get("PREFECT_API_URL"):
        _fail("set PREFECT_API_URL to the Prefect server to deploy to (http://HOST:4200/api)")
    _use_prefect()
    from flows.deployments import deploy as deploy_all

    try:
        deployed = asyncio.run(deploy_all())
    except CbflowError as exc:
        _fail(str(exc))
    except SystemExit as exc:  # a schedule setting that is not one
        _fail(str(exc.code))
    verb = "created" if deployed.pool_created else "found"
    console.print(f"Work pool {deployed.pool} {verb}.", highlight=False)
    console.print(
        f"{len(deployed.deployments)} deployments registered to it; automations: "
        f"{'; '.join(deployed.automations)}.",
        highlight=False,
    )
    console.print(f"Start workers with: prefect worker start --pool {deployed.pool}")


class OpenDataKind(StrEnum):
    threesixty = "360giving"
    ocds = "ocds"


@app.command("export")
def export(
    kind: Annotated[
        OpenDataKind,
        typer.Argument(help="360giving: the grants awarded; ocds: the round's stages."),
    ],
    slug: Annotated[str, typer.Argument(help="The round's id, as in its prospectus.")],
    output: Annotated[
        Path | None,
        typer.Option(
            "--output", "-o", help="Where to write it; default: open-data/ROUND-KIND.json."
        ),
    ] = None,
) -> None:
    """Publish a round as open data: its awarded grants as a 360Giving data package, or its
    stages as OCDS releases (JSON)."""
    from cbflow import opendata
    from cbflow.db import migrate, session_scope
    from cbflow.services import rounds

    settings = get_settings()
    path = output or settings.data_dir / "open-data" / f"{slug}-{kind.value}.json"
    url = opendata.download_url(settings, slug, kind.value)
    migrate()
    with session_scope() as session:
        try:
            round_ = rounds.get_round(session, slug)
            data = opendata.package(session, round_, kind.value, now=datetime.now(UTC), url=url)
        except CbflowError as exc:
            _fail(str(exc))
    opendata.write(data, path)
    listed = "grants" if kind is OpenDataKind.threesixty else "releases"
    console.print(f"{path}: {len(data[listed])} {listed} ({kind.value})", highlight=False)


@user_app.command("add")
def user_add(
    email: Annotated[str, typer.Argument(help="The address their sign-in links go to.")],
    name: Annotated[str, typer.Option(help="Their full name.")],
    role: Annotated[
        str,
        typer.Option(
            help="applicant | assessor | staff | admin (the first administrator) | provider."
        ),
    ],
    council: Annotated[
        str | None,
        typer.Option(help="Council code: the applicant's council, or the assessor's employer."),
    ] = None,
    provider: Annotated[
        str | None,
        typer.Option(help="A provider's organisation, as the prospectus's support offers name it."),
    ] = None,
) -> None:
    """Add a person who signs in to the portal (administrators add the others on the portal's
    People page), and give them a single-use sign-in link: mailed when an SMTP server is
    configured, otherwise printed here to hand over."""
    from cbflow import notify
    from cbflow.clock import system_clock
    from cbflow.db import migrate, session_scope
    from cbflow.errors import ValidationFailed
    from cbflow.services import accounts

    settings = get_settings()
    base_url = settings.resolved_portal_base_url
    now = system_clock()
    handed: accounts.HandedLink | None = None
    message: notify.Message | None = None
    migrate()
    try:
        with session_scope() as session:
            user = accounts.add_user(
                session,
                email=email,
                name=name,
                role=role,
                council_code=council,
                actor="cli",
                now=now,
                provider=provider,
            )
            if notify.uses_outbox(settings):
                handed = accounts.hand_over_sign_in_link(
                    session, email=user.email, base_url=base_url, actor="cli", now=now
                )
            else:
                message = accounts.send_sign_in_link(
                    session, email=user.email, base_url=base_url, settings=settings, now=now
                )
            added = f"Added {user.name} <{user.email}> as {accounts.ROLES[user.role]}."
    except ValidationFailed as exc:
        _fail("; ".join(exc.errors.values()))
    console.print(added, markup=False, highlight=False)
    if handed is not None:
        _print_link(
            handed, "No mail server is set (CBFLOW_SMTP_HOST), so here is their sign-in link:"
        )
    elif message is not None:
        failed = notify.mail_all([message], settings)
        if failed:
            _fail(
                f"their sign-in link was not mailed ({failed[0][1]}): check the CBFLOW_SMTP_ "
                f"settings, or print a link to hand over with `cbflow user link {message.to}`"
            )
        minutes = int(accounts.LINK_LIFETIME.total_seconds() // 60)
        console.print(
            f"Mailed them a sign-in link: it works once, within {minutes} minutes.",
            highlight=False,
        )


@user_app.command("link")
def user_link(
    email: Annotated[str, typer.Argument(help="The address of someone who signs in.")],
) -> None:
    """Print a fresh single-use sign-in link for someone who can already sign in, to hand over:
    the first administrator's way in without a mail server (after that, the portal). The link
    is stored only as its hash, and handing it over is recorded in the audit log."""
    from cbflow.clock import system_clock
    from cbflow.db import migrate, session_scope
    from cbflow.services import accounts

    settings = get_settings()
    migrate()
    try:
        with session_scope() as session:
            handed = accounts.hand_over_sign_in_link(
                session,
                email=email,
                base_url=settings.resolved_portal_base_url,
                actor="cli",
                now=system_clock(),
            )
    except accounts.UnknownPerson as exc:
        _fail(f"{exc}: check the address, or add them with `cbflow user add`")
    _print_link(handed, f"Sign-in link for {handed.name} <{handed.email}>:")


def _print_link(handed: HandedLink, lead: str) -> None:
    """Print a handed-over sign-in link on a line of its own, with when it expires in the
    service's time zone."""
    from zoneinfo import ZoneInfo

    from cbflow.formatting import long_date

    expires = handed.expires_at.astimezone(ZoneInfo(get_settings().timezone))
    console.print(lead, markup=False, highlight=False)
    console.print(handed.url, markup=False, highlight=False, crop=False, overflow="ignore")
    console.print(
        f"It works once, until {expires:%H:%M %Z} on {long_date(expires)}, and signs in as "
        f"{handed.email}: give it to them alone. For a fresh one: "
        f"cbflow user link {handed.email}",
        markup=False,
        highlight=False,
    )


def _print_summary(summary: dict[str, Any]) -> None:
    table = Table(title=f"{summary['round']}: applications by state")
    table.add_column("state")
    table.add_column("count", justify="right")
    for state, count in sorted(summary["states"].items()):
        table.add_row(state, str(count))
    console.print(table)
    chosen = Table(title="Selected places")
    for column in ("rank", "council", "score %", "support", "now"):
        chosen.add_column(column)
    from cbflow.formatting import money

    for place in summary["selected"]:
        support = money(place["support"]) if place["support"] is not None else "-"
        chosen.add_row(
            str(place["rank"] or "-"),
            place["council"],
            place["score"] or "-",
            support,
            place["state"],
        )
    console.print(chosen)
    docs = summary["documents"]
    console.print(f"Documents: {docs.get('total', 0)} in {docs.get('folder')}")
    for kind, count in sorted(docs.get("by_kind", {}).items()):
        console.print(f"  {kind}: {count}")
    if summary.get("late_refused"):
        console.print(f"Late submissions refused: {summary['late_refused']}")
    adoption = summary.get("adoption") or {}
    if adoption.get("not adopted"):
        console.print(
            f"Replication: the model of {adoption['model']} is published; "
            f"no council adopted it: {adoption['not adopted']}"
        )
    elif adoption:
        console.print(
            f"Replication: {adoption['adopter']} adopted the model of {adoption['model']} "
            f"({adoption['answers carried over']} answers carried over, "
            f"{adoption['carried over and valid']} of them valid as its form asks them) "
            f"as {adoption['application']}; who adopted it and how they compare: "
            f"{adoption['lineage report']} on the portal"
        )


DEFAULT_DEMO = "whole-place-2011.yaml"


def _demo_file(prospectus: Path | None) -> Path:
    return prospectus or get_settings().prospectus_dir / DEFAULT_DEMO


def _run_demo(prospectus: Path, seed: int, councils: int | None) -> dict[str, Any]:
    from cbflow import demo_people
    from cbflow.db import migrate, session_scope
    from cbflow.prospectus import load
    from cbflow.services.councils import load_register

    try:
        load(prospectus)
    except ProspectusError as exc:
        for problem in exc.problems:
            errors.print(problem, highlight=False, markup=False)
        raise typer.Exit(1) from None
    with _step("Preparing the database and the demo's staff and assessors"):
        migrate()
        with session_scope() as session:
            load_register(session)
            demo_people.add_staff_and_assessors(session, now=datetime.now(UTC))
    from flows.demo import demo_round

    result: dict[str, Any] = asyncio.run(
        demo_round(str(prospectus), seed=seed, councils=councils, progress_bar=True)
    )
    return result


def _demo_cast(round_slug: str) -> Cast:
    """The demo's people, with the council officers added for the round that has run."""
    from cbflow import demo_people
    from cbflow.db import session_scope

    with session_scope() as session:
        return demo_people.add_council_officers(
            session, round_slug=round_slug, now=datetime.now(UTC)
        )


def _print_cast(cast: Cast, portal: str | None) -> None:
    """Who to sign in as, and three things to try, with their addresses."""
    from cbflow.services.accounts import ROLES

    if portal:
        console.print(
            f"[bold]Demo people[/]: open {portal}/sign-in and press Sign in beside one of them "
            "(the demo only; elsewhere people sign in by an emailed link)"
        )
    else:
        console.print(
            "[bold]Demo people[/]: each signs in with a link (`cbflow user link EMAIL` prints "
            "one); `cbflow serve --demo` offers them with one press on its sign-in page"
        )
    for person in cast.people:
        console.print(
            f"  {ROLES[person.role]:<18} {person.name:<34} {person.email}\n"
            f"  {'':<18} {person.what}: {portal or ''}{person.start}",
            highlight=False,
        )
    console.print("[bold]Three things to try[/]")
    for number, item in enumerate(cast.tries, start=1):
        console.print(
            f"  {number}. As {item.who}, {item.what}: {portal or ''}{item.path}", highlight=False
        )


@app.command()
def demo(
    prospectus: Annotated[Path | None, typer.Option(help="The round to simulate.")] = None,
    seed: Annotated[
        int, typer.Option(help="Seed of the simulation (same seed, same round).")
    ] = 2011,
    councils: Annotated[
        int | None, typer.Option(help="How many councils apply (default: a realistic field).")
    ] = None,
) -> None:
    """Simulate a whole round over real councils, from launch to replication, as Prefect flows.

    Flows report to the Prefect server in PREFECT_API_URL (as `cbflow serve --demo` sets), or
    to a temporary local one."""
    _use_prefect(os.environ.get("PREFECT_API_URL"))
    if not os.environ.get("PREFECT_API_URL"):
        console.print("No PREFECT_API_URL: the flows run on a temporary Prefect server (starting)")
    summary = _run_demo(_demo_file(prospectus), seed, councils)
    _print_summary(summary)
    _print_cast(_demo_cast(summary["round"]), None)


DEMO_FOLDER = "demo"
DEMO_MARK = ".cbflow-demo"  # in a demo folder cbflow made: only such a folder is ever emptied


def _use_demo_folder(*, keep: bool) -> bool:
    """Point this process and its children at the demo's own folder (its SQLite database,
    documents and Prefect state, never a real round's), empty it unless `keep`, and say which.
    Returns whether a previous demo continues."""
    folder = get_settings().data_dir / DEMO_FOLDER
    os.environ["CBFLOW_DATA_DIR"] = str(folder)
    os.environ["CBFLOW_DATABASE_URL"] = ""  # the demo's own SQLite database
    os.environ["CBFLOW_DEMO"] = "true"
    get_settings.cache_clear()
    if folder.exists() and not (folder / DEMO_MARK).exists():
        _fail(f"{folder} exists but was not made by the demo: move it, or set CBFLOW_DATA_DIR")
    if keep and folder.exists():
        console.print(f"Continuing the previous demo in {folder} (--continue).")
        return True
    if folder.exists():
        shutil.rmtree(folder)
        console.print(
            f"Starting a fresh demo in {folder}: the previous demo's data is removed "
            "(--continue keeps it)."
        )
    else:
        console.print(f"Starting a fresh demo in {folder}.")
    folder.mkdir(parents=True, mode=PRIVATE_FOLDER)
    (folder / DEMO_MARK).write_text("made by cbflow serve --demo; emptied by the next one\n")
    return False


def _demo_round_run(prospectus: Path) -> str | None:
    """The demo round's id if it has already run in this data folder, else None."""
    from sqlmodel import select

    from cbflow.db import session_scope
    from cbflow.models import Round
    from cbflow.prospectus import load

    slug = load(prospectus).id
    with session_scope() as session:
        found = session.exec(select(Round).where(Round.slug == slug)).first()
    return slug if found is not None else None


def _wait_healthy(
    url: str,
    processes: list[subprocess.Popen[bytes]],
    name: str,
    log: Path,
    timeout: float = 90,
    waited: Callable[[float], None] | None = None,
) -> None:
    started = time.monotonic()
    deadline = started + timeout
    while time.monotonic() < deadline:
        if waited is not None:
            waited(time.monotonic() - started)
        for process in processes:
            if process.poll() is not None:
                _fail(f"{name} stopped (exit code {process.returncode}); see its log: {log}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.5)
    _fail(f"{name} did not answer at {url} within {timeout:.0f} s; see its log: {log}")


def _stop(process: subprocess.Popen[bytes], name: str) -> None:
    """Stop a child: SIGTERM, then SIGKILL if it has not gone within ten seconds."""
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        errors.print(f"{name} did not stop in time; killing it")
        process.kill()
        process.wait()


def _interrupt(signum: int, _frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def _stop_on_signals() -> None:
    """Ctrl-C and a plain `kill` both stop the server and its children cleanly (a shell that
    starts us in the background would otherwise leave Ctrl-C ignored)."""
    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _interrupt)


def _log_event(line: str) -> None:
    """What `serve` did about its processes, on its error stream with the time."""
    errors.print(f"{datetime.now().astimezone():%Y-%m-%d %H:%M:%S %Z}  {line}", highlight=False)


class FlowRunner:
    """The Prefect worker `serve` starts (`prefect worker start --pool POOL`): it executes the
    deadline runs and the runs staff start, as any other worker would. Started again when it
    stops, unless it stops soon after starting (then it is failing, and its log says why)."""

    def __init__(
        self, env: dict[str, str], log: Path, pool: str, crash_loop_seconds: float = 30
    ) -> None:
        self.env, self.log, self.crash_loop_seconds = env, log, crash_loop_seconds
        self.pool = pool
        self.process: subprocess.Popen[bytes] | None = None
        self.started = 0.0

    def start(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "prefect", "worker", "start", "--pool", self.pool],
            env=self.env,
            stdout=self.log.open("ab"),
            stderr=subprocess.STDOUT,
            cwd=Path(__file__).resolve().parent.parent,
            preexec_fn=with_parent(),
        )
        self.started = time.monotonic()

    def restart_if_stopped(self) -> int | None:
        """Start it again if it has stopped; returns its exit code then, else None."""
        assert self.process is not None
        code = self.process.poll()
        if code is None:
            return None
        if time.monotonic() - self.started < self.crash_loop_seconds:
            raise CbflowError(
                f"the flow runner stopped (exit code {code}) soon after starting; see {self.log}"
            )
        self.start()
        return code

    def stop(self) -> None:
        """Stop it by its PID: a worker takes 30 to 60 s to act on SIGTERM, so it has ten
        seconds and is then killed (its flow runs end with it, and are marked crashed)."""
        if self.process is not None:
            _stop(self.process, "the flow runner")


def _worker_environment(env: dict[str, str]) -> dict[str, str]:
    """The environment of the worker `serve` starts, which its flow runs inherit (every
    CBFLOW_ setting with it): it looks for runs every 2 s (a staff action is not kept waiting),
    and its flow runs import this same cbflow, wherever they start."""
    root = Path(__file__).resolve().parent.parent
    path = env.get("PYTHONPATH", "")
    if (root / "flows").is_dir() and str(root) not in path.split(os.pathsep):
        path = os.pathsep.join(p for p in (str(root), path) if p)
    return {
        **env,
        "PREFECT_WORKER_QUERY_SECONDS": env.get("PREFECT_WORKER_QUERY_SECONDS", "2"),
        **({"PYTHONPATH": path} if path else {}),
    }


@app.command()
def serve(
    demo_round: Annotated[
        bool, typer.Option("--demo", help="Also run the demo round, to watch its flows.")
    ] = False,
    prospectus: Annotated[
        Path | None, typer.Option(help="With --demo: the round to simulate.")
    ] = None,
    seed: Annotated[int, typer.Option(help="With --demo: seed of the simulation.")] = 2011,
    councils: Annotated[
        int | None,
        typer.Option(help="With --demo: how many councils apply (default: a realistic field)."),
    ] = None,
    exit_after_demo: Annotated[
        bool, typer.Option(help="With --demo: stop once the demo is done.")
    ] = False,
    continue_demo: Annotated[
        bool,
        typer.Option(
            "--continue",
            help="With --demo: keep the previous demo's data and serve it again, rather than "
            "starting a fresh demo.",
        ),
    ] = False,
) -> None:
    """Start the portal, a local Prefect server with its UI and the runner of the deadline
    deployments; their state stays under the data directory. Stop with Ctrl-C.

    With --demo, the demo round runs in a folder of its own (`demo` in the data directory),
    emptied first unless --continue, and the sign-in page offers the demo's people."""
    from cbflow import demo_people
    from cbflow.db import migrate, session_scope
    from cbflow.render import remove_partial_files
    from cbflow.services.councils import load_register
    from cbflow.web.app import govuk_frontend
    from cbflow.web.worker import PortalProcesses

    continuing = _use_demo_folder(keep=continue_demo) if demo_round else False
    settings = get_settings()
    _stop_on_signals()
    try:
        govuk_frontend(settings)  # before starting anything: the portal cannot run without it
        with _step("Preparing the database (migrations, the council register)"):
            migrate()
            with session_scope() as session:
                load_register(session)
                if demo_round:  # on the sign-in page from the start
                    demo_people.add_staff_and_assessors(session, now=datetime.now(UTC))
    except CbflowError as exc:
        _fail(str(exc))
    for partial in remove_partial_files(settings.documents_dir):
        _log_event(f"removed {partial}, left by a rendering that was killed")
    env = {**os.environ, **_prefect_environment()}
    address = f"http://127.0.0.1:{settings.prefect_port}"
    api = f"{address}/api"
    portal_address = f"http://127.0.0.1:{settings.portal_port}"
    log_dir = settings.data_dir / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    server_log_path = log_dir / "prefect-server.log"
    server: subprocess.Popen[bytes] | None = None
    portal_log_path = log_dir / "portal.log"
    # the portal starts flow runs on this server (staff actions) and links to its UI
    portal = PortalProcesses(
        settings.portal_workers or os.cpu_count() or 1,
        "127.0.0.1",
        settings.portal_port,
        {**env, "PREFECT_API_URL": api},
        portal_log_path,
    )
    runner: FlowRunner | None = None
    try:
        # the portal first, then the Prefect server: on two cores, starting both at once kept
        # the portal from answering for twice as long
        with _step(f"Starting the portal (log: {portal_log_path})") as say:
            portal.start()
            _wait_healthy(
                f"{portal_address}/healthz",
                portal.processes,
                "the portal",
                portal_log_path,
                waited=lambda seconds: say(f"{seconds:.0f} s"),
            )
        console.print(f"[bold]Portal: {portal_address}[/]")
        server = subprocess.Popen(
            [sys.executable, "-m", "prefect", "server", "start"],
            env=env,
            stdout=server_log_path.open("ab"),
            stderr=subprocess.STDOUT,
            preexec_fn=with_parent(),  # killed, `serve` takes what it started with it
        )
        with _step(
            f"Starting the Prefect server (log: {server_log_path}; a first start creates its "
            "database)"
        ) as say:
            _wait_healthy(
                f"{api}/health",
                [server],
                "the Prefect server",
                server_log_path,
                waited=lambda seconds: say(f"{seconds:.0f} s"),
            )
        env["PREFECT_API_URL"] = api
        _use_prefect(api)
        from flows.deployments import deploy as deploy_all
        from flows.deployments import mark_abandoned_runs

        # its worker is the only one: a run still "running" was left so by the last `serve`
        # that was killed (marked crashed, it is retried as any crashed run is)
        crashed = mark_abandoned_runs()
        if crashed:
            _log_event(f"marked {len(crashed)} flow run(s) crashed: {', '.join(crashed)}")
        try:
            asyncio.run(deploy_all(settings))
        except SystemExit as exc:  # a schedule setting that is not one
            _fail(str(exc.code))
        runner_log_path = log_dir / "worker.log"
        runner = FlowRunner(_worker_environment(env), runner_log_path, settings.work_pool)
        runner.start()
        console.print(f"[bold]Prefect UI: {address}[/]  (worker log: {runner_log_path})")
        if demo_round:
            slug = _demo_round_run(_demo_file(prospectus)) if continuing else None
            if slug is None:
                console.print("Running the demo round (its stages are flow runs in the UI) ...")
                summary = _run_demo(_demo_file(prospectus), seed, councils)
                _print_summary(summary)
                slug = summary["round"]
            else:
                console.print(f"The demo round {slug} has already run: serving it as it is.")
            console.print(f"[bold]Watch the demo's flow runs at {address}/runs[/]")
            _print_cast(_demo_cast(slug), portal_address)
            if exit_after_demo:
                return
        console.print(f"Serving: the portal at {portal_address}. Press Ctrl-C to stop.")
        while server.poll() is None:
            for code in portal.replace_stopped():
                _log_event(
                    f"a portal process stopped (exit code {code}); started another "
                    f"(see {portal_log_path})"
                )
            for line in portal.replace_unanswering():
                _log_event(f"{line} (see {portal_log_path})")
            stopped = runner.restart_if_stopped()
            if stopped is not None:
                _log_event(
                    f"the flow runner stopped (exit code {stopped}); started another "
                    f"(see {runner_log_path})"
                )
            time.sleep(1)
        _fail(f"the Prefect server stopped (exit code {server.returncode})")
    except CbflowError as exc:
        _fail(str(exc))
    except KeyboardInterrupt:
        console.print("Stopping ...")
    finally:
        if runner is not None:
            runner.stop()
        for process in portal.processes:
            _stop(process, "the portal")
        if server is not None:
            _stop(server, "the Prefect server")


@app.command()
def portal(
    host: Annotated[
        str,
        typer.Option(
            help="The address to listen on: 127.0.0.1 behind a reverse proxy on this host, "
            "0.0.0.0 to be reached from others."
        ),
    ] = "127.0.0.1",
) -> None:
    """Run the portal alone, as a portal host of a set-up on several hosts does: its processes
    (CBFLOW_PORTAL_WORKERS, one per core by default) on CBFLOW_PORTAL_PORT, watched and replaced
    as under `cbflow serve`. The database must be migrated first (`cbflow init`); staff actions
    start flow runs on the Prefect server PREFECT_API_URL names, which workers execute."""
    from cbflow.web.app import govuk_frontend
    from cbflow.web.worker import PortalProcesses

    settings = get_settings()
    if not settings.resolved_prefect_api_url:
        _fail(
            "set PREFECT_API_URL to the Prefect server the workers take runs from "
            "(http://HOST:4200/api): staff actions start flow runs there"
        )
    _stop_on_signals()
    try:
        govuk_frontend(settings)  # the portal cannot run without it
    except CbflowError as exc:
        _fail(str(exc))
    log_dir = settings.data_dir / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    log = log_dir / "portal.log"
    processes = PortalProcesses(
        settings.portal_workers or os.cpu_count() or 1,
        host,
        settings.portal_port,
        {**os.environ, **_prefect_environment()},
        log,
    )
    address = f"http://{'127.0.0.1' if host in ('0.0.0.0', '::') else host}:{settings.portal_port}"
    try:
        with _step(f"Starting the portal (log: {log})") as say:
            processes.start()
            _wait_healthy(
                f"{address}/healthz",
                processes.processes,
                "the portal",
                log,
                waited=lambda seconds: say(f"{seconds:.0f} s"),
            )
        console.print(f"[bold]Portal: {settings.resolved_portal_base_url}[/] (listening on {host})")
        while True:
            for code in processes.replace_stopped():
                _log_event(f"a portal process stopped (exit code {code}); started another")
            for line in processes.replace_unanswering():
                _log_event(f"{line} (see {log})")
            time.sleep(1)
    except CbflowError as exc:
        _fail(str(exc))
    except KeyboardInterrupt:
        console.print("Stopping ...")
    finally:
        for process in processes.processes:
            _stop(process, "the portal")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
