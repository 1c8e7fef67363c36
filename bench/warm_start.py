"""Warm-started FM retraining on a grown catalog beside a cold one: validation NDCG@10 by epoch.

The retraining job's ``--warm-start`` case, on the simulated world's plays (``bench.fm_data``'s
``sim`` data, leave-one-out): a *previous* version is trained on the first part of the
histories over a catalog that lacks the newest titles (``--grow`` of them); then the catalog
grows to every title, and the next version is trained on the full training histories twice,
with the same epochs, data and seed: cold (a fresh model) and warm (``fm_core.warm_start``: the
previous weights carried over, new titles initialized from their metadata neighbours). Both keep
the epoch of best validation NDCG@10 and are scored on the test targets.

It reports each run's validation NDCG@10 after every epoch, the epoch at which the warm run first
reaches the cold run's best, and the alignment of each new version's item embeddings to the
previous version's (``fm_core.alignment``): the relative residual after the orthogonal
Procrustes rotation and before it, on the titles both catalogs share.
"""

from __future__ import annotations

import argparse
import logging
import time
from typing import Any

import numpy as np

from bench.fm_data import SequenceData, leave_one_out, simulate_sequences
from bench.fm_scoring import evaluate, fm_scores

logger = logging.getLogger(__name__)

K = 10


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--users", type=int, default=800, help="members of the simulated world")
    parser.add_argument("--items", type=int, default=300, help="titles of the grown catalog")
    parser.add_argument(
        "--grow", type=float, default=0.2, help="share of the newest titles the previous lacks"
    )
    parser.add_argument("--epochs", type=int, default=8, help="epochs of each retraining")
    parser.add_argument("--seed", type=int, default=0)


def _previous_data(data: SequenceData, grow: float) -> SequenceData:
    """The previous version's data: the catalog without the newest ``grow`` of the titles, and
    each training history's first half, on that catalog."""
    from fm_core.types import ItemCatalog

    catalog = data.catalog
    order = np.lexsort((catalog.item_ids, catalog.release_time))
    keep = np.sort(order[: round((1.0 - grow) * catalog.n_items)])
    previous = ItemCatalog(
        item_ids=catalog.item_ids[keep],
        genres=catalog.genres[keep],
        release_time=catalog.release_time[keep],
        tokens=tuple(catalog.tokens[i] for i in keep) if catalog.tokens else (),
        genre_names=catalog.genre_names,
    )
    histories = []
    for history in data.histories:
        known = np.isin(history.item_ids, previous.item_ids)
        known[len(known) // 2 :] = False
        histories.append(_subset(history, known))
    return SequenceData(
        name=f"{data.name}-previous", catalog=previous, histories=tuple(histories),
        contexts=None, timed=data.timed, source=data.source,
    )  # fmt: skip


def _subset(history: Any, keep: np.ndarray) -> Any:
    from fm_core.types import History

    return History(
        item_ids=history.item_ids[keep], times=history.times[keep], kinds=history.kinds[keep],
        values=history.values[keep], sources=history.sources[keep],
    )  # fmt: skip


def _alignment(model: Any, previous: Any) -> dict[str, float]:
    from fm_core.alignment import export_item_embeddings

    reference = export_item_embeddings(previous, previous=None)
    export = export_item_embeddings(model, previous=reference)
    return {
        "residual": export.residual,
        "residual_unaligned": export.residual_unaligned,
        "shared_items": export.n_shared,
    }


def run(*, users: int, items: int, grow: float, epochs: int, seed: int) -> dict[str, Any]:
    from fm_core.model import FMConfig
    from fm_core.train_fm import TrainConfig, train_fm
    from fm_core.warm_start import warm_start_from

    if not 0.0 < grow < 1.0:
        raise ValueError(f"grow must be in (0, 1); got {grow}")
    data = simulate_sequences(n_users=users, n_items=items, seed=seed)
    split = leave_one_out(data)
    train = TrainConfig(epochs=epochs, seed=seed, progress=False, train_top1=False)
    previous_data = _previous_data(data, grow)
    previous = train_fm(
        [(h, None) for h in previous_data.histories if len(h)], previous_data.catalog,
        FMConfig().with_catalog(previous_data.catalog), train,
    ).model  # fmt: skip

    def validate(model: Any) -> float:
        return evaluate(fm_scores(model, data), split.valid, data.catalog.release_time)[f"ndcg@{K}"]

    sequences = [(h, None) for h in split.train]
    last_event = max(float(np.max(h.times)) for h in split.train if len(h))
    runs: dict[str, Any] = {}
    for name in ("cold", "warm"):
        start = time.perf_counter()
        if name == "cold":
            model, cfg = None, FMConfig().with_catalog(data.catalog)
        else:
            model, report = warm_start_from(previous, data.catalog, age_reference=last_event)
            cfg = model.cfg
        result = train_fm(sequences, data.catalog, cfg, train, model=model, validate=validate)
        test = evaluate(fm_scores(result.model, data), split.test, data.catalog.release_time)
        runs[name] = {
            "valid_ndcg_by_epoch": [m.valid for m in result.metrics],
            "best_valid_ndcg": max(m.valid for m in result.metrics),
            "test_ndcg": test[f"ndcg@{K}"],
            "seconds": time.perf_counter() - start,
            "alignment": _alignment(result.model, previous),
        }
        if name == "warm":
            runs[name]["warm_start"] = {"kept": report.n_kept, "added": report.n_added}
    cold_best = runs["cold"]["best_valid_ndcg"]
    reached = [i + 1 for i, v in enumerate(runs["warm"]["valid_ndcg_by_epoch"]) if v >= cold_best]
    return {
        "benchmark": "warm_start",
        "users": users,
        "items": items,
        "grow": grow,
        "epochs": epochs,
        "seed": seed,
        "previous_items": previous_data.catalog.n_items,
        "cold": runs["cold"],
        "warm": runs["warm"],
        "warm_epochs_to_cold_best": reached[0] if reached else None,
        "cold_epochs_to_its_best": int(np.argmax(runs["cold"]["valid_ndcg_by_epoch"])) + 1,
    }


def table(result: dict[str, Any]) -> str:
    lines = [
        f"FM retraining on a grown catalog ({result['previous_items']} -> {result['items']} "
        f"titles, {result['users']} members, {result['epochs']} epochs, seed {result['seed']})",
        f"{'run':<6}{'valid NDCG@10 by epoch':<60}{'best':>8}{'test':>8}{'residual':>10}"
        f"{'unaligned':>11}{'s':>7}",
    ]
    for name in ("cold", "warm"):
        r = result[name]
        by_epoch = " ".join(f"{v:.4f}" for v in r["valid_ndcg_by_epoch"])
        a = r["alignment"]
        lines.append(
            f"{name:<6}{by_epoch:<60}{r['best_valid_ndcg']:>8.4f}{r['test_ndcg']:>8.4f}"
            f"{a['residual']:>10.4f}{a['residual_unaligned']:>11.4f}{r['seconds']:>7.1f}"
        )
    reached = result["warm_epochs_to_cold_best"]
    lines.append(
        f"warm reaches the cold run's best ({result['cold']['best_valid_ndcg']:.4f}, epoch "
        f"{result['cold_epochs_to_its_best']}) "
        + (f"at epoch {reached}" if reached else "in none of its epochs")
        + "; residual: the new item embeddings against the previous version's after the "
        "Procrustes rotation (unaligned: before it)"
    )
    return "\n".join(lines)
