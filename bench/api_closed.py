"""``loopbreak bench api --mode closed``: the earlier closed-loop form of the API bench, kept for
comparison with its past figures: durable decisions per second through the HTTP service, with
group commit and without. (The default, open-loop form is :mod:`bench.api`.)

The service runs as it is deployed: ``uvicorn`` serving ``api.app.create_app`` in a process of
its own, on SQLite in a temporary folder (WAL, ``synchronous=FULL``), with the default serving
policy (ε-greedy over a pool of 30) and a popularity-affinity scorer over a simulated catalog
of ``items`` titles. The bench process is the client: ``concurrency`` HTTP/1.1 connections
(httpx), each posting ``POST /v1/decisions`` for K = ``k`` items and waiting for the answer
before its next request, until ``requests`` decisions are answered, each sending the API key
(scope ``decide``) the bench makes in the fresh log before the server starts, as a client does.
A decision is answered only once its record is on disk, so the rate is of durable decisions.

Two servers, side by side, alternating ``repeats`` times, a fresh database each run:

- **group commit** (``Settings.group_commit``, the default): the requests in flight hand their
  records to one batch writer per worker, which commits them together;
- **one transaction per request** (``group_commit=False``): each request commits on its own.

The medians of the runs are reported (every run's figures are in the JSON), with the ratio of
the two rates. Latency is each request's wall time at the client, p50 and p99. Afterwards the
bench checks that the database holds exactly one decision per answer and ``k`` slate items for
each. The client and the server share the machine's cores: on a 2-core machine the client's
share (about a fifth) is taken from the server, so these are floors for a dedicated server.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.runs import free_port, median_run, new_api_key, require_at_least

logger = logging.getLogger(__name__)

WAYS = ("group_commit", "per_request")
WARMUP = 50  # requests before the clock starts: connections, caches, the first commits


def _serve(database_url: str, group_commit: bool, port: int, items: int, k: int) -> None:
    """The server process: the app on ``database_url``, until terminated."""
    import uvicorn

    from api.app import create_app
    from api.settings import Settings
    from fm_core import PopularityAffinityScorer
    from loop.sim_bridge import catalog_from_world
    from sim.config import WorldConfig
    from sim.world import World

    catalog = catalog_from_world(World(WorldConfig(n_items=items, seed=0)))
    settings = Settings(database_url=database_url, group_commit=group_commit, max_k=k)
    app = create_app(settings, scorer=PopularityAffinityScorer(catalog, model_version="bench"))
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


async def _wait_until_up(base: str, server: multiprocessing.process.BaseProcess) -> None:
    import httpx

    async with httpx.AsyncClient(base_url=base) as client:
        for _ in range(600):
            if not server.is_alive():
                raise RuntimeError(f"the API server exited with code {server.exitcode}")
            try:
                if (await client.get("/healthz")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.05)
    raise RuntimeError("the API server did not answer /healthz within 30 s")


async def _drive(
    base: str, *, token: str, requests: int, concurrency: int, k: int
) -> dict[str, Any]:
    """``requests`` decisions over ``concurrency`` connections, after ``WARMUP`` untimed ones."""
    import httpx

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    latencies: list[float] = []
    failures: list[str] = []
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(
        base_url=base, limits=limits, timeout=60.0, headers=headers
    ) as client:

        async def worker(first: int, count: int, timed: bool) -> None:
            for i in range(first, first + count):
                body = {"user_id": f"u{i % 1000}", "surface": "home", "k": k,
                        "context": {"device": "tv", "country": "US"}}  # fmt: skip
                start = time.perf_counter()
                response = await client.post("/v1/decisions", json=body)
                if response.status_code != 201:
                    failures.append(f"{response.status_code}: {response.text[:200]}")
                elif timed:
                    latencies.append(time.perf_counter() - start)

        async def wave(total: int, offset: int, timed: bool) -> float:
            shares = [total // concurrency + (c < total % concurrency) for c in range(concurrency)]
            starts = np.concatenate([[0], np.cumsum(shares)[:-1]]) + offset
            began = time.perf_counter()
            await asyncio.gather(
                *(worker(int(s), n, timed) for s, n in zip(starts, shares, strict=True) if n)
            )
            return time.perf_counter() - began

        await wave(WARMUP, 0, timed=False)
        elapsed = await wave(requests, WARMUP, timed=True)
    if failures:
        raise RuntimeError(f"{len(failures)} decisions failed; the first: {failures[0]}")
    ms = np.array(latencies) * 1000.0
    return {
        "decisions_per_s": requests / elapsed,
        "p50_ms": float(np.median(ms)),
        "p99_ms": float(np.quantile(ms, 0.99)),
        "seconds": elapsed,
    }


def _check_stored(database_url: str, decisions: int, k: int) -> None:
    from sqlalchemy import create_engine, text

    engine = create_engine(database_url)
    try:
        with engine.connect() as connection:
            stored = connection.execute(text("SELECT COUNT(*) FROM decision")).scalar_one()
            items = connection.execute(text("SELECT COUNT(*) FROM slate_item")).scalar_one()
    finally:
        engine.dispose()
    if stored != decisions or items != decisions * k:
        raise RuntimeError(
            f"the log holds {stored} decisions and {items} slate items; the service answered "
            f"{decisions} decisions of {k} items"
        )


def _one_run(way: str, options: dict[str, Any]) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="loopbreak-bench-api-") as folder:
        url = f"sqlite:///{Path(folder) / 'api.db'}"
        token = new_api_key(url)
        port = free_port()
        context = multiprocessing.get_context("spawn")
        server = context.Process(
            target=_serve,
            args=(url, way == "group_commit", port, options["items"], options["k"]),
            daemon=True,
        )
        server.start()
        try:
            base = f"http://127.0.0.1:{port}"
            asyncio.run(_wait_until_up(base, server))
            result = asyncio.run(
                _drive(
                    base,
                    token=token,
                    requests=options["requests"],
                    concurrency=options["concurrency"],
                    k=options["k"],
                )
            )
        finally:
            server.terminate()
            server.join(timeout=30)
        _check_stored(url, WARMUP + options["requests"], options["k"])
    logger.info("%s: %.0f decisions/s", way, result["decisions_per_s"])
    return result


def run(
    *,
    requests: int = 3000,
    concurrency: int = 32,
    k: int = 20,
    items: int = 1000,
    repeats: int = 3,
) -> dict[str, Any]:
    require_at_least((("requests", requests, 1), ("concurrency", concurrency, 1), ("k", k, 1),
                      ("repeats", repeats, 1), ("items", items, k)))  # fmt: skip
    options = {"requests": requests, "concurrency": concurrency, "k": k, "items": items}
    runs: dict[str, list[dict[str, Any]]] = {way: [] for way in WAYS}
    for _ in range(repeats):
        for way in WAYS:
            runs[way].append(_one_run(way, options))
    out: dict[str, Any] = {**options, "repeats": repeats, "sqlite": {}}
    for way in WAYS:
        out["sqlite"][way] = {**median_run(runs[way]), "runs": runs[way]}
    out["sqlite"]["ratio"] = (
        out["sqlite"]["group_commit"]["decisions_per_s"]
        / out["sqlite"]["per_request"]["decisions_per_s"]
    )
    return out


def table(result: dict[str, Any]) -> str:
    lines = [
        f"POST /v1/decisions, K={result['k']} of {result['items']}, {result['concurrency']} in "
        f"flight, {result['requests']} per run, median of {result['repeats']} (SQLite, durable)",
        f"{'way':<28}{'decisions/s':>12}{'p50 ms':>9}{'p99 ms':>9}",
    ]
    sqlite = result["sqlite"]
    for way, label in zip(WAYS, ("group commit", "one transaction per request"), strict=True):
        r = sqlite[way]
        lines.append(
            f"{label:<28}{r['decisions_per_s']:>12.0f}{r['p50_ms']:>9.1f}{r['p99_ms']:>9.1f}"
        )
    lines.append(f"group commit / per request: {sqlite['ratio']:.2f}×")
    return "\n".join(lines)
