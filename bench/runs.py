"""What the throughput benchmarks share about their runs: refusing options below their minimum,
picking the median of repeated runs, and, for a server they start, a free port and an API key."""

from __future__ import annotations

import socket
from collections.abc import Iterable, Sequence
from typing import Any


def require_at_least(minimums: Iterable[tuple[str, float, float]]) -> None:
    """Raise ValueError naming the first option (name, value, least) whose value is below its
    least."""
    for name, value, least in minimums:
        if value < least:
            raise ValueError(f"{name} must be >= {least}; got {value}")


def median_run(runs: list[dict[str, Any]], key: str = "decisions_per_s") -> dict[str, Any]:
    """A copy of the run of median ``key`` (the lower middle one for an even count)."""
    ordered = sorted(runs, key=lambda r: r[key])
    return dict(ordered[(len(ordered) - 1) // 2])


def free_port() -> int:
    """A TCP port on the loopback interface that nothing listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def new_api_key(database_url: str, scopes: Sequence[str] = ("decide",)) -> str:
    """The token of a new key with ``scopes`` in the log at ``database_url`` (its tables
    created), made before the server under test starts, as an operator would."""
    from proplog.api_keys import create_key
    from proplog.engine import init_db, make_engine

    engine = make_engine(database_url)
    try:
        init_db(engine)
        return create_key(engine, "bench api", scopes)[1]
    finally:
        engine.dispose()
