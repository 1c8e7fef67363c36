"""``loopbreak serve``: the decision and event API (``api.app``) under uvicorn.

The command passes its options to the app through the environment (``LOOPBREAK_DATABASE_URL``,
``LOOPBREAK_MODEL_PATH``, ``LOOPBREAK_EPSILON``) and serves the factory
``api.app:create_app_from_env``, so that with ``--workers N`` every worker process builds its own
app from the same settings: its own engine, batch writer, database threads, hot reload, API key
cache and history cache. The workers share the listening socket (the kernel spreads connections
over them); SQLite writers of several processes take turns (:mod:`proplog.writer_lock`).

Every accepted connection gets ``TCP_NODELAY`` (:mod:`api.protocol`): with ``--workers`` above 1,
responses otherwise waited about 40 ms each for the client's delayed ACK.

On SIGTERM (or Ctrl-C) uvicorn stops accepting, gives the requests in flight
``--graceful-timeout`` seconds (default 3) to finish, then cancels the rest (they are not
answered; nothing is acknowledged before its commit) and runs the app's shutdown, which writes
what the batch writer holds and closes the log.
"""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path
from typing import Any

from cli.common import add_database

logger = logging.getLogger(__name__)

FACTORY = "api.app:create_app_from_env"


def add_parser(sub: Any) -> None:
    serve = sub.add_parser("serve", help="serve the decision and event API")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    add_database(serve, "--db")
    serve.add_argument("--model", help="model file (default: out/model.npz)")
    serve.add_argument("--epsilon", type=float, help="exploration rate (default 0.1)")
    serve.add_argument(
        "--workers",
        type=int,
        default=1,
        help="worker processes, each with its own engine, batch writer and caches (default 1; "
        "the number of cores to use them all)",
    )
    serve.add_argument(
        "--graceful-timeout",
        type=int,
        default=3,
        help="seconds the requests in flight get to finish on SIGTERM before they are cancelled "
        "(default 3)",
    )
    serve.add_argument(
        "--access-log",
        action="store_true",
        help="log one line per request (off by default: a proxy in front usually keeps the "
        "access log, and at hundreds of requests a second the line costs about 5%% of the "
        "worker's CPU)",
    )
    serve.set_defaults(func=run)


def settings_environment(args: argparse.Namespace) -> dict[str, str]:
    """The ``LOOPBREAK_*`` variables that carry the command's options to every worker."""
    env: dict[str, str] = {}
    if args.db:
        env["LOOPBREAK_DATABASE_URL"] = args.db
    if args.model:
        env["LOOPBREAK_MODEL_PATH"] = str(Path(args.model))
    if args.epsilon is not None:
        env["LOOPBREAK_EPSILON"] = repr(float(args.epsilon))
    return env


def run(args: argparse.Namespace) -> int:
    import uvicorn

    from api.protocol import server_stack
    from api.settings import Settings
    from fm_core.serving_threads import torch_thread_environment

    if args.workers < 1:
        raise SystemExit("--workers must be at least 1")
    os.environ.update(settings_environment(args))
    settings = Settings()  # refuse bad settings here, once, rather than in every worker
    os.environ.update(torch_thread_environment(settings.torch_threads))
    uvicorn.run(
        FACTORY,
        factory=True,
        host=args.host,
        port=args.port,
        workers=args.workers,
        **server_stack(),
        log_level="info",
        access_log=args.access_log,
        timeout_graceful_shutdown=max(0, args.graceful_timeout),
    )
    return 0
