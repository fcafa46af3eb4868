import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
import torch
from sqlalchemy.engine import make_url

torch.set_num_threads(1)


REQUIRE_POSTGRES = "SB3_NEPPO_REQUIRE_POSTGRES"  # set by .ci/run: there a missing server fails the tests


@pytest.fixture(scope="session")
def postgres_server() -> str:
    """The URL of the real PostgreSQL server that ``bash scripts/postgres.sh`` (run by the README's test command) starts:
    its maintenance database, where the tests only create and drop their own databases. Without a server that answers,
    the tests that need one are skipped with a line saying how to run them, or fail where ``SB3_NEPPO_REQUIRE_POSTGRES``
    is 1 (CI)."""
    path = Path(__file__).resolve().parents[1] / ".venv" / "postgres_url"
    why = None
    if not path.exists():
        why = "no PostgreSQL server"
    else:
        try:
            psycopg.connect(path.read_text().strip(), connect_timeout=5).close()
        except psycopg.OperationalError as exc:
            why = f"the PostgreSQL server in .venv/postgres_url does not answer ({str(exc).splitlines()[0]})"
    if why is None:
        return path.read_text().strip()
    message = f"{why}: run `bash scripts/postgres.sh` first (the README's test command does)"
    if os.environ.get(REQUIRE_POSTGRES) == "1":
        pytest.fail(message)
    pytest.skip(message)


def _new_database(server: str, label: str) -> Iterator[str]:
    """A brand-new database (no Optuna schema: what a fresh machine has), dropped afterwards."""
    name = f"neppo_{label}_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield make_url(server).set(database=name).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(server, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def postgres_url(postgres_server: str) -> Iterator[str]:
    """A database of its own for this test session, new at its start: the first test to open it creates Optuna's
    schema, as on a fresh machine (a server that already holds a schema would hide schema races)."""
    yield from _new_database(postgres_server, "tests")


@pytest.fixture
def fresh_postgres_url(postgres_server: str) -> Iterator[str]:
    """A brand-new database for one test."""
    yield from _new_database(postgres_server, "fresh")
