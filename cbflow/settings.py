"""One place for configuration: environment variables prefixed CBFLOW_, or a .env file."""

import os
from functools import lru_cache
from pathlib import Path

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

PACKAGE_DIR = Path(__file__).resolve().parent


def _shipped(name: str) -> Path:
    """A folder shipped with the project: inside the wheel, or beside the package in a checkout."""
    inside = PACKAGE_DIR / "_shipped" / name
    return inside if inside.is_dir() else PACKAGE_DIR.parent / name


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CBFLOW_", env_file=".env", extra="ignore")

    data_dir: Path = Path(".cbflow")
    database_url: str = ""
    templates_dir: Path = _shipped("templates")
    prospectus_dir: Path = _shipped("prospectus")
    timezone: str = "Europe/London"
    render_workers: int = 0  # 0: one per CPU core
    prefect_port: int = 4200
    # the Prefect server the portal starts flow runs on; empty: PREFECT_API_URL, as `serve` sets
    prefect_api_url: str = ""
    prefect_ui_url: str = ""  # where staff pages link runs to; empty: the API's server
    # whether launching a round schedules its deadline runs (close EOI, close bids, ...)
    schedule_deadlines: bool = True
    # demo mode (`cbflow serve --demo`): the sign-in page offers the demo people, one press each
    demo: bool = False
    # the portal
    portal_port: int = 8000
    portal_workers: int = 0  # processes serving the portal; 0: one per CPU core
    portal_threads: int = 8  # worker threads of each portal process that run its routes
    # the address in e-mailed and printed links and in flow artifacts' document links; empty:
    # http://127.0.0.1:<port>
    portal_base_url: str = ""
    secret_key: str = ""  # signs session cookies; empty: generated once, kept in the data dir
    frontend_dir: Path = PACKAGE_DIR.parent / "node_modules"  # npm packages from ./dev setup
    session_hours: int = 8  # a session ends this long after signing in, whatever happens
    session_idle_minutes: float = 30  # ...and after this long without a request
    # the portal's record of itself (see services.availability): a request answered after this
    # many seconds counts as slow; each process writes its counts this often
    slow_request_seconds: float = 5
    availability_every_seconds: float = 10
    # sign-in links asked for from one client address per minute, beyond which nothing is sent
    # (the answer is the same); 0: no limit, for a load test. Counted in cbflow's database, so
    # the portal's processes on every host share it
    sign_in_asks_per_minute: int = 30
    # e-mail: with no SMTP host, messages are kept in the outbox administrators read
    smtp_host: str = ""
    smtp_port: int = 25
    smtp_username: str = ""
    smtp_password: str = ""
    smtp_starttls: bool = False
    mail_from: str = "cbflow <noreply@cbflow.invalid>"
    # the local time of day (the round's time zone) reminders before a deadline go, on the
    # working days the prospectus's `reminders` names
    reminder_time: str = "09:00"
    # when the programme board's pack is produced (see services.board): a cron line in the
    # portal's time zone, or "every N seconds"; the first of each month at 07:00 by default
    board_pack_schedule: str = "0 7 1 * *"
    # when the followers' digest run goes (cbflow.services.following): a cron line in the portal's
    # time zone, or "every N seconds"; each follow is sent its digest every
    # `replication.digest_every_days` of its round, when something is new
    digest_schedule: str = "0 8 * * *"
    # the waits, in seconds, before each retry of a stage's steps that do I/O under Prefect (a
    # batch of documents, the mail): "10,60,300" is three retries; empty, none
    step_retry_seconds: str = "10,60,300"
    # where rendered documents and uploaded files are kept (cbflow.store): "local" (the data
    # folder), "database" (cbflow's database) or "s3://bucket/prefix" (an S3-compatible store,
    # credentials from boto3's usual environment variables)
    store: str = "local"
    s3_endpoint_url: str = ""  # the S3-compatible server's address; empty: AWS
    # the Prefect process work pool `cbflow deploy` registers the deployments to, and that
    # `prefect worker start --pool NAME` takes their runs from, on any number of hosts
    work_pool: str = Field(default="cbflow", min_length=1)
    # a flow run reports a heartbeat this often (Prefect's minimum is 30 s); one silent for three
    # beats is marked crashed (its host or worker died), and a crashed run is retried, as the same
    # run, at most `crash_retries` times
    heartbeat_seconds: int = Field(default=30, ge=30)
    crash_retries: int = Field(default=2, ge=0, le=20)

    @field_validator("reminder_time")
    @classmethod
    def _time_of_day(cls, value: str) -> str:
        from cbflow.workdays import parse_time_of_day

        parse_time_of_day(value)
        return value.strip()

    @field_validator("store")
    @classmethod
    def _store(cls, value: str) -> str:
        from cbflow.store import parse_setting

        parse_setting(value)
        return value.strip()

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'cbflow.db').resolve()}"

    @property
    def documents_dir(self) -> Path:
        return self.data_dir / "documents"

    @property
    def resolved_prefect_api_url(self) -> str:
        return (self.prefect_api_url or os.environ.get("PREFECT_API_URL", "")).rstrip("/")

    @property
    def resolved_prefect_ui_url(self) -> str:
        if self.prefect_ui_url:
            return self.prefect_ui_url.rstrip("/")
        api = self.resolved_prefect_api_url
        if api.endswith("/api"):
            return api.removesuffix("/api")
        return f"http://127.0.0.1:{self.prefect_port}"

    @property
    def resolved_portal_base_url(self) -> str:
        return (self.portal_base_url or f"http://127.0.0.1:{self.portal_port}").rstrip("/")


@lru_cache
def get_settings() -> Settings:
    return Settings()
