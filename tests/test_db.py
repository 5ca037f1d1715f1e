"""Schema migrations: Alembic builds every table of the models, and the models match them."""

from __future__ import annotations

from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import func, inspect, select
from sqlalchemy.engine import Connection
from sqlmodel import SQLModel

import cbflow.models  # noqa: F401  (registers the tables on SQLModel.metadata)
from cbflow.db import alembic_config, get_engine, migrate
from cbflow.models import Council
from cbflow.settings import Settings


def _schema(connection: Connection) -> dict[str, Any]:
    """Tables with their columns and indexes, and the revision stamped: enough to see a change."""
    inspector = inspect(connection)
    return {
        "revision": MigrationContext.configure(connection).get_current_revision(),
        "tables": {
            table: (
                [(c["name"], str(c["type"]), c["nullable"]) for c in inspector.get_columns(table)],
                sorted(i["name"] or "" for i in inspector.get_indexes(table)),
            )
            for table in sorted(inspector.get_table_names())
        },
    }


def _head(url: str) -> str | None:
    return ScriptDirectory.from_config(alembic_config(url)).get_current_head()


def test_migrate_empty_database_creates_every_model_table(any_db_env: Settings) -> None:
    url = any_db_env.resolved_database_url

    with get_engine(url).connect() as connection:
        schema = _schema(connection)

    assert set(SQLModel.metadata.tables) <= set(schema["tables"])
    assert schema["revision"] == _head(url)


def test_migrate_again_changes_nothing(any_db_env: Settings) -> None:
    url = any_db_env.resolved_database_url
    engine = get_engine(url)
    count_councils = select(func.count()).select_from(Council)
    with engine.connect() as connection:
        before = _schema(connection)
        councils = connection.execute(count_councils).scalar_one()

    migrate(url)

    with engine.connect() as connection:
        assert _schema(connection) == before
        assert connection.execute(count_councils).scalar_one() == councils


def test_models_match_migrations(any_db_env: Settings) -> None:
    """A model changed without a migration shows here: write one with `alembic revision
    --autogenerate` (script_location cbflow/migrations)."""
    with get_engine(any_db_env.resolved_database_url).connect() as connection:
        context = MigrationContext.configure(
            connection, opts={"compare_type": True, "render_as_batch": True}
        )
        differences = compare_metadata(context, SQLModel.metadata)

    assert differences == []
