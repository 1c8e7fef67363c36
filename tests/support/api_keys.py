"""API keys for tests that start the HTTP service: a key made in the service's log, and the
header that sends it (:mod:`proplog.api_keys`, :mod:`api.auth`)."""

from __future__ import annotations

from typing import Any

from proplog.api_keys import SCOPES, create_key
from proplog.engine import init_db, make_engine

ALL_SCOPES = SCOPES


def bearer(token: str) -> dict[str, str]:
    """The header that sends ``token``."""
    return {"Authorization": f"Bearer {token}"}


def new_token(database_url: str, scopes: tuple[str, ...] = ALL_SCOPES, name: str = "tests") -> str:
    """The token of a new key with ``scopes`` in the log at ``database_url`` (a file or a
    server; the log's tables are created when missing)."""
    engine = make_engine(database_url)
    try:
        init_db(engine)
        return create_key(engine, name, scopes)[1]
    finally:
        engine.dispose()


def authorize(client: Any, scopes: tuple[str, ...] = ALL_SCOPES) -> str:
    """Make a key in the log of the running app behind ``client`` (a started ``TestClient``,
    any database, in-memory SQLite too) and send it with every request from now on; its token."""
    token = create_key(client.app.state.engine, "tests", scopes)[1]
    client.headers.update(bearer(token))
    return token
