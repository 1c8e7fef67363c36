"""Fixtures every test folder shares: a small simulated world, its catalog as the scorer sees
it, and the propensity log's back ends. The HTTP app's fixtures are in ``tests/api/conftest.py``;
shared helpers (not fixtures) are modules of ``tests/support/``.

The log fixtures: ``log_url`` is parametrized over ``sqlite`` (a fresh file) and ``postgres`` (a
database on one throwaway server per test session, emptied before each test; see
:mod:`proplog.pg_server`, which runs it with fsync off). ``engine`` is an initialized
engine on that URL. Without a PostgreSQL server binary the ``postgres`` cases are skipped with a
reason, a warning, and a banner in the terminal summary; with ``LOOPBREAK_REQUIRE_POSTGRES=1``
(CI sets it) they fail instead.

``spark``: one local Spark session (``local[2]``, UI off, few shuffle partitions) for the test
session. Without a Java runtime its tests are skipped the same loud way; with
``LOOPBREAK_REQUIRE_SPARK=1`` (CI sets it) they fail instead.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, create_engine, text

from fm_core import ItemCatalog
from loop.sim_bridge import catalog_from_world
from proplog.engine import init_db, make_engine
from proplog.pg_server import PostgresServer, PostgresUnavailableError, start_server
from proplog.schema import log_tables
from sim import World, WorldConfig


@pytest.fixture(scope="session")
def small_world_config() -> WorldConfig:
    return WorldConfig(seed=7, n_items=120, n_users=60)


@pytest.fixture(scope="session")
def small_catalog(small_world_config: WorldConfig) -> ItemCatalog:
    return catalog_from_world(World(small_world_config))


# ---------------------------------------------------------------------------------------------
# The propensity log's back ends
# ---------------------------------------------------------------------------------------------

LOG_BACKENDS = ("sqlite", "postgres")
REQUIRE_POSTGRES_ENV = "LOOPBREAK_REQUIRE_POSTGRES"
_postgres_skipped: list[str] = []


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One throwaway PostgreSQL server for the session, with the log's tables in its database."""
    try:
        server = start_server(database="loopbreak_test", durable=False)
    except PostgresUnavailableError as exc:
        if "no PostgreSQL server binary" not in str(exc) or os.environ.get(REQUIRE_POSTGRES_ENV):
            raise
        reason = f"PostgreSQL back end NOT TESTED: {exc}"
        if not _postgres_skipped:
            warnings.warn(reason, pytest.PytestWarning, stacklevel=1)
        _postgres_skipped.append(reason)
        pytest.skip(reason)
    try:
        setup = make_engine(server.url)
        init_db(setup)
        setup.dispose()
        yield server
    finally:
        server.stop()


@pytest.fixture(params=LOG_BACKENDS)
def log_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty log database's URL: a new SQLite file, or the PostgreSQL one with tables emptied.

    Emptying (TRUNCATE, about 20 ms) is much faster than copying a template database (0.3-1 s).
    """
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'log.db'}"
    server: PostgresServer = request.getfixturevalue("postgres_server")
    cleaner = create_engine(server.url)
    try:
        with cleaner.begin() as conn:
            conn.execute(text("SET LOCAL lock_timeout = '10s'"))
            names = ", ".join(table.name for table in log_tables())
            conn.execute(text(f"TRUNCATE {names} RESTART IDENTITY"))
    finally:
        cleaner.dispose()
    return server.url


@pytest.fixture
def engine(log_url: str) -> Iterator[Engine]:
    """An engine on a fresh log database with its tables, on each back end."""
    eng = make_engine(log_url)
    init_db(eng)
    yield eng
    eng.dispose()


# ---------------------------------------------------------------------------------------------
# Spark in local mode
# ---------------------------------------------------------------------------------------------

REQUIRE_SPARK_ENV = "LOOPBREAK_REQUIRE_SPARK"
_spark_skipped: list[str] = []


@pytest.fixture(scope="session")
def spark() -> Iterator[Any]:
    """One local Spark session for the test session (its JVM takes a few seconds to start)."""
    from ope.spark_session import SparkUnavailableError, spark_session

    try:
        session = spark_session("local[2]", app_name="loopbreak-tests")
    except SparkUnavailableError as exc:
        if os.environ.get(REQUIRE_SPARK_ENV):
            raise
        reason = f"Spark engine NOT TESTED: {exc}"
        if not _spark_skipped:
            warnings.warn(reason, pytest.PytestWarning, stacklevel=1)
        _spark_skipped.append(reason)
        pytest.skip(reason)
    yield session
    session.stop()


def _banner(reporter: pytest.TerminalReporter, skipped: list[str], what: str, fix: str) -> None:
    count = sum(what in str(report.longrepr) for report in reporter.stats.get("skipped", []))
    reporter.section(what, sep="!", red=True, bold=True)
    reporter.write_line(skipped[0], red=True, bold=True)
    reporter.write_line(f"{count} test(s) skipped. {fix}", red=True, bold=True)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """A banner that cannot be missed when the PostgreSQL or the Spark cases were skipped."""
    if _spark_skipped:
        _banner(
            terminalreporter, _spark_skipped, "Spark engine NOT TESTED",
            "Install Debian's `openjdk-17-jre-headless` package (`make test` does so as root).",
        )  # fmt: skip
    if not _postgres_skipped:
        return
    skipped = sum(
        "PostgreSQL back end NOT TESTED" in str(report.longrepr)
        for report in terminalreporter.stats.get("skipped", [])
    )
    terminalreporter.section("PostgreSQL back end NOT TESTED", sep="!", red=True, bold=True)
    terminalreporter.write_line(_postgres_skipped[0], red=True, bold=True)
    terminalreporter.write_line(
        f"{skipped} PostgreSQL test(s) skipped. Install Debian's `postgresql` package "
        "(`make test` does so as root) to run them.",
        red=True,
        bold=True,
    )


@pytest.fixture(scope="module")
def one_torch_thread() -> Iterator[None]:
    """Tiny models gain nothing from intra-op threads, and OpenMP's spinning threads slow to a
    crawl when the cores are busy with other work; restore the setting afterwards. Modules that
    train models use it with ``pytestmark = pytest.mark.usefixtures("one_torch_thread")``."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
