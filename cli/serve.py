"""``loopbreak serve``: the decision and event API (``api.app``) under uvicorn."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from cli.common import add_database


def add_parser(sub: Any) -> None:
    serve = sub.add_parser("serve", help="serve the decision and event API")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    add_database(serve, "--db")
    serve.add_argument("--model", help="model file (default: out/model.npz)")
    serve.add_argument("--epsilon", type=float, help="exploration rate (default 0.1)")
    serve.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import uvicorn

    from api.app import create_app
    from api.settings import Settings

    overrides: dict[str, Any] = {}
    if args.db:
        overrides["database_url"] = args.db
    if args.model:
        overrides["model_path"] = Path(args.model)
    if args.epsilon is not None:
        overrides["epsilon"] = args.epsilon
    settings = Settings(**overrides)
    uvicorn.run(create_app(settings), host=args.host, port=args.port, log_level="info")
    return 0
