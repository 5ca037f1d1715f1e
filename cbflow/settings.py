"""One place for configuration: environment variables prefixed CBFLOW_, or a .env file."""

from functools import lru_cache
from pathlib import Path

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
    # where documents are served from (the portal); empty: link to the files themselves
    documents_base_url: str = ""

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'cbflow.db').resolve()}"

    @property
    def documents_dir(self) -> Path:
        return self.data_dir / "documents"


@lru_cache
def get_settings() -> Settings:
    return Settings()
