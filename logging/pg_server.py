"""A throwaway PostgreSQL server for the log's tests and benchmarks.

Owns finding the server binaries, running ``initdb`` into a fresh temporary folder, starting
``postgres`` on a free port of 127.0.0.1 (its unix socket inside that folder), creating a database,
and stopping the server and deleting the folder at the end. Nothing here is used when serving:
production points ``LOOPBREAK_DATABASE_URL`` at a managed server.

It lives in ``proplog`` (not in ``tests/``) because both the test suite and
``loopbreak bench log`` start servers the same way, and ``tests/`` is not importable from an
installed package.

PostgreSQL refuses to run as root. When this process is root, the server runs as the unprivileged
system user :data:`SERVER_USER` (created with ``useradd`` when missing), and the data folder is
handed to that user. Otherwise the server runs as the current user.

``durable=False`` turns off ``fsync``, ``synchronous_commit`` and ``full_page_writes``: a crash
could lose the data, which is fine for a test database that is deleted afterwards and makes the
tests fast. Benchmarks of durable writes use ``durable=True`` (the server's defaults).

Binaries are looked for in ``$LOOPBREAK_PG_BIN``, then in ``/usr/lib/postgresql/<version>/bin``
(Debian's ``postgresql`` package; the newest version wins), then on ``PATH``.
"""

from __future__ import annotations

import ctypes
import logging
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import create_engine, text

logger = logging.getLogger(__name__)

PG_BIN_ENV = "LOOPBREAK_PG_BIN"
SERVER_USER = "loopbreak-pg"
DEBIAN_PG_ROOT = Path("/usr/lib/postgresql")
SUPERUSER = "loopbreak"
START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 15.0
FOLDER_PREFIX = "loopbreak-pg-"
STALE_AFTER_S = 6 * 3600.0
_PR_SET_PDEATHSIG = 1
_FAST_SETTINGS: tuple[str, ...] = ("fsync=off", "synchronous_commit=off", "full_page_writes=off")


class PostgresUnavailableError(RuntimeError):
    """No PostgreSQL server binary was found, or the server could not be started."""


def find_bin_dir() -> Path | None:
    """The folder holding ``initdb`` and ``postgres``, or ``None`` when there is none."""
    given = os.environ.get(PG_BIN_ENV)
    if given:
        return Path(given) if (Path(given) / "postgres").is_file() else None
    if DEBIAN_PG_ROOT.is_dir():
        versions = sorted(
            (p for p in DEBIAN_PG_ROOT.iterdir() if (p / "bin" / "postgres").is_file()),
            key=lambda p: int(p.name) if p.name.isdigit() else -1,
        )
        if versions:
            return versions[-1] / "bin"
    found = shutil.which("postgres")
    if found and shutil.which("initdb"):
        return Path(found).parent
    return None


def _server_user() -> str | None:
    """The user to run the server as: ``None`` (this process's user) unless we are root."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam(SERVER_USER)
        return SERVER_USER
    except KeyError:
        pass
    useradd = ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin"]
    done = subprocess.run([*useradd, SERVER_USER], capture_output=True, text=True, check=False)
    # Exit code 9: another process created the user meanwhile.
    if done.returncode not in (0, 9):
        raise PostgresUnavailableError(
            f"could not create the system user {SERVER_USER!r} that runs PostgreSQL "
            f"(it refuses to run as root): {done.stderr.strip()}"
        )
    logger.info("created the system user %s to run PostgreSQL", SERVER_USER)
    return SERVER_USER


def _is_running(pid_file: Path) -> bool:
    try:
        pid = int(pid_file.read_text().split()[0])
        os.kill(pid, 0)
    except (OSError, ValueError, IndexError):
        return False
    return True


def _remove_stale_folders(parent: Path) -> None:
    """Delete data folders of servers whose process was killed before it could clean up."""
    cutoff = time.time() - STALE_AFTER_S
    for folder in parent.glob(f"{FOLDER_PREFIX}*"):
        try:
            if folder.stat().st_mtime > cutoff or _is_running(folder / "data" / "postmaster.pid"):
                continue
        except OSError:
            continue
        shutil.rmtree(folder, ignore_errors=True)
        logger.info("removed the stale PostgreSQL data folder %s", folder)


def _identifier(name: str) -> str:
    """``name`` quoted as a database name; only letters, digits and ``_`` are accepted."""
    if not name or not name.replace("_", "").isalnum() or not name.isascii() or len(name) > 63:
        raise ValueError(f"database name must be 1..63 ASCII letters, digits or _; got {name!r}")
    return f'"{name}"'


def _admin_execute(port: int, statement: str) -> None:
    """Run one statement outside a transaction in the server's ``postgres`` database."""
    admin = create_engine(
        f"postgresql+psycopg://{SUPERUSER}@127.0.0.1:{port}/postgres", isolation_level="AUTOCOMMIT"
    )
    try:
        with admin.connect() as conn:
            conn.execute(text(statement))
    finally:
        admin.dispose()


def _stop_with_parent() -> None:
    """In the server's process before exec: get SIGTERM when the starting thread dies (Linux).

    A test run or benchmark killed without cleanup then leaves no orphaned server behind.
    """
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    except (OSError, AttributeError):
        pass


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class PostgresServer:
    """A running throwaway server; :attr:`url` is a SQLAlchemy URL of its database."""

    bin_dir: Path
    root: Path
    port: int
    database: str
    process: subprocess.Popen[bytes]
    log_path: Path
    owner: str | None = None
    stopped: bool = field(default=False)

    @property
    def url(self) -> str:
        """The SQLAlchemy URL of :attr:`database`."""
        return self.url_of(self.database)

    def url_of(self, database: str) -> str:
        """The SQLAlchemy URL of another database on this server."""
        return f"postgresql+psycopg://{SUPERUSER}@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str, *, template: str | None = None) -> str:
        """Create database ``name`` (a copy of ``template`` when given) and return its URL."""
        statement = f"CREATE DATABASE {_identifier(name)}"
        if template is not None:
            statement += f" TEMPLATE {_identifier(template)}"
        _admin_execute(self.port, statement)
        return self.url_of(name)

    def drop_database(self, name: str) -> None:
        """Drop database ``name``, closing any connection still open to it."""
        _admin_execute(self.port, f"DROP DATABASE IF EXISTS {_identifier(name)} WITH (FORCE)")

    def server_log(self) -> str:
        """The server's own log (startup errors land here)."""
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def stop(self) -> None:
        """Fast shutdown (SIGINT: roll back open sessions), then delete the data folder."""
        if self.stopped:
            return
        self.stopped = True
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)  # PostgreSQL's "fast" shutdown
            try:
                self.process.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                logger.warning("PostgreSQL on port %d did not stop in time; killing it", self.port)
                self.process.kill()
                self.process.wait()
        shutil.rmtree(self.root, ignore_errors=True)
        logger.info("stopped the throwaway PostgreSQL server on port %d", self.port)


def _run(args: list[str], *, user: str | None, what: str) -> None:
    done = subprocess.run(args, user=user, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise PostgresUnavailableError(f"{what} failed ({done.returncode}): {done.stderr.strip()}")


def _wait_until_ready(server: PostgresServer) -> None:
    """Poll until the server accepts TCP connections; fail early if it exited."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise PostgresUnavailableError(
                f"PostgreSQL exited with code {server.process.returncode} while starting:\n"
                + server.server_log()[-2000:]
            )
        try:
            with socket.create_connection(("127.0.0.1", server.port), timeout=0.5):
                pass
        except OSError:
            time.sleep(0.05)
            continue
        engine = create_engine(
            f"postgresql+psycopg://{SUPERUSER}@127.0.0.1:{server.port}/postgres",
            isolation_level="AUTOCOMMIT",
        )
        try:
            with engine.connect() as conn:
                conn.execute(text("SELECT 1"))
            return
        except Exception:  # the server is still starting ("the database system is starting up")
            time.sleep(0.05)
        finally:
            engine.dispose()
    raise PostgresUnavailableError(
        f"PostgreSQL did not accept connections within {START_TIMEOUT_S:.0f} s:\n"
        + server.server_log()[-2000:]
    )


def start_server(*, database: str = "loopbreak", durable: bool = False) -> PostgresServer:
    """initdb into a new temporary folder, start ``postgres`` and create ``database``.

    Raises :class:`PostgresUnavailableError` when no binary is found or the server fails.
    """
    bin_dir = find_bin_dir()
    if bin_dir is None:
        raise PostgresUnavailableError(
            "no PostgreSQL server binary (initdb, postgres) found; install Debian's "
            f"`postgresql` package or set {PG_BIN_ENV} to the folder holding them"
        )
    owner = _server_user()
    _remove_stale_folders(Path(tempfile.gettempdir()))
    root = Path(tempfile.mkdtemp(prefix=FOLDER_PREFIX))
    data, sockets, log_path = root / "data", root / "sockets", root / "server.log"
    sockets.mkdir()
    if owner is not None:
        for path in (root, sockets):
            shutil.chown(path, user=owner, group=pwd.getpwnam(owner).pw_gid)
    try:
        _run(
            [
                str(bin_dir / "initdb"),
                "--pgdata",
                str(data),
                "--username",
                SUPERUSER,
                "--auth",
                "trust",
                "--encoding",
                "UTF8",
                "--no-locale",
                "--no-sync",
            ],
            user=owner,
            what="initdb",
        )
    except BaseException:
        shutil.rmtree(root, ignore_errors=True)
        raise
    settings = ["listen_addresses=127.0.0.1", "shared_buffers=32MB", "max_connections=60"]
    if not durable:
        settings.extend(_FAST_SETTINGS)
    last_error: PostgresUnavailableError | None = None
    for _attempt in range(3):  # the free port may be taken between choosing and binding it
        port = _free_port()
        args = [str(bin_dir / "postgres"), "-D", str(data), "-p", str(port), "-k", str(sockets)]
        for setting in settings:
            args.extend(["-c", setting])
        with open(log_path, "ab") as log_file:
            process = subprocess.Popen(
                args,
                user=owner,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_stop_with_parent if sys.platform == "linux" else None,
            )
        server = PostgresServer(
            bin_dir=bin_dir,
            root=root,
            port=port,
            database=database,
            process=process,
            log_path=log_path,
            owner=owner,
        )
        try:
            _wait_until_ready(server)
        except PostgresUnavailableError as exc:
            last_error = exc
            if process.poll() is None:
                process.kill()
                process.wait()
            continue
        break
    else:
        shutil.rmtree(root, ignore_errors=True)
        assert last_error is not None
        raise last_error
    try:
        server.create_database(database)
    except BaseException:
        server.stop()
        raise
    logger.info(
        "started a throwaway PostgreSQL server (%s, durable=%s) on 127.0.0.1:%d in %s",
        bin_dir,
        durable,
        port,
        root,
    )
    return server


@contextmanager
def running_server(*, database: str = "loopbreak", durable: bool = False) -> Iterator[str]:
    """Start a throwaway server, yield its database URL, and stop it and delete its data."""
    server = start_server(database=database, durable=durable)
    try:
        yield server.url
    finally:
        server.stop()
