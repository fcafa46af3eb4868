from pathlib import Path

import pytest
import torch

torch.set_num_threads(1)


@pytest.fixture(scope="session")
def postgres_url() -> str:
    """The URL of the real PostgreSQL server that ``bash scripts/postgres.sh`` (run by the README's test command) starts."""
    path = Path(__file__).resolve().parents[1] / ".venv" / "postgres_url"
    if not path.exists():
        pytest.fail("no PostgreSQL server: run `bash scripts/postgres.sh` first (the README's test command does)")
    return path.read_text().strip()
