"""One ranker for every surface against a specialist per surface, on the world's truth.

As Netflix's UniCoRn: one ranker for home, search and "more like this", the surface a feature,
against the same ranker trained on one surface at a time. For each seed, in one run:

1. **log**: a simulated world (``--items`` titles, ``--users`` members) is served
   ``--decisions`` requests per surface over ``--days`` days through the decision service, by
   the popularity-and-genre baseline (a search in BM25 order, ``loop.lexical_scorer``, as a
   search engine served it) with ε-greedy exploration (``--epsilon``), into an in-memory log
   with exact propensities (``loop.surface_log``). Search members type queries from an intent
   title (exact, partial or misspelled); the logging candidates of a search are the query's
   best ``--log-pool`` lexical matches, of a title page and home every title;
2. **fit**: one FM on the log's histories, then the unified ranker on every surface's
   impressions and a specialist per surface on its own, same initial weights, schedule and
   propensity weights, each calibrated per surface (``fm_core.ranker_surfaces``);
3. **measure**: ``--eval`` fresh requests per surface after the log, candidates from the
   decision side's retrieval with the FM (``loop.retrieval``: a search's lexical matches and
   the FM's top, a title's embedding neighbours, ``--cap`` at most; home: every title), ranked
   by each model; against the world's truth: NDCG@10 (true expected rewards as gains), recall of
   the true best title (over every available title) in the top 10, and the calibration error of
   the predicted P(play) against the true probability. Search: the searched title in the top 3,
   by query kind, for each model and for the lexical index alone (BM25 order).

Differences (unified − specialist) are paired by seed, with a Student t interval over seeds.
The table also shows what was logged per surface: decisions, slate plays, and the propensities'
range (all exact), which is what OPE and the loop study read per surface.
"""

from __future__ import annotations

import argparse
import logging
import time
from typing import Any

import numpy as np

from bench.surfaces_eval import calibration_error, ndcg_at, paired_interval, ranking

logger = logging.getLogger(__name__)

SURFACES = ("home", "search", "title")
METRICS = ("ndcg10", "recall_best10", "calibration_error")
QUERY_KINDS = ("exact", "partial", "misspelled")
K = 10


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--seeds", type=int, default=3, help="worlds (seeds seed..seed+n-1)")
    parser.add_argument("--seed", type=int, default=0, help="the first world's seed")
    parser.add_argument("--items", type=int, default=600, help="titles of each world")
    parser.add_argument("--users", type=int, default=400, help="members of each world")
    parser.add_argument("--decisions", type=int, default=1200, help="logged decisions per surface")
    parser.add_argument("--days", type=float, default=6.0, help="days the log spans")
    parser.add_argument("--eval", type=int, default=200, help="measured requests per surface")
    parser.add_argument("--epsilon", type=float, default=0.5, help="the logging policy's ε")
    parser.add_argument("--log-pool", type=int, default=30, help="logged search candidates")
    parser.add_argument("--cap", type=int, default=100, help="measured search/title candidates")
    parser.add_argument("--fm-epochs", type=int, default=4, help="epochs of the FM")
    parser.add_argument("--epochs", type=int, default=4, help="epochs of each ranker")


def _check(**values: float) -> None:
    for name, value in values.items():
        if name == "epsilon":
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"epsilon must be in [0, 1]; got {value}")
        elif value < 1:
            raise ValueError(f"{name.replace('_', '-')} must be >= 1; got {value}")


def _log(
    world: Any,
    *,
    decisions: int,
    days: float,
    epsilon: float,
    log_pool: int,
    rng: np.random.Generator,
) -> tuple[Any, dict[str, Any]]:
    """Serve the log phase into an in-memory store; return its engine and what it logged."""
    from explore import EpsilonGreedySlate
    from fm_core import PopularityAffinityScorer
    from loop.lexical_scorer import LexicalFirstScorer
    from loop.retrieval import RetrievalConfig
    from loop.service import DecisionService
    from loop.sim_bridge import catalog_from_world
    from loop.surface_log import serve_surfaces
    from proplog.engine import init_db, make_engine

    requests = []
    for surface in SURFACES:
        requests += world.sample_surface_requests(
            decisions, start=0.0, end=days, rng=rng, surface=surface
        )
    requests.sort(key=lambda r: (r.t, r.surface))
    engine = make_engine("sqlite://")
    init_db(engine)
    service = DecisionService(
        scorer=LexicalFirstScorer(
            PopularityAffinityScorer(catalog_from_world(world), model_version="logging")
        ),
        policy=EpsilonGreedySlate(epsilon=epsilon),
    )
    served = serve_surfaces(
        world,
        engine,
        requests,
        service=service,
        k=K,
        rng=rng,
        retrieval=RetrievalConfig(search_cap=log_pool, lexical_share=1.0),
    )
    return engine, {"decisions": dict(served.decisions), "plays": dict(served.plays)}


def _logged_propensities(window: Any) -> dict[str, dict[str, Any]]:
    """Per surface: decisions, slate positions, explored positions, and the propensities'
    range and exactness, from the log as OPE reads it."""
    surface_of = dict(
        zip(window.decisions["decision_id"], window.decisions["surface"], strict=True)
    )
    slates = window.slates.assign(surface=window.slates["decision_id"].map(surface_of))
    out = {}
    for surface, rows in slates.groupby("surface"):
        p = rows["propensity"].to_numpy(dtype=np.float64)
        out[str(surface)] = {
            "decisions": int(rows["decision_id"].nunique()),
            "positions": len(rows),
            "explored": int(rows["explored"].sum()),
            "played": int((rows["played"] > 0).sum()),
            "propensity_min": float(np.nanmin(p)),
            "propensity_max": float(np.nanmax(p)),
            "propensities_exact": bool(np.all(np.isfinite(p) & (p > 0) & (p <= 1))),
        }
    return out


def _fit(window: Any, catalog: Any, *, fm_epochs: int, epochs: int, seed: int) -> Any:
    from fm_core.fm_scorer_fit import FMScorerConfig
    from fm_core.model import FMConfig
    from fm_core.ranker import RankerTrainConfig
    from fm_core.ranker_surfaces import fit_unified_and_specialists
    from fm_core.train_fm import TrainConfig
    from loop.windows import training_impressions

    config = FMScorerConfig(
        fm=FMConfig(d_model=32, n_layers=1, n_heads=2, max_len=64, dropout=0.1),
        fm_train=TrainConfig(epochs=fm_epochs, batch_size=64, lr=3e-3, seed=seed, progress=False),
        ranker_train=RankerTrainConfig(epochs=epochs, seed=seed, progress=False),
    )
    return fit_unified_and_specialists(
        training_impressions(window), catalog, config, surfaces=SURFACES
    )


def _measure(
    world: Any,
    models: Any,
    window: Any,
    *,
    surface: str,
    n: int,
    start: float,
    cap: int,
    rng: np.random.Generator,
) -> dict[str, Any]:
    """The measures of the unified model and the surface's specialist on ``n`` fresh requests."""
    from loop.context import HistoryIndex
    from loop.retrieval import RetrievalConfig, candidates_for_request, indexes_of
    from loop.sim_bridge import request_context
    from sim.clock import to_datetime

    histories = HistoryIndex(window.events)
    retrieval = RetrievalConfig(search_cap=cap, title_cap=cap)
    unified, specialist = models.unified, models.specialists[surface]
    requests = world.sample_surface_requests(
        n, start=start, end=start + 1.0, rng=rng, surface=surface
    )
    scored, candidates, truths, bests = [], [], [], []
    for request in requests:
        context = request_context(request)
        when = to_datetime(request.t)
        history = histories.before(request.user_id, when.timestamp())
        scored.append(context.score_request(when=when, history=history))
        found = candidates_for_request(
            unified, context, None, when, history=history, config=retrieval
        )
        candidates.append(found)
        truths.append(world.item_rewards(request, found))
        available = world.available(request.t)
        if request.source_item is not None:
            available = available[available != request.source_item]
        bests.append(int(world.oracle_slate(request, 1, candidates=available)[0]))
    out: dict[str, Any] = {
        "requests": len(requests),
        "candidates_mean": float(np.mean([c.size for c in candidates])),
        "best_retrieved": float(np.mean([b in c for b, c in zip(bests, candidates, strict=True)])),
    }
    lexical = indexes_of(unified).lexical(unified) if surface == "search" else None
    for name, model in (("unified", unified), ("specialist", specialist)):
        scores = model.score(scored, candidates)
        ranked = [ranking(s, c) for s, c in zip(scores, candidates, strict=True)]
        out[name] = {
            "ndcg10": float(
                np.mean([ndcg_at(s, t, K) for s, t in zip(scores, truths, strict=True)])
            ),
            "recall_best10": float(
                np.mean([b in r[:K] for b, r in zip(bests, ranked, strict=True)])
            ),
            "calibration_error": calibration_error(np.concatenate(scores), np.concatenate(truths)),
        }
        if surface == "search":
            out[name]["top3"] = _top3_by_kind(requests, ranked)
    if lexical is not None:
        bm25 = [
            lexical.search(r.query, time=to_datetime(r.t).timestamp(), limit=3) for r in requests
        ]
        out["bm25"] = {"top3": _top3_by_kind(requests, bm25)}
    return out


def _top3_by_kind(requests: list[Any], ranked: list[np.ndarray]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for kind in QUERY_KINDS:
        hits = [
            r.intent in order[:3]
            for r, order in zip(requests, ranked, strict=True)
            if r.query_kind == kind
        ]
        out[kind] = {"n": len(hits), "rate": float(np.mean(hits)) if hits else None}
    return out


def _one_seed(seed: int, options: dict[str, Any]) -> dict[str, Any]:
    from loop.sim_bridge import catalog_from_world
    from loop.windows import read_window
    from sim import World, WorldConfig

    started = time.perf_counter()
    world = World(WorldConfig(seed=seed, n_items=options["items"], n_users=options["users"]))
    rng = np.random.default_rng(seed)
    engine, served = _log(
        world,
        decisions=options["decisions"],
        days=options["days"],
        epsilon=options["epsilon"],
        log_pool=options["log_pool"],
        rng=rng,
    )
    window = read_window(engine)
    engine.dispose()
    logged_at = time.perf_counter()
    models = _fit(
        window,
        catalog_from_world(world),
        fm_epochs=options["fm_epochs"],
        epochs=options["epochs"],
        seed=seed,
    )
    fitted_at = time.perf_counter()
    measured = {
        surface: _measure(
            world,
            models,
            window,
            surface=surface,
            n=options["eval"],
            start=options["days"],
            cap=options["cap"],
            rng=np.random.default_rng([seed, j]),
        )
        for j, surface in enumerate(SURFACES)
    }
    logger.info("seed %d measured in %.1f s", seed, time.perf_counter() - started)
    return {
        "seed": seed,
        "served": served,
        "logged": _logged_propensities(window),
        "held_out": {name: report.by_surface for name, report in models.reports.items()},
        "surfaces": measured,
        "seconds": {
            "log": logged_at - started,
            "fit": fitted_at - logged_at,
            "measure": time.perf_counter() - fitted_at,
        },
    }


def _summary(seeds: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for surface in SURFACES:
        rows = [s["surfaces"][surface] for s in seeds]
        metrics = {}
        for metric in METRICS:
            unified = [r["unified"][metric] for r in rows]
            specialist = [r["specialist"][metric] for r in rows]
            metrics[metric] = {
                "unified": float(np.mean(unified)),
                "specialist": float(np.mean(specialist)),
                "ratio": float(np.mean(unified) / np.mean(specialist))
                if np.mean(specialist) > 0
                else None,
                "difference": paired_interval(
                    [u - s for u, s in zip(unified, specialist, strict=True)]
                ),
            }
        out[surface] = {
            "metrics": metrics,
            "best_retrieved": float(np.mean([r["best_retrieved"] for r in rows])),
            "candidates_mean": float(np.mean([r["candidates_mean"] for r in rows])),
        }
        if surface == "search":
            out[surface]["top3"] = {
                name: {
                    kind: _pooled_rate([r[name]["top3"][kind] for r in rows])
                    for kind in QUERY_KINDS
                }
                for name in ("unified", "specialist", "bm25")
            }
    return out


def _pooled_rate(cells: list[dict[str, Any]]) -> dict[str, Any]:
    n = sum(c["n"] for c in cells)
    hits = sum(c["n"] * c["rate"] for c in cells if c["rate"] is not None)
    return {"n": n, "rate": hits / n if n else None}


def run(
    *,
    seeds: int,
    seed: int,
    items: int,
    users: int,
    decisions: int,
    days: float,
    eval: int,
    epsilon: float,
    log_pool: int,
    cap: int,
    fm_epochs: int,
    epochs: int,
) -> dict[str, Any]:
    _check(
        seeds=seeds,
        items=items,
        users=users,
        decisions=decisions,
        eval=eval,
        log_pool=log_pool,
        cap=cap,
        fm_epochs=fm_epochs,
        epochs=epochs,
        epsilon=epsilon,
    )
    if days <= 0:
        raise ValueError(f"days must be > 0; got {days}")
    options = {
        "items": items,
        "users": users,
        "decisions": decisions,
        "days": days,
        "eval": eval,
        "epsilon": epsilon,
        "log_pool": log_pool,
        "cap": cap,
        "fm_epochs": fm_epochs,
        "epochs": epochs,
    }
    per_seed = [_one_seed(seed + j, options) for j in range(seeds)]
    return {
        "benchmark": "surfaces",
        "options": {"seeds": seeds, "seed": seed, **options},
        "summary": _summary(per_seed),
        "per_seed": per_seed,
    }


def _cell(value: float | None, digits: int = 4) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def table(result: dict[str, Any]) -> str:
    o = result["options"]
    lines = [
        f"One ranker for every surface vs a specialist per surface ({o['seeds']} seeds from "
        f"{o['seed']}, {o['items']} titles, {o['users']} members, {o['decisions']} logged and "
        f"{o['eval']} measured requests per surface), against the world's truth",
        f"{'surface':<8}{'measure':<19}{'unified':>9}{'special.':>9}{'ratio':>7}"
        f"{'unified - specialist [95% t interval]':>42}",
    ]
    for surface in SURFACES:
        s = result["summary"][surface]
        for metric in METRICS:
            m = s["metrics"][metric]
            d = m["difference"]
            lines.append(
                f"{surface:<8}{metric:<19}{m['unified']:>9.4f}{m['specialist']:>9.4f}"
                f"{_cell(m['ratio'], 3):>7}{d['mean']:>+16.4f} [{_cell(d['lo'])}, {_cell(d['hi'])}]"
            )
        lines.append(
            f"{surface:<8}{'best retrieved':<19}{s['best_retrieved']:>9.4f}  "
            f"(candidates {s['candidates_mean']:.0f} on average, shared by both models)"
        )
    top3 = result["summary"]["search"]["top3"]
    lines.append("search: the searched title in the top 3, by query kind (requests pooled)")
    for name in ("unified", "specialist", "bm25"):
        cells = "  ".join(
            f"{kind} {_cell(top3[name][kind]['rate'], 3)} of {top3[name][kind]['n']}"
            for kind in QUERY_KINDS
        )
        lines.append(f"  {name:<11}{cells}")
    lines.append("logged per surface (first seed): decisions, explored positions, propensities")
    for surface, row in result["per_seed"][0]["logged"].items():
        lines.append(
            f"  {surface:<8}{row['decisions']:>6} decisions {row['played']:>5} plays "
            f"{row['explored']:>6} explored positions, propensity in "
            f"[{row['propensity_min']:.4f}, {row['propensity_max']:.4f}], "
            f"exact: {row['propensities_exact']}"
        )
    return "\n".join(lines)
