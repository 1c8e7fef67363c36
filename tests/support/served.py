"""``loopbreak serve`` as a real uvicorn subprocess on loopback, for the tests that need the
whole service: a free port, the process started with its output in a file (a pipe nobody reads
would fill under load and stall the server), and a wait for ``/healthz``. A server that does not
come up is killed before the failure is raised, so none outlives its test."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listened on a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def loopbreak_script() -> Path:
    """The ``loopbreak`` console script of the interpreter running the tests."""
    return Path(sys.executable).with_name("loopbreak")


@dataclass
class Served:
    """A running ``loopbreak serve``: its process, its base URL and the file its output goes to."""

    process: subprocess.Popen[bytes]
    base: str
    output: Path

    def output_text(self) -> str:
        """Everything the server wrote to stdout and stderr so far."""
        return self.output.read_text(errors="replace") if self.output.exists() else ""

    def stop(self) -> None:
        """Ask the server to shut down (SIGTERM), and SIGKILL it if it has not within 10 s."""
        if self.process.poll() is None:
            self.process.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=10)
        self.kill()

    def kill(self) -> None:
        """SIGKILL the server and every process of its session (the workers of ``--workers N``,
        which would outlive a parent killed alone), and reap it."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)


def start_serve(
    model: Path,
    env: dict[str, str],
    output: Path,
    *,
    port: int | None = None,
    timeout_s: float = 30.0,
    extra_args: tuple[str, ...] = (),
) -> Served:
    """Start ``loopbreak serve --model MODEL`` (and ``extra_args``, e.g. ``--workers 2``) on
    127.0.0.1 with ``env`` and wait until ``/healthz`` answers 200; its output goes to
    ``output``. On any failure to come up the process is killed and the assertion names the
    reason, with the server's output."""
    port = free_port() if port is None else port
    command = [str(loopbreak_script()), "serve", "--host", "127.0.0.1", "--port", str(port),
               "--model", str(model), *extra_args]  # fmt: skip
    with output.open("wb") as sink:
        process = subprocess.Popen(  # a session of its own: kill() reaches its workers too
            command, env=env, stdout=sink, stderr=subprocess.STDOUT, start_new_session=True
        )
    served = Served(process=process, base=f"http://127.0.0.1:{port}", output=output)
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                if httpx.get(f"{served.base}/healthz", timeout=1).status_code == 200:
                    return served
            except httpx.TransportError:
                pass
            assert process.poll() is None, served.output_text()
            assert time.monotonic() < deadline, f"server did not start within {timeout_s:g} s"
            time.sleep(0.1)
    except BaseException:
        served.kill()
        raise


def serve_env(database_url: str, **settings: str) -> dict[str, str]:
    """The environment of a server on the log at ``database_url``, with ``LOOPBREAK_<NAME>``
    settings (``reload_seconds="0"`` sets ``LOOPBREAK_RELOAD_SECONDS=0``)."""
    env = {**os.environ, "LOOPBREAK_DATABASE_URL": database_url}
    env.update({f"LOOPBREAK_{name.upper()}": value for name, value in settings.items()})
    return env
