"""``loopbreak bench fm``: the foundation model's next-item quality against EASE and popularity.

On one dataset (``--data ml-100k|beauty|sim``, see ``bench.fm_data``), in one process:

1. the leave-one-out split (test = each user's last event, validation = the one before);
2. **popularity** (training interaction counts) and **EASE** (``bench.ease``; λ tuned on the
   validation targets, large catalogs restricted to their most popular items);
3. the **FM** (``fm_core``) trained on the training events with full softmax (or sampled
   softmax with the log-Q correction, ``--sampled N``), the learning rate per dataset (warmed
   up then on a cosine, or constant), the epoch with the best validation NDCG@10 kept (early
   stop after ``patience``; validated without dropout, and on beauty as the moving average of
   its weights); on ``sim`` also the ablation without the continuous time
   features (``fm_no_time``). The sim benchmark world is one where time of day and device
   matter: its genre × daypart and genre × device effects at twice the world's default
   (``--sim-daypart``, ``--sim-device``);
4. HR@10 and NDCG@10 of every model on the test targets, each ranked against the full
   catalog (items released by the target's time) with the user's seen items removed and ties
   in random order (``fm_core.fm_eval.ranking_metrics``);
5. the serving latency of one request: tokenize and encode a user of up to 200 events (capped
   at the model's context, which the table states) and score 1,000 candidates (the whole
   catalog when it is smaller), with the item table precomputed as a service caches it;
6. with ``--refit``, the same models retrained on every event before the test target with the
   settings chosen on validation (``bench.fm_refit``), reported beside the rows above.
7. with ``--ensemble N``, N − 1 more FMs of the same preset from seeds seed + 1, ..., each
   with its own epoch chosen on validation, and the row ``fm_ensemble``: the N FMs ranking by
   their mean log-probability. The ``fm`` row stays the single model's.
8. with ``--distill``, one more FM of the same preset and size (seed seed + N) taught by those
   N FMs (``fm_core.model.Distillation``: its next-item loss also learns their ensemble's
   softmax over the same sampled candidates, weight ``--distill-weight``), its epoch chosen on
   validation as the others': the row ``fm_distilled``, one model that serves at one FM's cost.

The device is chosen automatically (bf16 autocast on CUDA). Sources of the data and of the
published anchors: ``../shared/data/README.md``.
"""

from __future__ import annotations

import argparse
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from bench.fm_data import DATASETS, LeaveOneOut, Queries, SequenceData, leave_one_out, load_dataset
from bench.fm_queries import QueryTokens
from bench.fm_scoring import (
    K,
    ease_scores,
    eval_chunk,
    evaluate,
    fm_scores,
    mean_log_probability,
    popularity_scores,
)
from bench.timing import sample_microseconds, summary

if TYPE_CHECKING:
    import torch

    from fm_core.model import Distillation, FMConfig, FoundationModel
    from fm_core.train_fm import TrainConfig

logger = logging.getLogger(__name__)

LATENCY_EVENTS = 200
LATENCY_CANDIDATES = 1000
SERVING_BATCH = 64  # requests scored in one forward pass for the batch throughput
BATCH_REPEATS = 30
EASE_LAMBDAS = (10.0, 30.0, 100.0, 300.0, 1000.0, 3000.0)
# The sim benchmark world: one where time of day and device matter, i.e. the world's genre ×
# daypart and genre × device effects at twice their default strength (kids' titles +2.4 logits
# in the afternoon, horror +1.8 at night, kids +1.6 on tablets...; ``sim.effects``), and enough
# users for a deep model to learn item embeddings.
SIM_USERS = 5000
EVAL_USERS = 10_000  # validation users sampled for model selection (all of them when fewer)
DISTILL_WEIGHT = 0.5  # the teachers' share of the distilled FM's next-item loss
SIM_CONTEXT_STRENGTH = 2.0


@dataclass(frozen=True)
class Preset:
    """The FM's shape and training for one dataset."""

    max_len: int
    d_model: int
    n_layers: int
    n_heads: int
    dropout: float
    epochs: int
    batch_size: int
    lr: float
    warmup_steps: int
    patience: int
    n_sampled: int = 0
    metadata: bool = False  # items have genres/tokens (id drop-out and the genre head help)
    weight_decay: float = 0.01
    length_buckets: bool = True
    n_future: int = 1  # multi-token prediction: items predicted per step
    freshness_buckets: int = 0  # > 0: the learned bonus by item age (needs release times)
    mask_seen: bool = False  # the training softmax leaves out seen items (each item once)
    future_heads: bool = True  # False: the next-item query also scores the items ahead
    future_weight: float = 0.5
    mlp_ratio: int = 4  # feed-forward width in units of d_model
    scale_item_input: bool = False  # the input item embedding × √d_model
    proposal_power: float = 0.75  # sampled-softmax negatives ∝ (count + 1)^power; 0: uniform
    schedule: str = "cosine"  # after warm-up: "cosine" or "constant" (fm_core.train_fm)
    ema_decay: float = 0.0  # > 0: validate and keep a moving average of the weights
    ema_warmup: str = "tensorflow"  # how the average's decay rises (fm_core.weight_average)


PRESETS: dict[str, Preset] = {
    "ml-100k": Preset(max_len=200, d_model=64, n_layers=2, n_heads=2, dropout=0.2, epochs=25,
                      batch_size=32, lr=2e-3, warmup_steps=100, patience=5),
    # A constant learning rate of 1e-3, as SASRec+'s published config; d 256, dropout 0.5,
    # AdamW weight decay 0.1 and the debiased moving average of the weights (decay 0.999:
    # about the last three epochs), chosen on validation NDCG@10 over all 40,226 validation
    # users (0.0445, against 0.0439 with the TensorFlow warm-up of the average, 0.0436 without
    # the weight decay and 0.0427 at d 128; the README's ablation tables). Patience 3: the
    # averaged validation curve rises smoothly to one peak.
    "beauty": Preset(max_len=50, d_model=256, n_layers=2, n_heads=2, dropout=0.5, epochs=40,
                     batch_size=128, lr=1e-3, warmup_steps=0, patience=3, n_sampled=8192,
                     mlp_ratio=1, scale_item_input=True, weight_decay=0.1, schedule="constant",
                     ema_decay=0.999, ema_warmup="debiased"),
    "sim": Preset(max_len=100, d_model=64, n_layers=2, n_heads=2, dropout=0.2, epochs=30,
                  batch_size=32, lr=2e-3, warmup_steps=100, patience=5, metadata=True,
                  n_future=4, freshness_buckets=10, mask_seen=True),
}  # fmt: skip


_OVERRIDE_CHECKS: dict[str, tuple[str, Callable[[float], bool], str]] = {
    "epochs": ("--epochs", lambda v: v >= 1, "an integer >= 1"),
    "n_sampled": ("--sampled", lambda v: v >= 0, "an integer >= 0 (0: full softmax)"),
    "batch_size": ("--batch-size", lambda v: v >= 1, "an integer >= 1"),
    "lr": ("--lr", lambda v: 0.0 < v < math.inf, "a finite number > 0"),
    "dropout": ("--dropout", lambda v: 0.0 <= v < 1.0, "in [0, 1)"),
    "patience": ("--patience", lambda v: v >= 1, "an integer >= 1"),
    "d_model": ("--d-model", lambda v: v >= 1, "an integer >= 1"),
    "n_layers": ("--layers", lambda v: v >= 1, "an integer >= 1"),
    "weight_decay": ("--weight-decay", lambda v: 0.0 <= v < math.inf, "a finite number >= 0"),
}
"""Each preset field the command can override: its option, the test a value must pass, and
what the message says it must be."""


def preset_with(preset: Preset, overrides: dict[str, float | None]) -> Preset:
    """``preset`` with the command's overrides (None keeps the preset's value); a value out of
    range is refused with a ValueError naming its option, before any data is read."""
    given = {k: v for k, v in overrides.items() if v is not None}
    for field, value in given.items():
        option, valid, expected = _OVERRIDE_CHECKS[field]
        if not valid(value):
            raise ValueError(f"{option} must be {expected}; got {value}")
    result = replace(preset, **given)
    if result.d_model % result.n_heads:
        raise ValueError(f"--d-model must be a multiple of the preset's {result.n_heads} "
                         f"attention heads; got {result.d_model}")  # fmt: skip
    return result


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", choices=DATASETS, default="sim", help="dataset (default sim)")
    parser.add_argument("--data-dir", help="folder holding ml-100k/ and beauty/ "
                        "(default ../shared/data)")  # fmt: skip
    parser.add_argument("--epochs", type=int, help="most FM epochs (default per dataset)")
    parser.add_argument("--sampled", type=int, help="sampled-softmax negatives (0: full softmax)")
    parser.add_argument("--batch-size", type=int, help="FM training batch (default per dataset)")
    parser.add_argument("--lr", type=float, help="FM peak learning rate (default per dataset)")
    parser.add_argument("--dropout", type=float, help="FM dropout (default per dataset)")
    parser.add_argument("--d-model", type=int, help="FM width (default per dataset)")
    parser.add_argument("--layers", type=int, help="FM transformer blocks (default per dataset)")
    parser.add_argument("--weight-decay", type=float,
                        help="FM AdamW weight decay (default per dataset)")  # fmt: skip
    parser.add_argument(
        "--ease-items",
        type=int,
        default=8000,
        help="EASE keeps the most popular items up to this many (default 8000)",
    )
    parser.add_argument(
        "--eval-users",
        type=int,
        default=EVAL_USERS,
        help=f"validation users for model selection (default {EVAL_USERS}, as SASRec+'s "
        "published runs; a sample of 5,000 has a standard error near 0.0025 at NDCG@10 0.025)",
    )
    parser.add_argument("--sim-users", type=int, default=SIM_USERS, help="users of the sim world "
                        f"(default {SIM_USERS})")  # fmt: skip
    parser.add_argument("--sim-items", type=int, default=400, help="items of the sim world")
    parser.add_argument("--sim-requests", type=float, default=60.0,
                        help="home requests per sim user (default 60)")  # fmt: skip
    parser.add_argument("--sim-daypart", type=float, default=SIM_CONTEXT_STRENGTH,
                        help="scale of the sim world's genre × daypart effects "
                        f"(default {SIM_CONTEXT_STRENGTH:g})")  # fmt: skip
    parser.add_argument("--sim-device", type=float, default=SIM_CONTEXT_STRENGTH,
                        help="scale of the sim world's genre × device effects "
                        f"(default {SIM_CONTEXT_STRENGTH:g})")  # fmt: skip
    parser.add_argument("--patience", type=int,
                        help="epochs without a validation gain before the FM stops "
                        "(default per dataset)")  # fmt: skip
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    parser.add_argument("--windows", choices=("resident", "collated"), default="resident",
                        help="training windows resident on the device and gathered by index "
                        "(default), or collated per batch on the host")  # fmt: skip
    parser.add_argument("--compile", action="store_true", dest="compile_blocks",
                        help="torch.compile the FM's transformer blocks (CUDA only)")  # fmt: skip
    parser.add_argument(
        "--refit",
        action="store_true",
        help="also retrain popularity, EASE and the FM, with the settings chosen on validation, "
        "on every event before the test target (bench.fm_refit; not the anchors' protocol)",
    )
    parser.add_argument("--ensemble", type=int, default=1,
                        help="FMs from seeds seed, seed+1, ... ranking by their mean "
                        "log-probability: the fm_ensemble row (default 1: none)")  # fmt: skip
    parser.add_argument("--distill", action="store_true",
                        help="also train one FM of the preset taught by the --ensemble FMs "
                        "(knowledge distillation): the fm_distilled row")  # fmt: skip
    parser.add_argument("--distill-weight", type=float, default=DISTILL_WEIGHT,
                        help="weight of the teachers' softmax in the distilled FM's loss, "
                        f"in (0, 1] (default {DISTILL_WEIGHT:g}; the rest is the targets')",
                        )  # fmt: skip
    parser.add_argument("--seed", type=int, default=0)


# ---- models --------------------------------------------------------------------------------


def _train_rows(split: LeaveOneOut, data: SequenceData) -> list[np.ndarray]:
    return [data.catalog.rows(h.item_ids) for h in split.train]


def run_ease(
    split: LeaveOneOut,
    data: SequenceData,
    max_items: int,
    valid: Queries,
    device: torch.device | None = None,
) -> tuple[dict[str, float], dict[str, Any]]:
    """EASE with λ tuned on the ``valid`` targets; its test metrics and what was chosen. On a
    CUDA ``device`` it is fitted, scored and ranked there (``bench.ease``)."""
    from bench.ease import EASE, ease_device

    start = time.perf_counter()
    chunk = eval_chunk(device)
    model = EASE(n_items=data.catalog.n_items, max_items=max_items, lam=EASE_LAMBDAS[0],
                 device=ease_device(device))  # fmt: skip
    model.fit(_train_rows(split, data))
    release = data.catalog.release_time
    tried = {}
    for lam in EASE_LAMBDAS:
        model.set_lambda(lam)
        tried[lam] = evaluate(ease_scores(model), valid, release, chunk=chunk)
    best = max(tried, key=lambda lam: tried[lam][f"ndcg@{K}"])
    model.set_lambda(best)
    test = evaluate(ease_scores(model), split.test, release, chunk=chunk)
    kept = np.zeros(data.catalog.n_items, dtype=bool)
    kept[model.items_] = True
    info = {
        "lambda": best,
        "items": int(model.items_.size),
        "test_target_coverage": float(kept[split.test.target].mean()),
        "valid_ndcg_by_lambda": {str(lam): m[f"ndcg@{K}"] for lam, m in tried.items()},
        "seconds": time.perf_counter() - start,
        "device": "cpu (numpy)" if model.device is None else str(model.weights_.device),
    }
    return test, info


def fm_config(data: SequenceData, preset: Preset, *, use_time: bool) -> FMConfig:
    from fm_core.model import FMConfig

    first = min(float(h.times[0]) for h in data.histories if len(h))
    cfg = FMConfig(
        time_origin=first if data.timed else FMConfig.time_origin,
        use_time_features=use_time and data.timed,
        max_len=preset.max_len,
        d_model=preset.d_model,
        n_layers=preset.n_layers,
        n_heads=preset.n_heads,
        dropout=preset.dropout,
        id_dropout=0.1 if preset.metadata else 0.0,
        genre_weight=0.1 if preset.metadata else 0.0,
        n_sampled=preset.n_sampled,
        n_future=preset.n_future,
        freshness_buckets=preset.freshness_buckets,
        mask_unreleased=preset.metadata,  # only the sim catalog has release times
        item_metadata=preset.metadata,
        mask_seen=preset.mask_seen,
        future_heads=preset.future_heads,
        future_weight=preset.future_weight,
        mlp_ratio=preset.mlp_ratio,
        scale_item_input=preset.scale_item_input,
    )
    return cfg.with_catalog(data.catalog)


def run_fm(
    split: LeaveOneOut,
    data: SequenceData,
    preset: Preset,
    *,
    use_time: bool,
    valid: Queries,
    seed: int,
    compile_blocks: bool = False,
    windows: str = "resident",
    distill: Distillation | None = None,
) -> tuple[dict[str, float], FoundationModel, dict[str, Any]]:
    """Train the FM, keeping the epoch of best NDCG@10 on the ``valid`` targets; its test
    metrics and the model. ``distill``: teachers whose softmax it also learns."""
    from fm_core.device import select_device
    from fm_core.train_fm import train_fm

    cfg = fm_config(data, preset, use_time=use_time)
    device = select_device()
    chunk = eval_chunk(device)  # validation scores and ranks this many queries at once

    def tokens(queries: Queries) -> QueryTokens:
        return QueryTokens(queries, data.catalog, max_len=cfg.max_len, config=cfg.tokenizer(),
                           device=device)  # fmt: skip

    valid_tokens = tokens(valid)

    def validate(model: FoundationModel) -> float:
        scores = fm_scores(model, data, batch_size=chunk, tokens=valid_tokens)
        return evaluate(scores, valid, data.catalog.release_time, chunk=chunk)[f"ndcg@{K}"]

    train = _train_config(preset, seed, compile_blocks=compile_blocks, windows=windows)
    start = time.perf_counter()
    result = train_fm(
        [(h, None) for h in split.train], data.catalog, cfg, train,
        contexts=split.train_contexts if data.contexts is not None else None, validate=validate,
        distill=distill,
    )  # fmt: skip
    seconds = time.perf_counter() - start
    test_scores = fm_scores(result.model, data, batch_size=chunk, tokens=tokens(split.test))
    test = evaluate(test_scores, split.test, data.catalog.release_time, chunk=chunk)
    steps = sum(m.steps for m in result.metrics)
    flops = sum(m.flops for m in result.metrics)
    train_time = sum(m.seconds for m in result.metrics)
    info = {
        "epochs_run": len(result.metrics),
        "best_epoch": result.best_epoch,
        "valid_ndcg_by_epoch": [round(m.valid, 5) for m in result.metrics],
        "train_seq_per_s": float(np.mean([m.windows_per_s for m in result.metrics])),
        "train_seconds": seconds,
        "train_step_seconds": train_time,
        "train_steps": steps,
        "train_flops_per_step": flops / steps if steps else None,
        "train_flops_per_s": flops / train_time if train_time > 0 else None,
        "valid_users": len(valid),
    }
    return test, result.model, info


def _train_config(
    preset: Preset, seed: int, *, compile_blocks: bool = False, windows: str = "resident"
) -> TrainConfig:
    from fm_core.train_fm import TrainConfig

    return TrainConfig(
        compile=compile_blocks,
        resident_data=windows == "resident",
        epochs=preset.epochs,
        batch_size=preset.batch_size,
        lr=preset.lr,
        weight_decay=preset.weight_decay,
        warmup_steps=preset.warmup_steps,
        schedule=preset.schedule,
        patience=preset.patience,
        train_top1=False,
        length_buckets=preset.length_buckets,
        proposal_power=preset.proposal_power,
        ema_decay=preset.ema_decay,
        ema_warmup=preset.ema_warmup,
        seed=seed,
    )


def serving_latency(
    model: FoundationModel, data: SequenceData, split: LeaveOneOut, seed: int
) -> dict[str, Any]:
    """p50/p99 ms of one request (encode up to LATENCY_EVENTS events, score the candidates),
    and the requests per second of a batch of SERVING_BATCH such requests scored in one
    forward pass (``fm_core.candidate_scores``)."""
    import torch

    from fm_core.candidate_scores import candidate_scores
    from fm_core.tokenize import tokenize_requests

    lengths = np.array([len(r.history) for r in split.test.requests])
    picked = np.argsort(-lengths, kind="stable")[:SERVING_BATCH]  # the longest histories
    requests, contexts = [], []
    for index in picked:
        request = split.test.requests[index]
        events = min(len(request.history), LATENCY_EVENTS)
        requests.append(replace(request, history=_tail(request.history, events)))
        context = split.test.contexts[index]
        contexts.append(None if context is None else _tail_context(context, events))
    rng = np.random.default_rng(seed)
    n = data.catalog.n_items
    size = min(LATENCY_CANDIDATES, n)
    device = next(model.parameters()).device
    candidates = torch.as_tensor(
        np.stack([rng.choice(n, size=size, replace=False) for _ in requests])
    ).to(device)  # (R, C)
    table = model.item_embeddings()  # cached by a service between model versions
    cap = model.cfg.max_len

    def score(count: int) -> None:
        batch = tokenize_requests(
            requests[:count], data.catalog, max_len=cap, contexts=contexts[:count],
            config=model.cfg.tokenizer(),
        ).to(device)  # fmt: skip
        candidate_scores(model, batch, candidates[:count], table=table).cpu()

    one = summary(sample_microseconds(lambda: score(1), repeats=200, warmup=10) / 1000.0)
    many = summary(
        sample_microseconds(lambda: score(len(requests)), repeats=BATCH_REPEATS, warmup=3) / 1000.0
    )
    events = len(requests[0].history)
    return {
        "score_ms_p50": one["p50_us"],
        "score_ms_p99": one["p99_us"],
        "events": events,
        "tokens": min(events + 1, cap),
        "context_cap": cap,
        "candidates": size,
        "batch_requests": len(requests),
        "batch_ms_p50": many["p50_us"],
        "batch_ms_p99": many["p99_us"],
        "batch_requests_per_s": len(requests) / (many["p50_us"] / 1000.0),
    }


def _tail(history: Any, n: int) -> Any:
    from fm_core.types import History

    return History(*(getattr(history, f)[-n:] for f in ("item_ids", "times", "kinds", "values",
                                                        "sources")))  # fmt: skip


def _tail_context(context: Any, n: int) -> Any:
    from fm_core.tokenize import EventContext

    return EventContext(
        *(None if getattr(context, f) is None else getattr(context, f)[-n:]
          for f in ("devices", "surfaces", "local_hours"))
    )  # fmt: skip


# ---- the benchmark -------------------------------------------------------------------------


def run(
    *,
    data: str = "sim",
    data_dir: str | None = None,
    epochs: int | None = None,
    sampled: int | None = None,
    batch_size: int | None = None,
    lr: float | None = None,
    dropout: float | None = None,
    d_model: int | None = None,
    layers: int | None = None,
    weight_decay: float | None = None,
    ease_items: int = 8000,
    eval_users: int = EVAL_USERS,
    sim_users: int = SIM_USERS,
    sim_items: int = 400,
    sim_requests: float = 60.0,
    sim_daypart: float = SIM_CONTEXT_STRENGTH,
    sim_device: float = SIM_CONTEXT_STRENGTH,
    patience: int | None = None,
    threads: int = 2,
    seed: int = 0,
    compile_blocks: bool = False,
    windows: str = "resident",
    refit: bool = False,
    ensemble: int = 1,
    distill: bool = False,
    distill_weight: float = DISTILL_WEIGHT,
) -> dict[str, Any]:
    import torch

    from fm_core.device import select_device

    overrides = {"epochs": epochs, "n_sampled": sampled, "batch_size": batch_size, "lr": lr,
                 "dropout": dropout, "patience": patience, "d_model": d_model,
                 "n_layers": layers, "weight_decay": weight_decay}  # fmt: skip
    preset = preset_with(PRESETS[data], overrides)
    if ensemble < 1:
        raise ValueError(f"--ensemble must be an integer >= 1; got {ensemble}")
    if not 0.0 < distill_weight <= 1.0:
        raise ValueError(f"--distill-weight must be in (0, 1]; got {distill_weight}")
    started = time.perf_counter()
    torch.set_num_threads(threads)
    device = select_device()
    sim_options = {"n_users": sim_users, "n_items": sim_items,
                   "requests_per_user": sim_requests, "daypart_strength": sim_daypart,
                   "device_strength": sim_device, "seed": seed}  # fmt: skip
    dataset = load_dataset(data, data_dir, sim_options=sim_options)
    split = leave_one_out(dataset)
    logger.info("%s: %d users, %d items, %d events", data, len(split.test),
                dataset.catalog.n_items, dataset.n_events)  # fmt: skip

    train_rows = _train_rows(split, dataset)
    counts = np.bincount(np.concatenate(train_rows), minlength=dataset.catalog.n_items)
    release = dataset.catalog.release_time
    models = {"popularity": evaluate(popularity_scores(counts), split.test, release)}
    # Model selection (EASE's λ, the FM's epoch) on the same sample of validation users.
    rng = np.random.default_rng(seed)
    n_valid = min(eval_users, len(split.valid))
    valid = split.valid.subset(np.sort(rng.choice(len(split.valid), n_valid, replace=False)))
    models["ease"], ease_info = run_ease(split, dataset, ease_items, valid, device)
    logger.info("popularity %s; EASE %s, validation NDCG@10 by lambda %s", models["popularity"],
                models["ease"], ease_info["valid_ndcg_by_lambda"])  # fmt: skip

    torch.manual_seed(seed)
    models["fm"], fm_model, fm_info = run_fm(
        split, dataset, preset, use_time=True, valid=valid, seed=seed,
        compile_blocks=compile_blocks, windows=windows,
    )  # fmt: skip
    ablation: dict[str, Any] = {}
    if data == "sim":
        models["fm_no_time"], _, ablation = run_fm(
            split, dataset, preset, use_time=False, valid=valid, seed=seed
        )
    latency = serving_latency(fm_model, dataset, split, seed)
    ensemble_info: dict[str, Any] = {}
    members, member_tests = [fm_model], [models["fm"]]
    if ensemble > 1:
        for member_seed in range(seed + 1, seed + ensemble):
            torch.manual_seed(member_seed)
            member_test, member, _ = run_fm(
                split, dataset, preset, use_time=True, valid=valid, seed=member_seed,
                compile_blocks=compile_blocks, windows=windows,
            )  # fmt: skip
            members.append(member)
            member_tests.append(member_test)
        chunk = eval_chunk(device)
        # the members share the preset, so the test queries are tokenized once for all of them
        test_tokens = QueryTokens(split.test, dataset.catalog, max_len=fm_model.cfg.max_len,
                                  config=fm_model.cfg.tokenizer(), device=device)  # fmt: skip
        mean = mean_log_probability(
            [fm_scores(m, dataset, batch_size=chunk, tokens=test_tokens) for m in members]
        )
        models["fm_ensemble"] = evaluate(mean, split.test, release, chunk=chunk)
        ensemble_info = {"members": ensemble, "seeds": list(range(seed, seed + ensemble)),
                         "member_test": member_tests}  # fmt: skip
    distill_info: dict[str, Any] = {}
    if distill:
        from fm_core.model import Distillation

        student_seed = seed + ensemble
        torch.manual_seed(student_seed)
        models["fm_distilled"], _, distill_info = run_fm(
            split, dataset, preset, use_time=True, valid=valid, seed=student_seed,
            compile_blocks=compile_blocks, windows=windows,
            distill=Distillation(tuple(members), weight=distill_weight),
        )  # fmt: skip
        distill_info |= {"seed": student_seed, "teacher_seeds": list(range(seed, seed + ensemble)),
                         "weight": distill_weight}  # fmt: skip
    del members
    refit_info: dict[str, Any] = {}
    if refit:
        from bench.fm_refit import refit as refit_models

        del fm_model
        chosen = _train_config(preset, seed)  # the best epoch's count, no early stopping
        chosen = replace(chosen, epochs=(fm_info["best_epoch"] or 0) + 1, patience=None)
        refitted, refit_info = refit_models(
            split, dataset, cfg=fm_config(dataset, preset, use_time=True), train=chosen,
            ease_lambda=ease_info["lambda"], ease_items=ease_items, seed=seed, device=device,
        )  # fmt: skip
        models |= refitted
    hardware = device_peak(device)
    achieved = fm_info["train_flops_per_s"]
    peak = hardware["peak_flops_per_s"]
    return {
        "data": data,
        "models": models,
        "train_seq_per_s": fm_info["train_seq_per_s"],
        "train_windows": windows,
        "train_flops_per_step": fm_info["train_flops_per_step"],
        "train_flops_per_s": achieved,
        "peak_flops_per_s": peak,
        "fraction_of_peak": achieved / peak if peak and achieved is not None else None,
        "fraction_of_peak_note": hardware["note"],
        "score_ms_p50": latency["score_ms_p50"],
        "score_ms_p99": latency["score_ms_p99"],
        "batch_requests_per_s": latency["batch_requests_per_s"],
        "device": str(device),
        "device_name": hardware["name"],
        "dataset": {
            "users": len(split.test),
            "items": dataset.catalog.n_items,
            "events": dataset.n_events,
            "source": dataset.source,
        },
        "fm": fm_info
        | {
            "softmax": f"sampled, {preset.n_sampled} negatives, log-Q"
            if preset.n_sampled
            else "full",
            "max_len": preset.max_len,
            "n_future": preset.n_future,
            "freshness_buckets": preset.freshness_buckets,
            "d_model": preset.d_model,
            "n_layers": preset.n_layers,
            "mlp_ratio": preset.mlp_ratio,
            "scale_item_input": preset.scale_item_input,
            "dropout": preset.dropout,
            "batch_size": preset.batch_size,
            "lr": preset.lr,
            "schedule": preset.schedule,
            "weight_decay": preset.weight_decay,
            "ema_decay": preset.ema_decay,
            "ema_warmup": preset.ema_warmup,
            "max_epochs": preset.epochs,
            "patience": preset.patience,
            "time_features": bool(dataset.timed),
        },
        "fm_no_time": ablation,
        "refit": refit_info,
        "ensemble": ensemble_info,
        "distilled": distill_info,
        "ease": ease_info,
        "latency": latency,
        "total_seconds": time.perf_counter() - started,
    }


def device_peak(device: torch.device) -> dict[str, Any]:
    """The device's name and dense bf16 peak FLOP/s (``fm_core.flops``), or why there is none."""
    import torch

    from fm_core.flops import peak_flops

    if device.type != "cuda":
        return {"name": device.type, "peak_flops_per_s": None,
                "note": f"no published peak for the {device.type}: fraction of peak not "
                "reported"}  # fmt: skip
    name = torch.cuda.get_device_name(device)
    peak = peak_flops(name)
    note = (
        "dense bf16 tensor-core peak from NVIDIA's data sheet"
        if peak
        else f"no published peak for {name} in fm_core.flops: fraction of peak not reported"
    )
    return {"name": name, "peak_flops_per_s": peak, "note": note}


def table(result: dict[str, Any]) -> str:
    d, fm, ease, lat = result["dataset"], result["fm"], result["ease"], result["latency"]
    width = max(14, *(len(name) + 2 for name in result["models"]))
    rows = [
        f"FM benchmark on {result['data']}: {d['users']} users, {d['items']} items, "
        f"{d['events']} events; leave-one-out, full-catalog ranking, seen items removed",
        f"{'model':<{width}}{'HR@10':>10}{'NDCG@10':>10}{'± s.e.':>9}  notes",
    ]
    notes = {
        "fm": f"{fm['softmax']} softmax, best epoch "
        f"{'none' if fm['best_epoch'] is None else fm['best_epoch'] + 1} of {fm['epochs_run']}",
        "fm_no_time": "the same FM without continuous time features and freshness",
        "ease": f"lambda {ease['lambda']:g}, {ease['items']} most popular items "
        f"({ease['test_target_coverage']:.1%} of test targets; others unscored)",
        "popularity": "training interaction counts",
        "popularity_refit": "refit on every event before the test target (another protocol)",
        "ease_refit": "refit, the lambda chosen above",
        "fm_refit": "refit from the same seed for the best epoch's count of epochs",
    }
    if result.get("ensemble"):
        seeds = result["ensemble"]["seeds"]
        notes["fm_ensemble"] = (f"{len(seeds)} FMs (seeds {seeds[0]}-{seeds[-1]}), mean "
                                "log-probability")  # fmt: skip
    if result.get("distilled"):
        taught = result["distilled"]
        teachers = taught["teacher_seeds"]
        notes["fm_distilled"] = (
            f"one FM (seed {taught['seed']}) taught by {len(teachers)} (seeds "
            f"{', '.join(map(str, teachers))}), weight {taught['weight']:g}, best epoch "
            f"{'none' if taught['best_epoch'] is None else taught['best_epoch'] + 1} of "
            f"{taught['epochs_run']}"
        )
    for name, m in result["models"].items():
        rows.append(
            f"{name:<{width}}{m['hr@10']:>10.4f}{m['ndcg@10']:>10.4f}{m['ndcg@10_se']:>9.4f}  "
            f"{notes.get(name, '')}"
        )
    base = max(result["models"]["ease"]["ndcg@10"], result["models"]["popularity"]["ndcg@10"])
    ratio = result["models"]["fm"]["ndcg@10"] / base if base > 0 else math.inf
    rows.append(f"FM NDCG@10 / best baseline: {ratio:.2f}")
    if not fm["time_features"]:
        rows.append("no timestamps in this data: the FM runs without continuous time features")
    cap_note = (f"context capped at {lat['context_cap']} tokens"
                if lat["events"] + 1 > lat["context_cap"] else "no cap reached")  # fmt: skip
    rows += [
        f"data: {d['source']}",
        f"training: {result['train_seq_per_s']:.1f} sequences/s on {result['device']}, "
        f"{fm['train_seconds']:.0f} s",
        _flops_row(result),
        f"serving one request ({lat['events']} events, {cap_note}; {lat['candidates']} "
        f"candidates): p50 {lat['score_ms_p50']:.2f} ms, p99 {lat['score_ms_p99']:.2f} ms",
        f"serving a batch of {lat['batch_requests']} such requests in one forward pass: "
        f"p50 {lat['batch_ms_p50']:.1f} ms, {lat['batch_requests_per_s']:.0f} requests/s",
        f"whole command: {result['total_seconds']:.0f} s",
    ]
    return "\n".join(rows)


def _flops_row(result: dict[str, Any]) -> str:
    per_step, achieved = result["train_flops_per_step"], result["train_flops_per_s"]
    if per_step is None or achieved is None:
        return "model FLOPs: no training steps"
    fraction = result["fraction_of_peak"]
    share = (
        f"{fraction:.2%} of the {result['device_name']}'s {result['peak_flops_per_s'] / 1e12:.0f}"
        " TFLOP/s bf16 peak"
        if fraction is not None
        else result["fraction_of_peak_note"]
    )
    return (
        f"model FLOPs: {per_step / 1e9:.2f} GFLOP per training step (forward + backward), "
        f"{achieved / 1e9:.1f} GFLOP/s achieved; {share}"
    )
