"""The fault-injection suite: one line per scenario, printed at the end of the run (and kept in a file)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from tests.faults.rig import Outcome, Rig

_OUTCOMES: list[Outcome] = []
RESULTS_FILE = Path(__file__).resolve().parents[2] / ".ci-state" / "faults.txt"


@pytest.fixture
def record() -> Callable[[Outcome], None]:
    def keep(outcome: Outcome) -> None:
        _OUTCOMES.append(outcome)
        print(outcome.line())

    return keep


@pytest.fixture
async def rig_factory(tmp_path: Path) -> AsyncIterator[Callable[..., Rig]]:
    """`rig_factory(**worker_env)`: a broker, a model server and (once started) seven workers, all torn down after."""
    made: list[Rig] = []

    def make(**env: str) -> Rig:
        rig = Rig(tmp_path, env=env)
        made.append(rig)
        return rig

    yield make
    for rig in made:
        await rig.close()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not _OUTCOMES:
        return
    terminalreporter.section("reliability (tests/faults)")
    lines = [outcome.line() for outcome in _OUTCOMES]
    for line in lines:
        terminalreporter.write_line(line)
    RESULTS_FILE.parent.mkdir(exist_ok=True)
    RESULTS_FILE.write_text("\n".join(lines) + "\n")


@pytest.fixture
async def postgres_database(postgres_dsn: str) -> str:
    """A fresh database on the session's PostgreSQL server."""
    from tests.faults.postgres import create_database

    return await create_database(postgres_dsn)
